"""Kernels of ``R.call_tir``: the op kind, FLOPs and MACs of a TIR PrimFunc.

``relax.transform.LegalizeOps`` turns each Relax operator into a call to a PrimFunc named after it
(``conv2d``, ``matmul``, ``relu``, ``max_pool2d``...); ``FuseOps`` + ``FuseTIR`` merge chains of them into
one PrimFunc named after its parts (``fused_conv2d_add_relu``).  The kernel's kind comes from that name
(its dominant part: a convolution or matmul before a norm, before an activation, before arithmetic),
else from the names of its TIR blocks (``conv2d_nchw``, ``T_matmul_NT``), else from its ``op_pattern``
attribute.  Its FLOPs are counted on the TIR itself (``tvm.s_tir.analysis.estimate_tir_flops``: one FLOP
per floating-point add, multiply, max... per loop iteration, so a multiply-add is 2, the convention of
the other frontends); a fused kernel counts all its parts.  Its MACs (conv, matmul) are half the FLOPs
of its heaviest loop nest, the contraction.

A kernel of a module with symbolic shapes (``R.Tensor(("n", 3, 224, 224))``) has loops over its own
shape variables: :func:`bind_shapes` binds them to the call's argument shapes before the count (the TIR
analysis counts a symbolic loop as one iteration).  A convolution's stride, dilation and padding come
from its TIR index expressions (:func:`conv_geometry`).
"""

from __future__ import annotations

from typing import Any

#: legalized operator name (the PrimFunc's name, or one part of a fused one) -> op kind
_NAME_KIND: dict[str, str] = {
    **{f"conv{r}d": "conv" for r in (1, 2, 3)},
    **{f"conv{r}d_transpose": "conv_transpose" for r in (1, 2, 3)},
    "matmul": "matmul", "dense": "matmul", "batch_matmul": "matmul", "einsum": "matmul", "linear": "matmul",
    "attention": "attention", "scaled_dot_product_attention": "attention",
    "batch_norm": "batch_norm", "layer_norm": "layer_norm", "group_norm": "group_norm",
    "instance_norm": "instance_norm", "rms_norm": "rms_norm",
    "softmax": "softmax", "log_softmax": "softmax",
    **{f"max_pool{r}d": "max_pool" for r in (1, 2, 3)},
    **{f"avg_pool{r}d": "avg_pool" for r in (1, 2, 3)},
    **{f"adaptive_avg_pool{r}d": "avg_pool" for r in (1, 2, 3)},
    "sum": "reduction", "mean": "reduction", "max": "reduction", "min": "reduction", "prod": "reduction",
    "variance": "reduction", "std": "reduction", "argmax": "reduction", "argmin": "reduction",
    "cumsum": "reduction",
    "take": "gather", "gather_elements": "gather", "gather_nd": "gather", "scatter_elements": "gather",
    "relu": "relu", "gelu": "gelu", "gelu_tanh": "gelu", "silu": "silu", "sigmoid": "sigmoid", "tanh": "tanh",
    "hardswish": "hardswish", "clip": "clamp", "leakyrelu": "activation", "elu": "activation",
    "selu": "activation", "softplus": "activation", "erf": "activation",
    "add": "add", "subtract": "add", "multiply": "mul", "divide": "mul",
    "exp": "elementwise", "log": "elementwise", "sqrt": "elementwise", "rsqrt": "elementwise",
    "power": "elementwise", "maximum": "elementwise", "minimum": "elementwise", "where": "elementwise",
    "negative": "elementwise", "square": "elementwise", "abs": "elementwise", "equal": "elementwise",
    "not_equal": "elementwise", "less": "elementwise", "greater": "elementwise", "less_equal": "elementwise",
    "greater_equal": "elementwise", "logical_not": "elementwise", "logical_and": "elementwise",
    "logical_or": "elementwise", "isnan": "elementwise", "trilu": "elementwise",
    "reshape": "reshape", "squeeze": "reshape", "expand_dims": "reshape", "flatten": "reshape",
    "transpose": "transpose", "permute_dims": "transpose", "concatenate": "concat", "concat": "concat",
    "strided_slice": "slice", "dynamic_strided_slice": "slice", "split": "slice", "pad": "pad",
    "broadcast_to": "copy", "astype": "copy", "cast": "copy", "copy": "copy", "resize2d": "resize", "image_resize2d": "resize",
}

