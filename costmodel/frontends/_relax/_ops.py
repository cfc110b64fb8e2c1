"""The ``relax.*`` operators with their own rule: one ``op_<name>`` method each, writing the ONNX
node(s) with the same semantics."""

from __future__ import annotations

from ..._errors import ModelLoadError
from ._util import _h, _i64, _int, _ints, _is_prim, _tuple_ints


class _OpRules:
    """``op_*`` handlers, looked up by :meth:`_walker._RelaxWalker.call` from the Relax op name."""

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
        # a copy of the same shape (ONNX's ReverseSequence needs sequence lengths and rank >= 2; a
        # flip reads and writes every element once, as a tile by ones does)
        self.emit(var, "Tile", [x, self.ints_const([1] * len(self.shapes[x]), "repeats")])

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
