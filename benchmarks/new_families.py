"""The shipped predictors on architectures they never saw, measured later on an H200.

    python benchmarks/new_families.py [--predictors trappm,dippm,xgb-static,analytic]
    python benchmarks/new_families.py --predictors timeline --folder h200_ops [--host FILE]

``benchmarks/data/h200_extend`` holds rows that ``costmodel collect`` measured
on an NVIDIA H200 (its ``hardware.json`` says which): 13 architectures absent
from the packaged training data, each on the packaged grid (fp32 inference at
batch 1/8/32/128, fp16 inference at batch 32, fp32 training at batch 32),
plus 4 check rows that repeat packaged rows.  The script prints:

1. the check rows next to the packaged rows they repeat (how well the two
   measuring runs agree);
2. per predictor, MAPE / RMSE / Kendall tau / Acc(10 %) of latency, memory
   and energy on the 78 new-architecture rows, and latency MAPE per
   architecture.

The predictors are the shipped artifacts, trained on all packaged rows: this
is a leave-everything-out test on new families.  ``--folder h200_ops`` scores
the rows a third host measured while profiling them per operator
(``benchmarks/data/h200_ops/ops_vision.jsonl``; 11 of the 13 architectures);
``--host FILE`` gives the timeline a ``costmodel calibrate`` host profile (that
folder's ``host.json`` was calibrated on its host before its rows).
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TARGETS = ("latency_ms", "memory_mb", "energy_j")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predictors", default="trappm,dippm,xgb-static,analytic")
    ap.add_argument("--data", default=str(HERE / "data"))
    ap.add_argument("--folder", default="h200_extend", help="device folder under --data (h200_extend, h200_ops)")
    ap.add_argument("--host", default=None, help="a host profile for the timeline (costmodel calibrate -o FILE)")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    from costmodel.datasets import PerfDataset
    from costmodel.devices import get_device
    from costmodel.training import report
    from costmodel.predictors import get_predictor

    new = PerfDataset.load(a.data, device=a.folder, prefix="ops_" if a.folder == "h200_ops" else "")
    packaged = PerfDataset.load()
    seen = {r.model for r in packaged.rows}
    key = lambda r: (r.model, r.mode, r.dtype, r.batch)  # noqa: E731
    ref = {key(r): r for r in packaged.rows}
    hw = json.loads((Path(a.data) / a.folder / "hardware.json").read_text())
    print(f"new rows measured on {hw.get('name')} (driver {hw.get('driver')}, torch {hw.get('torch')})\n")

    print("1. check rows: new measurement / packaged measurement")
    print(f"{'model':<12}{'mode':<11}{'dtype':<6}{'batch':>6}{'latency':>10}{'memory':>9}{'energy':>9}")
    for r in new.rows:
        if r.model in seen and key(r) in ref:
            o = ref[key(r)]
            print(f"{r.model:<12}{r.mode:<11}{r.dtype:<6}{r.batch:>6}{r.latency_ms / o.latency_ms:>10.2f}"
                  f"{r.memory_mb / o.memory_mb:>9.2f}{r.energy_j / o.energy_j:>9.2f}")
    test = [i for i, r in enumerate(new.rows) if r.model not in seen]
    ds = new.subset(test)
    print(f"\n2. {len(ds)} rows of {len(ds.families())} unseen architectures: {', '.join(ds.families())}\n")
    graphs = ds.graphs(progress=False)
    dev = get_device("h200")
    y = np.asarray([[r.target(t) for t in TARGETS] for r in ds.rows])
    print(f"{'predictor':<12}{'target':<12}{'MAPE %':>8}{'RMSE':>10}{'tau':>7}{'Acc10 %':>9}")
    per_model: dict[str, dict[str, list]] = {}
    for name in a.predictors.split(","):
        pred = get_predictor(name)
        if a.host and name == "timeline":
            pred = pred.with_host(a.host)
        ests = pred.predict_many(graphs, dev)
        p = np.asarray([[getattr(e, t) for t in TARGETS] for e in ests])
        for j, t in enumerate(TARGETS):
            m = report(y[:, j], p[:, j])
            print(f"{name:<12}{t:<12}{m['mape']:>8.1f}{m['rmse']:>10.2f}{m['kendall_tau']:>7.2f}{m['acc10']:>9.1f}")
        errs = defaultdict(list)
        for r, yy, pp in zip(ds.rows, y[:, 0], p[:, 0]):
            errs[r.family].append(abs(pp - yy) / yy * 100)
        per_model[name] = {f: float(np.mean(v)) for f, v in errs.items()}
    print("\nlatency MAPE % per unseen architecture")
    names = a.predictors.split(",")
    print(f"{'family':<28}" + "".join(f"{n:>12}" for n in names))
    for fam in ds.families():
        print(f"{fam:<28}" + "".join(f"{per_model[n][fam]:>12.1f}" for n in names))


if __name__ == "__main__":
    main()
