"""Loading and checking an ONNX model: the file or proto, the opsets, initializers (never their
external data), the schema checks of every node, and which graph inputs are data or weights."""

from __future__ import annotations

import graphlib
import heapq
from pathlib import Path
from typing import Any

from ..._errors import DynamicShapeError, InvalidGraphError, InvalidInputError, ModelLoadError, suggest
from ...ir import MAX_PARAMS, check_tensor
from .._common import parse_shape
from ._tables import (
    _ATTR_KIND, _MS, _MS_MIN_INPUTS, _PASS_OPS, _STD_DOMAINS, _WEIGHT_POS, _known, _label, _numel, _op, _schema,
    _subgraph_refs, dtype_name, read_attribute,
)


# -------------------------------------------------------------------- loading
def _load(model) -> tuple[Any, str]:
    import onnx
    from google.protobuf.message import DecodeError

    if isinstance(model, onnx.ModelProto):
        return model, model.graph.name or "onnx_model"
    if not isinstance(model, (str, Path)):
        raise InvalidInputError(
            f"expected a path to an .onnx file or an onnx.ModelProto, got {type(model).__name__}"
        )
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelLoadError(f"no such file: {path}")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a directory, not an ONNX model file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except DecodeError as e:
        raise ModelLoadError(
            f"could not parse {path} as an ONNX model (truncated or corrupt file, or not ONNX): {e}"
        ) from None
    except Exception as e:  # noqa: BLE001 - any reader failure is a load error
        raise ModelLoadError(f"could not read {path} as an ONNX model: {type(e).__name__}: {e}") from None
    if not proto.graph.node or not proto.opset_import or proto.ir_version <= 0:
        raise ModelLoadError(
            f"{path} is not an ONNX model (it parses but has no graph/opset; truncated or a different format?)"
        )
    return proto, path.stem


def _dims(vi) -> list[int | str | None] | None:
    """Declared dims of a ValueInfo: int, dim_param name, or None (unknown); None if no shape."""
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
        return None
    out: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(int(d.dim_value))
        elif d.HasField("dim_value") and d.dim_value == 0:
            out.append(0)
        else:
            out.append(d.dim_param or None)
    return out


def _check_stored(t, what: str) -> None:
    """A tensor that stores its data in the file must store as much as its dims say (weights that were
    stripped, or live in an external file, store nothing here and are not checked)."""
    from onnx import TensorProto, checker

    if t.data_location == TensorProto.EXTERNAL:
        return
    if not t.raw_data and not any(len(getattr(t, f)) for f in (
            "float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")):
        return
    try:
        checker.check_tensor(t)
    except checker.ValidationError as e:
        raise ModelLoadError(f"{what} does not hold the data its shape {tuple(t.dims)} needs: {e}") from None


# ------------------------------------------------------------- inputs
def _uses(g) -> tuple[dict[str, list[tuple[str | None, int, Any]]], set[str]]:
    """Who reads each value (``(op, input position, node)``; -1: a subgraph) and what nodes produce."""
    uses: dict[str, list[tuple[str | None, int, Any]]] = {}
    produced: set[str] = set()
    for n in g.node:
        op = _op(n)
        if op == "Attention" and n.domain == _MS:
            op = f"{_MS}.Attention"
        for i, name in enumerate(n.input):
            if name:
                uses.setdefault(name, []).append((op, i, n))
        for name in _subgraph_refs(n):
            uses.setdefault(name, []).append((op, -1, n))
        produced.update(o for o in n.output if o)
    return uses, produced


def _slot_uses(uses: dict, name: str, depth: int = 0) -> list[tuple[str | None, int]]:
    out = []
    for op, i, n in uses.get(name, []):
        if op in _PASS_OPS and i == 0 and depth < 8:
            for o in n.output:
                if o:
                    out.extend(_slot_uses(uses, o, depth + 1))
        else:
            out.append((op, i))
    return out


def _input_kind(vi) -> str | None:
    return next((p.value for p in vi.metadata_props if p.key == "pkg.torch.export.graph_signature.InputSpec.kind"),
                None)


