"""Mamba's fused selective-scan kernels, as operators a graph and an allocation trace can hold.

On meta and fake tensors ``transformers`` runs its reference selective scans: for Mamba-1 a Python loop
over the tokens, a few small operators per token and layer; for Mamba-2 the chunked algorithm written as
dozens of PyTorch operators per layer. A GPU with ``mamba_ssm`` (or the Hugging Face ``kernels`` package)
runs a few fused kernels instead: ``selective_scan_fn`` or ``mamba_chunk_scan_combined`` over the sequence
(prefill, forward, training) and ``selective_state_update`` for one decode step. :func:`fused_ssm_kernels`
puts stand-ins for them in the modeling modules of the Mamba-1 family (Mamba, Falcon-Mamba, Jamba,
Zamba) and of the Mamba-2 family (Mamba-2, Bamba, Falcon-H1, Granite 4 hybrids, Nemotron-H, Zamba2)
while a graph is built or an allocation is traced. The stand-ins are ``torch.library`` operators
with shapes only (meta and fake kernels; no arithmetic), shaped as ``mamba_ssm`` shapes its results:

* ``costmodel::selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, softplus) -> (out, x, out_z)``:
  ``out`` and the gated ``out_z`` in ``u``'s dtype, and ``x``, the fp32 scan states at the end of
  every chunk of :data:`CHUNK` tokens, ``(batch, dim, chunks, 2 x state)``, which the backward pass
  starts from. Operands whose last dimension is strided are copied first, as ``SelectiveScanFn`` does
  (transformers hands it ``B`` and ``C`` transposed). A training step keeps what ``mamba_ssm``'s autograd function keeps: the inputs, ``x``,
  and ``out`` where there is a gate.
* ``costmodel::selective_scan_bwd``: the gradients of every input, one kernel.
* ``costmodel::selective_state_update(state, x, dt, A, B, C, D, z, dt_bias, softplus) -> out``: one
  token's step, updating ``state`` in place (both families).
* ``costmodel::chunk_scan_fwd`` (Mamba-2): the output (and the gated output), the chunks' cumulative
  decays and time steps, the states at each chunk's end and each chunk's ``C B^T`` (fp32; the last two
  are freed when the call returns), and the final state; a training step keeps what
  ``MambaChunkScanCombinedFn`` keeps (the inputs, the decays and the output) and one
  ``costmodel::chunk_scan_bwd`` recomputes the states and ``C B^T`` for every input's gradient.

Each counts the scan's arithmetic (:func:`scan_flops`) and reads and writes its operands once, so the
timeline costs it by its roofline. The causal depthwise convolution before the scan is
fused the same way (``causal_conv1d_fn`` and its one-token ``causal_conv1d_update``: one operator each,
the SiLU included). A Mamba-1 training step runs ``mamba_inner_fn`` (:func:`mamba_inner`): the convolution, the
projections, the scan and ``out_proj`` in one autograd function that keeps what ``MambaInnerFn`` keeps and
recomputes the convolution's output and the time steps in the backward pass. What is not modelled:
Mamba-2's ``mamba_split_conv1d_scan_combined`` (the trace keeps its parts as the separate operators
above) and Falcon-Mamba's normalized variant of ``mamba_inner_fn``.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from typing import Iterator

from ._cudnn_rnn import pointwise_flops

#: tokens per chunk of ``mamba_ssm``'s selective scan: the fp32 states it keeps for the backward pass
#: are one per chunk (``selective_scan_fwd_kernel``'s ``kChunkSize``)
CHUNK = 2048
#: FLOPs per (token, channel, state) of a selective scan: discretize A (a multiply and an exp, counted
#: as 3) and B (1), the input's product (1), the state's multiply-add (2) and the output's (2)
SCAN_FLOPS_PER_STATE = 9
#: the modeling modules whose Mamba-1 mixers call ``mamba_selective_scan`` and
#: ``mamba_selective_state_update`` by their module's names
MAMBA1_MODULES = ("mamba", "falcon_mamba", "jamba", "zamba")
#: the modeling modules whose Mamba-2 mixers call ``mamba2_chunk_scan`` and ``mamba2_selective_state_update``
MAMBA2_MODULES = ("mamba2", "bamba", "falcon_h1", "granitemoehybrid", "nemotron_h", "zamba2")
#: what the choice of kernels can be
SSM_KERNELS = ("reference", "fused")

_REGISTERED = False


def scan_flops(batch: int, dim: int, tokens: int, state: int, gated: bool) -> float:
    """FLOPs of a selective scan: :data:`SCAN_FLOPS_PER_STATE` per (token, channel, state), plus the
    skip connection (2 per element) and a gate (``silu`` and a multiply: 5 per element)."""
    elems = float(batch) * dim * tokens
    return elems * (SCAN_FLOPS_PER_STATE * state + 2 + (5 if gated else 0))


def conv_flops(elements: float, width: int) -> float:
    """FLOPs of a causal depthwise convolution of ``width`` taps over ``elements`` outputs, with its SiLU."""
    return float(elements) * (2 * width + 4)


def chunk_scan_flops(batch: int, tokens: int, heads: int, head_dim: int, groups: int, state: int,
                     chunk: int) -> float:
    """FLOPs of Mamba-2's chunked scan as ``mamba_chunk_scan_combined`` runs it: each chunk's state
    (``B`` against ``x``), the states passed from chunk to chunk, ``C B^T`` within a chunk per group, and the
    output: the states read through ``C``, plus the causal half of the chunk's ``(C B^T) x``."""
    chunks = math.ceil(tokens / chunk)
    state_fl = 2.0 * batch * tokens * heads * head_dim * state  # chunk_state, and again for C . states
    cb = 2.0 * batch * chunks * groups * chunk * chunk * state
    diag = float(batch) * chunks * heads * head_dim * chunk * (chunk + 1)  # causal: (chunk + 1) / 2 pairs a row
    passing = 2.0 * batch * chunks * heads * head_dim * state
    return 2 * state_fl + cb + diag + passing


