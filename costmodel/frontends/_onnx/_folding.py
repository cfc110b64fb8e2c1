"""Constant folding and the walk that decides which nodes carry data: small shape tensors are
computed with numpy, weights and their re-descriptions are tracked, data nodes are counted."""

from __future__ import annotations

import math

from ..._errors import DynamicShapeError, ModelLoadError
from ...ir import check_tensor
from ._loading import _dims
from ._tables import (
    _Attrs, _PASS_OPS, _QUANT_TYPES, _QWEIGHT_POS, _SEQ_OPS, _STD_DOMAINS, _VALUE_LIMIT, _attrs, _is_float, _known,
    _label, _numel, _op, _subgraph_refs, dtype_name,
)


# ---------------------------------------------------------- constant folding
def _np_dtype(elem_type: int):
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(int(elem_type))


def _fits(shape) -> bool:
    """Whether a folded constant of this shape is small enough to compute (and keep)."""
    return all(int(d) >= 0 for d in shape) and _numel([int(d) for d in shape]) <= _VALUE_LIMIT


def _eval_node(node, a: _Attrs, vals: dict, types: dict, opset: int):
    """Evaluate a node on constant inputs with numpy; ``None`` if unsupported.

    Only results of at most ``_VALUE_LIMIT`` elements are computed: the size of a result is
    checked before numpy allocates it, so a huge shape tensor cannot exhaust memory here.
    """
    import numpy as np

    op = node.op_type
    ins = list(node.input)

    def v(i):
        return vals.get(ins[i]) if i < len(ins) and ins[i] else None

    if op in ("Shape", "Size"):
        shp = types.get(ins[0], (None, None))[0] if ins and ins[0] else None
        if not _known(shp):
            return None
        if op == "Size":
            return [np.array(_numel(shp), dtype=np.int64)]
        r = len(shp)
        start, end = a.int("start", 0), a.int("end", r)
        start, end = max(0, start + r if start < 0 else start), min(r, end + r if end < 0 else end)
        return [np.array(shp[start:end], dtype=np.int64)]
    args = [v(i) for i in range(len(ins))]
    need = {
        "Identity": 1, "Cast": 1, "CastLike": 1, "Neg": 1, "Abs": 1, "Sqrt": 1, "Floor": 1, "Ceil": 1,
        "Not": 1, "Reciprocal": 1, "Transpose": 1, "Flatten": 1, "ConstantOfShape": 1, "Squeeze": 1,
        "Unsqueeze": 1, "Gather": 2, "Reshape": 2, "Expand": 2, "Tile": 2, "Range": 3, "Where": 3,
        "Slice": 1, "Concat": len(ins), "Add": 2, "Sub": 2, "Mul": 2, "Div": 2, "Mod": 2, "Equal": 2,
        "Less": 2, "Greater": 2, "LessOrEqual": 2, "GreaterOrEqual": 2, "And": 2, "Or": 2, "Pow": 2,
        "Max": len(ins), "Min": len(ins), "ReduceProd": 1, "ReduceSum": 1,
    }.get(op)
    if need is None or len(args) < need or any(x is None for x in args[:need]):
        return None
    x = args[0]
    try:
        if op in ("Where", "Max", "Min", "Add", "Sub", "Mul", "Div", "Mod", "Pow", "Equal", "Less", "Greater",
                  "LessOrEqual", "GreaterOrEqual", "And", "Or"):
            if not _fits(np.broadcast_shapes(*(np.shape(t) for t in args[:need]))):
                return None
        if op in _ARITH:
            return _fold_arith(op, a, args, x)
        return _fold_layout(op, a, ins, args, x, types, opset)
    except ModelLoadError:
        raise
    except Exception:  # noqa: BLE001 - folding is best effort
        return None


_ARITH = frozenset({"Add", "Sub", "Mul", "Mod", "Pow", "Div", "Equal", "Less", "Greater", "LessOrEqual",
                    "GreaterOrEqual", "And", "Or", "Max", "Min", "ReduceProd", "ReduceSum"})