def _static(dims) -> bool:
    return dims is not None and all(isinstance(d, int) and d > 0 for d in dims)


def _split_inputs(graph_inputs: list, uses: dict) -> tuple[list, list]:
    """``(data inputs, weight inputs)`` of the graph inputs without initializers (see ``_classify``)."""
    weight_inputs, data_inputs = [], []
    for vi in graph_inputs:
        kind = _input_kind(vi)
        if kind in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
            weight_inputs.append(vi)
            continue
        dims = _dims(vi)
        if kind == "USER_INPUT" or not _static(dims):
            data_inputs.append(vi)
            continue
        direct = [(op, i) for op, i, _ in uses.get(vi.name, [])]
        through = _slot_uses(uses, vi.name)
        strict = any(i in _WEIGHT_POS.get(op, ()) and op not in ("MatMul", "Gather") for op, i in through)
        only_weight = bool(direct) and all(i in _WEIGHT_POS.get(op, ()) for op, i in direct)
        if strict or (only_weight and (len(dims) == 2 or all(op not in ("MatMul", "Gather") for op, _ in direct))):
            weight_inputs.append(vi)
        else:
            data_inputs.append(vi)
    first = _dims(data_inputs[0]) if data_inputs else None
    if first is None or len(first) >= 1:
        lead = first[0] if first else None  # None or a str: dynamic
        keep = data_inputs[:1]
        for vi in data_inputs[1:]:
            dims = _dims(vi)
            batch_like = bool(dims) and (dims[0] == lead or not isinstance(dims[0], int))
            if _input_kind(vi) != "USER_INPUT" and _static(dims) and not batch_like:
                weight_inputs.append(vi)
            else:
                keep.append(vi)
        data_inputs = keep
    if not data_inputs and weight_inputs:  # nothing left to feed: the heuristic was wrong
        data_inputs = [vi for vi in weight_inputs if _input_kind(vi) is None]
        weight_inputs = [vi for vi in weight_inputs if vi not in data_inputs]
    return data_inputs, weight_inputs


def _dangling(g, inits: dict, uses: dict, produced: set[str]) -> list:
    """Weights read but defined nowhere whose shape ``value_info`` gives (stripped initializers)."""
    # weights referenced but never defined: stripped initializers declared only in value_info
    defined = set(inits) | {vi.name for vi in g.input} | produced
    vinfo = {vi.name: vi for vi in g.value_info}
    dangling = []
    for name in uses:
        if name not in defined:
            if name in vinfo and _known(_dims(vinfo[name])):
                dangling.append(vinfo[name])
            else:
                n = uses[name][0][2]
                raise ModelLoadError(
                    f"tensor {name!r} (read by {_label(n)}) is not produced by any node and is neither a "
                    "graph input nor an initializer; the file may be truncated or its weights stripped "
                    "without shapes"
                )
    return dangling