def fused_flops(base: str, in_shapes, out_shapes=()) -> float | None:
    """The FLOPs of a stand-in operator by its base name and operand (and result) shapes (``None``: not one
    of them)."""
    if base == "chunk_scan_fwd" and len(in_shapes) >= 5 and len(in_shapes[0]) == 4 and len(out_shapes) >= 6:
        (b, tokens, h, p), (g, n), chunk = in_shapes[0], in_shapes[3][2:], out_shapes[5][-1]
        return chunk_scan_flops(b, tokens, h, p, g, n, chunk)
    if base == "selective_scan_fwd" and len(in_shapes) >= 3 and len(in_shapes[0]) == 3:
        (b, d, tokens), state = in_shapes[0], in_shapes[2][-1]
        # u, delta and a gate z have the input's shape
        return scan_flops(b, d, tokens, state, gated=sum(tuple(s) == tuple(in_shapes[0]) for s in in_shapes) >= 3)
    if base == "causal_conv1d_fwd" and len(in_shapes) >= 2 and len(in_shapes[0]) == 3:
        return conv_flops(math.prod(in_shapes[0]), in_shapes[1][-1])
    if base == "causal_conv1d_update" and len(in_shapes) >= 3 and len(in_shapes[1]) == 3:
        return conv_flops(math.prod(in_shapes[1]), in_shapes[2][-1])  # (conv_state, x, weight, ...)
    if base == "selective_state_update" and len(in_shapes) >= 1 and len(in_shapes[0]) >= 3:
        *lead, state = in_shapes[0]  # (batch, dim, state) or Mamba-2's (batch, heads, head_dim, state)
        return scan_flops(lead[0], math.prod(lead[1:]), 1, state, gated=True)
    return pointwise_flops(base, in_shapes)  # cuDNN's fused RNN gate kernel, or None


