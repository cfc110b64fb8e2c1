"""A ``torch.compile`` backend that estimates every graph it compiles and warns before an OOM.

    model = torch.compile(model, backend="costmodel")                       # defaults: h100, inductor
    model = torch.compile(model, backend=costmodel.torch_backend(device="a100-40gb", memory_limit_mb=20_000))

For each FX graph Dynamo hands over (several when the model has graph
breaks) the backend builds the CostGraph from the graph and its example
inputs (shapes only: the trace runs on meta tensors), predicts latency and
memory, and when the predicted memory exceeds the device (or
``memory_limit_mb``) issues a :class:`costmodel.OOMWarning` naming predicted
and available memory and the largest batch that would fit, by the predicted
memory and by the upper end of its 90 % interval.  When the memory fits but
that upper end does not, it issues a :class:`costmodel.OOMRiskWarning` (a
subclass) with the largest batch whose upper end fits.  Then the graph
goes to the inner backend (``"inductor"``, ``"eager"``, any registered name
or callable).  The cost model never breaks a compile: any failure of its own
becomes a ``RuntimeWarning`` and the graph passes through unchanged.  Its
warnings (the OOM warning, that RuntimeWarning, and those featurizing the
graph raised) are issued so that they cannot raise into the compile: where
the user's warning filters turn them into exceptions
(``warnings.simplefilter("error")``, ``-W error``), they are logged instead
(logger ``costmodel.compile``, level WARNING, which reaches stderr even
without logging configured) and the compile goes on.

When gradients are enabled and the graph has trainable parameters, the
estimate is for a training step (forward + backward + optimizer).
Memory is the graph's allocation trace (the FX graph run on fake tensors,
its parameters held as module state) replayed through the CUDA caching
allocator, plus the device's context (:mod:`costmodel.analysis.memreplay`).
The batch is the leading dimension of the first non-parameter input; the
largest batch that fits is a search over the same replay at smaller
batches (:func:`costmodel.largest_batch`'s). A graph compiled for a symbolic batch (``dynamic=True``,
or Dynamo's automatic dynamic shapes) runs later batches without a new compile, so each of its calls
checks its batch against a line through two replays (:class:`BatchGuard`). Where the graph fixes its
batch inside (a reshape to a constant), it falls back to memory = fixed part + per-sample part, the fixed part being
the weights (and their gradients and optimizer state when training) plus
the framework's overhead.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Callable

from .._errors import OOMRiskWarning, OOMWarning
from ._held import Held, HeldState, _output_mb

log = logging.getLogger("costmodel.compile")


def _warn(message, category=UserWarning, stacklevel: int = 3) -> None:
    """``warnings.warn`` that cannot raise: when a filter turns the warning into an exception (or a
    ``showwarning`` hook fails), the message is logged at WARNING level instead."""
    try:
        warnings.warn(message, category, stacklevel=stacklevel)
    except Exception:  # noqa: BLE001 - the warning must not break the user's compile
        name = category.__name__ if isinstance(category, type) else type(message).__name__
        log.warning("%s: %s", name, message)


def _state_kinds(gm, example_inputs) -> list[str | None]:
    """Which graph inputs are parameters (``"param"``) or buffers (``"buffer"``); ``None`` for data.
    Dynamo lifts module state into graph inputs and names them after it."""
    import torch

    names = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    kinds: list[str | None] = []
    for i, t in enumerate(example_inputs):
        name = names[i] if i < len(names) else ""
        if isinstance(t, torch.nn.Parameter) or "_parameters_" in name:
            kinds.append("param")
        elif "_buffers_" in name:
            kinds.append("buffer")
        else:
            kinds.append(None)
    return kinds


def _batch_symbol(gm, kinds) -> int | None:
    """Under dynamic shapes (``dynamic=True``, or Dynamo's automatic dynamic shapes after a second batch) the
    position, among the data inputs, of the integer input that is the batch: the symbol that is the leading
    dimension of the first data tensor; ``None`` where that dimension is static."""
    import torch

    data = [n for n, k in zip([n for n in gm.graph.nodes if n.op == "placeholder"], kinds) if k is None]
    values = [n.meta.get("example_value") for n in data]
    first = next((v for v in values if isinstance(v, torch.Tensor) and v.dim() > 0), None)
    if first is None or not isinstance(first.shape[0], torch.SymInt):
        return None
    lead = str(first.shape[0])
    return next((i for i, v in enumerate(values) if isinstance(v, torch.SymInt) and str(v) == lead), None)


class _LiftedFloat(float):
    """A module's scalar attribute that ``dynamic=True`` lifted into a 0-d tensor input (a batch norm's
    ``eps`` and ``momentum``): the graph reads it with ``.item()``, which a meta tensor cannot answer."""

    def item(self):
        return float(self)


class _LiftedInt(int):
    """The integer kind of :class:`_LiftedFloat`."""

    def item(self):
        return int(self)


def _batch_input(kinds, at: int | None) -> int | None:
    """The data input ``at`` (:func:`_batch_symbol`) as a position among all the graph's inputs (what the
    compiled code is called with)."""
    return None if at is None else [i for i, k in enumerate(kinds) if k is None][at]


def _concrete(t):
    """A data input as the trace takes it: a tensor as an empty meta tensor of its shape, a 0-d tensor
    with a value as that value (:class:`_LiftedFloat`), a symbolic size as the int it stands for here."""
    import torch

    if isinstance(t, torch.SymInt):
        return int(t.node.hint)
    if isinstance(t, torch.Tensor):
        if t.dim() == 0 and t.device.type != "meta" and not t.is_complex():
            try:
                value = t.item()
            except Exception:  # noqa: BLE001 - a fake tensor without a value: shapes are what is left
                value = None
            if isinstance(value, (bool, int)):
                return _LiftedInt(value)
            if isinstance(value, float):
                return _LiftedFloat(value)
        return torch.empty(t.shape, dtype=t.dtype, device="meta")
    return t


def _module_with_state(gm, example_inputs, kinds, batch_at: int | None = None):
    """``gm`` wrapped so that lifted parameters/buffers are module state again (weights, gradients and
    optimizer state are then counted as such), on the meta device; called with the data inputs only.
    ``batch_at``: the data input that is the batch's symbol (:func:`_batch_symbol`), set from the first
    data tensor's leading dimension at each call, so that a re-trace at another batch keeps the two equal."""
    import torch
    from torch import nn

    class Lifted(nn.Module):
        def __init__(self):
            super().__init__()
            self.gm = gm
            # parameters as parameters (a frozen one keeps requires_grad=False), buffers as buffers, each
            # named after its graph input's position
            for i, (t, kind) in enumerate(zip(example_inputs, kinds)):
                if kind == "param":
                    self.register_parameter(f"state_{i}", nn.Parameter(
                        torch.empty(t.shape, dtype=t.dtype, device="meta"), requires_grad=bool(t.requires_grad)))
                elif kind == "buffer":
                    self.register_buffer(f"state_{i}", torch.empty(t.shape, dtype=t.dtype, device="meta"))

        def forward(self, *data):
            from ..frontends import meta_tensor_attributes

            if batch_at is not None:
                lead = next(t for t in data if isinstance(t, torch.Tensor) and t.dim() > 0).shape[0]
                data = tuple(int(lead) if i == batch_at else t for i, t in enumerate(data))
            rest = iter(data)
            # the graph's own constants (a detector's anchors) as meta tensors while it is traced
            with meta_tensor_attributes(self.gm):
                return self.gm(*[getattr(self, f"state_{i}") if kind is not None else next(rest)
                                 for i, kind in enumerate(kinds)])

    return Lifted()


