"""The measured dataset: one workload + labels per row, graphs on demand.

Rows come from ``<root>/<device>/vision.jsonl`` and ``llm.jsonl`` (the
package ships the H200 measurements under ``costmodel/data``; point
``root=`` or ``$COSTMODEL_DATA`` at another folder laid out the same way).
Graphs are rebuilt from each row's spec on the meta device and cached on disk
(see :func:`costmodel.frontends.cache_dir`), so only the first load pays for
featurization.

Splits follow the thesis protocol (seeded random 70/30) and the stricter
leave-one-family-out protocol, which tests unseen architectures.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from .._errors import InvalidInputError, ModelLoadError

KINDS = ("vision", "llm")
TARGETS = ("latency_ms", "memory_mb", "energy_j", "power_w")
_MODE = {"infer": "inference", "train": "training", "forward": "inference", "prefill": "inference"}


def default_root() -> Path:
    env = os.environ.get("COSTMODEL_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "data"


@dataclass
class PerfRow:
    """One measured workload.

    ``memory_mb`` is NVML's device memory in use (CUDA context, libraries and
    the caching allocator's reservation): what a MIG slice must hold.
    ``raw`` keeps every field of the source row.
    """

    kind: str  # "vision" or "llm"
    model: str
    family: str
    device: str
    batch: int
    mode: str  # "inference" or "training"
    dtype: str
    latency_ms: float
    memory_mb: float
    energy_j: float
    power_w: float
    spec: dict[str, Any]
    seq: int | None = None
    phase: str | None = None  # llm: forward / prefill / decode
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def target(self, name: str) -> float:
        if name not in TARGETS:
            raise InvalidInputError(f"unknown target {name!r}; expected one of {TARGETS}")
        return float(getattr(self, name))

    @property
    def graph_supported(self) -> bool:
        """Rows the graph-based predictors train on: vision, transformer forward and prefill.

        Decode steps have graphs too (:meth:`PerfDataset.graph` builds one step against a KV
        cache of ``seq`` tokens) but the shipped graph predictors were not trained on them."""
        return self.kind == "vision" or self.phase in ("forward", "prefill")

    @property
    def has_graph(self) -> bool:
        """Rows :meth:`PerfDataset.graph` can build: every vision row, every transformer row."""
        return self.kind == "vision" or self.phase in ("forward", "prefill", "decode", "training")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, row)`` for every non-empty line of a measured-rows file."""
    for ln, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield ln, json.loads(line)
        except json.JSONDecodeError as e:
            raise ModelLoadError(f"{path}:{ln}: not valid JSON ({e})") from None


def _vision_row(r: dict, device: str) -> PerfRow:
    spec = r["spec"]
    name = spec.get("name", spec.get("src"))
    if spec.get("kw"):
        name += "(" + ",".join(f"{k}={v}" for k, v in sorted(spec["kw"].items())) + ")"
    if spec.get("res", 224) != 224:
        name += f"@{spec['res']}"
    return PerfRow(
        kind="vision",
        model=name,
        family=spec.get("family", "unknown"),
        device=device,
        batch=int(r["batch"]),
        mode=_MODE[r["mode"]],
        dtype=r["dtype"],
        latency_ms=float(r["latency_ms"]),
        memory_mb=_label(r, "nvml_used_mb"),
        energy_j=_label(r, "energy_j"),
        power_w=_label(r, "power_w"),
        spec=spec,
        raw=r,
    )


def _label(r: dict, key: str) -> float:
    """A label, or NaN where the device could not measure it (CPU energy, say)."""
    v = r.get(key)
    return float(v) if v is not None else float("nan")


def _llm_row(r: dict, device: str) -> PerfRow:
    """A transformer row. Its config is the one the model was built from (:func:`~costmodel.measure.run_config`):
    rows recorded before list-valued config fields were kept lack them (DeBERTa-v3's ``pos_att_type``, the
    two relative-position score terms), and without them the row's graph and features would describe a
    cheaper attention than the one measured."""
    from ..measure.models import run_config

    config = {k: v for k, v in run_config(r).items() if k != "model_type"}
    return PerfRow(
        kind="llm",
        model=r["model"],
        family=r.get("model_type", r["model"]),
        device=device,
        batch=int(r["batch"]),
        mode="training" if r["mode"] == "training" else "inference",  # a fine-tuning step, or a call
        dtype=r["dtype"],
        latency_ms=float(r["latency_ms"]),
        memory_mb=_label(r, "nvml_used_mb"),
        energy_j=_label(r, "energy_j"),
        power_w=_label(r, "power_w"),
        spec={"model_type": r["model_type"], "config": config, "causal": r.get("causal"),
              **({"target_seq": int(r["target_seq"])} if r.get("target_seq") is not None else {}),
              **({"ssm_kernels": r["ssm_kernels"]} if r.get("ssm_kernels") == "fused" else {})},
        seq=int(r["seq"]),
        phase=r["mode"],
        raw=r,
    )


