"""Label collection: the loop that measures a list of work items.

:func:`collect` measures a list of work items (:mod:`~costmodel.measure.work`)
with the data protocol (:mod:`~costmodel.measure.protocol`), appends one JSON
row per item to a JSONL file as it goes (vision and transformer rows in
separate files), skips rows already present (resumable), records
out-of-memory as a row with ``"oom": true``, sleeps a cooldown between rows,
shows a progress bar and stops cleanly when a time budget is spent.  With
``ray_address`` the items are spread over a Ray cluster, one task per model
spec pinned to one GPU.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable

from .._errors import InvalidInputError
from .._validate import positive_int
from .models import _drop_model, check_buildable
from .probes import _hardware_json, _warn, check_cuda, normalize_device
from .protocol import check_energy_span, check_window, measure, measure_safe
from .work import WorkItem, _as_item, _done_keys, _drop_orphan_ops, _op_row, _Writer, check_resume, ops_path, output_paths

def _bar(total: int, desc: str, progress: bool):
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="row", file=sys.stderr)


def collect(work: Iterable, batches: Iterable[int] | str | os.PathLike | None = None,
            output: str | os.PathLike | None = None, *, device: str = "cpu", budget_s: float | None = None,
            cooldown_s: float = 0.5, progress: bool = True, limit: int | None = None, ray_address: str | None = None,
            measure_fn: Callable | None = None, stats: dict | None = None,
            clock: Callable[[], float] | None = None, ops: bool = False, threads: int | None = None,
            reference: bool = True, window_s: float | None = None, energy_span_s: float | None = None) -> int:
    """Measure every work item not yet in the output; returns the rows written.

    Args:
        work: :class:`WorkItem` objects, ``(spec, batch, mode, dtype[, seq])``
            tuples, or vision specs (measured at ``batches``, fp32 inference).
        batches: batch sizes for plain vision specs (``collect(items, out)``
            works too).
        output: JSONL file; rows already there are skipped.  Transformer rows
            go to a sibling file (:func:`output_paths`).  ``hardware.json`` is
            written beside it on first use.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        budget_s: stop (between rows) once this many seconds are spent, counted from the call (the
            checks of the specs and the device's preparation included); a row is not started when
            the mean duration of the rows so far would take the run past the budget.
        cooldown_s: sleep between rows.
        limit: measure at most this many rows.
        ray_address: run on a Ray cluster (``"auto"``, ``"ray://host:10001"``,
            ``"local"`` to start one here): one task per model spec, each
            pinned to one GPU (``num_gpus=1``) on ``cuda``, one CPU on ``cpu``.
        measure_fn: replaces :func:`measure` (called as ``fn(item, device=...)``).
        stats: filled with ``written``, ``skipped`` (rows of the work already in the output),
            ``repeated`` (listings of a row the work lists before: each row is measured once), ``oom``,
            ``failed`` (label -> error), ``left`` (not measured: budget/limit),
            ``budget_stopped`` (True when the budget ended the run early).
        clock: seconds for the budget (default ``time.monotonic``).
        ops: also profile every workload per operator: the operator rows go to
            ``ops.jsonl`` beside ``output`` (:mod:`costmodel.measure.opprofile`), each
            model row gets an ``ops`` summary, and ``hardware.json`` gets the
            device's measured GEMM rate and copy bandwidth.  Operator rows of a
            run cut before its model row was written are dropped on resume.
        threads: torch CPU threads (CPU only, at most the cores this process may use, not with
            ``ray_address``; recorded in every row).
        reference: before every row, measure the host CPU's fp32 GEMM rate and copy bandwidth and
            the time one tiny operator takes to dispatch on ``device`` (:func:`host_reference`, about
            0.4 s at the run's thread count) and record them in the row as ``host_reference``; a row
            measured while either rate ran below 80 % of the fastest reading of the run so far, or
            the dispatch took over 1.25x the median of the run's readings so far, gets a warning and
            ``host_slowed: true`` (a host that slows down in a shared machine
            inflates CPU rows and launch-bound GPU rows alike, and no check inside one row can see a
            spell that covers the whole row). Runs in this process only (not on Ray workers).
        window_s: the shortest timed window of every row (seconds, at most 60; default the protocol's
            0.25 s, see :func:`~costmodel.measure.protocol.measure`). Ignored by ``measure_fn``.
        energy_span_s: on a GPU, the shortest span between the two energy-counter updates every
            row's ``energy_j`` is read between (default 0.3 s; 0: the timed window's reading, the
            packaged protocol; see :mod:`costmodel.measure.energy`). Ignored by ``measure_fn``.

    Before measuring, every model to measure is built once on the meta device
    (no memory, no weights), so a spec that cannot be built (an unknown model,
    an unknown keyword in ``kw``, an invalid transformer config) is an
    :class:`~costmodel.InvalidInputError` before the first row, not a failure
    per row after a long run.
    """
    if output is None:
        if not isinstance(batches, (str, os.PathLike)):
            raise InvalidInputError("collect() needs an output path")
        output, batches = batches, None
    clock = clock or time.monotonic
    begun = clock()  # the budget counts the checks and the device's preparation too
    device = normalize_device(device)
    _check_options(threads, ops, ray_address, budget_s, cooldown_s, device)
    window_s = check_window(window_s)
    energy_span_s = check_energy_span(energy_span_s) if energy_span_s is not None else None
    opts = {k: v for k, v in (("window_s", window_s), ("energy_span_s", energy_span_s)) if v is not None}
    st = stats if stats is not None else {}
    todo, paths = _plan(work, batches, output, ops, limit, st, device, threads)
    if not todo:
        return 0
    check_buildable(todo)
    if ray_address:
        return _collect_ray(todo, paths, device, ray_address, budget_s, cooldown_s, progress, st, clock, opts,
                            start=begun)
    _prepare_device(device, threads, paths, ops)
    if measure_fn is None and (ops or opts):
        measure_fn = partial(measure, ops=ops, **opts)
    return _run_local(todo, paths, device, measure_fn, budget_s, cooldown_s, progress, st, clock, reference,
                      start=begun)


#: a row whose host reference reads below this share of the run's fastest reading so far is flagged
REFERENCE_SLOW = 0.8


def host_reference(budget_s: float = 0.4, device: str = "cpu") -> dict:
    """The host's speed right now: the CPU's fp32 GEMM rate (GFLOP/s) and copy bandwidth (GB/s) at
    torch's current thread count, best of repeated runs within three quarters of ``budget_s`` seconds,
    and the microseconds one tiny eager operator takes to dispatch on ``device`` (``dispatch_us``,
    :func:`~costmodel.measure.host.dispatch_reference`, the rest of the budget): the figure a
    launch-bound row is made of."""
    from .host import dispatch_reference
    from .opprofile import measure_roofline

    r = measure_roofline("cpu", budget_s=0.75 * budget_s)
    return {"gflops": r["peak_gflops_fp32"], "gbps": r["bandwidth_gbps"],
            "dispatch_us": dispatch_reference(device, budget_s=0.25 * budget_s)}


def _reference_check(ref: dict, base: dict | None) -> tuple[float, dict]:
    """How fast the host ran for this row against the run so far, and the run's references after it.

    The ratio is the lowest of each rate over the fastest reading so far (this one included) and the
    median dispatch time of the earlier rows over this one's. The median, not the fastest: a shared
    host's dispatch switches between a fast and a slow state every second or so
    (``benchmarks/label_noise.py``), and one lucky reading must not flag every row after it."""
    rates = {k: max(ref[k], base[k]) if base and k in base else ref[k] for k in ("gflops", "gbps") if k in ref}
    ratios = [ref[k] / rates[k] for k in rates]
    seen = list(base.get("dispatch_seen", [])) if base else []
    if ref.get("dispatch_us"):
        if seen:
            ratios.append(statistics.median(seen) / ref["dispatch_us"])
        seen.append(ref["dispatch_us"])
    return (min(ratios) if ratios else 1.0), {**rates, "dispatch_seen": seen}


def _check_options(threads, ops: bool, ray_address, budget_s, cooldown_s, device: str = "cpu") -> None:
    if threads is not None:
        positive_int(threads, "threads")
        if device.startswith("cuda"):
            raise InvalidInputError(f"threads={threads} sets torch's CPU threads, which a {device} run does not "
                                    "use; leave it out (threads applies to device='cpu' only)")
        if ray_address:
            raise InvalidInputError(f"threads={threads} sets this process's torch CPU threads; a Ray task runs "
                                    "on the one CPU Ray gives it: leave threads out with ray_address (--ray)")
        from .harness import _allowed_cpus

        cores = len(_allowed_cpus())
        if threads > cores:
            raise InvalidInputError(f"threads={threads}: this process may run on {cores} CPU core(s); rows "
                                    f"measured at more threads than cores time contention, not the model "
                                    f"(at most {cores})")
    if ops and ray_address:
        raise InvalidInputError("per-operator profiling (ops=True, --ops) runs in this process; it cannot go to Ray")
    if budget_s is not None and budget_s <= 0:
        raise InvalidInputError(f"budget must be > 0 seconds, got {budget_s}")
    if not 0 <= cooldown_s < float("inf"):  # NaN fails both
        raise InvalidInputError(f"cooldown must be a finite number >= 0 of seconds, got {cooldown_s}")


def _plan(work: Iterable, batches, output, ops: bool, limit: int | None, st: dict, device: str = "cpu",
          threads: int | None = None) -> tuple[list[WorkItem], dict]:
    """The items still to measure (not in the output yet, each once, at most ``limit``) and the
    output paths; fills the counters of ``st``. An output measured with other settings (another
    device, CPU thread count, or without the operator profiles ``ops`` asks for) is refused."""
    items: list[WorkItem] = []
    for x in work:
        items += _as_item(x, batches)
    paths = output_paths(output)
    if ops and ops_path(output) in paths.values():
        raise InvalidInputError(f"output {output}: with operator profiles (--ops) the operator rows go to "
                                f"{ops_path(output)}; give the model rows another name (e.g. vision.jsonl)")
    done = _done_keys(paths.values())
    if ops:
        paths["ops"] = ops_path(output)
        _drop_orphan_ops(paths["ops"], done)
    if done:
        check_resume(paths, *_run_settings(device, threads), ops)
    todo, listed = [], set()
    for it in items:
        k = it.key()
        if k not in listed and k not in done:
            todo.append(it)
        listed.add(k)
    st.update(written=0, skipped=len(listed & done), repeated=len(items) - len(listed), oom=0, failed={}, left=0,
              budget_stopped=False)
    if limit is not None:
        st["left"] = max(0, len(todo) - limit)
        todo = todo[:limit]
    return todo, paths


def _run_settings(device: str, threads: int | None) -> tuple[str | None, int | None]:
    """The device name and CPU thread count this run's rows will record (``None`` where not known without
    starting the device: a CUDA device this process cannot see is refused later, by its own check)."""
    import torch

    from .protocol import _device_name

    if device.startswith("cuda"):
        return (_device_name(device) if torch.cuda.is_available() else None), None
    return _device_name(device), threads if threads is not None else torch.get_num_threads()


def _prepare_device(device: str, threads: int | None, paths: dict[str, Path], ops: bool) -> None:
    """Check the device, set the CPU threads, write ``hardware.json`` (with the measured roofline
    for operator profiles) beside the output on first use."""
    if device.startswith("cuda"):
        check_cuda(device)
    if threads is not None and not device.startswith("cuda"):
        import torch

        torch.set_num_threads(threads)
    hw = paths["vision"].parent / "hardware.json"
    if not hw.exists():
        hw.parent.mkdir(parents=True, exist_ok=True)
        hw.write_text(_hardware_json(device))
    if ops:
        info = json.loads(hw.read_text())
        _check_roofline_threads(info, hw, device)
        if "roofline" not in info:
            from .opprofile import measure_roofline

            info["roofline"] = measure_roofline(device)
            hw.write_text(json.dumps(info, indent=1))


def _check_roofline_threads(info: dict, hw: Path, device: str) -> None:
    """Refuse operator profiles at a CPU thread count other than the one of the roofline ``hardware.json``
    already holds (the operator model bounds every operator of the folder by that roofline)."""
    import torch

    roof = info.get("roofline")
    have = roof.get("threads") if isinstance(roof, dict) else None
    now = torch.get_num_threads()
    if device.startswith("cuda") or not isinstance(have, int) or have == now:
        return
    raise InvalidInputError(
        f"{hw} holds this CPU's roofline measured at {have} thread(s), the bound of every operator profile in "
        f"{hw.parent}; this run uses {now}: pass --threads {have}, or choose another folder")


def _run_local(todo: list[WorkItem], paths: dict[str, Path], device: str, measure_fn: Callable | None, budget_s,
               cooldown_s: float, progress: bool, st: dict, clock: Callable[[], float], reference: bool = True,
               start: float | None = None) -> int:
    """Measure ``todo`` in this process, row after row, within the budget (and with the host reference
    before each row, see :func:`collect`)."""
    writer = _Writer(paths)
    bar = _bar(len(todo), f"measuring ({device})", progress)
    start = clock() if start is None else start
    durations: list[float] = []
    base = None
    st["host_slowed"] = []
    try:
        for i, it in enumerate(todo):
            if budget_s is not None:
                spent = clock() - start
                est = sum(durations) / len(durations) if durations else 0.0
                if spent + est > budget_s:
                    st["left"] += len(todo) - i
                    st["budget_stopped"] = True
                    _warn(f"time budget of {budget_s:g} s reached: {len(todo) - i} rows left for a later run", bar)
                    break
            if bar is not None:
                bar.set_postfix_str(it.label(), refresh=False)
            t0 = clock()
            ref = host_reference(device=device) if reference else None
            if ref is not None:
                ratio, base = _reference_check(ref, base)
            row, err = measure_safe(it, device, measure_fn)
            durations.append(clock() - t0)
            if row is not None and ref is not None:
                row["host_reference"] = ref
                if ratio < REFERENCE_SLOW:
                    row["host_slowed"] = True
                    st["host_slowed"].append(it.label())
                    disp = f", {ref['dispatch_us']:.1f} µs per dispatch" if ref.get("dispatch_us") else ""
                    _warn(f"{it.label()}: the host ran at {ratio:.0%} of its reference speed in this run "
                          f"({ref['gflops']:.0f} GFLOP/s, {ref['gbps']:.0f} GB/s{disp}); measure this row again "
                          "later", bar)
            if row is not None:
                op_rows = row.pop("_ops", None)
                if op_rows:
                    writer.write_many("ops", [_op_row(it, row, r) for r in op_rows])
                writer.write(it.kind, row)
                st["written"] += 1
                if row.get("oom"):
                    st["oom"] += 1
                    _warn(f"out of memory: {it.label()} (recorded as an oom row)", bar)
            else:
                st["failed"][it.label()] = err
                _warn(f"skipped {it.label()}: {err}", bar)
            if bar is not None:
                bar.update(1)
            if cooldown_s and i + 1 < len(todo):
                time.sleep(cooldown_s)
    finally:
        writer.close()
        if bar is not None:
            bar.close()
        _drop_model()
    return st["written"]


# ---------------------------------------------------------------------- ray
def _ray_task(items: list[WorkItem], device: str, cooldown_s: float, measure_opts: dict | None = None) -> dict:
    """One Ray task: the rows of one model spec, measured in sequence on this worker's device."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {"rows": [], "failed": {}, "hw": None}
    dev = "cuda" if device.startswith("cuda") else "cpu"  # Ray pins the task's GPU as cuda:0
    try:
        out["hw"] = json.loads(_hardware_json(dev))
    except Exception as e:  # noqa: BLE001 - report, measure anyway
        out["hw_error"] = f"{type(e).__name__}: {e}"
    try:
        for i, it in enumerate(items):
            row, err = measure_safe(it, dev, partial(measure, **measure_opts) if measure_opts else None)
            if row is not None:
                out["rows"].append((it.kind, row))
            else:
                out["failed"][it.label()] = err
            if cooldown_s and i + 1 < len(items):
                time.sleep(cooldown_s)
    finally:
        _drop_model()
    out["seconds"] = time.perf_counter() - t0
    return out


