"""What a workload costs on each MIG slice of a GPU, as the shipped predictors cost a slice.

    PYTHONPATH=. python benchmarks/mig_slices.py [--device h200] [--predictor timeline]

No row was measured on a MIG slice, so nothing here is scored: the table shows what
``costmodel.devices.slice_device`` makes of each slice (its listed SMs, its share of the
bandwidth and L2, what its instance holds) and what follows for planning:

* per workload and slice: the latency (ms), how much slower than the whole GPU, the
  memory and whether the instance holds it (``-`` where it does not);
* ``aggregate``: the samples per second of as many instances of the slice as fit on one
  GPU (``max_instances``), each running the workload, against the whole GPU: what
  partitioning buys or costs (each instance needs its own host process and CPU core;
  the host lane is costed as the measuring machine's);
* ``--slo-ms MS`` (default 10): per slice, the largest batch of two inference workloads that
  fits and answers within MS (``largest_batch(..., latency_slo_ms=)``), its samples per second
  and a full partition's: the serving question, throughput under a latency target;
* the MIG pick against the profile names and against the listed instances: how many
  packaged H200 rows (measured memory) a slice holds by its name's GB but not by what
  its instance holds, i.e. the runs the name would have sent to a slice too small.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORKLOADS = (  # (model, batch, mode, dtype)
    ("torchvision:resnet50", 1, "inference", "fp32"),
    ("torchvision:resnet50", 32, "inference", "fp32"),
    ("torchvision:resnet50", 128, "inference", "fp16"),
    ("torchvision:resnet50", 128, "training", "fp32"),
    ("torchvision:vit_b_16", 64, "training", "fp16"),
    ("torchvision:mobilenet_v3_large", 256, "inference", "fp32"),
)


def _names_against_instances(device: str) -> None:
    """Packaged rows whose measured memory a slice holds by its name but not by its instance."""
    from costmodel.devices import get_device
    from costmodel.estimate import recommend_mig

    dev = get_device(device)
    if dev.name != get_device("h200").name:
        return
    rows = []
    for name in ("vision.jsonl", "llm.jsonl"):
        path = ROOT / "costmodel" / "data" / "h200" / name
        rows += [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    used = [float(r["nvml_used_mb"]) for r in rows if r.get("nvml_used_mb")]
    short = {p.name: sum(p.capacity_mb < m <= p.memory_mb for m in used) for p in dev.mig_profiles}

    def by_name(m: float):  # the pick the profiles' names would make (what recommend_mig did before)
        return min((p for p in dev.mig_profiles if p.memory_mb >= m), key=lambda p: (p.memory_mb, p.compute_fraction),
                   default=None)

    moved = sum(1 for m in used if by_name(m) != recommend_mig(dev, m))
    print(f"\nMIG pick, packaged H200 rows (measured NVML memory, {len(used)} rows): a slice holds by its name's GB "
          "but not by its listed instance memory")
    for p in dev.mig_profiles:
        print(f"  {p.name:<10} name {p.memory_mb:>9,.0f} MiB, instance {p.capacity_mb:>9,.0f} MiB"
              f"{'' if p.capacity_listed else ' (no listing)'}: {short[p.name]} rows")
    print(f"  the smallest slice holding the measured memory changes for {moved} of {len(used)} rows")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="h200", help="a GPU with MIG profiles (default h200)")
    ap.add_argument("--predictor", default="timeline")
    ap.add_argument("--slo-ms", type=float, default=10.0, help="latency target of the serving table (ms)")
    a = ap.parse_args(argv)

    from costmodel import estimate
    from costmodel.devices import get_device, slice_device
    from costmodel.frontends import to_graph
    from costmodel.predictors import get_predictor

    dev = get_device(a.device)
    pred = get_predictor(a.predictor)
    slices = [(p, slice_device(dev, p)) for p in dev.mig_profiles]
    print(f"{dev.name}, predictor {a.predictor}: latency ms (x slower than the whole GPU); memory from the "
          "allocation trace; '-' where the instance does not hold it")
    print(f"{'slice':<25}" + "".join(f"{p.name:>18}" for p, _ in slices))
    print(f"{'':<25}" + "".join(f"{s.sm_count or 0:>14} SMs" for _, s in slices))
    print(f"{'':<25}" + "".join(f"{p.capacity_mb / 1024:>13.2f} GiB" for p, _ in slices))
    t0 = time.perf_counter()
    for model, b, mode, dt in WORKLOADS:
        g = to_graph(model, batch=b, mode=mode, dtype=dt)
        whole = estimate(model, batch=b, mode=mode, dtype=dt, device=dev, predictor=a.predictor)
        mem = whole.memory_mb
        cells, agg = [], []
        for p, s in slices:
            e = pred.predict(g, s, mode=mode)
            fits = mem <= p.capacity_mb
            cells.append(f"{e.latency_ms:9.2f} (x{e.latency_ms / whole.latency_ms:4.1f})" if fits else "-")
            agg.append(f"{p.max_instances * b / (e.latency_ms / 1e3):16,.0f}/s" if fits else "-")
        label = f"{model.split(':')[1]} b{b} {mode[:5]} {dt}"
        print(f"{label}: whole GPU {whole.latency_ms:.2f} ms, {mem:,.0f} MiB, {b / (whole.latency_ms / 1e3):,.0f}/s")
        print(f"{'  latency':<25}" + "".join(f"{c:>18}" for c in cells))
        print(f"{'  aggregate, max instances':<25}" + "".join(f"{c:>18}" for c in agg))
    print("   max instances per GPU: " + ", ".join(f"{p.name} {p.max_instances}" for p, _ in slices))
    print(f"   {time.perf_counter() - t0:.1f} s")
    _serving(dev, a.slo_ms)
    _names_against_instances(a.device)
    return 0


def _serving(dev, slo_ms: float) -> None:
    """Per slice, the largest batch within ``slo_ms`` and the samples per second it gives, alone and as a full
    partition (``max_instances`` of it), against the whole GPU (the default predictor)."""
    from costmodel import largest_batch

    t0 = time.perf_counter()
    print(f"\nwithin {slo_ms:g} ms (largest batch that fits and answers in time; samples/s of one instance, "
          "and of a full partition)")
    for model, dt in (("torchvision:resnet50", "fp32"), ("torchvision:resnet50", "fp16"),
                      ("torchvision:vit_b_16", "fp16")):
        fits = largest_batch(model, device=dev, dtype=dt, mig="all", latency_slo_ms=slo_ms, limit=1024)
        whole = largest_batch(model, device=dev, dtype=dt, latency_slo_ms=slo_ms, limit=1024)
        by = {f["limit"][4:]: f for f in fits}
        cells = []
        for p in dev.mig_profiles:
            f = by[p.name]
            if not f["slo_batch"]:
                cells.append(f"{p.name}: none")
                continue
            thr = f["slo_throughput_samples_s"]
            cells.append(f"{p.name}: b{f['slo_batch']} {thr:,.0f}/s (x{p.max_instances}: {p.max_instances * thr:,.0f}/s)")
        head = (f"whole GPU b{whole['slo_batch']} {whole['slo_throughput_samples_s']:,.0f}/s" if whole["slo_batch"]
                else "whole GPU: none")
        print(f"  {model.split(':')[1]} {dt}: {head}")
        for c in cells:
            print(f"    {c}")
    print(f"   {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    raise SystemExit(main())
