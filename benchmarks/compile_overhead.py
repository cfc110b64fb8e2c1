"""Overhead of the costmodel torch.compile backend over its inner backend alone.

    python benchmarks/compile_overhead.py [--models resnet18,mobilenet_v2] [--inner inductor]
                                          [--shapes static,dynamic]

For each model: the wall time of the first call of ``torch.compile(model,
backend=inner)`` (compile + one run) against the same with
``costmodel.torch_backend(inner=inner)``, each in a fresh Dynamo state,
median of ``--repeats``, and the time the backend itself spent estimating
(``backend.seconds``, the overhead proper, less noisy than the difference of
two compile times).  Inference, batch 8, on this CPU.  Inductor's caches
are warm after the first compile, so the inner compile here is its fastest
case and the ratio its worst.

``--shapes dynamic`` compiles with ``dynamic=True``: the graph then has a
symbolic batch, and the backend replays it at a second batch to draw the
memory line that later calls are checked against (docs/compiler-integration.md),
so its estimate costs about two of a static one.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings


SHAPES = ("static", "dynamic")


def first_call_s(model, x, backend, dynamic: bool = False) -> float:
    import torch

    torch._dynamo.reset()
    t = time.perf_counter()
    with torch.no_grad():
        # dynamic=None (PyTorch's default) marks a size dynamic only after it changes
        torch.compile(model, backend=backend, dynamic=True if dynamic else None)(x)
    return time.perf_counter() - t


def shapes_arg(text: str) -> list[str]:
    out = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in out if s not in SHAPES]
    if bad or not out:
        raise argparse.ArgumentTypeError(f"unknown shapes {bad or text!r}; choose from {', '.join(SHAPES)}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet18,mobilenet_v2")
    ap.add_argument("--inner", default="inductor")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shapes", type=shapes_arg, default=["static", "dynamic"],
                    help="comma-separated: static (the default compile), dynamic (dynamic=True)")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    import torch
    import torchvision

    import costmodel

    print(f"{'model':<16}{'shapes':<9}{'inner alone (s)':>16}{'with costmodel (s)':>20}{'estimating (ms)':>17}"
          f"{'estimating / inner':>20}")
    for name, shapes in [(n, s) for n in a.models.split(",") for s in a.shapes]:
        model = torchvision.models.get_model(name).eval()
        x = torch.randn(8, 3, 224, 224)
        dyn = shapes == "dynamic"
        first_call_s(model, x, a.inner, dyn)  # warm caches shared by both (imports, kernels on disk)
        first_call_s(model, x, costmodel.torch_backend(device="h100", inner=a.inner), dyn)  # loads the predictor
        base, ours, est = [], [], []
        for _ in range(a.repeats):
            base.append(first_call_s(model, x, a.inner, dyn))
            be = costmodel.torch_backend(device="h100", inner=a.inner)
            ours.append(first_call_s(model, x, be, dyn))
            est.append(be.seconds)
        b, o, e = statistics.median(base), statistics.median(ours), statistics.median(est)
        print(f"{name:<16}{shapes:<9}{b:>16.2f}{o:>20.2f}{e * 1e3:>17.0f}{e / b * 100:>19.1f}%")


if __name__ == "__main__":
    main()
