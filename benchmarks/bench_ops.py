"""Time a handful of torch ops on this machine with costmodel.bench and print them on the roofline.

    python benchmarks/bench_ops.py [--device cpu|cuda] [--profile cpu.json | --no-measure]
                                   [--threads N] [--quick] [-o result.json]

Ops (fp32): matmul 1024^3 and 2048^3, a ResNet-50 layer-3 style 3x3
convolution (batch 8, 256 -> 256 channels, 14 x 14, padding 1), add and relu
on 64 MiB tensors, softmax over the last dim of a 64 MiB (4096 x 4096) tensor.

Ceilings: on a CPU, a measured profile when one is given (``--profile``) or
can be measured quickly (``costmodel.measure.harness.measure(quick=True)``, about a
second with the C++ extension), else the device database's nominal ``cpu``
entry; on CUDA the database entry of the GPU.  The quick sweep stops at a
footprint of a few times the last-level cache, so its DRAM figure is rough.

FLOPs are counted by FlopCounterMode (matmul, convolution) plus one per output
element of pointwise ops; bytes are the compulsory traffic (inputs read +
outputs written), a lower bound.  See ``costmodel/measure/bench.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _ops(device: str):
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)

    def t(*shape):
        return torch.randn(*shape, generator=g).to(device)

    mib64 = 16 * 1024 * 1024  # fp32 elements in 64 MiB
    return [
        ("matmul 1024^3", torch.matmul, (t(1024, 1024), t(1024, 1024)), {}),
        ("matmul 2048^3", torch.matmul, (t(2048, 2048), t(2048, 2048)), {}),
        ("conv2d 8x256x14x14 k3", F.conv2d, (t(8, 256, 14, 14), t(256, 256, 3, 3)), {"padding": 1}),
        ("add 64 MiB", torch.add, (t(mib64), t(mib64)), {}),
        ("relu 64 MiB", F.relu, (t(mib64),), {}),
        ("softmax 4096x4096", F.softmax, (t(4096, 4096),), {"dim": -1}),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--profile", default=None, help="a saved measured profile (JSON) for the CPU ceilings")
    ap.add_argument("--no-measure", action="store_true", help="use the database's nominal cpu entry")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    ap.add_argument("--quick", action="store_true", help="fewer samples (3, no minimum time)")
    ap.add_argument("-o", "--output", default=None, help="also write the results as JSON")
    a = ap.parse_args(argv)

    import torch

    import costmodel

    if a.threads:
        torch.set_num_threads(a.threads)
    profile = None
    source = "device database"
    if a.device == "cpu":
        if a.profile:
            from costmodel.devices.profile import MachineProfile

            profile = MachineProfile.load(a.profile)
            source = f"measured profile {a.profile}"
        elif not a.no_measure:
            try:
                from costmodel.measure.harness import measure

                t0 = time.perf_counter()
                profile = measure("cpu", quick=True, threads=a.threads, progress=False)
                source = f"measure(quick=True), {time.perf_counter() - t0:.1f} s"
            except costmodel.CostModelError as e:  # no C++ extension
                print(f"(no measured profile: {e}; using the database's cpu entry)", file=sys.stderr)
    elif not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2

    timing = {"warmup": 2, "repeats": 3, "min_time_s": 0.0} if a.quick else {"warmup": 3, "repeats": 10,
                                                                             "min_time_s": 0.5}
    results = []
    for label, fn, args, kwargs in _ops(a.device):
        r = costmodel.bench(fn, *args, profile=profile, **timing, **kwargs)
        results.append((label, r))

    first = results[0][1]
    print(f"machine   {platform.processor() or platform.machine()}  torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {a.device}")
    print(f"ceilings  {first.device} ({first.device_source}; {source}): "
          f"fp32 peak {first.peak_gflops:,.5g} GFLOP/s (matmul), "
          f"vector {results[3][1].peak_gflops:,.5g} GFLOP/s, DRAM {first.bandwidth_gbps:,.5g} GB/s")
    print()
    hdr = (f"{'op':<24}{'time ms':>10}{'GFLOP':>9}{'MB':>8}{'FLOP/B':>8}{'GFLOP/s':>10}{'GB/s':>8}"
           f"{'roof GFLOP/s':>13}{'of roof':>9}  bound")
    print(hdr)
    print("-" * len(hdr))
    for label, r in results:
        print(f"{label:<24}{r.time_ms:>10.3f}{r.flops / 1e9:>9.3f}{r.bytes / 1e6:>8.1f}"
              f"{(r.intensity or 0):>8.2f}{r.achieved_gflops:>10.1f}{r.achieved_gbps:>8.1f}"
              f"{r.ceiling_gflops:>13.1f}{100 * r.fraction_of_roofline:>8.0f}%  {r.bound}")
    print("\ntime: median of one call; bytes: inputs read + outputs written (a lower bound); "
          "roof: min(peak, FLOP/B x DRAM bandwidth)")
    if a.output:
        Path(a.output).write_text(json.dumps({label: r.to_dict() for label, r in results}, indent=1) + "\n")
        print(f"wrote {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
