"""Relax-specific rewrites on the ONNX form, before the ONNX frontend's shared normalization."""

from __future__ import annotations

from ._util import _ELEM
from ._walker import _RelaxWalker


# --------------------------------------------------------------------------- rewrites on the ONNX form
def _canonicalize(w: _RelaxWalker) -> None:
    """Relax-specific clean-ups before the shared ONNX normalization.

    * batched matmul lowered as ``reshape(a) @ reshape(b) -> reshape`` (leading
      dimensions merged) runs on the original tensors again;
    * the "safe softmax" guard ``where(all(s == -inf), 0, softmax(s))`` that
      decomposed SDPA carries is removed: the softmax output is read directly.
    """
    nodes = w.nodes
    prod = {o: n for n in nodes for o in n.output}
    uses: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            uses.setdefault(i, []).append(n)
    outputs = {o.name for o in w.outputs}
    rename: dict[str, str] = {}
    drop: set[int] = set()

    def single(name):
        return len(uses.get(name, [])) == 1 and name not in outputs

    _matmul_broadcast(w, prod)
    _batched_matmul(w, prod, uses, single, rename, drop)
    _conv_bias(w, prod, uses, single, rename, drop)
    _layout_chains(w, prod, uses, single, rename, drop)
    _clamp(w, prod, uses, single, rename, drop)
    _safe_softmax(w, prod, uses, single, rename, drop)
    if rename or drop:
        _apply(w, rename, drop)
    _dead_code(w)


def _matmul_broadcast(w: _RelaxWalker, prod: dict) -> None:
    """A matmul operand ``broadcast_to`` a batch shape (the importer's ``linear`` on a 3-D input broadcasts
    the 2-D weight to ``(batch, K, N)``) is read as it is: the matmul broadcasts its batch dimensions
    itself, and the kernel reads the weight once, not once per batch row. (The unread ``Expand`` goes
    with the dead code.)"""
    import numpy as np

    for n in w.nodes:
        if n.op_type != "MatMul":
            continue
        for i in (0, 1):
            p = prod.get(n.input[i])
            if p is None or p.op_type != "Expand":
                continue
            src, shapes = p.input[0], [w.shapes.get(x) for x in n.input[:2]]
            s = w.shapes.get(src)
            if s is None or None in shapes or len(s) < 2 or tuple(s[-2:]) != tuple(shapes[i][-2:]):
                continue
            new = list(shapes)
            new[i] = s
            try:
                same = (np.broadcast_shapes(*(tuple(x[:-2]) for x in new))
                        == np.broadcast_shapes(*(tuple(x[:-2]) for x in shapes)))
            except ValueError:
                continue
            if same and len(shapes[1 - i]) >= 2:
                n.input[i] = src


def _batched_matmul(w: _RelaxWalker, prod: dict, uses: dict, single, rename: dict, drop: set) -> None:
    """Batched matmul lowered as ``reshape(a) @ reshape(b) -> reshape`` runs on the original tensors."""
    nodes = w.nodes
    for n in nodes:
        if n.op_type != "MatMul":
            continue
        a, b = n.input[0], n.input[1]
        pa, pb = prod.get(a), prod.get(b)
        out = n.output[0]
        if not (pa is not None and pb is not None and pa.op_type == "Reshape" and pb.op_type == "Reshape"):
            continue
        if not (single(a) and single(b) and single(out)):
            continue
        post = uses[out][0]
        if post.op_type != "Reshape":
            continue
        sa, sb = w.shapes[pa.input[0]], w.shapes[pb.input[0]]
        ra, rb, ro = w.shapes[a], w.shapes[b], w.shapes[post.output[0]]
        if not (len(sa) == len(sb) == len(ro) and len(sa) > len(ra) and sa[:-2] == sb[:-2] == ro[:-2]
                and ra[-2:] == sa[-2:] and rb[-2:] == sb[-2:]):
            continue
        n.input[0], n.input[1] = pa.input[0], pb.input[0]
        rename[post.output[0]] = out
        w.declare(out, ro, _dtype_of(w, post.output[0]))
        drop.update({id(pa), id(pb), id(post)})


def _conv_bias(w: _RelaxWalker, prod: dict, uses: dict, single, rename: dict, drop: set) -> None:
    """Conv bias: Conv(x, w) + Reshape(b, [1, C, 1, 1]) -> Conv(x, w, b), as nn.Conv2d is one operator."""
    nodes = w.nodes
    for n in nodes:
        if n.op_type not in ("Conv", "ConvTranspose") or len(n.input) != 2 or not single(n.output[0]):
            continue
        add = uses[n.output[0]][0]
        if add.op_type != "Add" or id(add) in drop:
            continue
        other = add.input[1] if add.input[0] == n.output[0] else add.input[0]
        r = prod.get(other)
        bias = r.input[0] if r is not None and r.op_type == "Reshape" else other
        shp, out = w.shapes.get(bias), w.shapes.get(n.output[0])
        if bias not in w.weights or shp is None or out is None or len(shp) != 1 or shp[0] != out[1]:
            continue
        n.input.append(bias)
        rename[add.output[0]] = n.output[0]
        drop.add(id(add))


