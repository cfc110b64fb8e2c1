"""TVM Relax frontend: a ``tvm.IRModule`` (Relax) -> CostGraph.

Modules come from ``tvm.relax.frontend.torch.from_exported_program``,
``from_fx`` or ``tvm.relax.frontend.onnx.from_onnx`` (or are written in
TVMScript).  TVM removed Relay in 0.20, so Relax is the only graph IR a
current TVM (0.27) compiler holds; there is no Relay frontend.

How it works
------------
The frontend walks the dataflow bindings of a Relax function in order:

* shapes and dtypes come from each variable's struct info (``R.Tensor((1, 64,
  112, 112), "float32")``); symbolic dimensions are bound from ``bindings=``
  (``{"n": 8}``) or, for a leading dimension of a data input, from ``batch=``;
* edges are real variable uses, so skip connections survive;
* tuples are tracked element-wise (``R.nn.batch_norm`` returns a tuple; a
  ``TupleGetItem`` is the element itself, not a node), and bindings whose
  value never reaches the function's result are dropped (the ``zeros_like``
  index tensor the importer builds for ``max_pool2d_with_indices``, say);
* calls to other Relax functions of the module are inlined; ``call_tir`` and
  packed calls are ``other`` nodes (one warning per callee).

Each ``relax.*`` operator is mapped to the ONNX operator with the same
semantics, and the result goes through the ONNX frontend's normalization
passes, so a model reaches the same op vocabulary by all three routes
(PyTorch, ONNX, Relax): ``reshape -> matmul -> add(bias)`` is one ``matmul``
(``nn.Linear``), the decomposed scaled-dot-product attention (scaled q and
k^T, optional additive mask, softmax, the "safe softmax" guard that zeroes
fully-masked rows, ``@ v``) is one ``attention`` node, ``x * sigmoid(x)`` is
``silu``, a mean over the spatial axes is ``avg_pool``.  Two Relax-specific
rewrites run first: a batched matmul written as ``reshape`` to 3-D, matmul,
``reshape`` back (how the importer lowers 4-D ``torch.matmul``) is put back
on the 4-D tensors, and ``broadcast_to`` to the shape a tensor already has
is dropped.

Weights are the function parameters after ``attrs["num_input"]`` (imports
with ``keep_params_as_input=True``) or non-scalar float constants
(``keep_params_as_input=False``); constants read at batch-norm statistics
positions are buffers, as in PyTorch.  Weight values are never read.
"""

from __future__ import annotations

import warnings
from typing import Any

from .._errors import DynamicShapeError, InvalidInputError, ModelLoadError, UnsupportedOpWarning

#: largest constant whose values are carried into the graph (shape-like / scalar constants)
_VALUE_LIMIT = 64

_ELEM = {
    "float32": 1, "uint8": 2, "int8": 3, "uint16": 4, "int16": 5, "int32": 6, "int64": 7, "bool": 9,
    "float16": 10, "float64": 11, "uint32": 12, "uint64": 13, "bfloat16": 16,
    "float8_e4m3fn": 17, "float8_e5m2": 19,
}

