"""Per-operator labels: one profiled step mapped onto the nodes of the CostGraph.

``costmodel collect --ops`` runs each workload's step under ``torch.profiler``
after the timed window and writes, next to the model-level row, one row per
executed operator into ``ops.jsonl`` in the same folder.  Each operator is
mapped onto the node of the CostGraph that the trace frontend builds for the
same model and workload, so an operator row carries the node's kind, shapes,
FLOPs and bytes next to its measured times.

How the mapping works.  The trace frontend records the ATen operators a module
runs at the dispatcher (after autograd and after composite operators such as
``conv2d`` or ``linear`` decompose), one CostGraph node each, in execution
order.  The profiler records the same operators, nested under the wrappers the
user called (``aten::conv2d`` > ``aten::convolution`` > the backend kernel).
Graph nodes are aligned to the profiled events in order (the longest
order-preserving matching, :func:`_align`): a node matches an event with its
ATen name whose input shapes contain the node's first input shape, and a node
missing from the profile (or an event missing from the trace) costs one match,
not the alignment of every later node.

What each row holds (times are means over the profiled steps, microseconds):

- ``cpu_us``: host time of the operator: the outermost profiled event around it
  that contains no other node (so ``aten::conv2d``'s dispatch is counted), or,
  when a wrapper holds several nodes (``aten::linear`` = ``t`` + ``addmm``),
  the node's own time plus an equal share of the wrapper's remainder.
- ``device_us``: on CUDA the summed duration of the kernels the operator
  launched; on a CPU the operator's own time (it runs on the host thread).
- ``phase``: ``forward``, ``backward`` (autograd's function for the node,
  found through the profiler's sequence number that links a forward operator to
  its backward function), or ``optimizer`` (``zero_grad`` and ``step``, one row
  with ``node`` null).
- Operators the mapping could not place (the loss, autograd's gradient
  accumulation, tensors made in the step) are rows with ``node`` null and
  ``mapped`` false: reported, never dropped.  The model row's ``ops`` field
  sums them up (how many, how much time) next to the profiler's own overhead.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from typing import Any, Callable

#: profiled steps after one warm-up step under the profiler
PROFILED_STEPS = 3
_STEP = "costmodel::step"


def _name(op: str) -> str:
    """``aten.convolution`` (CostGraph) -> ``aten::convolution`` (profiler)."""
    return op.replace(".", "::", 1) if op.startswith("aten.") else op


#: operators a GPU backend dispatches under another name than the graph's (the trace runs on the CPU
#: or meta device): cuDNN's batch norm is the graph's ``native_batch_norm``
EVENT_ALIASES = {"aten::cudnn_batch_norm": "aten::native_batch_norm",
                 "aten::miopen_batch_norm": "aten::native_batch_norm"}


def _event_name(e) -> str:
    return EVENT_ALIASES.get(e.name, e.name)


def _flat(root, extra=()) -> list:
    """Events below ``root`` (and the top-level events ``extra`` of other threads) in pre-order, each
    with the index one past its subtree."""
    out: list = []

    def walk(e):
        i = len(out)
        out.append([e, 0])
        for c in sorted(e.cpu_children, key=lambda c: c.time_range.start):
            walk(c)
        out[i][1] = len(out)

    for c in sorted([*root.cpu_children, *extra], key=lambda c: c.time_range.start):
        walk(c)
    return out


def _align(nodes, events, skip) -> list[tuple[int, int]]:
    """The longest order-preserving matching of graph nodes to profiled events.

    A node matches an event with its ATen name (or a GPU backend's name for it,
    :data:`EVENT_ALIASES`) whose input shapes contain the node's first input shape.  Solved as a longest common subsequence over the
    events that could match any node (one numpy pass per node), so a node the
    profile lacks (a cached tensor the trace computed, a view autograd made) or
    an event the trace lacks costs one match, never the alignment of the rest.
    """
    import numpy as np

    names = {_name(n.op) for n in nodes}
    cand = [j for j, e in enumerate(events) if not skip[j] and _event_name(e) in names]
    if not nodes or not cand:
        return []
    by_name: dict[str, list[int]] = {}
    for k, j in enumerate(cand):
        by_name.setdefault(_event_name(events[j]), []).append(k)
    m = len(cand)
    L = np.zeros((len(nodes) + 1, m + 1), dtype=np.int32)
    hit = np.zeros((len(nodes), m), dtype=bool)
    for i, n in enumerate(nodes):
        ks = [k for k in by_name.get(_name(n.op), []) if _shape_ok(n, events[cand[k]])]
        hit[i, ks] = True
        prev = L[i]
        row = np.maximum(prev[1:], prev[:-1] + hit[i])
        L[i + 1, 1:] = np.maximum.accumulate(row)
    pairs = []
    i, k = len(nodes), m
    while i > 0 and k > 0:
        if L[i, k] == L[i, k - 1]:
            k -= 1
        elif L[i, k] == L[i - 1, k]:
            i -= 1
        else:  # L[i, k] == L[i-1, k-1] + 1 with a hit
            pairs.append((i - 1, cand[k - 1]))
            i -= 1
            k -= 1
    return pairs[::-1]


def _shape_ok(node, ev) -> bool:
    if not node.in_shapes:
        return True
    want = list(node.in_shapes[0])
    return any(list(s) == want for s in (ev.input_shapes or []) if isinstance(s, (list, tuple)))


def _device_us(ev, cuda: bool) -> float:
    if cuda:
        return float(getattr(ev, "device_time_total", 0.0) or 0.0)
    return float(ev.cpu_time_total)


def _kernels(ev) -> int:
    n = len(getattr(ev, "kernels", []) or [])
    return n + sum(_kernels(c) for c in ev.cpu_children)


def map_step(root, graph, *, cuda: bool, extra=()) -> dict:
    """Map the events of one profiled step (``root``) onto ``graph``'s nodes.

    ``extra``: the step's events on other threads (:func:`_other_threads`): on CUDA, autograd runs
    the backward functions on its device thread, outside ``root``'s subtree.

    Returns ``{"forward": {node: (cpu_us, device_us, kernels)}, "backward": {...},
    "optimizer": (cpu_us, device_us, kernels), "unmapped": [(phase, name, cpu_us, device_us)],
    "step_us": float, "gap_us": float}``.
    """
    flat = _flat(root, extra)
    events = [e for e, _ in flat]
    end = [j for _, j in flat]
    parent_top = _top_index(flat)
    nodes = list(graph.nodes)
    fwd: dict[int, list[float]] = {}
    match_at: dict[int, int] = {}  # event index -> node id
    bwd_idx = [i for i, e in enumerate(events) if e.name.startswith("autograd::engine::evaluate_function")]
    opt_idx = [i for i, e in enumerate(events) if e.name.startswith("Optimizer.")]
    skip = [False] * len(events)
    for i in bwd_idx + opt_idx:
        for j in range(i, end[i]):
            skip[j] = True
    for i, j in _align(nodes, events, skip):
        match_at[j] = nodes[i].id
    # host time: the outermost event holding this node alone; wrappers holding several share their rest
    holders: dict[int, list[int]] = {}
    for j in match_at:
        holders.setdefault(parent_top[j], []).append(j)
    for top, js in holders.items():
        t = events[top]
        if len(js) == 1:
            j = js[0]
            fwd[match_at[j]] = [float(t.cpu_time_total), _device_us(t if cuda else events[j], cuda), _kernels(t)]
        else:
            own = sum(float(events[j].cpu_time_total) for j in js)
            rest = max(0.0, float(t.cpu_time_total) - own) / len(js)
            for j in js:
                e = events[j]
                fwd[match_at[j]] = [float(e.cpu_time_total) + rest, _device_us(e, cuda), _kernels(e)]
    # backward functions: linked to the forward operator by the autograd sequence number.  Every
    # operator run with grad enabled carries the number autograd's next function will get, so an
    # operator that makes no function (BatchNorm's ``num_batches_tracked.add_``) shares it with the
    # one that does, which runs after it: the last operator in execution order to carry a number
    # owns it (None when that operator is on no node, such as the loss).
    claims: list[tuple[int, int, int | None]] = []  # (event index, sequence number, node id)
    for j, nid in match_at.items():
        for k in _ancestors_to_top(j, flat, parent_top):
            s = getattr(events[k], "sequence_nr", -1)
            if s is not None and s >= 0:
                claims.append((k, s, nid))
    for i, e in enumerate(events):
        s = getattr(e, "sequence_nr", -1)
        if s is not None and s >= 0 and not skip[i] and parent_top[i] not in holders:
            claims.append((i, s, None))
    seq_node: dict[int, int | None] = {}
    for _, s, nid in sorted(claims, key=lambda c: c[0]):
        seq_node[s] = nid
    bwd: dict[int, list[float]] = {}
    unmapped: list[tuple[str, str, float, float]] = []
    for i in bwd_idx:
        ev = events[i]
        inner = [events[k] for k in range(i, end[i]) if getattr(events[k], "sequence_nr", -1) not in (None, -1)]
        s = inner[0].sequence_nr if inner else -1
        name = ev.name.split(": ", 1)[-1]
        d = _device_us(ev, cuda)
        if seq_node.get(s) is not None:
            acc = bwd.setdefault(seq_node[s], [0.0, 0.0, 0])
            acc[0] += float(ev.cpu_time_total)
            acc[1] += d
            acc[2] += _kernels(ev)
        else:
            unmapped.append(("backward", name, float(ev.cpu_time_total), d))
    opt = [0.0, 0.0, 0]
    for i in opt_idx:
        ev = events[i]
        opt[0] += float(ev.cpu_time_total)
        opt[1] += _device_us(ev, cuda)
        opt[2] += _kernels(ev)
    # top-level forward events that hold no node: the loss, tensors made in the step
    covered = set(holders)
    for i, (e, j) in enumerate(flat):
        if parent_top[i] != i or i in covered or skip[i]:
            continue
        unmapped.append(("forward", e.name, float(e.cpu_time_total), _device_us(e, cuda)))
    busy = sum(float(c.cpu_time_total) for c in root.cpu_children)
    step_us = float(root.cpu_time_total)
    return {"forward": fwd, "backward": bwd, "optimizer": opt if opt_idx else None, "unmapped": unmapped,
            "step_us": step_us, "gap_us": max(0.0, step_us - busy)}


def _top_index(flat) -> list[int]:
    """For every event, the index of its outermost ancestor below the step (itself at top level).

    The backward and optimizer record scopes count as the step: their children are top level."""
    top = [0] * len(flat)
    stack: list[tuple[int, int]] = []  # (index, end) of open top-level scopes
    for i, (e, j) in enumerate(flat):
        while stack and stack[-1][1] <= i:
            stack.pop()
        scope = stack[-1][0] if stack else None
        if scope is None or flat[scope][0].name.startswith(("autograd::engine::evaluate_function", "Optimizer.")):
            top[i] = i
            stack.append((i, j))
        else:
            top[i] = scope
    return top


def _ancestors_to_top(j: int, flat, parent_top) -> list[int]:
    """``j`` and its ancestors up to its top-level event (pre-order: ancestors open before ``j``)."""
    t = parent_top[j]
    return [k for k in range(t, j + 1) if flat[k][1] > j]


def profile_step(step: Callable[[], Any], graph, *, cuda: bool, sync: Callable[[], None] = lambda: None,
                 steps: int = PROFILED_STEPS, unprofiled_ms: float | None = None) -> tuple[list[dict], dict]:
    """Profile ``steps`` calls of ``step`` and map them onto ``graph``.

    Returns ``(rows, summary)``: per-node rows (means over the steps) and the
    run's summary (mapped share of the time, unmapped operators, the profiler's
    overhead against ``unprofiled_ms``, the timed latency without the profiler).
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if not cuda:  # the profiler's library looks for a GPU and logs its absence on stderr at every run
        os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    step()  # warm-up under the same allocator state
    sync()
    walls = []
    with profile(activities=acts, record_shapes=True) as prof:
        for _ in range(steps):
            sync()
            t = time.perf_counter()
            with record_function(_STEP):
                step()
                sync()
            walls.append(time.perf_counter() - t)
    evs = prof.events()
    roots = step_roots(evs)
    maps = [map_step(r, graph, cuda=cuda, extra=_other_threads(r, evs)) for r in roots]
    return _rows(graph, maps, cuda), _summary(graph, maps, walls, unprofiled_ms)


