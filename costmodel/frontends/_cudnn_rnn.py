"""Recurrent layers (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``) as cuDNN runs them on an NVIDIA GPU.

On meta and fake tensors PyTorch runs its own RNN, which unrolls each cell into about fifteen operators per
time step (the input projection, the recurrent one, a gate add, the gate activations and the state
updates, each a kernel). On a CUDA device ``nn.LSTM`` calls ``_cudnn_rnn``, which per layer and direction
runs one GEMM for the input projection of all time steps, then per time step one recurrent GEMM and one
fused elementwise kernel for the gates. :func:`cudnn_rnn_kernels` swaps ``torch._VF``'s RNN entry points
for stand-ins while a graph is built or an allocation is traced:

* ``"steps"`` (an inference graph): the operators of that structure, each a node. The input projection is one
  ``addmm`` over ``seq x batch`` rows, each step an ``addmm`` of the previous hidden state (an ``mm`` more
  for an LSTM's projection) and one ``costmodel::{lstm,gru,rnn}_pointwise`` stand-in, whose FLOPs are those
  of the elementwise operators it fuses (:data:`POINTWISE_FLOPS`), so a graph's total is the unrolled
  one's. Each direction's steps are stacked into the layer's output (one copy kernel).
* ``"call"`` (an allocation trace, CUDA target): one ``costmodel::cudnn_rnn`` call that returns what
  ``_cudnn_rnn`` does (the output, the last hidden and cell states and, in a training step, the reserve
  space autograd keeps for the backward pass, :func:`reserve_bytes`) and takes a workspace for the call
  (:func:`workspace_bytes`); its backward is one ``costmodel::cudnn_rnn_backward`` call with a workspace of
  its own. PyTorch's meta kernel for ``_cudnn_rnn`` sizes the reserve at 0 bytes (it cannot ask cuDNN), so
  both sizes here are estimates, not cuDNN's answers.

``"steps"`` also takes ``nn.LSTMCell`` and ``nn.GRUCell`` (``torch._VF.lstm_cell``, ``gru_cell``) as a CUDA
device runs them: two GEMMs and one fused kernel (``_thnn_fused_lstm_cell``, ``_thnn_fused_gru_cell``) per
call, where PyTorch's own cell runs about a dozen operators; ``nn.RNNCell`` has no fused kernel and keeps
its operators. A packed sequence keeps PyTorch's own path (it runs once on the CPU with real values).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

#: cuDNN's RNN modes (``cudnnRNNMode_t``) by ``torch._VF`` entry point, and the gates of each
MODES = {"rnn_relu": 0, "rnn_tanh": 1, "lstm": 2, "gru": 3}
GATES = {0: 1, 1: 1, 2: 4, 3: 3}
#: FLOPs per (batch, hidden) element of one step's fused gate kernel, as the unrolled operators count them:
#: the sum of the two projections (one per gate), sigmoid 4 and tanh 6 per element, a multiply or add 1.
#: LSTM: 4 + 3 sigmoids 12 + tanh 6 + c = f c + i g 3 + tanh 6 + h = o tanh(c) 1; GRU: r, z sums 2 +
#: 2 sigmoids 8 + r h_n 1 + the n sum 1 + tanh 6 + h = n + z (h - n) 3; RNN: 1 + tanh 6 (or relu 1)
POINTWISE_FLOPS = {"lstm": 32, "gru": 21, "rnn_tanh": 7, "rnn_relu": 2}
#: values per (layer, direction, step, batch, hidden) an estimated reserve space keeps: each gate's
#: activation and the step's states (LSTM: 4 gates, c, h; GRU: both halves of its 3 gates, h; RNN: 1, h)
RESERVE_PER_HIDDEN = {0: 2, 1: 2, 2: 6, 3: 7}

_REGISTERED = False


def reserve_bytes(mode: int, layers: int, directions: int, seq: int, batch: int, hidden: int, itemsize: int) -> int:
    """An estimate of cuDNN's training reserve space (``cudnnGetRNNTrainingReserveSize``): the gate
    activations and states of every step of every layer and direction, :data:`RESERVE_PER_HIDDEN` values per
    hidden unit (GRU's 7 against LSTM's 6 follow the one pair of sizes reported for the same shapes, 864
    against 736 MB)."""
    return layers * directions * seq * batch * hidden * RESERVE_PER_HIDDEN[mode] * itemsize


def workspace_bytes(mode: int, directions: int, seq: int, batch: int, hidden: int, itemsize: int) -> int:
    """An estimate of the workspace of one cuDNN RNN call: the input projection of every step of one layer
    (``seq x batch x gates x hidden`` per direction), which the recurrent steps read."""
    return directions * seq * batch * GATES[mode] * hidden * itemsize


def pointwise_flops(base: str, in_shapes) -> float | None:
    """The FLOPs of a ``costmodel::*_pointwise`` stand-in by its operands (the recurrent projection is the
    second, ``(batch, gates x hidden)``); ``None`` for another operator."""
    name = base.removesuffix("_pointwise")
    if base == name or name not in POINTWISE_FLOPS or len(in_shapes) < 2 or len(in_shapes[1]) != 2:
        return None
    gates = GATES[MODES[name]]
    batch, width = in_shapes[1]
    return float(POINTWISE_FLOPS[name] * batch * (width // gates))


def _register() -> None:
    """Define the stand-in operators (once per process)."""
    global _REGISTERED
    if _REGISTERED:
        return
    import torch

    def no_kernel():
        raise RuntimeError("costmodel's stand-in for a cuDNN RNN kernel has shapes only: it runs on meta and "
                           "fake tensors, while a graph is built or an allocation is traced")

    lib = "costmodel::"
    torch.library.define(lib + "lstm_pointwise", "(Tensor gx, Tensor gh, Tensor c) -> (Tensor, Tensor)")
    torch.library.define(lib + "gru_pointwise", "(Tensor gx, Tensor gh, Tensor h) -> Tensor")
    torch.library.define(lib + "rnn_tanh_pointwise", "(Tensor gx, Tensor gh) -> Tensor")
    torch.library.define(lib + "rnn_relu_pointwise", "(Tensor gx, Tensor gh) -> Tensor")
    for name in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
        torch.library.impl(lib + f"{name}_pointwise", "CompositeExplicitAutograd")(lambda *a: no_kernel())

    def lstm_fake(gx, gh, c):
        return c.new_empty(c.shape), c.new_empty(c.shape)

    def gru_fake(gx, gh, h):
        return h.new_empty(h.shape)

    def rnn_fake(gx, gh):
        return gh.new_empty(gh.shape)

    torch.library.register_fake(lib + "lstm_pointwise", lstm_fake)
    torch.library.register_fake(lib + "gru_pointwise", gru_fake)
    torch.library.register_fake(lib + "rnn_tanh_pointwise", rnn_fake)
    torch.library.register_fake(lib + "rnn_relu_pointwise", rnn_fake)

    def keep_shapes(ctx, inputs, output):
        ctx.shapes = [(t.shape, t.dtype, t.device) for t in inputs]

    def grads(ctx, *_):  # one fused backward kernel's results: a gradient per operand
        import torch as t

        return tuple(t.empty(s, dtype=d, device=dev) for s, d, dev in ctx.shapes)

    for name in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
        torch.library.register_autograd(lib + f"{name}_pointwise", grads, setup_context=keep_shapes)
    _register_call(torch, no_kernel)
    _REGISTERED = True


def _rnn_sizes(x, weights, hx, mode: int, layers: int, bidirectional: bool, batch_first: bool):
    directions = 2 if bidirectional else 1
    seq, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    hidden = weights[0].shape[0] // GATES[mode]
    return directions, int(seq), int(batch), int(hidden), int(hx.shape[-1])


def _register_call(torch, no_kernel) -> None:
    """``costmodel::cudnn_rnn`` (``_cudnn_rnn``'s results, its reserve space and its workspace) and its
    backward."""
    torch.library.define("costmodel::cudnn_rnn",
                         "(Tensor x, Tensor[] weights, Tensor hx, Tensor? cx, int mode, int layers, "
                         "bool bidirectional, bool batch_first, bool train) -> (Tensor, Tensor, Tensor, Tensor, Tensor)")
    torch.library.define("costmodel::cudnn_rnn_backward",
                         "(Tensor x, Tensor[] weights, Tensor hx, Tensor? cx, Tensor output, Tensor reserve, "
                         "Tensor? grad_output, int mode, int layers, bool bidirectional, bool batch_first) -> Tensor[]")
    torch.library.impl("costmodel::cudnn_rnn", "CompositeExplicitAutograd")(lambda *a: no_kernel())
    torch.library.impl("costmodel::cudnn_rnn_backward", "CompositeExplicitAutograd")(lambda *a: no_kernel())

    def call_fake(x, weights, hx, cx, mode, layers, bidirectional, batch_first, train):
        d, seq, batch, hidden, out = _rnn_sizes(x, weights, hx, mode, layers, bidirectional, batch_first)
        shape = (batch, seq, d * out) if batch_first else (seq, batch, d * out)
        size = x.element_size()
        reserve = reserve_bytes(mode, layers, d, seq, batch, hidden, size) if train else 0
        return (x.new_empty(shape), hx.new_empty(hx.shape), cx.new_empty(cx.shape) if cx is not None else
                x.new_empty((0,)), x.new_empty((reserve,), dtype=torch.uint8),
                x.new_empty((workspace_bytes(mode, d, seq, batch, hidden, size),), dtype=torch.uint8))

    def backward_fake(x, weights, hx, cx, output, reserve, grad_output, mode, layers, bidirectional, batch_first):
        d, seq, batch, hidden, _ = _rnn_sizes(x, weights, hx, mode, layers, bidirectional, batch_first)
        ws = workspace_bytes(mode, d, seq, batch, hidden, x.element_size())
        return [x.new_empty(x.shape), hx.new_empty(hx.shape),
                cx.new_empty(cx.shape) if cx is not None else x.new_empty((0,)),
                x.new_empty((ws,), dtype=torch.uint8), *(w.new_empty(w.shape) for w in weights)]

    torch.library.register_fake("costmodel::cudnn_rnn", call_fake)
    torch.library.register_fake("costmodel::cudnn_rnn_backward", backward_fake)

    def setup(ctx, inputs, output):
        x, weights, hx, cx, mode, layers, bidirectional, batch_first, _ = inputs
        ctx.args = (len(weights), cx is not None, mode, layers, bidirectional, batch_first)
        ctx.mark_non_differentiable(output[3], output[4])
        ctx.set_materialize_grads(False)  # no zero gradients for the states and buffers nothing read
        # what _cudnn_rnn's autograd node keeps: the input, the weights, the first states, the output and
        # the reserve space
        ctx.save_for_backward(x, hx, cx, output[0], output[3], *weights)

    def backward(ctx, d_out, _d_hy, _d_cy, _d_reserve, _d_ws):
        x, hx, cx, out, reserve, *weights = ctx.saved_tensors
        _, has_c, mode, layers, bidirectional, batch_first = ctx.args
        dx, dhx, dcx, ws, *dw = torch.ops.costmodel.cudnn_rnn_backward(
            x, weights, hx, cx, out, reserve, d_out, mode, layers, bidirectional, batch_first)
        del ws  # the backward call's workspace, freed when it returns
        return dx, list(dw), dhx, dcx if has_c else None, None, None, None, None, None

    torch.library.register_autograd("costmodel::cudnn_rnn", backward, setup_context=setup)


def _own_path(args) -> bool:
    """Whether a ``torch._VF`` RNN call keeps PyTorch's own path: a packed sequence (its batch sizes are
    the second argument), or real tensors (a step that runs)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensor

    x = args[0]
    packed = len(args) > 1 and isinstance(args[1], torch.Tensor) and not args[1].is_floating_point()
    return packed or not (isinstance(x, FakeTensor) or x.is_meta)