# relax op (without the "relax." prefix) -> ONNX op, for ops whose operands map one to one
_UNARY = {
    "abs": "Abs", "acos": "Acos", "acosh": "Acosh", "asin": "Asin", "asinh": "Asinh", "atan": "Atan",
    "atanh": "Atanh", "ceil": "Ceil", "cos": "Cos", "cosh": "Cosh", "exp": "Exp", "floor": "Floor",
    "log": "Log", "negative": "Neg", "round": "Round", "sign": "Sign", "sin": "Sin", "sinh": "Sinh",
    "sqrt": "Sqrt", "rsqrt": "Sqrt", "tan": "Tan", "tanh": "Tanh", "erf": "Erf", "sigmoid": "Sigmoid",
    "logical_not": "Not", "bitwise_not": "BitwiseNot", "isnan": "IsNaN", "isinf": "IsInf", "trunc": "Floor",
    "isfinite": "IsInf", "square": "Pow", "nn.relu": "Relu", "nn.selu": "Selu", "nn.softplus": "Softplus",
    "nn.leakyrelu": "LeakyRelu", "nn.elu": "Elu", "nn.celu": "Celu", "nn.hardswish": "HardSwish",
    "nn.dropout": "Dropout", "astype": "Cast", "wrap_param": "Identity", "zeros_like": "Identity",
}
_BINARY = {
    "add": "Add", "subtract": "Sub", "multiply": "Mul", "divide": "Div", "floor_divide": "Div",
    "power": "Pow", "maximum": "Max", "minimum": "Min", "equal": "Equal", "not_equal": "Equal",
    "less": "Less", "greater": "Greater", "less_equal": "LessOrEqual", "greater_equal": "GreaterOrEqual",
    "logical_and": "And", "logical_or": "Or", "logical_xor": "Xor", "bitwise_and": "BitwiseAnd",
    "bitwise_or": "BitwiseOr", "bitwise_xor": "BitwiseXor", "floor_mod": "Mod", "mod": "Mod",
    "nn.prelu": "PRelu", "matmul": "MatMul",
}
_REDUCE = {
    "sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax", "min": "ReduceMin", "prod": "ReduceProd",
    "variance": "ReduceMean", "std": "ReduceMean",
}
_NO_WORK = {"shape_of", "tensor_to_shape", "shape_to_tensor", "null_value", "print", "assert_op",
            "hint_on_device", "to_vdevice", "stop_lift_params"}


def _int(e) -> int | None:
    try:
        return int(e)
    except (TypeError, ValueError):
        v = getattr(e, "value", None)
        return int(v) if isinstance(v, int) else None


def _ints(seq) -> list[int]:
    return [int(x) for x in seq] if seq is not None else []


