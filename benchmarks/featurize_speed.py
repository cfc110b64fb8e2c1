"""Featurization speed: model -> CostGraph (+ static features), and import time.

    python benchmarks/featurize_speed.py [--repeats 5]

Prints median and spread over repeats (after one warm-up) for resnet50 and
bert-base through the ONNX frontend and both PyTorch capture methods, and the
time of ``import costmodel`` in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path


def timeit(fn, repeats):
    fn()  # warm-up (first export compiles / imports lazily)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), min(ts), max(ts)


def import_time(repeats):
    code = "import time; t=time.perf_counter(); import costmodel; print(time.perf_counter()-t)"
    ts = [float(subprocess.check_output([sys.executable, "-c", code]).decode()) for _ in range(repeats)]
    return statistics.median(ts), min(ts), max(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    warnings.simplefilter("ignore")

    import torch
    import torchvision

    from costmodel.features import static_features
    from costmodel.frontends import from_onnx, from_torch

    rows = []
    med, lo, hi = import_time(a.repeats)
    rows.append(("import costmodel", "-", med, lo, hi))

    tmp = Path(tempfile.mkdtemp())
    resnet = torchvision.models.resnet50().eval()
    x = torch.randn(1, 3, 224, 224)
    onnx_resnet = tmp / "resnet50.onnx"
    torch.onnx.export(resnet, (x,), dynamo=True, optimize=False, verbose=False).save(str(onnx_resnet))

    models = [("resnet50", resnet, (x,), onnx_resnet)]
    try:
        import transformers

        cfg = transformers.BertConfig()  # bert-base-uncased geometry
        bert = transformers.BertModel(cfg).eval()
        ids = torch.zeros(1, 128, dtype=torch.long)
        onnx_bert = tmp / "bert.onnx"
        torch.onnx.export(bert, (ids,), dynamo=True, optimize=False, verbose=False).save(str(onnx_bert))
        models.append(("bert-base (seq 128)", bert, (ids,), onnx_bert))
    except ImportError:
        print("transformers not installed: skipping bert-base")

    import onnx

    for name, model, args, onnx_path in models:
        def onnx_fn(p=onnx_path):
            g = from_onnx(p)
            static_features(g)

        proto = onnx.load(str(onnx_path))

        def onnx_mem_fn(m=proto):
            g = from_onnx(m)
            static_features(g)

        ext = onnx_path.with_name(onnx_path.stem + "_ext.onnx")
        onnx.save_model(proto, str(ext), save_as_external_data=True, location=ext.stem + ".bin")

        def onnx_ext_fn(p=ext):
            g = from_onnx(p)
            static_features(g)

        for method in ("export", "trace"):
            def torch_fn(m=model, a_=args, meth=method):
                g = from_torch(m, a_, method=meth)
                static_features(g)

            rows.append((name, f"torch ({method})", *timeit(torch_fn, a.repeats)))
        rows.append((name, "onnx file", *timeit(onnx_fn, a.repeats)))
        rows.append((name, "onnx ext. data", *timeit(onnx_ext_fn, a.repeats)))
        rows.append((name, "onnx in memory", *timeit(onnx_mem_fn, a.repeats)))

    print(f"\n{'model':<22}{'frontend':<16}{'median ms':>11}{'min ms':>9}{'max ms':>9}")
    for name, fe, med, lo, hi in rows:
        print(f"{name:<22}{fe:<16}{med * 1e3:>11.1f}{lo * 1e3:>9.1f}{hi * 1e3:>9.1f}")
    print("\ntargets: ONNX <= 100 ms, torch <= 300 ms median; import <= 500 ms")
    print("'onnx file' embeds the weights: reading them dominates; 'ext. data' keeps them in a side file")


if __name__ == "__main__":
    main()
