"""Few-shot adaptation of the GNN + LM predictor (gnn-llm) versus DIPPM.

    PYTHONPATH=. python benchmarks/gnn_llm_fewshot.py [--shots 8 16 32 64] [--repeats 3] [--test 40]
                                                     [--family resnet] [--family-shots 32] [--epochs 60] [--gnn-epochs 60]
                                                     [--variants all|NAME,...]

1. New device (mirrors ``benchmarks/transfer_cpu.py``): both models are
   trained on all H200 vision rows, then adapted to the CPU rows
   (``PerfDataset.load(device="cpu")``, latency only) with k shots.  Each
   repeat draws a fixed test set of ``--test`` rows; the first k of the
   remaining rows are the shots, so every k is scored on the same rows.
2. New architecture family: one family of the H200 rows is held out, both
   models are trained on the rest and adapted with ``--family-shots`` rows of
   that family (drawn per repeat), scored on its remaining rows.

Compared: the analytic model; DIPPM (GraphSAGE) zero-shot, fine-tuned
(``fit(init_from=...)``) and trained from scratch on the shots; and the five
ch. 7 ablation variants of ``benchmarks/gnn_llm.py`` (GIN+MLP, GIN+MiniLM,
GNN+LM without pretraining, with stage 1, with stages 1+2), each zero-shot
and fine-tuned the same way (GIN, LoRA, projection, head and normalization
copied).  Stage 1 is the shipped GraphMAE encoder (``costmodel pretrain
--method graphmae``).  The LM is the small random-weight GPT-2 (no language
knowledge), so the sizes and epochs are CPU-friendly.
"""

from __future__ import annotations

import argparse
import random
import time
import warnings
from dataclasses import replace

import numpy as np

from costmodel.datasets import PerfDataset
from costmodel.training import acc_within, mape
from costmodel.predictors import ARTIFACTS_DIR as _ARTIFACTS, GNNConfig, GNNPredictor
from costmodel.predictors import GNNLLMConfig, GNNLLMPredictor
from costmodel.predictors import GraphMAE
from gnn_llm import VARIANTS, _variant

DIPPM = ("dippm zero-shot", "dippm fine-tuned", "dippm scratch")


def _score(y, pred):
    return mape(y, pred), acc_within(y, pred, 0.10)


def _sources(ds, cache, rows, variants, base, mae):
    """Each variant's predictor trained on ``rows`` of ``ds``, plus DIPPM."""
    out = {}
    for v in variants:
        cfg, enc = _variant(v, base, mae, summary_epochs=1)
        out[v] = GNNLLMPredictor(cfg).fit(ds, rows, encoder=enc, progress=False, cached=cache)
    return out


def _compare(ds, cache, train, test, llm_srcs, gnn_src, gnn_cfg, *, epochs, gnn_epochs, seed):
    """Scores of every model on ``test`` after adapting on ``train`` (row indices of ``ds``)."""
    y = np.asarray([ds[i].latency_ms for i in test])
    items = [cache[i] for i in test]
    ft_gnn = GNNPredictor(replace(gnn_cfg, epochs=gnn_epochs, lr=gnn_cfg.lr / 2, seed=seed)).fit(
        ds, train, progress=False, cached=cache, init_from=gnn_src)
    sc = GNNPredictor(replace(gnn_cfg, epochs=gnn_epochs, seed=seed)).fit(ds, train, progress=False, cached=cache)
    preds = {
        "analytic": np.asarray([e.latency_ms for _, e in items]),
        "dippm zero-shot": gnn_src._predict_features(items)[:, 0],
        "dippm fine-tuned": ft_gnn._predict_features(items)[:, 0],
        "dippm scratch": sc._predict_features(items)[:, 0],
    }
    for v, src in llm_srcs.items():
        ft = GNNLLMPredictor(replace(src.config, epochs=epochs, lr=src.config.lr / 2, seed=seed)).fit(
            ds, train, progress=False, cached=cache, init_from=src)
        preds[f"{v} | zero-shot"] = src._predict_features(items)[:, 0]
        preds[f"{v} | fine-tuned"] = ft._predict_features(items)[:, 0]
    return {k: _score(y, v) for k, v in preds.items()}