def _ray_init(ray, address: str) -> bool:
    """Connect (or start a local instance); True when this call started it."""
    if ray.is_initialized():
        return False
    if address == "local":
        # workers import costmodel from where this process does
        root = str(Path(__file__).resolve().parents[2])
        pp = os.pathsep.join(x for x in (root, os.environ.get("PYTHONPATH")) if x)
        ray.init(include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": pp}}, log_to_driver=True)
    else:
        try:
            ray.init(address=address)
        except Exception as e:  # noqa: BLE001 - a bad address: one line, not a traceback
            raise InvalidInputError(f"cannot connect to the Ray cluster at {address!r}: {type(e).__name__}: {e}; "
                                    "give 'auto', 'ray://HOST:10001' or 'local'") from None
    return True


def _collect_ray(todo: list[WorkItem], paths: dict[str, Path], device: str, address: str, budget_s, cooldown_s,
                 progress: bool, st: dict, clock: Callable[[], float] = time.monotonic,
                 measure_opts: dict | None = None, start: float | None = None) -> int:
    try:
        import ray
    except ImportError:
        raise InvalidInputError("--ray needs the 'ray' package: pip install 'costmodel[ray]'") from None
    cuda = device.startswith("cuda")
    started = _ray_init(ray, address)
    try:
        res = ray.cluster_resources()
        slots = int(res.get("GPU", 0)) if cuda else int(res.get("CPU", 0))
        if slots < 1:
            raise InvalidInputError(f"no CUDA device in the Ray cluster ({address}): resources {res}" if cuda
                                    else f"no CPU in the Ray cluster ({address}): resources {res}")
        # one task per model spec; on GPUs a fresh worker process per task, so an
        # idle worker's CUDA context never sits in another task's NVML reading
        opts = {"num_cpus": 1, "num_gpus": 1, "max_calls": 1} if cuda else {"num_cpus": 1}
        task = ray.remote(**opts)(_ray_task)
        groups: dict[str, list[WorkItem]] = {}
        for it in todo:
            groups.setdefault(it.group(), []).append(it)
        queue = list(groups.values())
        hw = paths["vision"].parent / "hardware.json"
        writer = _Writer(paths)
        bar = _bar(len(todo), f"measuring ({device}, ray)", progress)
        start = clock() if start is None else start
        per_row: list[float] = []
        running: dict[Any, list[WorkItem]] = {}
        try:
            while queue or running:
                while queue and len(running) < slots:
                    if budget_s is not None:
                        est = (sum(per_row) / len(per_row)) * len(queue[0]) if per_row else 0.0
                        if clock() - start + est > budget_s:
                            left = sum(len(g) for g in queue)
                            st["left"] += left
                            st["budget_stopped"] = True
                            _warn(f"time budget of {budget_s:g} s reached: {left} rows left for a later run", bar)
                            queue = []
                            break
                    g = queue.pop(0)
                    running[task.remote(g, device, cooldown_s, measure_opts)] = g
                if not running:
                    break
                ready, _ = ray.wait(list(running), num_returns=1)
                ref = ready[0]
                g = running.pop(ref)
                try:
                    res_ = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - a crashed worker: its rows are skipped
                    err = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                    for it in g:
                        st["failed"][it.label()] = err
                        _warn(f"skipped {it.label()}: {err}", bar)
                    if bar is not None:
                        bar.update(len(g))
                    continue
                if res_.get("hw") and not hw.exists():
                    hw.parent.mkdir(parents=True, exist_ok=True)
                    hw.write_text(json.dumps(res_["hw"], indent=1))
                for kind, row in res_["rows"]:
                    writer.write(kind, row)
                    st["written"] += 1
                    if row.get("oom"):
                        st["oom"] += 1
                for label, err in res_["failed"].items():
                    st["failed"][label] = err
                    _warn(f"skipped {label}: {err}", bar)
                per_row.append(res_.get("seconds", 0.0) / max(len(g), 1))
                if bar is not None:
                    bar.update(len(g))
        finally:
            writer.close()
            if bar is not None:
                bar.close()
    finally:
        if started:
            ray.shutdown()
    return st["written"]

