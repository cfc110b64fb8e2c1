"""Every tensor allocation and free of a model's step, recorded without a GPU.

The step runs on fake tensors (shapes, dtypes and storages, no data; meta
kernels), so a 7 B decoder costs no memory to trace. A ``TorchDispatchMode``
sees every ATen operator; each new storage an operator returns is an
allocation, and a weak reference to the storage reports its free when Python
drops the last tensor that uses it, which is when PyTorch returns the block to
the caching allocator. Views and in-place results share a storage and allocate
nothing, also when the storage is a weight, a buffer or an input (the
transpose of a linear layer's weight in a training step, batch norm's
``num_batches_tracked += 1``). Autograd's saved tensors, gradients, optimizer
state and the optimizer's temporaries all appear, because they are storages
that operators make. Autograd sums two gradients of one tensor in place when
it holds the last reference to the first, but out of place for a tensor
subclass such as a fake tensor; the trace folds such a sum back into the
first gradient's block (:meth:`_Recorder.accumulation`).

What a meta run cannot see, and how :func:`trace_module` handles it:

* tensors that exist before the step (parameters, buffers, inputs) are
  allocations at the start, in the order the model was built (a module's
  parameters, then its buffers, parents before children). A model converted
  to half precision is replayed as ``model.half()`` does it (each fp16 copy,
  then the fp32 original freed), then the cache is emptied;
* the optimizer runs its multi-tensor (``foreach``) implementation, which is
  what PyTorch picks for CUDA tensors; its step counters live on the CPU and
  are not device memory, so they are left out;
* ``F.scaled_dot_product_attention`` runs the fused kernel a GPU would
  (:func:`cuda_attention`) instead of the kernel PyTorch picks for the CPU
  tensors the fake tensors claim to be;
* workspaces that kernels take inside one operator are invisible; a dense
  spatial convolution gets cuDNN's workspace as a transient of its input +
  output bytes (:meth:`_Recorder.conv_workspace`), and the library workspace
  that persists is a ``workspace`` event
  after the weights, sized per device at replay
  (:mod:`costmodel.analysis.memreplay`);
* a recurrent layer is one cuDNN call (:func:`~costmodel.frontends.cudnn_rnn_kernels`)
  with an estimated workspace and, in training, reserve space, not PyTorch's unrolled steps.

The kernel corrections are the CUDA target's (``target="cuda"``, the
default). ``target="cpu"`` traces the step as PyTorch's CPU kernels run it
(the attention kernel PyTorch picks for CPU tensors, the unrolled RNN, no convolution workspace,
the optimizer's 0-dim tensors kept): that trace is the one
:mod:`costmodel.analysis.allocheck` compares with the CPU allocator's own
events.

The user's module is never modified: the step runs through
``torch.func.functional_call`` on meta copies of its parameters.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errors import InvalidInputError
from ..frontends import cuda_attention, cudnn_rnn_kernels, preserved_tensor_attributes
from ..frontends.hf import unpadded_sequences
from ..ir import OPTIMIZERS as _IR_OPTIMIZERS
from ._stepctx import AUTOCAST_DTYPES, autocast_to, check_autocast, direct_call, reparametrized
from .allocator import Event

__all__ = [
    "AUTOCAST_DTYPES",
    "AllocationTrace",
    "OPTIMIZERS",
    "TARGETS",
    "TraceError",
    "check_autocast",
    "check_optimizer",
    "cuda_attention",
    "run_forward",
    "run_step",
    "trace_module",
    "trace_decoder",
]

def conv_workspace_bytes(in_bytes: int, out_bytes: int, *, groups: int, kernel, in_channels: int | None = None) -> int:
    """cuDNN's transient workspace of one forward convolution (the rule of
    :meth:`_Recorder.conv_workspace`): input + output bytes for a dense or grouped convolution with a
    kernel wider than 1 x 1, none for 1 x 1 and depthwise ones."""
    if not kernel or max(kernel) <= 1 or (groups != 1 and (in_channels is None or groups >= in_channels)):
        return 0
    return int(in_bytes + out_bytes)


#: optimizers a training trace can run (the IR's vocabulary; ``momentum`` is taken for ``sgd_momentum``)
OPTIMIZERS = _IR_OPTIMIZERS
_DTYPES = ("fp32", "fp16", "bf16")
#: the ATen convolutions (as inference mode and autograd see them) that take a cuDNN workspace
_CONV_OPS = frozenset({"conv2d.default", "conv3d.default", "convolution.default", "convolution_backward.default"})
#: the device fake tensors claim to be on (their kernels are the meta kernels either way)
_DEV = "cpu"
#: the kernels a trace stands for: a CUDA device's (fused attention, cuDNN's workspace) or the CPU's
TARGETS = ("cuda", "cpu")


#: one trace at a time: a trace patches module attributes (attention, the optimizer's compile check)
#: for its duration, and the cycle collector is held off while it records
_TRACE_LOCK = threading.RLock()


@contextlib.contextmanager
def _exclusive():
    from ..frontends import grouped_mm_fallback

    with _TRACE_LOCK, grouped_mm_fallback():
        enabled = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            if enabled:
                gc.enable()


@contextlib.contextmanager
def _fake():
    """Fake tensors: meta kernels behind a cache of operator results keyed by input metadata, so the
    32 identical layers of a decoder cost one meta run each op instead of 32."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        yield


