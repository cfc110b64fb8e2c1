"""Which initializers are the model's parameters.

An exporter's constant folding (``torch.onnx.export(..., dynamo=True)`` optimizes by default) stores the
constants a model computes from shapes as initializers: the causal mask and the ``1/sqrt(d)`` factors of
``scaled_dot_product_attention``, the scales of ``interpolate``, the ones and zeros of a GroupNorm written
with ``InstanceNormalization``, the scalar of ``x * 2``.  PyTorch holds none of them as parameters, and
neither do the TorchScript exporter's files (they are ``Constant`` nodes there).  A weight is therefore
decided by how it is read, not by its size: an initializer is a constant when every read of it is one a
constant makes, and a parameter when some read is one a weight makes (or when nothing reads it).
"""

from __future__ import annotations

from ._tables import _ATTR_INPUTS, _QWEIGHT_POS, _WEIGHT_POS, _is_float, _known, _numel, _op, dtype_name

#: scale and zero-point positions of the quantized ops: quantization parameters, buffers as in PyTorch
_QPARAM_POS: dict[str, frozenset[int]] = {
    k: frozenset(v)
    for k, v in {
        "QuantizeLinear": {1, 2}, "DequantizeLinear": {1, 2}, "QLinearConv": {1, 2, 4, 5, 6, 7},
        "QLinearMatMul": {1, 2, 4, 5, 6, 7}, "ConvInteger": {2, 3}, "MatMulInteger": {2, 3},
        "DynamicQuantizeMatMul": {2, 3}, "MatMulIntegerToFloat": {2, 3, 4, 5}, "MatMulNBits": {2, 3},
        "QLinearAdd": {1, 2, 4, 5, 6, 7}, "QLinearMul": {1, 2, 4, 5, 6, 7},
    }.items()
}

#: an additive mask's "masked" entries are at most this (``-inf``, ``finfo.min``, ``-1e4``...)
_MASKED_MAX = -1e4
#: largest initializer (elements) whose values are read to tell a mask from a learned bias
_MASK_READ_LIMIT = 1 << 22


class _ParamUse:
    """Settles, after fusion planning and before emission, which registered weights are parameters."""

    def _settle_params(self) -> None:
        """Demote the weights that only constants' reads reach: quantization scales and zero points
        become buffers (in ``weights_bytes``, not ``params``), the rest constants (in neither)."""
        uses: dict[str, set[str]] = {}  # base weight key -> kinds of reads ("real", "const", "quant", "via")
        src: dict[str, set[str]] = {}  # derived weight -> the base weights it is computed from
        counted = {id(node) for node, _ in self.counted}
        for node in self.order:
            if id(node) in counted or not any(i in self.weights for i in node.input):
                continue
            self._derived_uses(node, uses, src)
        for node, _ in self.counted:
            op = _op(node)
            for i, name in enumerate(node.input):
                if name and name in self.weights:
                    kind = self._read_kind(op, i, name)
                    for k in self._bases(name, src):
                        uses.setdefault(k, set()).add(kind)
        base = set(self.inits) | {vi.name for vi in self.weight_inputs}
        for key in base:
            seen = uses.get(key)
            if not seen or "real" in seen:
                continue
            self.b.demote_param(key, buffer="quant" in seen)

    def _bases(self, name: str, src: dict[str, set[str]]) -> set[str]:
        key = self.resolve.get(name, name)
        return src.get(key, set()) if key in self.derived else {key}

    def _derived_uses(self, node, uses: dict[str, set[str]], src: dict[str, set[str]]) -> None:
        """Reads of weights by a node that reads no data: a re-description (nothing), a weight computed
        from them (its sources are the inputs it is computed from), or a shape computation (constant)."""
        op = _op(node)
        outs = [o for o in node.output if o]
        out = outs[0] if outs else ""
        ws = [(i, n) for i, n in enumerate(node.input) if n in self.weights]
        if out in self.weights and self.resolve.get(out) != out:
            return  # a re-description: the output resolves to the weight itself, its reads are the weight's
        derived = out in self.derived
        big = any(not self._scalar(n) for _, n in ws)
        for i, name in ws:
            if i in _QPARAM_POS.get(op, ()):
                kind = "quant"
            elif derived:
                kind = "const" if self._scalar(name) and big else "real"
            else:
                et = self._etype(out) if out else None
                kind = "real" if et is not None and _is_float(dtype_name(et)) else "const"
            bases = self._bases(name, src)
            if derived and kind == "real":  # decided by how the computed weight is read
                src.setdefault(out, set()).update(bases)
                kind = "via"
            for k in bases:
                uses.setdefault(k, set()).add(kind)

    def _scalar(self, name: str) -> bool:
        shp = self._shape(name)
        return shp is not None and _known(shp) and _numel(shp) <= 1

    def _read_kind(self, op: str | None, i: int, name: str) -> str:
        """How a data node reads weight ``name`` at input ``i``: as a weight ("real"), as a constant
        ("const": a shape or scale input, an absorbed attention mask or identity affine, a scalar
        operand, which PyTorch holds as an attribute) or as a quantization parameter ("quant")."""
        if i in _QPARAM_POS.get(op, ()):
            return "quant"
        if i in _ATTR_INPUTS.get(op, ()):
            return "const"
        if name in self.const_reads:
            return "const"
        if name in self.attn_masks and self._mask_like(name):
            return "const"
        if i in _WEIGHT_POS.get(op, ()) or i in _QWEIGHT_POS.get(op, ()):
            return "real"
        return "const" if self._scalar(name) else "real"

    def _mask_like(self, name: str) -> bool:
        """Whether an attention's additive input holds a mask (zeros and masked entries, or booleans), not
        a learned bias; a mask whose values are not in the file (external data) is taken for one."""
        import numpy as np

        v = self._values(name)
        if v is None:
            return True
        if v.dtype == np.bool_:
            return True
        v = v.astype(np.float64, copy=False)
        return bool(np.all((v == 0) | (v <= _MASKED_MAX)))

    def _values(self, name: str):
        v = self.vals.get(name)
        if v is not None:
            return v
        t = self.inits.get(self.resolve.get(name, name))
        if t is None or not hasattr(t, "data_location") or _numel(list(t.dims)) > _MASK_READ_LIMIT:
            return None
        from onnx import TensorProto, numpy_helper

        if t.data_location == TensorProto.EXTERNAL:
            return None
        try:
            arr = numpy_helper.to_array(t)
        except Exception:  # noqa: BLE001 - stripped data: values unknown
            return None
        return arr if arr.size == _numel(list(t.dims)) else None