def estimate_fx(gm, example_inputs, *, device="h100", predictor=None, training: bool | None = None):
    """Estimate of one FX graph with its example inputs (what the backend does before compiling);
    returns ``(Estimate, batch)``. Memory comes from the graph's allocation trace replayed through
    the caching allocator (``details["memory"]`` says so)."""
    est, batch, _ = _estimate_fx(gm, example_inputs, device=device, predictor=predictor, training=training)
    return est, batch


def ambient_autocast() -> str | None:
    """The dtype of the ``torch.autocast`` region the compiled code is called in (CUDA's, else the
    CPU's), or ``None``: the graph dynamo hands over is the model's own, and autocast runs it."""
    import torch

    names = {torch.float16: "fp16", torch.bfloat16: "bf16"}
    for device in ("cuda", "cpu"):
        try:
            if torch.is_autocast_enabled(device):
                return names.get(torch.get_autocast_dtype(device))
        except (RuntimeError, TypeError):  # a build without that device type
            continue
    return None


def _gradient_step(gm, kinds) -> bool:
    """Whether the graph is an optimizer step (``torch.compile(optimizer.step)``): every data tensor it
    takes is a gradient (Dynamo names an input read from ``.grad`` after it, ending ``_grad``), and it holds
    parameters to update."""
    import torch

    names = [n for n in gm.graph.nodes if n.op == "placeholder"]
    data = [n.name for n, k in zip(names, kinds) if k is None
            and isinstance(n.meta.get("example_value"), torch.Tensor)]
    has_state = any(k is not None for k in kinds) or next(iter(gm.parameters()), None) is not None
    return bool(data) and has_state and all(name.endswith("_grad") for name in data)


