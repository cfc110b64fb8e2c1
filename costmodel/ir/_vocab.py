"""The one op vocabulary shared by every frontend (ONNX, ATen, Relax).

A frontend maps its own operator names onto these kinds; everything downstream
(FLOP counting, node features, the analytic model, learned predictors) sees
only the kinds.  Each kind belongs to one coarse *category*, used for graph
statistics and for choosing the compute ceiling of the roofline model.

The order of :data:`OP_KINDS` is part of the feature schema: the one-hot
encoding of a node uses the index of its kind.  Add new kinds at the end and
bump :data:`VOCAB_VERSION`.
"""

from __future__ import annotations

VOCAB_VERSION = 1

# kind -> category
_KINDS: dict[str, str] = {
    # dense compute (tensor-core work)
    "conv": "compute",
    "conv_transpose": "compute",
    "matmul": "compute",  # linear, gemm, mm, bmm, addmm, matmul, einsum
    "attention": "compute",  # fused scaled-dot-product attention
    # normalization
    "batch_norm": "norm",
    "layer_norm": "norm",
    "group_norm": "norm",
    "instance_norm": "norm",
    "rms_norm": "norm",
    # activations
    "relu": "activation",
    "gelu": "activation",
    "silu": "activation",
    "sigmoid": "activation",
    "tanh": "activation",
    "hardswish": "activation",  # hardswish, hardsigmoid
    "clamp": "activation",  # relu6, hardtanh, clip
    "softmax": "activation",  # softmax, log_softmax
    "activation": "activation",  # any other pointwise nonlinearity (elu, mish, leaky_relu...)
    # pooling
    "max_pool": "pool",
    "avg_pool": "pool",  # includes adaptive / global average pooling
    # elementwise arithmetic
    "add": "elementwise",  # add, sub
    "mul": "elementwise",  # mul, div
    "elementwise": "elementwise",  # other pointwise math: pow, sqrt, exp, where, comparisons...
    # reductions
    "reduction": "reduction",  # sum, mean over non-spatial axes, max, argmax...
    # layout and data movement
    "reshape": "layout",  # view, reshape, flatten, squeeze, unsqueeze, expand
    "transpose": "layout",  # permute, transpose
    "concat": "layout",
    "slice": "layout",  # slice, select, split, chunk, narrow
    "pad": "layout",
    "copy": "layout",  # contiguous, clone, cast, roll, copy_
    "resize": "layout",  # upsample / interpolate / resize
    # lookups
    "embedding": "memory",
    "gather": "memory",  # gather, index, index_select, scatter
    # no-ops at inference that frameworks still keep in graphs
    "dropout": "noop",
    # anything unmapped
    "other": "other",
}

OP_KINDS: tuple[str, ...] = tuple(_KINDS)
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(_KINDS.values()))
KIND_INDEX: dict[str, int] = {k: i for i, k in enumerate(OP_KINDS)}

#: kinds whose FLOPs run on tensor cores / the dense-math ceiling
TENSOR_KINDS = frozenset(k for k, c in _KINDS.items() if c == "compute")


def category(kind: str) -> str:
    """Coarse category of an op kind (``compute``, ``norm``, ``layout``...)."""
    return _KINDS[kind]


def is_kind(kind: str) -> bool:
    return kind in _KINDS


# dtype names used throughout: short, framework-neutral
DTYPES: dict[str, int] = {
    "fp64": 8,
    "fp32": 4,
    "tf32": 4,
    "fp16": 2,
    "bf16": 2,
    "fp8": 1,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "int4": 1,  # stored packed in practice; counted as one byte per element here
    "bool": 1,
    "complex64": 8,
}


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of a normalized dtype name."""
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPES)}") from None


# ------------------------------------------------------------ workload vocabulary
#: what a vision/graph workload runs: a forward pass, or a training step (forward + backward + optimizer)
MODES: tuple[str, ...] = ("inference", "training")

#: the dtypes a graph workload is estimated in (``estimate(dtype=...)``, ``to_graph(dtype=...)``)
MODEL_DTYPES: tuple[str, ...] = ("fp32", "fp16", "bf16")

#: the dtypes mixed precision (``torch.autocast``) runs a graph workload's GEMMs in (``autocast=...``)
AUTOCAST_DTYPES: tuple[str, ...] = ("fp16", "bf16")

#: the optimizers a training step is estimated with (``"momentum"`` is accepted as ``"sgd_momentum"``)
OPTIMIZERS: tuple[str, ...] = ("sgd", "sgd_momentum", "adam", "adamw")

#: what a transformer workload runs: a full forward pass, a prompt's prefill, or one decode step
LLM_MODES: tuple[str, ...] = ("forward", "prefill", "decode")

#: the dtypes a transformer workload is estimated in (int8/int4: weight-only quantization)
LLM_DTYPES: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8", "int4")
