"""Emission: the CostGraph nodes of the counted ONNX nodes and of the planned fusions."""

from __future__ import annotations

import ast
import warnings
from typing import Any, Hashable, Iterable, Sequence

from ..._errors import ModelLoadError
from ...ir import check_tensor
from .._builder import _Tensor
from .._common import einsum_contraction, spatial_mean_is_pool
from ._tables import (
    _ATTR_INPUTS, _Attrs, _KIND, _MS, _OPERANDS, _SEQ_OPS, _STD_DOMAINS, _TIR_DOMAIN, _VIEW, _is_float, _known, _numel, _op,
    _opname, _subgraph_refs, _sym_pads, dtype_name,
)


def _attn_access(fe, ins: list):
    """``key(i)``, ``shape(i)`` and ``view(key, shape)`` of an attention node's inputs."""

    def key(i):
        return fe._key(ins[i]) if i < len(ins) and ins[i] else None

    def shape(i):
        return fe._shape(ins[i]) if i < len(ins) and ins[i] else None

    def view(k, shp):
        return None if k is None else fe._view(k, shp)

    return key, shape, view


def _norm_attrs(kind: str, a, x) -> dict:
    """What says how many rows a norm reduces: a group norm's ``num_groups``, the shape a layer norm
    normalizes (its input's dimensions from ``axis`` on)."""
    if kind == "group_norm":
        return {"groups": a.int("num_groups", minimum=1)} if "num_groups" in a else {}
    axis = a.int("axis", -1)
    return {"normalized_shape": list(x[axis % len(x):])} if x and -len(x) <= axis < len(x) else {}