#: which part names a fused kernel: lower ranks first (the first part of the best rank wins)
_RANK: dict[str, int] = {
    "conv": 0, "conv_transpose": 0, "matmul": 0, "attention": 0,
    "batch_norm": 1, "layer_norm": 1, "group_norm": 1, "instance_norm": 1, "rms_norm": 1,
    "softmax": 2, "max_pool": 3, "avg_pool": 3, "reduction": 4, "gather": 5,
    "relu": 6, "gelu": 6, "silu": 6, "sigmoid": 6, "tanh": 6, "hardswish": 6, "clamp": 6, "activation": 6,
    "add": 7, "mul": 7, "elementwise": 7, "resize": 8, "pad": 8,
    "concat": 9, "slice": 9, "copy": 9, "transpose": 9, "reshape": 9,
}

#: ``op_pattern`` (TVM's OpPatternKind) -> kind, when neither name says more
_PATTERN_KIND = {0: "elementwise", 1: "elementwise", 2: "copy", 3: "reduction"}

#: kinds whose kernel is a view once TVM's pipeline rewrites it (``RewriteDataflowReshape``)
_VIEW_KINDS = frozenset({"reshape"})


def _part_kinds(name: str) -> list[str]:
    """The kinds of the operators a kernel's name lists (``fused_conv2d_add1_relu`` -> conv, add, relu)."""
    toks = [t for t in name.split("_") if t]
    if toks and toks[0] == "fused":
        toks = toks[1:]
    if toks and toks[0] == "T":  # TIR block names: T_add, T_matmul_NT
        toks = toks[1:]
    out, i = [], 0
    while i < len(toks):
        for n in (4, 3, 2, 1):
            cand = "_".join(toks[i:i + n])
            kind = _NAME_KIND.get(cand) or _NAME_KIND.get(cand.rstrip("0123456789"))
            if kind is not None and i + n <= len(toks):
                out.append(kind)
                i += n
                break
        else:
            i += 1
    return out


def _dominant(kinds: list[str]) -> str | None:
    return min(kinds, key=lambda k: _RANK.get(k, 10)) if kinds else None


def _nests(func) -> list[tuple[Any, str]]:
    """The top-level loop nests of a PrimFunc's root block, each with the name of the block it runs."""
    body = func.body
    if type(body).__name__ == "SBlockRealize":
        body = body.block.body
    stmts = list(body.seq) if hasattr(body, "seq") else [body]
    out = []
    for s in stmts:
        n = s
        for _ in range(64):  # For -> For -> ... -> SBlockRealize -> SBlock
            name = type(n).__name__
            if name == "SBlock":
                break
            n = n.block if name == "SBlockRealize" else getattr(n, "body", None)
            if n is None:
                break
        out.append((s, str(getattr(n, "name_hint", "")) if n is not None else ""))
    return out


def _is_var(e) -> bool:
    return type(e).__name__ in ("Var", "SizeVar")


def _buffer_shape(p):
    """The shape of a PrimFunc parameter that is a buffer, else ``None`` (a scalar parameter)."""
    return getattr(getattr(p, "ty", None), "shape", None) if type(getattr(p, "ty", None)).__name__ == "BufferType" \
        else None


def is_symbolic(func) -> bool:
    """Whether a PrimFunc still has a symbolic buffer dimension or a scalar (shape) parameter."""
    for p in func.params:
        shape = _buffer_shape(p)
        if shape is None or any(getattr(d, "value", None) is None for d in shape):
            return True
    return False


