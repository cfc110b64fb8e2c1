"""Few-shot adaptation of a trained predictor to a new device (``costmodel adapt``).

>>> from costmodel.training import adapt, load_rows
>>> rows = load_rows("costmodel/data/cpu/vision.jsonl", device="cpu")
>>> res = adapt("dippm", rows, shots=32)            # fine-tune the shipped DIPPM on 32 CPU rows
>>> res.predictor.save("dippm-cpu")                 # costmodel predict ... --predictor dippm-cpu
>>> print(res.table())                              # zero-shot vs adapted on the held-out rows

The predictor's weights and feature normalization are the starting point
(``fit(init_from=...)``); the new rows are labelled with the new device, so
its hardware features enter the model and the adapted artifact counts the
device as measured.  Rows not used for training are held out, and the
latency MAPE / Acc(10 %) of the predictor before and after adaptation on
them is reported (nothing is reported when every row was used).

Predictors that support it: the graph predictors (``dippm``, ``trappm``,
``gnn-llm`` and artifact folders of any of them).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .._errors import CostModelError, InvalidInputError, ModelLoadError
from .._validate import int_at_least, positive_number

__all__ = ["AdaptResult", "adapt", "load_rows"]


def load_rows(data, *, device: str):
    """Measured vision rows from a ``.jsonl`` file, or a folder holding ``vision.jsonl``, labelled with ``device``.

    Out-of-memory rows carry no labels and are skipped; transformer rows are
    skipped too (the graph predictors adapt on vision rows).  For a GPU the
    device database does not list, ``device`` is the ``hardware.json`` that
    ``costmodel collect`` wrote beside the rows: its CUDA properties derive the
    GPU, and the rows name that file, so that training resolves it.
    """
    from ..datasets import PerfDataset
    from ..datasets import read_jsonl, vision_row
    from ..devices import get_device, resolves_by_name

    dev = get_device(device)  # unknown names fail here, with suggestions
    label = dev.name
    if not resolves_by_name(dev.name):  # a GPU the database does not list is known by the file it was derived from
        if not (isinstance(device, (str, Path)) and Path(device).is_file()):
            raise InvalidInputError(f"device {dev.name!r} is not in the device database: pass the hardware.json "
                                    "that `costmodel collect` wrote beside its rows as the device")
        label = str(Path(device).resolve())
    p = Path(data)
    if p.is_dir():
        p = p / "vision.jsonl"
    if not p.is_file():
        raise ModelLoadError(f"no measured rows at {str(data)!r}: expected a .jsonl file or a folder with vision.jsonl")
    rows, measured_on = [], set()
    for ln, r in read_jsonl(p):
        if r.get("oom") or "spec" not in r:
            continue
        if not isinstance(r.get("latency_ms"), (int, float)):
            raise ModelLoadError(f"{p}:{ln}: row without a numeric latency_ms")
        if r.get("device"):
            measured_on.add(str(r["device"]))
        rows.append(vision_row(r, label))
    if not rows:
        raise ModelLoadError(f"{p} holds no labelled vision rows")
    if resolves_by_name(dev.name):
        _check_rows_device(p, measured_on, dev)
    return PerfDataset(rows)


def _check_rows_device(path: Path, measured_on: set[str], dev) -> None:
    """Refuse rows measured on another device than ``dev``: by the device ``hardware.json`` beside them
    resolved to, and by the rows' own device names where the database knows them (a CPU's name is not
    in it; its ``hardware.json`` says ``cpu``). An adapted predictor would otherwise count ``dev`` as
    measured on another device's rows."""
    import json

    from ..devices import get_device

    found: list[tuple[str, str]] = []
    hw = path.parent / "hardware.json"
    if hw.is_file():
        try:
            named = json.loads(hw.read_text()).get("costmodel_device")
        except (json.JSONDecodeError, AttributeError, OSError):
            named = None
        if isinstance(named, str) and named:
            found.append((f"{hw} names {named!r}", named))
    found += [(f"its rows were measured on {d!r}", d) for d in sorted(measured_on)]
    for what, name in found:
        try:
            other = get_device(name).name
        except CostModelError:  # a CPU's or an unlisted GPU's own name
            continue
        if other != dev.name:
            raise InvalidInputError(
                f"{path} holds rows of {other}, not {dev.name} ({what}): adapting {dev.name}'s predictor on them "
                f"would count {dev.name} as measured; pass --device {other!r}")


