"""Measure the device constants the analytic model uses, on the local GPU.

    python benchmarks/device_constants.py [-o constants.json]

Prints (and writes as JSON):

* ``framework_overhead_mb``: device memory in use per NVML that is *not* the
  caching allocator's reservation, after PyTorch has created its CUDA context
  and loaded cuBLAS (a matmul) and cuDNN (a convolution): the constant the
  memory model adds to every workload;
* ``host_overhead_us``: PyTorch eager's cost per dispatched operator, from a
  long chain of tiny in-place adds (host-bound by construction);
* ``kernel_launch_overhead_us``: device-side time per tiny kernel, from the
  same chain replayed as a CUDA graph (no host dispatch);
* ``copy_bandwidth_gbps`` (read + write counted) and matmul TFLOP/s per dtype
  at 8192^3, for comparison with the datasheet.

Needs only torch and, for the memory figure, nvidia-ml-py; on a machine
without CUDA it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def _nvml_used_mb(index: int) -> float | None:
    try:
        import pynvml
    except ImportError:
        return None
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(index)
    return pynvml.nvmlDeviceGetMemoryInfo(h).used / 2**20


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", help="also write the result as JSON here")
    return ap.parse_args()


def _load_libraries(dev) -> tuple:
    """One conv (cuDNN) and one matmul (cuBLAS) so their handles and kernels are
    loaded, as in any real workload; returns the tensors so they stay alive."""
    import torch

    x = torch.randn(8, 64, 56, 56, device=dev)
    w = torch.randn(64, 64, 3, 3, device=dev)
    torch.nn.functional.conv2d(x, w, padding=1)
    m = torch.randn(1024, 1024, device=dev)
    (m @ m).sum().item()
    torch.cuda.synchronize()
    return x, w, m


def _measure_memory(out: dict) -> None:
    """Fill in the NVML / allocator memory figures and ``framework_overhead_mb``."""
    import torch

    used = _nvml_used_mb(torch.cuda.current_device())
    reserved = torch.cuda.memory_reserved() / 2**20
    out["nvml_used_mb"] = used
    out["torch_reserved_mb"] = reserved
    out["framework_overhead_mb"] = None if used is None else used - reserved


def _host_overhead_us(dev):
    """Host dispatch cost per op from a chain of tiny in-place adds; returns (tensor, us)."""
    import torch

    t = torch.zeros(1, device=dev)
    n = 5000
    for _ in range(200):
        t.add_(1)
    torch.cuda.synchronize()
    reps = []
    for _ in range(5):
        s = time.perf_counter()
        for _ in range(n):
            t.add_(1)
        torch.cuda.synchronize()
        reps.append((time.perf_counter() - s) / n * 1e6)
    return t, statistics.median(reps)


def _kernel_launch_overhead_us(t):
    """Device time per tiny kernel: the add chain captured in a CUDA graph; returns (graph, us)."""
    import torch

    g = torch.cuda.CUDAGraph()
    s_ = torch.cuda.Stream()
    s_.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s_):
        for _ in range(3):
            t.add_(1)
    torch.cuda.current_stream().wait_stream(s_)
    k = 1000
    with torch.cuda.graph(g):
        for _ in range(k):
            t.add_(1)
    g.replay()
    torch.cuda.synchronize()
    reps = []
    for _ in range(5):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        g.replay()
        e1.record()
        torch.cuda.synchronize()
        reps.append(e0.elapsed_time(e1) * 1e3 / k)
    return g, statistics.median(reps)


def _copy_bandwidth_gbps(dev) -> float:
    """Copy bandwidth (read + write counted), 1 GiB."""
    import torch

    src = torch.empty(2**28, dtype=torch.float32, device=dev)
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(10):
        dst.copy_(src)
    e1.record()
    torch.cuda.synchronize()
    gbps = 2 * src.numel() * 4 * 10 / (e0.elapsed_time(e1) / 1e3) / 1e9
    del src, dst
    return gbps


def _matmul_tflops(dev) -> dict:
    """Matmul TFLOP/s per dtype at 8192^3."""
    import torch

    peaks = {}
    for name, dt, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                           ("fp16", torch.float16, False), ("bf16", torch.bfloat16, False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a_ = torch.randn(8192, 8192, device=dev, dtype=dt)
        b_ = torch.randn(8192, 8192, device=dev, dtype=dt)
        for _ in range(3):
            a_ @ b_
        torch.cuda.synchronize()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(10):
            a_ @ b_
        e1.record()
        torch.cuda.synchronize()
        peaks[name] = 2 * 8192**3 * 10 / (e0.elapsed_time(e1) / 1e3) / 1e12
        del a_, b_
    torch.backends.cuda.matmul.allow_tf32 = False
    return peaks


def main() -> int:
    a = _parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return 0
    dev = torch.device("cuda")
    out: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda}

    # the warm-up tensors and the graph stay alive until every figure is measured
    warm = _load_libraries(dev)
    _measure_memory(out)
    t, out["host_overhead_us"] = _host_overhead_us(dev)
    g, out["kernel_launch_overhead_us"] = _kernel_launch_overhead_us(t)
    out["copy_bandwidth_gbps"] = _copy_bandwidth_gbps(dev)
    out["matmul_tflops"] = _matmul_tflops(dev)
    del warm, g, t

    for k_, v in out.items():
        print(f"{k_:<28}{v}")
    if a.output:
        with open(a.output, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