class TraceError(InvalidInputError):
    """The step cannot run on meta tensors (data-dependent shapes, custom kernels); ``op`` names the operator."""

    def __init__(self, message: str, op: str = ""):
        super().__init__(message)
        self.op = op


@dataclass
class AllocationTrace:
    """An ordered allocation stream plus what was known about it."""

    events: list[Event] = field(default_factory=list)
    state_bytes: int = 0  # parameters + buffers + inputs allocated before the step
    notes: list[str] = field(default_factory=list)

    def extend(self, events) -> None:
        self.events.extend(events)

    def phases(self) -> dict[str, int]:
        """Bytes allocated per phase over the whole trace (frees not subtracted)."""
        out: dict[str, int] = {}
        for e in self.events:
            if e.kind == "alloc":
                out[e.phase] = out.get(e.phase, 0) + e.nbytes
        return out


#: whole-tensor reductions a model may branch on, and the answer a trace gives when it does: activations
#: are finite and inputs unpadded, so ``all()`` holds and ``any()`` does not
_GUARDS = {"all.default": True, "any.default": False}
#: the operators that read a 0-dim tensor's value on the host
_HOST_READS = frozenset({"is_nonzero.default", "_local_scalar_dense.default"})


class _Recorder:
    """A dispatch mode that turns new storages into alloc events and dead ones into free events."""

    def __init__(self, trace: AllocationTrace, target: str = "cuda"):
        from torch.utils._python_dispatch import TorchDispatchMode

        rec = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                rec.pending = None
                if func.__name__ in _HOST_READS and args:
                    known = rec.guard_value(args[0])
                    if known is not None:
                        return known
                try:
                    out = func(*args, **(kwargs or {}))
                except Exception as e:  # a kernel with no meta implementation, a data-dependent op
                    if isinstance(e, TraceError):
                        raise
                    raise TraceError(f"{func.__name__} cannot run on meta tensors: {e}", func.__name__) from e
                if func.__name__ in _GUARDS:
                    rec.guard(out, _GUARDS[func.__name__])
                rec.outputs(out, func)
                if rec.cudnn and func.__name__ in _CONV_OPS:
                    rec.conv_workspace(func, args, out)
                if rec.phase == "backward" and func.__name__ == "add.Tensor" and len(args) == 2:
                    rec.accumulation(args[0], out)
                return out

        self.mode = _Mode()
        self.trace = trace
        self.phase = "forward"
        self.cudnn = target == "cuda"
        #: 0-dim results of the optimizer (its step counters) are left out: on a CUDA device they are on the CPU
        self.optimizer_scalars_on_host = target == "cuda"
        self.skip_scalars = False
        self.closed = False
        self._live: dict[int, tuple[int, Any]] = {}  # storage pointer -> (key, weakref)
        self._next = 1
        self.pending: tuple | None = None  # an out-of-place gradient sum autograd would have made in place
        self._guards: dict[int, tuple[Any, bool]] = {}  # id -> (weakref, value) of whole-tensor all()/any()
        self.guards_read = 0

    def guard(self, out, value: bool) -> None:
        """Remember a whole-tensor ``all()`` / ``any()`` result: if the model reads it on the host (an
        overflow guard such as BART's ``if not torch.isfinite(h).all(): clamp``), it gets ``value``."""
        import torch

        if isinstance(out, torch.Tensor) and out.dim() == 0:
            self._guards[id(out)] = (weakref.ref(out), value)

    def guard_value(self, t) -> bool | None:
        hit = self._guards.get(id(t))
        if hit is None or hit[0]() is not t:
            return None
        self.guards_read += 1
        return hit[1]

    def finish(self) -> None:
        """Collect what only the cycle collector frees (at this fixed point, so that a trace does not
        depend on when the collector happens to run), then stop recording. The collector is off while
        a trace records, so everything the trace made is still in the youngest generation."""
        gc.collect(0)
        self.closed = True
        if self.guards_read:
            self.trace.notes.append(f"{self.guards_read} host read(s) of a whole-tensor all()/any() (overflow or "
                                    "padding checks) answered as for finite activations and unpadded inputs: "
                                    "all() true, any() false")

    def hold(self, tensors) -> None:
        """Storages that exist before the step (weights, buffers, inputs: their allocations are the
        prologue's events): an operator that returns one (an in-place update of a buffer, such as
        batch norm's ``num_batches_tracked += 1``) allocates nothing."""
        from torch.utils._pytree import tree_leaves

        for t in tree_leaves(tensors):
            if hasattr(t, "untyped_storage"):
                self._live.setdefault(t.untyped_storage()._cdata, (0, None))

    def outputs(self, out, func) -> None:
        from torch._subclasses.fake_tensor import FakeTensor
        from torch.utils._pytree import tree_leaves

        for t in tree_leaves(out):
            if not isinstance(t, FakeTensor):
                continue
            if self.skip_scalars and t.dim() == 0:
                continue
            st = t.untyped_storage()
            ptr = st._cdata
            if ptr in self._live:
                continue
            key = self._next
            self._next += 1
            self.trace.events.append(Event("alloc", key, int(st.nbytes()), self.phase, func.__name__))
            self._live[ptr] = (key, weakref.ref(st, self._freed(ptr, key)))

    def conv_workspace(self, func, args, out) -> None:
        """cuDNN's workspace for a dense or grouped spatial convolution: a transient of input +
        output bytes.

        The kernels cuDNN picks for convolutions with a kernel wider than 1 x 1 (implicit-GEMM and
        FFT/Winograd variants, NCHW <-> NHWC transforms for tensor cores) take a workspace from the
        caching allocator for the call. Its size is the kernel's choice; the input + output bytes of
        the call is the rule that matched the measured allocated peaks best (factors 0.5, 1 and 1.5
        tried on the packaged H200 inference rows). Grouped convolutions (ResNeXt, RegNet) take it
        too: without it RegNet's allocated peaks were 10-14 % low at batch 32 and 128, with it
        within 0.4 %. 1 x 1 and depthwise convolutions take none.

        The backward pass calls cuDNN once for the input's gradient and once for the weights'
        (``output_mask`` says which are wanted; the first layer's input needs none), each with a
        workspace by the same rule over the input and the output's gradient. Without them the
        reserved peaks of the packaged vision training steps were 5.8 % off (VGG16 -22 %); with
        them 4.7 % (VGG16 about -2 %), their allocated peaks within 0.5 % either way.
        """
        if len(args) < 2:
            return
        if func.__name__ == "convolution_backward.default":
            if self.phase != "backward" or len(args) < 10:
                return
            other, x, w, groups = args[0], args[1], args[2], args[9]  # other: the output's gradient
            mask = args[10] if len(args) > 10 else (True, True, False)
            calls = int(bool(mask[0])) + int(bool(mask[1]))
        else:
            if self.phase != "forward":
                return
            gi = 8 if func.__name__.startswith("convolution") else 6
            other, x, w, groups = out, args[0], args[1], (args[gi] if len(args) > gi else 1)
            calls = 1
        nbytes = conv_workspace_bytes(x.numel() * x.element_size(), other.numel() * other.element_size(),
                                      groups=groups, kernel=tuple(w.shape[2:]), in_channels=int(x.shape[1]))
        for _ in range(calls if nbytes else 0):
            key = self._next
            self._next += 1
            self.trace.events.append(Event("alloc", key, int(nbytes), self.phase, "cudnn_workspace"))
            self.trace.events.append(Event("free", key, 0, self.phase))

    def accumulation(self, old, out) -> None:
        """Autograd sums two gradients for one input (``InputBuffer::accumulate``) in place, into the
        first, when it holds the last reference to it and its storage; for a tensor subclass, which fake
        tensors are, it adds out of place instead. So an ``add`` in the backward pass whose first
        operand's storage dies before the next operator (the buffer dropped it for the sum) is folded
        back: the sum takes over the first operand's block, and neither the add's allocation nor that
        free is recorded. An ``add`` whose first operand lives on was out of place for real too, and so
        was one whose first operand is a view: its base holds a second reference to the storage (the
        gradient of a weight used through ``t()``, as a linear layer's is, a bias's that ``sum_to``
        reshaped), so a weight shared by two layers, a recurrent layer's weights used at every step and
        tied embeddings get their gradients summed into a new block."""
        import torch

        if torch.is_grad_enabled() or not (isinstance(old, torch.Tensor) and isinstance(out, torch.Tensor)):
            return
        old_entry = self._live.get(old.untyped_storage()._cdata)
        new_ptr = out.untyped_storage()._cdata
        new_entry = self._live.get(new_ptr)
        if old_entry is None or new_entry is None or old_entry[0] <= 0 or new_entry[1] is None:
            return
        if old.untyped_storage().nbytes() != out.untyped_storage().nbytes() or old.dtype != out.dtype \
                or not old.is_contiguous() or old._is_view():
            return
        self.pending = (old.untyped_storage()._cdata, old_entry[0], new_ptr, new_entry[0])

    def _fold(self, ptr: int, key: int) -> bool:
        """The free of ``pending``'s first operand: the sum moves into its block (see :meth:`accumulation`)."""
        if self.pending is None or self.pending[:2] != (ptr, key):
            return False
        _, old_key, new_ptr, new_key = self.pending
        self.pending = None
        ev = self.trace.events
        for i in range(len(ev) - 1, max(-1, len(ev) - 16), -1):
            if ev[i].kind == "alloc" and ev[i].key == new_key:
                break
        else:
            return False
        st = self._live[new_ptr][1]()
        if st is None:
            return False
        del ev[i]
        del self._live[ptr]
        self._live[new_ptr] = (old_key, weakref.ref(st, self._freed(new_ptr, old_key)))
        return True

    def _freed(self, ptr: int, key: int):
        def cb(_ref) -> None:
            if self.closed:
                return
            if self._fold(ptr, key):
                return
            if self._live.get(ptr, (None,))[0] == key:
                del self._live[ptr]
                self.trace.events.append(Event("free", key, 0, self.phase))
        return cb


