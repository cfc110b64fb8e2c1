"""``costmodel collect``, ``roofline``, ``bench`` and ``calibrate``: measure this machine."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from .._errors import CostModelError, InvalidInputError
from ._args import (PROFILE_HELP, add_autocast_arg, add_command, add_mode_arg, add_shape_args, non_negative_float,
                    parse_dims, positive_float, positive_int)

CALIBRATE_EXAMPLES = """examples:
  costmodel calibrate                           # -> $COSTMODEL_HOME/host.json
  costmodel calibrate -o host.json --budget 4   # a quicker, noisier profile
  costmodel calibrate --device cpu --json       # the CPU path even where CUDA is present
  costmodel calibrate --device cpu --threads 8 -o cpu8.json   # records this CPU's roofline at 8 threads
"""
BENCH_EXAMPLES = """examples:
  costmodel bench torch.matmul --shapes 1024x1024,1024x1024
  costmodel bench torch.nn.functional.conv2d --shapes 8x64x56x56,64x64x3x3 --kwargs '{"padding": 1}' -o conv.png
  costmodel bench torch.add --shapes 16777216,16777216 --profile cpu.json
  costmodel bench torch.matmul --shapes 8192x8192,8192x8192 --dtype bf16 --device cuda --json
"""
COLLECT_EXAMPLES = """examples:
  costmodel collect costmodel/data/specs/cpu_vision.json -o cpu/vision.jsonl --budget 600
  costmodel collect costmodel/data/specs/h200_extend.json --device cuda -o out/vision_extend.jsonl --budget 300
  costmodel collect specs.json --batch 1 4 -o rows.jsonl     # a JSON list of specs
  costmodel collect specs.json --batch 1 --window 2 -o rows.jsonl   # 2 s timed windows: steadier small rows
  costmodel collect work.json --device cuda --ray auto -o rows.jsonl
  costmodel collect costmodel/data/specs/cpu_ops.json --ops --threads 1 -o cpu/vision_ops.jsonl
"""
ROOFLINE_EXAMPLES = """examples:
  costmodel roofline torchvision:resnet50 --device h100 --batch 32 -o r50.png
  costmodel roofline model.onnx --device a100-80gb --dtype fp16 -o model.svg
  costmodel roofline --machine -o cpu.png             # measures this CPU (~1 min)
  costmodel roofline --machine --profile cpu.json -o cpu.png
  costmodel roofline torchvision:resnet50 --device cpu --profile cpu.json -o r50.png
  costmodel roofline torchvision:resnet50 --device h200 --predictor timeline -o r50.png
