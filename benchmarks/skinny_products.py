"""The stream line of skinny matrix products, fitted to the packaged H200 kernels, checked on later ones.

    PYTHONPATH=. python benchmarks/skinny_products.py

A matrix product with one activation row (or at most 32 in fp16/bf16) streams its weight through a
GEMV-like kernel. The timeline costs such products on a GPU as ``start + bytes / (share x bandwidth)``
(``costmodel/predictors/_skinny.py``). This script fits the line to the forward kernels of that shape in
the packaged architectures' operator profiles (``costmodel/data/h200/ops``), prints the constants the
library ships next to the fit, and scores the line on those kernels and on the later architectures'
(``benchmarks/data/h200_ops``), which the fit does not see: MAPE %, the largest error, and every
kernel of 10 MB or more.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SETS = {"packaged (fitted)": HERE.parent / "costmodel" / "data" / "h200" / "ops" / "ops.jsonl.gz",
        "later architectures (held out)": HERE / "data" / "h200_ops" / "ops.jsonl.gz"}


def main() -> None:
    from costmodel.devices import get_device
    from costmodel.predictors import STREAM_SHARE, STREAM_START_US, fit_stream_line, skinny_kernels

    bw = get_device("h200").bandwidth_bytes_s
    kernels = {}
    for name, path in SETS.items():
        with gzip.open(path, "rt") as f:
            kernels[name] = skinny_kernels(json.loads(line) for line in f)
    start, share = fit_stream_line(kernels["packaged (fitted)"], bw)
    print(f"fit to the packaged kernels: start {start:.3f} us, share {share:.4f} of {bw / 1e12:.1f} TB/s "
          f"(shipped: {STREAM_START_US} us, {STREAM_SHARE})\n")
    print(f"{'kernels':<34}{'n':>4}{'MAPE %':>9}{'max %':>8}")
    for name, ks in kernels.items():
        err = np.array([(STREAM_START_US + b / (STREAM_SHARE * bw) * 1e6) / y - 1 for b, y in ks])
        print(f"{name:<34}{len(ks):>4}{100 * np.abs(err).mean():>9.1f}{100 * np.abs(err).max():>8.1f}")
    print("\nkernels of 10 MB or more: MB, measured us, line us")
    for name, ks in kernels.items():
        for b, y in sorted(ks, reverse=True):
            if b >= 1e7:
                print(f"  {name:<32}{b / 1e6:>8.1f}{y:>9.1f}{STREAM_START_US + b / (STREAM_SHARE * bw) * 1e6:>9.1f}")


if __name__ == "__main__":
    main()