def _step_layers(name: str, x, hx, params, has_biases, layers, dropout, train, bidirectional):
    """The layers of a time-major input ``x`` as cuDNN's kernels, each an operator: returns ``(output,
    last hidden states, last cell states or None)``."""
    import torch
    import torch.nn.functional as F

    point = getattr(torch.ops.costmodel, f"{name}_pointwise")
    lstm, gru = name == "lstm", name == "gru"
    h0, c0 = (hx[0], hx[1]) if lstm else (hx, None)
    d = 2 if bidirectional else 1
    stride = len(params) // (layers * d)
    proj = stride in (3, 5)  # an LSTM's projection weight after w_ih, w_hh (and the two biases)
    seq, batch = x.shape[0], x.shape[1]
    h_last, c_last = [], []
    for layer in range(layers):
        outs = []
        for k in range(d):
            i = layer * d + k
            p = params[i * stride:(i + 1) * stride]
            w_ih, w_hh = p[0], p[1]
            flat = x.reshape(seq * batch, x.shape[2])
            gx = torch.addmm(p[2], flat, w_ih.t()) if has_biases else torch.mm(flat, w_ih.t())
            gx = gx.view(seq, batch, -1).unbind(0)  # one view per step (one reader each: no gradient sums)
            h, c = h0[i], (c0[i] if lstm else None)
            ys = [None] * seq
            for t in (range(seq) if k == 0 else range(seq - 1, -1, -1)):
                gh = torch.addmm(p[3], h, w_hh.t()) if has_biases else torch.mm(h, w_hh.t())
                if lstm:
                    h, c = point(gx[t], gh, c)
                else:
                    h = point(gx[t], gh, h) if gru else point(gx[t], gh)
                if proj:
                    h = torch.mm(h, p[-1].t())
                ys[t] = h
            outs.append(torch.stack(ys))
            h_last.append(h)
            c_last.append(c)
        x = torch.cat(outs, dim=-1) if d == 2 else outs[0]
        if dropout and train and layer < layers - 1:
            x = F.dropout(x, dropout, True)
    return x, torch.stack(h_last), (torch.stack(c_last) if lstm else None)


