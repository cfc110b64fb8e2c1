"""The allocation trace checked against a real allocator, on the CPU.

:mod:`costmodel.analysis.alloctrace` sees a step through fake tensors: every
storage an operator returns, every storage Python drops. Whether that is what
PyTorch really allocates can be checked without a GPU: the same step runs for
real on CPU tensors under ``torch.profiler`` with ``profile_memory=True``,
whose allocation events come from the c10 CPU allocator itself (each
allocation and free, with its size, in order), not from the dispatcher the
trace listens to.

Like is compared with like:

* the trace is taken with ``target="cpu"``: the attention kernel PyTorch picks
  for CPU tensors, no cuDNN workspace, the optimizer's 0-dim tensors kept
  (a CUDA trace adds what a GPU does and a CPU does not);
* both sides start from the same state: the weights, buffers and inputs exist
  before the step (in the real run, fresh copies of the module's tensors, so
  the module is not modified), and the peak counted is the largest sum of
  bytes allocated *during* the step and live at once, above that state. The
  trace's side is the same sum over its events after the peak reset, in bytes
  requested (the CPU allocator does not round the sizes it reports);
* the step is the same code: :func:`~costmodel.analysis.alloctrace.run_step`
  and :func:`~costmodel.analysis.alloctrace.run_forward` run it on the real
  tensors without a recorder, with the cycle collector held off as in a trace.

What the real side sees and the trace cannot: temporaries a CPU kernel takes
through the allocator inside one operator. What neither sees: memory a
library takes outside it (oneDNN's scratchpads, OpenMP's stacks).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from .._errors import InvalidInputError
from .alloctrace import (
    AllocationTrace,
    _build_order,
    _exclusive,
    check_optimizer,
    run_forward,
    run_step,
    trace_decoder,
    trace_module,
)

__all__ = ["CpuCheck", "check_decoder", "check_module", "real_cpu_peak", "step_peak"]

MB = 1e6


@dataclass
class CpuCheck:
    """The step's peak above its state, traced (``target="cpu"``) and as the CPU allocator reported it:
    all of it, and without the kernels' temporaries (:func:`real_cpu_peak`)."""

    traced_bytes: int
    real_bytes: int
    real_results_bytes: int
    state_bytes: int  # weights + buffers + inputs, before the step
    trace_seconds: float
    real_seconds: float

    @property
    def traced_mb(self) -> float:
        return self.traced_bytes / MB

    @property
    def real_mb(self) -> float:
        return self.real_bytes / MB

    @property
    def real_results_mb(self) -> float:
        return self.real_results_bytes / MB

    @property
    def error(self) -> float:
        """(traced - real) / real."""
        return (self.traced_bytes - self.real_bytes) / self.real_bytes if self.real_bytes else float("nan")

    @property
    def results_error(self) -> float:
        """(traced - real without the kernels' temporaries) / the same."""
        r = self.real_results_bytes
        return (self.traced_bytes - r) / r if r else float("nan")


def step_peak(trace: AllocationTrace) -> int:
    """The largest sum of bytes allocated after the trace's peak reset and live at once (requested
    sizes, no allocator rounding, the library workspace not counted)."""
    live: dict[int, int] = {}
    started = False
    cur = peak = 0
    for e in trace.events:
        if e.kind == "reset_peak":
            started, live, cur = True, {}, 0
        elif not started:
            continue
        elif e.kind == "alloc":
            live[e.key] = e.nbytes
            cur += e.nbytes
            peak = max(peak, cur)
        elif e.kind == "free":
            cur -= live.pop(e.key, 0)
    return peak


def _allocations(prof) -> list:
    """The CPU allocator's events of a finished profile, in the order they happened."""
    from torch._C._profiler import _EventType

    out = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        n = stack.pop()
        if n.tag == _EventType.Allocation and str(n.extra_fields.device) == "cpu":
            out.append(n)
        stack.extend(n.children)
    out.sort(key=lambda n: (n.start_time_ns, n.extra_fields.id))
    return out


@functools.lru_cache(maxsize=None)
def _composite(name: str, overload: str) -> bool:
    """Whether the operator decomposes before a dispatch mode sees it (outside inference mode)."""
    import torch

    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"{name}.{overload}" if overload else name,
                                                              "CompositeImplicitAutograd")
    except RuntimeError:  # not a dispatcher operator
        return False


def _seen_op(node, inference: bool):
    """The operator whose result the trace records for an allocation made inside it: the outermost
    ATen operator around the allocation. Under inference mode a dispatch mode sees composite operators
    whole (``aten::linear``); otherwise they decompose first, and the outermost one that does not is
    the one the trace sees."""
    from torch._C._profiler import _EventType

    chain = []
    p = node.parent
    while p is not None:
        chain.append(p)
        p = p.parent
    for p in reversed(chain):
        if p.tag == _EventType.TorchOp and p.name.startswith("aten::") and \
                (inference or not _composite(p.name, p.overload_name)):
            return p
    return None