def _estimate_fx(gm, example_inputs, *, device, predictor, training, cuda_graphs: bool = False):
    """``(Estimate, batch, (module, meta inputs))``: the last is what a re-trace at another batch needs."""
    import torch

    from ..devices import get_device
    from ..estimate import estimate
    from ..estimate import replay_into
    from ..frontends import from_torch

    kinds = _state_kinds(gm, example_inputs)
    flags = [k is not None for k in kinds]
    data = [t for t, f in zip(example_inputs, flags) if not f]
    state = [t for t, f in zip(example_inputs, flags) if f] + list(gm.parameters())
    step = _gradient_step(gm, kinds)
    if training is None:
        training = torch.is_grad_enabled() and any(getattr(p, "requires_grad", False) for p in state)
    mode = "training" if training else "inference"
    # an optimizer step's inputs are gradients, shaped as its parameters: it has no batch
    batch = 1 if step else next((int(t.shape[0]) for t in data if isinstance(t, torch.Tensor) and t.dim() > 0), 1)
    meta_inputs = tuple(_concrete(t) for t in data)
    at = _batch_symbol(gm, kinds)
    module = _module_with_state(gm, example_inputs, kinds, at)
    module.batch_input = None if step else _batch_input(kinds, at)
    module.gradient_step = step
    # what stays allocated after this graph ran: its parameters and buffers (an optimizer step's moments
    # are counted by the training estimate of the graph that owns the parameters)
    module.held_state = state if step else state + list(gm.buffers())
    g = from_torch(module, inputs=meta_inputs, mode=mode, method="trace", name="compiled graph")
    g.meta["batch"] = batch
    amp = ambient_autocast()
    if amp is not None and g.meta.get("dtype", "fp32") != "fp32":
        amp = None  # a half-precision model under autocast: its own dtypes are what runs
    est = estimate(g, batch=batch, device=device, mode=mode, predictor=predictor, autocast=amp,
                   cuda_graphs=cuda_graphs)
    # the module's own dtype (its parameters', else its first floating input's), as the graph recorded it: the
    # replay converts the module to the dtype it is given
    replay_into(est, module, get_device(device), batch=batch, mode=mode, dtype=est.dtype, optimizer="adam",
                inputs=meta_inputs, graph=g, autocast=amp)
    return est, batch, (module, meta_inputs)


def largest_batch_replayed(est, batch: int, limit_mb: float, device, traced, per_sample_mb: float = 0.0
                           ) -> dict | None:
    """The largest batches under ``limit_mb`` by the replayed memory and by its interval's upper end
    (:func:`costmodel.estimate.fit_answer`'s dict): a search over the allocation trace at smaller
    batches (``traced`` = the module and inputs, re-run on fake tensors), or ``None`` when the memory did
    not come from a replay or the graph does not take another batch (shapes fixed inside it).
    ``per_sample_mb``: memory outside this graph that grows with the batch too (the activations earlier
    graphs of a training step keep for their backward pass), added at each batch searched."""
    import dataclasses

    from ..analysis.memreplay import replay_memory
    from ..estimate import fit_answer, rebatch_inputs

    module, inputs = traced
    if est.details.get("memory", {}).get("path") != "replay":
        return None

    def replay_at(b: int):
        r = replay_memory(module, device, batch=b, mode=est.mode, dtype=est.dtype,
                          inputs=rebatch_inputs(inputs, batch, b), autocast=est.details.get("autocast"))
        if per_sample_mb <= 0:
            return r
        more = per_sample_mb * b
        return dataclasses.replace(r, memory_mb=r.memory_mb + more, interval_mb=None if r.interval_mb is None
                                   else (r.interval_mb[0] + more, r.interval_mb[1] + more))

    try:
        return fit_answer(replay_at, limit_mb, batch, f"{limit_mb:,.0f} MB")
    except Exception:  # noqa: BLE001 - a graph with the batch baked into its shapes
        return None