# ------------------------------------------------------------------ state
def _tdtype(dtype: str | None):
    import torch

    if dtype is None:
        return None
    if dtype not in _DTYPES:
        raise InvalidInputError(f"dtype must be one of {', '.join(_DTYPES)}; got {dtype!r}")
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]


def _build_order(module, tied: bool = False) -> list[tuple[str, Any, bool]]:
    """(kind, tensor, is_param) in the order construction allocated them; each storage once.

    With ``tied``, a parameter that a later module shares (tied weights: a language model's output
    projection bound to its input embedding) is listed again there as kind ``tied``: the module
    built a tensor of its own first, which was dropped when the weights were tied
    (``transformers`` ties in ``post_init``, after every module is built), so it occupied memory
    during construction and left a cached free block behind.
    """
    out: list[tuple[str, Any, bool]] = []
    seen: set[int] = set()
    for m in module.modules():
        for kind, items in (("param", m._parameters), ("buffer", m._buffers)):
            for t in items.values():
                if t is None:
                    continue
                if id(t) not in seen:
                    seen.add(id(t))
                    out.append((kind, t, kind == "param"))
                elif tied and kind == "param":
                    out.append(("tied", t, True))
    return out


def _apply_order(module) -> list:
    """The order ``Module._apply`` (``.half()``, ``.to()``) converts tensors: children first."""
    out: list = []
    seen: set[int] = set()

    def visit(m) -> None:
        for c in m.children():
            visit(c)
        for t in list(m._parameters.values()) + list(m._buffers.values()):
            if t is not None and id(t) not in seen:
                seen.add(id(t))
                out.append(t)
    visit(module)
    return out