def _fold_layout(op: str, a: _Attrs, ins: list, args: list, x, types: dict, opset: int):
    """Fold a cast, unary or layout op (Identity ... Concat) of :func:`_eval_node`."""
    import numpy as np

    if op == "Identity":
        return [x]
    if op == "Cast":
        return [x.astype(_np_dtype(a.int("to")))]
    if op == "CastLike":
        et = types.get(ins[1], (None, None))[1]
        return [x.astype(_np_dtype(et))] if et else None
    if op in ("Neg", "Abs", "Sqrt", "Floor", "Ceil", "Not", "Reciprocal"):
        f = {"Neg": np.negative, "Abs": np.abs, "Sqrt": np.sqrt, "Floor": np.floor, "Ceil": np.ceil,
             "Not": np.logical_not, "Reciprocal": np.reciprocal}[op]
        return [np.asarray(f(x)).astype(x.dtype)]
    if op == "Transpose":
        return [np.transpose(x, a.ints("perm") or None)]
    if op == "Flatten":
        ax = a.int("axis", 1) % max(x.ndim, 1) if x.ndim else 0
        return [x.reshape(_numel(x.shape[:ax]), -1)]
    if op == "ConstantOfShape":
        shape = tuple(int(d) for d in np.asarray(x).reshape(-1))
        if not _fits(shape):
            return None
        fill = a.tensor("value")
        from onnx import numpy_helper

        base = numpy_helper.to_array(fill).reshape(-1)[0] if fill is not None else np.float32(0)
        return [np.full(shape, base, dtype=np.asarray(base).dtype)]
    if op in ("Squeeze", "Unsqueeze"):
        axes = a.ints("axes")
        if axes is None and len(ins) > 1 and ins[1]:
            if args[1] is None:
                return None
            axes = [int(t) for t in np.asarray(args[1]).reshape(-1)]
        if op == "Squeeze":
            if axes is None:
                return [np.squeeze(x)]
            return [np.squeeze(x, axis=tuple(int(t) % x.ndim for t in axes))]
        r = x.ndim + len(axes)
        out = x
        for ax in sorted(int(t) % r for t in axes):
            out = np.expand_dims(out, ax)
        return [out]
    if op == "Gather":
        return [np.take(x, args[1].astype(np.int64), axis=a.int("axis", 0))]
    if op == "Reshape":
        shape = [int(t) for t in np.asarray(args[1]).reshape(-1)]
        if not a.int("allowzero", 0):
            shape = [x.shape[i] if d == 0 and i < x.ndim else d for i, d in enumerate(shape)]
        return [x.reshape(shape)]
    if op == "Expand":
        shp = np.broadcast_shapes(x.shape, tuple(int(t) for t in np.asarray(args[1]).reshape(-1)))
        return [np.broadcast_to(x, shp).copy()] if _fits(shp) else None
    if op == "Tile":
        reps = [int(t) for t in np.asarray(args[1]).reshape(-1)]
        if len(reps) != x.ndim or not _fits([d * r for d, r in zip(x.shape, reps)]):
            return None
        return [np.tile(x, reps)]
    if op == "Range":
        start, limit, delta = (float(np.asarray(t).reshape(-1)[0]) for t in args[:3])
        if delta == 0 or not all(map(math.isfinite, (start, limit, delta))):
            return None
        if max(0, math.ceil((limit - start) / delta)) > _VALUE_LIMIT:
            return None
        return [np.arange(args[0], args[1], args[2]).astype(np.asarray(args[0]).dtype)]
    if op == "Where":
        return [np.where(args[0], args[1], args[2])]
    if op == "Slice":
        if opset < 10:
            starts, ends, axes, steps = a.ints("starts"), a.ints("ends"), a.ints("axes"), None
            if starts is None or ends is None:
                return None
        else:
            if len(args) < 3 or args[1] is None or args[2] is None:
                return None
            starts, ends = list(args[1]), list(args[2])
            axes = list(args[3]) if len(args) > 3 and args[3] is not None else None
            steps = list(args[4]) if len(args) > 4 and args[4] is not None else None
        axes = axes if axes is not None else list(range(len(starts)))
        steps = steps if steps is not None else [1] * len(starts)
        sl = [slice(None)] * x.ndim
        for s, e, ax, st in zip(starts, ends, axes, steps):
            sl[int(ax) % x.ndim] = slice(int(s), int(e), int(st))
        return [x[tuple(sl)]]
    if op == "Concat":
        return [np.concatenate([np.atleast_1d(t) for t in args], axis=a.int("axis", 0))]
    return None


