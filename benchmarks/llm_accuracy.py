"""Transformer workloads (thesis ch. 6): XGBoost vs the GNN baseline vs the analytic estimate.

    python benchmarks/llm_accuracy.py [--grid] [--train] [--skip-gnn] [--epochs 60]
    python benchmarks/llm_accuracy.py --monotone     # the shipped trees against larger batches, alone and held

Data: the measured H200 transformer rows (``costmodel/data/h200/llm.jsonl``,
206 rows, 12 models).  Protocols:

* stratified 5-fold cross-validation over configurations (thesis protocol):
  each model's rows are dealt evenly into the 5 folds;
* leave-one-model-out: train on 11 models, test on the 12th, in turn.

Targets: throughput (samples/s; tokens/s is the same ratio), memory
(``nvml_used_mb``), energy per sample.  Models:

* analytic: the closed-form roofline of :mod:`costmodel.llm` (latency,
  memory; power = idle + busy share of the dynamic range);
* xgb: XGBoost on roofline-normalized targets (the shipped predictor);
* xgb-raw: the same features, raw log targets (the thesis' formulation);
* gnn: the ch. 6 baseline -- GraphSAGE over the transformer's CostGraph plus
  static features (the library's graph predictor), on the rows that have a
  graph (decode steps are not featurized).

``--grid`` runs the hyperparameter grid (thesis 6.5.3 grid, trimmed to fit a
laptop) on the 5 folds and writes ``costmodel/llm/grid_search.json``;
``--train`` fits the chosen model on every row and writes the shipped
artifact ``costmodel/artifacts/llm-xgb``; ``--refresh-structure`` rebuilds
the shipped graph-structure table of the registry's architectures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from costmodel.datasets import PerfDataset
from costmodel.devices import get_device
from costmodel.predictors import LLM_DEFAULT_PARAMS as DEFAULT_PARAMS, XGBLLMPredictor, workload_of_row
from costmodel.training import report

ROOT = Path(__file__).resolve().parent.parent
GRID = dict(n_estimators=[100, 500, 2000], learning_rate=[0.1, 0.01], max_depth=[3, 5, 8], subsample=[0.75, 1.0])


def stratified_folds(ds, k=5, seed=0):
    """Fold index per row: each model's rows dealt round-robin after a seeded shuffle."""
    fold = np.zeros(len(ds), int)
    by_model = defaultdict(list)
    for i, r in enumerate(ds):
        by_model[r.model].append(i)
    rng = random.Random(seed)
    for m in sorted(by_model):
        idx = by_model[m]
        rng.shuffle(idx)
        start = rng.randrange(k)
        for j, i in enumerate(idx):
            fold[i] = (start + j) % k
    return fold


def physical(pred_lat, pred_mem, pred_pow, ds, idx):
    """(throughput samples/s, memory MB, energy J per sample) from latency/memory/power predictions."""
    b = np.asarray([ds[i].batch for i in idx], float)
    return np.stack([b / (pred_lat / 1e3), pred_mem, pred_pow * pred_lat / 1e3 / b], axis=1)


def _parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", action="store_true", help="run the hyperparameter grid search and record it")
    ap.add_argument("--train", action="store_true", help="fit on all rows and write the shipped artifact")
    ap.add_argument("--skip-gnn", action="store_true")
    ap.add_argument("--epochs", type=int, default=60, help="GNN baseline epochs")
    ap.add_argument("--refresh-structure", action="store_true")
    ap.add_argument("--monotone", action="store_true",
                    help="only count the batch doublings where the shipped trees predict a larger batch faster or "
                         "smaller, alone and as the predictor holds them, then exit")
    return ap.parse_args()


def refresh_structure():
    """Rebuild the shipped graph-structure table of the registry's architectures."""
    from costmodel.llm import list_llms, resolve_llm
    from costmodel.features import STRUCTURE_PATH, write_structure_table

    specs = [resolve_llm(n) for n in list_llms()]
    specs += [workload_of_row(r).spec for r in PerfDataset.load(kinds=("llm",))]
    print(f"structure table: {write_structure_table(specs, STRUCTURE_PATH)} architectures")