def _register() -> None:
    """Define the three operators (once per process)."""
    global _REGISTERED
    if _REGISTERED:
        return
    import torch

    def _no_kernel(*_a, **_k):
        raise RuntimeError("costmodel's stand-in for a fused selective-scan kernel has shapes only: it runs on "
                           "meta and fake tensors, while a graph is built or an allocation is traced")

    @torch.library.custom_op("costmodel::selective_scan_fwd", mutates_args=(),
                             schema="(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
                                    "Tensor? delta_bias, bool softplus) -> (Tensor, Tensor, Tensor)")
    def scan_fwd(u, delta, A, B, C, D, z, delta_bias, softplus):
        _no_kernel()

    @scan_fwd.register_fake
    def _(u, delta, A, B, C, D, z, delta_bias, softplus):
        b, d, tokens = u.shape
        x = u.new_empty((b, d, max(1, math.ceil(tokens / CHUNK)), 2 * A.shape[-1]), dtype=torch.float32)
        return u.new_empty(u.shape), x, u.new_empty(u.shape if z is not None else (0,))

    @torch.library.custom_op("costmodel::selective_scan_bwd", mutates_args=(),
                             schema="(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
                                    "Tensor? delta_bias, Tensor dout, Tensor x, Tensor? out, bool softplus) -> Tensor[]")
    def scan_bwd(u, delta, A, B, C, D, z, delta_bias, dout, x, out, softplus):
        _no_kernel()

    @scan_bwd.register_fake
    def _(u, delta, A, B, C, D, z, delta_bias, dout, x, out, softplus):
        f32 = torch.float32
        none = u.new_empty((0,))
        return [u.new_empty(u.shape), delta.new_empty(delta.shape), A.new_empty(A.shape, dtype=f32),
                B.new_empty(B.shape), C.new_empty(C.shape),
                D.new_empty(D.shape, dtype=f32) if D is not None else none,
                z.new_empty(z.shape) if z is not None else none,
                delta_bias.new_empty(delta_bias.shape, dtype=f32) if delta_bias is not None else none]

    def setup(ctx, inputs, output):
        u, delta, A, B, C, D, z, delta_bias, softplus = inputs
        out, x, _ = output
        ctx.softplus = softplus
        ctx.present = (D is not None, z is not None, delta_bias is not None)
        # what mamba_ssm's SelectiveScanFn keeps: the inputs and the chunk states, and `out` under a gate
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, x, out if z is not None else None)

    def backward(ctx, dout, _dx, dout_z):
        u, delta, A, B, C, D, z, delta_bias, x, out = ctx.saved_tensors
        g = dout_z if z is not None else dout
        du, dd, dA, dB, dC, dD, dz, ddb = scan_bwd(u, delta, A, B, C, D, z, delta_bias, g, x, out, ctx.softplus)
        has_d, has_z, has_b = ctx.present
        return du, dd, dA, dB, dC, dD if has_d else None, dz if has_z else None, ddb if has_b else None, None

    torch.library.register_autograd("costmodel::selective_scan_fwd", backward, setup_context=setup)

    @torch.library.custom_op("costmodel::selective_state_update", mutates_args=("state",),
                             schema="(Tensor(a!) state, Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, "
                                    "Tensor? z, Tensor? dt_bias, bool softplus) -> Tensor")
    def state_update(state, x, dt, A, B, C, D, z, dt_bias, softplus):
        _no_kernel()

    @state_update.register_fake
    def _(state, x, dt, A, B, C, D, z, dt_bias, softplus):
        return x.new_empty(x.shape)

    _register_chunk_scan(torch, _no_kernel)
    _register_causal_conv(torch, _no_kernel)
    _REGISTERED = True


