"""Roofline charts: a model's operators against a device's ceilings (matplotlib).

>>> from costmodel.measure.charts import roofline_chart
>>> fig = roofline_chart("torchvision:resnet50", "h100", batch=32, output="resnet50.png")

Each operator that does arithmetic is one point: x is its arithmetic
intensity (FLOPs per byte read and written), y the FLOP/s it is predicted to
reach (its FLOPs over its analytic time on the device, launch and dispatch
overheads included, so launch-bound operators sit far below the roof).  The
ceilings are the device's compute peaks per dtype (tensor cores and vector
units) and its DRAM bandwidth, plus L2/L1 (or a CPU's L1/L2/L3) bandwidth
when a measured machine profile gives them.  Points are coloured by op
category; the operators that take most predicted time are ringed and
labelled.  The file type follows the suffix (``.png``, ``.svg``, ``.pdf``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .._errors import CostModelError, InvalidInputError
from .._validate import int_at_least

_COLORS = {
    "compute": "#1f77b4", "normalization": "#ff7f0e", "activation": "#2ca02c", "pooling": "#d62728",
    "elementwise": "#9467bd", "reduction": "#8c564b", "layout": "#e377c2", "embedding": "#7f7f7f",
    "memory": "#bcbd22", "other": "#17becf",
}
_SUFFIXES = (".png", ".svg", ".pdf")


PLOT_INSTALL = 'pip install "costmodel[plot]"'


def pyplot(what: str = "charts"):
    """``matplotlib.pyplot`` on the file-only Agg backend; without matplotlib (the ``plot`` extra)
    a :class:`~costmodel.CostModelError` that names the install line."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise CostModelError(f"{what} need matplotlib, which is not installed: {PLOT_INSTALL}") from None
    return plt


def check_output(output) -> Path | None:
    if output is None:
        return None
    p = Path(output)
    if p.suffix.lower() not in _SUFFIXES:
        raise InvalidInputError(f"chart file must end in one of {list(_SUFFIXES)}, got {str(p)!r}")
    return p


def ceilings(device, machine=None) -> dict[str, Any]:
    """``{"device", "compute": {label: FLOP/s}, "memory": {label: bytes/s}}`` for a device (and a measured
    profile). With a profile, ``device`` is the database entry with the profile's measured figures
    (:meth:`~costmodel.devices.MachineProfile.to_device`), so that operators are timed against the ceilings
    drawn: timed with the database's nominal ``cpu`` entry (1 TFLOP/s), a 2-core machine's convolutions sat
    at ten times the measured peak drawn above them."""
    import os

    from ..devices import get_device

    dev = get_device(device)
    if isinstance(machine, (str, os.PathLike)):  # a saved profile (--save-profile's file)
        from ..devices.profile import MachineProfile

        machine = MachineProfile.load(machine)
    elif machine is not None and not any(hasattr(machine, a) for a in ("to_device", "peak_gflops", "levels")):
        raise InvalidInputError(f"machine must be a measured profile (MachineProfile) or the path of a saved one, "
                                f"got a {type(machine).__name__} ({machine!r:.60})")
    compute: dict[str, float] = {}
    memory: dict[str, float] = {}
    if machine is not None and hasattr(machine, "to_device"):
        on_cpu = dev.vendor.lower() not in ("nvidia", "amd")
        if (machine.kind == "cpu") != on_cpu:
            raise InvalidInputError(f"the machine profile measured a {'CPU' if machine.kind == 'cpu' else 'GPU'} "
                                    f"({machine.name!r}); --device {dev.name} is {'a CPU' if on_cpu else 'a GPU'}: "
                                    "pass the device the profile measured")
        dev = machine.to_device(base=dev)
    if machine is not None:  # measured ceilings replace the datasheet's
        for dt, gflops in (getattr(machine, "peak_gflops", None) or {}).items():
            if gflops:
                compute[f"{dt} measured"] = float(gflops) * 1e9
        for level, gbps in (getattr(machine, "levels", None) or {}).items():
            if gbps:
                memory[str(level)] = float(gbps) * 1e9
    if not compute:
        compute = _datasheet_peaks(dev)
    if "DRAM" not in memory:
        memory["DRAM"] = dev.bandwidth_bytes_s
    return {"device": dev, "compute": compute, "memory": memory}


