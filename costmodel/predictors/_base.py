"""The Predictor abstraction and the checks of its arguments.

Every predictor answers the same question, "what does this workload cost on
this device?", with the same :class:`~costmodel.Estimate`.
"""

from __future__ import annotations

import abc
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

from .._errors import InvalidGraphError, InvalidInputError
from ..estimate import Estimate
from ..ir import MODES, OPTIMIZERS


class Predictor(abc.ABC):
    """Abstract cost model.

    Subclasses set ``name`` and ``version`` and implement :meth:`predict`;
    learned ones also implement :meth:`fit`, :meth:`save` and :meth:`load`.
    """

    name: str = "base"
    version: str = "0"
    #: whether the predictor's ``memory_mb`` is its own (learned from memory labels); ``False`` where it
    #: is the analytic liveness model's, which the graph's allocator walk replaces for a graph alone
    learns_memory: bool = True
    #: whether a training step's latency and energy follow the graph's frozen parameters (no gradient
    #: for them, no backward before the first trainable layer); ``False``: priced as a full step
    models_frozen: bool = False
    #: the folder this predictor was loaded from by path (:func:`~costmodel.predictors.load_predictor`,
    #: ``--predictor DIR``), which its estimates name; ``None`` for a built-in or shipped one
    artifact: str | None = None

    @abc.abstractmethod
    def predict(self, graph, device, *, mode: str | None = None, optimizer: str = "adam") -> Estimate:
        """Estimate one CostGraph on one device."""

    def predict_many(self, graphs: Sequence, device, *, mode: str | None = None, optimizer: str = "adam") -> list[Estimate]:
        """Estimate many graphs (learned predictors batch this)."""
        out = []
        for i, g in enumerate(built_graphs(graphs)):
            with items_named(i):
                out.append(self.predict(g, device, mode=mode, optimizer=optimizer))
        return out

    def fit(self, dataset) -> "Predictor":
        """Train on a :class:`~costmodel.datasets.PerfDataset`; returns ``self``."""
        raise NotImplementedError(f"predictor {self.name!r} is not trainable")

    @abc.abstractmethod
    def save(self, path: str | Path) -> None:
        """Write the predictor to a directory (config JSON + weights, no pickle)."""

    @classmethod
    @abc.abstractmethod
    def load(cls, path: str | Path) -> "Predictor":
        """Read a predictor written by :meth:`save`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r})"


@contextmanager
def items_named(first: int = 0, where: str = "predict_many"):
    """Name the item of a batch whose graph a cost model refused (an :class:`InvalidGraphError` raised for
    graph ``graph_index`` of the graphs read together, or for the one graph predicted): item ``first`` +
    that index."""
    try:
        yield
    except InvalidGraphError as e:
        if str(e).startswith(f"{where}: item "):
            raise
        raise InvalidGraphError(f"{where}: item {first + getattr(e, 'graph_index', 0)}: {e}") from None


@contextmanager
def lone_item():
    """A one-graph ``predict`` answered through ``predict_many``: its error without the item's number."""
    try:
        yield
    except InvalidGraphError as e:
        lead = "predict_many: item 0: "
        if not str(e).startswith(lead):
            raise
        raise InvalidGraphError(str(e)[len(lead):]) from None


def built_graphs(graphs, where: str = "predict_many", need_work: bool = False) -> list:
    """``graphs`` as a list, each a :class:`~costmodel.CostGraph` (a predictor reads built graphs; a model,
    a zoo name or a file goes through :func:`costmodel.to_graph` or :func:`costmodel.estimate` first); with
    ``need_work``, each with an operator that does work (a graph regressor has nothing to read in one
    without: the timeline and the analytic model cost it as the call alone)."""
    from ..ir import CostGraph

    if isinstance(graphs, (str, bytes, CostGraph)) or not hasattr(graphs, "__iter__"):
        raise InvalidInputError(f"{where} takes a list of built graphs (CostGraph), got a {type(graphs).__name__}")
    out = list(graphs)
    for i, g in enumerate(out):
        what = "its graph" if where == "predict" else f"item {i}"
        if not isinstance(g, CostGraph):
            raise InvalidInputError(
                f"{where}: {what} is a {type(g).__name__} ({g!r:.60}), not a built graph (CostGraph); build it with "
                "costmodel.to_graph(model, batch=...), or call costmodel.estimate(model, ...) for a model")
        if need_work and (not g.nodes or all(n.is_view for n in g.nodes)):  # O(1) where its first node works
            try:
                g.check_costable()
            except InvalidGraphError as e:
                raise InvalidGraphError(f"{where}: {what}: {e}") from None
    return out


def graph_mode(graph, mode: str | None) -> tuple[str, str | None]:
    """The mode to cost ``graph`` in, ``mode``, else the one it was captured in (``meta["mode"]``), else
    inference; and the assumption to add where ``mode`` is not the capture's. A training capture runs its
    batch norms and dropout as training does; an inference capture costed as a training step has the
    backward derived from its forward operators with their inference kernels. Either is an approximation:
    a training capture of mobilenet_v2 costed as inference came out 42 % slower than its inference capture
    on the timeline, an inference capture costed as training 4-10 % faster than the training capture (up
    to 37 % with the learned graph regressors)."""
    recorded = graph.meta.get("mode")
    if mode is None:
        return (recorded if recorded in MODES else "inference"), None
    validate_mode(mode)
    if recorded in MODES and recorded != mode:
        return mode, (f"the graph was captured for {recorded} and is costed as {mode}: its operators are the "
                      f"{recorded} capture's (capture it with costmodel.to_graph(model, batch=..., mode={mode!r}) "
                      "for the operators the step runs)")
    return mode, None


def with_mode_notes(graphs, ests: list, mode: str | None) -> list:
    """``ests`` with :func:`graph_mode`'s assumption added where ``mode`` is not the graph's capture."""
    if mode is not None:
        for g, e in zip(graphs, ests):
            note = graph_mode(g, mode)[1]
            if note is not None and note not in e.assumptions:
                e.assumptions.append(note)
    return ests


def check_sizes(config, names: Sequence[str]) -> None:
    """The fields ``names`` of a config dataclass (widths, layer counts, batch sizes) are each >= 1."""
    for k in names:
        if int(getattr(config, k)) < 1:
            raise InvalidInputError(f"{type(config).__name__}.{k} must be >= 1, got {getattr(config, k)}")


def validate_mode(mode: str) -> str:
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def validate_optimizer(opt: str) -> str:
    norm = opt.lower().replace("-", "_").replace("+", "_")
    if norm == "momentum":
        norm = "sgd_momentum"
    if norm not in OPTIMIZERS:
        raise InvalidInputError(f"optimizer must be one of {OPTIMIZERS}, got {opt!r}")
    return norm



def conformal_quantile(errors: Sequence[float], coverage: float, *, min_rows: int = 5) -> float | None:
    """Split-conformal half-width: the finite-sample-corrected ``coverage`` quantile of ``errors``.

    With ``n`` held-out absolute errors, the ``ceil((n + 1) * coverage) / n`` empirical quantile
    (``method="higher"``) bounds a new exchangeable row's error with probability >= ``coverage``.
    Non-finite errors are dropped; ``None`` when fewer than ``min_rows`` remain.
    """
    import numpy as np

    if not 0 < coverage < 1:
        raise InvalidInputError(f"coverage must be in (0, 1), got {coverage}")
    v = np.asarray(errors, np.float64)
    v = v[np.isfinite(v)]
    n = len(v)
    if n < min_rows:
        return None
    return float(np.quantile(v, min(1.0, math.ceil((n + 1) * coverage) / n), method="higher"))