@dataclass
class AdaptResult:
    predictor: Any
    device: str
    train_rows: list[int]
    test_rows: list[int]
    before: dict[str, float] | None  # latency metrics of the original predictor on the held-out rows
    after: dict[str, float] | None
    seconds: float

    def table(self) -> str:
        lines = [f"adapted {self.predictor.name} to {self.device} on {len(self.train_rows)} rows "
                 f"in {self.seconds:.1f} s"]
        if self.before is None:
            lines.append("no held-out rows: every row was used for training")
            return "\n".join(lines)
        lines.append(f"held-out rows: {len(self.test_rows)}")
        lines.append(f"{'':<14}{'latency MAPE %':>16}{'Acc(10 %) %':>13}")
        for name, m in (("before", self.before), ("after", self.after)):
            lines.append(f"{name:<14}{m['mape']:>16.1f}{m['acc10']:>13.1f}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"predictor": self.predictor.name, "device": self.device, "shots": len(self.train_rows),
                "held_out": len(self.test_rows), "before": self.before, "after": self.after,
                "seconds": round(self.seconds, 2)}


def adapt(predictor, rows, *, shots: int = 32, epochs: int = 60, lr_scale: float = 0.5, seed: int = 0,
          progress: bool = True) -> AdaptResult:
    """Fine-tune ``predictor`` (name, artifact folder or instance) on ``shots`` of ``rows``.

    ``rows`` is a :class:`~costmodel.datasets.PerfDataset` (see
    :func:`load_rows`); ``shots`` rows are drawn at random (``seed``), the
    rest are held out for the before/after report.
    """
    import time

    import numpy as np

    from ..predictors import GNNPredictor, TraPPMPredictor, get_predictor
    from .metrics import acc_within, mape

    int_at_least(shots, "shots", 4)
    int_at_least(epochs, "epochs", 1)
    positive_number(lr_scale, "lr_scale")
    if shots > len(rows):
        raise InvalidInputError(f"shots={shots} but only {len(rows)} labelled rows were given")
    base = get_predictor(predictor)
    if not isinstance(base, GNNPredictor) or type(base).__name__ == "XGBStaticPredictor":
        raise InvalidInputError(
            f"predictor {base.name!r} does not support adaptation; "
            "use one of ['dippm', 'trappm', 'gnn-llm'] or their artifacts"
        )
    t0 = time.perf_counter()
    idx = list(range(len(rows)))
    random.Random(seed).shuffle(idx)
    train, test = idx[:shots], idx[shots:]
    cfg = replace(base.config, epochs=epochs, lr=base.config.lr * lr_scale, seed=seed)
    new = TraPPMPredictor(cfg, base.encoder) if isinstance(base, TraPPMPredictor) else type(base)(cfg)
    cache = {i: base.features(rows.graph(i), rows[i].device, rows[i].mode) for i in idx}
    before = after = None
    y = np.asarray([rows[i].latency_ms for i in test])
    if test:
        p0 = base._predict_features([cache[i] for i in test])[:, 0]
        before = {"mape": float(mape(y, p0)), "acc10": float(acc_within(y, p0, 0.10))}
    new.fit(rows, train, progress=progress, cached=cache, init_from=base)
    new.meta = dict(new.meta or {}, adapted_from=base.name, adapted_shots=len(train), adapted_seed=seed)
    if test:
        p1 = new._predict_features([cache[i] for i in test])[:, 0]
        after = {"mape": float(mape(y, p1)), "acc10": float(acc_within(y, p1, 0.10))}
    return AdaptResult(new, rows[0].device, train, test, before, after, time.perf_counter() - t0)