def _state(module, tdt, training: bool):
    """Meta copies of the module's parameters and buffers (in ``tdt`` for floating ones), the
    events that built them, and the ``functional_call`` mapping."""
    import torch

    order = _build_order(module, tied=True)
    meta: dict[int, Any] = {}
    events: list[Event] = []
    key = -1
    keys: dict[int, int] = {}
    dropped: list[int] = []
    for kind, t, is_param in order:
        if kind == "tied":  # the module's own tensor, built and then replaced by the shared one
            events.append(Event("alloc", key, t.numel() * t.element_size(), "weights", "build (tied later)"))
            dropped.append(key)
            key -= 1
            continue
        target = tdt if (tdt is not None and t.is_floating_point()) else t.dtype
        m = torch.empty(t.shape, dtype=target, device=_DEV)
        if is_param and training and t.requires_grad:
            m.requires_grad_(True)
        meta[id(t)] = m
        nbytes = t.numel() * t.element_size()
        keys[id(t)] = key
        events.append(Event("alloc", key, nbytes, "weights", "build"))
        key -= 1
    events.extend(Event("free", k, 0, "weights") for k in dropped)  # tied after construction
    order = [o for o in order if o[0] != "tied"]
    if tdt is not None:  # model.half() / .bfloat16() / .float(): each converted copy, then the original freed
        for t in _apply_order(module):
            if t.is_floating_point() and t.dtype != tdt:
                events.append(Event("alloc", key, meta[id(t)].numel() * meta[id(t)].element_size(), "weights",
                                    "convert"))
                events.append(Event("free", keys[id(t)], 0, "weights"))
                key -= 1
    mapping: dict[str, Any] = {}
    for name, t in module.named_parameters(remove_duplicate=False):
        mapping[name] = meta[id(t)]
    for name, t in module.named_buffers(remove_duplicate=False):
        mapping[name] = meta[id(t)]
    state_bytes = sum(m.numel() * m.element_size() for m in meta.values())
    params = [meta[id(t)] for _, t, p in order if p and meta[id(t)].requires_grad]
    return mapping, events, state_bytes, params, key


