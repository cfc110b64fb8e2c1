"""ONNX frontend: cross-frontend consistency with PyTorch, real edges, clean errors."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
import torchvision
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from costmodel._errors import (
    DynamicShapeError, InvalidGraphError, InvalidInputError, ModelLoadError, UnsupportedOpWarning,
)
from costmodel.frontends import from_onnx, from_torch
from costmodel.ir import category

# --------------------------------------------------------------------- models


class SkipCNN(nn.Module):
    """conv-bn-relu, a residual add, global pooling and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        y = torch.relu(self.bn(self.c1(x)))
        y = y + self.c2(y)
        return self.fc(nn.functional.adaptive_avg_pool2d(y, 1).flatten(1))


class MiscOps(nn.Module):
    """Ops that exporters decompose: GroupNorm, SiLU, chunk (SplitToSequence), tanh-GELU, einsum..."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.conv = nn.Conv1d(16, 16, 3, padding=1)
        self.gn = nn.GroupNorm(4, 16)
        self.inorm = nn.InstanceNorm1d(8, affine=True)
        self.up = nn.ConvTranspose1d(8, 8, 4, stride=2, padding=1)
        self.ln = nn.LayerNorm(8)

    def forward(self, ids):
        h = self.emb(ids).transpose(1, 2)
        h = nn.functional.silu(self.gn(self.conv(h)))
        a, b = h.chunk(2, dim=1)
        h = nn.functional.hardswish(self.inorm(a)) * torch.sigmoid(b)
        h = nn.functional.leaky_relu(self.up(h), 0.1)
        h = nn.functional.interpolate(h, scale_factor=2, mode="nearest")
        h = nn.functional.max_pool1d(nn.functional.avg_pool1d(h, 2), 2)
        h = nn.functional.gelu(self.ln(h.transpose(1, 2)), approximate="tanh")
        return torch.softmax(torch.einsum("bld,bmd->blm", h, h), -1).sum(-1)


class MaskedAttention(nn.Module):
    """SDPA with a boolean mask: exported as Where(mask, 0, -inf) + ... + Where(IsNaN(p), 0, p)."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(32, 96)

    def forward(self, x, mask):
        q, k, v = self.qkv(x).view(2, 5, 3, 4, 8).permute(2, 0, 3, 1, 4)
        o = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask > 0)
        return o.transpose(1, 2).reshape(2, 5, 32)


def _randomize(model: nn.Module) -> nn.Module:
    """Real (non-default) norm statistics, so exporters cannot dedupe identical tensors."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


def _make(name: str):
    """name -> (model, example inputs)."""
    torch.manual_seed(0)
    if name == "resnet18":
        return torchvision.models.resnet18(), (torch.randn(1, 3, 64, 64),)
    if name == "mobilenet_v2":
        return torchvision.models.mobilenet_v2(), (torch.randn(1, 3, 64, 64),)
    if name == "skip_cnn":
        return SkipCNN(), (torch.randn(2, 3, 16, 16),)
    if name == "encoder_layer":
        return nn.TransformerEncoderLayer(32, 2, 64, batch_first=True), (torch.randn(2, 5, 32),)
    if name == "vit":
        return (
            torchvision.models.VisionTransformer(
                image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64
            ),
            (torch.randn(1, 3, 32, 32),),
        )
    if name == "misc_ops":
        return MiscOps(), (torch.randint(0, 50, (2, 12)),)
    if name == "masked_sdpa":
        return MaskedAttention(), (torch.randn(2, 5, 32), torch.randn(2, 4, 5, 5))
    raise KeyError(name)


def _export(model, args, path, *, optimize=False, **kw):
    args = args if isinstance(args, tuple) else (args,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, dynamo=True, optimize=optimize, verbose=False, **kw).save(str(path))
    return path


_CACHE: dict[str, tuple] = {}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (model, example inputs, path of the optimize=False export); exported once per module."""
    root = tmp_path_factory.mktemp("onnx_models")

    def get(name: str):
        if name not in _CACHE:
            model, x = _make(name)
            model = _randomize(model)
            _CACHE[name] = (model, x, _export(model, x, root / f"{name}.onnx"))
        return _CACHE[name]

    yield get
    _CACHE.clear()


def _kind_counts(g) -> dict[str, int]:
    """Op-kind counts over the categories that carry work (no layout, no no-ops)."""
    return {k: c for k, c in g.op_counts().items() if category(k) not in ("layout", "noop")}


def _close(a: float, b: float, rel: float = 0.01) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


# ----------------------------------------------------------- cross-frontend
@pytest.mark.parametrize(
    "name", ["resnet18", "mobilenet_v2", "skip_cnn", "encoder_layer", "vit", "misc_ops", "masked_sdpa"]
)
def test_matches_torch_frontend(exported, name):
    model, args, path = exported(name)
    x = args[0]
    gt = from_torch(model, args)
    go = from_onnx(path)
    assert go.meta["frontend"] == "onnx"
    assert _kind_counts(go) == _kind_counts(gt)
    assert go.flops > 0 and _close(go.flops, gt.flops)
    assert _close(go.tensor_flops, gt.tensor_flops)
    # initializers are parameters, counted once; BN running stats are buffers as in PyTorch
    assert go.params == gt.params
    assert go.meta["batch"] == gt.meta["batch"] == x.shape[0]
    assert go.meta["input_shape"] == list(x.shape[1:])
    assert go.meta["dtype"] == "fp32" and go.meta["mode"] == "inference"


