"""``costmodel devices``: the device database."""

from __future__ import annotations

import json

from ._args import add_command

DEVICES_EXAMPLES = """examples:
  costmodel devices
  costmodel devices --json
  costmodel devices --mig h200        # each MIG slice of a GPU as a device (SMs, memory, rates)
  costmodel devices --show cuda       # what this machine's GPU is costed as, and where each figure comes from

A slice is a device of its own: costmodel predict resnet50 -b 32 --device "h200 MIG 1g.18gb"
(or the name CUDA gives it inside the instance, "NVIDIA H200 MIG 1g.18gb").
"""

def register_devices(sub) -> None:
    d = add_command(sub, "devices", _cmd_devices, help="list the device database",
                    description="List every known device with its peaks, bandwidth, memory and MIG profiles.",
                    epilog=DEVICES_EXAMPLES)
    d.add_argument("--json", action="store_true", help="print JSON")
    one = d.add_mutually_exclusive_group()
    one.add_argument("--mig", metavar="GPU", default=None,
                     help="list the MIG slices of GPU (a device name) with the figures a slice is costed with")
    one.add_argument("--show", metavar="DEVICE", default=None,
                     help="one device's figures, their sources and what was assumed: a name, a MIG slice, a "
                          "hardware.json, or cuda (the GPU this process sees, derived from its CUDA properties "
                          "where the database does not list it)")


def _cmd_devices(a) -> int:
    from ..devices import list_devices

    if a.mig is not None:
        return _mig_table(a.mig, a.json)
    if a.show is not None:
        return _show(a.show, a.json)
    devs = list_devices()
    if a.json:
        print(json.dumps([d.to_dict() for d in devs]))
        return 0
    hdr = f"{'device':<18}{'fp32':>7}{'tf32':>7}{'fp16':>7}{'bf16':>7}{'DRAM GB/s':>10}{'mem GB':>8}{'SMs':>5}{'TDP W':>7}  MIG profiles"
    print(hdr)
    print("-" * len(hdr))

    def tf(v):
        return f"{v:.4g}" if v else "-"

    for d in devs:
        pk = d.peak_tflops
        mig = ", ".join(p.name for p in d.mig_profiles) or "-"
        print(
            f"{d.name:<18}{tf(pk.get('fp32')):>7}{tf(pk.get('tf32')):>7}{tf(pk.get('fp16')):>7}{tf(pk.get('bf16')):>7}"
            f"{d.memory_bandwidth_gbps:>10.4g}{d.memory_gb:>8.4g}{d.sm_count or 0:>5}{d.tdp_w:>7.4g}  {mig}"
        )
    print("\npeaks in dense TFLOP/s (tensor cores where the dtype has them); DRAM: the board's HBM or GDDR")
    return 0




def _show(name: str, as_json: bool) -> int:
    """Every figure one device is costed with, where each came from, and what its lookup assumed."""
    from ..devices import get_device

    dev = get_device(name)
    if as_json:
        print(json.dumps(dict(dev.to_dict(), assumptions=list(dev.assumptions))))
        return 0
    peaks = ", ".join(f"{k} {v:.4g}" for k, v in dev.peak_tflops.as_dict().items() if v)
    rows = [("device", dev.name), ("figures", dev.source),
            ("architecture", f"{dev.architecture}, compute capability {dev.compute_capability or '-'}"),
            ("peak TFLOP/s", f"{peaks}; CUDA cores fp32 {dev.vector_tflops_fp32:.4g}"),
            ("memory", f"{dev.memory_mb / 1024:.2f} GiB at {dev.memory_bandwidth_gbps:.4g} GB/s"
                       + (f"; the board reports {dev.reported_memory_mib:,.0f} MiB, what fits is checked against"
                          if dev.reported_memory_mib else "; what fits is checked against this (no reported total)")),
            ("SMs, L2", f"{dev.sm_count or '-'}, {dev.l2_cache_mb or 0:.3g} MB"),
            ("power", f"{dev.tdp_w:.4g} W limit, {dev.idle_power_w:.4g} W idle"),
            ("overheads", f"kernel launch {dev.kernel_launch_overhead_us:.3g} us, framework memory "
                          f"{dev.framework_overhead_mb:.0f} MiB"),
            ("MIG", ", ".join(p.name for p in dev.mig_profiles) or "-")]
    rows += [("from", s) for s in dev.sources] + [("assumes", s) for s in dev.assumptions]
    for k, v in rows:
        print(f"{k:<13}{v}")
    return 0


def _mig_table(name: str, as_json: bool) -> int:
    """The MIG slices of one GPU, each as :func:`costmodel.devices.slice_device` costs it."""
    from .._errors import InvalidInputError
    from ..devices import get_device, list_devices, slice_device

    dev = get_device(name)
    if not dev.mig_profiles:
        raise InvalidInputError(f"{dev.name} has no MIG profiles; the GPUs with MIG: "
                                + ", ".join(d.name for d in list_devices() if d.mig_profiles))
    rows = []
    for p in dev.mig_profiles:
        s = slice_device(dev, p)
        rows.append({"device": s.name, "profile": p.name, "sm_count": s.sm_count, "memory_mb": p.capacity_mb,
                     "memory_listed": p.capacity_listed, "memory_capped": p.capacity_capped,
                     "nominal_memory_mb": p.memory_mb,
                     "bf16_tflops": s.peak_flops("bf16") / 1e12, "fp32_tflops": s.peak_flops("fp32") / 1e12,
                     "memory_bandwidth_gbps": s.memory_bandwidth_gbps, "l2_cache_mb": s.l2_cache_mb,
                     "max_instances": p.max_instances})
    if as_json:
        print(json.dumps(rows))
        return 0
    hdr = f"{'slice':<10}{'SMs':>5}{'memory GiB':>12}{'bf16 TF/s':>11}{'fp32 TF/s':>11}{'HBM GB/s':>10}{'L2 MB':>7}{'max':>5}"
    print(f"MIG slices of {dev.name} (each is a device: --device \"{dev.name} MIG <slice>\")")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        mem = f"{r['memory_mb'] / 1024:.2f}" + ("" if r["memory_listed"] else "+" if r["memory_capped"] else "*")
        print(f"{r['profile']:<10}{r['sm_count'] or 0:>5}{mem:>12}{r['bf16_tflops']:>11.4g}{r['fp32_tflops']:>11.4g}"
              f"{r['memory_bandwidth_gbps']:>10.4g}{r['l2_cache_mb'] or 0:>7.3g}{r['max_instances']:>5}")
    if any(not r["memory_listed"] and not r["memory_capped"] for r in rows):
        print("* no published `nvidia-smi mig -lgip` listing: the memory in the profile's name")
    if any(not r["memory_listed"] and r["memory_capped"] for r in rows):
        print(f"+ no published listing, and the name's GB is more than the board reports "
              f"({dev.reported_memory_mib:,.0f} MiB): at most that (the instance holds a little less)")
    print("memory: the GPU instance's (what the MIG pick and --max-batch --mig compare against)")
    return 0