def evaluation_protocols(ds):
    """(protocol, key, train idx, test idx): the 5 stratified folds, then leave-one-model-out per model."""
    folds = stratified_folds(ds)
    models = sorted({r.model for r in ds})
    protocols = [("5-fold", k, np.where(folds != k)[0], np.where(folds == k)[0]) for k in range(5)]
    protocols += [("leave-one-model-out", m, np.asarray([i for i, r in enumerate(ds) if r.model != m]),
                   np.asarray([i for i, r in enumerate(ds) if r.model == m])) for m in models]
    return protocols


def grid_search(X, Y, C, ds, dev, y_true, protocols, grid_path):
    """Run the hyperparameter grid on the 5 folds, record it at ``grid_path``, print the best; return its params."""
    results = []
    combos = [dict(zip(GRID, v)) for v in itertools.product(*GRID.values())]
    t = time.perf_counter()
    for p in combos:
        errs = []
        for _, _, tr, te in protocols[:5]:
            m = XGBLLMPredictor(p).fit_arrays(X[tr], Y[tr])
            pr = m.predict_arrays(X[te], [C[i] for i in te], [dev] * len(te))
            phys = physical(pr[:, 0], pr[:, 1], pr[:, 2], ds, te)
            errs.append([report(y_true[te, j], phys[:, j])["mape"] for j in range(3)])
        e = np.mean(errs, axis=0)
        results.append({"params": p, "mape_throughput": round(float(e[0]), 3),
                        "mape_memory": round(float(e[1]), 3), "mape_energy": round(float(e[2]), 3),
                        "mean_mape": round(float(e.mean()), 3)})
    results.sort(key=lambda r: r["mean_mape"])
    params = results[0]["params"]
    grid_path.write_text(json.dumps({
        "protocol": "stratified 5-fold CV over the H200 transformer rows, mean MAPE of throughput, memory, "
                    "energy per sample; roofline-normalized targets",
        "grid": GRID, "chosen": params, "seconds": round(time.perf_counter() - t, 1), "results": results,
    }, indent=1))
    print(f"\ngrid search: {len(combos)} settings x 5 folds in {time.perf_counter() - t:.0f} s; best {params}")
    print(f"  {'n_est':>6}{'lr':>6}{'depth':>6}{'subs':>6}{'thr %':>8}{'mem %':>8}{'energy %':>9}")
    for r in results[:8]:
        p = r["params"]
        print(f"  {p['n_estimators']:>6}{p['learning_rate']:>6}{p['max_depth']:>6}{p['subsample']:>6}"
              f"{r['mape_throughput']:>8.2f}{r['mape_memory']:>8.2f}{r['mape_energy']:>9.2f}")
    return params


def cross_validate(params, X, Y, C, ds, dev, protocols):
    """Analytic, xgb and xgb-raw predictions per protocol: name -> protocol -> list of (te, phys)."""
    preds = defaultdict(dict)  # name -> protocol -> list of (te, phys)
    lat_an = np.asarray([c["latency_ms"] for c in C])
    mem_an = np.asarray([c["memory_mb"] for c in C])
    busy = np.asarray([max(c["compute_ms"], c["memory_ms"]) / c["latency_ms"] for c in C])
    pow_an = dev.idle_power_w + (dev.tdp_w - dev.idle_power_w) * np.clip(busy, 0, 1)

    from costmodel.predictors import train_booster

    raw = np.log(np.stack([[r.latency_ms, r.memory_mb, r.power_w] for r in ds]))
    for proto, key, tr, te in protocols:
        preds["analytic"].setdefault(proto, []).append((te, physical(lat_an[te], mem_an[te], pow_an[te], ds, te)))
        m = XGBLLMPredictor(params).fit_arrays(X[tr], Y[tr])
        pr = m.predict_arrays(X[te], [C[i] for i in te], [dev] * len(te))
        preds["xgb"].setdefault(proto, []).append((te, physical(pr[:, 0], pr[:, 1], pr[:, 2], ds, te)))
        # as the predictor answers: held over smaller batches (and shorter sequences, for memory), and the
        # variant that also holds latency over shorter sequences
        ws = [workload_of_row(ds[i]) for i in te]
        for name, over_seq, hold in (("xgb-held", False, "isotonic"), ("held-max", False, "max"),
                                     ("held-seq", True, "max")):
            m.hold_latency_over_seq, m.latency_hold = over_seq, hold
            hd = m.predict_many(ws, dev)
            preds[name].setdefault(proto, []).append((te, physical(hd[:, 0], hd[:, 1], hd[:, 2], ds, te)))
        # thesis formulation: raw log targets, same features
        out = []
        for j in range(3):
            r = train_booster(X[tr], raw[tr, j], params, seed=0)
            out.append(np.exp(r.inplace_predict(X[te])))
        preds["xgb-raw"].setdefault(proto, []).append((te, physical(out[0], out[1], out[2], ds, te)))
    return preds