def _stand_in(name: str, original, kind: str):
    """The ``torch._VF`` entry point ``name`` as cuDNN runs it (``kind``: see :func:`cudnn_rnn_kernels`)."""

    def rnn(*args):
        import torch

        if _own_path(args):
            return original(*args)
        x, hx, params, has_biases, layers, dropout, train, bidirectional, batch_first = args
        if kind == "call":
            h, c = (hx[0], hx[1]) if name == "lstm" else (hx, None)
            out, hy, cy, _, _ = torch.ops.costmodel.cudnn_rnn(
                x, list(params), h, c, MODES[name], layers, bidirectional, batch_first, bool(train))
            return (out, hy, cy) if name == "lstm" else (out, hy)
        out, hy, cy = _step_layers(name, x.transpose(0, 1) if batch_first else x, hx, params, has_biases,
                                   layers, dropout, train, bidirectional)
        out = out.transpose(0, 1) if batch_first else out
        return (out, hy, cy) if name == "lstm" else (out, hy)

    return rnn


#: the cells with a fused CUDA kernel (``_thnn_fused_lstm_cell``, ``_thnn_fused_gru_cell``), by ``torch._VF``
#: entry point; an RNN cell (tanh or ReLU) has none and keeps its operators
CELLS = {"lstm_cell": "lstm", "gru_cell": "gru"}


