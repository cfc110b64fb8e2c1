"""Cross-frontend agreement: the same model through PyTorch, ONNX and TVM Relax.

    python benchmarks/cross_frontend.py [--models resnet50,mobilenet_v2,vit_b_16,bert-base] [--device h200]

For each model: the CostGraph from ``torch.export`` (PyTorch frontend; nodes
that read no graph input folded away, as ONNX runtimes and TVM's
``FoldConstant`` do), from its ONNX export (``torch.onnx.export(...,
dynamo=True, optimize=False)``, ONNX frontend) and from the Relax module of
``tvm.relax.frontend.torch.from_exported_program`` (Relax frontend).  Prints
the work-carrying op count, whether the op-kind histograms are identical,
FLOPs relative to PyTorch, parameters, the time to featurize, and the
default predictor's latency and memory on ``--device``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

from _models import model_and_inputs
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet50,mobilenet_v2,vit_b_16,bert-base")
    ap.add_argument("--device", default="h200")
    ap.add_argument("--predictor", default=None)
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    import torch
    from tvm.relax.frontend.torch import from_exported_program

    from costmodel.devices import get_device
    from costmodel.frontends import from_onnx, from_relax, from_torch
    from costmodel.ir import category
    from costmodel.predictors import get_predictor

    dev, pred = get_device(a.device), get_predictor(a.predictor)

    def kinds(g):
        return {k: c for k, c in g.op_counts().items() if category(k) not in ("layout", "noop")}

    tmp = Path(tempfile.mkdtemp())
    print(f"device {dev.name}, predictor {pred.name}\n")
    print(f"{'model':<14}{'frontend':<10}{'ops':>6}{'kinds =':>9}{'GFLOPs':>10}{'FLOPs vs torch':>16}"
          f"{'params':>12}{'featurize (ms)':>16}{'latency_ms':>12}{'memory_mb':>11}")
    worst = 0.0
    all_same = True
    for name in a.models.split(","):
        model, args = model_and_inputs(name)
        t = time.perf_counter()
        gt = from_torch(model, args).fold_constants()
        t_torch = time.perf_counter() - t
        path = tmp / f"{name}.onnx"
        torch.onnx.export(model, args, str(path), dynamo=True, optimize=False, verbose=False)
        t = time.perf_counter()
        go = from_onnx(path)
        t_onnx = time.perf_counter() - t
        with torch.no_grad():
            ep = torch.export.export(model, args)
        mod = from_exported_program(ep, keep_params_as_input=True)
        t = time.perf_counter()
        gr = from_relax(mod)
        t_relax = time.perf_counter() - t
        ref = kinds(gt)
        for fe, g, secs in (("torch", gt, t_torch), ("onnx", go, t_onnx), ("relax", gr, t_relax)):
            est = pred.predict(g, dev)
            same = kinds(g) == ref
            all_same &= same
            rel = g.flops / gt.flops - 1
            worst = max(worst, abs(rel))
            print(f"{name:<14}{fe:<10}{sum(kinds(g).values()):>6}{'yes' if same else 'NO':>9}{g.flops / 1e9:>10.2f}"
                  f"{rel * 100:>15.3f}%{g.params:>12,}{secs * 1e3:>16.0f}{est.latency_ms:>12.3f}{est.memory_mb:>11.0f}")
    print(f"\nop-kind histograms identical across frontends: {'yes' if all_same else 'NO'}; "
          f"largest FLOPs difference {worst * 100:.3f} %")


if __name__ == "__main__":
    main()