def _register_causal_conv(torch, no_kernel) -> None:
    """``causal_conv1d``'s fused depthwise convolution (with its SiLU) over a sequence, its backward, and
    its one-token update of the convolution state."""

    @torch.library.custom_op("costmodel::causal_conv1d_fwd", mutates_args=(),
                             schema="(Tensor x, Tensor weight, Tensor? bias, bool silu) -> Tensor")
    def conv_fwd(x, weight, bias, silu):
        no_kernel()

    @conv_fwd.register_fake
    def _(x, weight, bias, silu):
        return x.new_empty(x.shape)

    @torch.library.custom_op("costmodel::causal_conv1d_bwd", mutates_args=(),
                             schema="(Tensor x, Tensor weight, Tensor? bias, Tensor dout, bool silu) -> Tensor[]")
    def conv_bwd(x, weight, bias, dout, silu):
        no_kernel()

    @conv_bwd.register_fake
    def _(x, weight, bias, dout, silu):
        return [x.new_empty(x.shape), weight.new_empty(weight.shape),
                bias.new_empty(bias.shape) if bias is not None else x.new_empty((0,))]

    def setup(ctx, inputs, output):
        x, weight, bias, silu = inputs
        ctx.silu, ctx.has_bias = silu, bias is not None
        ctx.save_for_backward(x, weight, bias)  # what causal_conv1d's autograd function keeps

    def backward(ctx, dout):
        x, weight, bias = ctx.saved_tensors
        dx, dw, db = conv_bwd(x, weight, bias, dout, ctx.silu)
        return dx, dw, db if ctx.has_bias else None, None

    torch.library.register_autograd("costmodel::causal_conv1d_fwd", backward, setup_context=setup)

    @torch.library.custom_op("costmodel::causal_conv1d_update", mutates_args=("conv_state",),
                             schema="(Tensor(a!) conv_state, Tensor x, Tensor weight, Tensor? bias, bool silu) -> Tensor")
    def conv_update(conv_state, x, weight, bias, silu):
        no_kernel()

    @conv_update.register_fake
    def _(conv_state, x, weight, bias, silu):
        return x.new_empty(x.shape)


def causal_conv1d(hidden_states, weight, bias=None, activation=None, **_):
    """``causal_conv1d_fn`` as ``transformers`` calls it (``hidden_states``: ``(batch, channels, tokens)``,
    ``weight``: ``(channels, width)``), on the stand-in operator."""
    import torch

    return torch.ops.costmodel.causal_conv1d_fwd(hidden_states, weight, bias, activation in ("silu", "swish"))


def causal_conv1d_update(hidden_states, conv_state, weight, bias=None, activation=None, **_):
    """``causal_conv1d_update``: one token against the convolution state, which it updates in place."""
    import torch

    return torch.ops.costmodel.causal_conv1d_update(conv_state, hidden_states, weight, bias,
                                                    activation in ("silu", "swish"))