def _on_cpu(ev) -> bool:
    dt = getattr(ev, "device_type", None)
    return dt is None or getattr(dt, "name", str(dt)).upper().endswith("CPU")


def step_roots(events) -> list:
    """The profiled steps' host events.  With CUDA activity the profiler also records each
    ``record_function`` range on the GPU (a user annotation of the same name, sometimes in several
    pieces); those hold no host events and are not steps."""
    return [e for e in events if e.name == _STEP and e.cpu_parent is None and _on_cpu(e)]


def _other_threads(root, events) -> list:
    """Autograd's backward functions that ran on another thread inside ``root``'s time range (on
    CUDA the engine runs them on its device thread; on a CPU they run on the caller's)."""
    t0, t1 = root.time_range.start, root.time_range.end
    return [e for e in events
            if e.cpu_parent is None and e.thread != root.thread and _on_cpu(e)
            and e.name.startswith("autograd::engine::evaluate_function")
            and t0 <= e.time_range.start and e.time_range.end <= t1]


def _jsonable(attrs: dict) -> dict:
    out = {}
    for k, v in attrs.items():
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (bool, int, float, str)) for x in v):
            out[k] = list(v)
    return out


def _mean(vals) -> float:
    return float(statistics.fmean(vals)) if vals else 0.0


