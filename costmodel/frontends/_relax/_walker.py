"""The walk over a Relax function: parameters, bindings and calls, as ONNX nodes with typed values."""

from __future__ import annotations

import warnings
from typing import Any

from ..._errors import DynamicShapeError, InvalidInputError, ModelLoadError, UnsupportedOpWarning
from ._ops import _OpRules
from ._tir import conv_operands as _conv_operands
from ._tir import bind_shapes, is_symbolic, kernel_info
from ._util import (
    _BINARY, _ELEM, _NO_WORK, _REDUCE, _UNARY, _VALUE_LIMIT, _dim_vars, _eval_dim, _flatten, _h, _int, _ints,
    _is_prim, _is_shape, _live_bindings, _lowered_op,
)


class _RelaxWalker(_OpRules):
    """Walks the dataflow bindings of one Relax function and writes the ONNX form."""

    def __init__(self, mod, fname: str, bindings: dict[str, int], batch: int | None, mode: str) -> None:
        import tvm
        from tvm import relax

        self.tvm, self.relax = tvm, relax
        self.mod = mod
        self.fname = fname
        self.symbols = dict(bindings)
        self.batch = batch
        self.mode = mode
        self.nodes: list = []
        self.inits: list = []
        self.const_inputs: list = []  # weights held as constants (keep_params_as_input=False)
        self.inputs: list = []
        self.outputs: list = []
        self.value_info: dict[str, Any] = {}
        self.weights: set[str] = set()
        self.buffers: set[str] = set()
        self.env: dict[Any, Any] = {}  # relax var -> name | list (tuple) | ("const", name)
        self.counter = 0
        self.warned: set[str] = set()
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.producer: dict[str, Any] = {}  # name -> onnx node that writes it
        self._outs: dict[Any, list] = {}
        self._int_consts: dict[tuple, str] = {}
        self._taken: set[str] = set()
        self._tir_info: dict[str, dict[str, Any]] = {}  # PrimFunc name -> kind, FLOPs, MACs
        self._check_bindings(bindings)

    def _check_bindings(self, bindings: dict[str, int]) -> None:
        """A binding must name one of the function's symbolic shape variables (a typo would be ignored)."""
        if not bindings:
            return
        from ..._errors import InvalidInputError, suggest

        func = next((f for gv, f in self.mod.functions_items() if gv.name_hint == self.fname), None)
        if func is None:
            return
        names = sorted({v.name for v in self.relax.analysis.defined_symbolic_vars(func)}
                       | {v.name for v in self.relax.analysis.free_symbolic_vars(func)})
        unknown = [k for k in bindings if k not in names]
        if unknown:
            raise InvalidInputError(
                f"bindings names {unknown[0]!r}, which is no symbolic shape variable of Relax function "
                f"{self.fname!r} (its variables: {', '.join(names) or 'none: its shapes are all static'})."
                f"{suggest(unknown[0], names)}")

    # -------------------------------------------------------------- helpers
    def fresh(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}__{self.counter}"

    def dim(self, d, where: str) -> int:
        v = _int(d)
        if v is not None:
            return v
        v = _eval_dim(d, self.symbols)
        if v is not None:
            return v
        missing = sorted(set(_dim_vars(d)) - set(self.symbols)) or [str(d)]
        hint = " (or batch= for a leading batch dimension)" if self.batch is None else ""
        raise DynamicShapeError(
            f"Relax: {where} has the symbolic dimension {str(d)!r}; pass bindings={{{missing[0]!r}: <int>}}{hint}"
        )

    def tensor_type(self, ty, where: str) -> tuple[tuple[int, ...], str] | None:
        shape = getattr(ty, "shape", None)
        dtype = getattr(ty, "dtype", None)
        if shape is None or dtype is None:
            return None
        dt = str(dtype)
        if dt not in _ELEM:
            return None
        dims = []
        for d in shape:
            v = getattr(d, "value", None)  # IntImm: the common, fast case
            dims.append(v if type(v) is int else self.dim(d, where))
        return tuple(dims), dt

    def declare(self, name: str, shape, dtype: str) -> None:
        from onnx import helper

        self.shapes[name] = tuple(shape)
        self.value_info[name] = helper.make_tensor_value_info(name, _ELEM[dtype], list(shape))

    def node(self, op: str, inputs: list[str], outputs: list[str], domain: str = "", **attrs) -> None:
        from onnx import helper

        n = helper.make_node(op, inputs, outputs, domain=domain or None, **{k: v for k, v in attrs.items() if v is not None})
        self.nodes.append(n)
        for o in outputs:
            self.producer[o] = n

    def const(self, arr, hint: str = "c") -> str:
        import numpy as np
        from onnx import helper, numpy_helper

        name = self.fresh(hint)
        arr = np.asarray(arr)
        self.nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr, name)))
        self.declare(name, arr.shape, str(arr.dtype) if str(arr.dtype) != "bool" else "bool")
        return name

    def ints_const(self, values, hint="shape") -> str:
        """An int64 constant (shapes, axes, perms), one per distinct value."""
        import numpy as np

        key = tuple(int(v) for v in values)
        name = self._int_consts.get(key)
        if name is None:
            name = self._int_consts[key] = self.const(np.asarray(key, dtype=np.int64), hint)
        return name

    def warn(self, what: str) -> None:
        if what not in self.warned:
            self.warned.add(what)
            warnings.warn(f"relax: {what} is not in the op vocabulary; it is counted as kind 'other' (no FLOPs)",
                          UnsupportedOpWarning, stacklevel=4)

    # -------------------------------------------------------------- values
    def constant(self, c, hint: str, *, weight_pos: bool = False) -> str:
        """A relax.Constant -> an ONNX name (values carried when small, a weight otherwise)."""
        key = ("const", _h(c))
        if key in self.env:
            return self.env[key]
        tt = self.tensor_type(c.ty if hasattr(c, "ty") else None, "a constant")
        if tt is None:
            raise ModelLoadError(f"Relax: unsupported constant {c}")
        shape, dt = tt
        n = 1
        for d in shape:
            n *= d
        if n == 1 or (n <= _VALUE_LIMIT and not dt.startswith(("float", "bfloat"))):
            try:
                name = self.const(c.value.numpy(), hint)
                self.env[key] = name
                return name
            except Exception:  # noqa: BLE001 - fall back to a dims-only initializer
                pass
        from onnx import helper

        name = self.fresh(f"const_{hint}")
        vi = helper.make_tensor_value_info(name, _ELEM[dt], list(shape))
        self.const_inputs.append(vi)
        self.shapes[name] = shape
        self.weights.add(name)
        self.env[key] = name
        return name

    def arg(self, e, hint: str = "c"):
        """An operand -> ONNX name (or list of names for a tuple)."""
        tvm = self.tvm
        if _is_prim(e):
            import numpy as np

            val = e.value
            return self.const(np.asarray(val, dtype=np.float32 if isinstance(val, float) else np.int64), "prim")
        if isinstance(e, tvm.ir.Constant):
            return self.constant(e, hint)
        if isinstance(e, tvm.ir.Tuple) or type(e).__name__ == "Tuple":
            return [self.arg(f, hint) for f in e.fields]
        r = self.env.get(_h(e))
        if r is None:
            raise ModelLoadError(f"Relax: operand {e} is not defined before its use")
        return r

    def _maybe(self, e):
        try:
            return self.arg(e)
        except ModelLoadError:
            return None

    # ---------------------------------------------------------------- walk
    def run(self) -> None:
        relax = self.relax
        gv = self.mod.get_global_var(self.fname) if hasattr(self.mod, "get_global_var") else None
        func = self.mod[gv] if gv is not None else self.mod[self.fname]
        if not isinstance(func, relax.Function):
            raise InvalidInputError(f"Relax: {self.fname!r} is not a Relax function")
        lowered = _lowered_op(func)
        if lowered is not None:
            raise InvalidInputError(
                f"Relax function {self.fname!r} is already lowered for the VM (it calls {lowered}): its operators "
                "are gone, only kernel calls and allocations are left. Estimate the module before the build "
                "lowers it: run AnnotatePerformance before LegalizeOps / relax.get_pipeline(...), or use "
                "tvm_passes.build, which runs it first")
        attrs = func.attrs or {}
        num_input = _int(attrs["num_input"]) if "num_input" in attrs else None
        params = list(func.params)
        n_in = len(params) if num_input is None else num_input
        from onnx import helper

        for i, p in enumerate(params):
            tt = self.tensor_type(p.ty, f"parameter {p.name!r}")
            if tt is None:
                continue
            shape, dt = tt
            if i < n_in:
                if self.batch is not None and shape and i == 0:
                    pass
                self.inputs.append(helper.make_tensor_value_info(p.name, _ELEM[dt], list(shape)))
            else:
                vi = helper.make_tensor_value_info(p.name, _ELEM[dt], list(shape))
                kind = "PARAMETER"
                vi.metadata_props.add(key="pkg.torch.export.graph_signature.InputSpec.kind", value=kind)
                self.inputs.append(vi)
                self.weights.add(p.name)
            self.shapes[p.name] = shape
            self.env[_h(p)] = p.name
        self.n_data_inputs = n_in
        self.explicit_inputs = num_input is not None  # attrs["num_input"] says which parameters are data
        result = self.walk_function(func, {})
        outs = result if isinstance(result, list) else [result]
        for o in _flatten(outs):
            if isinstance(o, str) and o in self.value_info:
                self.outputs.append(self.value_info[o])
            elif isinstance(o, str) and o in self.shapes:
                from onnx import helper as h

                self.outputs.append(h.make_tensor_value_info(o, 1, list(self.shapes[o])))

    def bind_symbols_from_inputs(self, func) -> None:
        """Bind a symbolic leading dimension of the data inputs to ``batch``."""
        if self.batch is None:
            return
        attrs = func.attrs or {}
        n_in = _int(attrs["num_input"]) if "num_input" in attrs else len(func.params)
        for p in list(func.params)[:n_in]:
            shape = getattr(p.ty, "shape", None)
            if shape and type(shape[0]).__name__ in ("Var", "SizeVar"):
                self.symbols.setdefault(shape[0].name, self.batch)

    def walk_function(self, func, arg_env: dict) -> Any:
        self.env.update(arg_env)
        body = func.body
        blocks = list(getattr(body, "blocks", []))
        live = _live_bindings(self.relax, self.tvm, blocks, body.body)
        for blk in blocks:
            for b in blk.bindings:
                if _h(b.var) in live:
                    self.binding(b)
        return self.arg(body.body)

    def binding(self, b) -> None:
        relax, tvm = self.relax, self.tvm
        var, val = b.var, b.value
        name = var.name
        if type(b).__name__ == "MatchCast":
            self.env[_h(var)] = self.arg(val)
            return
        if isinstance(val, tvm.ir.Constant):
            self.env[_h(var)] = self.arg(val, name)
            return
        if type(val).__name__ == "Tuple":
            self.env[_h(var)] = [self._maybe(f) for f in val.fields]  # dead elements stay None
            return
        if type(val).__name__ == "TupleGetItem":
            tup = self.arg(val.tuple_value)
            self.env[_h(var)] = tup[int(val.index)] if isinstance(tup, list) else tup
            return
        if isinstance(val, (relax.Var,)) or type(val).__name__ in ("Var", "DataflowVar"):
            self.env[_h(var)] = self.arg(val)
            return
        if isinstance(val, tvm.ir.Call) or type(val).__name__ == "Call":
            self.call(var, val)
            return
        # If / SeqExpr / functions: not costed
        self.other(var, type(val).__name__, [])

    # ---------------------------------------------------------------- calls
    def outputs_of(self, var) -> list[tuple[str, tuple[int, ...], str]]:
        """ONNX names, shapes and dtypes of a binding's outputs (memoized; names unique across inlined calls)."""
        got = self._outs.get(_h(var))
        if got is not None:
            return got
        base = var.name
        if base in self.shapes or base in self._taken:
            base = self.fresh(base)
        self._taken.add(base)
        ty = var.ty
        fields = getattr(ty, "fields", None)
        if fields is not None:
            outs = []
            for i, f in enumerate(fields):
                tt = self.tensor_type(f, f"{var.name}[{i}]")
                if tt is not None:
                    outs.append((f"{base}.{i}", *tt))
        else:
            tt = self.tensor_type(ty, repr(var.name))
            outs = [(base, *tt)] if tt is not None else []
        self._outs[_h(var)] = outs
        return outs

    def emit(self, var, op: str, inputs: list[str], domain: str = "", **attrs) -> None:
        outs = self.outputs_of(var)
        for n, s, d in outs:
            self.declare(n, s, d)
        names = [n for n, _, _ in outs]
        self.node(op, inputs, names, domain, **attrs)
        self.env[_h(var)] = names if getattr(var.ty, "fields", None) is not None else names[0]

    def other(self, var, what: str, inputs: list[str]) -> None:
        self.warn(what)
        outs = self.outputs_of(var)
        if not outs:
            return
        self.emit(var, what.replace(".", "_"), [i for i in inputs if isinstance(i, str)], domain="tvm.relax")

    def call(self, var, c) -> None:
        relax, tvm = self.relax, self.tvm
        op = c.op
        if isinstance(op, tvm.ir.GlobalVar) or type(op).__name__ == "GlobalVar":
            callee = self.mod[op]
            if isinstance(callee, relax.Function):
                args = [self.arg(a) for a in c.args]
                env = {_h(p): a for p, a in zip(callee.params, args)}
                # each call site gets its own value names: a function called twice must not
                # produce the same names twice (output names are memoized per Relax variable)
                saved, saved_outs, saved_symbols = dict(self.env), self._outs, self.symbols
                self._outs = {}
                # the callee's own symbolic dimensions take this call's argument shapes
                self.symbols = {**self.symbols, **self._callee_symbols(callee, args)}
                res = self.walk_function(callee, env)
                self.env, self._outs, self.symbols = saved, saved_outs, saved_symbols
                self.env[_h(var)] = res
                return
            self.other(var, f"call {op.name_hint}", _flatten([self.arg(a) for a in c.args if not _is_shape(a)]))
            return
        opname = getattr(op, "name", None)
        if opname is None:
            self.other(var, "call of a function value", [])
            return
        short = opname[len("relax."):] if opname.startswith("relax.") else opname
        a = c.attrs
        args = c.args
        if short in ("call_tir", "call_tir_with_grad", "call_tir_inplace", "call_dps_packed", "call_pure_packed",
                     "call_inplace_packed"):
            callee = args[0]
            cname = getattr(callee, "name_hint", None) or getattr(callee, "global_symbol", None) or str(callee)[:40]
            ins = args[1] if len(args) > 1 else None
            ops = self.arg(ins) if ins is not None and not _is_shape(ins) else []
            ops = _flatten(ops if isinstance(ops, list) else [ops])
            base = cname.rstrip("0123456789_")
            if short == "call_tir" and base in _UNARY and len(ops) == 1 and base not in ("astype", "nn.dropout"):
                self.emit(var, _UNARY[base], ops)  # a legalized kernel named after its operator (topi)
            elif short == "call_tir" and base in _BINARY and len(ops) == 2:
                self.emit(var, _BINARY[base], ops)
            elif short in ("call_tir", "call_tir_inplace", "call_tir_with_grad") and self.tir_kernel(var, callee, ops,
                                                                                                     args):
                return
            else:
                self.other(var, f"{short} {cname}", ops)
            return
        if short in _NO_WORK:
            if args and not _is_shape(args[0]):
                try:
                    self.env[_h(var)] = self.arg(args[0])
                    return
                except ModelLoadError:
                    pass
            self.env[_h(var)] = self.fresh("nowork")
            return
        x = self.arg(args[0]) if args and not _is_shape(args[0]) else None
        if short in _UNARY:
            onnx_op = _UNARY[short]
            if short == "astype":
                self.emit(var, "Cast", [x], to=_ELEM[str(a.dtype)])
            elif short == "square":
                self.emit(var, "Mul", [x, x])
            elif short == "nn.leakyrelu":
                self.emit(var, "LeakyRelu", [x], alpha=float(a.alpha))
            elif short == "nn.dropout":
                self.emit_first(var, "Dropout", [x])
            else:
                self.emit(var, onnx_op, [x])
            return
        if short in _BINARY:
            y = self.arg(args[1])
            self.emit(var, _BINARY[short], [x, y])
            return
        if short in _REDUCE:
            axes = _ints(a.axis) if a.axis is not None else list(range(len(self.shapes.get(x, ()))))
            keep = 1 if a.keepdims else 0
            self.emit(var, _REDUCE[short], [x, self.ints_const(axes, "axes")], keepdims=keep)
            return
        if short in ("argmax", "argmin"):
            self.emit(var, "ArgMax" if short == "argmax" else "ArgMin", [x],
                      axis=_int(a.axis) if a.axis is not None else 0, keepdims=1 if a.keepdims else 0)
            return
        handler = getattr(self, "op_" + short.replace(".", "_"), None)
        if handler is None:
            self.other(var, opname, _flatten([self.arg(e) for e in args if not _is_shape(e) and not _is_prim(e)]))
            return
        handler(var, c, a, x)

    def tir_kernel(self, var, callee, ops: list, args) -> bool:
        """A ``call_tir`` of a PrimFunc of the module (a legalized or fused kernel) as one node whose kind
        and FLOPs come from the TIR (:mod:`._tir`); ``False``: no such PrimFunc (an external kernel)."""
        try:
            func = self.mod[callee]
        except Exception:  # noqa: BLE001 - not a function of this module
            return False
        if type(func).__name__ != "PrimFunc":
            return False
        name = callee.name_hint
        ops = [o for o in ops if isinstance(o, str)]
        outs = self.outputs_of(var)
        if not outs:
            return True
        key: tuple = (name,)
        if is_symbolic(func):  # the kernel's own shape variables take this call's shapes
            shapes, scalars = self._call_shapes(args, outs)
            key = (name, tuple(shapes), tuple(scalars))
            if key not in self._tir_info:
                bound = bind_shapes(func, shapes, scalars)
                func = bound if bound is not None else func
        info = self._tir_info.get(key)
        if info is None:
            info = self._tir_info[key] = kernel_info(func, name)
        kind = info["kind"]
        attrs: dict[str, Any] = {"kind": kind}
        if info["flops"] is not None:
            attrs["flops"] = float(info["flops"])
        if info["macs"] is not None:
            attrs["macs"] = float(info["macs"])
        if info["view"] and len(ops) == 1 and outs[0][2] == self._dtype_of(ops[0]):
            attrs["view"] = 1
        if kind in ("conv", "conv_transpose"):
            ops, conv = _conv_operands(ops, self.shapes, self.weights, outs[0][1],
                                       transpose=kind == "conv_transpose")
            attrs.update(conv)
            if kind == "conv":
                attrs.update(info["conv"])
        elif kind == "matmul" and info["macs"] is not None:
            n_out = 1
            for d in outs[0][1]:
                n_out *= d
            attrs["k"] = float(info["macs"]) / n_out if n_out else 1.0
        self.emit(var, name, ops, domain="tvm.tir", **attrs)
        return True

    def _call_shapes(self, args, outs) -> tuple[list, list]:
        """The shapes of a ``call_tir``'s arguments then outputs (``None`` where unknown), and the values
        of its ``tir_vars``: what its PrimFunc's buffer and scalar parameters take."""
        ins = args[1] if len(args) > 1 else None
        exprs = list(getattr(ins, "fields", None) or ([] if ins is None else [ins]))
        shapes: list = []
        for e in exprs:
            try:
                tt = self.tensor_type(e.ty, "a call_tir argument")
            except DynamicShapeError:
                tt = None
            shapes.append(tt[0] if tt is not None else None)
        shapes += [o[1] for o in outs]
        scalars: list = []
        for e in list(getattr(args[2], "values", ()) if len(args) > 2 else ()):
            try:
                scalars.append(self.dim(e, "a call_tir shape argument"))
            except DynamicShapeError:
                scalars.append(None)
        return shapes, scalars

    def _dtype_of(self, name: str) -> str | None:
        vi = self.value_info.get(name)
        if vi is None:
            return None
        from onnx import helper

        return str(helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))

    def _callee_symbols(self, callee, args) -> dict[str, int]:
        """Values of the symbolic dimensions of ``callee``'s tensor parameters (``R.Tensor(("m", 64))``),
        read off the shapes of the arguments of one call."""
        out: dict[str, int] = {}
        for p, a in zip(callee.params, args):
            shape = getattr(p.ty, "shape", None)
            got = self.shapes.get(a) if isinstance(a, str) else None
            if shape is None or got is None or len(shape) != len(got):
                continue
            for d, v in zip(shape, got):
                if type(d).__name__ in ("Var", "SizeVar"):
                    out.setdefault(d.name, int(v))
        return out

    def emit_first(self, var, op, inputs, **attrs) -> None:
        """An op whose Relax form returns a tuple but only the first element carries data."""
        outs = self.outputs_of(var)
        n, s, d = outs[0]
        self.declare(n, s, d)
        self.node(op, inputs, [n], **attrs)
        self.env[_h(var)] = [n] + [self.fresh("unused") for _ in outs[1:]] if len(outs) > 1 and getattr(var.ty, "fields", None) is not None else n