def _register_chunk_scan(torch, no_kernel) -> None:
    """Mamba-2's ``mamba_chunk_scan_combined``: the forward's results and transients, its saved tensors and
    one backward operator."""
    f32 = torch.float32

    @torch.library.custom_op("costmodel::chunk_scan_fwd", mutates_args=(),
                             schema="(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, int chunk_size, Tensor? D, "
                                    "Tensor? z, Tensor? dt_bias, Tensor? initial_states) -> "
                                    "(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)")
    def chunk_fwd(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states):
        no_kernel()

    @chunk_fwd.register_fake
    def _(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states):
        b, tokens, h, p = x.shape
        g, n = B.shape[2], B.shape[3]
        c = max(1, math.ceil(tokens / chunk_size))
        return (x.new_empty(x.shape), x.new_empty(x.shape if z is not None else (0,)),  # out, gated out
                x.new_empty((b, h, c, chunk_size), dtype=f32), x.new_empty((b, h, c, chunk_size), dtype=f32),
                x.new_empty((b, c, h, p, n), dtype=f32),  # each chunk's state (freed after the call)
                x.new_empty((b, c, g, chunk_size, chunk_size), dtype=f32),  # C B^T per chunk (freed too)
                x.new_empty((b, h, p, n), dtype=f32))  # the final state

    @torch.library.custom_op("costmodel::chunk_scan_bwd", mutates_args=(),
                             schema="(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, int chunk_size, Tensor? D, "
                                    "Tensor? z, Tensor? dt_bias, Tensor? initial_states, Tensor dout, Tensor out, "
                                    "Tensor dA_cumsum) -> Tensor[]")
    def chunk_bwd(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dout, out, dA_cumsum):
        no_kernel()

    @chunk_bwd.register_fake
    def _(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dout, out, dA_cumsum):
        b, tokens, h, p = x.shape
        g, n = B.shape[2], B.shape[3]
        c = max(1, math.ceil(tokens / chunk_size))
        none = x.new_empty((0,))

        def like(t, dtype=None):
            return t.new_empty(t.shape, dtype=dtype or t.dtype) if t is not None else none
        return [like(x), like(dt), like(A, f32), like(B), like(C), like(D, f32), like(z), like(dt_bias, f32),
                like(initial_states), x.new_empty((b, c, h, p, n), dtype=f32),  # the states, recomputed
                x.new_empty((b, c, g, chunk_size, chunk_size), dtype=f32)]  # and C B^T

    def setup(ctx, inputs, output):
        x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states = inputs
        out, out_x, dA_cumsum = output[0], output[1], output[2]
        ctx.chunk_size = chunk_size
        ctx.present = (D is not None, z is not None, dt_bias is not None, initial_states is not None)
        # what MambaChunkScanCombinedFn keeps (the states and C B^T are recomputed in the backward pass)
        ctx.save_for_backward(out_x if z is not None else out, x, dt, dA_cumsum, A, B, C, D, z, dt_bias,
                              initial_states)

    def backward(ctx, dout, dout_x, *_):
        out, x, dt, dA_cumsum, A, B, C, D, z, dt_bias, initial_states = ctx.saved_tensors
        g = dout_x if z is not None else dout
        dx, ddt, dA, dB, dC, dD, dz, ddtb, dinit, _states, _cb = chunk_bwd(
            x, dt, A, B, C, ctx.chunk_size, D, z, dt_bias, initial_states, g, out, dA_cumsum)
        has_d, has_z, has_b, has_i = ctx.present
        return (dx, ddt, dA, dB, dC, None, dD if has_d else None, dz if has_z else None, ddtb if has_b else None,
                dinit if has_i else None)

    torch.library.register_autograd("costmodel::chunk_scan_fwd", backward, setup_context=setup)


def chunk_scan(hidden_states, dt, A, B, C, chunk_size, D=None, dt_bias=None, initial_states=None, dt_softplus=False,
               dt_limit=(0.0, float("inf")), return_final_states=False, z=None, **_):
    """``mamba_ssm``'s ``mamba_chunk_scan_combined`` as ``transformers`` calls it (``hidden_states``:
    ``(batch, tokens, heads, head_dim)``; ``B`` and ``C``: ``(batch, tokens, groups, state)``), on the
    stand-in operator; the chunks' states and ``C B^T`` are freed when it returns, as the kernels' are."""
    import torch

    out, out_x, _da, _dt, states, cb, final = torch.ops.costmodel.chunk_scan_fwd(
        hidden_states, dt, A, B, C, int(chunk_size), D, z, dt_bias, initial_states)
    del states, cb, _da, _dt
    y = out_x if z is not None else out
    return (y, final) if return_final_states else y


def selective_scan(hidden_states, dt, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, **_):
    """``mamba_ssm.selective_scan_fn`` as ``transformers`` calls it (``u``: ``(batch, dim, tokens)``; ``B``
    and ``C``: ``(batch, state, tokens)``), on the stand-in operator."""
    import torch

    def dense(t):  # what SelectiveScanFn copies first: an operand whose last dimension is strided
        return t.contiguous() if t is not None and t.stride(-1) != 1 else t

    out, x, out_z = torch.ops.costmodel.selective_scan_fwd(dense(hidden_states), dense(dt), A, dense(B), dense(C),
                                                            D, dense(z), delta_bias, bool(delta_softplus))
    y = out_z if z is not None else out
    return (y, x[:, :, -1, 1::2]) if return_last_state else y