def _table(title, rows, key_name):
    print(f"\n{title}")
    print(f"  {key_name:>6}  {'model':<44}{'MAPE %':>9}{'Acc10 %':>9}")
    for k, name, m, acc in rows:
        print(f"  {k:>6}  {name:<44}{m:>9.1f}{acc:>9.1f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shots", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--test", type=int, default=40, help="held-out CPU rows per repeat")
    ap.add_argument("--family", default="resnet", help="H200 family held out for the new-architecture part")
    ap.add_argument("--family-shots", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=60, help="gnn-llm fine-tuning epochs")
    ap.add_argument("--gnn-epochs", type=int, default=60, help="DIPPM fine-tuning / from-scratch epochs")
    ap.add_argument("--source-epochs", type=int, default=15, help="gnn-llm epochs on the source rows")
    ap.add_argument("--variants", default="all", help="comma-separated gnn-llm variants (default: all five)")
    a = ap.parse_args(argv)
    variants = VARIANTS if a.variants == "all" else tuple(a.variants.split(","))
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise SystemExit(f"unknown variants {bad}; choose from {list(VARIANTS)}")
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    t_start = time.perf_counter()

    h200 = PerfDataset.load()
    cpu = PerfDataset.load(device="cpu")
    print(f"H200 rows {len(h200)}, CPU rows {len(cpu)} ({cpu[0].device})")
    mae = GraphMAE.load(_ARTIFACTS / "graphmae")
    base = dict(gnn_hidden=mae.config.hidden, gnn_layers=mae.config.layers, epochs=a.source_epochs, lr=1e-3,
                batch_size=16, targets=("latency_ms",))
    gnn_cfg = GNNConfig(targets=("latency_ms",))
    feat = GNNLLMPredictor(GNNLLMConfig(**base))  # the same featurization as DIPPM with use_analytic=True
    h_cache = {i: feat.features(h200.graph(i), r.device, r.mode) for i, r in enumerate(h200.rows)}
    c_cache = {i: feat.features(cpu.graph(i), r.device, r.mode) for i, r in enumerate(cpu.rows)}
    print(f"featurized in {time.perf_counter() - t_start:.0f} s")
    models = ["analytic", *DIPPM] + [f"{v} | {w}" for v in variants for w in ("zero-shot", "fine-tuned")]

    # ---------------------------------------------------------- new device
    t0 = time.perf_counter()
    llm_srcs = _sources(h200, h_cache, None, variants, base, mae)
    gnn_src = GNNPredictor(gnn_cfg).fit(h200, progress=False, cached=h_cache)
    print(f"source models (all H200 rows) trained in {time.perf_counter() - t0:.0f} s")
    curve = {}
    for k in a.shots:
        res = {m: [] for m in models}
        for rep in range(a.repeats):
            idx = list(range(len(cpu)))
            random.Random(rep).shuffle(idx)
            te, pool = idx[:a.test], idx[a.test:]
            if k > len(pool):
                raise SystemExit(f"{k} shots need {k + a.test} CPU rows; there are {len(cpu)}")
            for m, v in _compare(cpu, c_cache, pool[:k], te, llm_srcs, gnn_src, gnn_cfg,
                                 epochs=a.epochs, gnn_epochs=a.gnn_epochs, seed=rep).items():
                res[m].append(v)
        curve[k] = {m: np.mean(vals, axis=0) for m, vals in res.items()}
        print(f"  {k} shots done ({time.perf_counter() - t_start:.0f} s)", flush=True)
    print(f"\nH200 -> CPU latency, {a.test} held-out rows, mean over {a.repeats} draws: MAPE % / Acc(10%) % "
          "per number of shots")
    print(f"  {'model':<44}" + "".join(f"{f'{k} shots':>16}" for k in a.shots))
    for m in models:
        print(f"  {m:<44}" + "".join(f"{curve[k][m][0]:>8.1f} / {curve[k][m][1]:5.1f}" for k in a.shots))

    # ---------------------------------------------------- new architecture
    fam_idx = [i for i, r in enumerate(h200.rows) if r.family == a.family]
    rest = [i for i in range(len(h200)) if i not in set(fam_idx)]
    if a.family_shots >= len(fam_idx):
        raise SystemExit(f"family {a.family!r} has {len(fam_idx)} rows; --family-shots must be fewer")
    t0 = time.perf_counter()
    llm_srcs = _sources(h200, h_cache, rest, variants, base, mae)
    gnn_src = GNNPredictor(gnn_cfg).fit(h200, rest, progress=False, cached=h_cache)
    print(f"\nsource models without {a.family} ({len(rest)} rows) trained in {time.perf_counter() - t0:.0f} s")
    res = {m: [] for m in models}
    for rep in range(a.repeats):
        idx = fam_idx[:]
        random.Random(rep).shuffle(idx)
        tr, te = idx[:a.family_shots], idx[a.family_shots:]
        for m, v in _compare(h200, h_cache, tr, te, llm_srcs, gnn_src, gnn_cfg,
                             epochs=a.epochs, gnn_epochs=a.gnn_epochs, seed=rep).items():
            res[m].append(v)
    rows = [(a.family_shots, m, *np.mean(v, axis=0)) for m, v in res.items()]
    _table(f"New family on the H200: {a.family} held out, adapted with {a.family_shots} of its "
           f"{len(fam_idx)} rows, tested on the other {len(fam_idx) - a.family_shots}, mean over {a.repeats} "
           "draws", rows, "shots")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