def _layout_chains(w: _RelaxWalker, prod: dict, uses: dict, single, rename: dict, drop: set) -> None:
    """Chains of layout ops collapse: Transpose(Transpose(x)) is one transpose (none if the perms cancel),
    Reshape(Reshape(x)) one reshape (none if it restores x's shape)."""
    nodes = w.nodes
    for n in nodes:
        if n.op_type not in ("Transpose", "Reshape") or id(n) in drop:
            continue
        p = prod.get(n.input[0])
        if p is None or p.op_type != n.op_type or id(p) in drop or not single(p.output[0]):
            continue
        src = p.input[0]
        if n.op_type == "Transpose":
            inner = list(next(a.ints for a in p.attribute if a.name == "perm"))
            outer = list(next(a.ints for a in n.attribute if a.name == "perm"))
            perm = [inner[i] for i in outer]
            if perm == sorted(perm):
                rename[n.output[0]] = src
                drop.update({id(n), id(p)})
                continue
            del n.attribute[:]
            n.attribute.extend([helper_attr("perm", perm)])
        elif w.shapes.get(src) == w.shapes.get(n.output[0]):
            rename[n.output[0]] = src
            drop.update({id(n), id(p)})
            continue
        n.input[0] = src
        drop.add(id(p))
        # the node now reads src directly: keep the use lists current for later rewrites
        uses.setdefault(src, []).append(n)


def _clamp(w: _RelaxWalker, prod: dict, uses: dict, single, rename: dict, drop: set) -> None:
    """Clamp written as Min(Max(x, lo), hi) with scalar bounds (TVM's ONNX importer lowers Clip so) -> Clip."""
    nodes = w.nodes
    for n in nodes:
        if n.op_type != "Max" or not single(n.output[0]) or id(n) in drop:
            continue
        mn = uses[n.output[0]][0]
        if mn.op_type != "Min" or id(mn) in drop:
            continue
        x, lo = n.input[0], n.input[1]
        hi = mn.input[1] if mn.input[0] == n.output[0] else mn.input[0]
        if w.shapes.get(lo) != () or w.shapes.get(hi) != ():
            continue
        clip = helper_node("Clip", [x, lo, hi], [mn.output[0]])
        nodes[nodes.index(mn)] = clip
        drop.add(id(n))


def _safe_softmax(w: _RelaxWalker, prod: dict, uses: dict, single, rename: dict, drop: set) -> None:
    """Safe softmax: Where(cond, zeros, Softmax(s)) where cond is computed only from s."""
    nodes = w.nodes
    for n in nodes:
        if n.op_type != "Softmax":
            continue
        s, sm = n.input[0], n.output[0]
        for u in list(uses.get(sm, [])):
            if u.op_type != "Where" or u.input[2] != sm:
                continue
            guard = _ancestors(prod, u.input[0], stop={s})
            fill = _ancestors(prod, u.input[1], stop=set())
            if guard is None or fill is None:
                continue
            if not all(g.op_type in ("Equal", "Not", "Cast", "ReduceMax", "ReduceMin", "IsInf", "IsNaN", "Constant",
                                     "Unsqueeze", "Reshape") for g in guard):
                continue
            if not all(f.op_type in ("ConstantOfShape", "Constant", "Expand", "Cast") for f in fill):
                continue
            rename[u.output[0]] = sm
            drop.add(id(u))


def _dead_code(w: _RelaxWalker) -> None:
    """Drop nodes none of whose outputs is read (what the rewrites above leave behind)."""
    needed = {o.name for o in w.outputs}
    kept = []
    for n in reversed(w.nodes):
        if any(o in needed for o in n.output):
            kept.append(n)
            needed.update(i for i in n.input if i)
    w.nodes = kept[::-1]


def _apply(w: _RelaxWalker, rename: dict, drop: set) -> None:
    nodes = w.nodes

    def resolve(x):
        while x in rename:
            x = rename[x]
        return x

    kept = []
    for n in nodes:
        if id(n) in drop:
            continue
        for i, x in enumerate(n.input):
            n.input[i] = resolve(x)
        kept.append(n)
    w.nodes = kept
    for o in w.outputs:
        o.name = resolve(o.name)


def helper_attr(name: str, value):
    from onnx import helper

    return helper.make_attribute(name, value)


def helper_node(op: str, inputs: list[str], outputs: list[str]):
    from onnx import helper

    return helper.make_node(op, inputs, outputs)


def _dtype_of(w, name):
    inv = {v: k for k, v in _ELEM.items()}
    vi = w.value_info.get(name)
    return inv.get(vi.type.tensor_type.elem_type, "float32") if vi is not None else "float32"


def _ancestors(prod, name, stop) -> list | None:
    """The nodes computing ``name`` back to graph sources or ``stop`` (None if it reads other data)."""
    seen, out, todo = set(), [], [name]
    while todo:
        x = todo.pop()
        if x in stop or x in seen or not x:
            continue
        seen.add(x)
        p = prod.get(x)
        if p is None:
            return None if not stop else None if x not in stop else out
        out.append(p)
        todo.extend(p.input)
    return out