def selective_state_update(state, hidden_states, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, z=None,
                           **_):
    """``mamba_ssm``'s ``selective_state_update`` as ``transformers`` calls it: one token's step, the state
    updated in place."""
    import torch

    return torch.ops.costmodel.selective_state_update(state, hidden_states, dt, A, B, C, D, z, dt_bias,
                                                      bool(dt_softplus))


def check_ssm_kernels(kernels, model=None) -> str:
    """``kernels`` if it is one of :data:`SSM_KERNELS` (and, for ``fused``, ``model`` is of the Mamba-1
    family: its selective scans are what the stand-ins model), else an error naming the valid choices."""
    from .._errors import InvalidInputError

    if kernels not in SSM_KERNELS:
        raise InvalidInputError(f"ssm_kernels must be one of {', '.join(SSM_KERNELS)}; got {kernels!r}")
    if kernels == "fused" and model is not None:
        t = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        if t not in MAMBA1_MODULES + MAMBA2_MODULES:
            raise InvalidInputError(f"ssm_kernels='fused' costs Mamba's fused selective scans, in models of type "
                                    f"{', '.join(MAMBA1_MODULES + MAMBA2_MODULES)}; {t} has no such layer (gated "
                                    "delta rules and other mixers are costed as transformers' reference code)")
    return kernels


@contextlib.contextmanager
def fused_ssm_kernels(on: bool = True) -> Iterator[list[str]]:
    """Within the block, the Mamba-1 family's modeling modules call the stand-ins for ``mamba_ssm``'s fused
    selective scan and state update; yields the model types it patched. ``on=False``: nothing changes."""
    patched: list[tuple[object, str, object]] = []
    types: list[str] = []
    if on:
        _register()
        for t in MAMBA1_MODULES + MAMBA2_MODULES:
            try:
                mod = importlib.import_module(f"transformers.models.{t}.modeling_{t}")
            except ImportError:
                continue
            for name, fn in (("mamba_selective_scan", selective_scan),
                             ("mamba_selective_state_update", selective_state_update),
                             ("mamba2_chunk_scan", chunk_scan),
                             ("mamba2_selective_state_update", selective_state_update),
                             ("causal_conv1d_fn", causal_conv1d), ("causal_conv1d_update", causal_conv1d_update),
                             ("mamba_inner_fn", mamba_inner)):
                if hasattr(mod, name):
                    patched.append((mod, name, getattr(mod, name)))
                    setattr(mod, name, fn)
            types.append(t)
    try:
        yield types
    finally:
        for mod, name, fn in reversed(patched):
            setattr(mod, name, fn)