def gnn_baseline(ds, protocols, epochs, preds):
    """Add the GNN baseline's predictions to ``preds``; return (samples/s on featurized graphs, total seconds)."""
    from costmodel.predictors import GNNConfig, GNNPredictor

    ok = [i for i, r in enumerate(ds) if r.graph_supported]
    print(f"GNN baseline: {len(ok)} rows with a graph (decode steps have none); building graphs...", flush=True)
    graphs = {}
    tg = time.perf_counter()
    for i in ok:
        graphs[i] = ds.graph(i)
    g = GNNPredictor(GNNConfig(conv="sage"))
    cache = {i: g.features(graphs[i], ds[i].device, ds[i].mode) for i in ok}
    okset = set(ok)
    for proto, key, tr, te in protocols:
        tr2 = [i for i in tr if i in okset]
        te2 = np.asarray([i for i in te if i in okset])
        if not len(te2):
            continue
        m = GNNPredictor(GNNConfig(conv="sage", epochs=epochs)).fit(ds, tr2, progress=False, cached=cache)
        pr = m._predict_features([cache[i] for i in te2])
        b = np.asarray([ds[i].batch for i in te2], float)
        phys = np.stack([b / (pr[:, 0] / 1e3), pr[:, 1], pr[:, 2] / b], axis=1)
        preds["gnn"].setdefault(proto, []).append((te2, phys))
    # speed: featurized graphs through the GNN, and graphs built from configs
    t = time.perf_counter()
    m._predict_features([g.features(graphs[i], ds[i].device, ds[i].mode) for i in ok])
    gnn_cached = len(ok) / (time.perf_counter() - t)
    return (gnn_cached, time.perf_counter() - tg)


def print_gnn_rows_only(preds, names, y_true):
    """5-fold MAPE of every model restricted to the rows the GNN covers (it has no decode rows)."""
    te = np.concatenate([t for t, _ in preds["gnn"]["5-fold"]])
    sel = set(te.tolist())
    print("\n  on the GNN's rows only (no decode), 5-fold MAPE %: throughput / memory / energy")
    for n in names:
        runs = preds[n]["5-fold"]
        ti = np.concatenate([t for t, _ in runs])
        ph = np.concatenate([p for _, p in runs])
        mask = np.asarray([i in sel for i in ti])
        vals = [report(y_true[ti[mask], j], ph[mask, j])["mape"] for j in range(3)]
        print(f"  {n:<10}" + " / ".join(f"{v:.2f}" for v in vals))


def print_accuracy(preds, y_true):
    """One table per protocol and target: MAPE, RMSE, Kendall tau and Acc10 per model."""
    names = list(preds)
    labels = ("throughput (samples/s)", "memory (MB)", "energy per sample (J)")
    for proto in ("5-fold", "leave-one-model-out"):
        for j, lab in enumerate(labels):
            print(f"\n{lab}: {proto}" + (" (pooled over folds)" if proto == "5-fold" else " (pooled over models)"))
            print(f"  {'model':<10}{'rows':>6}{'MAPE %':>9}{'RMSE':>11}{'Kendall':>9}{'Acc10 %':>9}")
            for n in names:
                runs = preds[n].get(proto, [])
                te = np.concatenate([t for t, _ in runs])
                p = np.concatenate([ph[:, j] for _, ph in runs])
                r = report(y_true[te, j], p)
                print(f"  {n:<10}{len(te):>6}{r['mape']:>9.2f}{r['rmse']:>11.4g}{r['kendall_tau']:>9.3f}"
                      f"{r['acc10']:>9.1f}")
        if proto == "5-fold" and "gnn" in preds:
            # same rows for both: the GNN has no decode rows
            print_gnn_rows_only(preds, names, y_true)