def memory_line(est, batch: int, device, traced) -> tuple[float, float, float, int] | None:
    """``(fixed MB, MB per sample, upper end / memory)`` of a graph compiled with a symbolic batch: a
    line through the replayed memory at its batch and at a larger one (:data:`LINE_BATCH`, twice the
    batch, or one :data:`LINE_SPAN_MB` away), far enough apart that the allocator's 2 MiB and 20 MiB
    segments do not hide the slope
    (activations grow with the batch, weights and optimizer state do not), so that each later call's
    batch can be checked without a trace (a replay of fake tensors costs the same at any batch).
    ``None`` where the memory did not come from a replay or the second replay fails."""
    from ..analysis.memreplay import replay_memory
    from ..estimate import rebatch_inputs

    if est.details.get("memory", {}).get("path") != "replay" or est.memory_mb is None:
        return None
    module, inputs = traced

    def replay_at(b: int) -> float:
        return replay_memory(module, device, batch=b, mode=est.mode, dtype=est.dtype,
                             inputs=rebatch_inputs(inputs, batch, b), autocast=est.details.get("autocast")).memory_mb

    far = max(2 * batch, LINE_BATCH)
    try:
        at_far = replay_at(far)
        per_sample = max((at_far - est.memory_mb) / (far - batch), 0.0)
        if 0 < per_sample * (far - batch) < LINE_SPAN_MB:  # small activations: a span the segments cannot hide
            far = batch + math.ceil(LINE_SPAN_MB / per_sample)
            at_far = replay_at(far)
            per_sample = max((at_far - est.memory_mb) / (far - batch), 0.0)
    except Exception:  # noqa: BLE001 - a graph with the batch baked into its shapes
        return None
    upper = est.memory_mb_interval[1] / est.memory_mb if est.memory_mb_interval else 1.0
    return est.memory_mb - per_sample * batch, per_sample, upper, far


#: the second batch :func:`memory_line` replays (at least; twice the compiled batch where that is more), and
#: the memory (MB) the two replays should span at least: where the activations of the first two differ by
#: less, a third replay at a batch that spans it sets the slope (a 20 MiB segment is then 2 % of it)
LINE_BATCH = 256
LINE_SPAN_MB = 1024.0


class BatchGuard:
    """The OOM check of a graph compiled with a symbolic batch, at every call: Dynamo compiles such a
    graph once (``dynamic=True``, or its automatic dynamic shapes after a second batch) and later batches
    run it without a new compile, so without this the check would cover the first batch only. Each call
    reads the batch (an ``int`` input) and, the first time a batch is seen above what fits, warns with
    the memory :func:`memory_line` gives it; a call costs a comparison."""

    def __init__(self, line: tuple[float, float, float, int], limit_mb: float, device_name: str, mode: str):
        self.fixed_mb, self.per_sample_mb, self.upper_ratio, _ = line
        self.limit_mb = limit_mb
        self.device_name = device_name
        self.mode = mode
        # the largest batch under the limit by the line, and by its upper end; calls above are checked
        room = limit_mb - self.fixed_mb
        self.fits = math.inf if self.per_sample_mb <= 0 else max(0, math.floor(room / self.per_sample_mb))
        safe_room = limit_mb / self.upper_ratio - self.fixed_mb
        self.safe = math.inf if self.per_sample_mb <= 0 else max(0, math.floor(safe_room / self.per_sample_mb))
        self.warned: set[int] = set()

    def memory_mb(self, batch: int) -> float:
        return self.fixed_mb + self.per_sample_mb * batch

    def check(self, batch) -> None:
        try:
            b = int(batch)
        except (TypeError, ValueError):
            return
        if b <= self.safe or b in self.warned:
            return
        self.warned.add(b)
        mem = self.memory_mb(b)
        head = (f"costmodel: this graph, compiled for a dynamic batch, is now called at batch {b} ({self.mode}), "
                f"predicted to need {mem:,.0f} MB on {self.device_name}")
        if b > self.fits:
            _warn(OOMWarning(f"{head}, but {self.limit_mb:,.0f} MB are available; the largest batch whose 90 % "
                             f"interval's upper end fits is {self.safe:,}, and the largest batch predicted to fit "
                             f"is {self.fits:,}"), OOMWarning, stacklevel=4)
        else:
            _warn(OOMRiskWarning(f"{head}, within the {self.limit_mb:,.0f} MB available, but the upper end of its "
                                 f"90 % interval is {mem * self.upper_ratio:,.0f} MB, so it may run out of memory; "
                                 f"the largest batch whose upper end fits is {self.safe:,}"), OOMRiskWarning,
                  stacklevel=4)

    def wrap(self, compiled: Callable, at: int) -> Callable:
        """``compiled`` (Dynamo calls it with the graph's inputs, ``at`` the batch's) checking each call
        first."""
        def run(*args):
            self.check(args[at])
            return compiled(*args)

        run.batch_guard = self  # type: ignore[attr-defined]
        return run


