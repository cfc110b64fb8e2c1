"""The operator model on this CPU: per-operator and whole-model accuracy on held-out families.

    python benchmarks/timeline_cpu.py [--data DIR] [--skip-dippm] [--backends xgb mlp]
    python benchmarks/timeline.py --cpu          # the same tables

Data: the rows profiled per operator with ``costmodel collect --ops --threads 1``
(``costmodel/data/cpu/ops_vision.jsonl``, ``ops_llm.jsonl`` and their operator
rows ``ops.jsonl.gz``).  Prints, leave-one-family-out (every family held out in
turn, pooled) and over seeded random 70/30 splits of the runs:

1. per-operator device time: MAPE and time-weighted error of the held-out
   operators, XGBoost against an MLP (the choice of the shipped backend);
2. whole-model latency: the operators' predicted times plus host costs fitted
   on the training rows, against DIPPM trained on the same CPU rows and against
   the analytic roofline with the nominal ``cpu`` entry, with Kendall tau and
   Acc(10 %), split into inference and training rows;
3. how much of the profiled time the operator rows cover (mapping quality), and the
   runs physics rules out (a batch-1 training step under twice the batch-1 inference call).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / "costmodel" / "data"


def fit_and_predict(train, test, ds, graphs, ops, figs, backend, label="device_us", weight_power=0.0):
    """Train the operator model and host costs on ``train`` rows; predict ``test`` rows and their ops."""
    from costmodel.predictors import OpTimeline, op_arrays

    tl = OpTimeline.fit(ds, graphs, ops, figs, train, backend=backend, label=label, weight_power=weight_power)
    lat = {i: tl.predict(graphs[i], ds.rows[i].mode)["latency_ms"] for i in test}
    Xt, Bt, Yt, Rt = op_arrays(test, ops, figs, label, modes=[r.mode for r in ds.rows])
    return lat, (tl.model.predict_us(Xt, Bt) if len(Xt) else np.zeros(0)), Yt, Rt, tl.host


def dippm(train, test, ds, graphs):
    from costmodel.predictors import GNNConfig, GNNPredictor

    p = GNNPredictor(GNNConfig(targets=("latency_ms",)))
    cache = {i: p.features(graphs[i], "cpu", ds.rows[i].mode) for i in list(train) + list(test)}
    p.fit(ds, train, progress=False, cached=cache)
    pred = p._predict_features([cache[i] for i in test])[:, 0]
    return dict(zip(test, pred))


def _metrics(y, p):
    from costmodel.training import report

    return report(np.asarray(y), np.asarray(p))


def _line(label, y, p):
    m = _metrics(y, p)
    return f"{label:<40}{len(y):>6}{m['mape']:>9.1f}{m['kendall_tau']:>7.2f}{m['acc10']:>9.1f}"


def _op_line(label, y, p):
    y, p = np.asarray(y), np.asarray(p)
    ape = np.abs(p - y) / np.maximum(y, 1e-9)
    weighted = float(np.abs(p - y).sum() / y.sum() * 100)
    return f"{label:<40}{len(y):>8}{np.mean(ape) * 100:>9.1f}{np.median(ape) * 100:>9.1f}{weighted:>11.1f}"


def _consistency(ds) -> None:
    """Runs that physics rules out: a training step runs the forward pass and a backward of about twice its
    work (then the optimizer), so at the same batch it takes at least twice the inference call. A model
    whose batch-1 inference took more than half its batch-1 step was measured while the machine ran slower."""
    infer, train = {}, {}
    for r in ds.rows:
        if r.kind == "vision" and r.batch == 1:
            (infer if r.mode == "inference" else train)[r.model] = r.latency_ms
    odd = sorted((train[m] / infer[m], m) for m in infer if m in train and train[m] < 2.0 * infer[m])
    print("consistency: batch-1 training steps under twice the batch-1 inference call (physically at least 2x): "
          + (", ".join(f"{m} {ratio:.2f}x" for ratio, m in odd) if odd else "none"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding cpu/ops_*.jsonl (default: packaged)")
    ap.add_argument("--backends", nargs="+", default=["xgb", "mlp"], choices=["xgb", "mlp"])
    ap.add_argument("--seeds", type=int, default=2, help="random 70/30 splits (default 2)")
    ap.add_argument("--skip-dippm", action="store_true", help="leave DIPPM out (it trains once per held-out family)")
    ap.add_argument("--label", default="device_us", choices=["device_us", "cpu_us"],
                    help="operator label: its own time, or with the dispatch of its wrappers (default device_us)")
    ap.add_argument("--weight-power", type=float, default=0.0,
                    help="train with operator weights time^P (default 0: every operator counts the same)")
    ap.add_argument("--skip-random", action="store_true", help="only leave-one-family-out")
    ap.add_argument("--with-excluded", action="store_true",
                    help="keep the runs flagged as measured while the machine ran slower (default: left out)")
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    t0 = time.time()
    from costmodel.predictors import load_op_dataset

    ds, graphs, ops, figs = load_op_dataset(a.data, progress=True, include_excluded=a.with_excluded)
    n_ops = sum(len(o) for o in ops)
    fams = ds.families()
    print(f"CPU rows profiled per operator: {len(ds)} runs ({sum(r.kind == 'vision' for r in ds.rows)} vision, "
          f"{sum(r.kind == 'llm' for r in ds.rows)} transformer), {len(fams)} families, {n_ops} labelled operators "
          f"(forward {sum(p == 'forward' for o in ops for _, p, _, _ in o)}, backward "
          f"{sum(p == 'backward' for o in ops for _, p, _, _ in o)}); device {figs.name}: "
          f"{figs.gflops:.0f} GFLOP/s fp32, {figs.gbps:.0f} GB/s measured")
    cover = [r.raw.get("ops", {}) for r in ds.rows]
    share = [c.get("unmapped_share") for c in cover if c.get("unmapped_share") is not None]
    work = [c["work_nodes_mapped"] / c["work_nodes"] for c in cover if c.get("work_nodes")]
    over = [c["profiler_overhead"] for c in cover if c.get("profiler_overhead") is not None]
    print(f"mapping: work nodes mapped {np.mean(work) * 100:.1f} % (min {np.min(work) * 100:.1f} %), profiled time on "
          f"unmapped operators {np.mean(share) * 100:.2f} % (max {np.max(share) * 100:.1f} %); profiler overhead "
          f"median {np.median(over) * 100:.1f} % (range {np.min(over) * 100:.1f} .. {np.max(over) * 100:.1f} %)")
    from costmodel.datasets import PerfDataset

    every = PerfDataset.load(a.data, device="cpu", kinds=("vision", "llm"), prefix="ops_", method="trace")
    _consistency(every)
    n_ex = sum(bool(r.raw.get("excluded")) for r in every.rows)
    print(f"runs flagged as measured while the machine ran slower: {n_ex}, "
          + ("kept in every fit and score (--with-excluded)" if a.with_excluded else
             "left out of every fit and score (--with-excluded keeps them)"))

    splits = {"leave-one-family-out": [(f, [i for i, r in enumerate(ds.rows) if r.family != f],
                                        [i for i, r in enumerate(ds.rows) if r.family == f]) for f in fams]}
    rnd = []
    for s in range(a.seeds):
        idx = list(range(len(ds)))
        random.Random(s).shuffle(idx)
        k = round(0.3 * len(idx))
        rnd.append((f"seed{s}", sorted(idx[k:]), sorted(idx[:k])))
    if not a.skip_random:
        splits["random 70/30"] = rnd

    for name, folds in splits.items():
        print(f"\n== {name} ({len(folds)} folds)")
        print(f"{'per-operator device time':<40}{'ops':>8}{'MAPE %':>9}{'MdAPE %':>9}{'weighted %':>11}")
        lat: dict[str, dict[int, float]] = defaultdict(dict)
        yops: dict[str, list] = defaultdict(list)
        pops: dict[str, list] = defaultdict(list)
        for f, tr, te in folds:
            for b in a.backends:
                pl, po, yo, ro, _ = fit_and_predict(tr, te, ds, graphs, ops, figs, b, a.label, a.weight_power)
                for i, v in pl.items():
                    lat[f"timeline ({b})"][i] = v
                yops[b] += list(yo)
                pops[b] += list(po)
            if not a.skip_dippm:
                for i, v in dippm(tr, te, ds, graphs).items():
                    lat["DIPPM (same CPU rows)"][i] = v
        for b in a.backends:
            print(_op_line(f"  {b}", yops[b], pops[b]))
        from costmodel.predictors import get_predictor

        ana = get_predictor("analytic")
        print(f"{'whole-model latency':<40}{'rows':>6}{'MAPE %':>9}{'tau':>7}{'Acc10 %':>9}")
        test_rows = sorted(next(iter(lat.values())).keys())
        ests = ana.predict_many([graphs[i] for i in test_rows], "cpu")
        lat["analytic (nominal cpu entry)"] = {i: e.latency_ms for i, e in zip(test_rows, ests)}
        for label, pred in lat.items():
            y = [ds.rows[i].latency_ms for i in test_rows]
            print(_line(f"  {label}", y, [pred[i] for i in test_rows]))
            if label.startswith("timeline") and name.startswith("leave"):
                per = []
                for f in fams:
                    ii = [i for i in test_rows if ds.rows[i].family == f]
                    per.append(f"{f} {_metrics([ds.rows[i].latency_ms for i in ii], [pred[i] for i in ii])['mape']:.0f}")
                print("      per held-out family (MAPE %): " + ", ".join(per))
            for sub in ("inference", "training"):
                ii = [i for i in test_rows if ds.rows[i].mode == sub]
                if ii and label.startswith("timeline"):
                    print(_line(f"    {sub}", [ds.rows[i].latency_ms for i in ii], [pred[i] for i in ii]))
    print(f"\n({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
