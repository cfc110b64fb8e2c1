"""Overhead of the costmodel torch.compile backend over its inner backend alone.

    python benchmarks/compile_overhead.py [--models resnet18,mobilenet_v2] [--inner inductor]

For each model: the wall time of the first call of ``torch.compile(model,
backend=inner)`` (compile + one run) against the same with
``costmodel.torch_backend(inner=inner)``, each in a fresh Dynamo state,
median of ``--repeats``, and the time the backend itself spent estimating
(``backend.seconds``, the overhead proper, less noisy than the difference of
two compile times).  Inference, batch 8, on this CPU.  Inductor's caches
are warm after the first compile, so the inner compile here is its fastest
case and the ratio its worst.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings


def first_call_s(model, x, backend) -> float:
    import torch

    torch._dynamo.reset()
    t = time.perf_counter()
    with torch.no_grad():
        torch.compile(model, backend=backend)(x)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet18,mobilenet_v2")
    ap.add_argument("--inner", default="inductor")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    import torch
    import torchvision

    import costmodel

    print(f"{'model':<16}{'inner alone (s)':>16}{'with costmodel (s)':>20}{'estimating (ms)':>17}"
          f"{'estimating / inner':>20}")
    for name in a.models.split(","):
        model = torchvision.models.get_model(name).eval()
        x = torch.randn(8, 3, 224, 224)
        first_call_s(model, x, a.inner)  # warm caches shared by both (imports, kernels on disk)
        first_call_s(model, x, costmodel.torch_backend(device="h100", inner=a.inner))  # loads the predictor once
        base, ours, est = [], [], []
        for _ in range(a.repeats):
            base.append(first_call_s(model, x, a.inner))
            be = costmodel.torch_backend(device="h100", inner=a.inner)
            ours.append(first_call_s(model, x, be))
            est.append(be.seconds)
        b, o, e = statistics.median(base), statistics.median(ours), statistics.median(est)
        print(f"{name:<16}{b:>16.2f}{o:>20.2f}{e * 1e3:>17.0f}{e / b * 100:>19.1f}%")


if __name__ == "__main__":
    main()