def unfollowed_sizes(gm, example_inputs, batch_at: int | None) -> list[tuple[int, int, str]]:
    """The symbolic sizes the out-of-memory check does not follow (all but the batch: a sequence length):
    ``(position among the graph's inputs, value compiled at, what it is)``."""
    import torch

    nodes = [n for n in gm.graph.nodes if n.op == "placeholder"]
    where: dict[str, str] = {}
    for n in nodes:
        v = n.meta.get("example_value")
        if isinstance(v, torch.Tensor):
            for d, size in enumerate(v.shape):
                if isinstance(size, torch.SymInt):
                    where.setdefault(str(size), f"dim {d} of {n.name}")
    out = []
    for i, t in enumerate(example_inputs):
        if isinstance(t, torch.SymInt) and i != batch_at and t.node.hint is not None and str(t) in where:
            out.append((i, int(t.node.hint), f"{where[str(t)]} ({t})"))
    return out


def watch_sizes(compiled: Callable, sizes: list[tuple[int, int, str]]) -> Callable:
    """``compiled`` warning once per size the first time a call passes one of ``sizes``
    (:func:`unfollowed_sizes`) above what the graph was compiled and checked at: its memory there is not
    checked."""
    warned: set[int] = set()

    def run(*args):
        for i, at, what in sizes:
            if i not in warned and isinstance(args[i], int) and args[i] > at:
                warned.add(i)
                _warn(f"costmodel: this graph was compiled with a symbolic {what} of {at:,}, and is now called with "
                      f"{args[i]:,}: its memory was checked at {at:,} only (the out-of-memory check follows the batch "
                      "alone), so a call this size is not checked; estimate the model at this size to check it",
                      UserWarning, stacklevel=3)
        return compiled(*args)

    return run


def _call_checks(gm, example_inputs, est, batch: int, traced, dev, limit_mb: float, held: Held):
    """``(guard, sizes, notes)``: the checks each call of a graph with symbolic sizes makes (the batch's
    :class:`BatchGuard` with the input it reads, or ``None``; the sizes :func:`watch_sizes` watches), and
    what the estimate says of them and of an optimizer step."""
    notes, guard = [], None
    at = traced[0].batch_input
    if at is not None:
        line = memory_line(est, batch, dev, traced)
        if line is not None:
            # the other graphs' state stays allocated; the activations earlier graphs saved grow with the batch
            line = (line[0] + held.mb, line[1] + held.saved_per_sample_mb, *line[2:])
            guard = (BatchGuard(line, limit_mb, dev.name, est.mode), at)
            notes.append(f"compiled for a dynamic batch: each call's batch is checked against "
                         f"{limit_mb:,.0f} MB by {line[1]:.3g} MB per sample over {line[0]:,.0f} MB "
                         + (f"({held.mb:,.0f} MB of it the other compiled graphs' state) " if held.mb else "")
                         + (f"({held.saved_per_sample_mb:.3g} MB per sample of it the activations earlier graphs "
                            "saved for their backward pass) " if held.saved_per_sample_mb else "")
                         + f"(the replays at batch {batch} and {line[3]})")
        else:
            notes.append("compiled for a dynamic batch, but its memory at another batch could not be "
                         f"replayed: the out-of-memory check covers batch {batch} only")
    if traced[0].gradient_step:
        notes.append("an optimizer step (its data inputs are gradients): costed as one pass over the "
                     "parameters, their gradients and the optimizer's state, with no batch")
    sizes = unfollowed_sizes(gm, example_inputs, at)
    if sizes:
        notes.append("compiled with symbolic sizes the out-of-memory check does not follow, costed at the "
                     "size compiled at: " + ", ".join(f"{w} = {v:,}" for _, v, w in sizes)
                     + "; a call above that size warns that it is not checked")
    return guard, sizes, notes