def print_speed(params, X, Y, C, ds, dev, gnn_speed):
    """Prediction throughput on this CPU: xgb with and without features, and the GNN if it ran."""
    full = XGBLLMPredictor(params).fit_arrays(X, Y)
    ws = [workload_of_row(r) for r in ds]
    t = time.perf_counter()
    reps = 5
    for _ in range(reps):
        full.predict_many(ws, dev)
    xgb_sps = reps * len(ws) / (time.perf_counter() - t)
    t = time.perf_counter()
    full.predict_arrays(X, C, [dev] * len(X))
    xgb_model_only = len(X) / (time.perf_counter() - t)
    print("\nprediction speed on this CPU (samples/s)")
    print(f"  xgb, features included (closed form + cached structure): {xgb_sps:,.0f}")
    print(f"  xgb, model only:                                          {xgb_model_only:,.0f}")
    if gnn_speed:
        print(f"  gnn, featurized graphs (graph already built):             {gnn_speed[0]:,.0f}")
        print(f"  -> xgb is {xgb_sps / gnn_speed[0]:,.0f}x faster end to end than the GNN on built graphs")


def train_and_save(params, ds):
    """Fit on every row and write the shipped artifact."""
    full = XGBLLMPredictor(params).fit(ds)
    out = ROOT / "costmodel" / "artifacts" / "llm-xgb"
    full.save(out, extra={"grid_search": "costmodel/llm/grid_search.json"})
    print(f"\nsaved {out} ({len(ds)} rows, params {params})")


MONOTONE_MODELS = ("gpt2", "qwen2-0.5b", "mistral-7b", "llama-2-7b", "bert-base-uncased", "t5-small",
                   "tinyllama-1.1b", "phi-2")


def _within_positions(model, mode, dtype, seqs) -> list:
    """Batch-8 workloads at each of ``seqs`` the model's positions reach (a model with learned positions
    refuses a longer sequence)."""
    from costmodel import InvalidInputError
    from costmodel.features.llm import llm_workload

    out = []
    for q in seqs:
        try:
            out.append(llm_workload(model, batch=8, seq=q, mode=mode, dtype=dtype))
        except InvalidInputError:
            break
    return out