def test_transformer_attention_is_one_node(exported):
    """The exporter decomposes SDPA into MatMul/Softmax/MatMul; the frontend fuses it back."""
    model, args, path = exported("encoder_layer")
    go, gt = from_onnx(path), from_torch(model, args)
    att = [n for n in go.nodes if n.kind == "attention"]
    ref = [n for n in gt.nodes if n.kind == "attention"]
    assert len(att) == len(ref) == 1
    # q, k, v as (batch, heads, L, head_dim), as aten.scaled_dot_product_attention sees them
    assert att[0].in_shapes[:3] == ref[0].in_shapes[:3] == [(2, 2, 5, 16)] * 3
    assert att[0].flops == ref[0].flops == 2 * 2 * 2 * 5 * 5 * (16 + 16)
    assert not any(n.kind == "softmax" for n in go.nodes)
    # nn.Linear on 3-D input (MatMul + Add(bias)) is one matmul with the bias as an operand
    lin = [n for n in go.nodes if n.kind == "matmul"]
    assert [n.attrs["k"] for n in lin] == [n.attrs["k"] for n in gt.nodes if n.kind == "matmul"]
    assert all(n.param_inputs[1:] == [True, True] for n in lin)


def test_module_calls_read_from_the_scopes_match_the_pytorch_count(exported):
    """An ONNX file records no call count; its nodes' name scopes, read in order, give the same one
    (resnet18's blocks apply one ReLU twice: two calls, one scope)."""
    from costmodel.predictors._optable import module_calls

    model, args, path = exported("resnet18")
    go, gt = from_onnx(path), from_torch(model, args)
    assert "module_calls" not in go.meta and gt.meta["module_calls"] == 6 + 4 + 7 * 8 + 3 * 3
    assert module_calls(go) == module_calls(gt)
    # the parameter tensors a training step would update: batch-norm statistics are buffers in both
    assert go.meta["trainable_tensors"] == gt.meta["trainable_tensors"] == sum(1 for _ in model.parameters())


def test_optimized_export_matches_folded_torch_graph(exported, tmp_path):
    model, args, _ = exported("resnet18")
    path = _export(model, args, tmp_path / "resnet18_opt.onnx", optimize=True)
    go = from_onnx(path)
    folded = from_torch(model, args).fold_batchnorm()
    assert "batch_norm" not in go.op_counts()
    assert _kind_counts(go) == _kind_counts(folded)
    assert _close(go.flops, folded.flops) and _close(go.tensor_flops, folded.tensor_flops)


def test_resnet18_structure(exported):
    _, _, path = exported("resnet18")
    g = from_onnx(path)
    preds = g.predecessors()
    adds = [n for n in g.nodes if n.kind == "add"]
    assert len(adds) == 8
    assert any(len(set(preds[n.id])) == 2 for n in adds)  # skip connections are real edges
    assert g.num_edges > g.num_nodes - 1
    stem = g.nodes[0]
    assert stem.kind == "conv" and stem.in_shapes[:2] == [(1, 3, 64, 64), (64, 3, 7, 7)]
    assert stem.attrs == {"stride": [2, 2], "padding": [3, 3], "dilation": [1, 1], "groups": 1, "kernel": [7, 7]}
    assert stem.param_inputs[:2] == [False, True] and stem.out_shapes == [(1, 64, 32, 32)]
    # shape plumbing (Shape/CastLike/Expand building the zero conv bias) is not in the graph
    assert not any(n.op in ("onnx.Shape", "onnx.CastLike", "onnx.Expand", "onnx.Constant") for n in g.nodes)
    assert [n.kind for n in g.nodes if n.op == "onnx.ReduceMean"] == ["avg_pool"]
    bn = next(n for n in g.nodes if n.kind == "batch_norm")
    assert bn.attrs == {"training": False} and bn.flops == 2 * 64 * 32 * 32


def test_mobilenet_depthwise_and_clip(exported):
    _, _, path = exported("mobilenet_v2")
    g = from_onnx(path)
    dw = [n for n in g.nodes if n.kind == "conv" and n.attrs["groups"] > 1]
    assert len(dw) == 17 and all(n.attrs["groups"] == n.in_shapes[0][1] for n in dw)
    assert g.op_counts()["clamp"] == 35  # ReLU6 -> Clip -> clamp, as aten.hardtanh


# ------------------------------------------------------------------- errors
def test_missing_file():
    with pytest.raises(ModelLoadError, match="no such file"):
        from_onnx("/nonexistent/dir/model.onnx")


def test_text_and_truncated_files(exported, tmp_path):
    txt = tmp_path / "notes.onnx"
    txt.write_text("this is not a model\n" * 10)
    with pytest.raises(ModelLoadError, match="could not parse .*notes.onnx as an ONNX model"):
        from_onnx(txt)
    _, _, path = exported("skip_cnn")
    data = path.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        from_onnx(cut)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="not an ONNX model"):
        from_onnx(empty)