def largest_batch(est, batch: int, limit_mb: float, device, *, memory_mb: float | None = None) -> int:
    """Largest batch under ``limit_mb`` if memory grows linearly with the batch beyond a fixed part
    (``memory_mb``: the batch's memory to scale, default the estimate's)."""
    from ..devices import get_device

    dev = get_device(device)
    mem = est.details.get("memory_breakdown_mb") or {}
    weights_mb = float(mem.get("weights_mb", 0.0))
    fixed = dev.framework_overhead_mb + weights_mb + float(mem.get("gradients_mb", 0.0)) + float(
        mem.get("optimizer_mb", 0.0))
    total = est.memory_mb if memory_mb is None else memory_mb
    per_sample = max((total - fixed) / max(batch, 1), 1e-6)
    return max(0, int(math.floor((limit_mb - fixed) / per_sample)))


def _fits(est, batch: int, limit_mb: float, dev, traced, per_sample_mb: float = 0.0) -> tuple[int, int | None]:
    """The largest batch that fits by the memory, and by its interval's upper end (``None`` without one);
    ``per_sample_mb``: memory outside the graph that grows with the batch (:func:`largest_batch_replayed`)."""
    upper = est.memory_mb_interval[1] if est.memory_mb_interval else None
    fit = largest_batch_replayed(est, batch, limit_mb, dev, traced, per_sample_mb)
    if fit is not None:
        return fit["batch"], fit["upper_batch"] if upper is not None else None
    return (largest_batch(est, batch, limit_mb, dev),
            largest_batch(est, batch, limit_mb, dev, memory_mb=upper) if upper is not None else None)


def _oom_warning(est, batch: int, limit_mb: float, dev, traced, held: Held = Held()) -> OOMWarning | None:
    """The warning for a graph whose memory, or the upper end of its 90 % interval, passes ``limit_mb``
    less what ``held`` says other compiled graphs keep allocated (:class:`HeldState`)."""
    upper = est.memory_mb_interval[1] if est.memory_mb_interval else None
    step = bool(getattr(traced[0], "gradient_step", False))
    what = "an optimizer step, no batch" if step else f"batch {batch}"
    head = f"costmodel: this graph ({est.mode}, {what}) is predicted to need {est.memory_mb:,.0f} MB on {dev.name}"
    held_mb = held.mb + held.saved_mb
    parts = []
    if held.mb > 0:
        parts.append(f"{held.mb:,.0f} MB stay allocated for the {held.tensors:,} parameters and buffers of the "
                     f"other graphs compiled (weights{', gradients and optimizer state' if est.mode == 'training' else ''}"
                     ")")
    if held.saved_mb > 0:
        parts.append(f"{held.saved_mb:,.0f} MB stay allocated for the activations that the graphs before it in "
                     "the step saved for their backward pass")
    if parts:
        head += f", and {' and '.join(parts)}: {est.memory_mb + held_mb:,.0f} MB in all"
    room = limit_mb - held_mb
    fixed_room = limit_mb - held.mb  # a smaller batch shrinks the earlier graphs' activations too

    def fits():
        return _fits(est, batch, fixed_room, dev, traced, held.saved_per_sample_mb)

    if est.memory_mb > room:
        if step:
            return OOMWarning(f"{head}, but {limit_mb:,.0f} MB are available; an optimizer step's memory does not "
                              "depend on the batch")
        fit, safe = fits()
        return OOMWarning(
            f"{head}, but {limit_mb:,.0f} MB are available; "
            + (f"the largest batch whose 90 % interval's upper end fits is {safe}, and " if safe is not None else "")
            + "the largest batch predicted to fit is " + f"{fit}"
            + (" (none: the fixed part alone does not fit)" if fit == 0 else ""))
    if upper is not None and upper > room:
        tail = ("an optimizer step's memory does not depend on the batch" if step else
                f"the largest batch whose upper end fits is {fits()[1]}")
        return OOMRiskWarning(
            f"{head}, within the {limit_mb:,.0f} MB available, but the upper end of its 90 % interval is "
            f"{upper + held_mb:,.0f} MB, so it may run out of memory; {tail}")
    return None


def auto_device() -> tuple[Any, list[str]]:
    """The device this process compiles for: the CUDA GPU it sees (:func:`costmodel.devices.cuda_device`: its
    database entry by ``torch.cuda.get_device_name()``, inside a MIG instance the slice, and a GPU the
    database does not list derived from its CUDA properties), else an H100; with the note an estimate
    then carries."""
    import torch

    from .._errors import CostModelError
    from ..devices import cuda_device, get_device

    if torch.cuda.is_available():
        try:
            return cuda_device(), []
        except CostModelError as e:  # a GPU older than Volta
            return get_device("h100"), [f"device='auto': the GPU here ({torch.cuda.get_device_name()!r}) cannot be "
                                        f"costed ({e}); costed for an H100 (pass device= a known GPU, or a measured "
                                        "profile)"]
    return get_device("h100"), ["device='auto': no CUDA device in this process; costed for an H100 (pass device=)"]