def bind_shapes(func, shapes: list[tuple[int, ...] | None], scalars: list[int | None]):
    """``func`` with its shape variables bound to one call's values: ``shapes`` are the shapes of its
    buffer parameters in order (the call's arguments, then its outputs; ``None``: unknown), ``scalars``
    the values of its scalar parameters (``call_tir``'s ``tir_vars``).  Returns ``func`` unchanged when it
    has nothing symbolic, ``None`` when a variable cannot be bound (or two shapes disagree)."""
    if not is_symbolic(func):
        return func
    bufs = [p for p in func.params if _buffer_shape(p) is not None]
    prims = [p for p in func.params if _buffer_shape(p) is None]
    values: dict[Any, int] = {}
    for p, got in zip(prims, scalars):
        if got is not None:
            values[p] = int(got)
    for p, got in zip(bufs, shapes):
        shape = _buffer_shape(p)
        if got is None or len(got) != len(shape):
            continue
        for d, v in zip(shape, got):
            if _is_var(d):
                if values.setdefault(d, int(v)) != int(v):
                    return None
    if not values:
        return None
    import tvm

    free = [v for v in values if not any(v.same_as(p) for p in func.params)]
    try:
        # the shape variables become scalar parameters, which ``specialize`` substitutes everywhere
        wide = tvm.tirx.PrimFunc(list(func.params) + free, func.body, func.ret_type, func.attrs)
        bound = wide.specialize({v: tvm.tirx.IntImm(v.ty.dtype if hasattr(v.ty, "dtype") else str(v.ty), n)
                                 for v, n in values.items()})
    except Exception:  # noqa: BLE001 - an unusual signature: the kernel stays uncounted
        return None
    return None if is_symbolic(bound) else bound


def kernel_info(func, name: str) -> dict[str, Any]:
    """``{"kind", "flops", "macs", "view", "conv"}`` of one PrimFunc called through ``call_tir``;
    ``flops``/``macs`` are ``None`` where the TIR cannot be counted (symbolic loop extents: bind them
    first with :func:`bind_shapes`); ``conv``: a convolution's :func:`conv_geometry`."""
    kind = _dominant(_part_kinds(name))
    nests: list[tuple[Any, str]] = []
    try:
        nests = _nests(func)
    except Exception:  # noqa: BLE001 - an unusual body: the name alone names the kind
        pass
    nest_flops: list[float] = []
    flops = None
    symbolic = is_symbolic(func)
    try:
        if symbolic:
            raise ValueError("symbolic loop extents")
        from tvm.s_tir.analysis import estimate_tir_flops

        nest_flops = [float(estimate_tir_flops(s)) for s, _ in nests]
        flops = sum(nest_flops) if nests else None
    except Exception:  # noqa: BLE001 - symbolic extents, or a TVM without the analysis
        nest_flops, flops = [], None
    if kind is None and nests:
        heavy = max(range(len(nests)), key=lambda i: nest_flops[i]) if nest_flops else 0
        kind = _dominant(_part_kinds(nests[heavy][1])) or _dominant(
            [k for _, b in nests for k in _part_kinds(b)])
    if kind is None:
        attrs = func.attrs or {}
        pat = attrs["op_pattern"] if "op_pattern" in attrs else None
        kind = _PATTERN_KIND.get(int(pat), "other") if pat is not None else "other"
    macs = None
    if kind in ("conv", "conv_transpose", "matmul", "attention") and nest_flops:
        macs = max(nest_flops) / 2 if kind != "attention" else flops / 2
    conv = conv_geometry(nests, nest_flops) if kind == "conv" and nest_flops else {}
    return {"kind": kind, "flops": flops, "macs": macs, "view": kind in _VIEW_KINDS, "conv": conv}


def _block(stmt):
    """The innermost block of one loop nest (``For -> ... -> SBlockRealize -> SBlock``), or ``None``."""
    n = stmt
    for _ in range(64):
        name = type(n).__name__
        if name == "SBlock":
            return n
        n = n.block if name == "SBlockRealize" else getattr(n, "body", None)
        if n is None:
            return None
    return None


