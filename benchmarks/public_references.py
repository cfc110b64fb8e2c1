"""Predictions on GPUs without packaged rows, against latencies others published.

    PYTHONPATH=. python benchmarks/public_references.py
    PYTHONPATH=. python benchmarks/public_references.py --predictors timeline trappm --extra /path/to/artifact

The packaged measurements come from one GPU (an H200); nothing in them says
whether a prediction for a V100, a T4 or an A100 is right. The latencies in
``benchmarks/data/public/references.json`` were published by others for the same
models on those GPUs (each row names its source, commit and protocol). They
are never trained on; they check how each predictor carries over to a GPU it
has no rows for. The sources' software and timing differ from the packaged
protocol, so a row can only show agreement within tens of percent; what the
table is for is a ratio far from 1 on every row of one GPU.

Prints every row (published, predicted, ratio predicted / published), then per
GPU and predictor the MAPE, the geometric-mean ratio and its spread. With
``--breakdown MODEL:BATCH`` (e.g. ``resnet50:128``), the timeline's device lane of
that fp32 inference call on every GPU of the file and on the H200, per operator
kind: milliseconds and the time-weighted efficiency under the roofline.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REFERENCES = HERE / "data" / "public" / "references.json"


def load_references(path: Path = REFERENCES) -> tuple[dict, list[dict]]:
    """The sources and the rows, each row with ``latency_ms`` (from its throughput where that is what
    the source published: batch / throughput)."""
    doc = json.loads(Path(path).read_text())
    if doc.get("format") != "costmodel.public-references":
        raise SystemExit(f"{path}: not a costmodel.public-references file")
    rows = []
    for r in doc["rows"]:
        if r["source"] not in doc["sources"]:
            raise SystemExit(f"{path}: row names an unknown source {r['source']!r}")
        r = dict(r)
        if "latency_ms" not in r:
            r["latency_ms"] = 1000.0 * r["batch"] / r["throughput_samples_s"]
        rows.append(r)
    return doc["sources"], rows


def _label(r: dict) -> str:
    model = r["model"].split(":", 1)[1]
    return f"{model} {r['device']} {r['mode'][:5]} b{r['batch']}"


def predict_rows(rows: list[dict], predictors: dict) -> tuple[dict[str, list[float]], list[float]]:
    """Each predictor's latency (ms) for every row, and each row's published rate in TFLOP/s (the graph's
    FLOPs, three times the forward's for a training step, over the published latency); one graph per
    (model, batch, mode, dtype)."""
    from costmodel.frontends import to_graph

    graphs: dict[tuple, object] = {}
    out: dict[str, list[float]] = {name: [] for name in predictors}
    rates = []
    for r in rows:
        key = (r["model"], r["batch"], r["mode"], r["dtype"])
        if key not in graphs:
            graphs[key] = to_graph(r["model"], batch=r["batch"], mode=r["mode"], dtype=r["dtype"])
        g = graphs[key]
        work = g.flops * (3 if r["mode"] == "training" else 1)
        rates.append(work / (r["latency_ms"] * 1e-3) / 1e12)
        for name, p in predictors.items():
            e = p.predict(g, r["device"], mode=r["mode"], optimizer=r.get("optimizer", "sgd"))
            out[name].append(float(e.latency_ms))
    return out, rates


def summarize(rows: list[dict], preds: dict[str, list[float]], *, trusted_only: bool = False) -> list[tuple]:
    """Per GPU and predictor: (device, predictor, rows, MAPE %, geometric-mean ratio, min ratio, max ratio);
    ``trusted_only``: without the rows that carry a ``doubt``."""
    table = []
    by_dev: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if not (trusted_only and r.get("doubt")):
            by_dev[r["device"]].append(i)
    for dev, idx in [*sorted(by_dev.items()), ("all", sorted(i for v in by_dev.values() for i in v))]:
        for name, p in preds.items():
            ratios = [p[i] / rows[i]["latency_ms"] for i in idx]
            mape = 100.0 * sum(abs(q - 1.0) for q in ratios) / len(ratios)
            geo = math.exp(sum(math.log(q) for q in ratios) / len(ratios))
            table.append((dev, name, len(idx), mape, geo, min(ratios), max(ratios)))
    return table


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--predictors", nargs="+", default=["timeline", "trappm", "dippm", "xgb-static", "analytic"],
                    help="registered predictors to score (default: the vision predictors)")
    ap.add_argument("--extra", nargs="*", default=[], metavar="DIR",
                    help="trained artifact folders to score beside them (named by their folder)")
    ap.add_argument("--references", type=Path, default=REFERENCES, help="a references file (default: the packaged one)")
    ap.add_argument("--plot", default=None, metavar="DIR",
                    help="also draw DIR/public_references.png: predicted against published latency per GPU")
    ap.add_argument("--conv-as-conv", action="store_true",
                    help="read fp32 convolutions on GPUs without TF32 as convolutions, not as the CUDA-core "
                         "matmuls the timeline reads them as (the timeline before that reading)")
    ap.add_argument("--breakdown", default=None, metavar="MODEL:BATCH",
                    help="also print the timeline's device lane per operator kind for this torchvision model's "
                         "fp32 inference call (e.g. resnet50:128) on each GPU")
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    if a.conv_as_conv:
        from costmodel.predictors import cuda_core_conv_reading

        with cuda_core_conv_reading(False):
            return _run(a)
    return _run(a)


def _run(a) -> None:
    """:func:`main` once the arguments are read."""
    from costmodel.predictors import get_predictor, load_predictor

    sources, rows = load_references(a.references)
    predictors = {name: get_predictor(name) for name in a.predictors}
    predictors.update({Path(d).name: load_predictor(d) for d in a.extra})
    preds, rates = predict_rows(rows, predictors)

    names = list(predictors)
    print(f"{len(rows)} published rows from {len(sources)} sources ({a.references.name}); latency ms, "
          "the published run's TFLOP/s, and predicted / published (* : a row with a doubt, see the file)")
    print(f"{'row':<42}{'source':<18}{'published':>10}{'TFLOP/s':>9}" + "".join(f"{n:>16}" for n in names))
    for i, r in enumerate(rows):
        cells = "".join(f"{preds[n][i]:>8.1f} ({preds[n][i] / r['latency_ms']:.2f})" for n in names)
        label = _label(r) + (" *" if r.get("doubt") else "")
        print(f"{label:<42}{r['source']:<18}{r['latency_ms']:>10.1f}{rates[i]:>9.1f}{cells}")
    if a.plot:
        _chart(rows, preds, Path(a.plot) / "public_references.png")
    for trusted in (False, True):
        what = "without the rows with a doubt" if trusted else "every row"
        print(f"\n{what}\n{'GPU':<12}{'predictor':<16}{'rows':>5}{'MAPE %':>9}{'geo ratio':>11}{'min':>7}{'max':>7}")
        for dev, name, n, mape, geo, lo, hi in summarize(rows, preds, trusted_only=trusted):
            print(f"{dev:<12}{name:<16}{n:>5}{mape:>9.1f}{geo:>11.2f}{lo:>7.2f}{hi:>7.2f}")
    if a.breakdown:
        model, _, batch = a.breakdown.partition(":")
        if not batch.isdigit():
            raise SystemExit(f"--breakdown takes MODEL:BATCH (e.g. resnet50:128), got {a.breakdown!r}")
        devices = ["h200", *dict.fromkeys(r["device"] for r in rows)]
        print(f"\ntimeline device lane of torchvision:{model} at batch {batch}, fp32 inference "
              "(ms; time-weighted efficiency under the roofline), the five longest kinds per GPU")
        for dev, kinds in lane_breakdown(model, int(batch), devices).items():
            total = sum(ms for ms, _ in kinds.values())
            top = sorted(kinds.items(), key=lambda kv: -kv[1][0])[:5]
            print(f"{dev:<12}{total:>8.1f} ms  " + "  ".join(f"{k} {ms:.1f} ({eff:.2f})" for k, (ms, eff) in top))


def lane_breakdown(model: str, batch: int, devices: list[str]) -> dict[str, dict[str, tuple[float, float]]]:
    """Per GPU, the timeline's device milliseconds and time-weighted efficiency of each operator kind of a
    torchvision model's fp32 inference call."""
    from costmodel.frontends import to_graph
    from costmodel.predictors import get_predictor

    tl = get_predictor("timeline")
    g = to_graph(f"torchvision:{model}", batch=batch)
    out = {}
    for dev in devices:
        acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for o in tl.operator_times(g, dev, mode="inference"):
            if o["node"] >= 0:
                a = acc[g.nodes[o["node"]].kind]
                a[0] += o["device_ms"]
                a[1] += o["device_ms"] * o["efficiency"]
        out[dev] = {k: (ms, w / ms if ms else 0.0) for k, (ms, w) in acc.items()}
    return out


def _chart(rows: list[dict], preds: dict[str, list[float]], out: Path) -> None:
    """Predicted against published latency, one panel per predictor, a colour per GPU; rows with a doubt
    hollow; the diagonal and a factor of 1.5 either side."""
    from costmodel.measure.charts import pyplot

    plt = pyplot("the published-latency chart")
    names = list(preds)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.0), squeeze=False)
    devices = list(dict.fromkeys(r["device"] for r in rows))
    colours = dict(zip(devices, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    lo = min(min(r["latency_ms"] for r in rows), min(min(p) for p in preds.values())) / 1.3
    hi = max(max(r["latency_ms"] for r in rows), max(max(p) for p in preds.values())) * 1.3
    for ax, name in zip(axes[0], names):
        for dev in devices:
            for doubt in (False, True):
                idx = [i for i, r in enumerate(rows) if r["device"] == dev and bool(r.get("doubt")) == doubt]
                if idx:
                    ax.scatter([rows[i]["latency_ms"] for i in idx], [preds[name][i] for i in idx], s=28,
                               facecolors="none" if doubt else colours[dev], edgecolors=colours[dev],
                               label=None if doubt else dev)
        for f, style in ((1.0, "-"), (1.5, ":"), (1 / 1.5, ":")):
            ax.plot([lo, hi], [lo * f, hi * f], color="grey", linestyle=style, linewidth=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("published latency (ms)")
        ax.set_ylabel("predicted latency (ms)")
        ax.set_title(name)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("GPUs without packaged rows: predicted against published (hollow: a row with a doubt; "
                 "dotted: x1.5)", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"chart: {out}")


if __name__ == "__main__":
    main()