class _Emitter:
    """Builds the CostGraph nodes (op kind, operands, outputs and attributes)."""

    def _key(self, name: str) -> Hashable | None:
        if not name:
            return None
        k = self.resolve.get(name)
        if k is None or not self.b.has(k):
            return None
        return k

    def _operands(self, node, positions: Iterable[int] | None = None) -> list[Hashable]:
        skip = _ATTR_INPUTS.get(_op(node), frozenset())
        names = list(node.input)
        pos = list(positions) if positions is not None else [i for i in range(len(names)) if i not in skip]
        keys = []
        for i in pos:
            if i >= len(names):
                continue
            name = names[i]
            k = self._key(name)
            if k is None:
                continue
            if name not in self.data and name not in self.weights:
                shp = self._shape(name)
                if shp is not None and _known(shp) and _numel(shp) <= 1:
                    continue  # a scalar constant: an attribute in PyTorch
            keys.append(k)
        for name in _subgraph_refs(node):
            k = self._key(name)
            if k is not None and k not in keys:
                keys.append(k)
        return keys

    def _outputs(self, node, kind: str) -> list[tuple[Hashable, tuple[int, ...], str]]:
        outs = []
        for j, o in enumerate(node.output):
            if not o or (j > 0 and o not in self.used and node.op_type != "Split"):  # Split writes every piece
                continue
            shp, et = self.types.get(o, (None, None))
            if not _known(shp):
                if kind == "other":  # unsupported op anyway: unknown dims count as 1
                    shp = tuple(d if isinstance(d, int) and d >= 0 else 1 for d in shp or ())
                    warnings.warn(
                        f"onnx: the output shape of node {node.name or o!r} ({node.op_type}) is unknown; "
                        f"assuming {shp}",
                        UserWarning,
                        stacklevel=4,
                    )
                else:
                    root = self.unknown_root.get(o, node)
                    cause = ""
                    if root is not node:
                        cause = (f"; it depends on node {root.name or root.output[0]!r} ({self._opname(root)}), "
                                 "whose output shape could not be inferred")
                    raise ModelLoadError(
                        f"could not infer the shape of output {o!r} of node {node.name or o!r} "
                        f"({self._opname(node)}): {self._fmt(shp) if shp is not None else 'unknown'}{cause}. "
                        "Shapes that depend on data values (NonZero, loops...) cannot be featurized; give "
                        "concrete input shapes or simplify the model (e.g. with onnxsim)"
                    )
            if et is None:
                first = next((i for i in node.input if i and self._etype(i)), None)
                et = self._etype(first) if first else 1
            outs.append((o, tuple(int(d) for d in shp), dtype_name(et)))
        return outs

    @staticmethod
    def _opname(node) -> str:
        return _opname(node)

    def _view(self, key: Hashable, shape: Sequence[int]) -> Hashable:
        """A key for the same tensor seen with another shape (attention's (..., L, E) operands)."""
        t = self.b._tensors[key]
        check_tensor(shape, t.dtype, f"a view of {key!r}")
        vkey = ("view", key, tuple(int(d) for d in shape))
        # the same tensor: a view of data is data (a node reading only views of it still reads the input)
        self.b._tensors[vkey] = _Tensor(tuple(int(d) for d in shape), t.dtype, t.producer, t.is_param, data=t.data)
        return vkey

    def _scope(self, node) -> str:
        for p in node.metadata_props:
            if p.key == "pkg.torch.onnx.name_scopes":
                try:
                    scopes = ast.literal_eval(p.value)
                    if len(scopes) >= 2:
                        return str(scopes[-2])
                except (ValueError, SyntaxError):
                    pass
        return node.name

    def emit(self) -> None:
        for idx, (node, a) in enumerate(self.counted):
            if idx in self.absorbed:
                continue
            if idx in self.fused:
                self._emit_fused(idx, self.fused[idx])
            else:
                self._emit(node, a)

    def _emit_fused(self, idx: int, spec: tuple) -> None:
        b = self.b
        node = self._node(idx)
        scope = self._scope(node)
        if spec[0] == "attention":
            _, q, k, k_view, v, extra = spec
            qk, kk, vk = self._key(q), self._key(k), self._key(v)
            if qk is None or kk is None or vk is None:
                return self._emit(node, self.counted[idx][1])
            if k_view is not None:
                kk = self._view(kk, k_view)
            ins = [qk, kk, vk] + [x for x in (self._key(e) for e in extra) if x is not None]
            outs = self._outputs(node, "attention")
            b.add_node("onnx.MatMul+Softmax+MatMul", "attention", ins, outs, {}, scope=scope)
        elif spec[0] == "linear":
            _, mm, add = spec
            ins = self._operands(mm) + [k for k in self._operands(add) if k != self._key(mm.output[0])]
            sa = self._shape(mm.input[0])
            k = float(sa[-1]) if sa else 1.0
            b.add_node("onnx.MatMul+Add", "matmul", ins, self._outputs(add, "matmul"), {"k": k}, scope=scope)
        elif spec[0] == "group_norm":
            _, x, ws, groups = spec
            ins = [k for k in [self._key(x)] + [self._key(w) for w in ws] if k is not None]
            b.add_node("onnx.InstanceNormalization(GroupNorm)", "group_norm", ins,
                       self._outputs(node, "group_norm"), {"groups": groups}, scope=scope)
        elif spec[0] == "gelu":
            _, x, last, approximate = spec
            xk = self._key(x)
            op = "onnx.Erf(GELU)" if approximate == "none" else "onnx.Tanh(GELU)"
            b.add_node(op, "gelu", [xk] if xk is not None else [], self._outputs(last, "gelu"),
                       {"approximate": approximate}, scope=scope)
        elif spec[0] == "gated":
            _, gate, mul = spec
            kind = "silu" if gate.op_type == "Sigmoid" else "hardswish"
            ins = self._operands(gate)
            b.add_node(f"onnx.{gate.op_type}+Mul", kind, ins, self._outputs(mul, kind), {}, scope=scope)

    def _emit(self, node, a: _Attrs) -> None:
        b = self.b
        op, dom = node.op_type, node.domain or ""
        if op in _SEQ_OPS and dom in _STD_DOMAINS and self._emit_seq(node, a):
            return
        opname = self._opname(node)
        scope = self._scope(node)
        if dom == _TIR_DOMAIN and "kind" in a:
            return self._emit_tir(node, a, opname, scope)
        if not self._supported(node) or op in _SEQ_OPS:
            b.warn_unsupported(opname)
            b.add_node(opname, "other", self._operands(node), self._outputs(node, "other"), {}, scope=scope)
            return
        kind = _KIND[op]
        if kind == "attention":
            return self._emit_attention(node, a, opname, scope)
        kind, view, attrs, in_keys = self._kind_attrs(node, a, op, kind)
        if in_keys is None:
            in_keys = self._operands(node)
        # ONNX runtimes materialize Expand's output: its readers read the expanded tensor
        b.add_node(opname, kind, in_keys, self._outputs(node, kind), attrs, is_view=view, scope=scope,
                   aliases=view and op != "Expand")

    def _emit_tir(self, node, a: _Attrs, opname: str, scope: str) -> None:
        """A TIR kernel the Relax frontend has costed (``call_tir``): its kind, FLOPs and MACs are
        attributes of the node."""
        from ...ir import is_kind

        kind = a.str("kind", "other")
        if not is_kind(kind):
            raise ModelLoadError(f"{opname}: unknown op kind {kind!r}")
        attrs: dict[str, Any] = {}
        for name in ("flops", "macs", "k"):
            v = a.float(name)
            if v is not None:
                attrs[name] = float(v)
        for name in ("kernel", "stride", "padding", "dilation"):
            if name in a:
                attrs[name] = list(a.ints(name))
        if "groups" in a:
            attrs["groups"] = a.int("groups", 1, minimum=1)
        view = bool(a.int("view", 0))
        self.b.add_node(opname, kind, self._operands(node), self._outputs(node, kind), attrs, is_view=view,
                        scope=scope, aliases=view)

    def _kind_attrs(
        self, node, a: _Attrs, op: str, kind: str
    ) -> tuple[str, bool, dict[str, Any], list[Hashable] | None]:
        """The kind (refined: embedding, avg_pool...), view flag, attributes and operands of a node."""
        view = op in _VIEW
        attrs: dict[str, Any] = {}
        in_keys: list[Hashable] | None = None
        ins = list(node.input)

        def shp(i):
            return self._shape(ins[i]) if i < len(ins) and ins[i] else None

        if kind in ("conv", "conv_transpose"):
            pos = _OPERANDS.get(op, (0, 1, 2))
            in_keys = self._operands(node, pos)
            x, w = shp(pos[0]), shp(pos[1])
            r, strides, dilations, _, _ = self._spatial(node, a, x, w)
            attrs["stride"] = strides
            attrs["padding"] = self._padding(node, a, x, w, r, kind)
            attrs["dilation"] = dilations
            attrs["groups"] = a.int("group", 1, minimum=1)
            if w:
                attrs["kernel"] = list(w[2:])
        elif kind == "matmul":
            pos = _OPERANDS.get(op)
            in_keys = self._operands(node, pos)
            attrs["k"] = self._matmul_k(node, a)
        elif kind == "batch_norm":
            tm = a.int("training_mode")
            attrs["training"] = bool(tm) if tm is not None else self.training
        elif kind in ("max_pool", "avg_pool"):
            x = shp(0)
            r = len(x) - 2 if x else 2
            if op.startswith("Global"):
                attrs["output_size"] = [1] * r
            else:
                k = self._spatial(node, a, x, None)[4] or []  # validates kernel_shape, strides, pads
                if k:
                    attrs["kernel"] = k
                attrs["stride"] = a.ints("strides") or [1] * len(k)
                p = self._padding(node, a, x, None, len(k), kind)
                if p:
                    attrs["padding"] = p
        elif kind == "reduction":
            if op.startswith("Reduce"):
                axes = self._axes(node, a)
            elif op == "CumSum" and len(ins) > 1 and ins[1] in self.vals and self.vals[ins[1]].size == 1:
                axes = [int(self.vals[ins[1]].reshape(-1)[0])]
            else:  # ArgMax/ArgMin/TopK/LpNormalization
                axes = [a.int("axis", -1 if op in ("TopK", "LpNormalization") else 0)]
            x = shp(0)
            if op == "ReduceMean" and x and spatial_mean_is_pool(len(x), axes):
                kind = "avg_pool"
                attrs["output_size"] = [1] * (len(x) - 2)
            elif axes is not None:
                attrs["axes"] = axes
        elif kind == "softmax":
            attrs["axes"] = [a.int("axis", -1 if self.opset >= 13 else 1)]
        elif kind in ("group_norm", "layer_norm"):
            attrs.update(_norm_attrs(kind, a, shp(0)))
        elif kind == "dropout":
            train = self.training
            if len(ins) > 2 and ins[2] in self.vals:
                train = bool(self.vals[ins[2]].reshape(-1)[0])
            elif "is_test" in a:
                train = not a.int("is_test")
            view = not train
            if train:
                kind = "elementwise"
        elif kind == "copy" and op in ("Cast", "CastLike"):
            ie = self._etype(ins[0])
            oe = self._etype(node.output[0])
            if ie is not None and ie == oe:
                view = True
            else:
                attrs["cast"] = True
        elif op == "Gather":
            data_in, idx_in = ins[0], ins[1] if len(ins) > 1 else ""
            if data_in in self.weights:
                kind = "embedding"
            elif idx_in not in self.data and shp(1) == ():
                kind = "slice"
            attrs["axis"] = a.int("axis", 0)
        elif kind == "pad":
            if len(ins) > 1 and ins[1] in self.vals:
                pads = [int(t) for t in self.vals[ins[1]].reshape(-1)]
                attrs["padding"] = pads
            elif "pads" in a:
                attrs["padding"] = a.ints("pads")
            attrs["mode"] = a.str("mode", "constant")
        elif kind == "resize":
            attrs["mode"] = a.str("mode", "nearest")
        elif kind == "transpose" and "perm" in a:
            attrs["perm"] = a.ints("perm")
        elif kind == "concat":
            attrs["axis"] = a.int("axis", 0)
        return kind, view, attrs, in_keys

    def _emit_seq(self, node, a: _Attrs) -> bool:
        """Sequence ops; False if the element shapes are unknown (then counted as ``other``)."""
        b = self.b
        op, ins, out = node.op_type, list(node.input), node.output[0]
        if op == "SplitToSequence":
            shapes, xk = self.seq_shapes.get(out), self._key(ins[0])
            if shapes is None or xk is None:
                return False
            dt = dtype_name(self.seq_etype.get(out))
            outs = [((out, i), s_, dt) for i, s_ in enumerate(shapes)]
            b.add_node("onnx.SplitToSequence", "slice", [xk], outs, {"axis": a.int("axis", 0)},
                       scope=self._scope(node))
            self.seq_keys[out] = [k for k, _, _ in outs]
            return True
        if op == "SequenceConstruct":
            keys = [self._key(i) for i in ins]
            if any(k is None for k in keys):
                return False
            self.seq_keys[out] = keys  # type: ignore[assignment]
            return True
        if op == "SequenceAt":
            keys = self.seq_keys.get(ins[0])
            pos = self._seq_pos(node)
            if keys is None or pos is None or not -len(keys) <= pos < len(keys):
                return False
            b.alias(out, keys[pos])
            return True
        if op == "ConcatFromSequence":
            keys = self.seq_keys.get(ins[0])
            if keys is None:
                return False
            b.add_node("onnx.ConcatFromSequence", "concat", keys, self._outputs(node, "concat"),
                       {"axis": a.int("axis", 0)}, scope=self._scope(node))
            return True
        return False

    def _padding(self, node, a: _Attrs, x, w, r, kind) -> list[int]:
        _, s, d, _, k_attr = self._spatial(node, a, x, w)
        ap = a.str("auto_pad", "NOTSET")
        if ap == "VALID":
            return [0] * r
        if ap in ("SAME_UPPER", "SAME_LOWER") and x and len(x) == r + 2:
            k = list(w[2:]) if w else list(k_attr or [1] * r)
            begin, end = [], []
            for i in range(r):
                if kind == "conv_transpose":
                    total = max(0, (k[i] - 1) * d[i] + 1 - s[i])
                else:
                    out = -(-x[2 + i] // s[i])
                    total = max(0, (out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - x[2 + i])
                lo = total // 2 if ap == "SAME_UPPER" else total - total // 2
                begin.append(lo)
                end.append(total - lo)
            return _sym_pads(begin + end, r)
        return _sym_pads(a.ints("pads") or [0] * (2 * r), r)

    def _axes(self, node, a) -> list[int] | None:
        if "axes" in a:
            return a.ints("axes")
        if len(node.input) > 1 and node.input[1]:
            v = self.vals.get(node.input[1])
            if v is not None:
                return [int(t) for t in v.reshape(-1)]
            return None
        x = self._shape(node.input[0])
        if a.int("noop_with_empty_axes", 0):
            return []
        return list(range(len(x))) if x is not None else None

    def _matmul_k(self, node, a) -> float:
        op = node.op_type
        ins = list(node.input)
        if op == "Einsum":
            shapes = [self._shape(i) or () for i in ins]
            out = self._shape(node.output[0])
            return einsum_contraction(a.str("equation", ""), shapes, _numel(out) if _known(out) else 0)
        if op == "MatMulNBits":
            return float(a.int("K", 1, minimum=0))
        pos = _OPERANDS.get(op, (0, 1))
        sa = self._shape(ins[pos[0]]) or ()
        if not sa:
            return 1.0
        if op in ("Gemm", "FusedGemm"):
            return float(sa[0] if a.int("transA", 0) else sa[-1])
        if op == "FusedMatMul" and a.int("transA", 0) and len(sa) >= 2:
            return float(sa[-2])
        return float(sa[-1])

    def _emit_attention(self, node, a: _Attrs, opname, scope) -> None:
        """Fused attention ops; operands are presented as (..., L, E) q, k, v."""
        b = self.b
        dom = node.domain or ""
        self._attn_check(node, a)
        outs = self._outputs(node, "attention")
        if node.op_type == "Attention" and dom == _MS:
            qkv = self._attn_ms(node, a, opname, scope)
        elif node.op_type == "Attention":  # ai.onnx opset 23
            qkv = self._attn_onnx(node, a)
        else:
            qkv = self._attn_contrib(node, a)
        if qkv is None:
            return self._other(node, opname, scope)
        q, k, v, rest = qkv
        if q is None or k is None or v is None:  # an operand is a folded constant the graph does not hold
            return self._other(node, opname, scope)
        b.add_node(opname, "attention", [q, k, v] + rest, outs, {}, scope=scope)

    def _attn_ms(self, node, a: _Attrs, opname, scope):
        """com.microsoft Attention: adds the packed qkv projection node, then ``(q, k, v, rest)``; ``None``:
        unknown shapes."""
        b = self.b
        ins = list(node.input)
        key, shape, view = _attn_access(self, ins)
        x, w = shape(0), shape(1)
        n = a.int("num_heads", 1)
        hs = a.ints("qkv_hidden_sizes") or ([w[1] // 3] * 3 if w else None)
        if not (_known(x) and hs):
            return None
        bsz, s = x[0], x[1]
        proj = (*x[:-1], sum(hs))
        pkey = ("proj", ins[0], node.output[0])
        et = self._etype(ins[0]) or 1
        b.add_node(f"{opname}.qkv_proj", "matmul", [k for k in (key(0), key(1), key(2)) if k is not None],
                   [(pkey, proj, dtype_name(et))], {"k": float(x[-1])}, scope=scope)
        past = shape(4)
        total = s + (past[3] if _known(past) and len(past) == 5 else 0)
        q = view(pkey, (bsz, n, s, hs[0] // n))
        k = view(pkey, (bsz, n, total, hs[1] // n))
        v = view(pkey, (bsz, n, total, hs[2] // n))
        rest = [k_ for k_ in (key(3), key(4), key(5)) if k_ is not None]
        return q, k, v, rest

    def _attn_onnx(self, node, a: _Attrs):
        """ai.onnx Attention (opset 23): ``(q, k, v, rest)``; ``None``: unknown shapes."""
        key, shape, view = _attn_access(self, list(node.input))
        sq, sk, sv = shape(0), shape(1), shape(2)
        if not (_known(sq) and _known(sk) and _known(sv)):
            return None
        if len(sq) == 4:
            hq, hkv = sq[1], sk[1]
            bsz, length, e = sq[0], sq[2], sq[3]
            slen, ev = sk[2], sv[3]
        else:
            hq = a.int("q_num_heads", 1)
            hkv = a.int("kv_num_heads", hq)
            bsz, length, e = sq[0], sq[1], sq[2] // hq
            slen, ev = sk[1], sv[2] // hkv
        past = shape(4)
        slen += past[2] if _known(past) and len(past) == 4 else 0
        q = view(key(0), (bsz, hq, length, e))
        k = view(key(1), (bsz, hq, slen, e))
        v = view(key(2), (bsz, hq, slen, ev))
        rest = [k_ for k_ in (key(3), key(4), key(5)) if k_ is not None]
        return q, k, v, rest

    def _attn_contrib(self, node, a: _Attrs):
        """GroupQueryAttention and MultiHeadAttention: ``(q, k, v, rest)``; ``None``: unknown shapes."""
        key, shape, view = _attn_access(self, list(node.input))
        n = a.int("num_heads", 1)
        sq = shape(0)
        if not _known(sq):
            return None
        bsz, length = sq[0], sq[1]
        sk, sv = shape(1), shape(2)
        if node.op_type == "GroupQueryAttention":
            nkv = a.int("kv_num_heads", n)
            if sk is None:  # packed qkv
                h = sq[2] // (n + 2 * nkv)
                slen = length
                qk_ = kk_ = vk_ = key(0)
            else:
                h = sq[2] // n
                slen = sk[1]
                qk_, kk_, vk_ = key(0), key(1), key(2)
            past = shape(3)
            slen += past[2] if _known(past) and len(past) == 4 else 0
            q = view(qk_, (bsz, n, length, h))
            k = view(kk_, (bsz, n, slen, h))
            v = view(vk_, (bsz, n, slen, h))
            rest = [k_ for k_ in (key(3), key(4)) if k_ is not None]
        else:  # MultiHeadAttention
            if len(sq) == 5:  # packed qkv (B, L, N, 3, H)
                h = sq[4]
                q = view(key(0), (bsz, n, length, h))
                k = view(key(0), (bsz, n, length, h))
                v = view(key(0), (bsz, n, length, h))
            else:
                h = sq[2] // n
                q = view(key(0), (bsz, n, length, h))
                if _known(sk) and len(sk) == 5:  # packed kv (B, S, N, 2, H)
                    k = view(key(1), (bsz, n, sk[1], sk[4]))
                    v = view(key(1), (bsz, n, sk[1], sk[4]))
                elif _known(sk) and _known(sv):
                    slen = sk[2] if len(sk) == 4 else sk[1]
                    hv = sv[3] if len(sv) == 4 else sv[2] // n
                    past = shape(6)
                    slen += past[2] if _known(past) and len(past) == 4 and len(sk) == 3 else 0
                    k = view(key(1), (bsz, n, slen, h))
                    v = view(key(2), (bsz, n, slen, hv))
                else:
                    return None
            rest = [k_ for k_ in (key(3), key(4), key(5), key(6), key(7)) if k_ is not None]
        return q, k, v, rest

    def _other(self, node, opname, scope) -> None:
        self.b.warn_unsupported(opname)
        self.b.add_node(opname, "other", self._operands(node), self._outputs(node, "other"), {}, scope=scope)

    def graph_dtype(self, fixed) -> str:
        """The model's dtype, as the PyTorch frontend reads a module's: its floating weights' (the dtype that
        holds most of their elements: a half-precision model exported with fp32 inputs and outputs is
        fp16), else its first floating input's, else fp32."""
        elems: dict[str, int] = {}
        for name in list(self.inits) + [vi.name for vi in self.weight_inputs]:
            shp, et = self.types.get(name, (None, None))
            dt = dtype_name(et) if et else None
            if dt and _is_float(dt) and _known(shp):
                elems[dt] = elems.get(dt, 0) + _numel(shp)
        if elems:
            return max(elems, key=lambda d: elems[d])
        for vi in self.data_inputs:
            dt = dtype_name(vi.type.tensor_type.elem_type)
            if _is_float(dt):
                return dt
        return "fp32"