class _RelaxWalker:
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
                saved, saved_outs = dict(self.env), self._outs
                self._outs = {}
                res = self.walk_function(callee, env)
                self.env, self._outs = saved, saved_outs
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

    def emit_first(self, var, op, inputs, **attrs) -> None:
        """An op whose Relax form returns a tuple but only the first element carries data."""
        outs = self.outputs_of(var)
        n, s, d = outs[0]
        self.declare(n, s, d)
        self.node(op, inputs, [n], **attrs)
        self.env[_h(var)] = [n] + [self.fresh("unused") for _ in outs[1:]] if len(outs) > 1 and getattr(var.ty, "fields", None) is not None else n

    # ---------------------------------------------------------------- ops
    def op_clip(self, var, c, a, x):
        lo, hi = (self.arg(e) for e in c.args[1:3])
        self.emit(var, "Clip", [x, lo, hi])

    def op_nn_gelu(self, var, c, a, x):
        self.emit(var, "Gelu", [x])

    def op_nn_gelu_tanh(self, var, c, a, x):
        self.emit(var, "Gelu", [x], approximate="tanh")

    def op_nn_silu(self, var, c, a, x):
        s = self.fresh(var.name + "_sig")
        self.declare(s, self.shapes[x], self._dtype(var))
        self.node("Sigmoid", [x], [s])
        self.emit(var, "Mul", [x, s])

    def op_nn_hardsigmoid(self, var, c, a, x):
        self.emit(var, "HardSigmoid", [x], alpha=1 / 6, beta=0.5)

    def op_nn_softmax(self, var, c, a, x):
        self.emit(var, "Softmax", [x], axis=_int(a.axis))

    def op_nn_log_softmax(self, var, c, a, x):
        self.emit(var, "LogSoftmax", [x], axis=_int(a.axis))

    def _dtype(self, var) -> str:
        return str(var.ty.dtype)

    def op_reshape(self, var, c, a, x):
        shape = self.outputs_of(var)[0][1]
        self.emit(var, "Reshape", [x, self.ints_const(shape)])

    op_flatten = op_reshape

    def op_permute_dims(self, var, c, a, x):
        rank = len(self.shapes[x])
        perm = _ints(a.axes) if a.axes is not None else list(reversed(range(rank)))
        self.emit(var, "Transpose", [x], perm=[p % rank for p in perm])

    def op_expand_dims(self, var, c, a, x):
        self.emit(var, "Unsqueeze", [x, self.ints_const(_ints(a.axis), "axes")])

    def op_squeeze(self, var, c, a, x):
        if a.axis is None:
            self.emit(var, "Squeeze", [x])
        else:
            self.emit(var, "Squeeze", [x, self.ints_const(_ints(a.axis), "axes")])

    def op_broadcast_to(self, var, c, a, x):
        shape = self.outputs_of(var)[0][1]
        if tuple(shape) == self.shapes.get(x):
            self.env[_h(var)] = x  # broadcast to the shape it already has: no kernel
            return
        self.emit(var, "Expand", [x, self.ints_const(shape)])

    def op_concat(self, var, c, a, x):
        xs = self.arg(c.args[0])
        self.emit(var, "Concat", list(xs), axis=_int(a.axis) if a.axis is not None else 0)

    def op_stack(self, var, c, a, x):
        xs = self.arg(c.args[0])
        axis = _int(a.axis) if a.axis is not None else 0
        outs = self.outputs_of(var)
        ups = []
        for t in xs:
            u = self.fresh("stack_in")
            shp = list(self.shapes[t])
            ax = axis % (len(shp) + 1)
            self.declare(u, shp[:ax] + [1] + shp[ax:], outs[0][2])
            self.node("Unsqueeze", [t, self.ints_const([ax], "axes")], [u])
            ups.append(u)
        self.emit(var, "Concat", ups, axis=axis)

    def op_split(self, var, c, a, x):
        axis = _int(a.axis)
        outs = self.outputs_of(var)
        sizes = [s[axis] for _, s, _ in outs]
        self.emit(var, "Split", [x, self.ints_const(sizes, "split")], axis=axis)

    def op_strided_slice(self, var, c, a, x):
        args = c.args
        axes, begin, end = (_tuple_ints(e) for e in args[1:4])
        strides = _tuple_ints(args[4]) if len(args) > 4 and args[4] is not None else [1] * len(axes)
        if axes is None or begin is None or end is None or strides is None:
            self.other(var, "relax.strided_slice (dynamic)", [x])
            return
        self.emit(var, "Slice", [x, self.ints_const(begin, "starts"), self.ints_const(end, "ends"),
                                 self.ints_const(axes, "axes"), self.ints_const(strides, "steps")])

    def op_take(self, var, c, a, x):
        idx = self.arg(c.args[1])
        self.emit(var, "Gather", [x, idx], axis=_int(a.axis) if a.axis is not None else 0)

    def op_gather_elements(self, var, c, a, x):
        self.emit(var, "GatherElements", [x, self.arg(c.args[1])], axis=_int(a.axis))

    def op_gather_nd(self, var, c, a, x):
        self.emit(var, "GatherND", [x, self.arg(c.args[1])], batch_dims=_int(a.batch_dims) or 0)

    def op_scatter_elements(self, var, c, a, x):
        self.emit(var, "ScatterElements", [x, self.arg(c.args[1]), self.arg(c.args[2])], axis=_int(a.axis))

    def op_where(self, var, c, a, x):
        self.emit(var, "Where", [x, self.arg(c.args[1]), self.arg(c.args[2])])

    def op_tile(self, var, c, a, x):
        self.emit(var, "Tile", [x, self.ints_const(_ints(a.repeats), "repeats")])

    def op_repeat(self, var, c, a, x):
        outs = self.outputs_of(var)
        self.emit(var, "Tile", [x, self.ints_const([o // max(i, 1) for o, i in zip(outs[0][1], self.shapes[x])])])

    def op_flip(self, var, c, a, x):
        self.emit(var, "ReverseSequence", [x])

    def op_cumsum(self, var, c, a, x):
        self.emit(var, "CumSum", [x, self.ints_const([_int(a.axis) or 0], "axis")])

    def op_layout_transform(self, var, c, a, x):
        self.emit(var, "Transpose", [x])

    def _const_like(self, var, c, a, x):
        outs = self.outputs_of(var)
        self.emit(var, "ConstantOfShape", [self.ints_const(outs[0][1])])

    op_full_like = op_ones_like = op_full = op_ones = op_zeros = _const_like

    def op_arange(self, var, c, a, x):
        vals = [_int(getattr(e, "value", None)) for e in c.args[:3]]
        if any(v is None for v in vals):
            vals = [0, self.outputs_of(var)[0][1][0], 1]
        self.emit(var, "Range", [self.const(v, "r") if not isinstance(v, str) else v for v in map(_i64, vals)])

    def op_tril(self, var, c, a, x):
        self.emit(var, "Trilu", [x], upper=0)

    def op_triu(self, var, c, a, x):
        self.emit(var, "Trilu", [x], upper=1)

    def op_einsum(self, var, c, a, x):
        self.emit(var, "Einsum", list(self.arg(c.args[0])), equation=str(a.subscripts))

    def op_nn_pad(self, var, c, a, x):
        w = _ints(a.pad_width)
        rank = len(self.shapes[x])
        pads = w[0::2] + w[1::2] if len(w) == 2 * rank else [0] * (2 * rank)
        self.emit(var, "Pad", [x, self.ints_const(pads, "pads")])

    def op_image_resize2d(self, var, c, a, x):
        self.emit(var, "Resize", [x], mode="linear" if "linear" in str(a.method) else "nearest")

    # -- neural-network ops
    def _conv(self, var, c, a, x, transpose=False):
        layout = str(a.data_layout)
        if not layout.startswith("NC") or str(a.kernel_layout)[:2] not in ("OI", "IO"):
            self.other(var, f"{c.op.name} ({layout})", [x, self.arg(c.args[1])])
            return
        w = self.arg(c.args[1])
        rank = len(self.shapes[x]) - 2
        pads = _ints(a.padding)
        if len(pads) == rank:
            pads = pads + pads
        kw = {}
        if transpose:
            kw["output_padding"] = _ints(a.output_padding) or None
        self.emit(var, "ConvTranspose" if transpose else "Conv", [x, w], strides=_ints(a.strides),
                  pads=pads, dilations=_ints(a.dilation), group=_int(a.groups), **kw)

    def op_nn_conv1d(self, var, c, a, x):
        self._conv(var, c, a, x)

    op_nn_conv2d = op_nn_conv3d = op_nn_conv1d

    def op_nn_conv1d_transpose(self, var, c, a, x):
        self._conv(var, c, a, x, transpose=True)

    op_nn_conv2d_transpose = op_nn_conv3d_transpose = op_nn_conv1d_transpose

    def _pool(self, var, c, a, x, onnx_op):
        rank = len(self.shapes[x]) - 2
        pads = _ints(a.padding)
        if len(pads) == rank:
            pads = pads + pads
        kw = {}
        if onnx_op == "AveragePool":
            kw["count_include_pad"] = 1 if getattr(a, "count_include_pad", False) else 0
        self.emit(var, onnx_op, [x], kernel_shape=_ints(a.pool_size), strides=_ints(a.strides), pads=pads,
                  dilations=_ints(a.dilation) if onnx_op == "MaxPool" else None,
                  ceil_mode=1 if a.ceil_mode else 0, **kw)

    def op_nn_max_pool2d(self, var, c, a, x):
        self._pool(var, c, a, x, "MaxPool")

    op_nn_max_pool1d = op_nn_max_pool3d = op_nn_max_pool2d

    def op_nn_avg_pool2d(self, var, c, a, x):
        self._pool(var, c, a, x, "AveragePool")

    op_nn_avg_pool1d = op_nn_avg_pool3d = op_nn_avg_pool2d

    def op_nn_adaptive_avg_pool2d(self, var, c, a, x):
        out = self.outputs_of(var)[0][1]
        if all(d == 1 for d in out[2:]):
            self.emit(var, "GlobalAveragePool", [x])
            return
        ins = self.shapes[x][2:]
        k = [i // o for i, o in zip(ins, out[2:])]
        self.emit(var, "AveragePool", [x], kernel_shape=k, strides=k)

    op_nn_adaptive_avg_pool1d = op_nn_adaptive_avg_pool3d = op_nn_adaptive_avg_pool2d

    def op_nn_batch_norm(self, var, c, a, x):
        ws = [self.arg(e, "bn") for e in c.args[1:5]]
        self.buffers.update(ws[2:4])
        training = bool(getattr(a, "training", False)) and self.mode == "training"
        self.emit_first(var, "BatchNormalization", [x, *ws], epsilon=float(a.epsilon),
                        training_mode=1 if training else None)

    def op_nn_layer_norm(self, var, c, a, x):
        axes = _ints(a.axes)
        rank = len(self.shapes[x])
        axis = min(ax % rank for ax in axes)
        ins = [x, self.arg(c.args[1])]
        if len(c.args) > 2:
            ins.append(self.arg(c.args[2]))
        self.emit(var, "LayerNormalization", ins, axis=axis, epsilon=float(a.epsilon))

    def op_nn_rms_norm(self, var, c, a, x):
        axes = _ints(a.axes)
        rank = len(self.shapes[x])
        self.emit(var, "RMSNormalization", [x, self.arg(c.args[1])], axis=min(ax % rank for ax in axes),
                  epsilon=float(a.epsilon))

    def op_nn_group_norm(self, var, c, a, x):
        self.emit(var, "GroupNormalization", [x, self.arg(c.args[1]), self.arg(c.args[2])],
                  num_groups=_int(a.num_groups), epsilon=float(a.epsilon))

    def op_nn_instance_norm(self, var, c, a, x):
        self.emit(var, "InstanceNormalization", [x, self.arg(c.args[1]), self.arg(c.args[2])],
                  epsilon=float(a.epsilon))

    def op_nn_attention(self, var, c, a, x):
        # relax.nn.attention takes q, k, v as (batch, seq, heads, dim); ONNX Attention wants (batch, heads, seq, dim)
        qkv = [x, self.arg(c.args[1]), self.arg(c.args[2])]
        dt = self._dtype(var)
        moved = []
        for t in qkv:
            s = self.shapes[t]
            u = self.fresh("bhsd")
            self.declare(u, (s[0], s[2], s[1], s[3]), dt)
            self.node("Transpose", [t], [u], perm=[0, 2, 1, 3])
            moved.append(u)
        if len(c.args) > 3 and c.args[3] is not None and not _is_prim(c.args[3]):
            try:
                moved.append(self.arg(c.args[3]))
            except ModelLoadError:
                pass
        out = self.outputs_of(var)[0]
        o = self.fresh("attn")
        self.declare(o, (out[1][0], out[1][2], out[1][1], out[1][3]), dt)
        self.node("Attention", moved, [o], is_causal=1 if "Causal" in str(getattr(a, "causal_mask", "") or "") else None)
        self.emit(var, "Transpose", [o], perm=[0, 2, 1, 3])


_DIM_OPS = {
    "Add": lambda a, b: a + b, "Sub": lambda a, b: a - b, "Mul": lambda a, b: a * b,
    "FloorDiv": lambda a, b: a // b, "FloorMod": lambda a, b: a % b, "Div": lambda a, b: a // b,
    "Max": max, "Min": min,
}


def _eval_dim(e, symbols: dict[str, int]) -> int | None:
    """Value of a shape expression (``n * 2 + 1``) under ``symbols``; None if a variable is unbound."""
    v = _int(e)
    if v is not None:
        return v
    t = type(e).__name__
    if t in ("Var", "SizeVar"):
        return symbols.get(e.name)
    if t in _DIM_OPS:
        a, b = _eval_dim(e.a, symbols), _eval_dim(e.b, symbols)
        return None if a is None or b is None else int(_DIM_OPS[t](a, b))
    if t == "Cast":
        return _eval_dim(e.value, symbols)
    return None


def _dim_vars(e) -> list[str]:
    t = type(e).__name__
    if t in ("Var", "SizeVar"):
        return [e.name]
    if t in _DIM_OPS:
        return _dim_vars(e.a) + _dim_vars(e.b)
    if t == "Cast":
        return _dim_vars(e.value)
    return []


def _h(obj) -> int:
    """A dict key for a TVM object: its handle (Python wrappers are recreated on each access)."""
    return obj.__chandle__()


def _i64(v):
    import numpy as np

    return np.asarray(v, dtype=np.int64)


def _tuple_ints(e) -> list[int] | None:
    if e is None:
        return None
    vals = getattr(e, "values", None)
    if vals is None and hasattr(e, "fields"):
        vals = [getattr(f, "value", f) for f in e.fields]
    if vals is None:
        return None
    out = [_int(v) for v in vals]
    return None if any(v is None for v in out) else out


def _is_shape(e) -> bool:
    return type(e).__name__ in ("ShapeExpr",)


def _is_prim(e) -> bool:
    return type(e).__name__ in ("PrimValue", "IntImm", "FloatImm", "StringImm", "DataTypeImm")


def _flatten(xs) -> list:
    out = []
    for x in xs:
        if isinstance(x, list):
            out.extend(_flatten(x))
        elif x is not None:
            out.append(x)
    return out


def _live_bindings(relax, tvm, blocks, result) -> set:
    """Variables of the bindings whose value reaches ``result`` (tuple elements tracked one by one)."""
    bindings = [b for blk in blocks for b in blk.bindings]
    live: set = set()
    # var -> set of tuple indices needed (None: the whole value)
    need: dict[Any, set | None] = {}

    def mark(e, idx=None):
        t = type(e).__name__
        if t == "Tuple":
            for i, f in enumerate(e.fields):
                if idx is None or i == idx:
                    mark(f)
            return
        if t == "TupleGetItem":
            mark(e.tuple_value, int(e.index))
            return
        if t in ("Var", "DataflowVar"):
            cur = need.get(_h(e), set())
            if cur is None:
                return
            need[_h(e)] = None if idx is None else cur | {idx}
            return
        if t == "Call":
            for x in e.args:
                mark(x)
            return
        if t == "MatchCast":
            return

    mark(result)
    for b in reversed(bindings):
        k = _h(b.var)
        if k not in need:
            continue
        live.add(k)
        idx = need[k]
        val = b.value
        if type(val).__name__ == "Tuple":
            for i, f in enumerate(val.fields):
                if idx is None or i in idx:
                    mark(f)
        elif type(val).__name__ == "TupleGetItem":
            mark(val.tuple_value, int(val.index))
        elif type(b).__name__ == "MatchCast" or type(val).__name__ in ("Var", "DataflowVar"):
            mark(val)
        elif type(val).__name__ == "Call":
            for x in val.args:
                mark(x)
        # Constants and other values have no operands to keep alive
    return live


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

    # conv bias: Conv(x, w) + Reshape(b, [1, C, 1, 1]) -> Conv(x, w, b), as nn.Conv2d is one operator
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

    # chains of layout ops collapse: Transpose(Transpose(x)) is one transpose (none if the perms cancel),
    # Reshape(Reshape(x)) one reshape (none if it restores x's shape)
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

    # clamp written as Min(Max(x, lo), hi) with scalar bounds (TVM's ONNX importer lowers Clip so) -> Clip
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

    # safe softmax: Where(cond, zeros, Softmax(s)) where cond is computed only from s
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

    if rename or drop:
        _apply(w, rename, drop)
    _dead_code(w)


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


# --------------------------------------------------------------------------- entry point
def to_onnx_proto(mod, *, func: str = "main", bindings: dict[str, int] | None = None, batch: int | None = None,
                  mode: str = "inference"):
    """The ONNX form of a Relax function (weights dims-only); used by :func:`from_relax`."""
    from onnx import helper

    w = _RelaxWalker(mod, func, bindings or {}, batch, mode)
    fn = mod[func]
    w.bind_symbols_from_inputs(fn)
    w.run()
    _canonicalize(w)
    for vi in w.const_inputs:
        et = vi.type.tensor_type.elem_type
        kind = "PARAMETER" if et in (1, 10, 11, 16) and vi.name not in w.buffers else "CONSTANT_TENSOR"
        vi.metadata_props.add(key="pkg.torch.export.graph_signature.InputSpec.kind", value=kind)
    graph = helper.make_graph(w.nodes, func, w.inputs + w.const_inputs, w.outputs, initializer=w.inits,
                              value_info=[w.value_info[k] for k in w.value_info])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23), helper.make_opsetid("tvm.relax", 1)],
                              producer_name="tvm.relax")
    proto.ir_version = 10
    return proto


def from_relax(mod, *, func: str = "main", name: str | None = None, bindings: dict[str, int] | None = None,
               batch: int | None = None, mode: str = "inference"):
    """Featurize a Relax function of a ``tvm.IRModule`` into a :class:`~costmodel.CostGraph`.

    Args:
        mod: a ``tvm.IRModule`` holding Relax functions, or a ``relax.Function``.
        func: which function to featurize (default ``"main"``).
        name: graph name (default: the function name).
        bindings: values of symbolic shape variables, ``{"n": 8}``.
        batch: value of a symbolic leading dimension of the data inputs.
        mode: ``"inference"`` or ``"training"``.

    Raises:
        InvalidInputError: not a Relax module, or no such function (the message lists them).
        DynamicShapeError: a symbolic dimension without a value.
    """
    from .._errors import InvalidInputError
    from ._common import check_batch
    from ._onnx import from_typed_proto

    try:
        import tvm
        from tvm import relax
    except ImportError as e:  # pragma: no cover - exercised only without TVM
        raise ModelLoadError("the Relax frontend needs TVM: pip install apache-tvm") from e
    if mode not in ("inference", "training"):
        raise InvalidInputError(f"mode must be 'inference' or 'training', got {mode!r}")
    if batch is not None:
        batch = check_batch(batch)
    if isinstance(mod, relax.Function):
        mod = tvm.IRModule({func: mod})
    if not isinstance(mod, tvm.IRModule):
        raise InvalidInputError(f"expected a tvm.IRModule or relax.Function, got {type(mod).__name__}")
    names = [gv.name_hint for gv, f in mod.functions_items() if isinstance(f, relax.Function)]
    if func not in names:
        raise InvalidInputError(f"the module has no Relax function {func!r}; its Relax functions are {sorted(names)}")
    if bindings is not None and not (isinstance(bindings, dict) and all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v > 0
            for k, v in bindings.items())):
        raise InvalidInputError(f"bindings must map shape-variable names to positive ints, got {bindings!r}")
    proto = to_onnx_proto(mod, func=func, bindings=bindings, batch=batch, mode=mode)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"onnx: operator .*tvm\.relax", category=UnsupportedOpWarning)
        g = from_typed_proto(proto, name=name or func, mode=mode)
    g.meta["frontend"] = "relax"
    g.meta.pop("opset", None)
    g.meta["producer"] = f"tvm {tvm.__version__}"
    return g


__all__ = ["from_relax", "to_onnx_proto"]