def test_dynamic_batch(tmp_path):
    model = _randomize(SkipCNN())
    path = _export(model, torch.randn(2, 3, 16, 16), tmp_path / "dyn.onnx",
                   dynamic_shapes=({0: torch.export.Dim("batch")},))
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0].dim_param
    with pytest.raises(DynamicShapeError, match=r"input 'x' has dynamic dimension 0 .*--batch"):
        from_onnx(path)
    g = from_onnx(path, batch=4)
    assert g.meta["batch"] == 4 and g.meta["input_shape"] == [3, 16, 16]
    assert g.inputs[0].shape == (4, 3, 16, 16)
    assert all(n.out_shapes[0][0] == 4 for n in g.nodes)
    assert g.nodes[-1].out_shapes == [(4, 10)]
    gt = from_torch(model, torch.randn(4, 3, 16, 16))
    assert g.flops == pytest.approx(gt.flops, rel=1e-9) and _kind_counts(g) == _kind_counts(gt)
    with pytest.raises(InvalidInputError, match="fixed dimension 2 of size 16"):
        from_onnx(path, batch=4, input_shape=(3, 8, 8))


def test_dynamic_spatial_dims_need_input_shape(exported):
    _, _, path = exported("skip_cnn")
    m = onnx.load(str(path))
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_param, dims[2].dim_param, dims[3].dim_param = "N", "H", "W"
    with pytest.raises(DynamicShapeError, match=r"'x' has dynamic dimensions 0 \('N'\) and 2 .*--input"):
        from_onnx(m)
    with pytest.raises(DynamicShapeError, match=r"dimensions 2 \('H'\) and 3 \('W'\).*input_shape=\(3, \?, \?\)"):
        from_onnx(m, batch=1)
    g = from_onnx(m, batch=1, input_shape="3,32,32")
    assert g.nodes[0].out_shapes == [(1, 8, 32, 32)] and g.meta["input_shape"] == [3, 32, 32]
    g2 = from_onnx(m, input_shapes={"x": (1, 3, 32, 32)})
    assert g2.flops == g.flops
    with pytest.raises(InvalidInputError, match="Did you mean: x"):
        from_onnx(m, input_shapes={"xx": (1, 3, 32, 32)})