class PerfDataset(Sequence[PerfRow]):
    """Rows of measured workloads with lazily built, disk-cached graphs."""

    def __init__(self, rows: list[PerfRow], *, method: str = "export") -> None:
        self.rows = rows
        self.method = method

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        root: str | Path | None = None,
        *,
        device: str = "h200",
        kinds: Sequence[str] = ("vision",),
        method: str = "export",
        prefix: str = "",
    ) -> "PerfDataset":
        """Read the measured rows of one device folder.

        Args:
            root: folder holding ``<device>/vision.jsonl`` etc. (default: the packaged data).
            device: sub-folder name (``h200``).
            kinds: which files to read: ``vision`` and/or ``llm``.
            method: the frontend's capture method for :meth:`graph` (``export`` or ``trace``).
            prefix: read ``<prefix>vision.jsonl`` etc. (``"ops_"``: the rows profiled per operator,
                whose operator rows are ``ops.jsonl.gz`` in the same folder).
        """
        for k in kinds:
            if k not in KINDS:
                raise InvalidInputError(f"unknown dataset kind {k!r}; expected one of {KINDS}")
        folder = Path(root) if root is not None else default_root()
        folder = folder / device
        if not folder.is_dir():
            avail = sorted(p.name for p in folder.parent.iterdir() if p.is_dir()) if folder.parent.is_dir() else []
            raise ModelLoadError(f"no measurements for device {device!r} under {folder.parent}; found {avail}")
        from ..devices import resolves_by_name

        hw = folder / "hardware.json"
        info = json.loads(hw.read_text()) if hw.exists() else {}
        # the device-database name this hardware maps to (a CPU's model string is not one)
        dev_name = info.get("costmodel_device") or info.get("name", device)
        if hw.exists() and "prop_multi_processor_count" in info and not resolves_by_name(dev_name):
            dev_name = str(hw.resolve())  # a GPU the database does not list: its rows name the file deriving it
        rows: list[PerfRow] = []
        for k in kinds:
            path = folder / f"{prefix}{k}.jsonl"
            if not path.exists():
                continue
            for _, r in read_jsonl(path):
                if r.get("oom"):
                    continue  # out-of-memory rows carry no labels
                rows.append(_vision_row(r, dev_name) if k == "vision" else _llm_row(r, dev_name))
        return cls(rows, method=method)

    # --------------------------------------------------------------- sequence
    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return PerfDataset(self.rows[i], method=self.method)
        return self.rows[i]

    def __repr__(self) -> str:
        return f"PerfDataset({len(self)} rows, {len(self.families())} families)"

    def subset(self, idx: Sequence[int]) -> "PerfDataset":
        return PerfDataset([self.rows[i] for i in idx], method=self.method)

    def filter(self, **eq) -> "PerfDataset":
        """Rows whose attributes equal the given values (``mode="training"``)."""
        return PerfDataset([r for r in self.rows if all(getattr(r, k) == v for k, v in eq.items())], method=self.method)

    def families(self) -> list[str]:
        return sorted({r.family for r in self.rows})

    def targets(self, name: str) -> list[float]:
        return [r.target(name) for r in self.rows]

    # ----------------------------------------------------------------- graphs
    def graph(self, i: int, *, fused: bool = True):
        """The CostGraph of row ``i`` (built on first use, then cached on disk); ``fused``: see
        :func:`~costmodel.frontends.from_torch`."""
        from ..analysis import cast_graph
        from ..frontends import zoo_graph

        r = self.rows[i]
        if r.kind == "vision":
            g = zoo_graph(r.spec, batch=r.batch, mode=r.mode, method=self.method, fused=fused)
        elif r.has_graph:
            from ..frontends import hf_graph

            g = hf_graph(
                r.spec["model_type"], r.spec["config"], batch=r.batch, seq=r.seq,
                causal=r.spec.get("causal"), method=self.method, decode=r.phase == "decode", fused=fused,
                mode="training" if r.phase == "training" else "inference", target_seq=r.spec.get("target_seq"),
                ssm_kernels=r.spec.get("ssm_kernels", "reference"),
            )
        else:
            raise InvalidInputError(f"row {i} ({r.model} {r.phase}) has no graph: unknown phase {r.phase!r}")
        if r.dtype != g.meta.get("dtype"):
            g = cast_graph(g, r.dtype)
        return g

    def graphs(self, *, progress: bool = True) -> list:
        """Every row's graph, with a progress bar on first (uncached) builds."""
        it: Any = range(len(self.rows))
        if progress:
            try:
                from tqdm.auto import tqdm

                it = tqdm(it, desc="featurizing", unit="graph", leave=False)
            except ImportError:  # pragma: no cover
                pass
        return [self.graph(i) for i in it]

    # ----------------------------------------------------------------- splits
    def random_split(self, test_fraction: float = 0.3, seed: int = 0) -> tuple[list[int], list[int]]:
        """Seeded random split of row indices (thesis protocol: 70/30)."""
        if not 0 < test_fraction < 1:
            raise InvalidInputError(f"test_fraction must be in (0, 1), got {test_fraction}")
        idx = list(range(len(self.rows)))
        random.Random(seed).shuffle(idx)
        n_test = max(1, round(len(idx) * test_fraction))
        return sorted(idx[n_test:]), sorted(idx[:n_test])

    def leave_one_family_out(self) -> Iterator[tuple[str, list[int], list[int]]]:
        """Yield ``(family, train_idx, test_idx)`` holding out each family in turn."""
        for fam in self.families():
            test = [i for i, r in enumerate(self.rows) if r.family == fam]
            train = [i for i, r in enumerate(self.rows) if r.family != fam]
            yield fam, train, test
