"""Devices derived from CUDA properties against the datasheet entries of the boards the database lists.

    PYTHONPATH=. python benchmarks/cuda_devices.py [--json]

A GPU the device database does not list is costed from what CUDA reports about it
(``costmodel.devices.device_from_cuda_properties``: SMs x its architecture's rate per SM and
clock x the clock; bandwidth from the memory clock and bus width). This script gives the rule
what CUDA reports for boards the database does list (their maximum SM clock, memory clock and
bus width as ``deviceQuery`` and ``torch.cuda.get_device_properties`` print them; SMs, memory
and L2 from the entry) and prints each derived figure over the datasheet's. The H200's row uses
the properties its measuring run recorded (``costmodel/data/h200/hardware.json``).

The L40 is printed as well, though the rule misses it: a data-center board whose fp32-accumulate
tensor rate is half its architecture's, as on a GeForce board. The tests hold every other row
within 3 % (``tests/devices/test_cuda_device.py``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent

#: what CUDA reports for listed boards: (name CUDA gives it, major, minor, max SM clock MHz, memory clock MHz,
#: memory bus width in bits)
REPORTED = {
    "V100-SXM2-16GB": ("Tesla V100-SXM2-16GB", 7, 0, 1530, 877, 4096),
    "V100-PCIe-16GB": ("Tesla V100-PCIE-16GB", 7, 0, 1380, 877, 4096),
    "T4": ("Tesla T4", 7, 5, 1590, 5001, 256),
    "A100-SXM4-40GB": ("NVIDIA A100-SXM4-40GB", 8, 0, 1410, 1215, 5120),
    "A100-SXM4-80GB": ("NVIDIA A100-SXM4-80GB", 8, 0, 1410, 1593, 5120),
    "A30": ("NVIDIA A30", 8, 0, 1440, 1215, 3072),
    "A10": ("NVIDIA A10", 8, 6, 1695, 6251, 384),
    "A40": ("NVIDIA A40", 8, 6, 1740, 7251, 384),
    "RTX-A6000": ("NVIDIA RTX A6000", 8, 6, 1800, 8001, 384),
    "RTX-3090": ("NVIDIA GeForce RTX 3090", 8, 6, 1695, 9751, 384),
    "L4": ("NVIDIA L4", 8, 9, 2040, 6251, 192),
    "L40S": ("NVIDIA L40S", 8, 9, 2520, 9001, 384),
    "RTX-4090": ("NVIDIA GeForce RTX 4090", 8, 9, 2520, 10501, 384),
    "H100-SXM5-80GB": ("NVIDIA H100 80GB HBM3", 9, 0, 1980, 2619, 5120),
    "H100-PCIe-80GB": ("NVIDIA H100 PCIe", 9, 0, 1755, 1593, 5120),
}
#: boards the rule does not know (printed, not held to the tolerance)
MISSED = {"L40": ("NVIDIA L40", 8, 9, 2490, 9001, 384)}


def reported_properties(entry: str, **over) -> SimpleNamespace:
    """The CUDA properties of listed board ``entry`` (SMs, memory and L2 from its database entry)."""
    from costmodel.devices import get_device

    name, major, minor, clock, mem_clock, bus = {**REPORTED, **MISSED}[entry]
    dev = get_device(entry)
    p = dict(name=name, major=major, minor=minor, multi_processor_count=dev.sm_count,
             total_memory=int(dev.memory_gb * 2**30), L2_cache_size=int(dev.l2_cache_mb * 2**20),
             clock_rate=clock * 1000, memory_clock_rate=mem_clock * 1000, memory_bus_width=bus)
    return SimpleNamespace(**{**p, **over})


def ratios() -> list[dict]:
    """Per board: each derived peak and the bandwidth over the datasheet entry's (``None`` where the entry has
    no rate for the dtype)."""
    from costmodel.devices import device_from_cuda_properties, get_device

    out = []
    h200 = json.loads((HERE.parent / "costmodel" / "data" / "h200" / "hardware.json").read_text())
    boards = [(e, reported_properties(e)) for e in (*REPORTED, *MISSED)] + [("H200-SXM5-141GB", h200)]
    for entry, props in boards:
        dev = get_device(entry)
        d = device_from_cuda_properties(props, power_limit_w=dev.tdp_w)
        row = {"device": entry, "missed": entry in MISSED, "cuda_name": d.name}
        for dt, want in dev.peak_tflops.as_dict().items():
            got = d.peak_tflops.get(dt)
            row[dt] = got / want if want and got else None
        row["bandwidth"] = d.memory_bandwidth_gbps / dev.memory_bandwidth_gbps
        out.append(row)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    a = ap.parse_args(argv)
    rows = ratios()
    if a.json:
        print(json.dumps(rows))
        return 0
    cols = ("fp64", "fp32", "tf32", "fp16", "bf16", "int8", "bandwidth")
    print("derived from CUDA properties / datasheet entry")
    print(f"{'device':<17}" + "".join(f"{c:>10}" for c in cols))
    for r in rows:
        cells = "".join(f"{r[c]:>10.3f}" if r[c] is not None else f"{'-':>10}" for c in cols)
        print(f"{r['device']:<17}{cells}{'   (a rule miss, see the docstring)' if r['missed'] else ''}")
    held = [abs(r[c] - 1) for r in rows if not r["missed"] for c in cols if r[c] is not None and c != "fp64"]
    fp64 = [abs(r["fp64"] - 1) for r in rows if not r["missed"] and r["fp64"] is not None]
    print(f"\n{sum(not r['missed'] for r in rows)} boards: largest deviation {100 * max(held):.1f} % over fp32, tf32, "
          f"fp16, bf16, int8 and bandwidth; fp64 {100 * max(fp64):.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