def test_unsupported_op_warns_once_per_type():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 5])
    nodes = [
        helper.make_node("Hardmax", ["x"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["r"]),
        helper.make_node("Hardmax", ["r"], ["h2"]),
        helper.make_node("Det", ["h2"], ["d1"]),
        helper.make_node("Det", ["x"], ["d2"]),
        helper.make_node("Add", ["d1", "d2"], ["y"]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "unsupported", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        g = from_onnx(model)
    msgs = sorted(str(w.message) for w in rec if issubclass(w.category, UnsupportedOpWarning))
    assert len(msgs) == 2 and "'onnx.Det'" in msgs[0] and "'onnx.Hardmax'" in msgs[1]
    assert [n.kind for n in g.nodes] == ["other", "relu", "other", "other", "other", "add"]
    assert g.nodes[3].out_shapes == [(2,)] and g.nodes[5].out_shapes == [(2,)]
    assert (0, 1) in g.edges and (3, 5) in g.edges and (4, 5) in g.edges


# ------------------------------------------------------------------ weights
def test_external_data_missing(exported, tmp_path):
    _, _, path = exported("resnet18")
    ref = from_onnx(path)
    m = onnx.load(str(path))
    out = tmp_path / "ext.onnx"
    onnx.save_model(m, str(out), save_as_external_data=True, location="w.bin")
    assert (tmp_path / "w.bin").stat().st_size > 40e6
    (tmp_path / "w.bin").unlink()
    g = from_onnx(out)
    assert g.params == ref.params == 11689512
    assert g.flops == ref.flops and g.op_counts() == ref.op_counts()


def test_stripped_weights_declared_as_inputs(exported):
    """Weights without initializers: shapes from graph inputs (IR<4 style) or value_info."""
    _, _, path = exported("skip_cnn")
    ref = from_onnx(path)
    m = onnx.load(str(path))
    inits = list(m.graph.initializer)
    del m.graph.initializer[:]
    as_inputs = onnx.ModelProto()
    as_inputs.CopyFrom(m)
    for t in inits:
        as_inputs.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    g = from_onnx(as_inputs)
    assert [i.name for i in g.inputs] == ["x"]
    assert g.params == ref.params == 914 and g.flops == ref.flops
    g2 = from_onnx(m)  # only the exporter's value_info declares them
    assert g2.params == ref.params and g2.flops == ref.flops
    del m.graph.value_info[:]
    with pytest.raises(ModelLoadError, match="'c1.weight'.*neither a graph input nor an initializer"):
        from_onnx(m)


def test_modelproto_and_name(exported):
    _, _, path = exported("skip_cnn")
    g = from_onnx(onnx.load(str(path)), name="tiny")
    assert g.meta["name"] == "tiny" and g.meta["opset"] >= 18
    assert from_onnx(path).meta["name"] == "skip_cnn"
    with pytest.raises(InvalidInputError):
        from_onnx(42)
    with pytest.raises(InvalidInputError, match="mode"):
        from_onnx(path, mode="eval")


# --------------------------------------------------------------- fused ops
def test_masked_attention_absorbs_mask_plumbing(exported):
    _, _, path = exported("masked_sdpa")
    g = from_onnx(path)
    (att,) = [n for n in g.nodes if n.kind == "attention"]
    assert att.in_shapes == [(2, 4, 5, 8)] * 3 + [(2, 4, 5, 5)]  # q, k, v and the boolean mask
    assert att.in_dtypes[3] == "bool"
    preds = g.predecessors()[att.id]
    assert {g.nodes[p].op for p in preds} >= {"onnx.Greater"}  # the mask is a real dependency
    assert not any(n.op in ("onnx.IsNaN", "onnx.Where", "onnx.Softmax") for n in g.nodes)


def test_erf_gelu_pattern_is_one_gelu():
    """0.5 * x * (1 + erf(x / sqrt(2))), as the TorchScript exporter writes GELU."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])
    consts = [helper.make_node("Constant", [], [n], value=numpy_helper.from_array(np.array(v, np.float32)))
              for n, v in [("s2", 1.4142135), ("one", 1.0), ("half", 0.5)]]
    nodes = consts + [
        helper.make_node("Div", ["x", "s2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["x", "a"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["y"]),
        helper.make_node("Sigmoid", ["y"], ["sg"]),
        helper.make_node("Mul", ["y", "sg"], ["z"]),  # x * sigmoid(x): silu
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "gelu", [x], [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    g = from_onnx(model)
    assert [n.kind for n in g.nodes] == ["gelu", "silu"]
    assert g.nodes[0].in_shapes == [(2, 8)] and g.nodes[0].flops == 8 * 16
    assert g.edges == [(0, 1)]


@pytest.mark.parametrize("packed", [False, True])
def test_opset23_attention(packed):
    b, h, length, e = 2, 4, 8, 16
    if packed:  # (batch, L, heads * head_dim) with the head counts as attributes
        shapes = [(b, length, h * e), (b, length, h * e), (b, length, h * e)]
        node = helper.make_node("Attention", ["q", "k", "v"], ["o"], q_num_heads=h, kv_num_heads=h)
    else:
        shapes = [(b, h, length, e)] * 3
        node = helper.make_node("Attention", ["q", "k", "v"], ["o"])
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in zip("qkv", shapes)]
    model = helper.make_model(
        helper.make_graph([node], "att", ins, [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)]),
        opset_imports=[helper.make_opsetid("", 23)],
    )
    g = from_onnx(model)
    assert [i.name for i in g.inputs] == ["q", "k", "v"] and g.params == 0
    (n,) = g.nodes
    assert n.kind == "attention" and n.in_shapes[:3] == [(b, h, length, e)] * 3
    assert n.flops == 2 * b * h * length * length * (e + e)
    assert n.out_shapes == [shapes[0]]


def test_contrib_ops_and_dynamic_seq():
    """com.microsoft ops (unknown to ONNX shape inference) and a dynamic sequence length."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 64])
    inits = [numpy_helper.from_array(np.zeros(s, np.float32), n)
             for n, s in [("w", (64, 192)), ("wb", (192,)), ("g", (64,)), ("bb", (64,))]]
    nodes = [
        helper.make_node("Attention", ["x", "w", "wb"], ["att"], domain="com.microsoft", num_heads=4),
        helper.make_node("SkipLayerNormalization", ["att", "x", "g", "bb"], ["sln"], domain="com.microsoft"),
        helper.make_node("FastGelu", ["sln"], ["y"], domain="com.microsoft"),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "ms", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
    )
    with pytest.raises(DynamicShapeError, match=r"dimension 1 \('seq'\).*input_shape=\(\?, 64\)"):
        from_onnx(model, batch=2)
    g = from_onnx(model, batch=2, input_shape=(10, 64))
    assert [n.kind for n in g.nodes] == ["matmul", "attention", "layer_norm", "gelu"]
    proj, att = g.nodes[0], g.nodes[1]
    assert proj.flops == 2 * 2 * 10 * 64 * 192
    assert att.in_shapes[:3] == [(2, 4, 10, 16)] * 3 and att.flops == 2 * 2 * 4 * 10 * 10 * 32
    assert g.nodes[-1].out_shapes == [(2, 10, 64)] and g.params == 64 * 192 + 192 + 128
    assert (0, 1) in g.edges and (1, 2) in g.edges


def test_norms_carry_the_rows_they_reduce():
    """GroupNormalization keeps its group count and LayerNormalization the shape it normalizes over (from
    its axis): what the timeline's row-parallel bound for norms reads, as the trace frontend records it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 6, 6])
    inits = [numpy_helper.from_array(np.ones(s, np.float32), n) for n, s in [("gs", (8,)), ("gb", (8,)),
                                                                            ("ls", (6, 6)), ("lb", (6, 6))]]
    nodes = [helper.make_node("GroupNormalization", ["x", "gs", "gb"], ["gn"], num_groups=4),
             helper.make_node("LayerNormalization", ["gn", "ls", "lb"], ["y"], axis=-2)]
    model = helper.make_model(
        helper.make_graph(nodes, "norms", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits),
        opset_imports=[helper.make_opsetid("", 21)])
    g = from_onnx(model)
    gn, ln = g.nodes
    assert (gn.kind, gn.attrs.get("groups")) == ("group_norm", 4)
    assert (ln.kind, ln.attrs.get("normalized_shape")) == ("layer_norm", [6, 6])
    from costmodel.predictors._optable import norm_rows

    assert norm_rows(gn) == 2 * 4 and norm_rows(ln) == 2 * 8

    import torch

    from costmodel import from_torch

    m = torch.nn.Sequential(torch.nn.GroupNorm(4, 8), torch.nn.LayerNorm([6, 6]))
    t = [n for n in from_torch(m, torch.randn(2, 8, 6, 6)).nodes if not n.is_view]
    assert [(n.kind, n.attrs) for n in t] == [("group_norm", {"groups": 4}),
                                              ("layer_norm", {"normalized_shape": [6, 6]})]


# -------------------------------------------------- malformed and unusual input
def _legacy_export(model, args, path, **kw):
    """The TorchScript exporter (``dynamo=False``), with a dynamic batch dimension."""
    names = [f"in{i}" for i in range(len(args))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), dynamo=False, input_names=names,
                          dynamic_axes={n: {0: "batch"} for n in names}, **kw)
    return path


def _graph_facts(g):
    return g.flops, g.params, g.op_counts(), [n.kind for n in g.nodes]


class TwoBlockCNN(nn.Module):
    """Two conv-bn-relu blocks of the same width and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                               nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.f(x).mean((2, 3)))


@pytest.mark.parametrize("fold", [False, True], ids=["bn_kept", "bn_folded"])
def test_weights_as_graph_inputs_are_parameters(tmp_path, fold):
    """Files whose weights are graph inputs (export_params=False, keep_initializers_as_inputs=True),
    exported at batch 2 and costed at batch 32, give the graph of the normal export.

    The model is freshly initialized, as in published benchmark files: the exporter then writes a
    weight equal to another one as ``Identity(other weight)`` (the second block's folded bias is
    the first one's, batch norm's running variance is its scale), so a weight input is also read
    by an Identity, not only at its weight slot; it used to be taken for data and re-batched.
    """
    torch.manual_seed(0)
    fresh = TwoBlockCNN().eval()
    trained = _randomize(TwoBlockCNN())  # distinct statistics: nothing for the exporter to deduplicate
    x = (torch.randn(2, 3, 16, 16),)
    kw = {"do_constant_folding": fold}
    # keep_initializers_as_inputs=True turns the exporter's deduplication off: compared on a trained model
    for variant, model in (({"export_params": False}, fresh), ({"keep_initializers_as_inputs": True}, trained)):
        name = next(iter(variant))
        ref = from_onnx(_legacy_export(model, x, tmp_path / f"ref_{name}.onnx", **kw), batch=32)
        assert ref.op_counts()["conv"] == 2 and ("batch_norm" in ref.op_counts()) != fold
        path = _legacy_export(model, x, tmp_path / f"{name}.onnx", **kw, **variant)
        m = onnx.load(str(path))
        inputs = {i.name for i in m.graph.input}
        assert len(inputs) > 1  # the weights are declared as graph inputs
        if model is fresh:
            assert any(n.op_type == "Identity" and n.input[0] in inputs for n in m.graph.node)
        g = from_onnx(path, batch=32)
        assert _graph_facts(g) == _graph_facts(ref), variant
        assert [i.name for i in g.inputs] == ["in0"] and g.inputs[0].shape == (32, 3, 16, 16)
    if not fold:  # nothing tied: every parameter counted, batch-norm statistics as buffers (as in PyTorch)
        assert g.params == from_torch(trained, x).params == 914


def test_dynamo_export_with_initializers_as_inputs(tmp_path):
    model = _randomize(SkipCNN())
    x = (torch.randn(2, 3, 16, 16),)
    dyn = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)}
    ref = from_onnx(_export(model, x, tmp_path / "ref.onnx", **dyn), batch=32)
    g = from_onnx(_export(model, x, tmp_path / "inputs.onnx", keep_initializers_as_inputs=True, **dyn), batch=32)
    assert _graph_facts(g) == _graph_facts(ref) and g.params == from_torch(model, x).params
    # export_params=False: initializers with dims and no data
    stripped = from_onnx(_export(model, x, tmp_path / "stripped.onnx", export_params=False, **dyn), batch=32)
    assert _graph_facts(stripped) == _graph_facts(ref)


