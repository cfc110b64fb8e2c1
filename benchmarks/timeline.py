"""The timeline predictor (operators under their roofline on a host/device timeline), measured.

    python benchmarks/timeline.py [--epochs N] [--seeds 3] [--skip-lofo] [--stream-prior W] [--op-weight W]
    python benchmarks/timeline.py --llm          # transformers, leave-one-model-out
    python benchmarks/timeline.py --speed        # section 4 only, shipped artifact
    python benchmarks/timeline.py --devices      # section 6 only: GPUs without rows
    python benchmarks/timeline.py --cpu [-- --skip-dippm]

Prints, for latency and energy (MAPE %, Kendall tau, Acc(10 %)):

1. H200 vision rows: seeded random 70/30 splits and leave-one-family-out
   (every family held out in turn, pooled), split into host-bound and
   device-bound rows (by the fitted model's own lanes) and fp32 / fp16;
   then the label floor: host-bound rows of models that share one operator
   sequence (width or resolution variants), the best single latency per
   sequence against the measurements, next to the timeline's held-out error,
   and the same for energy: the best single average power per sequence
   times each row's measured latency (fp32 batch 1); and the latency floor
   over every host-bound workload (any mode, dtype and batch);
2. the 13 architectures measured later on an H200 (78 rows, never trained on),
   next to the shipped TraPPM / DIPPM / static XGBoost / analytic predictors
   (all trained on every packaged row); then a learned residual over the
   timeline (XGBoost on the graph's make-up and the timeline's lanes), scored
   on held-out families and on these rows; and a graph network over the same
   residuals (2d, :mod:`_residual_gnn`: every operator's features and predicted
   times, message passing over the graph's edges), trained the same way;
3. the second H200 host: the host lane refitted on its 4 check rows (rows that
   repeat packaged workloads), error on its 78 new-architecture rows before and
   after;
4. prediction speed: one resnet50 graph, and ``predict_many`` graphs per second (inference calls,
   and training steps);
5. (``--llm``) the H200 transformer rows (encoder forward, prefill, and decode
   steps with their KV-cache graphs) through the timeline, leave-one-model-out;
   then the second host's transformer rows before and after its host refit.
6. (``--devices``) GPUs without rows: the shipped predictors' latency and
   average power on five other GPUs (nothing to score against; it shows that
   predictions follow each GPU's roofline and power limit).

``--cpu`` prints the CPU tables instead (``benchmarks/timeline_cpu.py``): the
operator model trained on operator profiles, per operator and per model,
leave-one-family-out, against DIPPM trained on the same CPU rows.

The timeline predictor is fitted on whole-model latencies and, with
``--op-weight W`` > 0 (or the shipped configuration's weight), on the kernel
times of the runs profiled per operator on an H200 (``costmodel/data/h200/ops``,
architectures of the packaged families only): every fold leaves out the
operator runs of its held-out family, and a random split those of its test
rows' workloads. The host costs are fitted through the composition.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _metrics(y, p):
    from costmodel.training import report

    return report(np.asarray(y), np.asarray(p))


def _row(label, y, p, n=None):
    m = _metrics(y, p)
    n = len(y) if n is None else n
    return f"{label:<34}{n:>6}{m['mape']:>9.1f}{m['kendall_tau']:>7.2f}{m['acc10']:>9.1f}"


def _header(title):
    print(f"\n{title}")
    print(f"{'':<34}{'rows':>6}{'MAPE %':>9}{'tau':>7}{'Acc10 %':>9}")


#: the fit's loss (``--loss``; the shipped configuration's by default)
_LOSS: list[str] = []
_STREAM_PRIOR: list[float] = []


_OP_WEIGHT: list[float] = []
_DEVICE_BLIND: list[tuple] = []
_OP_RUNS: list = []


def _op_runs(hold=None) -> list:
    """The packaged per-operator GPU runs (loaded once), less those ``hold(run)`` keeps out of a fold."""
    if not _OP_RUNS:
        from costmodel.predictors import packaged_op_runs

        _OP_RUNS.extend(packaged_op_runs())
    return [r for r in _OP_RUNS if not (hold and hold(r))]


def _fit(graphs, rows, epochs, seed, hold=None):
    """One timeline fit; with per-operator labels (``--op-weight``, or the shipped configuration's), the
    packaged operator runs join it less those ``hold`` keeps out (a held-out family's, a test row's workload)."""
    from costmodel.predictors import TimelineConfig, TimelinePredictor

    kw = {"epochs": epochs} if epochs else {}
    if _LOSS:
        kw["loss"] = _LOSS[0]
    if _STREAM_PRIOR:
        kw["stream_prior"] = _STREAM_PRIOR[0]
    if _OP_WEIGHT:
        kw["op_weight"] = _OP_WEIGHT[0]
    if _DEVICE_BLIND:
        kw["device_blind"] = _DEVICE_BLIND[0]
    cfg = TimelineConfig(seed=seed, **kw)
    runs = _op_runs(hold) if cfg.op_weight > 0 else None
    return TimelinePredictor(cfg).fit_graphs(graphs, rows, op_runs=runs)


def _predict(pred, graphs, rows):
    out = []
    for g, r in zip(graphs, rows):
        out.append(pred.predict(g, r.device, mode=r.mode))
    return out


def _breakdown(title, rows, ests):
    _header(title)
    y_lat = [r.latency_ms for r in rows]
    p_lat = [e.latency_ms for e in ests]
    print(_row("latency, all", y_lat, p_lat))
    groups = defaultdict(list)
    for i, (r, e) in enumerate(zip(rows, ests)):
        groups["latency, " + e.details["ops"]["bound"] + "-bound"].append(i)
        groups[f"latency, {r.dtype}"].append(i)
        groups[f"latency, {r.mode}"].append(i)
    for k in sorted(groups):
        idx = groups[k]
        if len(idx) > 1:
            print(_row(k, [y_lat[i] for i in idx], [p_lat[i] for i in idx]))
    ok = [i for i, r in enumerate(rows) if np.isfinite(r.energy_j) and r.energy_j > 0]
    if ok:
        print(_row("energy, all", [rows[i].energy_j for i in ok], [ests[i].energy_j for i in ok]))
        for mode in ("inference", "training"):  # a training step's kernels draw a power of their own
            idx = [i for i in ok if rows[i].mode == mode]
            if len(idx) > 1 and len(idx) < len(ok):
                print(_row(f"energy, {mode}", [rows[i].energy_j for i in idx], [ests[i].energy_j for i in idx]))


def _parity_panels(title, rows, ests, target, unit, group) -> dict:
    """One panel of :func:`costmodel.measure.charts.parity_chart`: the rows with a measured ``target``."""
    ok = [i for i, r in enumerate(rows) if np.isfinite(getattr(r, target)) and getattr(r, target) > 0]
    return {"title": title, "unit": unit, "measured": [getattr(rows[i], target) for i in ok],
            "predicted": [getattr(ests[i], target) for i in ok], "groups": [group(rows[i], ests[i]) for i in ok]}


def _write_parity(plot_dir, name, panels, title) -> None:
    from costmodel.measure.charts import parity_chart

    out = Path(plot_dir) / name
    parity_chart(panels, output=out, title=title)
    print(f"   chart: {out}")


def _bound(r, e) -> str:
    return e.details["ops"]["bound"] + "-bound"


def _interval_lines(rows, ests, intervals) -> None:
    """How often the leave-one-family-out intervals hold the measured value on these rows, and how wide."""
    print(f"   {intervals['coverage']:.0%} intervals from leave-one-family-out residuals "
          f"(host-bound / device-bound calibration rows: {intervals['rows']['host']} / {intervals['rows']['device']}):")
    for t in ("latency_ms", "energy_j"):
        pairs = [(getattr(r, t), getattr(e, t + "_interval")) for r, e in zip(rows, ests)]
        pairs = [(y, iv) for y, iv in pairs if iv is not None and np.isfinite(y) and y > 0]
        if not pairs:
            continue
        held = np.mean([lo <= y <= hi for y, (lo, hi) in pairs]) * 100
        width = np.median([hi / lo for _, (lo, hi) in pairs])
        print(f"   {t}: holds the measured value in {held:.0f} % of {len(pairs)} rows, median width x{width:.2f}")


def _llm_section(epochs: int, plot_dir: str | None = None) -> None:
    """Transformer rows (encoder forward, prefill, decode with its KV-cache graph) through the timeline,
    leave-one-model-out: fitted on every vision row and the other models' transformer rows."""
    from costmodel.datasets import PerfDataset

    ds = PerfDataset.load(kinds=("vision", "llm"))
    vis = [i for i, r in enumerate(ds.rows) if r.kind == "vision"]
    llm = [i for i, r in enumerate(ds.rows) if r.kind == "llm" and r.has_graph]
    t0 = time.perf_counter()
    graphs = {i: ds.graph(i) for i in vis + llm}
    models = sorted({ds.rows[i].model for i in llm})
    print(f"H200 transformers: {len(llm)} rows of {len(models)} models (graphs in {time.perf_counter() - t0:.0f} s)")
    rs, ps = [], []
    for m in models:
        train = vis + [i for i in llm if ds.rows[i].model != m]
        test = [i for i in llm if ds.rows[i].model == m]
        pred = _fit([graphs[i] for i in train], [ds.rows[i] for i in train], epochs, 0)
        ps += _predict(pred, [graphs[i] for i in test], [ds.rows[i] for i in test])
        rs += [ds.rows[i] for i in test]
    _header(f"5. transformers through the timeline, leave-one-model-out ({len(models)} folds, pooled)")
    _llm_table(rs, [(e.latency_ms, e.energy_j) for e in ps])
    if plot_dir:
        _write_parity(plot_dir, "timeline_llm.png", [
            _parity_panels("latency, each model held out", rs, ps, "latency_ms", "latency (ms)", lambda r, e: r.phase),
            _parity_panels("energy, each model held out", rs, ps, "energy_j", "energy (J)", lambda r, e: r.phase),
        ], "timeline-llm on the H200 transformer rows (benchmarks/timeline.py --llm)")
    xgb_rs, xgb_ps = _llm_xgb_lomo(ds, llm, models)
    _header("5a. the same rows and folds, llm-xgb (XGBoost on closed-form workload features, no graph)")
    _llm_table(xgb_rs, xgb_ps)


def _llm_table(rs, ps) -> None:
    """Latency, throughput and energy per call of transformer rows by phase; ``ps``: (latency_ms, energy_j)."""
    for ph in ("all", "forward", "prefill", "decode"):
        idx = [k for k, r in enumerate(rs) if ph == "all" or r.phase == ph]
        if not idx:
            continue
        y = [rs[k].latency_ms for k in idx]
        print(_row(f"latency, {ph}", y, [ps[k][0] for k in idx]))
        print(_row(f"throughput (samples/s), {ph}", [rs[k].batch / y[j] for j, k in enumerate(idx)],
                   [rs[k].batch / ps[k][0] for k in idx]))
        ok = [k for k in idx if np.isfinite(rs[k].energy_j) and rs[k].energy_j > 0]
        print(_row(f"energy, {ph}", [rs[k].energy_j for k in ok], [ps[k][1] for k in ok]))


def _llm_xgb_lomo(ds, llm, models):
    """The shipped transformer XGBoost (its grid-searched hyperparameters), leave-one-model-out over the
    same transformer rows: rows and (latency_ms, energy_j per call) in fold order."""
    import json as _json

    from costmodel.predictors import XGBLLMPredictor, workload_of_row

    grid = Path(__file__).resolve().parents[1] / "costmodel" / "llm" / "grid_search.json"
    params = _json.loads(grid.read_text())["chosen"] if grid.exists() else None
    rs, ps = [], []
    for m in models:
        train = [i for i in llm if ds.rows[i].model != m]
        test = [i for i in llm if ds.rows[i].model == m]
        x = XGBLLMPredictor(params, seed=0).fit(ds, train)
        feats = [x.features(workload_of_row(ds.rows[i]), ds.rows[i].device) for i in test]
        out = x.predict_arrays(np.stack([f for f, _ in feats]), [c for _, c in feats], [ds.rows[i].device for i in test])
        rs += [ds.rows[i] for i in test]
        ps += [(float(lat), float(pw) * float(lat) / 1e3) for lat, _, pw in out]
    return rs, ps


def _llm_second_host_section(epochs: int, data: str) -> None:
    """Section 5b: the second host's transformer rows (encoder forward, prefill, decode), through a timeline
    fitted on every packaged row (vision and transformers), before and after refitting its host lane on the
    second host's 4 vision check rows (the rows of section 3): no transformer row of that host is fitted."""
    from costmodel.datasets import PerfDataset

    ds = PerfDataset.load(kinds=("vision", "llm"))
    idx = [i for i, r in enumerate(ds.rows) if r.kind == "vision" or r.has_graph]
    new = PerfDataset.load(data, device="h200_extend", kinds=("vision", "llm"))
    seen = {r.model for r in ds.rows}
    llm = [i for i, r in enumerate(new.rows) if r.kind == "llm" and r.has_graph]
    checks = [i for i, r in enumerate(new.rows) if r.kind == "vision" and r.model in seen]
    if not llm:
        return
    full = _fit([ds.graph(i) for i in idx], [ds.rows[i] for i in idx], epochs, 0)
    rows = [new.rows[i] for i in llm]
    graphs = [new.graph(i) for i in llm]
    before = _predict(full, graphs, rows)
    full.fit_host([new.graph(i) for i in checks], [new.rows[i] for i in checks])
    after = _predict(full, graphs, rows)
    _header(f"5b. the second host's {len(rows)} transformer rows, timeline fitted on every packaged row")
    y = [r.latency_ms for r in rows]
    print(_row("latency, before the host refit", y, [e.latency_ms for e in before]))
    print(_row("latency, after the host refit", y, [e.latency_ms for e in after]))
    for r, b, e in zip(rows, before, after):
        print(f"   {r.model} {r.phase} b{r.batch} s{r.seq} {r.dtype}: measured {r.latency_ms:.1f} ms, "
              f"before {b.latency_ms:.1f}, after {e.latency_ms:.1f}")
    step = full.params.decode_step_us
    print(f"   decode step cost after the refit: {'none fitted' if step is None else f'{step / 1e3:.1f} ms'}; "
          f"{full.params.host_source}")


def _speed_section(pred, repeats: int = 7, n_many: int = 1024) -> None:
    """Section 4: featurize (trace frontend) + predict one resnet50, and ``predict_many``.

    The model is built before the clock starts (a user has it in hand); featurizing is the
    ``to_graph(module, method="trace")`` call, with no graph cache. One thread, as a user's notebook
    would be on this 2-core machine. The first call pays one-time imports and warm-ups; the median of
    the following calls is the steady cost. The trace memoizes meta-kernel output layouts across
    calls; the "fresh" rows empty that memo before every call (a model never traced before in the
    process), the "warm" rows keep it (the same model again, or a NAS loop over one search space).
    """
    import statistics

    import torch
    import torchvision

    from costmodel.frontends import pytorch as torch_frontend
    from costmodel.frontends import to_graph

    torch.set_num_threads(1)
    model = torchvision.models.resnet50().eval()
    print("\n4. speed (resnet50, batch 1, one thread)")
    print(f"{'':<34}{'first ms':>10}{'median ms':>11}")
    graph = None
    for method, fresh in (("trace", True), ("trace", False), ("export", True)):
        feat, pred_ms = [], []
        label = method + (", fresh" if fresh else ", warm") if method == "trace" else method
        for _ in range(repeats if method == "trace" else 3):
            if fresh:
                torch_frontend.clear_layout_cache()
            t0 = time.perf_counter()
            graph_m = to_graph(model, batch=1, input_shape=(3, 224, 224), method=method)
            t1 = time.perf_counter()
            pred.predict(graph_m, "h200")
            t2 = time.perf_counter()
            feat.append(1e3 * (t1 - t0))
            pred_ms.append(1e3 * (t2 - t1))
        total = [a + b for a, b in zip(feat, pred_ms)]
        print(f"{'featurize (' + label + ')':<34}{feat[0]:>10.1f}{statistics.median(feat[1:]):>11.1f}")
        print(f"{'  predict':<34}{pred_ms[0]:>10.1f}{statistics.median(pred_ms[1:]):>11.1f}")
        print(f"{'  featurize + predict':<34}{total[0]:>10.1f}{statistics.median(total[1:]):>11.1f}")
        graph = graph if graph is not None else graph_m
    # distinct graph objects of four architectures (nothing can be reused between them)
    import copy

    kinds = [graph] + [to_graph(getattr(torchvision.models, name)().eval(), batch=4, input_shape=(3, 224, 224),
                                method="trace") for name in ("resnet18", "mobilenet_v2", "vit_b_16")]
    many = [copy.deepcopy(kinds[i % len(kinds)]) for i in range(n_many)]
    pred.predict_many(many[:8], "h200")
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        pred.predict_many(many, "h200")
        runs.append(time.perf_counter() - t0)
    dt = statistics.median(runs)
    print(f"predict_many: {n_many} built graphs (resnet50/resnet18/mobilenet_v2/vit_b_16) in {dt:.2f} s "
          f"(median of 3 runs) = {n_many / dt:.0f} graphs/s")
    # the same architectures as training steps (backward operators, optimizer update, saved activations), each
    # captured as a training step
    kinds_t = [to_graph(getattr(torchvision.models, name)().train(), batch=4 if name != "resnet50" else 1,
                        input_shape=(3, 224, 224), method="trace", mode="training")
               for name in ("resnet50", "resnet18", "mobilenet_v2", "vit_b_16")]
    few = [copy.deepcopy(kinds_t[i % len(kinds_t)]) for i in range(n_many // 4)]
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        pred.predict_many(few, "h200", mode="training")
        runs.append(time.perf_counter() - t0)
    dt = statistics.median(runs)
    print(f"predict_many, training steps: {len(few)} of them in {dt:.2f} s (median of 3 runs) = "
          f"{len(few) / dt:.0f} graphs/s")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=None,
                    help="fitting epochs (default: the shipped configuration's, TimelineConfig().epochs)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--loss", choices=("l1", "l2"), default=None,
                    help="the fit's loss on the log latency (default: the shipped configuration's, l1)")
    ap.add_argument("--stream-prior", type=float, default=None, metavar="W",
                    help="weight of the fit's streaming prior (default: the shipped configuration's, 0: off; "
                         "TimelineConfig.stream_prior)")
    ap.add_argument("--op-weight", type=float, default=None, metavar="W",
                    help="weight of the per-operator GPU labels (costmodel/data/h200/ops) in every fit (default: "
                         "the shipped configuration's, TimelineConfig.op_weight); a fold never sees the operator "
                         "runs of its held-out family (or, in a random split, of its test rows' workloads)")
    ap.add_argument("--device-blind", nargs="*", default=None, metavar="FEATURE",
                    help="features the efficiency network does not see in every fit (default: the shipped "
                         "configuration's, TimelineConfig.device_blind; none given: it sees every feature)")
    ap.add_argument("--skip-lofo", action="store_true")
    ap.add_argument("--skip-gnn", action="store_true",
                    help="skip section 2d, the graph network over the timeline's residuals (the slowest section)")
    ap.add_argument("--plot", metavar="DIR", default=None,
                    help="also write parity charts (predicted against measured) of the held-out rows into DIR: "
                         "timeline_vision_latency.png and timeline_vision_energy.png, or with --llm timeline_llm.png")
    ap.add_argument("--data", default=str(HERE / "data"))
    ap.add_argument("--cpu", action="store_true",
                    help="only the CPU tables: the operator model on the rows profiled per operator "
                         "(benchmarks/timeline_cpu.py; pass its options after --)")
    ap.add_argument("--llm", action="store_true", help="only the H200 transformer tables (section 5)")
    ap.add_argument("--with-llm", action="store_true",
                    help="sections 1-3 with every H200 transformer row added to each fit (the shipped "
                         "configuration: one timeline for vision and transformers); scores stay on vision rows")
    ap.add_argument("--speed", action="store_true",
                    help="only section 4, with the shipped timeline artifact (no fitting)")
    ap.add_argument("--devices", action="store_true",
                    help="only section 6: the shipped predictors on GPUs without rows (no fitting)")
    return ap


def _random_splits_section(graphs, rows, epochs: int, seeds: int, extra=((), ())) -> None:
    """Section 1a: seeded random 70/30 splits, pooled (``extra``: graphs and rows added to every fit)."""
    ps, rs = [], []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(rows))
        n_test = round(0.3 * len(rows))
        test, train = perm[:n_test], perm[n_test:]
        from costmodel.predictors import workload_key

        held = {workload_key(rows[i]) for i in test}
        pred = _fit([graphs[i] for i in train] + list(extra[0]), [rows[i] for i in train] + list(extra[1]),
                    epochs, seed, hold=lambda run: run.workload in held)
        ps += _predict(pred, [graphs[i] for i in test], [rows[i] for i in test])
        rs += [rows[i] for i in test]
    _breakdown(f"1a. random 70/30 ({seeds} seeds, pooled)", rs, ps)


def _lofo_section(graphs, rows, epochs: int, extra=((), ()), nodes: list | None = None) -> None:
    """Section 1b: leave-one-family-out (every family held out in turn, pooled; ``extra`` in every fit).
    ``nodes``: filled with each held-out row's node features under its fold's timeline (section 2d)."""
    rs, ps, per_fam = [], [], {}
    fams = sorted({r.family for r in rows})
    for fam in fams:
        train = [i for i, r in enumerate(rows) if r.family != fam]
        test = [i for i, r in enumerate(rows) if r.family == fam]
        pred = _fit([graphs[i] for i in train] + list(extra[0]), [rows[i] for i in train] + list(extra[1]),
                    epochs, 0, hold=lambda run, fam=fam: run.family == fam)
        e = _predict(pred, [graphs[i] for i in test], [rows[i] for i in test])
        if nodes is not None:
            from _residual_gnn import node_graph

            nodes += [node_graph(pred, graphs[i], rows[i]) for i in test]
        per_fam[fam] = _metrics([rows[i].latency_ms for i in test], [x.latency_ms for x in e])["mape"]
        ps += e
        rs += [rows[i] for i in test]
    _breakdown("1b. leave-one-family-out (13 folds, pooled)", rs, ps)
    print("   latency MAPE % per held-out family: " + ", ".join(f"{f} {v:.1f}" for f, v in per_fam.items()))
    return rs, ps


def _label_floor_section(graphs, rows, held) -> None:
    """Section 1c: how far apart the measured host-bound rows of one operator sequence are.

    Models that differ only in width or input size (mobilenet_v2 at four widths, resnet50 at three
    resolutions) dispatch the same operators in the same order. At batch 1 they are host-bound, so a
    host lane (any function of the operator sequence) must give them one latency. The best single
    value per sequence, chosen knowing the measurements, is this far off: the floor for host-bound rows
    of this data, against the held-out-family error of the timeline on the same rows."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (g, r) in enumerate(zip(graphs, rows)):
        if r.mode == "inference" and r.batch == 1 and r.dtype == "fp32":
            groups[tuple(n.kind for n in g.nodes if not n.is_view)].append(i)
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return
    members = [i for idx in groups.values() for i in idx]
    lat = {i: rows[i].latency_ms for i in members}
    watts = {i: rows[i].energy_j / rows[i].latency_ms * 1e3 for i in members}
    best, e_best = [], []  # per row: its sequence's best latency; that best power x the row's own latency
    for idx in groups.values():
        c_lat, c_watts = _best_constant([lat[i] for i in idx]), _best_constant([watts[i] for i in idx])
        best += [c_lat] * len(idx)
        e_best += [c_watts * lat[i] / 1e3 for i in idx]
    _header(f"1c. label floor: {len(members)} fp32 batch-1 rows of {len(groups)} operator sequences "
            "shared by several models")
    y = [lat[i] for i in members]
    print(_row("best constant per sequence", y, best))
    held_est = {(r.model, r.mode, r.dtype, r.batch): e for r, e in zip(*held)} if held is not None else None
    if held_est is not None:
        p = [held_est[(rows[i].model, rows[i].mode, rows[i].dtype, rows[i].batch)].latency_ms for i in members]
        print(_row("timeline, held-out family", y, p))
    spread = [max(lat[i] for i in v) / min(lat[i] for i in v) for v in groups.values()]
    print(f"   measured max/min within a sequence: median {np.median(spread):.2f}, largest {max(spread):.2f}")
    # energy: the same rows draw little more than the board's active idle power, so their average power
    # should barely depend on the model; the best single power per sequence, times each row's *measured*
    # latency, says how much of the energy error is in the power labels alone
    e_y = [rows[i].energy_j for i in members]
    print(_row("energy, best power x measured time", e_y, e_best))
    if held_est is not None:
        print(_row("energy, timeline, held-out family", e_y,
                   [held_est[(rows[i].model, rows[i].mode, rows[i].dtype, rows[i].batch)].energy_j for i in members]))
    p_spread = [max(watts[i] for i in v) / min(watts[i] for i in v) for v in groups.values()]
    print(f"   measured average power max/min within a sequence: median {np.median(p_spread):.2f}, "
          f"largest {max(p_spread):.2f}")


def _host_floor_section(graphs, rows, held) -> None:
    """Section 1d: the floor of 1c over every host-bound row that shares its operator sequence with
    another model's row of the same mode, dtype and batch (not only fp32 batch 1): per group, the best
    single latency chosen knowing the measurements, next to the timeline's held-out error on the same
    rows, pooled and per workload. Host-bound: the held-out timeline's host lane at least 1.5x its
    device lane (the same operators then cost the host alike whatever the width or resolution)."""
    est = {(r.model, r.mode, r.dtype, r.batch): e for r, e in zip(*held)}
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (g, r) in enumerate(zip(graphs, rows)):
        ops = est[(r.model, r.mode, r.dtype, r.batch)].details["ops"]
        if ops["host_ms"] >= 1.5 * ops["device_ms"]:
            groups[(tuple(n.kind for n in g.nodes if not n.is_view), r.mode, r.dtype, r.batch)].append(i)
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return
    by_workload: dict[tuple, list] = defaultdict(list)
    for key, idx in groups.items():
        best = _best_constant([rows[i].latency_ms for i in idx])
        for i in idx:
            r = rows[i]
            by_workload[key[1:]].append((r.latency_ms, best, est[(r.model, r.mode, r.dtype, r.batch)].latency_ms))
    pooled = [t for v in by_workload.values() for t in v]
    _header(f"1d. label floor over every host-bound workload: {len(pooled)} rows in {len(groups)} groups of one "
            "operator sequence, mode, dtype and batch")
    for label, ts in [("all", pooled)] + [(f"{m[:5]} {d} b{b}", v) for (m, d, b), v in sorted(by_workload.items())]:
        y = [t[0] for t in ts]
        print(_row(f"{label}: best constant", y, [t[1] for t in ts]))
        print(_row("   timeline, held out", y, [t[2] for t in ts]))


def _residual_features(g, r, e) -> list[float]:
    """What a learned correction over the timeline may see of one row: the workload, the timeline's own
    answer (latency, host and device lanes, host share) and the graph's make-up (share of FLOPs and of
    kernels per op category)."""
    from costmodel.ir import CATEGORIES, category

    ops = [n for n in g.nodes if not n.is_view]
    flops = sum(n.flops for n in ops) or 1.0
    share = dict.fromkeys(CATEGORIES, 0.0)
    count = dict.fromkeys(CATEGORIES, 0.0)
    for n in ops:
        c = category(n.kind)
        share[c] += n.flops / flops
        count[c] += 1.0 / len(ops)
    h, d = e.details["ops"]["host_ms"], e.details["ops"]["device_ms"]
    return [math.log(r.batch), float(r.dtype == "fp16"), float(r.mode == "training"), math.log(e.latency_ms),
            math.log(h + 1e-3), math.log(d + 1e-3), h / (h + d), math.log(len(ops)), math.log(flops),
            *share.values(), *count.values()]


def _residual_section(graphs, rows, held, n_graphs, n_rows, ests) -> None:
    """Section 2c: a learned correction over the timeline (a model of what the timeline gets wrong, from
    the whole graph), scored as the timeline is.

    A small XGBoost model learns ``log(measured / timeline)`` from :func:`_residual_features`. For a
    held-out family it is trained on the held-out residuals of the other families (section 1b's folds);
    for the later architectures, on all of them. The other families' residuals come from timelines that
    saw the held-out family, a mild leak in the correction's favour."""
    import xgboost as xgb

    rs, ps = held
    key = {(r.model, r.mode, r.dtype, r.batch): i for i, r in enumerate(rows)}
    X = np.asarray([_residual_features(graphs[key[(r.model, r.mode, r.dtype, r.batch)]], r, e)
                    for r, e in zip(rs, ps)])
    Xn = np.asarray([_residual_features(g, r, e) for g, r, e in zip(n_graphs, n_rows, ests)])
    fam = np.asarray([r.family for r in rs])
    _header("2c. the timeline, then + a learned residual (XGBoost, depth 2, 100 trees; x0.5: half of it)")
    for target, y_of, p_of in (("latency", lambda r: r.latency_ms, lambda e: e.latency_ms),
                               ("energy", lambda r: r.energy_j, lambda e: e.energy_j)):
        ok = np.asarray([np.isfinite(y_of(r)) and y_of(r) > 0 for r in rs])
        res = np.asarray([math.log(y_of(r) / p_of(e)) if k else 0.0 for r, e, k in zip(rs, ps, ok)])

        def model():
            return xgb.XGBRegressor(max_depth=2, n_estimators=100, learning_rate=0.05, subsample=0.8,
                                    min_child_weight=5, random_state=0, n_jobs=1)

        corr = np.zeros(len(rs))
        for f in sorted(set(fam)):
            tr, te = ok & (fam != f), fam == f
            corr[te] = model().fit(X[tr], res[tr]).predict(X[te])
        corr_n = model().fit(X[ok], res[ok]).predict(Xn)
        y = [y_of(r) for r, k in zip(rs, ok) if k]
        base = [p_of(e) for e, k in zip(ps, ok) if k]
        print(_row(f"{target}, held-out families", y, base))
        for shrink in (1.0, 0.5):
            print(_row(f"  + residual x{shrink:g}", y, [b * math.exp(shrink * c) for b, c in zip(base, corr[ok])]))
        ok_n = [np.isfinite(y_of(r)) and y_of(r) > 0 for r in n_rows]
        y_n = [y_of(r) for r, k in zip(n_rows, ok_n) if k]
        base_n = [p_of(e) for e, k in zip(ests, ok_n) if k]
        print(_row(f"{target}, later architectures", y_n, base_n))
        for shrink in (1.0, 0.5):
            print(_row(f"  + residual x{shrink:g}", y_n,
                       [b * math.exp(shrink * c) for b, c, k in zip(base_n, corr_n[np.asarray(ok_n)], ok_n)]))


def _residual_gnn_section(graphs, rows, held, held_nodes, full, n_graphs, n_rows, ests) -> None:
    """Section 2d: a graph network over the timeline's residuals (:mod:`_residual_gnn`), trained and
    scored as section 2c's XGBoost is, on the same workload summaries plus every operator's features and
    predicted times."""
    import _residual_gnn as gnn

    rs, ps = held
    key = {(r.model, r.mode, r.dtype, r.batch): i for i, r in enumerate(rows)}
    u = np.asarray([_residual_features(graphs[key[(r.model, r.mode, r.dtype, r.batch)]], r, e)
                    for r, e in zip(rs, ps)])
    u_new = np.asarray([_residual_features(g, r, e) for g, r, e in zip(n_graphs, n_rows, ests)])
    new_nodes = [gnn.node_graph(full, g, r) for g, r in zip(n_graphs, n_rows)]
    print("\n2d. the timeline, then + a graph network over its residuals (3 message-passing layers, "
          "trained as 2c)")
    gnn.print_table(gnn.residual_table(rs, ps, held_nodes, u, n_rows, ests, new_nodes, u_new), _metrics)


def _best_constant(values) -> float:
    """The single value c that minimizes sum |c / v - 1| = sum |c - v| / v: the median of the values
    weighted by 1 / v."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    w = np.cumsum(1.0 / v)
    return float(v[np.searchsorted(w, 0.5 * w[-1])])


def _all_predictors_table(get_predictor, n_graphs, n_rows, ests) -> dict:
    """Section 2b: the unseen-architecture rows through every predictor; return the measured targets."""
    _header("2b. the same rows, every predictor (latency | energy | memory MAPE %)")
    y = {t: np.asarray([getattr(r, t) for r in n_rows]) for t in ("latency_ms", "energy_j", "memory_mb")}
    for name in ("timeline", "trappm", "dippm", "xgb-static", "analytic"):
        if name == "timeline":
            e = ests
        else:
            p = get_predictor(name)
            e = [p.predict(g, "h200", mode=r.mode) for g, r in zip(n_graphs, n_rows)]
        vals = []
        for t in ("latency_ms", "energy_j", "memory_mb"):
            m = _metrics(y[t], [getattr(x, t) for x in e])
            vals.append(f"{m['mape']:6.1f} (tau {m['kendall_tau']:.2f})")
        print(f"{name:<14}" + " | ".join(vals))
    from costmodel.analysis.memreplay import replay_memory

    walk = [replay_memory(g, "h200", batch=r.batch, mode=r.mode, dtype=r.dtype, kind="vision").memory_mb
            for g, r in zip(n_graphs, n_rows)]
    m = _metrics(y["memory_mb"], walk)
    print(f"{'graph walk':<14}{'':>34}{'memory':>9} {m['mape']:6.1f} (tau {m['kendall_tau']:.2f})   "
          "(what estimate() of a graph alone gives the timeline: its liveness walk through the allocator)")
    return y


def _devices_section() -> None:
    """Section 6: other GPUs, which have no rows: latency and average power per device, next to TraPPM."""
    from costmodel.devices import get_device
    from costmodel.frontends import to_graph
    from costmodel.predictors import get_predictor

    print("\n6. other GPUs (no rows to score against): latency ms / average power W")
    devs = ("b200", "h200", "h100-sxm", "h100-pcie", "a100-80gb", "l40s", "a10", "v100", "l4", "t4")
    print(f"{'workload':<34}{'predictor':<10}" + "".join(f"{d:>15}" for d in devs))
    for model, b, mode, dt in (("torchvision:resnet50", 128, "training", "fp32"),
                               ("torchvision:vit_b_16", 64, "training", "fp16"),
                               ("torchvision:resnet50", 256, "inference", "fp16"),
                               ("torchvision:resnet50", 1, "inference", "fp32")):
        g = to_graph(model, batch=b, mode=mode, dtype=dt)
        for name in ("timeline", "trappm", "analytic"):
            p = get_predictor(name)
            cells = []
            for d in devs:
                e = p.predict(g, d, mode=mode)
                cells.append(f"{e.latency_ms:8.1f} /{e.power_w:4.0f}")
            label = f"{model.split(':')[1]} b{b} {mode[:5]} {dt}" if name == "timeline" else ""
            print(f"{label:<34}{name:<10}" + "".join(f"{c:>15}" for c in cells))
    print("   TDP W: " + ", ".join(f"{d} {get_device(d).tdp_w:.0f}" for d in devs))


def _second_host_section(full, new, checks, n_graphs, n_rows, ests, y_lat) -> None:
    """Section 3: refit the host lane on the second host's check rows, error before and after."""
    c_rows = [new.rows[i] for i in checks]
    c_graphs = [new.graph(i) for i in checks]
    _header(f"3. second host: host lane refitted on its {len(c_rows)} check rows")
    print(_row("new architectures, before", y_lat, [x.latency_ms for x in ests]))
    full.fit_host(c_graphs, c_rows)
    after = _predict(full, n_graphs, n_rows)
    print(_row("new architectures, after", y_lat, [x.latency_ms for x in after]))
    print(f"   {full.params.host_source}")


def _vision_sections(a: argparse.Namespace) -> None:
    """Sections 1 to 4 on the H200 vision rows."""
    from costmodel.datasets import PerfDataset
    from costmodel.predictors import get_predictor

    ds = PerfDataset.load(kinds=("vision", "llm") if a.with_llm else ("vision",))
    vis = [i for i, r in enumerate(ds.rows) if r.kind == "vision"]
    rows = [ds.rows[i] for i in vis]
    graphs = [ds.graph(i) for i in vis]
    extra = ((), ())
    if a.with_llm:  # every transformer row joins every fit; only vision rows are scored
        llm = [i for i, r in enumerate(ds.rows) if r.kind == "llm" and r.has_graph]
        extra = ([ds.graph(i) for i in llm], [ds.rows[i] for i in llm])
    print(f"H200: {len(rows)} vision rows, {len({r.family for r in rows})} families"
          + (f"; {len(extra[1])} transformer rows in every fit" if a.with_llm else ""))

    # 1. random splits and leave-one-family-out
    _random_splits_section(graphs, rows, a.epochs, a.seeds, extra)
    held_nodes: list | None = None if a.skip_gnn else []
    held = _lofo_section(graphs, rows, a.epochs, extra, held_nodes) if not a.skip_lofo else None
    _label_floor_section(graphs, rows, held)
    if held is not None:
        _host_floor_section(graphs, rows, held)

    # 2. new architectures
    new = PerfDataset.load(a.data, device="h200_extend")
    seen = {r.model for r in ds.rows}
    test = [i for i, r in enumerate(new.rows) if r.model not in seen]
    checks = [i for i, r in enumerate(new.rows) if r.model in seen]
    n_rows = [new.rows[i] for i in test]
    n_graphs = [new.graph(i) for i in test]
    full = _fit(graphs + list(extra[0]), rows + list(extra[1]), a.epochs, 0)
    if held is not None:  # the intervals `costmodel train` ships, from the residuals of section 1b's folds
        from costmodel.predictors import interval_table

        full.params.intervals = interval_table(*held, coverage=0.9, held_out="13 families, one at a time")
    ests = _predict(full, n_graphs, n_rows)
    _breakdown(f"2. {len(n_rows)} rows of {len({r.family for r in n_rows})} unseen architectures (timeline)", n_rows, ests)
    if held is not None:
        _interval_lines(n_rows, ests, full.params.intervals)
    y = _all_predictors_table(get_predictor, n_graphs, n_rows, ests)
    if a.plot and held is not None:
        for target, unit in (("latency_ms", "latency (ms)"), ("energy_j", "energy (J)")):
            _write_parity(a.plot, f"timeline_vision_{target.split('_')[0]}.png", [
                _parity_panels("H200 vision, each family held out", *held, target, unit, _bound),
                _parity_panels("13 architectures measured later", n_rows, ests, target, unit, _bound),
            ], f"timeline predictor, {unit.split(' ')[0]} (benchmarks/timeline.py)")
    if held is not None:
        _residual_section(graphs, rows, held, n_graphs, n_rows, ests)
        if not a.skip_gnn:
            _residual_gnn_section(graphs, rows, held, held_nodes, full, n_graphs, n_rows, ests)

    # 3. second host: refit the host lane on its check rows
    _second_host_section(full, new, checks, n_graphs, n_rows, ests, y["latency_ms"])

    # 4. speed
    _speed_section(full)


def main() -> None:
    ap = _parser()
    a, rest = ap.parse_known_args()
    if a.cpu:
        import sys

        sys.path.insert(0, str(HERE))
        from timeline_cpu import main as cpu_main

        cpu_main([x for x in rest if x != "--"])
        return
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    warnings.simplefilter("ignore")
    if a.loss:
        _LOSS.append(a.loss)
    if a.stream_prior is not None:
        _STREAM_PRIOR.append(a.stream_prior)
    if a.op_weight is not None:
        _OP_WEIGHT.append(a.op_weight)
    if a.device_blind is not None:
        _DEVICE_BLIND.append(tuple(a.device_blind))
    if a.llm:
        _llm_section(a.epochs, a.plot)
        _llm_second_host_section(a.epochs, a.data)
        return
    if a.speed:
        from costmodel.predictors import get_predictor

        _speed_section(get_predictor("timeline"))
        return
    if a.devices:
        _devices_section()
        return
    _vision_sections(a)


if __name__ == "__main__":
    main()
