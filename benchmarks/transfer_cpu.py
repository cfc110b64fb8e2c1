"""Transfer to a new device with few samples (thesis 5.6.2): H200 -> this CPU.

    python benchmarks/transfer_cpu.py [--shots 8 16 32 64] [--repeats 5] [--test 40] [--epochs 60]

The CPU rows (``costmodel/data/cpu``, measured on this machine with
``costmodel collect``) have latency labels only.  Each repeat draws a fixed
test set of ``--test`` rows; for each shot count k the first k of the
remaining rows (same order for every k) are the training set, so every k is
scored on the same test rows.  Compared on latency MAPE / Acc(10 %):

* analytic: the analytic model with the nominal ``cpu`` device entry;
* zero-shot: DIPPM trained on all H200 rows, applied to the CPU unchanged;
* fine-tuned: the same model, fine-tuned on the k CPU rows (``init_from``);
* scratch: the same architecture trained on the k CPU rows only.
"""

from __future__ import annotations

import argparse
import random
import warnings
from dataclasses import replace

import numpy as np

from costmodel.datasets import PerfDataset
from costmodel.training import acc_within, mape
from costmodel.predictors import GNNConfig, GNNPredictor


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shots", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--test", type=int, default=40, help="held-out CPU rows per repeat (default 40)")
    ap.add_argument("--epochs", type=int, default=60)
    a = ap.parse_args()
    warnings.simplefilter("ignore")

    h200 = PerfDataset.load()
    cpu = PerfDataset.load(device="cpu")
    print(f"H200 rows {len(h200)}, CPU rows {len(cpu)} ({cpu[0].device})")
    cfg = GNNConfig()
    src = GNNPredictor(cfg)
    h_cache = {i: src.features(g, r.device, r.mode) for i, (g, r) in enumerate(zip(h200.graphs(), h200))}
    src.fit(h200, progress=False, cached=h_cache)
    c_cache = {i: src.features(g, r.device, r.mode) for i, (g, r) in enumerate(zip(cpu.graphs(), cpu))}
    y = np.asarray([r.latency_ms for r in cpu])
    analytic = np.asarray([c_cache[i][1].latency_ms for i in range(len(cpu))])
    zero = src._predict_features([c_cache[i] for i in range(len(cpu))])[:, 0]

    rows = []
    for k in a.shots:
        res = {"analytic": [], "zero-shot": [], "fine-tuned": [], "scratch": []}
        for rep in range(a.repeats):
            idx = list(range(len(cpu)))
            random.Random(rep).shuffle(idx)
            te, pool = idx[:a.test], idx[a.test:]
            if k > len(pool):
                raise SystemExit(f"{k} shots need {k + a.test} CPU rows; there are {len(cpu)}")
            tr = pool[:k]
            ft = GNNPredictor(replace(cfg, epochs=a.epochs, lr=cfg.lr / 2, seed=rep)).fit(
                cpu, tr, progress=False, cached=c_cache, init_from=src)
            sc = GNNPredictor(replace(cfg, epochs=a.epochs, seed=rep)).fit(cpu, tr, progress=False, cached=c_cache)
            items = [c_cache[i] for i in te]
            for name, pred in (("analytic", analytic[te]), ("zero-shot", zero[te]),
                               ("fine-tuned", ft._predict_features(items)[:, 0]),
                               ("scratch", sc._predict_features(items)[:, 0])):
                res[name].append((mape(y[te], pred), acc_within(y[te], pred, 0.10)))
        for name, vals in res.items():
            m = np.mean(vals, axis=0)
            rows.append((k, name, m[0], m[1]))

    print(f"\nCPU latency on held-out rows, mean over {a.repeats} draws")
    print(f"  {'shots':>5}  {'model':<12}{'MAPE %':>9}{'Acc10 %':>9}")
    for k, name, m, acc in rows:
        print(f"  {k:>5}  {name:<12}{m:>9.1f}{acc:>9.1f}")


if __name__ == "__main__":
    main()