def _rows(graph, maps: list[dict], cuda: bool) -> list[dict]:
    k = len(maps)
    rows = []
    by_id = {n.id: n for n in graph.nodes}
    for phase in ("forward", "backward"):
        ids = sorted(set().union(*(m[phase].keys() for m in maps)))
        for nid in ids:
            n = by_id[nid]
            vals = [m[phase].get(nid) for m in maps]
            vals = [v for v in vals if v is not None]
            rows.append({
                "phase": phase, "node": nid, "mapped": True, "op": _name(n.op), "kind": n.kind,
                "is_view": n.is_view, "scope": n.scope, "attrs": _jsonable(n.attrs),
                "in_shapes": [list(s) for s in n.in_shapes], "out_shapes": [list(s) for s in n.out_shapes],
                "dtype": (n.out_dtypes or n.in_dtypes or ["?"])[0], "flops": n.flops,
                "bytes": n.bytes_read + n.bytes_written,
                "cpu_us": round(_mean([v[0] for v in vals]), 3), "device_us": round(_mean([v[1] for v in vals]), 3),
                "kernels": round(_mean([v[2] for v in vals]), 2) if cuda else None, "seen": f"{len(vals)}/{k}",
            })
    opts = [m["optimizer"] for m in maps if m["optimizer"] is not None]
    if opts:
        rows.append({"phase": "optimizer", "node": None, "mapped": True, "op": "optimizer", "kind": "optimizer",
                     "cpu_us": round(_mean([o[0] for o in opts]), 3), "device_us": round(_mean([o[1] for o in opts]), 3),
                     "kernels": round(_mean([o[2] for o in opts]), 2) if cuda else None, "seen": f"{len(opts)}/{k}"})
    agg: dict[tuple[str, str], list[float]] = {}
    for m in maps:
        for phase, name, c, d in m["unmapped"]:
            a = agg.setdefault((phase, name), [0.0, 0.0, 0])
            a[0] += c / k
            a[1] += d / k
            a[2] += 1 / k
    for (phase, name), (c, d, calls) in sorted(agg.items()):
        rows.append({"phase": phase, "node": None, "mapped": False, "op": name, "calls": round(calls, 2),
                     "cpu_us": round(c, 3), "device_us": round(d, 3)})
    return rows


