"""Accuracy of every predictor and baseline on the measured H200 vision rows.

    python benchmarks/accuracy.py [--seeds 5] [--epochs 200] [--skip-lofo] [--models sage,gcn,...]

Protocols (same splits for every model):

* random: seeded 70/30 split, metrics averaged over ``--seeds`` seeds (thesis protocol);
* leave-one-family-out (LOFO): train on 12 families, test on the 13th, every
  family in turn; metrics over the pooled held-out predictions.

For latency, memory and energy it prints MAPE, RMSE, Kendall tau and
Acc(10 %) of: the analytic predictor (no training), an MLP and XGBoost on the
static features, GCN, GAT, GIN, the NNLQP-style GNN (GraphSAGE, sum readout,
MSE, no physics feature), GraphSAGE (DIPPM), TraPPM (DIPPM's network plus the
frozen pretrained graph-autoencoder embedding; it predicts power, energy is
power x time), and DIPPM without the
analytic estimate as feature/residual (the ablation that tests whether a
learned residual over physics generalizes better).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import defaultdict

import numpy as np

from costmodel.datasets import PerfDataset
from costmodel.training import report
from costmodel.predictors import GraphAutoencoder
from costmodel.predictors import ARTIFACTS_DIR as _ARTIFACTS, NNLQP, TARGETS, GNNConfig, GNNPredictor
from costmodel.predictors import TraPPMPredictor, trappm_config

ENCODER: list = []  # the pretrained graph autoencoder, loaded when trappm is benchmarked

MODELS = {
    "analytic": None,
    "mlp-static": dict(conv="none"),
    "xgb-static": "xgb",
    "gcn": dict(conv="gcn"),
    "gat": dict(conv="gat"),
    "gin": dict(conv="gin"),
    "nnlqp": dict(NNLQP),
    "sage-dippm": dict(conv="sage"),
    "sage-no-analytic": dict(conv="sage", use_analytic=False, residual=False),
    "trappm": "trappm",
}


def make(name, epochs, seed):
    spec = MODELS[name]
    if spec is None:
        return None
    if spec == "xgb":
        from costmodel.predictors import XGBStaticPredictor

        return XGBStaticPredictor(seed=seed)
    if spec == "trappm":
        return TraPPMPredictor(trappm_config(epochs=epochs, seed=seed), ENCODER[0])
    return GNNPredictor(GNNConfig(epochs=epochs, seed=seed, **spec))


def predict_rows(model, ds, idx, cache):
    if model is None:  # analytic
        return np.asarray([[getattr(cache[i][1], t) for t in TARGETS] for i in idx])
    pred = model._predict_features([cache[i] for i in idx])
    if "power_w" in model.targets:  # TraPPM predicts power: energy = power x time
        pred = pred.copy()
        pred[:, 2] = pred[:, model.targets.index("power_w")] * pred[:, 0] / 1e3
    return pred


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=GNNConfig().epochs)
    ap.add_argument("--skip-lofo", action="store_true")
    ap.add_argument("--skip-random", action="store_true")
    ap.add_argument("--encoder", default=None, help="pretrained encoder for trappm (default: the shipped one)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of: " + ", ".join(MODELS))
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    names = [m.strip() for m in a.models.split(",") if m.strip()]
    for n in names:
        if n not in MODELS:
            raise SystemExit(f"unknown model {n!r}; choose from {list(MODELS)}")

    ds = PerfDataset.load()
    t0 = time.perf_counter()
    graphs = ds.graphs(progress=True)
    feat_with = GNNPredictor(GNNConfig(use_analytic=True))
    feat_without = GNNPredictor(GNNConfig(use_analytic=False, residual=False))
    cache_with = {i: feat_with.features(g, r.device, r.mode) for i, (g, r) in enumerate(zip(graphs, ds))}
    cache_without = {i: feat_without.features(g, r.device, r.mode) for i, (g, r) in enumerate(zip(graphs, ds))}
    cache_trappm = None
    if "trappm" in names:
        ENCODER.append(GraphAutoencoder.load(a.encoder or _ARTIFACTS / "trappm"))
        keys = list(cache_with)
        emb = TraPPMPredictor(encoder=ENCODER[0]).with_embeddings([cache_with[i] for i in keys])
        cache_trappm = dict(zip(keys, emb))
    print(f"{len(ds)} rows, {len(ds.families())} families; features ready in {time.perf_counter() - t0:.1f} s")
    y_all = np.asarray([[r.target(t) for t in TARGETS] for r in ds])

    protocols = []
    for s in range(0 if a.skip_random else a.seeds):
        tr, te = ds.random_split(0.3, seed=s)
        protocols.append(("random", s, tr, te))
    if not a.skip_lofo:
        for fam, tr, te in ds.leave_one_family_out():
            protocols.append(("lofo", fam, tr, te))

    results = defaultdict(lambda: defaultdict(list))  # (model, protocol) -> list of (idx, pred)
    fit_time = defaultdict(list)
    for name in names:
        spec = MODELS[name]
        if spec == "trappm":
            cache = cache_trappm
        elif isinstance(spec, dict) and not spec.get("use_analytic", True):
            cache = cache_without
        else:
            cache = cache_with
        for proto, key, tr, te in protocols:
            seed = key if proto == "random" else 0
            model = make(name, a.epochs, seed)
            if model is not None:
                t = time.perf_counter()
                model.fit(ds, tr, progress=False, cached=cache)
                fit_time[name].append(time.perf_counter() - t)
            pred = predict_rows(model, ds, te, cache)
            results[(name, proto)]["runs"].append((te, pred))
        print(f"  {name}: done ({np.mean(fit_time[name]) if fit_time[name] else 0:.1f} s per fit)", flush=True)

    for proto, title in (("random", f"random 70/30, mean over {a.seeds} seeds"), ("lofo", "leave-one-family-out (pooled)")):
        if (proto == "lofo" and a.skip_lofo) or (proto == "random" and a.skip_random):
            continue
        for ti, t in enumerate(TARGETS):
            print(f"\n{t} — {title}")
            print(f"  {'model':<22}{'MAPE %':>9}{'RMSE':>11}{'Kendall':>9}{'Acc10 %':>9}")
            for name in names:
                runs = results[(name, proto)]["runs"]
                if proto == "random":
                    ms = [report(y_all[te, ti], p[:, ti]) for te, p in runs]
                    m = {k: float(np.mean([x[k] for x in ms])) for k in ms[0]}
                else:
                    te = np.concatenate([te for te, _ in runs])
                    p = np.concatenate([p[:, ti] for _, p in runs])
                    m = report(y_all[te, ti], p)
                print(f"  {name:<22}{m['mape']:>9.2f}{m['rmse']:>11.4g}{m['kendall_tau']:>9.3f}{m['acc10']:>9.1f}")

    if not a.skip_lofo:
        print("\nlatency MAPE % per held-out family (LOFO)")
        fams = [k for p, k, _, _ in protocols if p == "lofo"]
        print(f"  {'family':<14}" + "".join(f"{n[:12]:>13}" for n in names))
        for fi, fam in enumerate(fams):
            vals = []
            for name in names:
                te, p = results[(name, "lofo")]["runs"][fi]
                vals.append(report(y_all[te, 0], p[:, 0])["mape"])
            print(f"  {fam:<14}" + "".join(f"{v:>13.1f}" for v in vals))


if __name__ == "__main__":
    main()