def _datasheet_peaks(dev) -> dict[str, float]:
    """The database's compute ceilings, each label naming the units it runs on: ``"fp16 tensor"``...,
    plain ``"fp32"``, and ``"fp64 tensor"`` where the fp64 figure is an FP64 tensor-core rate (A100, A30,
    H100, H200: higher than the non-tensor FP64 rate :meth:`~costmodel.devices.Device.peak_flops` gives
    pointwise fp64, which is then a ceiling of its own, ``"fp64 vector"``)."""
    out: dict[str, float] = {}
    for dt in ("fp16", "bf16", "tf32", "fp32"):
        v = dev.peak_tflops.get(dt)
        if v:
            out[f"{dt} tensor" if dt != "fp32" else dt] = v * 1e12
    if dev.vector_tflops_fp32 and dev.vector_tflops_fp32 * 1e12 != out.get("fp32"):
        out["fp32 vector"] = dev.vector_tflops_fp32 * 1e12
    fp64 = dev.peak_tflops.get("fp64")
    if fp64:
        vector_fp64 = dev.peak_flops("fp64", tensor=False)
        if vector_fp64 < fp64 * 1e12:
            out["fp64 tensor"] = fp64 * 1e12
            out["fp64 vector"] = vector_fp64
        else:
            out["fp64"] = fp64 * 1e12
    return out


#: predictors whose per-operator times a chart can use (``predictor.operator_times``)
OP_TIME_PREDICTORS = ("analytic", "timeline")


def op_points(graph, device, *, mode: str | None = None, predictor: str = "analytic") -> list[dict[str, Any]]:
    """One record per operator with FLOPs: kind, category, FLOPs, bytes, intensity, time, achieved FLOP/s.

    ``predictor="analytic"`` times each forward operator with the analytic roofline (a point sits on
    its ceiling); ``"timeline"`` with the timeline predictor's learned efficiency under that roofline
    (its ``operator_times``), so a point sits where the predictor expects the kernel to run. Either way
    a point is the operator's forward pass: its FLOPs over its forward time (in a training step the
    analytic roofline times each operator's forward and backward kernels together, about three times
    the forward's work, which the node's FLOPs do not count).
    """
    from ..analysis import BACKWARD_FACTOR, roofline
    from ..devices import get_device
    from ..ir import category

    if predictor not in OP_TIME_PREDICTORS:
        raise InvalidInputError(f"predictor {predictor!r} gives no per-operator times; valid: "
                                f"{', '.join(OP_TIME_PREDICTORS)}")
    dev = get_device(device)
    res = roofline(graph, dev, mode=mode)
    passes = 1.0 + (BACKWARD_FACTOR if (mode or graph.meta.get("mode", "inference")) == "training" else 0.0)
    times = {t.node: (t.total_s / passes, t.bound) for t in res.ops}
    if predictor == "timeline":
        from ..predictors import get_predictor

        learned = get_predictor("timeline").operator_times(graph, dev, mode=mode)
        times = {r["node"]: (r["device_ms"] / 1e3, times.get(r["node"], (0, "?"))[1])
                 for r in learned if r["phase"] == "forward" and r["node"] >= 0}
    out = []
    for nid, (total_s, bound) in times.items():
        n = graph.nodes[nid]
        moved = n.bytes_read + n.bytes_written
        if n.flops <= 0 or moved <= 0 or total_s <= 0:
            continue
        out.append({
            "node": n.id, "op": n.op, "kind": n.kind, "category": category(n.kind), "flops": n.flops,
            "bytes": moved, "intensity": n.flops / moved, "time_s": total_s, "achieved_flops": n.flops / total_s,
            "bound": bound,
        })
    return out


