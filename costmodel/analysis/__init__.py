"""Static analysis of a CostGraph: per-op costs, memory, roofline latency, the host/device timeline;
and memory from the execution path (``alloctrace``: allocation trace, ``allocator``: the caching
allocator's replay, ``memreplay``: peak device memory of a workload)."""

from ._cast import apply_autocast, autocast_graph, cast_graph
from ._memory import (
    MemoryBreakdown,
    allocator_reserved_bytes,
    memory_breakdown,
    memory_breakdown_many,
    peak_activation_bytes,
    saved_activation_bytes,
)
from ._opcost import experts_hit, op_cost
from ._roofline import BACKWARD_FACTOR, RooflineConfig, RooflineResult, average_power_w, roofline, roofline_many
from ._stepctx import AUTOCAST_DTYPES, check_autocast

__all__ = [
    "AUTOCAST_DTYPES",
    "BACKWARD_FACTOR",
    "MemoryBreakdown",
    "RooflineConfig",
    "RooflineResult",
    "allocator_reserved_bytes",
    "apply_autocast",
    "average_power_w",
    "autocast_graph",
    "cast_graph",
    "check_autocast",
    "memory_breakdown",
    "memory_breakdown_many",
    "experts_hit",
    "op_cost",
    "peak_activation_bytes",
    "replay_timeline",
    "roofline",
    "roofline_many",
    "saved_activation_bytes",
]


def __getattr__(name: str):
    # the timeline needs numpy: loaded on first use, so importing the analysis stays light
    if name == "replay_timeline":
        from ._timeline import replay

        return replay
    raise AttributeError(f"module 'costmodel.analysis' has no attribute {name!r}")