def _meta_inputs(inputs, tdt):
    import torch
    from torch.utils._pytree import tree_map

    def conv(x):
        if isinstance(x, torch.Tensor):
            dt = tdt if (tdt is not None and x.is_floating_point()) else x.dtype
            return torch.empty(x.shape, dtype=dt, device=_DEV)
        return x
    return tree_map(conv, inputs)


def _input_events(inputs, key: int) -> tuple[list[Event], int, int]:
    import torch
    from torch.utils._pytree import tree_leaves

    events, total = [], 0
    for x in tree_leaves(inputs):
        if isinstance(x, torch.Tensor):
            n = x.numel() * x.element_size()
            events.append(Event("alloc", key, n, "input", "input"))
            total += n
            key -= 1
    return events, total, key


# --------------------------------------------------------------- the step
@contextlib.contextmanager
def _eager():
    """Optimizers pick other kernels while a ``torch.compile`` is tracing (the compile backend calls
    the trace from inside one); the step measured is the eager one."""
    import torch

    orig = torch.compiler.is_compiling
    torch.compiler.is_compiling = lambda: False
    try:
        yield
    finally:
        torch.compiler.is_compiling = orig


def check_optimizer(name: str) -> str:
    """The optimizer's name in the IR vocabulary (``momentum`` -> ``sgd_momentum``), or an error listing them."""
    name = "sgd_momentum" if name == "momentum" else name
    if name not in OPTIMIZERS:
        raise InvalidInputError(f"unknown optimizer {name!r}; the allocation trace knows {', '.join(OPTIMIZERS)}")
    return name