"""
BENCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "fp64": "float64"}


def register_collect(sub) -> None:
    c = add_command(sub, "collect", _cmd_collect,
                    help="measure workloads on this machine (CPU or CUDA GPU) with the data protocol",
                    description="Measure latency, memory and energy with the protocol of the packaged data "
                                "(warm-up, calibrated timed window, CUDA events and NVML on NVIDIA GPUs; "
                                "wall clock, RSS and RAPL energy on CPUs). Rows are appended to OUTPUT as they "
                                "are measured; rows already there are skipped, so an interrupted run resumes. "
                                "Out-of-memory is recorded as a row with \"oom\": true. hardware.json is "
                                "written beside OUTPUT on first use. Transformer rows go to a sibling file "
                                "(vision*.jsonl -> llm*.jsonl, else NAME_llm.jsonl).",
                    epilog=COLLECT_EXAMPLES)
    c.add_argument("specs", metavar="SPECS",
                   help="work file: JSON {\"vision\": [...], \"llm\": [...]} (see costmodel/data/specs/), "
                        "or a JSON list / JSONL of vision specs measured at --batch")
    c.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    c.add_argument("--batch", type=positive_int, nargs="+", default=None,
                   help="batch sizes for a plain list of specs (default 1)")
    c.add_argument("-o", "--output", required=True, help="JSONL file to append rows to")
    c.add_argument("--budget", type=float, default=None, metavar="S",
                   help="stop cleanly (between rows) after S seconds")
    c.add_argument("--cooldown", type=float, default=0.5, metavar="S", help="pause between rows (default 0.5 s)")
    c.add_argument("--limit", type=positive_int, default=None, metavar="N", help="measure at most N rows")
    c.add_argument("--no-reference", action="store_true",
                   help="skip the host reference before every row (the CPU's GEMM rate and copy bandwidth and "
                        "one tiny operator's dispatch time, about 0.4 s, recorded as host_reference; rows "
                        "measured while a rate ran below 80 %% of its fastest reading in the run, or the "
                        "dispatch took over 1.25x the run's median, are flagged host_slowed)")
    c.add_argument("--window", type=float, default=None, metavar="S",
                   help="shortest timed window per row in seconds (default 0.25, the packaged data's protocol; "
                        "at most 60): a longer one averages over more of the host's slow and fast spells, "
                        "which set launch-bound latencies (see benchmarks/label_noise.py)")
    c.add_argument("--energy-span", type=float, default=None, metavar="S",
                   help="on a GPU, read energy_j between two updates of NVML's energy counter at least S seconds "
                        "apart while the step runs on (default 0.3; 0: the timed window's reading, the packaged "
                        "data's protocol, about 13 %% off per row because the counter steps every ~100 ms)")
    c.add_argument("--ops", action="store_true",
                   help="also profile every workload per operator (torch.profiler) and write the operator rows, "
                        "mapped onto the CostGraph's nodes, to ops.jsonl beside OUTPUT")
    c.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="torch CPU threads (CPU only, at most the cores this process may use, not with --ray; "
                        "default: torch's own choice)")
    c.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run on a Ray cluster: auto, ray://HOST:10001, or local (start one here); one task per "
                        "model spec, pinned to one GPU with --device cuda (needs the 'ray' extra)")


def register_roofline(sub) -> None:
    r = add_command(sub, "roofline", _cmd_roofline,
                    help="draw a model's operators against a device's roofline, or the machine's",
                    description="Place every operator of MODEL (arithmetic intensity vs predicted FLOP/s) "
                                "against the device's compute and memory ceilings, ringing the operators "
                                "that take most predicted time; or, with --machine, draw the ceilings "
                                "measured on this machine by the C++ harness.",
                    epilog=ROOFLINE_EXAMPLES)
    r.add_argument("model", metavar="MODEL", nargs="?", default=None,
                   help="an .onnx file, a zoo name (torchvision:resnet50) or a JSON spec; omit with --machine")
    r.add_argument("--device", default="h100", help="device name (default h100)")
    add_shape_args(r, dtype_help=None)
    add_mode_arg(r)
    add_autocast_arg(r)
    r.add_argument("--top", type=int, default=8, help="ring and label this many slowest operators (default 8)")
    r.add_argument("--predictor", default="analytic", choices=("analytic", "timeline"),
                   help="whose per-operator times place the points: the analytic roofline (default) or the "
                        "timeline predictor's learned efficiency")
    r.add_argument("--machine", action="store_true", help="draw this machine's measured ceilings")
    r.add_argument("--measure-device", default="cpu", choices=("cpu", "cuda"),
                   help="with --machine and no --profile: what to measure (default cpu)")
    r.add_argument("--profile", default=None, help=PROFILE_HELP)
    r.add_argument("--save-profile", default=None, help="with --machine: also save the measured profile here")
    r.add_argument("-o", "--output", default="roofline.png", help="chart file, .png/.svg/.pdf (default roofline.png)")


def register_bench(sub) -> None:
    b = add_command(sub, "bench", _cmd_bench, help="time a torch op on this machine and place it on the roofline",
                    description="Time a torch operator on random tensors of the given shapes (warm-up, "
                                "calibrated samples of >= 1 ms, median; CUDA events on a GPU), count its FLOPs "
                                "(FlopCounterMode, plus one per output element of pointwise ops) and bytes "
                                "(inputs read + outputs written: a lower bound), and report the achieved "
                                "GFLOP/s, GB/s and fraction of the attainable roofline ceiling.",
                    epilog=BENCH_EXAMPLES)
    b.add_argument("op", metavar="OP", help="dotted name of a callable under torch, e.g. torch.nn.functional.conv2d")
    b.add_argument("--shapes", "-s", required=True, metavar="SHAPES",
                   help="comma-separated tensor shapes, dims joined by 'x': 8x64x56x56,64x64x3x3")
    b.add_argument("--dtype", default="fp32", choices=tuple(BENCH_DTYPES), help="tensor dtype (default fp32)")
    b.add_argument("--device", default="cpu", help="where the tensors live: cpu (default), cuda or cuda:N")
    b.add_argument("--kwargs", default=None, metavar="JSON", help='keyword arguments as a JSON object: \'{"padding": 1}\'')
    b.add_argument("--flops", type=non_negative_float, default=None, help="FLOPs of one call (default: counted)")
    b.add_argument("--bytes", type=non_negative_float, default=None, help="bytes moved by one call (default: counted lower bound)")
    b.add_argument("--warmup", type=int, default=3, help="untimed warm-up calls (default 3)")
    b.add_argument("--repeats", type=positive_int, default=10, help="minimum timed samples (default 10)")
    b.add_argument("--min-time", type=float, default=0.1, metavar="S",
                   help="keep sampling until the samples add up to S seconds (default 0.1)")
    b.add_argument("--ceilings", default=None, metavar="DEVICE",
                   help="device-database entry whose ceilings to use (default: the GPU's own entry, or cpu)")
    b.add_argument("--profile", default=None, help=PROFILE_HELP + " for the ceilings")
    b.add_argument("-o", "--output", default=None, help="also draw the point on its roofline: .png/.svg/.pdf")
    b.add_argument("--json", action="store_true", help="print JSON")


def register_calibrate(sub) -> None:
    ca = add_command(sub, "calibrate", _cmd_calibrate,
                     help="measure this host's per-operator dispatch cost (host profile JSON)",
                     description="Measure what PyTorch eager costs this machine's CPU per operator (per operator "
                                 "class, plus nn.Module call overhead; with CUDA also the smallest kernel's device "
                                 "time and a synchronisation) in at most 10 seconds, and save it as a host profile.",
                     epilog=CALIBRATE_EXAMPLES)
    ca.add_argument("-o", "--output", default=None,
                    help="where to save the profile (default $COSTMODEL_HOME/host.json)")
    ca.add_argument("--budget", type=positive_float, default=6.0,
                    help="seconds of measuring, at most 10 (default 6)")
    ca.add_argument("--device", choices=("cpu", "cuda"), default=None,
                    help="measure the CPU path or the CUDA path (default: CUDA when available)")
    ca.add_argument("--threads", type=positive_int, default=None,
                    help="torch CPU threads the CPU's roofline (GEMM rate, copy bandwidth) is measured at, "
                         "recorded in the profile to compare CPUs (default: torch's own choice); dispatch is "
                         "timed at one thread")
    ca.add_argument("--json", action="store_true", help="print the profile as JSON")


def _cmd_collect(a) -> int:
    from ..measure import collect, load_work, normalize_device, ops_path, output_paths

    device = normalize_device(a.device)
    for flag, v, ok in (("--budget", a.budget, a.budget is None or a.budget > 0),
                        ("--cooldown", a.cooldown, 0 <= a.cooldown < math.inf)):
        if not ok:
            raise InvalidInputError(f"{flag} must be {'> 0' if flag == '--budget' else 'a finite number >= 0 of'} "
                                    f"seconds, got {v:g}")
    if a.ray is not None and not a.ray.strip():
        raise InvalidInputError("--ray needs an address: auto, ray://HOST:10001 or local")
    items = load_work(a.specs, batches=a.batch)
    stats: dict = {}
    n = collect(items, output=a.output, device=device, budget_s=a.budget, cooldown_s=a.cooldown, limit=a.limit,
                ray_address=a.ray, stats=stats, ops=a.ops, threads=a.threads, reference=not a.no_reference,
                window_s=a.window, energy_span_s=a.energy_span)
    paths = output_paths(a.output)
    if a.ops:
        paths["ops"] = ops_path(a.output)
    where = ", ".join(str(p) for p in paths.values() if p.exists()) or a.output
    extra = [f"{stats['skipped']} already there"]
    if stats.get("repeated"):
        extra.append(f"{stats['repeated']} repeated in the work, measured once")
    if stats.get("oom"):
        extra.append(f"{stats['oom']} out of memory")
    if stats.get("failed"):
        extra.append(f"{len(stats['failed'])} failed")
    if stats.get("left"):
        extra.append(f"{stats['left']} left for a later run")
    if stats.get("host_slowed"):
        extra.append(f"{len(stats['host_slowed'])} measured while the host ran slower (host_slowed)")
    print(f"wrote {n} rows to {where} ({', '.join(extra)})")
    if stats.get("failed") and n == 0:
        label, err = next(iter(stats["failed"].items()))
        raise CostModelError(f"no row could be measured: {len(stats['failed'])} failed (first: {label}: {err})")
    return 0




def _cmd_roofline(a) -> int:
    from ..devices.profile import MachineProfile
    from ..measure.harness import measure
    from ..measure.charts import check_output, machine_chart, pyplot, roofline_chart

    pyplot("roofline charts")  # a missing extra or a bad file name fails before any work
    check_output(a.output)
    profile = None
    if a.profile:
        profile = MachineProfile.load(a.profile)
    if a.machine:
        if a.model:
            raise InvalidInputError(f"--machine draws the machine alone; drop the model argument {a.model!r}")
        if profile is None:
            profile = measure(device=a.measure_device, progress=True)
            if a.save_profile:
                profile.save(a.save_profile)
                print(f"saved the measured profile to {a.save_profile}")
        base = "cpu" if profile.kind == "cpu" else a.device
        machine_chart(base, machine=profile, output=a.output)
        print(profile.summary())
        print(f"wrote {a.output}")
        return 0
    if not a.model:
        raise InvalidInputError("give a MODEL to place on the roofline, or --machine for the machine alone")
    roofline_chart(a.model, a.device, batch=a.batch, mode=a.mode, dtype=a.dtype, input_shape=a.input_shape,
                   machine=profile, top=a.top, output=a.output, predictor=a.predictor, autocast=a.autocast)
    print(f"wrote {a.output}")
    return 0


def _parse_shapes(text: str) -> list[tuple[int, ...]]:
    """``"8x64x56x56,64x64x3x3"`` -> ``[(8, 64, 56, 56), (64, 64, 3, 3)]``."""
    shapes = []
    for piece in text.split(","):
        try:
            shapes.append(parse_dims(piece))
        except InvalidInputError:
            raise InvalidInputError(
                f"--shapes: expected comma-separated shapes of positive integers joined by 'x' "
                f"(e.g. 8x64x56x56,64x64x3x3), got {piece.strip()!r} in {text!r}"
            ) from None
    return shapes


def resolve_torch_op(path: str):
    """The callable named by a dotted path under ``torch`` (``"torch.nn.functional.conv2d"``).

    Only attributes of torch's own modules and classes are followed: a path
    that leaves the torch package (``torch.os.system``), names a private
    dunder attribute, or does not name a callable is refused.
    """
    import importlib
    import re
    import types

    if not isinstance(path, str) or not re.fullmatch(r"torch(\.[A-Za-z_][A-Za-z0-9_]*)+", path.strip()):
        raise InvalidInputError(
            f"OP must be a dotted name under torch, such as torch.matmul, torch.add or "
            f"torch.nn.functional.conv2d, got {path!r}"
        )
    parts = path.strip().split(".")
    if any(p.startswith("__") for p in parts):
        raise InvalidInputError(f"OP must not name a dunder attribute, got {path!r}")

    def owned(obj) -> bool:
        if isinstance(obj, types.ModuleType):
            return obj.__name__ == "torch" or obj.__name__.startswith("torch.")
        mod = getattr(obj, "__module__", None)
        if isinstance(mod, str):
            return mod == "torch" or mod.startswith("torch.")
        return isinstance(obj, (types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType))

    obj = importlib.import_module("torch")
    for i in range(1, len(parts)):
        where = ".".join(parts[: i + 1])
        try:
            nxt = getattr(obj, parts[i])
        except AttributeError:
            nxt = None
            if isinstance(obj, types.ModuleType):
                try:
                    nxt = importlib.import_module(where)
                except ImportError:
                    nxt = None
        if nxt is None:
            raise InvalidInputError(f"OP {path!r}: torch has no {where!r}")
        if not owned(nxt):
            raise InvalidInputError(f"OP {path!r}: {where!r} is not part of torch; only torch callables can be benched")
        obj = nxt
    if not callable(obj) or isinstance(obj, types.ModuleType):
        raise InvalidInputError(f"OP {path!r} is not a callable (a function, op or module class)")
    return obj


def _cmd_bench(a) -> int:
    from dataclasses import replace

    from .. import bench as run_bench  # the function (costmodel.bench)
    from ..measure.charts import check_output, pyplot

    fn = resolve_torch_op(a.op)
    shapes = _parse_shapes(a.shapes)
    if a.output:
        pyplot("bench charts (-o)")  # before the timing, not after it
        check_output(a.output)
    kwargs = {}
    if a.kwargs:
        try:
            kwargs = json.loads(a.kwargs)
        except json.JSONDecodeError as e:
            raise InvalidInputError(
                f"--kwargs: expected a JSON object such as '{{\"padding\": 1}}', got {a.kwargs!r} ({e})"
            ) from None
        if not isinstance(kwargs, dict):
            raise InvalidInputError(f"--kwargs: expected a JSON object, got {type(kwargs).__name__}")
    if a.warmup < 0:
        raise InvalidInputError(f"--warmup must be >= 0, got {a.warmup}")
    import torch

    dev = a.device.strip().lower()
    if dev != "cpu" and not (dev == "cuda" or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise InvalidInputError(f"--device must be cpu, cuda or cuda:N, got {a.device!r}")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError(f"--device {a.device}: no CUDA device is usable here (use --device cpu)")
    dtype = getattr(torch, BENCH_DTYPES[a.dtype])
    gen = torch.Generator().manual_seed(0)
    need = sum(math.prod(s) for s in shapes) * (4 + torch.empty((), dtype=dtype).element_size())
    if dev == "cpu":  # refuse before allocating: a fill that overcommits is killed, not refused
        from ..measure.harness import _available_memory

        avail = _available_memory()
        if avail is not None and need > avail:
            raise InvalidInputError(f"--shapes {a.shapes}: the inputs do not fit in cpu's memory (about "
                                    f"{need / 2**30:,.1f} GiB to build them, {avail / 2**30:,.1f} GiB available)")
    try:
        tensors = [torch.randn(s, generator=gen, dtype=torch.float32).to(device=dev, dtype=dtype) for s in shapes]
    except (torch.cuda.OutOfMemoryError, RuntimeError) as e:
        if "out of memory" not in str(e) and "can't allocate memory" not in str(e):
            raise
        raise InvalidInputError(f"--shapes {a.shapes}: the inputs do not fit in {a.device}'s memory "
                                f"(about {need / 2**30:,.1f} GiB to build them)") from None
    r = run_bench(fn, *tensors, flops=a.flops, bytes=a.bytes, device=a.ceilings, warmup=a.warmup,
                  repeats=a.repeats, min_time_s=a.min_time, profile=a.profile, **kwargs)
    r = replace(r, name=a.op)
    if a.output:
        r.chart(a.output)
    if a.json:
        print(r.to_json())
    else:
        print(r.table())
        if a.output:
            print(f"wrote {a.output}")
    return 0




def _cmd_calibrate(a) -> int:
    from ..measure.host import calibrate
    from ..training import user_data_dir

    if a.budget > 10:
        raise InvalidInputError(f"--budget must be at most 10 seconds, got {a.budget:g}")
    out = Path(a.output) if a.output else user_data_dir() / "host.json"
    if out.exists() and out.is_dir():
        raise InvalidInputError(f"-o {out} is a directory; give a file name such as {out / 'host.json'}")
    import os

    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if a.threads and cores and a.threads > cores:
        raise InvalidInputError(f"--threads {a.threads}: this process may run on {cores} CPU core(s); a roofline "
                                f"at more threads than cores measures contention, not the CPU (at most {cores})")
    threads = torch.get_num_threads()
    torch.set_num_threads(a.threads or threads)
    try:
        prof = calibrate(budget_s=a.budget, device=a.device, progress=not a.json and sys.stderr.isatty())
    finally:
        torch.set_num_threads(threads)
    prof.save(out)
    if a.json:
        print(json.dumps(prof.to_dict()))
        return 0
    print(f"host {prof.host.get('hostname')} ({prof.host.get('cpu')}, torch {prof.host.get('torch')}), "
          f"{'CPU execution' if prof.synchronous else 'CUDA ' + str(prof.host.get('device'))}")
    print(f"{'operator class':<16}{'dispatch us':>12}")
    for k, v in prof.dispatch_us.items():
        print(f"{k:<16}{v:>12.2f}")
    print(f"{'module call':<16}{prof.module_call_us:>12.2f}")
    if prof.kernel_us is not None:
        print(f"{'kernel (device)':<16}{prof.kernel_us:>12.2f}\n{'synchronize':<16}{prof.sync_us:>12.2f}")
    if prof.roofline:
        r = prof.roofline
        print(f"CPU roofline at {r['threads']} thread(s): {r['peak_gflops_fp32']:.1f} GFLOP/s fp32 GEMM, "
              f"{r['bandwidth_gbps']:.1f} GB/s copy (a record: CPU estimates do not use it)")
    for n in prof.notes:
        print(f"note: {n}")
    print(f"saved {out}")
    return 0