class _Loading:
    """Validation of the model and the split of its inputs into data and weights."""

    def _validate(self) -> None:
        """Check the model at the boundary; the rest of the frontend trusts what is checked here.

        * every node of a known op: its input count, required inputs and outputs, and the kinds of its
          attributes (the ONNX schema at the model's opset for standard ops; the required inputs of
          the contrib ops the frontend reads).  Ops of other domains are unknown ops: nothing is read
          from them;
        * every value has one producer, and the graph is acyclic (``self.order``: the nodes in
          topological order);
        * graph inputs and initializers have known element types, no negative dimension and no
          tensor beyond what a device can hold; all initializers together stay under
          :data:`~costmodel.ir.MAX_PARAMS` elements.
        """
        from onnx import TensorProto

        g = self.g
        if "" not in self.opsets and any((n.domain or "") in _STD_DOMAINS for n in g.node):
            raise ModelLoadError("the model declares no opset version for the default ONNX domain ''")
        for dom, ver in self.opsets.items():
            if ver < 1:
                raise ModelLoadError(f"the model imports opset {ver} of domain {dom or 'ai.onnx'!r}; versions start at 1")
        for n in g.node:
            self._check_node(n)
        defined: dict[str, str] = {}
        for vi in g.input:
            defined.setdefault(vi.name, "graph input")
        for t in list(g.initializer) + [st.values for st in g.sparse_initializer]:
            defined.setdefault(t.name, "initializer")
        producer: dict[str, Any] = {}
        for n in g.node:
            for o in n.output:
                if not o:
                    continue
                if o in producer:
                    raise ModelLoadError(
                        f"value {o!r} is produced by both {_label(producer[o])} and {_label(n)}; every value "
                        "must have exactly one producer"
                    )
                if o in defined:
                    raise ModelLoadError(f"{_label(n)} writes {o!r}, which is already a {defined[o]} of the graph")
                producer[o] = n
        valid = set(TensorProto.DataType.values())
        for vi in g.input:
            if not vi.type.HasField("tensor_type"):
                continue
            tt = vi.type.tensor_type
            if tt.elem_type not in valid:
                raise ModelLoadError(f"graph input {vi.name!r} has unknown element type {tt.elem_type}")
            for k, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value") and d.dim_value < 0:
                    raise InvalidGraphError(
                        f"graph input {vi.name!r} has a negative dimension {k} ({d.dim_value}): shape "
                        f"{self._fmt(_dims(vi) or [])}"
                    )
        total = 0
        for t in g.initializer:
            if t.data_type not in valid or t.data_type == TensorProto.UNDEFINED:
                raise ModelLoadError(f"initializer {t.name!r} has unknown element type {t.data_type}")
            check_tensor(list(t.dims), dtype_name(t.data_type), f"initializer {t.name!r}")
            _check_stored(t, f"initializer {t.name!r}")
            total += _numel(list(t.dims))
        for st in g.sparse_initializer:
            check_tensor(list(st.dims), dtype_name(st.values.data_type), f"sparse initializer {st.values.name!r}")
            total += _numel(list(st.dims))
        if total > MAX_PARAMS:
            raise InvalidGraphError(
                f"the initializers hold {total:.3g} elements; more than the {MAX_PARAMS:.0e} parameters any device "
                "can hold (an absurd dimension?)"
            )
        self.order = self._toposort(list(g.node))

    def _check_node(self, node) -> None:
        """Inputs, outputs and attribute kinds of one node (see :meth:`_validate`)."""
        from onnx.defs import OpSchema

        op = _op(node)
        if op is None:
            return  # an unknown op: counted as ``other``, nothing is read from it
        ins, outs = list(node.input), list(node.output)
        schema = _schema(node.op_type, self.opset) if (node.domain or "") in _STD_DOMAINS else None
        if schema is None:
            need = _MS_MIN_INPUTS.get(op)
            if need is not None:
                if len(ins) < need or not all(ins[:need]):
                    raise ModelLoadError(
                        f"{_label(node)} has inputs {ins}; it needs at least {need}, and the first {need} "
                        "must not be empty"
                    )
                if not outs or not outs[0]:
                    raise ModelLoadError(f"{_label(node)} has no output")
            return
        single = OpSchema.FormalParameterOption.Single
        lo, hi = schema.min_input, schema.max_input
        if not lo <= len(ins) <= hi:
            takes = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi < 2**20 else f"at least {lo}"
            raise ModelLoadError(
                f"{_label(node)} has {len(ins)} inputs; {node.op_type} (opset {schema.since_version}) takes {takes}"
            )
        for i, fp in enumerate(schema.inputs[: len(ins)]):
            if fp.option == single and not ins[i]:
                raise ModelLoadError(f"{_label(node)}: input {i} ({fp.name}) is required but empty")
        if len(outs) < schema.min_output or len(outs) > schema.max_output:
            raise ModelLoadError(
                f"{_label(node)} has {len(outs)} outputs; {node.op_type} (opset {schema.since_version}) has "
                f"{schema.min_output} to {schema.max_output}"
            )
        for i, fp in enumerate(schema.outputs[: len(outs)]):
            if fp.option == single and not outs[i]:
                raise ModelLoadError(f"{_label(node)}: output {i} ({fp.name}) is required but empty")
        raw = {a.name: a for a in node.attribute}
        if op == "Constant" and "value" in raw and raw["value"].type == raw["value"].TENSOR:
            _check_stored(raw["value"].t, f"the value of {_label(node)}")
        for name, sa in schema.attributes.items():
            at = raw.get(name)
            if at is None:
                if sa.required:
                    raise ModelLoadError(f"{_label(node)}: attribute {name!r} is required")
                continue
            read_attribute(node, at, _ATTR_KIND.get(int(sa.type), "undefined"))

    def _classify(self):
        """Split graph inputs into data inputs and weights.

        Weights are initializers (a graph input with an initializer of the same name is that
        initializer), inputs the torch exporter marks as parameters/buffers, and static-shaped inputs
        that are not data by how they are read:

        * an input that feeds a weight or bias slot (Conv/ConvTranspose W and B, Gemm B and C,
          BatchNormalization scale/B/mean/var, a norm's scale and bias, PRelu's slope...), also
          through ops that only re-describe it (the TorchScript exporter writes a weight equal to
          another one as ``Identity(other weight)``);
        * an input read only at weight positions where data may also go (a rank-2 MatMul B, an
          embedding table);
        * an input without a batch-like leading dimension when the first data input has one: its
          leading dimension is fixed while the first input's is dynamic, or it differs from the first
          input's (rank-0 inputs have none).

        That is how models exported with ``export_params=False`` or ``keep_initializers_as_inputs=True``
        declare their weights; they are not re-batched and count as parameters.  Names read but
        defined nowhere are weights if ``value_info`` gives their shape.
        """
        self._validate()
        g = self.g
        inits = {t.name: t for t in g.initializer}
        for st in g.sparse_initializer:
            inits.setdefault(st.values.name, st)
        self.inits = inits
        uses, produced = _uses(g)
        graph_inputs = [vi for vi in g.input if vi.name not in inits]
        data_inputs, weight_inputs = _split_inputs(graph_inputs, uses)
        dangling = _dangling(g, inits, uses, produced)
        self.data_inputs = data_inputs
        self.weight_inputs = weight_inputs + dangling

    def _fix_shapes(self, batch, input_shape, input_shapes) -> dict[str, tuple[int, ...]]:
        names = [vi.name for vi in self.data_inputs]
        if input_shapes:
            for k in input_shapes:
                if k not in names:
                    raise InvalidInputError(
                        f"input_shapes names {k!r}, which is not an input of the model "
                        f"(inputs: {', '.join(names) or 'none'}).{suggest(k, names)}"
                    )
        if input_shape is not None and len(names) != 1:
            raise InvalidInputError(
                f"input_shape is for models with one input; this one has {len(names)} "
                f"({', '.join(names)}): pass input_shapes={{name: full shape incl. batch}}"
            )
        fixed: dict[str, tuple[int, ...]] = {}
        for vi in self.data_inputs:
            dims = _dims(vi)
            given = None
            if input_shapes and vi.name in input_shapes:
                given = parse_shape(input_shapes[vi.name])
                if batch is not None and given and given[0] != batch:
                    raise InvalidInputError(
                        f"input_shapes[{vi.name!r}] = {given} has batch {given[0]}, but batch={batch}"
                    )
            elif input_shape is not None:
                given = (batch, *input_shape) if batch is not None else (None, *input_shape)
            if dims is None:
                if given is None or None in given:
                    raise DynamicShapeError(
                        f"input {vi.name!r} has no declared shape; {self._how(vi.name, None, [0])}"
                    )
                fixed[vi.name] = tuple(given)  # type: ignore[arg-type]
                continue
            if given is not None and len(given) != len(dims):
                raise InvalidInputError(
                    f"input {vi.name!r} has rank {len(dims)} (shape {self._fmt(dims)}), but the given shape "
                    f"{tuple(d if d is not None else '?' for d in given)} has rank {len(given)}"
                    + (" (input_shape excludes the batch dimension)" if input_shapes is None else "")
                )
            out: list[int] = []
            missing: list[tuple[int, Any]] = []
            for i, d in enumerate(dims):
                want = given[i] if given is not None else (batch if i == 0 else None)
                if isinstance(d, int) and d > 0:
                    if want is not None and want != d:
                        what = "batch dimension" if i == 0 else f"dimension {i}"
                        raise InvalidInputError(
                            f"input {vi.name!r} has a fixed {what} of size {d} (shape {self._fmt(dims)}); "
                            f"it cannot be set to {want}. Re-export the model with a dynamic {what} to change it."
                        )
                    out.append(d)
                elif want is not None:
                    out.append(int(want))
                else:
                    missing.append((i, d))
            if missing:
                what = " and ".join(f"{i}" + (f" ({d!r})" if isinstance(d, str) else "") for i, d in missing)
                plural = "s" if len(missing) > 1 else ""
                raise DynamicShapeError(
                    f"input {vi.name!r} has dynamic dimension{plural} {what} (shape {self._fmt(dims)}) and no "
                    f"value was given; {self._how(vi.name, dims, [i for i, _ in missing])}"
                )
            fixed[vi.name] = tuple(out)
        for vi in self.data_inputs:
            check_tensor(fixed[vi.name], dtype_name(vi.type.tensor_type.elem_type), f"input {vi.name!r}")
        return fixed

    @staticmethod
    def _fmt(dims) -> str:
        return "(" + ", ".join(str(d) if d is not None else "?" for d in dims) + ")"

    def _how(self, name: str, dims, missing: list[int]) -> str:
        """How to give the missing dimensions (``missing``: their indices; ``dims`` None: no shape at all)."""
        parts = []
        if dims is None or 0 in missing:
            parts.append("batch=N (CLI: --batch N)")
        if dims is None or any(i > 0 for i in missing):
            rest = [str(d) if isinstance(d, int) and d > 0 else "?" for d in (dims or [])[1:]]
            example = ",".join(rest) if rest else "3,224,224"
            if len(self.data_inputs) == 1:
                parts.append(f"the shape without the batch dimension, input_shape=({example.replace(',', ', ')}) "
                             f"(CLI: --input {example})" + (", giving each ? a size" if "?" in example else ""))
            else:
                parts.append(f"input_shapes={{{name!r}: (batch, {', '.join(rest) or '...'})}} with the full "
                             "shape of every input (estimate, to_graph and annotate take the dict as inputs=; "
                             f"CLI: --onnx-input {name}=SHAPE per input)")
        return "pass " + " and ".join(parts)

    @staticmethod
    def _toposort(nodes) -> list:
        """The nodes in topological order (their own order when it is one; otherwise each node as early
        as its inputs allow, ties broken by file order).  A cycle is an :class:`InvalidGraphError`
        naming the nodes on it."""
        produced = {o: idx for idx, n in enumerate(nodes) for o in n.output if o}
        deps = [{produced[i] for i in list(n.input) + _subgraph_refs(n) if i in produced} for n in nodes]
        if all(d < idx for idx, ds in enumerate(deps) for d in ds):
            return list(nodes)
        ts = graphlib.TopologicalSorter({idx: ds for idx, ds in enumerate(deps)})
        try:
            ts.prepare()
        except graphlib.CycleError as e:
            cycle = e.args[1]  # [a, b, ..., a]: each one feeds the next
            path = " -> ".join(_label(nodes[i]) for i in cycle)
            raise InvalidGraphError(
                f"the graph has a cycle: {path}; an ONNX graph must be acyclic (an input wired to the output "
                "of a node that depends on it?)"
            ) from None
        order: list = []
        ready: list[int] = []
        while ts.is_active():
            for idx in ts.get_ready():
                heapq.heappush(ready, idx)
            idx = heapq.heappop(ready)
            order.append(nodes[idx])
            ts.done(idx)
        return order