def conv_geometry(nests: list[tuple[Any, str]], nest_flops: list[float]) -> dict[str, list[int]]:
    """``stride``, ``dilation`` and ``padding`` of a legalized convolution, read off its TIR: the
    contraction (the heaviest nest) reads its input at ``out * stride + k * dilation`` in each spatial
    dimension; the padding block reads the kernel's input at ``i - pad_begin``, and its buffer is
    ``pad_begin + input + pad_end`` long.  ``{}`` where the TIR does not have that form."""
    from tvm.sym import detect_linear_equation

    try:
        blk = _block(nests[max(range(len(nests)), key=lambda i: nest_flops[i])][0])
        spatial = [iv.var for iv in blk.iter_vars if int(iv.iter_type) == 0]
        reduce_ = [iv.var for iv in blk.iter_vars if int(iv.iter_type) == 2]
        stride, dil, src = [], [], None
        for rd in blk.reads:  # the input: a read indexed by an output and a reduction variable at once
            mins = [r.min for r in rd.region]
            for e in mins[2:]:
                s = next((v for v in spatial if _uses(e, v)), None)
                k = next((v for v in reduce_ if _uses(e, v)), None)
                if s is None or k is None:
                    break
                cs, ck, _ = (int(c) for c in detect_linear_equation(e, [s, k]))
                stride.append(cs)
                dil.append(ck)
            if stride and len(stride) == len(mins) - 2:
                src = rd.source
                break
            stride, dil = [], []
        if src is None:
            return {}
        out = {"stride": stride, "dilation": dil, "padding": [0] * len(stride)}
        pad = _padding(nests, src, len(stride))
        if pad is not None:
            out["padding"] = pad
        return out
    except Exception:  # noqa: BLE001 - not the usual legalized form
        return {}


def _uses(e, v) -> bool:
    from tvm.tirx.analysis import undefined_vars

    return any(u.same_as(v) for u in undefined_vars(e))


def _padding(nests: list[tuple[Any, str]], buf, r: int) -> list[int] | None:
    """The padding of a convolution whose input is the intermediate ``buf``: begin from the block that
    writes it (reading the kernel's input at ``i - begin``), end from the sizes; ``None``: no such block."""
    from tvm.sym import detect_linear_equation

    for s, _ in nests:
        blk = _block(s)
        if blk is None or not any(w.source.same_as(buf) for w in blk.writes) or not blk.reads:
            continue
        src = blk.reads[0]
        full = [int(d) for d in buf.ty.shape[2:]]
        size = [int(d) for d in src.source.ty.shape[2:]]
        begin = []
        for e, iv in zip([r_.min for r_ in src.region][2:], blk.iter_vars[2:]):
            _, c = (int(x) for x in detect_linear_equation(e, [iv.var]))
            begin.append(-c)
        end = [f - b - n for f, b, n in zip(full, begin, size)]
        if len(begin) != r:
            return None
        return begin if begin == end else begin + end
    return None


def conv_operands(ops: list[str], shapes: dict[str, tuple[int, ...]], weights: set[str],
                  out: tuple[int, ...], *, transpose: bool = False) -> tuple[list[str], dict[str, Any]]:
    """A convolution kernel's operands with its data and weight first (the order the conv kind reads),
    and the attributes its shapes give: ``groups`` and ``kernel``."""
    r = len(out)
    data = next((o for o in ops if o not in weights and len(shapes.get(o, ())) == r), None)
    weight = next((o for o in ops if o in weights and len(shapes.get(o, ())) == r), None)
    if weight is None:  # a weight computed in the graph (a cast, a reshape)
        weight = next((o for o in ops if o != data and len(shapes.get(o, ())) == r), None)
    if data is None or weight is None:
        return ops, {}
    x, w = shapes[data], shapes[weight]
    attrs: dict[str, Any] = {"kernel": [int(d) for d in w[2:]]}
    if not transpose and w[1] and x[1] % w[1] == 0:
        attrs["groups"] = int(x[1] // w[1])
    return [data, weight] + [o for o in ops if o not in (data, weight)], attrs