def _inner_function():
    """``mamba_ssm``'s ``MambaInnerFn`` on the stand-ins: a Mamba-1 layer's causal convolution, its ``x_proj``
    and ``dt_proj`` projections, the selective scan and ``out_proj`` in one autograd function, keeping what it
    keeps (``checkpoint_lvl=1``: the convolution's output and the time steps are recomputed in the backward
    pass)."""
    import torch
    import torch.nn.functional as F

    ops = torch.ops.costmodel

    class MambaInner(torch.autograd.Function):
        @staticmethod
        def forward(ctx, xz, conv_w, conv_b, x_proj_w, dt_proj_w, out_proj_w, out_proj_b, A, D, delta_bias):
            b, _, tokens = xz.shape
            rank, n = dt_proj_w.shape[1], A.shape[-1]
            x, z = xz.chunk(2, dim=1)
            w = conv_w.squeeze(1)
            conv_out = ops.causal_conv1d_fwd(x, w, conv_b, True)
            x_dbl = F.linear(conv_out.transpose(1, 2).reshape(b * tokens, -1), x_proj_w)  # (b l, rank + 2 n)
            delta = (dt_proj_w @ x_dbl[:, :rank].t()).view(-1, b, tokens).permute(1, 0, 2)
            B = x_dbl[:, rank:rank + n].reshape(b, tokens, 1, n).permute(0, 2, 3, 1).contiguous()
            C = x_dbl[:, -n:].reshape(b, tokens, 1, n).permute(0, 2, 3, 1).contiguous()
            out, states, out_z = ops.selective_scan_fwd(conv_out, delta, A, B, C, D, z, delta_bias, True)
            ctx.save_for_backward(xz, w, conv_b, x_dbl, x_proj_w, dt_proj_w, out_proj_w, A, B, C, D, delta_bias,
                                  states, out)
            return F.linear(out_z.transpose(1, 2), out_proj_w, out_proj_b)

        @staticmethod
        def backward(ctx, dout):
            xz, w, conv_b, x_dbl, x_proj_w, dt_proj_w, out_proj_w, A, B, C, D, delta_bias, states, out = \
                ctx.saved_tensors
            b, _, tokens = xz.shape
            rank = dt_proj_w.shape[1]
            x, z = xz.chunk(2, dim=1)
            conv_out = ops.causal_conv1d_fwd(x, w, conv_b, True)  # recomputed (checkpoint_lvl 1)
            delta = (dt_proj_w @ x_dbl[:, :rank].t()).view(-1, b, tokens).permute(1, 0, 2)
            dxz = torch.empty_like(xz)
            dout_e = dout.reshape(b * tokens, -1).t()  # (e, b l)
            dout_y = (out_proj_w.t() @ dout_e).view(-1, b, tokens).permute(1, 0, 2)
            dconv, ddelta, dA, dB, dC, dD, dz, ddb = ops.selective_scan_bwd(conv_out, delta, A, B, C, D, z,
                                                                            delta_bias, dout_y, states, out, True)
            out_z = torch.empty_like(out)  # recomputed by the backward kernel for out_proj's gradient
            dout_proj_w = dout_e @ out_z.permute(0, 2, 1).reshape(b * tokens, -1)
            dout_proj_b = dout.sum(dim=(0, 1))
            dx_dbl = torch.empty_like(x_dbl)
            ddelta_e = ddelta.permute(1, 0, 2).reshape(ddelta.shape[1], -1)  # (d, b l)
            ddt_proj_w = ddelta_e @ x_dbl[:, :rank]
            dx_dbl[:, :rank] = (ddelta_e.t() @ dt_proj_w)
            dx_proj_w = dx_dbl.t() @ conv_out.transpose(1, 2).reshape(b * tokens, -1)
            dconv = dconv.permute(1, 0, 2).reshape(dconv.shape[1], -1) + x_proj_w.t() @ dx_dbl.t()
            dx, dw, dcb = ops.causal_conv1d_bwd(x, w, conv_b, dconv.view(-1, b, tokens).permute(1, 0, 2), True)
            grads = (dxz, dw.unsqueeze(1), dcb, dx_proj_w, ddt_proj_w, dout_proj_w, dout_proj_b, dA, dD, ddb)
            return tuple(g if need else None for g, need in zip(grads, ctx.needs_input_grad))

    return MambaInner


_INNER = None


def mamba_inner(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight, out_proj_bias,
                A, B=None, C=None, D=None, delta_bias=None, delta_softplus=True, b_rms_weight=None,
                c_rms_weight=None, dt_rms_weight=None, **_):
    """``mamba_ssm``'s ``mamba_inner_fn`` as ``transformers`` calls it in a training step (input-dependent
    ``B`` and ``C``, ``dt`` through softplus); ``None`` (transformers' own path) for what it does not model:
    fixed ``B``/``C`` or Falcon-Mamba's norms on them."""
    global _INNER
    if B is not None or C is not None or not delta_softplus or any(
            t is not None for t in (b_rms_weight, c_rms_weight, dt_rms_weight)):
        return None
    if _INNER is None:
        _INNER = _inner_function()
    return _INNER.apply(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight,
                        out_proj_bias, A, D, delta_bias)
