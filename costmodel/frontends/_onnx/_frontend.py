"""The ONNX frontend's state: one object per model, assembled from the passes of the sibling
modules (loading, shape inference, folding, fusion planning, emission)."""

from __future__ import annotations

from typing import Any, Hashable

from .._builder import GraphBuilder
from ._emission import _Emitter
from ._folding import _Walk
from ._fusion import _FusionPlanner
from ._loading import _Loading
from ._params import _ParamUse
from ._shapes import _Shapes


class _OnnxFrontend(_Loading, _Shapes, _Walk, _FusionPlanner, _ParamUse, _Emitter):
    """One model on its way to a CostGraph: the proto, the value types, folded constants and the builder."""

    def __init__(self, proto, name: str, mode: str) -> None:
        import onnx

        if proto.functions:
            try:
                import onnx.inliner

                proto = onnx.inliner.inline_local_functions(proto)
            except Exception:  # noqa: BLE001 - fall back to treating calls as unsupported ops
                pass
        self.proto = proto
        self.g = proto.graph
        self.mode = mode
        self.training = mode == "training"
        self.opsets = {(o.domain or ""): int(o.version) for o in proto.opset_import}
        if "ai.onnx" in self.opsets:
            self.opsets.setdefault("", self.opsets["ai.onnx"])
        self.opset = self.opsets.get("", 1)
        self.b = GraphBuilder(name, "onnx")
        self.types: dict[str, tuple[tuple | None, int | None]] = {}  # name -> (shape|None, elem_type)
        self.vals: dict[str, Any] = {}  # small constant tensors (numpy)
        self.data: set[str] = set()
        self.weights: set[str] = set()  # names that are weights or re-descriptions of one
        self.derived: set[str] = set()  # weights computed from weights (their own tensors, no parameters)
        self.attn_masks: set[str] = set()  # additive inputs of fused attentions
        self.const_reads: set[str] = set()  # weights a fusion reads as constants (identity affines)
        self.resolve: dict[str, Hashable] = {}  # onnx name -> builder key
        self.counted: list = []
        self.seq_shapes: dict[str, list[tuple[int, ...]]] = {}  # sequence value -> element shapes
        self.seq_etype: dict[str, int | None] = {}
        self.seq_keys: dict[str, list[Hashable]] = {}  # sequence value -> builder keys of its elements
        self.unknown_root: dict[str, Any] = {}  # value -> node where shape inference first failed
