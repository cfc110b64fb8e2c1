"""Fusion planning: which groups of ONNX nodes are one operator in PyTorch (attention, linear,
silu/hardswish, GELU written with Erf or Tanh, GroupNorm written with InstanceNormalization)."""

from __future__ import annotations
from ._tables import _Attrs, _STD_DOMAINS, _known, _numel, _subgraph_refs


class _FusionPlanner:
    """Finds the multi-node patterns; fills ``absorbed`` and ``fused``."""

    def _plan(self) -> None:
        """Find the multi-node patterns that are one operator in PyTorch."""
        self.prod = {}
        self.cons: dict[str, list[int]] = {}
        for idx, (node, _) in enumerate(self.counted):
            for o in node.output:
                if o:
                    self.prod[o] = idx
            for i in list(node.input) + _subgraph_refs(node):
                if i:
                    self.cons.setdefault(i, []).append(idx)
        self.absorbed: set[int] = set()
        self.fused: dict[int, tuple] = {}
        for idx, (node, a) in enumerate(self.counted):
            if node.op_type in ("Softmax",) and (node.domain or "") in _STD_DOMAINS:
                self._plan_attention(idx, node, a)
        for idx, (node, a) in enumerate(self.counted):
            if idx in self.absorbed or idx in self.fused:
                continue
            dom = node.domain or ""
            if dom not in _STD_DOMAINS:
                continue
            if node.op_type == "MatMul":
                self._plan_linear(idx, node)
            elif node.op_type in ("Sigmoid", "HardSigmoid"):
                self._plan_gated(idx, node, a)
            elif node.op_type == "Erf":
                self._plan_erf_gelu(idx, node)
            elif node.op_type == "Tanh":
                self._plan_tanh_gelu(idx, node)
            elif node.op_type == "InstanceNormalization":
                self._plan_group_norm(idx, node)

    def _single_use(self, name: str) -> bool:
        return len(self.cons.get(name, ())) == 1 and name not in self.graph_outputs

    def _is_scalar_const(self, name: str) -> bool:
        if not name or name in self.data:
            return False
        shp = self._shape(name)
        return shp is not None and _known(shp) and _numel(shp) == 1

    def _scoreish(self, name: str) -> bool:
        """Could ``name`` be the attention scores (a product of the q @ k^T chain)?"""
        p = self.prod.get(name)
        return p is not None and self._node(p).op_type in ("MatMul", "Mul", "Div", "Add", "Where", "Cast")

    def _node(self, idx):
        return self.counted[idx][0]

    def _free(self, idx) -> bool:
        return idx not in self.absorbed and idx not in self.fused

    def _strip_scalar_scaling(self, start: str, chain: list) -> tuple[str, list]:
        """Walk back through single-use ``x * c`` / ``x / c`` (scalar c) producers.

        Returns the unscaled tensor and the producer nodes passed, so the
        attention fusion can absorb the ``1/sqrt(d)`` scaling exporters emit.
        """
        cur, passed = start, []
        while True:
            p = self.prod.get(cur)
            if p is None or not self._single_use(cur) or not self._free(p) or p in chain or p in passed:
                break
            pn = self._node(p)
            if pn.op_type in ("Mul", "Div") and (pn.domain or "") in _STD_DOMAINS:
                x, cst = pn.input[0], pn.input[1]
                if pn.op_type == "Mul" and x not in self.data:
                    x, cst = cst, x
                if x in self.data and self._is_scalar_const(cst):
                    passed.append(p)
                    cur = x
                    continue
            break
        return cur, passed

    def _plan_attention(self, s_idx: int, s, a: _Attrs) -> None:
        sm_in = self._shape(s.input[0])
        axis = a.int("axis", -1 if self.opset >= 13 else 1)
        if not _known(sm_in) or len(sm_in) < 2 or axis % len(sm_in) != len(sm_in) - 1:
            return
        chain = [s_idx]
        extra: list[str] = []
        m1 = self._attn_scores(s.input[0], chain, extra)
        if m1 is None:
            return
        mm1 = self._node(m1)
        chain.append(m1)
        m2 = self._attn_values(s.output[0], chain)
        if m2 is None:
            return
        self._fuse_attention(mm1, m2, chain, extra)

    def _attn_scores(self, t: str, chain: list, extra: list[str]) -> int | None:
        """Upstream of the Softmax: [Cast/scale/mask] -> MatMul(q, k^T); the MatMul's index (``None``: no match)."""
        while True:
            p = self.prod.get(t)
            if p is None or not self._single_use(t) or not self._free(p):
                return None
            pn = self._node(p)
            if (pn.domain or "") not in _STD_DOMAINS:
                return None
            op = pn.op_type
            if op == "MatMul":
                return p
            if op in ("Mul", "Div"):
                x, c = pn.input[0], pn.input[1]
                if op == "Mul" and x not in self.data:
                    x, c = c, x
                if x not in self.data or not self._is_scalar_const(c):
                    return None
                t = x
            elif op in ("Add", "Where"):
                cands = [pn.input[0], pn.input[1]] if op == "Add" else [pn.input[1], pn.input[2]]
                scores = [x for x in cands if self._scoreish(x)]
                if not scores:
                    return None
                t = scores[-1] if op == "Where" else scores[0]
                for m in pn.input:
                    if m == t:
                        continue
                    pm = self.prod.get(m)
                    if op == "Add" and pm is not None and self._single_use(m) and self._free(pm):
                        mn = self._node(pm)  # a boolean mask made additive: Where(mask, 0, -inf)
                        if mn.op_type == "Where" and all(self._is_scalar_const(c) for c in mn.input[1:]):
                            chain.append(pm)
                            m = mn.input[0]
                    extra.append(m)
            elif op in ("Cast", "Identity"):
                t = pn.input[0]
            else:
                return None
            chain.append(p)

    def _attn_values(self, u: str, chain: list) -> int | None:
        """Downstream: Softmax -> [Cast/Dropout/Identity/NaN guard] -> MatMul(., v); its index (``None``: no match)."""
        while True:
            guard = self._nan_guard(u)
            if guard is not None:  # Where(IsNaN(p), 0, p): rows that were fully masked
                chain.extend(guard[:2])
                u = guard[2]
                continue
            if not self._single_use(u):
                return None
            c = self.cons[u][0]
            cn = self._node(c)
            if not self._free(c) or (cn.domain or "") not in _STD_DOMAINS:
                return None
            if cn.op_type in ("Cast", "Dropout", "Identity"):
                chain.append(c)
                u = cn.output[0]
                continue
            if cn.op_type == "MatMul" and cn.input[0] == u:
                return c
            return None

    def _fuse_attention(self, mm1, m2: int, chain: list, extra: list[str]) -> None:
        """Check the q, k, v shapes, absorb the scaling and the k^T transposes, record the fusion."""
        mm2 = self._node(m2)
        q1, kt, v = mm1.input[0], mm1.input[1], mm2.input[1]
        sq, sk, sv = self._shape(q1), self._shape(kt), self._shape(v)
        if not (_known(sq) and _known(sk) and _known(sv)) or min(len(sq), len(sk), len(sv)) < 2:
            return
        e, slen = sk[-2], sk[-1]
        if sq[-1] != e or sv[-2] != slen:
            return
        # q side: fold scalar scaling
        q0, muls = self._strip_scalar_scaling(q1, chain)
        chain.extend(muls)
        # k side: fold scalar scaling, then the transposes/reshapes that built k^T
        k0, muls = self._strip_scalar_scaling(kt, chain)
        chain.extend(muls)
        target = (*sk[:-2], slen, e)
        path, cur, found = [], k0, None
        for _ in range(8):
            if self._shape(cur) == target and cur != k0:
                found = cur
                break
            p = self.prod.get(cur)
            if p is None or not self._single_use(cur) or not self._free(p) or p in chain:
                break
            pn = self._node(p)
            if pn.op_type not in ("Transpose", "Reshape") or (pn.domain or "") not in _STD_DOMAINS:
                break
            path.append(p)
            cur = pn.input[0]
        else:
            if self._shape(cur) == target:
                found = cur
        if found is not None and self._shape(found) == target:
            chain.extend(path)
            k_in, k_view = found, None
        else:
            k_in, k_view = k0, target
        self.absorbed.update(i for i in chain if i != m2)
        self.fused[m2] = ("attention", q0, k_in, k_view, v, [x for x in extra if x])
        self.attn_masks.update(x for x in extra if x)

    def _nan_guard(self, p: str) -> tuple[int, int, str] | None:
        """``(isnan, where, out)`` if ``p`` is only read by ``Where(IsNaN(p), c, p)``."""
        users = self.cons.get(p, [])
        if len(users) != 2 or p in self.graph_outputs:
            return None
        ops = {self._node(i).op_type: i for i in users}
        if set(ops) != {"IsNaN", "Where"} or not all(self._free(i) for i in users):
            return None
        isn, wh = ops["IsNaN"], ops["Where"]
        flag, wn = self._node(isn).output[0], self._node(wh)
        if not self._single_use(flag) or list(wn.input) != [flag, wn.input[1], p]:
            return None
        if not self._is_scalar_const(wn.input[1]):
            return None
        return isn, wh, wn.output[0]

    def _plan_linear(self, idx: int, node) -> None:
        w = node.input[1]
        if w not in self.weights:
            return
        out = node.output[0]
        if not self._single_use(out):
            return
        c = self.cons[out][0]
        cn = self._node(c)
        if cn.op_type != "Add" or (cn.domain or "") not in _STD_DOMAINS or not self._free(c):
            return
        bias = cn.input[1] if cn.input[0] == out else cn.input[0]
        so, sb = self._shape(out), self._shape(bias)
        if bias not in self.weights or not _known(so) or not _known(sb) or not so:
            return
        if _numel(sb) != so[-1] or (sb and sb[-1] != so[-1]):
            return
        self.absorbed.add(idx)
        self.fused[c] = ("linear", node, cn)

    def _plan_gated(self, idx: int, node, a: _Attrs) -> None:
        x, out = node.input[0], node.output[0]
        if node.op_type == "HardSigmoid":
            if not (abs(a.float("alpha", 0.2) - 1 / 6) <= 1e-4 and abs(a.float("beta", 0.5) - 0.5) <= 1e-4):
                return
        if not self._single_use(out):
            return
        c = self.cons[out][0]
        cn = self._node(c)
        if cn.op_type != "Mul" or (cn.domain or "") not in _STD_DOMAINS or not self._free(c):
            return
        if set(cn.input) != {x, out}:
            return
        self.absorbed.add(idx)
        self.fused[c] = ("gated", node, cn)

    def _scaled(self, name: str, ops=("Mul", "Div")) -> tuple[int, str] | None:
        """``(producer index, x)`` if ``name`` is ``x * c`` or ``x / c`` for a scalar constant ``c``."""
        p = self.prod.get(name)
        if p is None or not self._free(p):
            return None
        pn = self._node(p)
        if pn.op_type not in ops or (pn.domain or "") not in _STD_DOMAINS or len(pn.input) != 2:
            return None
        x, c = pn.input[0], pn.input[1]
        if pn.op_type == "Mul" and x not in self.data:
            x, c = c, x
        if x in self.data and self._is_scalar_const(c):
            return p, x
        return None

    def _identity_affine(self, scale: str, bias: str) -> bool:
        """Whether an InstanceNormalization's ``scale`` and ``bias`` leave its output as normalized: constants
        (what the TorchScript exporter writes), or initializers of ones and zeros (what the dynamo exporter's
        constant folding leaves); an initializer of other or unknown values is a learned affine."""
        for name, want in ((scale, 1.0), (bias, 0.0)):
            if name not in self.weights:
                continue
            v = self.vals.get(name)
            if v is None or v.size == 0 or not (v == want).all():
                return False
        return True

    def _plan_group_norm(self, idx: int, node) -> None:
        """GroupNorm as exporters write it: Reshape(N, G, -1) -> InstanceNormalization(ones, zeros)
        -> Reshape back -> [Mul(gamma) -> Add(beta)]; one ``group_norm`` as in PyTorch."""
        r_in = node.input[0]
        p = self.prod.get(r_in)
        if p is None or not self._single_use(r_in) or not self._free(p):
            return
        rn = self._node(p)
        if rn.op_type != "Reshape" or len(node.input) < 3 or not self._identity_affine(node.input[1], node.input[2]):
            return
        x = rn.input[0]
        sx, sr = self._shape(x), self._shape(r_in)
        if not (_known(sx) and _known(sr)) or len(sx) < 3 or len(sr) < 3 or sr[0] != sx[0] or sx[1] % sr[1]:
            return
        groups = sr[1]
        out = node.output[0]
        if not self._single_use(out):
            return
        r2 = self.cons[out][0]
        r2n = self._node(r2)
        if r2n.op_type != "Reshape" or not self._free(r2) or self._shape(r2n.output[0]) != sx:
            return
        absorbed, last, extra, consts = [p, idx], r2, [], [node.input[1], node.input[2]]
        for op, identity in (("Mul", 1.0), ("Add", 0.0)):
            o = self._node(last).output[0]
            if not self._single_use(o):
                break
            c = self.cons[o][0]
            cn = self._node(c)
            if cn.op_type != op or not self._free(c):
                break
            w = cn.input[1] if cn.input[0] == o else cn.input[0]
            sw = self._shape(w)
            if not _known(sw) or _numel(sw) not in (1, sx[1]) or (w in self.data):
                break
            if self._all_equal(w, identity):  # affine=False: the exporter's ones and zeros
                consts.append(w)
            elif w in self.weights and _numel(sw) == sx[1]:
                extra.append(w)
            else:
                break
            absorbed.append(last)
            last = c
        self.absorbed.update(absorbed)
        self.const_reads.update(n for n in consts if n)
        self.fused[last] = ("group_norm", x, extra, groups)

    def _all_equal(self, name: str, want: float) -> bool:
        """Whether constant ``name``'s values are known and all ``want``."""
        v = self.vals.get(name)
        return v is not None and v.size > 0 and bool((v == want).all())

    def _next_mul(self, out: str) -> tuple[int, str] | None:
        """``(index, other operand)`` of the free ``Mul`` that alone reads ``out``; ``None`` if there is none."""
        if not self._single_use(out):
            return None
        c = self.cons[out][0]
        cn = self._node(c)
        if cn.op_type != "Mul" or (cn.domain or "") not in _STD_DOMAINS or not self._free(c) or len(cn.input) != 2:
            return None
        return c, (cn.input[1] if cn.input[0] == out else cn.input[0])

    def _plan_erf_gelu(self, idx: int, node) -> None:
        """``0.5 * x * (1 + erf(x / sqrt(2)))`` (how older exporters write GELU) -> one ``gelu``."""
        d = node.input[0]
        sc = self._scaled(d)
        if sc is None or not self._single_use(d):
            return
        p_div, x = sc
        self._gelu_tail(node.output[0], x, [p_div, idx], "none")

    def _plan_tanh_gelu(self, idx: int, node) -> None:
        """``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3)))`` (how the TorchScript exporter
        writes ``GELU(approximate="tanh")``, with ``x**3`` as ``x * (x * x)`` or ``Pow(x, 3)``) -> one
        ``gelu``."""
        s_in = node.input[0]
        sc = self._scaled(s_in, ("Mul",))
        if sc is None or not self._single_use(s_in) or not self._near(self._scale_of(sc[0]), 0.7978845608):
            return
        p_s, inner = sc
        pa = self.prod.get(inner)
        if pa is None or not self._single_use(inner) or not self._free(pa):
            return
        an = self._node(pa)
        if an.op_type != "Add" or (an.domain or "") not in _STD_DOMAINS or len(an.input) != 2:
            return
        for x, m in ((an.input[0], an.input[1]), (an.input[1], an.input[0])):
            cm = self._scaled(m, ("Mul",))
            if x not in self.data or cm is None or not self._single_use(m):
                continue
            if not self._near(self._scale_of(cm[0]), 0.044715):
                continue
            cube = self._cube(cm[1], x)
            if cube is not None:
                self._gelu_tail(node.output[0], x, [p_s, pa, cm[0], *cube, idx], "tanh")
                return

    def _scale_of(self, p: int) -> float | None:
        """The scalar constant a ``Mul``/``Div`` found by :meth:`_scaled` multiplies by (``None``: unknown)."""
        pn = self._node(p)
        c = pn.input[1] if pn.input[0] in self.data else pn.input[0]
        v = self.vals.get(c)
        if v is None or v.size != 1:
            return None
        f = float(v.reshape(-1)[0])
        return 1.0 / f if pn.op_type == "Div" and f else f

    @staticmethod
    def _near(v: float | None, want: float) -> bool:
        return v is None or abs(v - want) <= 1e-3 * abs(want)

    def _cube(self, name: str, x: str) -> list[int] | None:
        """The producers of ``name`` if it is ``x ** 3``: ``Pow(x, 3)``, or ``x * (x * x)`` in any order."""
        p = self.prod.get(name)
        if p is None or not self._single_use(name) or not self._free(p):
            return None
        pn = self._node(p)
        if (pn.domain or "") not in _STD_DOMAINS or len(pn.input) != 2:
            return None
        if pn.op_type == "Pow":
            e = self.vals.get(pn.input[1])
            ok = pn.input[0] == x and e is not None and e.size == 1 and float(e.reshape(-1)[0]) == 3.0
            return [p] if ok else None
        if pn.op_type != "Mul" or x not in pn.input:
            return None
        sq = pn.input[1] if pn.input[0] == x else pn.input[0]
        q = self.prod.get(sq)
        if q is None or not self._single_use(sq) or not self._free(q):
            return None
        qn = self._node(q)
        if qn.op_type != "Mul" or list(qn.input) != [x, x]:
            return None
        return [p, q]

    def _gelu_tail(self, e_out: str, x: str, absorbed: list[int], approximate: str) -> None:
        """From ``erf(.)``/``tanh(.)`` (``e_out``) on: ``1 + e`` times ``x`` and a half, in the orders
        exporters write them; records one ``gelu`` that absorbs ``absorbed`` and the tail."""
        if not self._single_use(e_out):
            return
        add = self.cons[e_out][0]
        an = self._node(add)
        if an.op_type != "Add" or not self._free(add):
            return
        other = an.input[1] if an.input[0] == e_out else an.input[0]
        if not self._is_scalar_const(other) or not self._single_use(an.output[0]):
            return
        m1 = self.cons[an.output[0]][0]
        mn = self._node(m1)
        if mn.op_type != "Mul" or not self._free(m1):
            return
        y = mn.input[1] if mn.input[0] == an.output[0] else mn.input[0]
        absorbed = [*absorbed, add]
        final = m1
        if y == x or self._is_scalar_const(y):  # (x * (1 + erf)) * 0.5, or x * (0.5 * (1 + erf)) (dynamo)
            nxt = self._next_mul(mn.output[0])
            if nxt is not None and (self._is_scalar_const(nxt[1]) if y == x else nxt[1] == x):
                absorbed.append(m1)
                final = nxt[0]
            elif y != x:  # 0.5 * (1 + erf) alone is no GELU
                return
        else:  # (x * 0.5) * (1 + erf)
            sy = self._scaled(y, ("Mul",))
            if sy is None or sy[1] != x or not self._single_use(y):
                return
            absorbed.append(sy[0])
        self.absorbed.update(absorbed)
        self.fused[final] = ("gelu", x, self._node(final), approximate)