def _tiny(nodes, inputs, outputs=("y",), inits=(), opsets=(("", 17),), value_info=()):
    """A ModelProto from helper pieces; ``inputs`` as (name, dims[, elem type]) tuples."""
    ins = [helper.make_tensor_value_info(i[0], i[2] if len(i) > 2 else TensorProto.FLOAT, i[1]) for i in inputs]
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    g = helper.make_graph(nodes, "tiny", ins, outs, list(inits), value_info=list(value_info))
    return helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])


def test_static_input_without_batch_dimension_is_a_parameter():
    """A static input whose leading dimension is not batch-like (the data input's is dynamic) is a weight."""
    model = _tiny([helper.make_node("Mul", ["x", "scale"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
                  [("x", ["N", 8]), ("scale", [8])])
    g = from_onnx(model, batch=32)
    assert [i.name for i in g.inputs] == ["x"] and g.params == 8
    assert g.nodes[0].in_shapes == [(32, 8), (8,)] and g.nodes[0].param_inputs == [False, True]


def _check_isolated(model, *, batch: int = 2, timeout_s: float = 60.0):
    """Cost ``model`` in a worker process under a watchdog: a hang or memory blow-up fails the test."""
    import _onnx_fuzz

    with _onnx_fuzz.Runner(timeout_s=timeout_s, max_rss_mb=1500) as runner:
        out = runner.run_raw(model.SerializeToString(), False, batch, "analytic")
    assert out.kind != "hang", f"costing the model did not finish: {out.detail}"
    return out


def test_cycle_is_an_invalid_graph_not_a_hang():
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="add"), helper.make_node("Relu", ["a"], ["b"], name="relu")]
    model = _tiny(nodes, [("x", [2, 4])], outputs=("b",))
    out = _check_isolated(model)
    assert (out.kind, out.what) == ("clean", "InvalidGraphError"), out
    with pytest.raises(InvalidGraphError, match=r"the graph has a cycle: node '(add|relu)'") as err:
        from_onnx(model)
    assert "node 'add' (onnx.Add) -> node 'relu' (onnx.Relu)" in str(err.value)
    assert "node 'relu' (onnx.Relu) -> node 'add' (onnx.Add)" in str(err.value)
    # a node reading its own output
    model = _tiny([helper.make_node("Mul", ["x", "y"], ["y"], name="self")], [("x", [2, 4])])
    assert _check_isolated(model).what == "InvalidGraphError"
    # out of file order but acyclic: sorted, not refused
    model = _tiny([helper.make_node("Relu", ["a"], ["y"]), helper.make_node("Neg", ["x"], ["a"])], [("x", [2, 4])])
    assert [n.kind for n in from_onnx(model).nodes] == ["elementwise", "relu"]


def _folding_plumbing(range_inputs=("zero", "n", "one"), gather_inputs=("s", "i1"), shape_inputs=("x",)):
    """x + Range(0, x.shape[1], 1): Shape/Gather/Range fold to constants."""
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in [("zero", 0), ("one", 1), ("i1", 1)]]
    nodes = [
        helper.make_node("Shape", list(shape_inputs), ["s"], name="shape"),
        helper.make_node("Gather", list(gather_inputs), ["n"], axis=0, name="gather"),
        helper.make_node("Range", list(range_inputs), ["r"], name="range"),
        helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Add", ["x", "rf"], ["y"], name="add"),
    ]
    return _tiny(nodes, [("x", [2, 5])], inits=inits)


