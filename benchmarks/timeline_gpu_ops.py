"""The timeline's device lane against kernel times measured per operator on an H200.

    python benchmarks/timeline_gpu_ops.py [--sets train,new] [--fit-op-weight 0 0.3 1] [--json FILE]

Data: runs profiled per operator with ``benchmarks/gpu_collect_ops.sh`` on one H200 host (the third
to measure this project's rows; its ``host.json`` and ``hardware.json`` are beside the rows):

- ``train``: ``costmodel/data/h200/ops/``: architectures of the packaged H200 data
  (``costmodel/data/specs/h200_ops.json``), whose model-level rows the shipped timeline was fitted to;
- ``new``: ``benchmarks/data/h200_ops/``: the 13 architectures of ``h200_extend.json`` that no
  predictor trained on (and 4 check rows of packaged architectures, left out here).

Each profiled operator (forward, mapped onto its CostGraph node) is compared with the device time
the shipped timeline predicts for that node (``TimelinePredictor.operator_times``) and with the bare
roofline bound ``max(FLOPs / peak, bytes / bandwidth)`` of the datasheet.  The shipped timeline
never saw a per-operator GPU label: it was fitted through the composed timeline to whole-model
latencies, so this is the first direct check of its device lane.  Tables: per set, per operator
kind and per dtype: the operators' MAPE (operators of at least 2 us), the time-weighted error
``sum |p - y| / sum y``, the geometric-mean ratio ``p / y`` (above 1: predicted slower) and Kendall
tau over the operators; then the depthwise convolutions by kernel size; the group norms, a training
step's batch norms and the layer norms by how many rows they reduce, after the fastest row rates
the set measured (where ``NORM_ROW_RATES`` comes from: the packaged set's); the kinds PyTorch runs
element by element, after the fastest element rate per SM the set measured (where
``MEASURED_ELEMENT_RATES`` comes from), by dtype; the inference runs' whole-model latency as the
timeline predicts it and with the measured kernels in place of its device lane (its host lane and
composition kept: how much of the whole-model error a perfect device lane would remove); and how much
of each run's work the mapping placed.  ``--artifact DIR`` scores a saved timeline instead of the
shipped one.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SETS = {"train": (ROOT / "costmodel" / "data" / "h200", "ops"), "new": (ROOT / "benchmarks" / "data", "h200_ops")}
MIN_US = 2.0  # operators shorter than this are timer noise for a per-operator MAPE


def _tau(y, p) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(y, p).statistic) if len(y) > 2 else float("nan")


def _stats(y, p) -> dict:
    y, p = np.asarray(y, float), np.asarray(p, float)
    k = y >= MIN_US
    ok = k & (p > 0)
    return {"n": int(len(y)), "time_ms": float(y.sum() / 1e3),
            "mape": float(np.mean(np.abs(p[k] - y[k]) / y[k]) * 100) if k.any() else float("nan"),
            "weighted": float(np.abs(p - y).sum() / max(y.sum(), 1e-9) * 100),
            "ratio": float(np.exp(np.mean(np.log(p[ok] / y[ok])))) if ok.any() else float("nan"),
            "tau": _tau(y[k], p[k]) if k.sum() > 2 else float("nan")}


def _line(label: str, s: dict, width: int = 22) -> str:
    return (f"{label:<{width}}{s['n']:>7}{s['time_ms']:>10.1f}{s['mape']:>9.1f}{s['weighted']:>10.1f}"
            f"{s['ratio']:>8.2f}{s['tau']:>7.2f}")


HEAD = f"{'':<22}{'ops':>7}{'time ms':>10}{'MAPE %':>9}{'wErr %':>10}{'p/y':>8}{'tau':>7}"


def _depthwise(n) -> bool:
    g = n.attrs.get("groups") or 1
    return n.kind == "conv" and g > 1 and len(n.in_shapes) > 1 and n.in_shapes[1][1] == 1


def collect(name: str, pred, dev, seen_models: set[str], progress: bool) -> tuple[list[dict], list[dict]]:
    """Per-operator records ``{kind, dtype, dw, kernel, y, p, bound, family, mode}`` of one set, and per-run coverage."""
    from costmodel.predictors import DeviceFigures, load_op_dataset, node_dtype, norm_rows, op_bound_s as bound_s

    root, folder = SETS[name]
    ds, graphs, ops, _ = load_op_dataset(root, device=folder, progress=progress)
    figs = DeviceFigures.from_device(dev)
    recs, cover = [], []
    for i, (r, g, lab) in enumerate(zip(ds.rows, graphs, ops)):
        if name == "new" and r.model in seen_models:
            continue  # a check row repeating a packaged architecture
        mode = r.mode
        per = device_ms_by_op(pred, g, dev, mode)
        pm = {k: v * 1e3 for k, v in per.items()}
        summ = r.raw.get("ops") or {}
        cover.append({"model": r.model, "mode": mode, "dtype": r.dtype, "batch": r.batch,
                      "work": summ.get("work_nodes"), "mapped": summ.get("work_nodes_mapped"),
                      "latency_ms": r.latency_ms, "op_ms": sum(d for _, ph, d, _ in lab if ph == "forward") / 1e3,
                      **_lanes(pred, g, dev, mode, lab, per)})
        for n, phase, y, _cpu in lab:
            if phase != "forward" or y <= 0 or (n.id, phase) not in pm:
                continue
            dt = node_dtype(n)
            recs.append({"family": r.family, "model": r.model, "mode": mode, "dtype": r.dtype, "kind": n.kind,
                         "dw": _depthwise(n), "kernel": (n.attrs.get("kernel") or [0])[0], "y": y,
                         "p": pm[(n.id, phase)],
                         "bound": max(bound_s(n, phase, figs, dt)) * 1e6,
                         "rows": norm_rows(n), "numel": float(math.prod(n.out_shapes[0])) if n.out_shapes else 0.0})
    return recs, cover


def device_ms_by_op(pred, g, dev, mode: str) -> dict:
    """The predicted device time (ms) of each (node, phase), summed over the kernels it launches."""
    per: dict = defaultdict(float)
    for o in pred.operator_times(g, dev, mode=mode):
        per[(o["node"], o["phase"])] += o["device_ms"]
    return per


def _lanes(pred, g, dev, mode: str, lab, per: dict) -> dict:
    """The run's predicted lanes and latency, and its device lane with every labelled operator's kernels at
    their measured time (the rest as predicted; ``per``: :func:`device_ms_by_op`; ms)."""
    est = pred.predict(g, dev, mode=mode)
    ops = est.details.get("ops") or {}
    measured = defaultdict(float)
    for n, phase, y, _cpu in lab:
        if (n.id, phase) in per:
            measured[(n.id, phase)] += y / 1e3
    hybrid = sum(per.values()) + sum(measured[k] - per[k] for k in measured)
    return {"pred_ms": est.latency_ms, "host_ms": ops.get("host_ms"), "device_ms": ops.get("device_ms"),
            "device_measured_ms": hybrid, "bound": ops.get("bound")}


def _composition_report(cover: list[dict], sync_ms: float) -> dict:
    """Whole-model latency of the inference runs with the predicted device lane, and with the measured
    kernels in its place (the host lane and the composition unchanged): what a perfect device lane buys."""
    # inference only: the profiles hold no backward kernels; a synchronous run composes otherwise
    runs = [c for c in cover if c["mode"] == "inference" and c.get("bound") in ("device", "host")]
    if not runs:
        return {}
    print("\nwhole-model latency of the inference runs: the timeline, then its host lane and composition with the "
          "measured kernels as the device lane (MAPE % against the run's own latency); then the predicted device "
          "lane alone against the measured kernels (MAPE %: a CUDA graph's replay less the gaps between kernels)")
    print(f"{'':22s}{'runs':>6s}{'timeline':>10s}{'measured kernels':>18s}{'device lane alone':>19s}")
    out = {}
    # a run's regime: its measured kernels against its predicted host lane
    for label, keep in (("all", lambda c, m: True), ("device-bound", lambda c, m: m >= c["host_ms"]),
                        ("host-bound", lambda c, m: m < c["host_ms"])):
        sub = [c for c in runs if keep(c, c["device_measured_ms"])]
        if not sub:
            continue
        y = np.array([c["latency_ms"] for c in sub])
        p = np.array([c["pred_ms"] for c in sub])
        q = np.array([max(c["host_ms"], c["device_measured_ms"]) + sync_ms for c in sub])
        # the predicted device lane against the measured kernels alone: what a CUDA graph's replay takes
        # (estimate(cuda_graphs=True)), less the gaps between kernels, which no profile measures
        dp = np.array([c["device_ms"] for c in sub])
        dy = np.array([c["device_measured_ms"] for c in sub])
        out[label] = {"n": len(sub), "timeline": float(np.mean(np.abs(p - y) / y) * 100),
                      "measured_kernels": float(np.mean(np.abs(q - y) / y) * 100),
                      "device_lane": float(np.mean(np.abs(dp - dy) / dy) * 100)}
        print(f"{label:22s}{len(sub):6d}{out[label]['timeline']:10.1f}{out[label]['measured_kernels']:18.1f}"
              f"{out[label]['device_lane']:19.1f}")
    return out


def _norm_report(norms: list[dict]) -> dict:
    """Group norms, batch norms of training steps and layer norms: the fastest row rates measured (what
    ``NORM_ROW_RATES`` holds for the packaged set), and the timeline and the bare roofline by how many
    rows the norm reduces."""
    from costmodel.devices import get_device
    from costmodel.predictors import kernel_ceilings

    rates = kernel_ceilings()["norm_row_rates"] or {}
    sm = get_device("h200").sm_count  # every profiled run is an H200's
    blocks = (rates.get("blocks_per_sm") or 4.0) * sm
    out: dict = {}

    def shown(key: str, unit: float) -> str:
        v = rates.get(key)
        return f"{v / unit:.2f}" if v else "not applied"

    by = {k: [r for r in norms if r["kind"] == k] for k in ("group_norm", "batch_norm", "layer_norm")}
    print("\nrow-parallel norms: the fastest rows measured here, then the timeline and the bare roofline by rows")
    for kind, what in (("group_norm", "(sample, group) row"), ("batch_norm", "channel of a training step")):
        if by[kind]:
            per = max(r["numel"] / (r["y"] * 1e-6 * min(r["rows"], blocks)) for r in by[kind])
            out[f"{kind}_elems_s"] = per
            print(f"{kind.replace('_', ' ')}: fastest {what} {per / 1e9:.2f} G elements/s "
                  f"(NORM_ROW_RATES: {shown(f'{kind}_elems_s', 1e9)})")
    if by["layer_norm"]:
        per = max(r["rows"] / (r["y"] * 1e-6 * sm) for r in by["layer_norm"])
        out["layer_norm_rows_s_per_sm"] = per
        print(f"layer norm: fastest {per / 1e6:.2f} M rows/s per SM "
              f"(NORM_ROW_RATES: {shown('layer_norm_rows_s_per_sm', 1e6)})")
    print(HEAD)
    for kind, sub in by.items():
        for lo, hi in ((1, 132), (132, 4096), (4096, float("inf"))):
            part = [r for r in sub if lo <= r["rows"] < hi]
            if not part:
                continue
            for lab, key in (("timeline", "p"), ("roofline", "bound")):
                st = _stats([r["y"] for r in part], [r[key] for r in part])
                out[f"{kind} rows {lo}-{hi} {lab}"] = st
                print(_line(f"{kind[:5]} {lo}-{hi:g} {lab[:4]}", st))
    return out


def _element_report(recs: list[dict]) -> dict:
    """Kinds run element by element: the fastest output elements per second per SM measured here (kernels of
    at least 1e5 elements; where ``ELEMENT_RATES`` comes from: the packaged set's) next to the constant,
    then the timeline's time-weighted error and p/y on fp32 and fp16 inference kernels of each kind."""
    from costmodel.devices import get_device
    from costmodel.predictors import MEASURED_ELEMENT_RATES, kernel_ceilings

    rates = kernel_ceilings().get("element_rates") or {}
    sm = get_device("h200").sm_count
    print("\nkinds run element by element: fastest output elements/s per SM here (1e5 elements or more), "
          "MEASURED_ELEMENT_RATES, the rate applied (ELEMENT_RATES), then the timeline by dtype (inference)")
    print(f"{'':<12}{'fastest':>9}{'measured':>9}{'applied':>9}{'fp32 ms':>9}{'wErr %':>8}{'p/y':>6}{'fp16 ms':>9}"
          f"{'wErr %':>8}{'p/y':>6}")
    out: dict = {}
    kinds = sorted(set(MEASURED_ELEMENT_RATES) | set(rates), key=lambda k: -sum(r["y"] for r in recs if r["kind"] == k))
    for k in kinds:
        sub = [r for r in recs if r["kind"] == k]
        big = [r["numel"] / (r["y"] * 1e-6 * sm) for r in sub if r["numel"] >= 1e5]
        row = {"fastest_per_sm": max(big) if big else None, "measured_per_sm": MEASURED_ELEMENT_RATES.get(k),
               "applied_per_sm": rates.get(k)}
        cells = ""
        for dt in ("fp32", "fp16"):
            part = [r for r in sub if r["dtype"] == dt and r["mode"] == "inference"]
            st = _stats([r["y"] for r in part], [r["p"] for r in part]) if part else None
            row[dt] = st
            cells += f"{st['time_ms']:>9.1f}{st['weighted']:>8.1f}{st['ratio']:>6.2f}" if st else f"{'-':>9}{'':>8}{'':>6}"
        out[k] = row
        fast = f"{row['fastest_per_sm'] / 1e9:.2f}G" if big else "-"
        measured = f"{MEASURED_ELEMENT_RATES[k] / 1e9:.2f}G" if k in MEASURED_ELEMENT_RATES else "-"
        applied = f"{rates[k] / 1e9:.2f}G" if rates.get(k) else "-"
        print(f"{k:<12}{fast:>9}{measured:>9}{applied:>9}{cells}")
    return out


def report(name: str, recs: list[dict], cover: list[dict], sync_ms: float | None = None) -> dict:
    out: dict = {}
    y = [r["y"] for r in recs]
    print(f"\n== {name}: {len(cover)} runs, {len({c['model'] for c in cover})} architectures, "
          f"{len(recs)} forward operators with a kernel time\n")
    print(HEAD)
    out["timeline"] = _stats(y, [r["p"] for r in recs])
    out["roofline"] = _stats(y, [r["bound"] for r in recs])
    print(_line("timeline", out["timeline"]))
    print(_line("roofline bound", out["roofline"]))
    print("\nby operator kind (timeline; the ten kinds with the most measured time)")
    print(HEAD)
    by = defaultdict(list)
    for r in recs:
        by[r["kind"]].append(r)
    kinds = sorted(by, key=lambda k: -sum(r["y"] for r in by[k]))[:10]
    out["kinds"] = {}
    for k in kinds:
        s = _stats([r["y"] for r in by[k]], [r["p"] for r in by[k]])
        out["kinds"][k] = s
        print(_line(k, s))
    print("\nby dtype and mode (timeline)")
    print(HEAD)
    out["dtype"] = {}
    for key in sorted({(r["dtype"], r["mode"]) for r in recs}):
        sub = [r for r in recs if (r["dtype"], r["mode"]) == key]
        s = _stats([r["y"] for r in sub], [r["p"] for r in sub])
        out["dtype"][" ".join(key)] = s
        print(_line(" ".join(key), s))
    dw = [r for r in recs if r["dw"]]
    if dw:
        print("\ndepthwise convolutions by kernel size: timeline, then the bare roofline bound")
        print(HEAD)
        out["depthwise"] = {}
        for kk in sorted({r["kernel"] for r in dw}):
            sub = [r for r in dw if r["kernel"] == kk]
            for lab, key in (("timeline", "p"), ("roofline", "bound")):
                s = _stats([r["y"] for r in sub], [r[key] for r in sub])
                out["depthwise"][f"{kk}x{kk} {lab}"] = s
                print(_line(f"{kk}x{kk} {lab}", s))
    norms = [r for r in recs if r["rows"] > 0]
    if norms:
        out["norms"] = _norm_report(norms)
    out["element_rates"] = _element_report(recs)
    cov = [c for c in cover if c["work"]]
    share = np.mean([c["mapped"] / c["work"] for c in cov]) if cov else float("nan")
    out["mapped_work_share"] = float(share)
    if sync_ms is not None:
        out["composition"] = _composition_report(cover, sync_ms)
    print(f"\nmapping: {100 * share:.1f} % of the runs' work nodes placed on average (the rest: nodes whose kernels ran "
          "inside another operator's profiled event, or that launched none; see docs/measuring.md)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="train,new", help="comma list of: " + ", ".join(SETS))
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--artifact", type=Path, help="a saved timeline predictor (default: the shipped one)")
    ap.add_argument("--fit-op-weight", type=float, nargs="*", default=[], metavar="W",
                    help="also fit a timeline on the packaged H200 vision rows with per-operator labels at each "
                         "weight W (TimelineConfig.op_weight; 0: the whole-model rows alone) and score it the same "
                         "way (on the train set these labels were in its fit)")
    a = ap.parse_args(argv)
    sets = [s.strip() for s in a.sets.split(",") if s.strip()]
    bad = [s for s in sets if s not in SETS]
    if bad:
        ap.error(f"unknown set(s) {bad}; choose from {sorted(SETS)}")
    warnings.simplefilter("ignore")
    from costmodel.datasets import PerfDataset
    from costmodel.devices import get_device
    from costmodel.predictors import get_predictor

    if a.artifact:
        from costmodel.predictors import TimelinePredictor

        pred = TimelinePredictor.load(a.artifact)
    else:
        pred = get_predictor("timeline")
    dev = get_device("h200")
    ds = PerfDataset.load()
    seen = {r.model for r in ds.rows}
    preds = [("shipped" if not a.artifact else str(a.artifact), pred)]
    if a.fit_op_weight:
        from costmodel.predictors import TimelineConfig, TimelinePredictor
        from costmodel.predictors import packaged_op_runs

        vis = [i for i, r in enumerate(ds.rows) if r.kind == "vision"]
        graphs, rows = [ds.graph(i) for i in vis], [ds.rows[i] for i in vis]
        runs = packaged_op_runs()
        for w in a.fit_op_weight:
            t0 = time.perf_counter()
            p = TimelinePredictor(TimelineConfig(op_weight=w)).fit_graphs(graphs, rows, op_runs=runs)
            preds.append((f"fitted, op_weight {w:g}", p))
            print(f"fitted op_weight {w:g} on {len(rows)} vision rows and {len(runs)} operator runs "
                  f"({time.perf_counter() - t0:.0f} s)")
    res = {}
    for label, p in preds:
        for s in sets:
            t0 = time.perf_counter()
            recs, cover = collect(s, p, dev, seen, a.progress)
            res[f"{label} / {s}"] = report(f"{label} / {s}", recs, cover, p.params.sync_us / 1e3)
            print(f"({time.perf_counter() - t0:.0f} s)")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