def _summary(graph, maps: list[dict], walls: list[float], unprofiled_ms: float | None) -> dict:
    work = [n for n in graph.nodes if not n.is_view and (n.flops > 0 or n.bytes_read + n.bytes_written > 0)]
    mapped_work = [sum(1 for n in work if n.id in m["forward"]) for m in maps]
    step_us = [m["step_us"] for m in maps]
    un_us = [sum(c for _, _, c, _ in m["unmapped"]) for m in maps]
    from ..frontends import FRONTEND_VERSION

    out = {
        "profiled_steps": len(maps),
        # the frontend that built the graph the rows' node indices refer to
        "frontend": FRONTEND_VERSION,
        "graph_nodes": len(graph.nodes),
        "forward_nodes_mapped": round(_mean([len(m["forward"]) for m in maps]), 2),
        "work_nodes": len(work),
        "work_nodes_mapped": round(_mean(mapped_work), 2),
        "backward_nodes_mapped": round(_mean([len(m["backward"]) for m in maps]), 2),
        "unmapped_ops": round(_mean([len(m["unmapped"]) for m in maps]), 2),
        "unmapped_ms": round(_mean(un_us) / 1e3, 5),
        "unmapped_share": round(_mean(un_us) / _mean(step_us), 5) if _mean(step_us) > 0 else None,
        "python_gap_ms": round(_mean([m["gap_us"] for m in maps]) / 1e3, 5),
        "profiled_step_ms": round(_mean(step_us) / 1e3, 5),
        "profiled_wall_ms": round(_mean(walls) * 1e3, 5),
    }
    if unprofiled_ms and unprofiled_ms > 0:
        out["profiler_overhead"] = round(_mean(walls) * 1e3 / unprofiled_ms - 1.0, 4)
    return out