def torch_backend(device="auto", memory_limit_mb: float | None = None, inner: str | Callable = "inductor",
                  predictor=None, host=None) -> Callable:
    """A ``torch.compile`` backend; ``backend.estimates`` lists one Estimate per compiled graph and
    ``backend.seconds`` the time spent estimating. ``device``: a device name or :class:`Device`, or
    ``"auto"`` (the default): the CUDA GPU this process sees, a MIG slice included, else an H100 (the
    estimates say so). ``host``: a host profile (``costmodel calibrate``'s JSON path or a
    :class:`~costmodel.measure.host.HostProfile`) for the timeline's host lane."""
    from ..devices import get_device
    from ..measure.host import load_host

    from .._validate import positive_number

    dev, device_notes = auto_device() if device == "auto" else (get_device(device), [])  # fail early on a bad name
    profile = load_host(host)  # and on a missing or damaged host profile
    # a limit above the device cannot lift what the device holds: the warning compares with the smaller
    limit = dev.capacity_mb if memory_limit_mb is None else min(
        positive_number(memory_limit_mb, "memory_limit_mb"), dev.capacity_mb)
    _inner(inner)  # an unknown inner backend fails here, not at the first compiled call
    _resolve(predictor)  # and an unknown predictor name (loaded once per process: the first compile needs it)

    def backend(gm, example_inputs, mode: str | None = None, options: dict | None = None):
        # mode= and options= are what torch.compile(..., mode=..., options=...) hands a custom backend: they
        # go on to inductor, and a mode that replays CUDA graphs is costed as one graph launch
        import time

        from ..estimate import with_notes
        from ..predictors import with_host_profile

        t0 = time.perf_counter()
        oom = guard = None
        sizes: list = []
        caught: list = []
        if not any(hasattr(t, "shape") for t in example_inputs):
            # a graph without tensor inputs computes on constants only (what dynamo leaves between two breaks
            # in a detector's post-processing): nothing to cost, nothing to warn about
            return _inner(inner)(gm, example_inputs)
        try:
            # warnings raised while estimating are collected, not raised (a user's "error" filter would
            # abort the estimate), and re-issued below where they cannot break the compile
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                pred, notes = _resolve(predictor)
                pred, host_notes = with_host_profile(pred, profile)
                notes = [*notes, *host_notes, *device_notes]
                graphs = _cuda_graphs(mode, options)
                if graphs and not hasattr(pred, "with_cuda_graphs"):
                    notes.append(f"torch.compile mode={mode!r} replays CUDA graphs, but the {pred.name} predictor "
                                 "learned eager steps: costed with a host dispatch per operator")
                    graphs = False
                est, batch, traced = _estimate_fx(gm, example_inputs, device=dev, predictor=pred, training=None,
                                                  cuda_graphs=graphs)
            if est.memory_mb is None:
                raise ValueError(f"the {est.predictor} predictor returned no memory")
            held = Held(*backend.held.others_mb(traced[0].held_state, est.mode == "training"))
            if est.mode == "training":
                history = any(getattr(t, "grad_fn", None) is not None for t in example_inputs)
                own = float(est.details.get("memory", {}).get("saved_mb", 0.0)) - _output_mb(gm)
                held = held._replace(**dict(zip(("saved_mb", "saved_per_sample_mb"), backend.held.earlier_saved(
                    traced[0].held_state, own, batch, history))))
            guard, sizes, more = _call_checks(gm, example_inputs, est, batch, traced, dev, limit, held)
            notes.extend(more)
            backend.estimates.append(with_notes(est, notes))
            oom = _oom_warning(est, batch, limit, dev, traced, held)
        except Exception as e:  # noqa: BLE001 - the cost model must never break the user's compile
            _warn(f"costmodel could not estimate a compiled graph ({type(e).__name__}: {e}); "
                  "compiling it unchanged", RuntimeWarning)
        for w in caught:
            _warn(w.message, w.category)
        if oom is not None:
            _warn(oom, type(oom))
        backend.seconds += time.perf_counter() - t0
        compiled = _compile_inner(inner, gm, example_inputs, mode, options)
        if sizes:
            compiled = watch_sizes(compiled, sizes)
        if guard is not None:
            guard[0].warned.add(batch)  # the compile's own warning above covers its batch
            return guard[0].wrap(compiled, guard[1])
        return compiled

    backend.estimates = []
    backend.held = HeldState()  # the state of the graphs compiled so far, which the next graph's check adds
    backend.seconds = 0.0  # time spent estimating, all graphs
    backend.device = dev
    backend.memory_limit_mb = limit  # what the OOM warning compares with
    return backend


