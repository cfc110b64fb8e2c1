"""Overhead of tvm_passes.AnnotatePerformance on tvm.relax.build (llvm target).

    python benchmarks/tvm_overhead.py [--models resnet50,bert-base] [--repeats 3] [--predictor NAME]

For each model, imported once with ``from_exported_program``: the wall time
of ``tvm.relax.build(mod, "llvm")`` alone against ``tvm_passes.build(mod,
"llvm", device="h100")`` (the same build with the pass in front), median of
``--repeats`` alternating runs, and the time the pass itself took (featurize
the Relax function, predict), which is the overhead proper and less noisy
than the difference of two build times.  The first estimate of a process
also loads the predictor (torch-geometric import, weights): that cold
number is printed separately.  Builds use TVM's default pipeline on this
machine's CPUs.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

from _models import model_and_inputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet50,bert-base")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="h100")
    ap.add_argument("--predictor", default=None, help="default: the library's default predictor")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    logging.getLogger("costmodel.tvm").setLevel(logging.WARNING)
    import torch
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    import tvm_passes

    print(f"tvm {tvm.__version__}, target llvm, device {a.device}, repeats {a.repeats}")
    t = time.perf_counter()
    tvm_passes.AnnotatePerformance(device=a.device, predictor=a.predictor)  # loads the predictor
    cold_load = time.perf_counter() - t
    print(f"loading the predictor once per process (cold): {cold_load * 1e3:.0f} ms\n")
    print(f"{'model':<12}{'nodes':>7}{'relax.build (s)':>17}{'with pass (s)':>15}{'pass (ms)':>11}"
          f"{'pass / build':>14}{'difference / build':>20}")
    for name in a.models.split(","):
        model, args = model_and_inputs(name)
        with torch.no_grad():
            ep = torch.export.export(model, args)
        mod = from_exported_program(ep, keep_params_as_input=True)
        relax.build(mod, "llvm")  # warm TVM's own one-time costs (LLVM init, op registry)
        base, ours, est = [], [], []
        nodes = 0
        for _ in range(a.repeats):
            t = time.perf_counter()
            relax.build(mod, "llvm")
            base.append(time.perf_counter() - t)
            p = tvm_passes.AnnotatePerformance(device=a.device, predictor=a.predictor)
            t = time.perf_counter()
            relax.build(p(mod), "llvm")
            ours.append(time.perf_counter() - t)
            est.append(p.seconds)
            nodes = len(from_relax_graph(mod).nodes) if not nodes else nodes
        b, o, e = statistics.median(base), statistics.median(ours), statistics.median(est)
        print(f"{name:<12}{nodes:>7}{b:>17.2f}{o:>15.2f}{e * 1e3:>11.0f}{e / b * 100:>13.1f}%{(o - b) / b * 100:>19.1f}%")


def from_relax_graph(mod):
    from costmodel.frontends import from_relax

    return from_relax(mod)


if __name__ == "__main__":
    main()
