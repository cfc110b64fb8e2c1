"""Physical consistency of every graph predictor's answers, counted over a grid of workloads.

    python benchmarks/physics.py [--models resnet50,vit_b_16,...] [--devices h200,a100,t4] [--max-batch 256]

No label is involved: each check is one that any GPU obeys, so a violation is a wrong answer whatever the
measurement would have said. Over torchvision models x batch doublings (1 .. --max-batch) x fp32/fp16/bf16 x
inference/training x devices, it prints per predictor:

* ``lat falls``: batch doublings whose predicted latency falls (the larger batch does all of the smaller one's
  work, and more), and the largest such fall;
* ``mem falls``: the same for memory;
* ``train < infer``: training steps predicted faster than the inference call of the same graph and batch;
* ``power held``: estimates whose average power was held at the board's power limit or idle power (their
  assumptions say ``power held``); after the hold no estimate is outside them, which the last column checks.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import costmodel
from costmodel.analysis import cast_graph
from costmodel.frontends import to_graph

MODELS = ("resnet50", "mobilenet_v3_large", "vit_b_16", "efficientnet_b0", "convnext_tiny", "densenet121",
          "vgg16", "swin_t")
PREDICTORS = ("timeline", "trappm", "dippm", "xgb-static", "analytic")
DTYPES = ("fp32", "fp16", "bf16")
MODES = ("inference", "training")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help="torchvision model names, comma-separated")
    ap.add_argument("--devices", default="h200,a100,t4", help="device names, comma-separated")
    ap.add_argument("--max-batch", type=int, default=256, help="largest batch of the doublings from 1")
    ap.add_argument("--predictors", default=",".join(PREDICTORS), help="predictor names, comma-separated")
    a = ap.parse_args()
    models, devices = a.models.split(","), [costmodel.get_device(d) for d in a.devices.split(",")]
    batches = [1 << k for k in range(a.max_batch.bit_length()) if 1 << k <= a.max_batch]
    t0 = time.perf_counter()
    graphs = {}  # (model, mode, batch, dtype) -> graph
    for m in models:
        for mode in MODES:
            for b in batches:
                g = to_graph(f"torchvision:{m}", batch=b, mode=mode)
                for dt in DTYPES:
                    graphs[m, mode, b, dt] = g if dt == "fp32" else cast_graph(g, dt)
    print(f"{len(graphs)} graphs ({len(models)} models x {len(batches)} batches x {len(DTYPES)} dtypes x "
          f"{len(MODES)} modes) in {time.perf_counter() - t0:.0f} s; devices: {', '.join(d.name for d in devices)}\n")
    hdr = (f"{'predictor':<11}{'estimates':>10}{'lat falls':>11}{'worst':>8}{'mem falls':>11}{'worst':>8}"
           f"{'train<infer':>13}{'power held':>12}{'outside':>9}")
    print(hdr)
    print("-" * len(hdr))
    for name in a.predictors.split(","):
        p = costmodel.get_predictor(name)
        est = {}
        for dev in devices:
            for mode in MODES:
                keys = [k for k in graphs if k[1] == mode]
                for k, e in zip(keys, p.predict_many([graphs[k] for k in keys], dev, mode=mode)):
                    est[(dev.name, *k)] = e
        falls = defaultdict(list)
        for (dn, m, mode, b, dt), e in est.items():
            if b * 2 in batches:
                nxt = est[dn, m, mode, b * 2, dt]
                for what in ("latency_ms", "memory_mb"):
                    r = getattr(nxt, what) / getattr(e, what)
                    if r < 1 - 1e-9:
                        falls[what].append(r)
        pairs = sum(1 for k in est if k[3] * 2 in batches)
        slower = sum(1 for (dn, m, mode, b, dt), e in est.items()
                     if mode == "training" and e.latency_ms < est[dn, m, "inference", b, dt].latency_ms)
        held = sum(1 for e in est.values() if any(s.startswith("power held") for s in e.assumptions))
        devs = {d.name: d for d in devices}
        outside = sum(1 for k, e in est.items()
                      if not devs[k[0]].idle_power_w - 1e-6 <= e.power_w <= devs[k[0]].tdp_w + 1e-6)

        def worst(rs):
            return f"{min(rs):.2f}x" if rs else "-"

        print(f"{name:<11}{len(est):>10}{len(falls['latency_ms']):>6}/{pairs:<4}{worst(falls['latency_ms']):>8}"
              f"{len(falls['memory_mb']):>6}/{pairs:<4}{worst(falls['memory_mb']):>8}"
              f"{slower:>8}/{len(est) // 2:<4}{held:>12}{outside:>9}", flush=True)
    print(f"\n'worst': the smallest ratio of a doubled batch's prediction to its half's. {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