def _optimizer(name: str, params):
    import torch

    name = check_optimizer(name)
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01, foreach=True)
    if name == "sgd_momentum":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9, foreach=True)
    if name == "adam":
        return torch.optim.Adam(params, foreach=True)
    return torch.optim.AdamW(params, foreach=True)


def _logits(out):
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, Mapping):
        return next(iter(out.values()))
    if isinstance(out, (tuple, list)):
        return out[0]
    return out


def _call(module, mapping, inputs):
    from torch.func import functional_call

    if isinstance(inputs, Mapping):
        return functional_call(module, mapping, (), dict(inputs))
    if not isinstance(inputs, tuple):
        inputs = (inputs,)
    return functional_call(module, mapping, inputs)


@contextlib.contextmanager
def _mode(module, training: bool):
    was = module.training
    module.train(training)
    try:
        yield
    finally:
        module.train(was)


def trace_module(module, inputs, *, training: bool = False, dtype: str | None = None, optimizer: str = "adam",
                 steps: int | None = None, target: str = "cuda", autocast: str | None = None) -> AllocationTrace:
    """The allocation trace of ``module`` on ``inputs`` under the data protocol.

    Args:
        module: any ``nn.Module`` (on any device; it is not modified or run on data).
        inputs: a tensor, a tuple of positional tensors, or a dict of keyword tensors
            (only shapes and dtypes are used).
        training: one ``zero_grad`` / forward / cross-entropy / backward / optimizer step per
            step (two steps by default, since the second holds the optimizer state from its
            start); otherwise inference under ``torch.inference_mode`` (one call).
        dtype: convert the model and floating inputs (``fp16``/``bf16`` replay ``model.half()``).
        optimizer: ``sgd``, ``sgd_momentum`` (or ``momentum``), ``adam`` or ``adamw``.
        target: ``cuda`` (a GPU's fused attention and cuDNN workspace) or ``cpu`` (PyTorch's CPU kernels).
        autocast: ``fp16`` or ``bf16``: mixed precision, the forward pass and the loss under
            ``torch.autocast`` to that dtype (the weights stay as they are, fp32 in the usual
            recipe; the backward pass runs outside it, as PyTorch's recipe has it). ``None``: off.
    """
    tdt = _tdtype(dtype)
    _check_target(target)
    amp = check_autocast(autocast)
    if training:
        optimizer = check_optimizer(optimizer)
    steps = steps or (2 if training else 1)
    # a module that caches tensors as plain attributes (a detector's anchors) keeps its own, not fakes
    with _exclusive(), preserved_tensor_attributes(module), _fake():
        return _trace_module(module, inputs, training, tdt, optimizer, steps, target, amp)


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise InvalidInputError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")


@contextlib.contextmanager
def _kernels(target: str):
    """The kernels of ``target``: the fused CUDA attention and cuDNN's RNN call (its reserve space and
    workspace), or what PyTorch picks for CPU tensors (its unrolled RNN steps)."""
    with (cuda_attention() if target == "cuda" else contextlib.nullcontext()), \
            cudnn_rnn_kernels("call" if target == "cuda" else None):
        yield


def _prologue(module, tdt, training: bool, inputs):
    """The trace up to the step: the weights as built (and converted), the cache emptied, the
    library workspace, the inputs, the peak counters reset. Returns ``(trace, mapping, params)``."""
    trace = AllocationTrace()
    mapping, events, state_bytes, params, key = _state(module, tdt, training)
    trace.extend(events)
    trace.events.append(Event("empty_cache"))
    trace.events.append(Event("workspace", key, 0, "workspace", "library"))
    ev, in_bytes, _ = _input_events(inputs, key - 1)
    trace.extend(ev)
    trace.state_bytes = state_bytes + in_bytes
    trace.events.append(Event("reset_peak"))
    return trace, mapping, params


def _trace_module(module, inputs, training, tdt, optimizer, steps, target, amp=None) -> AllocationTrace:
    x = _meta_inputs(inputs, tdt)
    trace, mapping, params = _prologue(module, tdt, training, x)
    rec = _Recorder(trace, target)
    rec.hold((list(mapping.values()), x))
    run_step(module, mapping, x, training=training, params=params, optimizer=optimizer, steps=steps, rec=rec,
             target=target, autocast=amp)
    rec.finish()
    return trace