def _cell_stand_in(name: str, original):
    """``torch._VF.lstm_cell`` / ``gru_cell`` as PyTorch runs them on a CUDA device: the input's and the
    hidden state's projections (two GEMMs), then one fused kernel for the biases, the gates and the state
    update (the ``costmodel::*_pointwise`` stand-in of :func:`_step_layers`)."""
    base = CELLS[name]

    def cell(x, hx, w_ih, w_hh, b_ih=None, b_hh=None):
        import torch

        if _own_path((x,)):
            return original(x, hx, w_ih, w_hh, b_ih, b_hh)
        point = getattr(torch.ops.costmodel, f"{base}_pointwise")
        h = hx[0] if base == "lstm" else hx
        gx, gh = torch.mm(x, w_ih.t()), torch.mm(h, w_hh.t())
        return point(gx, gh, hx[1]) if base == "lstm" else point(gx, gh, h)

    return cell


@contextlib.contextmanager
def cudnn_rnn_kernels(kind: str | None = "steps") -> Iterator[None]:
    """Within the block ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` run as cuDNN does: ``"steps"``, its kernels
    as operators (a graph); ``"call"``, one call with its reserve space and workspace (an allocation trace);
    ``None``, PyTorch's own RNN (what runs on a CPU)."""
    if kind is None:
        yield
        return
    if kind not in ("steps", "call"):
        raise ValueError(f"kind must be 'steps' or 'call', got {kind!r}")
    from torch import _VF

    _register()
    names = [*MODES, *(CELLS if kind == "steps" else ())]  # a trace of allocations keeps the cells' own path
    own = {name: _VF.__dict__[name] for name in names if name in _VF.__dict__}
    for name in names:
        original = getattr(_VF, name)
        setattr(_VF, name, _cell_stand_in(name, original) if name in CELLS else _stand_in(name, original, kind))
    try:
        yield
    finally:
        for name in names:
            if name in own:
                setattr(_VF, name, own[name])
            else:
                delattr(_VF, name)