def _fold_arith(op: str, a: _Attrs, args: list, x):
    """Fold an arithmetic, comparison or reduction op of :func:`_eval_node`."""
    import numpy as np

    if op in ("Add", "Sub", "Mul", "Mod", "Pow"):
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Mod": np.mod, "Pow": np.power}[op]
        return [np.asarray(f(x, args[1])).astype(x.dtype)]
    if op == "Div":
        if np.issubdtype(x.dtype, np.integer):
            return [np.trunc(x / args[1]).astype(x.dtype)]
        return [np.asarray(x / args[1]).astype(x.dtype)]
    if op in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or"):
        f = {"Equal": np.equal, "Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
             "GreaterOrEqual": np.greater_equal, "And": np.logical_and, "Or": np.logical_or}[op]
        return [f(x, args[1])]
    if op in ("Max", "Min"):
        f = np.maximum if op == "Max" else np.minimum
        out = args[0]
        for t in args[1:]:
            out = f(out, t)
        return [out]
    if op in ("ReduceProd", "ReduceSum"):
        axes = a.ints("axes")
        if axes is None and len(args) > 1 and args[1] is not None:
            axes = [int(t) for t in np.asarray(args[1]).reshape(-1)]
        f = np.prod if op == "ReduceProd" else np.sum
        return [np.asarray(f(x, axis=tuple(axes) if axes else None, keepdims=bool(a.int("keepdims", 1))))]
    return None


