"""A seeded mutation fuzzer for the ONNX frontend.

Shared by ``tests/frontends/test_onnx_fuzz.py`` (a few hundred mutants) and
``benchmarks/fuzz_onnx.py`` (thousands); it is not part of the installed
package.

* :func:`build_seeds` makes small seed models: torch exports (a ResNet-18 and a
  MobileNetV2 at 32x32, a two-layer transformer encoder, a CNN exported by the
  TorchScript exporter with its weights as graph inputs) and protos written
  with ``onnx.helper`` (contrib attention ops, shape plumbing folded to
  constants, sequence ops, opset-23 attention).  Large initializers are moved
  to an external data file that does not exist: the frontend never reads
  weights, and mutants stay a few kB.
* :func:`make_mutant` applies one to three mutations to a seed: delete a node,
  rewire an input (also to a node's own output or a later one: cycles),
  drop or add inputs, garbage attributes (wrong kinds, huge or negative
  values), unknown ops and domains, bad dims and dtypes on inputs and
  initializers, bad constant values, broken opsets and outputs, truncated and
  flipped bytes.  A mutant is fully determined by ``(fuzz seed, index)``.
* :class:`Runner` runs mutants in a worker process under a watchdog: a mutant
  that runs past the time limit or past the memory limit is recorded as a
  hang and the worker is replaced.  :func:`check_mutant` is what the worker
  runs: ``costmodel.estimate`` must return finite, non-negative latency,
  memory and energy, or raise a ``CostModelError``; anything else is unclean.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from _onnx_fuzz_seeds import Seed, build_seeds

__all__ = ["Mutant", "Outcome", "Runner", "Seed", "build_seeds", "check_mutant", "make_mutant", "mutants", "unclean"]

# ------------------------------------------------------------------ mutations
_HUGE = [2**31, 2**32 + 1, 2**40, 2**62, -(2**63)]
_BAD_INTS = [0, -1, -7, 3, 1000, *_HUGE]
_OPS = (
    "Attention MultiHeadAttention GroupQueryAttention Range Gather Shape Size Reshape Slice Split SplitToSequence "
    "SequenceAt SequenceConstruct SequenceLength ConcatFromSequence Einsum Conv ConvTranspose Gemm MatMul "
    "BatchNormalization MaxPool AveragePool GlobalAveragePool Resize Pad Concat Softmax ReduceMean ReduceSum TopK "
    "CumSum Loop If Scan Constant ConstantOfShape Expand Tile Squeeze Unsqueeze Transpose Flatten Where Cast "
    "CastLike Dropout GroupNormalization LayerNormalization InstanceNormalization SkipLayerNormalization "
    "MatMulNBits FusedMatMul FusedGemm FusedConv QLinearConv QLinearMatMul ConvInteger MatMulInteger "
    "DequantizeLinear QuantizeLinear OneHot NonZero Compress Identity Relu Add Mul Sigmoid HardSigmoid Erf LpPool "
    "GatherND ScatterND ArgMax Clip LeakyRelu PRelu Trilu EyeLike RandomNormalLike Upsample DepthToSpace"
).split()
_DOMAINS = ["", "ai.onnx", "com.microsoft", "com.unknown", "ai.onnx.ml", "pkg.custom"]


@dataclass
class Mutant:
    seed: str
    index: int
    steps: list[str]
    data: bytes
    batch: int
    as_file: bool = False
    predictor: str | None = "analytic"
    input_shape: tuple | None = None

    def describe(self) -> str:
        how = "file" if self.as_file else "proto"
        return (f"seed model {self.seed!r}, mutant #{self.index} ({how}, batch={self.batch}, "
                f"predictor={self.predictor or 'default'}): " + "; ".join(self.steps))


def _value_names(m) -> list[str]:
    g = m.graph
    names = [i.name for i in g.input] + [t.name for t in g.initializer]
    for n in g.node:
        names.extend(o for o in n.output if o)
    return names


def _pick_node(m, rng, pred=None):
    nodes = [n for n in m.graph.node if pred is None or pred(n)]
    return rng.choice(nodes) if nodes else None


def _node_label(n) -> str:
    return f"node {n.name or (n.output[0] if n.output else '?')!r} ({n.domain + '.' if n.domain else ''}{n.op_type})"


def _garbage_attribute(name: str, rng: random.Random):
    import numpy as np
    from onnx import AttributeProto, helper, numpy_helper

    kind = rng.choice(["int", "ints", "float", "floats", "string", "strings", "tensor", "empty", "undefined",
                       "huge_ints", "nan"])
    if kind == "int":
        return helper.make_attribute(name, rng.choice(_BAD_INTS)), f"int {name}"
    if kind == "ints":
        return helper.make_attribute(name, [rng.choice(_BAD_INTS) for _ in range(rng.randint(1, 5))]), f"ints {name}"
    if kind == "huge_ints":
        return helper.make_attribute(name, [rng.choice(_HUGE)] * rng.randint(1, 8)), f"huge ints {name}"
    if kind == "float":
        return helper.make_attribute(name, rng.choice([1.5, -2.5, 0.0, 1e30])), f"float {name}"
    if kind == "nan":
        return helper.make_attribute(name, rng.choice([float("nan"), float("inf"), -float("inf")])), f"nan {name}"
    if kind == "floats":
        return helper.make_attribute(name, [1.5, -0.5, 3.0][: rng.randint(1, 3)]), f"floats {name}"
    if kind == "string":
        return helper.make_attribute(name, rng.choice(["garbage", "", "SAME_UPPER", "\xff"])), f"string {name}"
    if kind == "strings":
        return helper.make_attribute(name, ["a", "b"]), f"strings {name}"
    if kind == "tensor":
        arr = np.asarray(rng.choice([[1, 2], 3.5, [[0.0]]]))
        return helper.make_attribute(name, numpy_helper.from_array(arr)), f"tensor {name}"
    if kind == "empty":
        return helper.make_attribute(name, [], attr_type=rng.choice([AttributeProto.INTS, AttributeProto.FLOATS])), \
            f"empty list {name}"
    a = AttributeProto()  # declared type and stored field disagree
    a.name, a.type, a.i = name, rng.choice([AttributeProto.UNDEFINED, AttributeProto.INTS, AttributeProto.GRAPH]), 3
    return a, f"mistyped {name}"


def _schema_attr_names(n) -> list[str]:
    try:
        from onnx import defs

        return sorted(defs.get_schema(n.op_type, 23, n.domain if n.domain != "ai.onnx" else "").attributes)
    except Exception:  # noqa: BLE001 - contrib / unknown op
        return ["num_heads", "kv_num_heads", "qkv_hidden_sizes", "axis", "K", "N", "transA", "transB"]


def _set_dims(shape_proto, dims) -> None:
    del shape_proto.dim[:]
    for d in dims:
        dd = shape_proto.dim.add()
        if isinstance(d, str):
            dd.dim_param = d
        elif d is not None:
            dd.dim_value = d


def _bad_dims(old: list, rng: random.Random) -> list:
    kind = rng.choice(["zero", "negative", "huge", "param", "rank_down", "rank_up", "empty", "all_huge"])
    dims = list(old) or [1]
    i = rng.randrange(len(dims))
    if kind == "zero":
        dims[i] = 0
    elif kind == "negative":
        dims[i] = rng.choice([-1, -5, -(2**40)])
    elif kind == "huge":
        dims[i] = rng.choice(_HUGE[:-1])
    elif kind == "all_huge":
        dims = [2**31] * len(dims)
    elif kind == "param":
        dims[i] = rng.choice(["N", "", None])
    elif kind == "rank_down":
        dims = dims[:-1]
    elif kind == "rank_up":
        dims = dims + [rng.choice([1, 3, 2**20])]
    else:
        dims = []
    return dims


def _mut_delete_node(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``delete_node``."""
    if nodes:
        n = rng.choice(nodes)
        g.node.remove(n)
        return f"deleted {_node_label(n)}"
    return None