def monotone_sweep() -> None:
    """Batch doublings 1 to 64 at seq 512, and sequence doublings 64 to 4,096 at batch 8, every mode of 8
    models, 3 GPUs and 4 dtypes: how often the shipped llm-xgb trees alone (``predict_arrays``) put the larger
    call faster, smaller or spending less energy, and how often the predictor's answer (``predict_many``, which
    holds them) does;
    and how often either holds less memory than the weights and key/value cache."""
    from costmodel.features.llm import llm_workload
    from costmodel.predictors import get_llm_predictor

    p = get_llm_predictor("llm-xgb")
    from costmodel.predictors import HELD_SEQ_FROM

    counts = {axis: dict(n=0, raw_l=0, raw_m=0, raw_e=0, held_l=0, held_m=0, held_e=0) for axis in ("batch", "seq", "seq-below")}
    below = {"raw": 0, "held": 0}
    total = 0
    for m, d, dt in itertools.product(MONOTONE_MODELS, ("h200", "h100", "a100-80gb"), ("fp32", "fp16", "int8", "int4")):
        modes = ("prefill", "decode") if llm_workload(m, batch=1, seq=512).mode == "prefill" else ("forward",)
        dev = get_device(d)
        for mode in modes:
            for axis, ws in (("batch", [llm_workload(m, batch=b, seq=512, mode=mode, dtype=dt)
                                        for b in (1, 2, 4, 8, 16, 32, 64)]),
                             ("seq", _within_positions(m, mode, dt, (64, 128, 256, 512, 1024, 2048, 4096)))):
                feats = [p.features(w, dev) for w in ws]
                raw = p.predict_arrays(np.stack([x for x, _ in feats]), [c for _, c in feats], [dev] * len(ws))
                held = p.predict_many(ws, d)
                # a sequence doubling from below the shortest the trees learned from (per mode) is counted apart
                low = np.asarray([axis == "seq" and w.seq < HELD_SEQ_FROM.get(w.mode, 0) for w in ws[:-1]])
                for part, sel in ((axis, ~low), ("seq-below", low)):
                    k = counts[part]
                    k["n"] += int(sel.sum())
                    k["raw_l"] += int(((np.diff(raw[:, 0]) < 0) & sel).sum())
                    k["raw_m"] += int(((np.diff(raw[:, 1]) < 0) & sel).sum())
                    k["held_l"] += int(((np.diff(held[:, 0]) < 0) & sel).sum())
                    k["held_m"] += int(((np.diff(held[:, 1]) < 0) & sel).sum())
                    # energy per call (latency x power): a larger call does more work for no less time
                    k["raw_e"] += int(((np.diff(raw[:, 0] * raw[:, 2]) < -1e-9) & sel).sum())
                    k["held_e"] += int(((np.diff(held[:, 0] * held[:, 2]) < -1e-9) & sel).sum())
                floor = np.asarray([dev.framework_overhead_mb + (c["weights_bytes"] + c["kv_cache_bytes"]) / 2**20
                                    for _, c in feats])
                below["raw"] += int((raw[:, 1] < floor - 1e-6).sum())
                below["held"] += int((held[:, 1] < floor - 1e-6).sum())
                total += len(ws)
    print(f"llm-xgb, {len(MONOTONE_MODELS)} models x 3 GPUs x 4 dtypes x every mode:")
    for axis, what in (("batch", "batch doublings 1-64 at seq 512"),
                       ("seq", "seq doublings 64-4,096 at batch 8, from a learned length"),
                       ("seq-below", "seq doublings from below the shortest learned length (extrapolated)")):
        k = counts[axis]
        print(f"  {k['n']} {what}: trees alone {k['raw_l']} faster at the larger call, {k['raw_m']} smaller, "
              f"{k['raw_e']} less energy per call; held {k['held_l']} faster, {k['held_m']} smaller, "
              f"{k['held_e']} less energy per call")
    print(f"  memory below the weights + key/value cache (+ framework overhead), of {total} calls: trees alone "
          f"{below['raw']}, held {below['held']}")
    # the labels themselves: how often a measured row is faster than the same call at half its sequence or batch
    ds = PerfDataset.load(kinds=("llm",))
    for axis, other in (("seq", "batch"), ("batch", "seq")):
        runs: dict = {}
        for r in ds:
            runs.setdefault((r.model, r.phase, r.dtype, getattr(r, other)), {})[getattr(r, axis)] = r.latency_ms
        pairs = [(d[a], d[b]) for d in runs.values() for a, b in zip(sorted(d), sorted(d)[1:])]
        print(f"  measured rows: {sum(b < a for a, b in pairs)} of {len(pairs)} steps to a longer {axis} ran faster")


def main():
    a = _parse_args()
    warnings.simplefilter("ignore")
    if a.monotone:
        monotone_sweep()
        return

    if a.refresh_structure:
        refresh_structure()

    ds = PerfDataset.load(kinds=("llm",))
    dev = get_device("h200")
    xgbp = XGBLLMPredictor()
    t0 = time.perf_counter()
    X, Y, C = xgbp.featurize_rows(ds)
    feat_s = time.perf_counter() - t0
    print(f"{len(ds)} rows, {len({r.model for r in ds})} models; features {feat_s * 1e3 / len(ds):.2f} ms per row")
    y_true = np.stack([np.asarray([r.batch / (r.latency_ms / 1e3) for r in ds]),
                       np.asarray([r.memory_mb for r in ds]),
                       np.asarray([r.energy_j / r.batch for r in ds])], axis=1)
    protocols = evaluation_protocols(ds)

    grid_path = ROOT / "costmodel" / "llm" / "grid_search.json"
    params = dict(DEFAULT_PARAMS)
    if a.grid:
        params = grid_search(X, Y, C, ds, dev, y_true, protocols, grid_path)
    elif grid_path.exists():
        params = json.loads(grid_path.read_text())["chosen"]

    preds = cross_validate(params, X, Y, C, ds, dev, protocols)
    gnn_speed = None
    if not a.skip_gnn:
        gnn_speed = gnn_baseline(ds, protocols, a.epochs, preds)

    print_accuracy(preds, y_true)
    print_speed(params, X, Y, C, ds, dev, gnn_speed)
    if a.train:
        train_and_save(params, ds)


if __name__ == "__main__":
    main()