class _Walk:
    """Registers inputs and weights, folds constants and collects the nodes that carry data."""

    def _register_weights(self) -> None:
        from onnx import TensorProto

        b = self.b
        qweights, buffers = set(), set()
        for n in self.g.node:
            for i, name in enumerate(n.input):
                if i in _QWEIGHT_POS.get(_op(n), ()):
                    qweights.add(name)
                if _op(n) == "BatchNormalization" and i in (3, 4):
                    buffers.add(name)  # running statistics: buffers in PyTorch, not parameters
        for vi in self.weight_inputs:
            for p in vi.metadata_props:
                if p.key == "pkg.torch.export.graph_signature.InputSpec.kind" and p.value != "PARAMETER":
                    buffers.add(vi.name)
        for name, t in self.inits.items():
            if isinstance(t, TensorProto):
                dims, et = [int(d) for d in t.dims], t.data_type
            else:
                dims, et = [int(d) for d in t.dims], t.values.data_type
            dt = dtype_name(et)
            # a quantized weight, or the int32 bias of a quantized convolution
            quant = dt in _QUANT_TYPES or dt == "int32"
            trainable = _is_float(dt) or (quant and name in qweights and _numel(dims) > 1)
            trainable = trainable and name not in buffers
            b.add_param(name, dims, dt, trainable=trainable)
            self.types.setdefault(name, (tuple(dims), et))
            self.weights.add(name)
            self.resolve[name] = name
        for vi in self.weight_inputs:
            dims = _dims(vi)
            if not _known(dims):
                raise DynamicShapeError(
                    f"weight {vi.name!r} is declared with a dynamic shape {self._fmt(dims or [])}; "
                    "weights need static shapes"
                )
            dt = dtype_name(vi.type.tensor_type.elem_type)
            b.add_param(vi.name, dims, dt, trainable=(_is_float(dt) or vi.name in qweights) and vi.name not in buffers)
            self.types[vi.name] = (tuple(dims), vi.type.tensor_type.elem_type)
            self.weights.add(vi.name)
            self.resolve[vi.name] = vi.name

    def walk(self, fixed: dict[str, tuple[int, ...]]) -> None:
        from onnx import helper

        b = self.b
        self._register_weights()
        for vi in self.data_inputs:
            et = vi.type.tensor_type.elem_type
            b.add_input(vi.name, fixed[vi.name], dtype_name(et))
            self.types[vi.name] = (fixed[vi.name], et)
            self.data.add(vi.name)
            self.resolve[vi.name] = vi.name
        used = set(o.name for o in self.g.output)
        for n in self.g.node:
            used.update(i for i in n.input if i)
            used.update(_subgraph_refs(n))
        self.used = used
        self.graph_outputs = {o.name for o in self.g.output}
        for node in self.order:
            op, dom = _op(node), node.domain or ""
            a = _attrs(node)
            outs = [o for o in node.output if o]
            if op == "Constant" and dom in _STD_DOMAINS:
                self._constant(node, a)
                continue
            ins = list(node.input) + _subgraph_refs(node)
            if op in ("Shape", "Size", "SequenceLength") and dom in _STD_DOMAINS:
                relevant: list[str] = []
            elif op == "CastLike":
                relevant = ins[:1]
            else:
                relevant = ins
            if any(i in self.data for i in relevant if i):
                if op in _SEQ_OPS and dom in _STD_DOMAINS:
                    self._seq_types(node, a)
                elif any(not _known(self._shape(o)) for o in outs):
                    self._infer_node(node, a)
                    self._check_shapes(node)
                self.data.update(outs)
                self.counted.append((node, a))
                for o in outs:
                    self.resolve[o] = o
                continue
            # not data: constant-fold small tensors and track re-descriptions of weights
            if op == "SequenceLength" and node.input and node.input[0] in self.seq_shapes:
                import numpy as np

                self.vals[outs[0]] = np.array(len(self.seq_shapes[node.input[0]]), dtype=np.int64)
                self.types[outs[0]] = ((), 7)
                continue
            if dom in _STD_DOMAINS:
                res = _eval_node(node, a, self.vals, self.types, self.opset)
                if res is not None:
                    for o, arr in zip(outs, res):
                        if arr.size <= _VALUE_LIMIT:
                            self.vals[o] = arr
                            et = helper.np_dtype_to_tensor_dtype(arr.dtype)
                            if not _known(self._shape(o)):
                                self.types[o] = (tuple(int(d) for d in arr.shape), et)
            if any(not _known(self._shape(o)) for o in outs if o in self.used):
                self._infer_node(node, a)
            w = [i for i in (ins[:1] if op == "CastLike" else ins) if i in self.weights]
            if w and outs:
                src = self.resolve[w[0]]
                if op in _PASS_OPS and len(w) == 1 and w[0] not in self.derived:
                    self.resolve[outs[0]] = src
                    self.weights.add(outs[0])
                else:
                    # computed from weights (a standardized or reparameterized convolution
                    # kernel, and a reshape of one): a tensor of its own shape that no
                    # parameter count sees, and still a weight to the operators that read it
                    shp, et = self.types.get(outs[0], (None, None))
                    if _known(shp) and et and _is_float(dtype_name(et)):
                        b.add_constant(outs[0], shp, dtype_name(et))
                        self.resolve[outs[0]] = outs[0]
                        self.weights.add(outs[0])
                        self.derived.add(outs[0])

    def _constant(self, node, a: _Attrs) -> None:
        from onnx import AttributeProto, helper, numpy_helper

        out = node.output[0]
        arr = None
        for at in node.attribute:
            if at.name == "value" and at.type == AttributeProto.TENSOR:
                check_tensor([int(d) for d in at.t.dims], dtype_name(at.t.data_type), f"the value of {_label(node)}")
            try:
                if at.name == "value" and at.type == AttributeProto.TENSOR:
                    t = at.t
                    dims, et = tuple(int(d) for d in t.dims), t.data_type
                    self.types[out] = (dims, et)
                    if _numel(dims) <= _VALUE_LIMIT:
                        arr = numpy_helper.to_array(t)
                    if _numel(dims) > 1:
                        self.b.add_constant(out, dims, dtype_name(et))
                        self.resolve[out] = out
                elif at.name == "sparse_value":
                    self.types[out] = (tuple(int(d) for d in at.sparse_tensor.dims), at.sparse_tensor.values.data_type)
                else:
                    v = helper.get_attribute_value(at)
                    import numpy as np

                    dt = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
                          "value_ints": np.int64}.get(at.name)
                    if dt is not None:
                        arr = np.asarray(v, dtype=dt)
                        self.types[out] = (tuple(arr.shape), helper.np_dtype_to_tensor_dtype(arr.dtype))
            except Exception:  # noqa: BLE001 - undecodable constant: type only
                continue
        if arr is not None:
            self.vals[out] = arr
