"""The CostGraph IR and its vocabulary: op kinds, dtypes, workload modes, optimizers."""

from ._graph import (
    GRAPH_FORMAT_VERSION,
    MAX_PARAMS,
    MAX_TENSOR_BYTES,
    CostGraph,
    GraphInput,
    Node,
    check_tensor,
    numel,
    tensor_ok,
)
from ._vocab import (
    AUTOCAST_DTYPES,
    CATEGORIES,
    DTYPES,
    LLM_DTYPES,
    LLM_MODES,
    MODEL_DTYPES,
    MODES,
    OP_KINDS,
    OPTIMIZERS,
    TENSOR_KINDS,
    VOCAB_VERSION,
    category,
    dtype_bytes,
    is_kind,
)

__all__ = [
    "CATEGORIES",
    "DTYPES",
    "GRAPH_FORMAT_VERSION",
    "LLM_DTYPES",
    "LLM_MODES",
    "MAX_PARAMS",
    "MAX_TENSOR_BYTES",
    "AUTOCAST_DTYPES",
    "MODEL_DTYPES",
    "MODES",
    "OPTIMIZERS",
    "OP_KINDS",
    "TENSOR_KINDS",
    "VOCAB_VERSION",
    "CostGraph",
    "GraphInput",
    "Node",
    "category",
    "check_tensor",
    "dtype_bytes",
    "is_kind",
    "numel",
    "tensor_ok",
    "NodeColumns",
    "node_columns",
]


def __getattr__(name: str):
    # the per-node columns need numpy: loaded on first use, so importing the IR stays light
    if name in ("NodeColumns", "node_columns"):
        from . import _columns

        return getattr(_columns, name)
    raise AttributeError(f"module 'costmodel.ir' has no attribute {name!r}")
