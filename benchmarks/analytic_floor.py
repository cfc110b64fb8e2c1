"""The analytic predictor against the measured H200 rows: the accuracy floor.

Every learned predictor must beat these numbers.  Prints, for latency,
memory (NVML, what a MIG slice must hold) and energy: MAPE, RMSE, Kendall tau
and Acc(10%) overall and per workload mode, and MAPE per model family; once
with datasheet H200 numbers and once with the measured H200 profile
(costmodel/data/h200/hardware.json).

    python benchmarks/analytic_floor.py [--llm] [--method export|trace]

The first run featurizes every row (a few minutes; cached afterwards).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

from costmodel.datasets import PerfDataset
from costmodel.devices import get_device
from costmodel.training import mape, report
from costmodel.predictors import get_predictor

TARGETS = ("latency_ms", "memory_mb", "energy_j")


def table(title, rows, cols):
    print(f"\n{title}")
    print(f"  {cols[0]:<28}" + "".join(f"{c:>14}" for c in cols[1:]))
    for name, vals in rows:
        print(f"  {name:<28}" + "".join(f"{v:>14.3g}" if isinstance(v, float) else f"{v!s:>14}" for v in vals))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llm", action="store_true", help="also evaluate transformer forward/prefill rows")
    ap.add_argument("--method", default="export", choices=("export", "trace"))
    a = ap.parse_args()

    kinds = ("vision", "llm") if a.llm else ("vision",)
    ds = PerfDataset.load(kinds=kinds, method=a.method)
    keep = [i for i, r in enumerate(ds) if r.graph_supported]
    ds = ds.subset(keep)
    t0 = time.perf_counter()
    graphs = ds.graphs(progress=True)
    print(f"{len(ds)} rows, {len(ds.families())} families; graphs ready in {time.perf_counter() - t0:.1f} s")

    pred = get_predictor("analytic")
    for label, dev in (("datasheet H200", get_device("h200")), ("measured H200 profile", get_device("h200", measured=True))):
        ests = [pred.predict(g, dev, mode=r.mode) for g, r in zip(graphs, ds)]
        print(f"\n=== analytic predictor, {label} ===")
        rows = []
        for t in TARGETS:
            y = [r.target(t) for r in ds]
            p = [getattr(e, t) for e in ests]
            m = report(y, p)
            rows.append((t, [m["mape"], m["rmse"], m["kendall_tau"], m["acc10"]]))
        table("overall", rows, ["", "MAPE %", "RMSE", "Kendall tau", "Acc(10%) %"])

        groups = defaultdict(list)
        for i, r in enumerate(ds):
            groups[f"{r.mode}/{r.dtype}" + (f"/{r.phase}" if r.phase else "")].append(i)
        rows = []
        for k in sorted(groups):
            idx = groups[k]
            vals = [mape([ds[i].target(t) for i in idx], [getattr(ests[i], t) for i in idx]) for t in TARGETS]
            rows.append((f"{k} (n={len(idx)})", vals))
        table("MAPE % by workload", rows, ["", *TARGETS])

        fam = defaultdict(list)
        for i, r in enumerate(ds):
            fam[r.family].append(i)
        rows = []
        for k in sorted(fam):
            idx = fam[k]
            vals = [mape([ds[i].target(t) for i in idx], [getattr(ests[i], t) for i in idx]) for t in TARGETS]
            rows.append((f"{k} (n={len(idx)})", vals))
        table("MAPE % by family", rows, ["", *TARGETS])


if __name__ == "__main__":
    main()
