"""What a PyTorch capture records beyond each operator's ATen name: recurrent layers, whose per-step
kernels one library call launches; scatters, which read the values they write; and the note a capture
that fell back to another method adds."""

from __future__ import annotations

import math
from typing import Any

from ..ir import numel


#: gather-kind operators that write values into their first operand, and those of them that accumulate
SCATTERS = frozenset({"scatter", "scatter_add", "scatter_reduce", "index_put", "index_add", "index_copy",
                      "masked_scatter", "_index_put_impl"})
ACCUMULATING = frozenset({"scatter_add", "index_add"})


#: the transforms the trace records, and the ``torch.fft`` functions torch.export keeps whole (their default dims)
FFT_OPS = frozenset({"_fft_r2c", "_fft_c2r", "_fft_c2c"})
FFT_COMPOSITES = {f"fft_{k}{v}": d for v, d in (("", (-1,)), ("2", (-2, -1)), ("n", None))
                  for k in ("fft", "ifft", "rfft", "irfft")}


def fft_flops(base: str, named: dict, in_shapes: list, out_shapes: list) -> float | None:
    """The FLOPs of a Fourier transform: ``5 N log2 n`` for ``N`` complex points of transforms of length ``n``
    (the radix-2 count), half of it for a real one (r2c, c2r); ``None`` for another operator."""
    if (base not in FFT_OPS and base not in FFT_COMPOSITES) or not in_shapes:
        return None
    real_out = base == "_fft_c2r" or base.startswith("fft_irfft")
    dims = named.get("dim") or (FFT_COMPOSITES.get(base, (-1,)) or tuple(range(1, len(in_shapes[0]))))
    dims = [dims] if isinstance(dims, int) else list(dims)
    shape = out_shapes[0] if real_out and out_shapes else in_shapes[0]
    try:
        n = math.prod(int(shape[d]) for d in dims)
    except (IndexError, TypeError):
        return None
    points = numel(shape)
    real = base in ("_fft_r2c", "_fft_c2r") or "rfft" in base
    return (2.5 if real else 5.0) * points * math.log2(max(n, 2))


def index_attrs(kind: str, base: str, named: dict, in_shapes: list) -> dict[str, Any]:
    """What an indexing operator's cost needs beyond its shapes: a scatter reads the values it writes into
    its first operand (and adds one per value where it accumulates); an embedding bag reads one row per
    index and pools them."""
    if kind == "gather" and base.rstrip("_") in SCATTERS and len(in_shapes) >= 2:
        out: dict[str, Any] = {"scatter": True}
        if base.rstrip("_") in ACCUMULATING or named.get("accumulate") is True or named.get("reduce"):
            out["flops"] = float(max(numel(sh) for sh in in_shapes[1:]))
        return out
    if kind == "embedding" and "bag" in base and len(in_shapes) >= 2:
        return {"bag_rows": int(numel(in_shapes[1]))}
    return {}


def rnn_scopes(model) -> list[str]:
    """The module paths of ``model``'s recurrent layers (``nn.LSTM``, ``nn.GRU``, ``nn.RNN`` and their cells):
    each runs as one library call on a GPU (cuDNN's RNN, the fused cells), so the operators the trace records
    inside them are that call's kernels, launched from C++ with no dispatch of their own."""
    import torch

    return [name for name, m in model.named_modules() if isinstance(m, (torch.nn.RNNBase, torch.nn.RNNCellBase))]


def with_rnn_launches(graph, scopes: list[str], asked: str, cudnn: bool = False):
    """``graph`` with the nodes recorded inside recurrent layers listed in ``meta["launched_nodes"]`` (the
    timeline charges each a kernel launch on the host, not an operator's dispatch), and the assumption that
    says how they were costed: ``cudnn``, as the kernels cuDNN's RNN runs
    (:func:`~costmodel.frontends.cudnn_rnn_kernels`), else as the per-step operators of PyTorch's own RNN."""
    if not scopes:
        return graph
    inside = [n.id for n in graph.nodes if n.scope and any(n.scope == s or n.scope.startswith(s + ".") for s in scopes)]
    if not inside:
        return graph
    graph.meta["launched_nodes"] = inside
    how = ("the trace, because torch.export keeps each as one operator that no rule costs"
           if asked == "export" else "the trace")
    layers = f"recurrent layers ({', '.join(scopes[:3])}{', ...' if len(scopes) > 3 else ''})"
    if cudnn:
        note = (f"{layers} costed as the {len(inside)} kernels cuDNN's RNN runs, recorded by {how}: per layer and "
                "direction one GEMM for the input projection of all time steps, then per step a recurrent GEMM "
                "and one fused gate kernel, each launched with no dispatch of its own (an nn.LSTMCell or "
                "nn.GRUCell call: its two GEMMs and PyTorch's fused cell kernel; an nn.RNNCell: its operators); "
                "cuDNN's persistent kernels may launch fewer, and no RNN was measured")
    else:
        note = (f"{layers} costed as the {len(inside)} per-step operators PyTorch's own RNN runs, recorded by "
                f"{how}, each a kernel launched with no dispatch of its own; cuDNN fuses a step into fewer "
                "kernels, and no RNN was measured")
    graph.meta["assumptions"] = [*graph.meta.get("assumptions", []), note]
    return graph


def fallback_note(gname: str, method: str, used: str, export_error: str | None) -> str:
    """The assumption a capture that fell back to another method adds to the graph."""
    how = ("by the dispatch-level trace on meta tensors" if used == "trace"
           else "by running it once on the CPU with its own weights and its inputs (seeded random values where an "
                 "input has none)")
    if method == "export":
        return f"torch.export failed for {gname} ({export_error}); featurized {how} instead"
    return f"the meta-tensor trace of {gname} needs tensor values; featurized {how} instead"


def without_capture_fallback(graph):
    """``graph`` as the method that built it gives it: the fallback note and record dropped from
    ``meta`` (what the cache stores under that method's key)."""
    from ..ir import CostGraph

    fb = graph.meta.get("capture_fallback")
    if fb is None:
        return graph
    meta = {k: v for k, v in graph.meta.items() if k != "capture_fallback"}
    notes = [a for a in meta.pop("assumptions", ()) if a != fb.get("note")]
    if notes:
        meta["assumptions"] = notes
    return CostGraph(graph.nodes, graph.edges, graph.inputs, meta)
