"""Prediction-interval coverage and MIG recommendations on held-out rows.

    python benchmarks/intervals_mig.py [--seeds 5] [--coverage 0.9] [--predictor trappm|dippm]

For each seeded random 70/30 split, the predictor (TraPPM, the default, or
DIPPM) is trained with split-conformal
calibration inside the 70 % (``fit_calibrated``: 20 % of it held out for
calibration, then refit on all of it) and evaluated on the 30 %:

* coverage: share of held-out measurements inside the interval, per target,
  and the interval's mean relative width;
* MIG: for A100-40/80, H100-80 and H200-141, how often the recommended slice
  (predicted memory plus the interval's margin) holds the measured
  ``nvml_used_mb``, and how often it is the smallest slice that does; the
  same for the thesis rule (point prediction, no margin).  Measured memory
  comes from the H200; the same software stack needs about the same memory
  on the other GPUs, which is the assumption behind sizing them from it.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from costmodel.datasets import PerfDataset
from costmodel.devices import get_device
from costmodel.estimate import recommend_mig
from costmodel.predictors import GraphAutoencoder
from costmodel.predictors import ARTIFACTS_DIR as _ARTIFACTS, DIPPMPredictor, GNNConfig
from costmodel.predictors import TraPPMPredictor, trappm_config

MIG_DEVICES = ("A100-SXM4-40GB", "A100-SXM4-80GB", "H100-SXM5-80GB", "H200-SXM5-141GB")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--coverage", type=float, default=0.9)
    ap.add_argument("--predictor", default="trappm", choices=("trappm", "dippm"))
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    ds = PerfDataset.load()
    graphs = ds.graphs(progress=True)
    if a.predictor == "trappm":
        enc = GraphAutoencoder.load(_ARTIFACTS / "trappm")

        def make(seed):
            return TraPPMPredictor(trappm_config(seed=seed), enc)
    else:
        def make(seed):
            return DIPPMPredictor(GNNConfig(seed=seed))
    base = make(0)
    TARGETS = base.targets
    cache = {i: base.features(g, r.device, r.mode) for i, (g, r) in enumerate(zip(graphs, ds))}

    cover = {t: [] for t in TARGETS}
    width = {t: [] for t in TARGETS}
    mig = {(d, rule): {"fits": [], "smallest": [], "none": []} for d in MIG_DEVICES for rule in ("interval", "point")}
    for seed in range(a.seeds):
        tr, te = ds.random_split(0.3, seed=seed)
        p = make(seed).fit_calibrated(ds, tr, coverage=a.coverage, progress=False, cached=cache)
        pred = p._predict_features([cache[i] for i in te])
        q = np.asarray(p.intervals["log_halfwidth"])
        meas = np.asarray([[ds[i].target(t) for t in TARGETS] for i in te])
        lo, hi = pred * np.exp(-q), pred * np.exp(q)
        for k, t in enumerate(TARGETS):
            cover[t].append(float(np.mean((meas[:, k] >= lo[:, k]) & (meas[:, k] <= hi[:, k]))))
            width[t].append(float(np.mean((hi[:, k] - lo[:, k]) / pred[:, k])))
        for d in MIG_DEVICES:
            dev = get_device(d)
            for j in range(len(te)):
                m_meas, m_pred, m_hi = meas[j, 1], pred[j, 1], hi[j, 1]
                ideal = recommend_mig(dev, m_meas)
                for rule, margin in (("interval", m_hi - m_pred), ("point", 0.0)):
                    pick = recommend_mig(dev, m_pred, margin_mb=margin)
                    rec = mig[(d, rule)]
                    rec["none"].append(pick is None)
                    rec["fits"].append(pick is not None and pick.capacity_mb >= m_meas)
                    rec["smallest"].append(pick is not None and ideal is not None and pick.name == ideal.name)
        print(f"  seed {seed}: done", flush=True)

    print(f"\n{a.predictor}: conformal intervals (target coverage {a.coverage:.0%}), mean over {a.seeds} random 70/30 splits")
    print(f"  {'target':<12}{'coverage %':>12}{'mean width %':>14}")
    for t in TARGETS:
        print(f"  {t:<12}{100 * np.mean(cover[t]):>12.1f}{100 * np.mean(width[t]):>14.1f}")

    print("\nMIG recommendation on held-out rows (measured nvml_used_mb as truth)")
    print(f"  {'device':<18}{'rule':<10}{'fits %':>8}{'smallest %':>12}{'no slice %':>12}")
    for d in MIG_DEVICES:
        for rule in ("interval", "point"):
            rec = mig[(d, rule)]
            print(f"  {d:<18}{rule:<10}{100 * np.mean(rec['fits']):>8.1f}{100 * np.mean(rec['smallest']):>12.1f}"
                  f"{100 * np.mean(rec['none']):>12.1f}")


if __name__ == "__main__":
    main()