@pytest.mark.parametrize("model, match", [
    (lambda: _folding_plumbing(range_inputs=("zero", "n")), r"node 'range' \(onnx.Range\) has 2 inputs; Range .*takes 3"),
    (lambda: _folding_plumbing(gather_inputs=("s",)), r"node 'gather' \(onnx.Gather\) has 1 inputs; Gather .*takes 2"),
    (lambda: _folding_plumbing(shape_inputs=()), r"node 'shape' \(onnx.Shape\) has 0 inputs; Shape .*takes 1"),
    (lambda: _folding_plumbing(range_inputs=("zero", "", "one")), r"node 'range' \(onnx.Range\): input 1 \(limit\) is "
                                                                  r"required but empty"),
], ids=["range", "gather", "shape", "blank"])
def test_missing_inputs_on_the_folding_path(model, match):
    assert from_onnx(_folding_plumbing()).nodes  # the well-formed plumbing folds and costs
    with pytest.raises(ModelLoadError, match=match):
        from_onnx(model())


_MS_OPSETS = (("", 17), ("com.microsoft", 1))


@pytest.mark.parametrize("op, inputs, shapes, match", [
    ("Attention", ["x"], [[2, 10, 64]], r"node 'att' \(com.microsoft.Attention\) has inputs \['x'\]; it needs at least 2"),
    ("Attention", ["x", "w"], [[2, 64], [64, 192]], r"the input \(input 0, 'x'\) must have rank 3, found shape \(2, 64\)"),
    ("MultiHeadAttention", ["x", "x", "x"], [[20, 64]], r"MultiHeadAttention\): the query \(input 0, 'x'\) must have "
                                                        r"rank 3 or 5, found shape \(20, 64\)"),
    ("GroupQueryAttention", ["x", "k", "k"], [[2, 10, 64], [10, 64]], r"GroupQueryAttention\): the key \(input 1, 'k'\) "
                                                                      r"must have rank 3"),
    ("GroupQueryAttention", [], [[2, 10, 64]], r"GroupQueryAttention\) has inputs \[\]; it needs at least 1"),
], ids=["attention_arity", "attention_rank", "mha_rank", "gqa_rank", "gqa_arity"])
def test_contrib_attention_arity_and_ranks(op, inputs, shapes, match):
    names = dict.fromkeys(i for i in inputs if i != "w")
    ins = [(n, s) for n, s in zip(names, shapes)] if inputs else [("x", shapes[0])]
    inits = [numpy_helper.from_array(np.zeros((64, 192), np.float32), "w")] if "w" in inputs else []
    node = helper.make_node(op, inputs, ["y"], domain="com.microsoft", num_heads=4, kv_num_heads=2, name="att")
    if not inputs:
        node = helper.make_node(op, [], ["y0"], domain="com.microsoft", num_heads=4, name="att")
        model = _tiny([node, helper.make_node("Add", ["x", "y0"], ["y"])], ins, inits=inits, opsets=_MS_OPSETS)
    else:
        model = _tiny([node], ins, inits=inits, opsets=_MS_OPSETS)
    with pytest.raises(ModelLoadError, match=match):
        from_onnx(model)