def real_cpu_peak(fn, *, inference: bool = False) -> tuple[int, int]:
    """Run ``fn()`` under ``torch.profiler`` with ``profile_memory=True``; return two peaks of the bytes
    the CPU allocator handed out during the call and had not yet taken back, above what was live when
    it started (frees of blocks allocated before count as nothing: the profiler does not know their
    size):

    * all of them;
    * without the kernels' own temporaries: blocks freed before the operator that allocated them (as
      the trace sees operators, :func:`_seen_op`; ``inference``: ``fn`` runs under inference mode)
      returned, which no trace of operator results can see.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = _allocations(prof)
    cur = peak = 0
    for n in events:
        cur += n.extra_fields.alloc_size
        peak = max(peak, cur)
    open_: dict[int, tuple[int, object]] = {}  # ptr -> (bytes, operator)
    temporary: set[int] = set()  # indices of the allocations and frees of temporaries
    for i, n in enumerate(events):
        f = n.extra_fields
        if f.alloc_size > 0:
            open_[f.ptr] = (i, _seen_op(n, inference))
        elif f.ptr in open_:
            j, op = open_.pop(f.ptr)
            if op is not None and n.start_time_ns <= op.end_time_ns:
                temporary.update((i, j))
    cur = kept = 0
    for i, n in enumerate(events):
        if i not in temporary:
            cur += n.extra_fields.alloc_size
            kept = max(kept, cur)
    return peak, kept


def _real_state(module, training: bool):
    """Fresh copies of the module's parameters and buffers (trainable ones as leaves that require
    grad when ``training``), the ``functional_call`` mapping, and the trainable ones in build order."""
    copies: dict[int, object] = {}
    params = []
    for kind, t, is_param in _build_order(module):
        c = t.detach().clone()
        if is_param and training and t.requires_grad:
            c.requires_grad_(True)
            params.append(c)
        copies[id(t)] = c
    mapping = {name: copies[id(t)] for name, t in module.named_parameters(remove_duplicate=False)}
    mapping.update({name: copies[id(t)] for name, t in module.named_buffers(remove_duplicate=False)})
    return mapping, params


def _real_inputs(inputs):
    import torch
    from torch.utils._pytree import tree_map

    gen = torch.Generator().manual_seed(0)

    def real(x):
        if isinstance(x, torch.Tensor):
            if x.is_floating_point():
                return torch.randn(x.shape, dtype=torch.float32, generator=gen)
            return torch.zeros(x.shape, dtype=x.dtype)
        return x
    return tree_map(real, inputs)


def _cpu_module(module) -> None:
    for t in list(module.parameters()) + list(module.buffers()):
        if t.device.type != "cpu" or (t.is_floating_point() and t.dtype != _float32()):
            raise InvalidInputError("the CPU check runs an fp32 module with its tensors on the CPU; got a "
                                    f"{t.dtype} tensor on {t.device}")


def _float32():
    import torch

    return torch.float32


def check_module(module, inputs, *, training: bool = False, optimizer: str = "adam",
                 steps: int | None = None, autocast: str | None = None) -> CpuCheck:
    """Trace ``module``'s step for the CPU and run it for real on CPU tensors; see the module doc.

    ``module``: an fp32 ``nn.Module`` on the CPU (not modified: the real step runs on copies of its
    tensors). ``inputs`` as for :func:`~costmodel.analysis.alloctrace.trace_module` (shapes and
    dtypes; the real run draws fresh values).
    """
    _cpu_module(module)
    if training:
        optimizer = check_optimizer(optimizer)
    steps = steps or (2 if training else 1)
    t0 = time.perf_counter()
    trace = trace_module(module, inputs, training=training, optimizer=optimizer, steps=steps, target="cpu",
                         autocast=autocast)
    t1 = time.perf_counter()
    mapping, params = _real_state(module, training)
    x = _real_inputs(inputs)

    def step():
        run_step(module, mapping, x, training=training, params=params, optimizer=optimizer, steps=steps,
                 target="cpu", autocast=autocast)
    real = _measure(step, inference=not training)
    return CpuCheck(step_peak(trace), *real, trace.state_bytes, t1 - t0, time.perf_counter() - t1)


def check_decoder(model, *, batch: int, seq: int, causal: bool = False, target_seq: int | None = None) -> CpuCheck:
    """The same for one forward (prefill) call of a transformers model on ``(batch, seq)`` token ids (an
    encoder-decoder's decoder on ``target_seq`` tokens, default ``seq``)."""
    import torch

    _cpu_module(model)
    t0 = time.perf_counter()
    trace = trace_decoder(model, batch=batch, seq=seq, phase="prefill" if causal else "forward", causal=causal,
                          target="cpu", target_seq=target_seq)
    t1 = time.perf_counter()
    mapping, _ = _real_state(model, False)
    ids = torch.zeros((batch, seq), dtype=torch.long)

    def step():
        run_forward(model, mapping, ids, causal=causal, target="cpu", target_seq=target_seq)
    real = _measure(step, inference=True)
    return CpuCheck(step_peak(trace), *real, trace.state_bytes, t1 - t0, time.perf_counter() - t1)


def _measure(step, inference: bool) -> tuple[int, int]:
    """The real peak of ``step``, with the cycle collector held off and one young collection at its end,
    as a trace records."""
    import gc

    def run():
        step()
        gc.collect(0)
    with _exclusive():
        return real_cpu_peak(run, inference=inference)