def _mut_rewire_input(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``rewire_input``."""
    n = _pick_node(m, rng, lambda n: len(n.input) > 0)
    if n is not None:
        j = rng.randrange(len(n.input))
        new = rng.choice(_value_names(m) + ["", "no_such_value"])
        old, n.input[j] = n.input[j], new
        return f"rewired input {j} of {_node_label(n)} from {old!r} to {new!r}"


def _mut_cycle(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``cycle``."""
    if len(nodes) > 1:
        i = rng.randrange(len(nodes))
        n = nodes[i]
        later = [o for k in range(i, len(nodes)) for o in nodes[k].output if o]
        if n.input and later:
            j = rng.randrange(len(n.input))
            new = rng.choice(later)
            n.input[j] = new
            return f"rewired input {j} of {_node_label(n)} to {new!r} (own or later output: a cycle)"
    return None


def _mut_drop_input(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``drop_input``."""
    n = _pick_node(m, rng, lambda n: len(n.input) > 0)
    if n is not None:
        if rng.random() < 0.5:
            k = rng.randrange(len(n.input))
            del n.input[k:]
            return f"kept {k} inputs of {_node_label(n)}"
        j = rng.randrange(len(n.input))
        n.input[j] = ""
        return f"blanked input {j} of {_node_label(n)}"


def _mut_extra_input(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``extra_input``."""
    n = _pick_node(m, rng)
    if n is not None:
        names = _value_names(m)
        k = rng.randint(1, 4)
        n.input.extend(rng.choice(names) for _ in range(k))
        return f"added {k} inputs to {_node_label(n)}"


def _mut_attr_type(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``attr_type``."""
    n = _pick_node(m, rng)
    if n is not None:
        names = [a.name for a in n.attribute] or _schema_attr_names(n)
        if names:
            name = rng.choice(names)
            for a in list(n.attribute):
                if a.name == name:
                    n.attribute.remove(a)
            attr, what = _garbage_attribute(name, rng)
            n.attribute.append(attr)
            return f"set attribute of {_node_label(n)} to {what}"


def _mut_attr_value(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``attr_value``."""
    n = _pick_node(m, rng, lambda n: any(a.ints or a.HasField("i") for a in n.attribute))
    if n is not None:
        a = rng.choice([a for a in n.attribute if a.ints or a.HasField("i")])
        if a.ints:
            for k in range(len(a.ints)):
                a.ints[k] = rng.choice(_BAD_INTS[:-1])
        else:
            a.i = rng.choice(_BAD_INTS[:-1])
        return f"bad values in attribute {a.name} of {_node_label(n)}"


def _mut_unknown_op(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``unknown_op``."""
    n = _pick_node(m, rng)
    if n is not None:
        n.op_type = rng.choice(["FooBar", "", "Conv2d", "relu", "\u00e9", "Custom" * 20])
        return f"renamed op of node {n.name!r} to {n.op_type!r}"


def _mut_domain(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``domain``."""
    n = _pick_node(m, rng)
    if n is not None:
        n.domain = rng.choice(_DOMAINS)
        return f"moved {_node_label(n)} to domain {n.domain!r}"


def _mut_swap_op(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``swap_op``."""
    n = _pick_node(m, rng)
    if n is not None:
        n.op_type = rng.choice(_OPS)
        if rng.random() < 0.3:
            n.domain = rng.choice(_DOMAINS)
        return f"changed node {n.name!r} to {n.domain + '.' if n.domain else ''}{n.op_type}"


def _mut_input_dims(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``input_dims``."""
    ins = [i for i in g.input if i.type.HasField("tensor_type")]
    if ins:
        vi = rng.choice(ins)
        tt = vi.type.tensor_type
        if rng.random() < 0.15:
            tt.ClearField("shape")
            return f"removed the shape of input {vi.name!r}"
        dims = _bad_dims([d.dim_value if d.HasField("dim_value") else d.dim_param for d in tt.shape.dim], rng)
        _set_dims(tt.shape, dims)
        return f"set dims of input {vi.name!r} to {dims}"


def _mut_init_dims(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``init_dims``."""
    if g.initializer:
        t = rng.choice(list(g.initializer))
        dims = [d for d in _bad_dims(list(t.dims), rng) if isinstance(d, int)]
        del t.dims[:]
        t.dims.extend(dims)
        return f"set dims of initializer {t.name!r} to {dims}"
    return None


def _mut_dtype(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``dtype``."""
    et = rng.choice([0, 2, 7, 8, 9, 10, 11, 14, 16, 17, 21, 25, 99, -3])
    if g.initializer and rng.random() < 0.5:
        t = rng.choice(list(g.initializer))
        t.data_type = et
        return f"set dtype of initializer {t.name!r} to {et}"
    if g.input:
        vi = rng.choice(list(g.input))
        vi.type.tensor_type.elem_type = et
        return f"set dtype of input {vi.name!r} to {et}"


def _mut_const_value(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``const_value``."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    cands = [n for n in nodes if n.op_type == "Constant"]
    small = [t for t in g.initializer if t.data_location != TensorProto.EXTERNAL]
    vals = rng.choice([[-1], [0], [2**31], [2**40], [-(2**40)], [3, -1, 2**33], [7] * 9, []])
    arr = np.asarray(vals, dtype=np.int64)
    if rng.random() < 0.5 and cands:
        n = rng.choice(cands)
        del n.attribute[:]
        n.attribute.append(helper.make_attribute("value", numpy_helper.from_array(arr)))
        return f"set value of {_node_label(n)} to {vals}"
    if small:
        t = rng.choice(small)
        new = numpy_helper.from_array(arr.astype(np.float32) if t.data_type == TensorProto.FLOAT else arr, t.name)
        t.CopyFrom(new)
        return f"set initializer {t.name!r} to {vals}"


def _mut_opset(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``opset``."""
    if rng.random() < 0.3:
        del m.opset_import[:]
        return "removed the opset imports"
    v = rng.choice([1, 6, 9, 11, 13, 17, 23, 26, 999, -1])
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = v
    return f"set the default opset to {v}"


def _mut_outputs(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``outputs``."""
    from onnx import TensorProto, helper

    kind = rng.choice(["none", "input", "missing"])
    if kind == "none":
        del g.output[:]
    elif kind == "input" and g.input:
        del g.output[:]
        g.output.append(helper.make_tensor_value_info(g.input[0].name, TensorProto.FLOAT, None))
    else:
        g.output.append(helper.make_tensor_value_info("no_such_output", TensorProto.FLOAT, None))
    return f"graph outputs: {kind}"


def _mut_dup_output(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``dup_output``."""
    if len(nodes) > 1:
        a, b = rng.sample(nodes, 2)
        if a.output and (b.output or g.input):
            src = rng.choice(list(b.output) + [g.input[0].name] if g.input else list(b.output))
            a.output[0] = src
            return f"output 0 of {_node_label(a)} renamed to {src!r} (defined twice)"
    return None


def _mut_remove_input(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``remove_input``."""
    if g.input:
        vi = rng.choice(list(g.input))
        g.input.remove(vi)
        return f"removed graph input {vi.name!r}"
    return None


def _mut_value_info(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``value_info``."""
    from onnx import TensorProto, helper

    names = [o for n in nodes for o in n.output if o]
    if names:
        name = rng.choice(names)
        dims = _bad_dims([2, 3], rng)
        g.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
        _set_dims(g.value_info[-1].type.tensor_type.shape, dims)
        return f"declared value {name!r} with dims {dims}"


def _mut_empty_graph(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``empty_graph``: drop everything computed from the first input: no operator reads the data."""
    from onnx import TensorProto, helper

    x = g.input[0].name if g.input else "x"
    tainted, keep = {x}, []
    for n in nodes:
        if any(i in tainted for i in n.input):
            tainted.update(o for o in n.output if o)
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    del g.output[:]
    outs = [o for n in keep for o in n.output if o][-1:]
    g.output.extend(helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs)
    return f"removed every node computed from {x!r}"


def _mut_input_type(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``input_type``: a graph input that is not a tensor."""
    from onnx import TensorProto, helper

    if g.input:
        vi = rng.choice(list(g.input))
        kind = rng.choice(["sequence", "optional", "empty"])
        if kind == "sequence":
            vi.type.CopyFrom(helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2])))
        elif kind == "optional":
            vi.type.CopyFrom(helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2])))
        else:
            vi.ClearField("type")
        return f"made input {vi.name!r} of {kind} type"
    return None


def _mut_huge_data_dim(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``huge_data_dim``: a legal but huge data dimension (the model stays under 1 TiB)."""
    if g.input:
        vi = g.input[0]
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]
        if len(dims) >= 2:
            dims[rng.randrange(1, len(dims))] = rng.choice([2**20, 2**26, 2**31])
            _set_dims(vi.type.tensor_type.shape, dims)
            return f"set dims of input {vi.name!r} to {dims}"
    return None


def _mut_function(m, g, nodes: list, rng: random.Random) -> str | None:
    """Mutation ``function``: break a local function."""
    from onnx import helper

    if m.functions:
        f = rng.choice(list(m.functions))
        kind = rng.choice(["drop_body", "rename_output", "recursive"])
        if kind == "drop_body":
            del f.node[:]
        elif kind == "rename_output" and f.node:
            f.node[-1].output[0] = "nowhere"
        else:
            f.node.append(helper.make_node(f.name, list(f.output), ["again"], domain=f.domain))
        return f"local function {f.name!r}: {kind}"
    return None


_MUTATIONS = {
    "delete_node": _mut_delete_node,
    "rewire_input": _mut_rewire_input,
    "cycle": _mut_cycle,
    "drop_input": _mut_drop_input,
    "extra_input": _mut_extra_input,
    "attr_type": _mut_attr_type,
    "attr_value": _mut_attr_value,
    "unknown_op": _mut_unknown_op,
    "domain": _mut_domain,
    "swap_op": _mut_swap_op,
    "input_dims": _mut_input_dims,
    "init_dims": _mut_init_dims,
    "dtype": _mut_dtype,
    "const_value": _mut_const_value,
    "opset": _mut_opset,
    "outputs": _mut_outputs,
    "dup_output": _mut_dup_output,
    "remove_input": _mut_remove_input,
    "value_info": _mut_value_info,
    "empty_graph": _mut_empty_graph,
    "input_type": _mut_input_type,
    "huge_data_dim": _mut_huge_data_dim,
    "function": _mut_function,
}


def _mutate_proto(m, rng: random.Random) -> str:
    """Apply one random mutation to ``m`` in place; returns what was done."""
    g = m.graph
    op = rng.choice(["delete_node", "rewire_input", "cycle", "drop_input", "extra_input", "attr_type", "attr_type",
                     "attr_value", "unknown_op", "domain", "swap_op", "input_dims", "init_dims", "dtype",
                     "const_value", "opset", "outputs", "dup_output", "remove_input", "value_info", "empty_graph",
                     "attr_type", "drop_input", "swap_op", "input_type", "huge_data_dim", "function"])
    nodes = list(g.node)
    res = _MUTATIONS[op](m, g, nodes, rng)
    return "no-op" if res is None else res


def make_mutant(seed: Seed, fuzz_seed: int, index: int, *, default_every: int = 0) -> Mutant:
    """The ``index``-th mutant of ``seed`` for a fuzz seed (deterministic)."""
    import onnx

    rng = random.Random(f"{fuzz_seed}:{seed.name}:{index}")
    batch = seed.batch
    if seed.dynamic_batch and rng.random() < 0.3:
        batch = rng.choice([1, 3, 32])
    predictor = None if default_every and index % default_every == default_every - 1 else "analytic"
    if rng.random() < 0.12:  # byte-level damage: always through a file
        data = bytearray(seed.data)
        if rng.random() < 0.5:
            cut = rng.randrange(len(data))
            return Mutant(seed.name, index, [f"truncated to {cut} of {len(data)} bytes"], bytes(data[:cut]), batch,
                          True, predictor)
        k = rng.randint(1, 8)
        for _ in range(k):
            p = rng.randrange(len(data))
            data[p] ^= 1 << rng.randrange(8)
        return Mutant(seed.name, index, [f"flipped {k} bits"], bytes(data), batch, True, predictor)
    m = onnx.ModelProto()
    m.ParseFromString(seed.data)
    steps = [_mutate_proto(m, rng) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
    return Mutant(seed.name, index, steps, m.SerializeToString(), batch, rng.random() < 0.25, predictor)


def mutants(seeds: list[Seed], n: int, fuzz_seed: int = 0, *, default_every: int = 0):
    """``n`` mutants spread round-robin over the seeds."""
    for i in range(n):
        yield make_mutant(seeds[i % len(seeds)], fuzz_seed, i // len(seeds), default_every=default_every)


# -------------------------------------------------------------------- checker


@dataclass
class Outcome:
    kind: str  # "estimate", "clean", "unclean", "bad_result", "hang"
    what: str = ""  # error class / exception type / bad field
    detail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind in ("estimate", "clean")


def _finite_non_negative(v) -> bool:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return False
    return math.isfinite(f) and f >= 0


def check_mutant(data: bytes, as_file: bool, batch: int, predictor, input_shape=None, workdir=None) -> Outcome:
    """Estimate one mutant; a finite non-negative estimate or a CostModelError is fine, anything else is not."""
    import onnx

    import costmodel
    from costmodel._errors import CostModelError

    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if as_file:
                path = Path(workdir or tempfile.gettempdir()) / "mutant.onnx"
                path.write_bytes(data)
                src = str(path)
            else:
                src = onnx.ModelProto()
                src.ParseFromString(data)
            est = costmodel.estimate(src, batch=batch, input_shape=input_shape, device="h100", predictor=predictor)
        bad = [k for k in ("latency_ms", "memory_mb", "energy_j") if not _finite_non_negative(getattr(est, k))]
        if bad:
            vals = ", ".join(f"{k}={getattr(est, k)!r}" for k in bad)
            return Outcome("bad_result", bad[0], vals, time.perf_counter() - t0)
        return Outcome("estimate", "", "", time.perf_counter() - t0)
    except CostModelError as e:
        return Outcome("clean", type(e).__name__, str(e)[:300], time.perf_counter() - t0)
    except BaseException as e:  # noqa: BLE001 - everything else is what the fuzzer looks for
        tb = traceback.extract_tb(e.__traceback__)
        where = next((f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in reversed(tb)
                      if "costmodel" in f.filename), f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?")
        return Outcome("unclean", type(e).__name__, f"{str(e)[:200]} [at {where}]", time.perf_counter() - t0)


def _serve() -> None:
    """The worker loop: read pickled jobs on stdin, write pickled outcomes to the original stdout."""
    import pickle
    import sys

    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything the libraries print goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    with tempfile.TemporaryDirectory(prefix="onnx-fuzz-") as d:
        while True:
            try:
                job = pickle.load(inp)
            except EOFError:
                return
            if job is None:
                return
            o = check_mutant(*job, workdir=d)
            pickle.dump((o.kind, o.what, o.detail, o.seconds), out)  # plain data: this module is __main__ here
            out.flush()


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass
class Runner:
    """Runs mutants in a worker process under a watchdog (time and memory); the worker is replaced after a hang."""

    timeout_s: float = 10.0
    max_rss_mb: float = 3000.0
    _proc: object = field(default=None, repr=False)
    _warm: list = field(default_factory=list, repr=False)

    def _start(self) -> None:
        import subprocess
        import sys

        import costmodel

        root = str(Path(costmodel.__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        self._proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      env=env)

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(5)
        self._proc = None

    def warm_up(self, *predictors) -> None:
        """Load these predictors in the worker now (and in every worker that replaces it), so that
        loading is not charged to a mutant's time limit."""
        self._warm = list(predictors)
        self._ensure()

    def _ensure(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._start()
        from onnx import TensorProto, helper

        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
        m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "warm", [x],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]),
                              opset_imports=[helper.make_opsetid("", 17)])
        for p in self._warm:
            self._call(m.SerializeToString(), False, 1, p, None, max(120.0, self.timeout_s))

    def run(self, mutant: Mutant) -> Outcome:
        return self.run_raw(mutant.data, mutant.as_file, mutant.batch, mutant.predictor, mutant.input_shape)

    def run_raw(self, data: bytes, as_file: bool, batch: int, predictor, input_shape=None) -> Outcome:
        self._ensure()
        return self._call(data, as_file, batch, predictor, input_shape, self.timeout_s)

    def _call(self, data: bytes, as_file: bool, batch: int, predictor, input_shape, limit: float) -> Outcome:
        import pickle
        import select

        if self._proc is None or self._proc.poll() is not None:
            self._start()
        t0 = time.perf_counter()
        try:
            pickle.dump((data, as_file, batch, predictor, input_shape), self._proc.stdin)
            self._proc.stdin.flush()
        except OSError:
            pass  # the worker is gone: reported below
        while True:
            ready, _, _ = select.select([self._proc.stdout], [], [], 0.05)
            if ready:
                try:
                    return Outcome(*pickle.load(self._proc.stdout))
                except (EOFError, OSError, pickle.UnpicklingError):
                    code = self._proc.wait(5)
                    self._proc = None
                    return Outcome("unclean", "WorkerDied", f"the worker process died (exit code {code})",
                                   time.perf_counter() - t0)
            elapsed = time.perf_counter() - t0
            rss = _rss_mb(self._proc.pid)
            if elapsed > limit or rss > self.max_rss_mb:
                self._kill()
                why = f"no answer after {limit:g} s" if elapsed > limit else f"memory grew past {self.max_rss_mb:g} MB"
                return Outcome("hang", "hang", why, elapsed)

    def close(self) -> None:
        if self._proc is not None:
            try:
                self._proc.stdin.close()
                self._proc.wait(10)
            except Exception:  # noqa: BLE001 - a stuck worker is killed
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def unclean(results: list[tuple[Mutant, Outcome]]) -> list[str]:
    """One line per mutant whose outcome is neither an estimate nor a clean error."""
    return [f"{o.kind} {o.what}: {o.detail} -- {m.describe()}" for m, o in results if not o.ok]


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--serve"]:
        _serve()