_PREDICTORS: dict = {}


def _resolve(predictor):
    """``(predictor, assumptions of answering with it)``; a named (or the default) predictor is loaded
    once per process: compiles happen often."""
    from ..predictors import Predictor, default_fallback_note, get_predictor

    if isinstance(predictor, Predictor):
        return predictor, []
    if predictor not in _PREDICTORS:
        pred = get_predictor(predictor)
        _PREDICTORS[predictor] = (pred, [default_fallback_note(pred)] if predictor is None else [])
    return _PREDICTORS[predictor]


def _inner(inner: str | Callable) -> Callable:
    """The inner backend: a callable, or a name ``torch.compile`` has registered."""
    if callable(inner):
        return inner
    import torch._dynamo
    from torch._dynamo.exc import InvalidBackend

    from .._errors import InvalidInputError

    names = ", ".join([n for n in torch._dynamo.list_backends() if n != "costmodel"] + ["eager", "aot_eager"])
    choices = f"one of {names} (torch._dynamo.list_backends(exclude_tags=()) lists every registered one)"
    if not isinstance(inner, str) or inner == "costmodel":
        raise InvalidInputError(f"inner must be a backend callable or the name of another backend, {choices}; "
                                f"got {inner!r}")
    try:
        return torch._dynamo.lookup_backend(inner)
    except InvalidBackend:
        raise InvalidInputError(f"unknown inner backend {inner!r}; choose {choices}") from None


def _inductor_patches(mode: str | None, options: dict | None) -> dict:
    """The inductor configuration ``torch.compile``'s ``mode`` and ``options`` stand for."""
    patches: dict = {}
    if mode and mode != "default":
        from torch._inductor import list_mode_options

        patches.update(list_mode_options(mode))
    patches.update({k.replace("-", "_"): v for k, v in (options or {}).items()})
    return patches


def _cuda_graphs(mode: str | None, options: dict | None) -> bool:
    """Whether the compiled code replays CUDA graphs (``mode="reduce-overhead"``, ``"max-autotune"``, or
    ``options={"triton.cudagraphs": True}``); where the mode is unknown, torch.compile reports it."""
    try:
        return bool(_inductor_patches(mode, options).get("triton.cudagraphs", False))
    except Exception:  # noqa: BLE001 - torch.compile names a bad mode itself
        return False


def _compile_inner(inner, gm, example_inputs, mode: str | None, options: dict | None):
    """Hand the graph to the inner backend, with ``mode`` and ``options`` where they mean something: inductor
    takes them as its configuration, a callable gets them as keywords; another named backend has no use for
    them, and a warning says they were dropped."""
    if not mode and not options:
        return _inner(inner)(gm, example_inputs)
    if inner == "inductor":
        from torch._inductor.compile_fx import compile_fx

        return compile_fx(gm, example_inputs, config_patches=_inductor_patches(mode, options))
    if callable(inner):
        return inner(gm, example_inputs, **({"mode": mode} if mode else {}), **({"options": options} if options else {}))
    _warn(f"costmodel: torch.compile's mode={mode!r} and options={options!r} configure inductor; the inner "
          f"backend {inner!r} does not take them, so they were not applied", UserWarning)
    return _inner(inner)(gm, example_inputs)


_DEFAULT: list = []


def costmodel_backend(gm, example_inputs: list[Any], mode: str | None = None, options: dict | None = None):
    """The ``"costmodel"`` backend with defaults (the GPU this process sees, else an H100; inductor);
    configure with :func:`torch_backend`. ``torch.compile(..., mode=..., options=...)`` reach inductor."""
    if not _DEFAULT:
        _DEFAULT.append(torch_backend())
    return _DEFAULT[0](gm, example_inputs, mode=mode, options=options)


def register() -> None:
    """Register ``"costmodel"`` with Dynamo (the ``torch_dynamo_backends`` entry point does this when installed)."""
    from torch._dynamo import list_backends, register_backend

    if "costmodel" not in list_backends(exclude_tags=()):
        register_backend(name="costmodel")(costmodel_backend)
