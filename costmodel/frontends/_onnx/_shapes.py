"""Shape inference: ONNX's whole-graph inference on a weightless copy of the model, per-node
inference fed with folded constants, and own rules for contrib, sequence and attention ops."""

from __future__ import annotations

import warnings

from ..._errors import ModelLoadError
from ._loading import _dims
from ._tables import (
    _Attrs, _CONTROL_FLOW, _KIND, _MAX_SEQ, _MS, _MS_ONLY, _MS_OPS, _ORT_DEFAULT_DOMAIN, _SAME_SHAPE, _SEQ_OPS,
    _STD_DOMAINS, _VALUE_LIMIT, _known, _label, _matmul_shape, _numel, _op,
)


class _Shapes:
    """The ``types`` of every value: ONNX shape inference, then per-node rules."""

    def _infer(self, fixed: dict[str, tuple[int, ...]]):
        import onnx
        from onnx import TensorProto, helper, numpy_helper, shape_inference

        g = self.g
        light = onnx.ModelProto()
        light.ir_version = max(self.proto.ir_version, 4)  # weights may be inputs without initializers
        light.opset_import.extend(self.proto.opset_import)
        lg = light.graph
        lg.name = g.name
        lg.node.extend(self.order)
        for vi in self.data_inputs:
            lg.input.append(helper.make_tensor_value_info(vi.name, vi.type.tensor_type.elem_type, list(fixed[vi.name])))
        for vi in self.weight_inputs:
            lg.input.append(vi)
        for name, t in self.inits.items():
            if isinstance(t, TensorProto):
                dims, et = list(t.dims), t.data_type
                small = _numel(dims) <= 4096 and t.data_location != TensorProto.EXTERNAL
                if small:
                    try:
                        arr = numpy_helper.to_array(t)
                        if arr.size == _numel(dims):
                            lg.initializer.append(t)
                            if arr.size <= _VALUE_LIMIT:
                                self.vals[name] = arr
                            continue
                    except Exception:  # noqa: BLE001 - stripped data: declare the type only
                        pass
                lg.input.append(helper.make_tensor_value_info(name, et, dims))
            else:  # sparse
                lg.input.append(helper.make_tensor_value_info(name, t.values.data_type, list(t.dims)))
        for o in g.output:
            et = o.type.tensor_type.elem_type if o.type.HasField("tensor_type") else 0
            lg.output.append(
                helper.make_tensor_value_info(o.name, et, None) if et else helper.make_empty_tensor_value_info(o.name)
            )
        # No data propagation (``data_prop=True``): ONNX materializes every 1-D tensor it could read as a
        # shape, and a broken file's 2**31-long vector (or a Range over a huge dimension) exhausts memory.
        # Shapes that depend on such values are inferred node by node in :meth:`walk`, fed with the
        # frontend's own constant folding, which computes small tensors only.
        try:
            inferred = shape_inference.infer_shapes(light, strict_mode=False)
        except Exception:  # noqa: BLE001 - fall back to per-node inference
            inferred = light
        ig = inferred.graph
        for vi in list(ig.input) + list(ig.value_info) + list(ig.output):
            if vi.type.HasField("tensor_type"):
                dims = _dims(vi)
                shape = tuple(d if isinstance(d, int) else None for d in dims) if dims is not None else None
                self.types[vi.name] = (shape, vi.type.tensor_type.elem_type or None)
        for t in ig.initializer:
            self.types[t.name] = (tuple(int(d) for d in t.dims), t.data_type)
        # static shapes the file declares for values inference could not type (outputs of custom ops)
        for vi in g.value_info:
            dims = _dims(vi) if vi.type.HasField("tensor_type") else None
            if _known(dims) and not _known(self._shape(vi.name)):
                self.types[vi.name] = (tuple(dims), vi.type.tensor_type.elem_type or None)

    def _shape(self, name: str):
        return self.types.get(name, (None, None))[0]

    def _etype(self, name: str):
        return self.types.get(name, (None, None))[1]

    def _infer_node(self, node, a: _Attrs) -> None:
        """Fill unknown output types of one node (per-node ONNX inference, then own rules)."""
        from onnx import defs, helper, numpy_helper, shape_inference

        op, dom = node.op_type, node.domain or ""
        if dom in _STD_DOMAINS and op not in _ORT_DEFAULT_DOMAIN:
            try:
                schema = defs.get_schema(op, self.opset, "")
                itypes = {}
                for i in node.input:
                    if not i:
                        continue
                    shp, et = self.types.get(i, (None, None))
                    if et is None:
                        raise KeyError(i)
                    itypes[i] = helper.make_tensor_type_proto(et, list(shp) if shp is not None else None)
                idata = {i: numpy_helper.from_array(self.vals[i], i) for i in node.input if i in self.vals}
                out = shape_inference.infer_node_outputs(
                    schema, node, itypes, idata, opset_imports=list(self.proto.opset_import),
                    ir_version=self.proto.ir_version,
                )
                for name, tp in out.items():
                    if not tp.HasField("tensor_type"):
                        continue
                    tt = tp.tensor_type
                    shape = None
                    if tt.HasField("shape"):
                        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
                    old = self.types.get(name, (None, None))
                    if not _known(old[0]):
                        self.types[name] = (shape, tt.elem_type or old[1])
            except Exception:  # noqa: BLE001 - fall through to own rules
                pass
        outs = [o for o in node.output if o]
        if not outs or _known(self._shape(outs[0])):
            return
        op = _op(node)  # own rules: only for ops matched by (domain, op type)
        ins = [self._shape(i) if i else None for i in node.input]
        in_et = self._etype(node.input[0]) if node.input and node.input[0] else None
        shape = None
        x = ins[0] if ins else None
        if op in _SAME_SHAPE:
            shape = x
        elif (op in ("FusedMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat") and len(ins) > 1
              and _known(x) and _known(ins[1])):
            a_s, b_s = list(x), list(ins[1])
            if a.int("transA", 0) and len(a_s) >= 2:
                a_s[-2], a_s[-1] = a_s[-1], a_s[-2]
            if a.int("transB", 0) and len(b_s) >= 2:
                b_s[-2], b_s[-1] = b_s[-1], b_s[-2]
            shape = _matmul_shape(a_s, b_s)
            in_et = 1 if op != "FusedMatMul" else in_et
        elif op == "FusedGemm" and len(ins) > 1 and _known(x) and _known(ins[1]) and len(x) == len(ins[1]) == 2:
            m = x[1] if a.int("transA", 0) else x[0]
            n = ins[1][0] if a.int("transB", 0) else ins[1][1]
            shape = (m, n)
        elif op == "MatMulNBits" and _known(x):
            shape = (*x[:-1], a.int("N", 0, minimum=0))
        elif op == "FusedConv" and len(ins) > 1 and _known(x) and _known(ins[1]):
            shape = self._conv_out(node, x, ins[1], a)
        elif op in ("Attention", "MultiHeadAttention", "GroupQueryAttention") and _known(x):
            self._attn_check(node, a)
            shape = self._attn_out_shape(node, a)
        if _known(shape):
            et = self._etype(outs[0]) or in_et
            self.types[outs[0]] = (tuple(shape), et)

    def _spatial(self, node, a: _Attrs, x, w) -> tuple[int, list[int], list[int], list[int], list[int] | None]:
        """Validated ``(spatial rank, strides, dilations, pads, kernel_shape)`` of a conv or pool.

        The input must be (batch, channels, spatial...) and a weight of the same rank; strides,
        dilations and kernel sizes are >= 1, pads >= 0, and each list has one entry per spatial axis
        (pads two) when the input's rank is known.
        """
        if x is not None and len(x) < 3:
            raise ModelLoadError(
                f"{_label(node)}: input {node.input[0]!r} has shape {self._fmt(x)}; {node.op_type} needs "
                "(batch, channels, spatial...) input"
            )
        if x is not None and w is not None and len(w) != len(x):
            raise ModelLoadError(
                f"{_label(node)}: weight shape {self._fmt(w)} does not match input shape {self._fmt(x)} (ranks differ)"
            )
        r = len(x) - 2 if x is not None else (len(w) - 2 if w is not None and len(w) >= 3 else None)
        k = a.ints("kernel_shape", minimum=1, length=r)
        s = a.ints("strides", minimum=1, length=r)
        d = a.ints("dilations", minimum=1, length=r)
        pads = a.ints("pads", minimum=0, length=None if r is None else 2 * r)
        if r is None:
            r = len(k or s or d or []) or (len(pads) // 2 if pads else 2)
        return r, s or [1] * r, d or [1] * r, pads or [0] * (2 * r), k

    def _conv_out(self, node, x, w, a: _Attrs) -> tuple[int, ...] | None:
        r, s, d, pads, _ = self._spatial(node, a, x, w)
        k = list(w[2:])
        ap = a.str("auto_pad", "NOTSET")
        out = [x[0], w[0]]
        for i in range(r):
            if ap in ("SAME_UPPER", "SAME_LOWER"):
                out.append(-(-x[2 + i] // s[i]))
            else:
                out.append((x[2 + i] + pads[i] + pads[i + r] - d[i] * (k[i] - 1) - 1) // s[i] + 1)
        return tuple(out)

    def _attn_check(self, node, a: _Attrs) -> None:
        """Head counts and input ranks of a fused attention op (:class:`ModelLoadError` naming the node)."""
        ins = list(node.input)

        def need(i: int, what: str, ranks: tuple[int, ...]) -> None:
            shp = self._shape(ins[i]) if i < len(ins) and ins[i] else None
            if shp is not None and len(shp) not in ranks:
                raise ModelLoadError(
                    f"{_label(node)}: {what} (input {i}, {ins[i]!r}) must have rank "
                    f"{' or '.join(map(str, ranks))}, found shape {self._fmt(shp)}"
                )

        for name in ("num_heads", "kv_num_heads", "q_num_heads"):
            a.int(name, minimum=1)
        op = node.op_type
        if op == "Attention" and (node.domain or "") == _MS:
            need(0, "the input", (3,))
            need(1, "the weights", (2,))
            need(4, "past", (5,))
            a.ints("qkv_hidden_sizes", minimum=0, length=3)
        elif op == "Attention":  # ai.onnx opset 23: (B, H, L, E) or (B, L, H*E) for q, k and v alike
            need(0, "the query", (3, 4))
            q = self._shape(ins[0])
            r = (len(q),) if q is not None else (3, 4)
            need(1, "the key", r)
            need(2, "the value", r)
            need(4, "past_key", (4,))
        elif op == "MultiHeadAttention":
            need(0, "the query", (3, 5))
            need(1, "the key", (3, 4, 5))
            need(2, "the value", (3, 4))
            need(6, "past_key", (4,))
        else:  # GroupQueryAttention
            need(0, "the query", (3,))
            need(1, "the key", (3,))
            need(2, "the value", (3,))
            need(3, "past_key", (4,))

    def _attn_out_shape(self, node, a):
        op = node.op_type
        q = self._shape(node.input[0])
        if op == "Attention" and (node.domain or "") == _MS:
            w = self._shape(node.input[1]) if len(node.input) > 1 else None
            hs = a.ints("qkv_hidden_sizes")
            dv = hs[2] if hs else (w[1] // 3 if _known(w) else None)
            return (q[0], q[1], dv) if dv else None
        if op == "Attention":  # ai.onnx opset 23
            v = self._shape(node.input[2]) if len(node.input) > 2 else None
            if len(q) == 4 and _known(v):
                return (*q[:-1], v[-1])
            hq, hkv = a.int("q_num_heads"), a.int("kv_num_heads")
            if _known(v) and hq and hkv:
                return (q[0], q[1], v[-1] // hkv * hq)
            return None
        n = a.int("num_heads", 1)
        if op == "MultiHeadAttention":
            if len(q) == 5:
                return (q[0], q[1], q[2] * q[4])
            k = self._shape(node.input[1]) if len(node.input) > 1 and node.input[1] else None
            v = self._shape(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if _known(k) and len(k) == 5:
                return (q[0], q[1], k[2] * k[4])
            if _known(v):
                return (q[0], q[1], v[-1] if len(v) == 3 else v[1] * v[3])
            return tuple(q)
        # GroupQueryAttention
        nkv = a.int("kv_num_heads", n)
        has_k = len(node.input) > 1 and node.input[1]
        h = q[-1] // (n + 2 * nkv) if not has_k else q[-1] // n
        return (q[0], q[1], n * h)

    def _seq_types(self, node, a: _Attrs) -> None:
        """Element shapes of sequence values (torch.split/chunk export as SplitToSequence + SequenceAt).

        Sequences of more than ``_MAX_SEQ`` elements, or whose split sizes are not a scalar or a
        list of non-negative sizes, stay unknown (the op is then counted as ``other``).
        """
        op = node.op_type
        ins, out = list(node.input), node.output[0]
        if op == "SplitToSequence":
            x, et = self.types.get(ins[0], (None, None))
            if not _known(x) or not x:
                return
            axis = a.int("axis", 0) % len(x)
            split = self.vals.get(ins[1]) if len(ins) > 1 and ins[1] else None
            n = x[axis]
            if split is None:
                if n > _MAX_SEQ:
                    return
                sizes = [1] * n
            elif split.ndim == 0:
                step = int(split)
                if step > 0 and -(-n // step) > _MAX_SEQ:
                    return
                sizes = [min(step, n - i) for i in range(0, n, step)] if step > 0 else [n]
            elif split.ndim == 1 and split.size <= _MAX_SEQ:
                sizes = [int(t) for t in split]
                if any(sz < 0 for sz in sizes):
                    return
            else:
                return
            keep = split is not None or a.int("keepdims", 1)
            shapes = []
            for sz in sizes:
                shp = list(x)
                shp[axis] = sz
                if not keep:
                    del shp[axis]
                shapes.append(tuple(shp))
            self.seq_shapes[out], self.seq_etype[out] = shapes, et
        elif op == "SequenceConstruct":
            shapes = [self._shape(i) for i in ins]
            if all(_known(s_) for s_ in shapes):
                self.seq_shapes[out] = [tuple(s_) for s_ in shapes]
                self.seq_etype[out] = self._etype(ins[0]) if ins else None
        elif op == "SequenceAt":
            shapes = self.seq_shapes.get(ins[0])
            pos = self._seq_pos(node)
            if shapes is not None and pos is not None and -len(shapes) <= pos < len(shapes):
                if not _known(self._shape(out)):
                    self.types[out] = (shapes[pos], self.seq_etype.get(ins[0]) or self._etype(out))
        elif op == "ConcatFromSequence":
            shapes = self.seq_shapes.get(ins[0])
            if not _known(self._shape(out)) and shapes and len({len(s_) for s_ in shapes}) == 1:
                axis = a.int("axis", 0)
                r = len(shapes[0]) + (1 if a.int("new_axis", 0) else 0)
                if r == 0:
                    return
                shp = list(shapes[0])
                if a.int("new_axis", 0):
                    shp.insert(axis % r, len(shapes))
                else:
                    shp[axis % r] = sum(s_[axis % r] for s_ in shapes)
                self.types[out] = (tuple(shp), self.seq_etype.get(ins[0]))

    def _seq_pos(self, node) -> int | None:
        """The constant position a ``SequenceAt`` reads (``None`` if not a known scalar)."""
        pos = self.vals.get(node.input[1]) if len(node.input) > 1 else None
        if pos is None or pos.size != 1 or not (pos.dtype.kind in "iu"):
            return None
        return int(pos.reshape(-1)[0])

    def _check_shapes(self, node) -> None:
        """After inference: guess the outputs of unsupported ops, remember where unknown shapes start."""
        if _op(node) in _SEQ_OPS:
            return
        for j, o in enumerate(node.output):
            if not o or (j > 0 and o not in self.used) or _known(self._shape(o)):
                continue
            roots = [self.unknown_root[i] for i in node.input if i in self.unknown_root]
            if roots:
                self.unknown_root[o] = roots[0]
                continue
            first = next((i for i in node.input if i in self.data and _known(self._shape(i))), None)
            if not self._supported(node) and self._shape(o) is None and first is not None:
                shp = self._shape(first)
                warnings.warn(
                    f"onnx: the output shape of node {node.name or o!r} ({self._opname(node)}) is unknown; "
                    f"assuming the shape of its input, {shp}",
                    UserWarning,
                    stacklevel=4,
                )
                self.types[o] = (shp, self._etype(o) or self._etype(first))
                continue
            self.unknown_root[o] = node

    def _supported(self, node) -> bool:
        op, dom = node.op_type, node.domain or ""
        if dom in _STD_DOMAINS and op in _CONTROL_FLOW:
            return False
        if dom in _STD_DOMAINS and op in _SEQ_OPS:
            return True
        return (dom in _STD_DOMAINS and op in _KIND and op not in _MS_ONLY) or (dom == _MS and op in _MS_OPS)