def run_step(module, mapping, x, *, training: bool, params, optimizer: str, steps: int, rec=None,
             target: str = "cuda", autocast: str | None = None) -> None:
    """The step of the data protocol on ``module`` with the tensors of ``mapping`` (``functional_call``):
    ``steps`` inference calls under ``torch.inference_mode``, or training steps with ``params``.
    With a recorder the tensors are fake and it records; without one the step runs on real tensors
    (:mod:`costmodel.analysis.allocheck` measures that one)."""
    import torch

    with _kernels(target), _mode(module, training):
        if not training:
            with torch.inference_mode(), (rec.mode if rec is not None else contextlib.nullcontext()):
                for _ in range(steps):
                    with autocast_to(autocast, _DEV):
                        _call(module, mapping, x)
        else:
            _train(module, mapping, x, params, optimizer, steps, rec, autocast)


class _NoRecorder:
    """Where a step runs on real tensors: the phase bookkeeping of a recorder, recording nothing."""

    phase = "forward"
    skip_scalars = False
    optimizer_scalars_on_host = False
    mode = contextlib.nullcontext()


def _train(module, mapping, x, params, optimizer: str, steps: int, rec, amp: str | None = None) -> None:
    import torch

    if not params:
        raise InvalidInputError("a training trace needs parameters that require gradients; the module has none")
    rec = rec if rec is not None else _NoRecorder()
    opt = _optimizer(optimizer, params)
    labels = None
    # the mapping's tensors stay in the module through the backward pass: activation checkpointing
    # recomputes blocks there, and they must use the same parameters (and update their gradients); a
    # transformers model given one sequence per row skips its attention mask, as it does on real tensors
    with _eager(), unpadded_sequences(), rec.mode, reparametrized(module, mapping):
        for _ in range(steps):
            rec.phase = "forward"
            opt.zero_grad(set_to_none=True)
            with autocast_to(amp, _DEV):  # leaving it frees its cache of cast weights (autograd keeps what it saved)
                out = direct_call(module, x)
                loss = _own_loss(out)  # a language model given labels computes its own (a fine-tuning step)
                if loss is None:
                    logits = _logits(out)
                    del out
                    if labels is None:
                        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=_DEV)
                    if logits.dim() > 2:  # token logits: (batch, seq, vocab)
                        logits = logits.flatten(0, -2)
                        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=_DEV)
                    # one score per sample (a regression head): summed, as a loss over it would reduce it
                    loss = (torch.nn.functional.cross_entropy(logits, labels) if logits.dim() == 2
                            else logits.sum())
                    del logits
                else:  # the output (its logits) is dropped before the backward pass, as a training loop does
                    del out
            rec.phase = "backward"
            loss.backward()
            del loss
            rec.phase = "optimizer"
            rec.skip_scalars = rec.optimizer_scalars_on_host
            opt.step()
            rec.skip_scalars = False


def _own_loss(out):
    """The scalar loss a model returned itself, or ``None``: ``transformers`` models given ``labels`` (a
    ``loss`` field), a module whose output is a scalar, or one that returns ``(loss, ...)``."""
    import torch

    if isinstance(out, torch.Tensor):
        loss = out
    elif isinstance(out, (tuple, list)):
        loss = out[0] if out else None
    else:
        loss = out.get("loss") if isinstance(out, Mapping) else getattr(out, "loss", None)
    return loss if isinstance(loss, torch.Tensor) and loss.dim() == 0 else None