@pytest.mark.parametrize("op", ["Attention", "MultiHeadAttention", "GroupQueryAttention"])
def test_attention_ops_of_an_unknown_domain_are_unknown_ops(op):
    """Ops are matched by (domain, op type): com.unknown.Attention is not the contrib op, whatever its inputs."""
    inputs = ["x"] if op == "Attention" else ["x", "x", "x"]
    model = _tiny([helper.make_node(op, inputs, ["a"], domain="com.unknown", name="att"),
                   helper.make_node("Relu", ["a"], ["y"])], [("x", [64])], opsets=(*_MS_OPSETS, ("com.unknown", 1)))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        g = from_onnx(model)
    assert [n.kind for n in g.nodes] == ["other", "relu"] and g.nodes[0].op == f"com.unknown.{op}"
    assert any(issubclass(w.category, UnsupportedOpWarning) and f"com.unknown.{op}" in str(w.message) for w in rec)


def _conv_model(**attrs):
    w = numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="conv", **attrs)
    pool = helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], name="pool")
    gather = helper.make_node("Gather", ["p", "i"], ["y"], axis=1, name="gather")
    return _tiny([conv, pool, gather], [("x", [1, 3, 8, 8])],
                 inits=[w, numpy_helper.from_array(np.array([0, 1], np.int64), "i")])


def _set_attr(model, node_name, **attrs):
    node = next(n for n in model.graph.node if n.name == node_name)
    for k, v in attrs.items():
        for a in [a for a in node.attribute if a.name == k]:
            node.attribute.remove(a)
        node.attribute.append(helper.make_attribute(k, v))
    return model


@pytest.mark.parametrize("node, attrs, match", [
    ("conv", {"strides": 2}, r"node 'conv' \(onnx.Conv\): attribute 'strides' must be a list of ints, found an int"),
    ("conv", {"dilations": 1.5}, r"'dilations' must be a list of ints, found a float"),
    ("conv", {"group": [1, 1]}, r"'group' must be an int, found a list of ints"),
    ("gather", {"axis": [1]}, r"node 'gather' \(onnx.Gather\): attribute 'axis' must be an int, found a list of ints"),
    ("pool", {"pads": 0.5}, r"node 'pool' \(onnx.MaxPool\): attribute 'pads' must be a list of ints, found a float"),
    ("conv", {"strides": [0, 1]}, r"'strides' must be a list of values >= 1, found \[0, 1\]"),
    ("conv", {"strides": [1, 1, 1]}, r"'strides' must be a list of 2 values, found \[1, 1, 1\]"),
    ("conv", {"group": 0}, r"'group' must be >= 1, found 0"),
], ids=["strides_int", "dilations_float", "group_list", "gather_axis_list", "pads_float", "strides_zero",
        "strides_length", "group_zero"])
def test_attribute_kinds_and_values_are_checked(node, attrs, match):
    assert from_onnx(_conv_model()).nodes[0].attrs["stride"] == [1, 1]
    with pytest.raises(ModelLoadError, match=match):
        from_onnx(_set_attr(_conv_model(), node, **attrs))


def test_graph_without_work_is_invalid():
    """No node reads the input: nothing to cost (learned predictors would take the log of 0)."""
    c = numpy_helper.from_array(np.ones((2, 4), np.float32), "c")
    unused = _tiny([helper.make_node("Relu", ["c"], ["y"])], [("x", [2, 4])], inits=[c])
    with pytest.raises(InvalidGraphError, match=r"graph 'tiny' has no operators"):
        from_onnx(unused)
    views = _tiny([helper.make_node("Identity", ["x"], ["i"]), helper.make_node("Flatten", ["i"], ["y"])], [("x", [2, 4])])
    with pytest.raises(InvalidGraphError, match=r"only views \(onnx.Flatten, onnx.Identity\)"):
        from_onnx(views)
    import costmodel

    with pytest.raises(InvalidGraphError):
        costmodel.estimate(views, batch=2, device="h100")