def roofline_chart(model, device="h100", *, batch: int = 1, mode: str = "inference", dtype: str | None = None,
                   input_shape=None, machine=None, top: int = 8, output=None, title: str | None = None,
                   predictor: str = "analytic", autocast: str | None = None):
    """Draw a model's operators on the device's roofline; returns the matplotlib Figure.

    ``predictor``: whose per-operator times place the points (see :func:`op_points`); ``autocast``:
    the fp32 model under ``torch.autocast`` (its GEMMs against the lower precision's ceiling, and the
    casts autocast adds)."""
    plt = pyplot("roofline charts")

    from ..frontends import to_graph

    out = check_output(output)
    int_at_least(top, "top", 0)
    c = ceilings(device, machine)
    dev = c["device"]
    graph = to_graph(model, batch=batch, input_shape=input_shape, dtype=dtype, mode=mode, autocast=autocast)
    pts = op_points(graph, dev, mode=mode, predictor=predictor)
    if not pts:
        raise InvalidInputError(f"the model {graph.meta.get('name')!r} has no operator with FLOPs to place")

    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    xs = [p["intensity"] for p in pts]
    x_lo = 10 ** math.floor(math.log10(min(xs) / 2))
    x_hi = 10 ** math.ceil(math.log10(max(xs) * 4))
    _draw_ceilings(ax, c, x_lo, x_hi)
    for cat in sorted({p["category"] for p in pts}):
        sel = [p for p in pts if p["category"] == cat]
        ax.scatter([p["intensity"] for p in sel], [p["achieved_flops"] for p in sel], s=16, alpha=0.7,
                   color=_COLORS.get(cat, "#333333"), label=f"{cat} ({len(sel)})", zorder=3)
    total = sum(p["time_s"] for p in pts)
    # ring the ops with the most predicted time; ops at the same spot (repeated blocks) share one label
    groups: dict[tuple, list] = {}
    for p in sorted(pts, key=lambda p: -p["time_s"])[:top]:
        key = (p["kind"], round(math.log10(p["intensity"]), 2), round(math.log10(p["achieved_flops"]), 2))
        groups.setdefault(key, []).append(p)
    for (kind, _, _), ps in groups.items():
        p = ps[0]
        share = sum(q["time_s"] for q in ps) / total
        ax.scatter([p["intensity"]], [p["achieved_flops"]], s=90, facecolors="none", edgecolors="black",
                   linewidths=1.2, zorder=4)
        label = f"{kind} #{p['node']}" if len(ps) == 1 else f"{kind} x{len(ps)}"
        ax.annotate(f"{label} ({share:.0%})", (p["intensity"], p["achieved_flops"]), textcoords="offset points",
                    xytext=(6, -10), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_lo, x_hi)
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("predicted FLOP/s" + (" (timeline: learned efficiency)" if predictor == "timeline" else ""))
    name = graph.meta.get("name") or "model"
    amp = f", autocast {graph.meta['autocast']}" if graph.meta.get("autocast") else ""  # as the estimate says it
    ax.set_title(title or f"{name} on {dev.name}, {mode}, batch {graph.meta.get('batch', batch)}, "
                 f"{dtype or graph.meta.get('dtype', 'fp32')}{amp}"
                 f"  (ringed: top {min(top, len(pts))} by predicted time)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return _finish(fig, ax, out)


def machine_chart(device="cpu", *, machine=None, output=None, title: str | None = None):
    """The ceilings alone (a measured profile's when ``machine`` is given); returns the Figure."""
    plt = pyplot("roofline charts")

    out = check_output(output)
    c = ceilings(device, machine)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    _draw_ceilings(ax, c, 1e-2, 1e4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1e-2, 1e4)
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("attainable FLOP/s")
    src = getattr(machine, "name", None) or c["device"].name
    ax.set_title(title or f"roofline of {src}" + (" (measured)" if machine is not None else " (datasheet)"), fontsize=9)
    return _finish(fig, ax, out)


def parity_chart(panels, *, output=None, title: str | None = None, band_pct: float = 10.0):
    """Predicted against measured values, one log-log panel per entry of ``panels``; returns the Figure.

    ``panels``: a list of dicts with ``measured`` and ``predicted`` (equal-length sequences of positive
    numbers), ``groups`` (one label per point: its colour; optional), ``title`` and ``unit`` (the axis
    label's, e.g. ``"latency (ms)"``). Each panel draws the diagonal, a band of +-``band_pct`` % around it,
    and states its points' MAPE. A point that is not a positive finite number on both axes is an error
    (a log-log chart cannot place it), naming the panel and the point.
    """
    import numpy as np

    if not isinstance(panels, (list, tuple)) or not panels:
        raise InvalidInputError(f"panels must be a non-empty list of dicts, got {panels!r:.80}")
    band = float(band_pct)
    if not (0 < band < 100):
        raise InvalidInputError(f"band_pct must be in (0, 100), got {band_pct!r}")
    prepared = []
    for k, pan in enumerate(panels):
        name = (pan.get("title") if isinstance(pan, dict) else None) or f"panel {k}"
        if not isinstance(pan, dict) or "measured" not in pan or "predicted" not in pan:
            raise InvalidInputError(f"{name}: each panel needs 'measured' and 'predicted', got {pan!r:.80}")
        y = np.asarray(pan["measured"], dtype=float)
        p = np.asarray(pan["predicted"], dtype=float)
        groups = list(pan.get("groups") or ["all"] * len(y))
        if y.ndim != 1 or y.shape != p.shape or len(groups) != len(y) or len(y) == 0:
            raise InvalidInputError(f"{name}: measured, predicted and groups must be equal-length and non-empty, "
                                    f"got {y.shape}, {p.shape} and {len(groups)}")
        bad = np.flatnonzero(~(np.isfinite(y) & np.isfinite(p) & (y > 0) & (p > 0)))
        if bad.size:
            i = int(bad[0])
            raise InvalidInputError(f"{name}: point {i} is measured {float(y[i])!r}, predicted {float(p[i])!r}; "
                                    "a log-log chart needs positive finite values")
        prepared.append((name, y, p, groups, pan.get("unit", "value")))
    plt = pyplot("parity charts")
    from matplotlib import ticker

    out = check_output(output)
    fig, axes = plt.subplots(1, len(prepared), figsize=(4.6 * len(prepared), 4.6), dpi=110, squeeze=False)
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    for ax, (name, y, p, groups, unit) in zip(axes[0], prepared):
        lo = min(y.min(), p.min()) / 1.3
        hi = max(y.max(), p.max()) * 1.3
        xs = np.array([lo, hi])
        ax.fill_between(xs, xs * (1 - band / 100), xs * (1 + band / 100), color="gray", alpha=0.18, lw=0,
                        label=f"within {band:g} %")
        ax.plot(xs, xs, color="black", lw=0.8)
        for j, gname in enumerate(dict.fromkeys(groups)):
            idx = [i for i, g in enumerate(groups) if g == gname]
            ax.scatter(y[idx], p[idx], s=14, alpha=0.75, color=palette[j % len(palette)], lw=0,
                       label=f"{gname} ({len(idx)})")
        mape = float(np.mean(np.abs(p - y) / y) * 100)
        within = float(np.mean(np.abs(p - y) / y <= band / 100) * 100)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers at the decades, no labels in between
            axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel(f"measured {unit}")
        ax.set_ylabel(f"predicted {unit}")
        ax.set_title(f"{name}\nMAPE {mape:.1f} %, {within:.0f} % of {len(y)} within {band:g} %", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", frameon=False)
        ax.grid(True, which="both", alpha=0.2)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    return fig


def fit_chart(fits: list[dict], *, output=None, title: str | None = None, unit: str = "samples"):
    """The largest-batch answers (:func:`costmodel.largest_batch`'s dicts, one per limit) as one chart: the
    replayed memory of every batch the search traced, its 90 % interval's upper end, each limit as a
    horizontal line, and the two answers on it (a dot: by the memory; a ring: by the upper end)."""
    out = check_output(output)
    if not fits:
        raise InvalidInputError("fit_chart needs at least one answer")
    plt = pyplot("largest-batch charts")
    traced = {int(b): float(m) for f in fits for b, m in f["traced"].items()}
    xs = sorted(traced)
    ys = [traced[b] / 1024 for b in xs]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(xs, ys, "o-", color="#1f77b4", ms=3, lw=1.2, label="replayed memory (each batch traced)")
    ref = next((f for f in fits if f["upper_batch"] and f["upper_batch"] in traced), None)
    if ref is not None:  # the upper end is the memory times one factor per workload group
        k = ref["upper_memory_mb"] / traced[ref["upper_batch"]]
        ax.plot(xs, [y * k for y in ys], "--", color="#1f77b4", lw=1.0, alpha=0.7,
                label=f"upper end of its {100 * (ref.get('coverage') or 0.9):.0f} % interval")
    by_cap: dict[float, list[dict]] = {}
    for f in fits:  # limits of one size (1g.35gb, 2g.35gb) share one line
        by_cap.setdefault(float(f["limit_mb"]), []).append(f)
    for cap, same in sorted(by_cap.items()):
        f = same[0]
        ax.axhline(cap / 1024, color="#999999", lw=0.8, ls=":")
        names = " / ".join(g["limit"] for g in same)
        ax.text(xs[0], cap / 1024, f" {names}", fontsize=7, va="bottom", ha="left", color="#555555")
        if f["batch"]:
            ax.plot([f["batch"]], [f["memory_mb"] / 1024], "o", color="#d62728", ms=6)
        if f["upper_batch"] and f.get("upper_memory_mb"):
            ax.plot([f["upper_batch"]], [f["upper_memory_mb"] / 1024], "o", mfc="none", mec="#2ca02c", ms=9, mew=1.5)
        if f["batch"]:
            ax.annotate(f"{f['batch']}" + (f" ({f['upper_batch']})" if f["upper_batch"] != f["batch"] else ""),
                        (f["batch"], f["memory_mb"] / 1024), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.plot([], [], "o", color="#d62728", label="largest batch that fits")
    ax.plot([], [], "o", mfc="none", mec="#2ca02c", mew=1.5, label="... by the interval's upper end")
    ax.set_xscale("log")
    ax.set_xlabel(f"batch ({unit})")
    ax.set_ylabel("memory (GiB, NVML level)")
    ax.set_title(title or "largest batch that fits", fontsize=10)
    ax.legend(fontsize=7, loc="upper center")  # the limits are labelled at the left, the answers on the curve
    return _finish(fig, ax, out)


def _finish(fig, ax, out: Path | None):
    """Grid, layout, and the file when one was asked for."""
    ax.grid(True, which="both", alpha=0.2)
    fig.tight_layout()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    return fig


def _draw_ceilings(ax, c: dict, x_lo: float, x_hi: float) -> None:
    import numpy as np

    xs = np.logspace(math.log10(x_lo), math.log10(x_hi), 200)
    top = max(c["compute"].values())
    styles = ["-", "--", "-.", ":"]
    for i, (label, bw) in enumerate(sorted(c["memory"].items(), key=lambda kv: kv[1])):
        ys = np.minimum(xs * bw, top)
        ax.plot(xs, ys, styles[i % len(styles)], color="black", lw=1.0, alpha=0.8)
        # labels staggered down the slope so parallel lines do not share a spot
        y_lab = top / (3 * 2.5 ** i)  # each line labelled at its own height, to the right of the line
        ax.text(y_lab / bw * 1.3, y_lab, f"{label} {bw / 1e9:,.0f} GB/s", fontsize=7, ha="left", va="center")
    dram = c["memory"]["DRAM"]
    # equal peaks share one line; one label names the dtypes of one kind of unit (fp16 = bf16 tensor), a
    # peak of another kind at the same height (H100: fp32 and fp64 tensor, both 67) is labelled on its own
    merged: list[tuple[float, dict[str, list[str]]]] = []
    for label, peak in c["compute"].items():
        dt, _, units = label.partition(" ")
        same = [kinds for p, kinds in merged if abs(p - peak) <= 1e-6 * max(p, peak)]
        if not same:  # drawn where it was measured (rounding to whole GFLOP/s put 1.4 at 1, 0.4 at 0)
            merged.append((peak, {}))
            same = [merged[-1][1]]
        same[0].setdefault(units, []).append(dt)
    for peak, kinds in sorted(merged, key=lambda kv: -kv[0]):
        ridge = peak / dram
        x0 = max(ridge, x_lo)
        ax.hlines(peak, x0, x_hi, colors="gray", linestyles="-", lw=0.9)
        rate = f"{peak / 1e12:,.1f} TFLOP/s" if peak >= 1e12 else f"{peak / 1e9:,.0f} GFLOP/s"
        for i, (units, dts) in enumerate(kinds.items()):  # the first above the line, the others below it
            label = " = ".join(dts) + (f" {units}" if units else "")
            ax.text(x_hi / 1.5, peak * 1.08 if i == 0 else peak / 1.08 / 1.35 ** (i - 1), f"{label} {rate}",
                    fontsize=7, ha="right", va="baseline" if i == 0 else "top")