# ---------------------------------------------------------- transformers
def trace_decoder(model, *, batch: int, seq: int, phase: str, dtype: str | None = None, causal: bool = True,
                  decode_tokens: int = 8, warmup: int = 3, target: str = "cuda",
                  target_seq: int | None = None) -> AllocationTrace:
    """The allocation trace of a transformers model under the data protocol, on ``(batch, seq)`` tokens
    (an encoder-decoder's decoder on ``target_seq`` of them, default ``seq``).

    ``phase``: ``forward`` / ``prefill`` (one call, no cache kept) or ``decode``: a prefill that
    keeps its KV cache, ``warmup`` one-token steps, the cache dropped, a fresh prefill, then
    ``decode_tokens`` steps, each appending to the cache (the peak is usually the prefill's logits
    or the last step's cache). ``target`` as for :func:`trace_module`.
    """
    _check_target(target)
    if phase not in ("forward", "prefill", "decode"):
        raise InvalidInputError(f"phase must be one of forward, prefill, decode; got {phase!r}")
    cfg = getattr(model, "config", None)
    if phase == "decode" and not causal and not getattr(cfg, "is_encoder_decoder", False):
        raise InvalidInputError("a decode step needs a decoder; this model is built as an encoder")
    from ..frontends.hf import check_target_seq

    check_target_seq(target_seq, getattr(cfg, "model_type", None) or type(model).__name__,
                     bool(getattr(cfg, "is_encoder_decoder", False)))
    with _exclusive(), _fake():
        return _trace_decoder(model, batch, seq, phase, _tdtype(dtype), causal, decode_tokens, warmup, target,
                              target_seq)


def _decode_rounds(model, mapping, rec, trace, ids, batch, decode_tokens, warmup, target_seq=None) -> tuple[int, int]:
    """Record one decode round (prefill keeping its cache, then the steps); returns where the round
    starts in ``trace.events`` and where the first round (prefill + ``warmup`` steps) ends.

    The protocol runs two rounds: prefill + ``warmup`` steps, the cache dropped, then prefill +
    ``decode_tokens`` steps. The first round is a prefix of the second (the same operators on the
    same shapes), so one round is traced and the first is replayed from its prefix.
    """
    import torch

    from ..frontends.hf import prefill_kwargs, prefilled, step_kwargs

    tok = torch.zeros((batch, 1), dtype=torch.long, device=_DEV)
    start = len(trace.events)
    rec.phase = "prefill"
    cache, enc = prefilled(_call(model, mapping, prefill_kwargs(model, ids, target_seq)))  # its logits dropped
    rec.phase = "decode"
    cut = len(trace.events)
    for i in range(max(decode_tokens, warmup)):
        _call(model, mapping, step_kwargs(model, tok, cache, enc))
        if i + 1 == warmup:
            cut = len(trace.events)
    del cache, enc
    return start, cut


def run_forward(model, mapping, ids, *, causal: bool, rec=None, target: str = "cuda",
                target_seq: int | None = None) -> None:
    """One forward (or prefill) call of a transformers model on token ``ids``, without a KV cache, as
    :func:`trace_decoder` records it (an encoder-decoder's decoder on ``target_seq`` tokens); without a
    recorder it runs on real tensors."""
    import torch

    from ..frontends.hf import seq2seq_inputs

    kw = {"use_cache": False} if causal else {}
    with _kernels(target), unpadded_sequences(), _mode(model, False), torch.inference_mode(), \
            (rec.mode if rec is not None else contextlib.nullcontext()):
        _call(model, mapping, {"input_ids": ids, **seq2seq_inputs(model, ids, target_seq), **kw})


def _trace_decoder(model, batch, seq, phase, tdt, causal, decode_tokens, warmup, target, target_seq=None):
    import torch

    ids = torch.zeros((batch, seq), dtype=torch.long, device=_DEV)
    trace, mapping, _ = _prologue(model, tdt, False, (ids,))
    rec = _Recorder(trace, target)
    rec.hold((list(mapping.values()), ids))
    if phase != "decode":
        run_forward(model, mapping, ids, causal=causal, rec=rec, target=target, target_seq=target_seq)
        rec.finish()
        return trace
    with _kernels(target), unpadded_sequences(), _mode(model, False), torch.inference_mode(), rec.mode:
        start, cut = _decode_rounds(model, mapping, rec, trace, ids, batch, decode_tokens, warmup, target_seq)
    rec.finish()
    round2 = trace.events[start:]
    del trace.events[start:]
    first = round2[:cut - start]
    live: dict[int, None] = {}
    for e in first:
        if e.kind == "alloc":
            live[e.key] = None
        elif e.kind == "free":
            live.pop(e.key, None)
    trace.extend(first)
    trace.extend(Event("free", k, 0, "decode") for k in live)  # the first cache dropped
    trace.extend(round2)
    return trace
