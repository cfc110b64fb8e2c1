"""Training steps with frozen parameters, measured on this CPU against the timeline's prediction.

    python benchmarks/frozen.py [--quick] [--json FILE]
    python benchmarks/frozen.py --rescore FILE     # an earlier run's measurements, today's predictor

A linear probe (only the classifier trains) or a partial fine-tune (the last
stage and the classifier) runs a different step from full training: autograd
computes no gradient for the frozen layers before the first trainable one, a
frozen GEMM or convolution under a trainable layer computes its input's
gradient only, and the optimizer updates the trainable tensors alone. The
frontends read ``requires_grad`` (a model spec's ``trainable`` key sets it on a
zoo model) and the timeline replays that step.

Every row is measured here with the packaged protocol (``costmodel collect``'s
``measure_cpu``, one thread: how the CPU operator rows were profiled) and
predicted by the default predictor on the ``cpu`` device. Nothing measured here
trains anything: the CPU operator model was fitted on full training steps and
inference calls only. This host's speed drifts by more than 2x from hour to
hour, so each setting is measured ``--rounds`` times, interleaved with the
others, and the comparison is the ratio of each frozen step to the full step
of the same model and batch. The table prints, per model and batch, the
measured median (and the spread of the rounds) and predicted latency of each
setting and the two ratios; the summary gives the ratio error with and without
modelling the frozen parameters (without, the prediction is the full step's),
and the absolute error of the full steps (how far this host is today from the
one the CPU operator model was profiled on).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

#: (spec, batch, the partial fine-tune's trainable prefixes)
CASES = [
    ({"src": "tv", "name": "resnet18"}, 8, ["layer4", "fc"]),
    ({"src": "tv", "name": "mobilenet_v3_small"}, 16, ["features.12", "classifier"]),
    ({"src": "tv", "name": "efficientnet_b0"}, 8, ["features.7", "features.8", "classifier"]),
    ({"src": "tv", "name": "densenet121"}, 4, ["features.denseblock4", "features.norm5", "classifier"]),
    ({"src": "tv_vit", "name": "vit_small_6l", "res": 224,
      "kw": {"patch_size": 16, "num_layers": 6, "num_heads": 6, "hidden_dim": 384, "mlp_dim": 1536}}, 8,
     ["encoder.layers.encoder_layer_5", "encoder.ln", "heads"]),
    ({"src": "tv", "name": "convnext_tiny"}, 4, ["features.7", "classifier"]),
]
QUICK = 2  # --quick: the first two models


def _measure(spec: dict, batch: int) -> float:
    from costmodel.measure import measure_cpu

    return float(measure_cpu(spec, batch, mode="train", threads=1)["latency_ms"])


def _predict(spec: dict, batch: int) -> float:
    import costmodel

    return float(costmodel.estimate(spec, device="cpu", batch=batch, mode="training").latency_ms)


SETTINGS = ("all", "last stage", "head")


def _ratio_err(pred: float, meas: float) -> float:
    return abs(pred - meas) / meas * 100


def _rescore(path: str) -> int:
    """The shipped predictor's fraction error on the measured rows of an earlier ``--json`` file."""
    with open(path) as f:
        rows = json.load(f)
    cases = {spec["name"]: (spec, batch, prefixes) for spec, batch, prefixes in CASES}
    errs: dict[str, list[float]] = {"last stage": [], "head": []}
    for r in rows:
        if r["trainable"] == "all" or r["model"] not in cases:
            continue
        spec, batch, prefixes = cases[r["model"]]
        p = _predict(dict(spec, trainable="head" if r["trainable"] == "head" else prefixes), batch)
        errs[r["trainable"]].append(_ratio_err(p / _predict(dict(spec, trainable="all"), batch), r["ratio_measured"]))
    every = errs["last stage"] + errs["head"]
    print(f"{path}: fraction error of the shipped predictor on its {len(every)} frozen rows: "
          f"last stage {statistics.mean(errs['last stage']):.1f} %, head {statistics.mean(errs['head']):.1f} %, "
          f"all {statistics.mean(every):.1f} %")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"the first {QUICK} models only")
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved measurements of each setting (median; this host's speed drifts)")
    ap.add_argument("--json", help="write the rows to this file")
    ap.add_argument("--rescore", metavar="FILE",
                    help="measure nothing: score the shipped predictor on the rows of an earlier --json file")
    args = ap.parse_args(argv)
    if args.rescore:
        return _rescore(args.rescore)
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")
    import torch

    torch.set_num_threads(1)
    cases = CASES[:QUICK] if args.quick else CASES
    rows = []
    t0 = time.perf_counter()
    print(f"{'model':<20} {'batch':>5} {'trainable':<11} {'measured ms':>11} {'spread %':>8} {'predicted':>9} "
          f"{'err %':>6} {'ratio meas.':>11} {'ratio pred.':>11} {'ratio err %':>11}")
    for spec, batch, prefixes in cases:
        specs = {"all": dict(spec, trainable="all"), "last stage": dict(spec, trainable=prefixes),
                 "head": dict(spec, trainable="head")}
        times: dict[str, list[float]] = {k: [] for k in SETTINGS}
        for r in range(args.rounds):  # interleaved, in a rotating order, so that drift hits every setting alike
            for k in SETTINGS[r % 3:] + SETTINGS[:r % 3]:
                times[k].append(_measure(specs[k], batch))
        meas = {k: statistics.median(v) for k, v in times.items()}
        pred = {k: _predict(specs[k], batch) for k in SETTINGS}
        for k in SETTINGS:
            y, p = meas[k], pred[k]
            row = {"model": spec["name"], "batch": batch, "trainable": k, "measured_ms": y, "measured_runs_ms": times[k],
                   "predicted_ms": p, "ratio_measured": y / meas["all"], "ratio_predicted": p / pred["all"]}
            rows.append(row)
            spread = 100 * (max(times[k]) - min(times[k])) / y
            print(f"{spec['name']:<20} {batch:>5} {k:<11} {y:>11.1f} {spread:>8.0f} {p:>9.1f} {100 * (p - y) / y:>+6.1f} "
                  f"{row['ratio_measured']:>11.2f} {row['ratio_predicted']:>11.2f} "
                  f"{_ratio_err(row['ratio_predicted'], row['ratio_measured']) if k != 'all' else 0.0:>11.1f}",
                  flush=True)

    def mean(xs):
        return statistics.mean(xs) if xs else float("nan")

    full = [r for r in rows if r["trainable"] == "all"]
    print()
    print("The frozen step as a fraction of the full step (both measured in the same rounds, so this host's speed")
    print("cancels), against the prediction; ignoring the frozen parameters predicts the full step (ratio 1).")
    print()
    print("| rows | n | ratio error % | ignoring the frozen parameters |")
    print("| --- | --- | --- | --- |")
    for label in ("last stage", "head"):
        rs = [r for r in rows if r["trainable"] == label]
        print(f"| trainable: {label} | {len(rs)} | {mean([_ratio_err(r['ratio_predicted'], r['ratio_measured']) for r in rs]):.1f} "
              f"| {mean([_ratio_err(1.0, r['ratio_measured']) for r in rs]):.1f} |")
    rs = [r for r in rows if r["trainable"] != "all"]
    print(f"| all frozen rows | {len(rs)} | {mean([_ratio_err(r['ratio_predicted'], r['ratio_measured']) for r in rs]):.1f} "
          f"| {mean([_ratio_err(1.0, r['ratio_measured']) for r in rs]):.1f} |")
    print(f"\nfull training steps, absolute: latency MAPE {mean([abs(r['predicted_ms'] - r['measured_ms']) / r['measured_ms'] * 100 for r in full]):.1f} % "
          f"({len(full)} rows; this host's speed today against the profiled one); {time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