def measure_roofline(device: str = "cpu", *, budget_s: float = 2.0) -> dict:
    """This device's attainable fp32 GEMM rate and copy bandwidth, measured with torch.

    The device database's CPU entry is a nominal figure; an operator model for
    this machine needs what this machine (at its torch thread count) reaches.
    """
    import torch

    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)

    def rate(fn, work: float) -> float:
        fn()
        sync()
        best, t_end = math.inf, time.perf_counter() + budget_s / 2
        while time.perf_counter() < t_end:
            t = time.perf_counter()
            fn()
            sync()
            best = min(best, time.perf_counter() - t)
        return work / best

    n = 1024 if dev.type == "cpu" else 8192
    a = torch.randn(n, n, device=dev)
    b = torch.randn(n, n, device=dev)
    gflops = rate(lambda: a @ b, 2.0 * n**3) / 1e9
    m = (64 if dev.type == "cpu" else 512) * 2**20 // 4
    x = torch.empty(m, device=dev)
    y = torch.empty(m, device=dev)
    gbps = rate(lambda: y.copy_(x), 2.0 * 4 * m) / 1e9
    return {"peak_gflops_fp32": round(gflops, 2), "bandwidth_gbps": round(gbps, 2),
            "threads": torch.get_num_threads() if dev.type == "cpu" else None,
            "how": f"best of repeated {n}x{n} fp32 matmuls and {4 * m // 2**20} MiB copies (read + write) with torch"}
