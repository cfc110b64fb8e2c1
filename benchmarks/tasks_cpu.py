"""The shipped predictors on torchvision's other tasks, measured on this CPU: architectures nobody trained on.

    python benchmarks/tasks_cpu.py [--data benchmarks/data/cpu_tasks] [--predictors timeline analytic]

``benchmarks/data/cpu_tasks/vision.jsonl`` holds rows ``costmodel collect costmodel/data/specs/cpu_tasks.json
--device cpu --threads 1`` measured on this machine (``hardware.json`` beside them says which): segmentation
models at 520 x 520, video models with 3-D convolutions on a 16-frame clip, and detectors whose box
filtering and NMS follow the values (built and fed as the graph capture builds and feeds them, so the
measured run keeps the boxes the costed graph keeps). No predictor was trained on any of them: the CPU
rows the predictors learned from are classifiers and transformers.

This machine is shared, and its single-thread speed on large tensors moves between days (the same
resnet50 batch-16 call took 898 ms when the packaged rows were measured and 1,635 ms on another day,
while batch 1 agreed within 4 %). So the work file starts with 4 check rows that repeat packaged CPU
rows, measured in the same run. The script prints:

1. the check rows beside the packaged rows they repeat, and the timeline's prediction (it was trained on
   the packaged ones): how far the machine has moved since;
2. per task row, the measured latency and each predictor's;
3. MAPE %, Kendall tau and Acc(10 %) per task and over the task rows, as predicted and with the
   predictions scaled by the check rows' drift (the geometric mean of measured today over packaged:
   one number, fitted on 4 rows no task row is among);
4. the time per estimate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TASK = {"lraspp": "segmentation", "deeplabv3": "segmentation", "fcn": "segmentation", "r3d": "video",
        "r2plus1d": "video", "s3d": "video", "mvit": "video", "ssd": "detection", "fasterrcnn": "detection",
        "retinanet": "detection"}


PACKAGED = HERE.parent / "costmodel" / "data" / "cpu"


def _key(r: dict) -> tuple:
    spec = {k: v for k, v in r["spec"].items() if k != "family"}
    return json.dumps(spec, sort_keys=True), r["batch"], r["mode"], r["dtype"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=HERE / "data" / "cpu_tasks")
    ap.add_argument("--predictors", nargs="+", default=["timeline", "analytic"])
    args = ap.parse_args(argv)
    path = args.data / "vision.jsonl"
    if not path.exists():
        ap.error(f"no rows at {path}; measure them with costmodel collect costmodel/data/specs/cpu_tasks.json "
                 f"--device cpu --threads 1 -o {path}")
    rows = [r for r in map(json.loads, path.read_text().splitlines()) if r.get("latency_ms") and not r.get("oom")]
    packaged = {_key(r): r for r in map(json.loads, (PACKAGED / "ops_vision.jsonl").read_text().splitlines())}
    checks = [r for r in rows if _key(r) in packaged]
    rows = [r for r in rows if _key(r) not in packaged]
    hw = json.loads((args.data / "hardware.json").read_text()) if (args.data / "hardware.json").exists() else {}
    warnings.simplefilter("ignore")
    import costmodel
    from costmodel.training import report

    print(f"{len(rows)} rows measured on {hw.get('cpu', {}).get('model', 'this CPU') if isinstance(hw.get('cpu'), dict) else 'this CPU'}"
          f" ({hw.get('torch_threads', '?')} torch thread(s))\n")
    drift = 1.0
    if checks:
        print(f"{'check row':<40}{'batch':>6}{'packaged ms':>13}{'today ms':>10}{'today / packaged':>18}"
              f"{'timeline':>10}")
        ratios = []
        for r in checks:
            old = packaged[_key(r)]["latency_ms"]
            e = costmodel.estimate(r["spec"], batch=r["batch"], device="cpu", memory="predictor")
            ratios.append(r["latency_ms"] / old)
            print(f"{r['spec']['name']:<40}{r['batch']:>6}{old:>13.1f}{r['latency_ms']:>10.1f}{ratios[-1]:>18.2f}"
                  f"{e.latency_ms:>10.1f}")
        drift = float(np.exp(np.mean(np.log(ratios))))
        print(f"drift (geometric mean, today / packaged): {drift:.2f}\n")
    preds: dict[str, list[float]] = {p: [] for p in args.predictors}
    secs: dict[str, list[float]] = {p: [] for p in args.predictors}
    head = f"{'model':<40}{'batch':>6}{'measured ms':>13}" + "".join(f"{p:>12}" for p in args.predictors)
    print(head)
    for r in rows:
        line = f"{r['spec']['name']:<40}{r['batch']:>6}{r['latency_ms']:>13.1f}"
        for p in args.predictors:
            t0 = time.perf_counter()
            e = costmodel.estimate(r["spec"], batch=r["batch"], device="cpu", predictor=None if p == "timeline" else p,
                                   memory="predictor")
            secs[p].append(time.perf_counter() - t0)
            preds[p].append(e.latency_ms)
            line += f"{e.latency_ms:>12.1f}"
        print(line)
    y = np.array([r["latency_ms"] for r in rows])
    groups = {"all": np.ones(len(rows), bool)}
    for task in ("segmentation", "video", "detection"):
        groups[task] = np.array([TASK.get(r["spec"].get("family")) == task for r in rows])
    for scale, title in ((1.0, "as predicted"), (drift, f"predictions x {drift:.2f}, the check rows' drift")):
        if title != "as predicted" and not checks:
            continue
        print(f"\n{title}\n{'rows':<16}{'n':>4}" + "".join(f"{p + ' MAPE / tau / Acc10':>30}" for p in args.predictors))
        for name, m in groups.items():
            if m.sum() == 0:
                continue
            line = f"{name:<16}{int(m.sum()):>4}"
            for p in args.predictors:
                rep = report(y[m], np.array(preds[p])[m] * scale)
                tau = f"{rep['kendall_tau']:.2f}" if m.sum() > 2 else "-"
                line += f"{rep['mape']:>16.1f} / {tau:>4} / {rep['acc10']:>4.0f}"
            print(line)
    for p in args.predictors:
        ratio = np.array(preds[p]) / y
        print(f"\n{p}: predicted / measured, geometric mean {float(np.exp(np.log(ratio).mean())):.2f} "
              f"(range {ratio.min():.2f}-{ratio.max():.2f}); {statistics.median(secs[p]) * 1e3:.0f} ms per estimate "
              "(median, graph cache warm after the first predictor)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
