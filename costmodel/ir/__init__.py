"""The CostGraph IR and its op vocabulary."""

from ._graph import CostGraph, GraphInput, Node, numel
from ._vocab import CATEGORIES, OP_KINDS, VOCAB_VERSION, category, dtype_bytes

__all__ = [
    "CATEGORIES",
    "OP_KINDS",
    "VOCAB_VERSION",
    "CostGraph",
    "GraphInput",
    "Node",
    "category",
    "dtype_bytes",
    "numel",
]
