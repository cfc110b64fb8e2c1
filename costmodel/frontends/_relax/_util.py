"""Tables and helpers of the Relax frontend: Relax -> ONNX op maps, dtype codes, shape
expressions, and which bindings reach a function's result."""

from __future__ import annotations

from typing import Any


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


#: operators a Relax function holds only once the build has lowered it (explicit allocations, VM builtins)
_LOWERED_OPS = frozenset({"relax.builtin.alloc_tensor", "relax.memory.alloc_storage", "relax.memory.alloc_tensor",
                          "relax.memory.kill_storage", "relax.memory.kill_tensor"})


def _lowered_op(func) -> str | None:
    """The first operator of ``func`` that only a lowered function holds (``R.builtin.alloc_tensor``,
    ``R.vm.alloc_storage``, a ``vm.builtin.*`` packed call), or None for a graph-level function."""
    for blk in getattr(func.body, "blocks", []):
        for b in blk.bindings:
            v = b.value
            if type(v).__name__ != "Call":
                continue
            name = getattr(v.op, "name", None)
            if isinstance(name, str) and (name in _LOWERED_OPS or name.startswith("relax.vm.")):
                return name
            sym = getattr(v.args[0], "global_symbol", None) if name == "relax.call_packed" and v.args else None
            if isinstance(sym, str) and sym.startswith("vm.builtin."):
                return sym
    return None
