"""``costmodel devices``: the device database."""

from __future__ import annotations

import json

from ._args import add_command

DEVICES_EXAMPLES = """examples:
  costmodel devices
  costmodel devices --json
"""

def register_devices(sub) -> None:
    d = add_command(sub, "devices", _cmd_devices, help="list the device database",
                    description="List every known device with its peaks, bandwidth, memory and MIG profiles.",
                    epilog=DEVICES_EXAMPLES)
    d.add_argument("--json", action="store_true", help="print JSON")


def _cmd_devices(a) -> int:
    from ..devices import list_devices

    devs = list_devices()
    if a.json:
        print(json.dumps([d.to_dict() for d in devs]))
        return 0
    hdr = f"{'device':<18}{'fp32':>7}{'tf32':>7}{'fp16':>7}{'bf16':>7}{'HBM GB/s':>10}{'mem GB':>8}{'SMs':>5}{'TDP W':>7}  MIG profiles"
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
    print("\npeaks in dense TFLOP/s (tensor cores where the dtype has them)")
    return 0