def test_absurd_dimensions_are_invalid_graphs():
    relu = [helper.make_node("Relu", ["x"], ["y"])]
    with pytest.raises(InvalidGraphError, match=r"input 'x' has shape \(1048576, 1048576\) \(fp32\), 4 TiB; no device"):
        from_onnx(_tiny(relu, [("x", [2**20, 2**20])]))
    with pytest.raises(InvalidGraphError, match=r"input 'x' has shape \(1099511627776, 8\)"):
        from_onnx(_tiny(relu, [("x", ["N", 8])]), batch=2**40)
    with pytest.raises(InvalidGraphError, match=r"graph input 'x' has a negative dimension 1 \(-5\)"):
        from_onnx(_tiny(relu, [("x", [2, -5])]))
    # initializer dims are checked: a stripped weight (no data) of 2**70 elements, and 11e12 parameters in all
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2**40, 2**30])
    mm = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    with pytest.raises(InvalidGraphError, match=r"initializer 'w' has shape \(1099511627776, 1073741824\)"):
        from_onnx(_tiny(mm, [("x", [2, 2**40])], inits=[w]))
    ws = [TensorProto(name=f"w{i}", data_type=TensorProto.UINT8, dims=[2**40]) for i in range(10)]
    with pytest.raises(InvalidGraphError, match=r"the initializers hold 1.1e\+13 elements"):
        from_onnx(_tiny(relu, [("x", [2, 8])], inits=ws))
    # an initializer whose data does not match its dims
    short = numpy_helper.from_array(np.zeros(3, np.float32), "short")
    short.dims[0] = 2**31
    with pytest.raises(ModelLoadError, match=r"initializer 'short' does not hold the data its shape \(2147483648,\)"):
        from_onnx(_tiny([helper.make_node("Add", ["x", "short"], ["y"])], [("x", [2, 8])], inits=[short]))
    # a shape computed inside the graph: Reshape to (2**31, 2**31)
    shape = numpy_helper.from_array(np.array([2**31, 2**31], np.int64), "shape")
    reshape = [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Relu", ["r"], ["y"])]
    with pytest.raises(InvalidGraphError, match=r"output 0 of node 0 \(onnx.Reshape\) has shape \(2147483648, "
                                                r"2147483648\)"):
        from_onnx(_tiny(reshape, [("x", [2, 8])], inits=[shape]))


def test_large_but_possible_dimensions_give_finite_estimates():
    """Just under the limit: a finite (not saturated) estimate."""
    import costmodel

    model = _tiny([helper.make_node("Relu", ["x"], ["y"])], [("x", ["N", 2**30])])
    est = costmodel.estimate(model, batch=2**7, device="h100", predictor="analytic")  # 512 GiB
    assert 0 < est.latency_ms < 1e5 and np.isfinite(est.memory_mb) and np.isfinite(est.energy_j)


@pytest.mark.parametrize("case, error, match", [
    ("einsum_equation_list", ModelLoadError, r"node 'einsum' \(onnx.Einsum\): attribute 'equation' must be a string"),
    ("softmax_axis_list", ModelLoadError, r"node 'softmax' \(onnx.Softmax\): attribute 'axis' must be an int"),
    ("two_producers", ModelLoadError, r"value 'a' is produced by both node 'relu' \(onnx.Relu\) and node 'neg'"),
    ("writes_input", ModelLoadError, r"node 'relu' \(onnx.Relu\) writes 'x', which is already a graph input"),
    ("no_default_opset", ModelLoadError, r"declares no opset version for the default ONNX domain"),
    ("unknown_dtype", ModelLoadError, r"graph input 'x' has unknown element type 99"),
], ids=str)
def test_malformed_models_raise_clean_errors(case, error, match):
    """Inputs the fuzzer turned into TypeError, AttributeError, IndexError or memory blow-ups."""
    x = [("x", [2, 4])]
    if case == "einsum_equation_list":
        model = _tiny([helper.make_node("Einsum", ["x", "x"], ["y"], equation=[1, 2], name="einsum")], x)
    elif case == "softmax_axis_list":
        model = _tiny([helper.make_node("Softmax", ["x"], ["y"], axis=[1], name="softmax")], x)
    elif case == "two_producers":
        model = _tiny([helper.make_node("Relu", ["x"], ["a"], name="relu"), helper.make_node("Neg", ["x"], ["a"], name="neg"),
                       helper.make_node("Add", ["a", "a"], ["y"])], x)
    elif case == "writes_input":
        model = _tiny([helper.make_node("Relu", ["x"], ["x"], name="relu"), helper.make_node("Neg", ["x"], ["y"])], x)
    elif case == "no_default_opset":
        model = _tiny([helper.make_node("Relu", ["x"], ["y"])], x, opsets=(("com.microsoft", 1),))
    else:
        model = _tiny([helper.make_node("Relu", ["x"], ["y"])], [("x", [2, 4], 99)])
    out = _check_isolated(model)
    assert out.kind == "clean", out
    with pytest.raises(error, match=match):
        from_onnx(model, batch=2)


@pytest.mark.parametrize("op", ["ConstantOfShape", "Range", "Expand", "Tile"])
def test_folding_never_materializes_huge_constants(op):
    """Constant folding computes small shape tensors only: a 2**31-element constant is typed, never allocated."""
    big = numpy_helper.from_array(np.array([2**31], np.int64), "big")
    one = numpy_helper.from_array(np.array([1], np.int64), "one")
    zero = numpy_helper.from_array(np.array(0, np.int64), "zero")
    step = numpy_helper.from_array(np.array(1, np.int64), "step")
    stop = numpy_helper.from_array(np.array(2**31, np.int64), "stop")
    ones = numpy_helper.from_array(np.ones(1, np.float32), "ones")
    make = {
        "ConstantOfShape": helper.make_node("ConstantOfShape", ["big"], ["c"]),
        "Range": helper.make_node("Range", ["zero", "stop", "step"], ["c"]),
        "Expand": helper.make_node("Expand", ["ones", "big"], ["c"]),
        "Tile": helper.make_node("Tile", ["ones", "big"], ["c"]),
    }
    cast = helper.make_node("Cast", ["c"], ["cf"], to=TensorProto.FLOAT)
    model = _tiny([make[op], cast, helper.make_node("Mul", ["x", "cf"], ["y"])], [("x", [2, 1])],
                  inits=[big, one, zero, step, stop, ones])
    out = _check_isolated(model)
    assert out.kind == "estimate", out
    g = from_onnx(model)
    assert g.nodes[-1].out_shapes == [(2, 2**31)]
