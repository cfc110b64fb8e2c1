"""How the timeline's efficiency network reads an fp32 convolution on a GPU without TF32.

A GPU without TF32 (Volta, Turing) runs an fp32 convolution on its CUDA cores: cuDNN's implicit-GEMM or
Winograd kernels, SGEMM tiles bounded by the fp32 rate. The H200 rows label convolutions only as TF32
tensor-core kernels; on the CUDA cores they label fp32 matmuls (PyTorch leaves TF32 off for matmuls). So
with :data:`CUDA_CORE_CONV_AS_GEMM` such a convolution reads as a matmul (kind, kernel area, stride; its
own FLOPs, bytes and bound) for the efficiency network only (``OpTable.device_x``: the host still
dispatches a convolution), in a predictor no row of such a GPU trained. ``False``: read as a
convolution. Nothing changes on a GPU with TF32.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

CUDA_CORE_CONV_AS_GEMM = True


@contextlib.contextmanager
def cuda_core_conv_reading(on: bool) -> Iterator[None]:
    """Within the block, :data:`CUDA_CORE_CONV_AS_GEMM` is ``on`` (a benchmark's before and after)."""
    global CUDA_CORE_CONV_AS_GEMM
    was, CUDA_CORE_CONV_AS_GEMM = CUDA_CORE_CONV_AS_GEMM, bool(on)
    try:
        yield
    finally:
        CUDA_CORE_CONV_AS_GEMM = was
