"""Relax frontend: TVM IRModules give the same CostGraph as PyTorch and ONNX."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

import tvm  # noqa: E402  (the test extra installs apache-tvm)
from tvm import relax  # noqa: E402
from tvm.relax.frontend.torch import from_exported_program, from_fx  # noqa: E402

from costmodel._errors import DynamicShapeError, InvalidInputError, UnsupportedOpWarning  # noqa: E402
from costmodel.frontends import from_onnx, from_relax, from_torch, to_graph  # noqa: E402
from costmodel.ir import category  # noqa: E402


def _kind_counts(g) -> dict[str, int]:
    return {k: c for k, c in g.op_counts().items() if category(k) not in ("layout", "noop")}


def _close(a: float, b: float, rel: float = 0.01) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


def _export(model, args, **kw):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.export.export(model.eval(), args, **kw)


def _bert(layers: int = 12):
    import transformers
    cfg = transformers.BertConfig(num_hidden_layers=layers)
    return transformers.BertModel(cfg).eval(), (torch.randint(0, 1000, (1, 128)),)


MODELS = {
    "resnet50": lambda: (torchvision.models.resnet50(), (torch.randn(1, 3, 224, 224),)),
    "mobilenet_v2": lambda: (torchvision.models.mobilenet_v2(), (torch.randn(2, 3, 224, 224),)),
    "vit_b_16": lambda: (torchvision.models.vit_b_16(), (torch.randn(1, 3, 224, 224),)),
    "bert_base": lambda: _bert(),
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("keep_params", [True, False])
def test_same_graph_as_pytorch(name, keep_params):
    """The four models of the acceptance table: identical op-kind counts, FLOPs within 1 %, same params."""
    model, args = MODELS[name]()
    mod = from_exported_program(_export(model, args), keep_params_as_input=keep_params)
    gr = from_relax(mod)
    gt = from_torch(model.eval(), args).fold_constants()
    assert gr.meta["frontend"] == "relax"
    assert _kind_counts(gr) == _kind_counts(gt)
    assert _close(gr.flops, gt.flops) and _close(gr.tensor_flops, gt.tensor_flops)
    assert gr.params == gt.params
    assert gr.meta["batch"] == args[0].shape[0]


def test_transformer_attention_is_one_node():
    """The importer decomposes SDPA (scaled q and k^T, softmax, NaN guard, bmm reshapes); it is one node again."""
    model, args = _bert(layers=2)
    gr = from_relax(from_exported_program(_export(model, args), keep_params_as_input=True))
    att = [n for n in gr.nodes if n.kind == "attention"]
    assert len(att) == 2
    assert att[0].in_shapes[:3] == [(1, 12, 128, 64)] * 3
    assert not any(n.kind in ("softmax", "reduction") for n in gr.nodes)
    # nn.Linear: reshape -> matmul -> add(bias) is one matmul with the bias as an operand
    lin = [n for n in gr.nodes if n.kind == "matmul"]
    assert len(lin) == 2 * 6 + 1 and all(n.param_inputs[1:] == [True, True] for n in lin)


def test_real_edges_keep_skip_connections():
    model, args = torchvision.models.resnet18(), (torch.randn(1, 3, 64, 64),)
    g = from_relax(from_exported_program(_export(model, args), keep_params_as_input=True))
    adds = [i for i, n in enumerate(g.nodes) if n.kind == "add"]
    preds = g.predecessors()
    assert len(adds) == 8 and all(len(preds[i]) == 2 for i in adds)
    assert g.num_edges > g.num_nodes - 1  # not a chain


def test_from_fx_matches_export():
    model, x = torchvision.models.mobilenet_v2().eval(), torch.randn(2, 3, 96, 96)
    gm = torch.fx.symbolic_trace(model)
    mod = from_fx(gm, [((2, 3, 96, 96), "float32")], keep_params_as_input=True)
    gr, gt = from_relax(mod), from_torch(model, (x,)).fold_constants()
    assert _kind_counts(gr) == _kind_counts(gt) and _close(gr.flops, gt.flops) and gr.params == gt.params


def test_onnx_import_matches_onnx_frontend(tmp_path):
    """TVM's ONNX importer lowers Clip to two TIR kernels (maximum, minimum): they come back as one clamp."""
    import onnx
    from tvm.relax.frontend.onnx import from_onnx as tvm_from_onnx

    model, x = torchvision.models.mobilenet_v2().eval(), torch.randn(1, 3, 96, 96)
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False)
        mod = tvm_from_onnx(onnx.load(str(path)), keep_params_in_input=True)
    gr, go = from_relax(mod), from_onnx(path)
    assert _kind_counts(gr) == _kind_counts(go)
    assert "clamp" in _kind_counts(gr) and "other" not in _kind_counts(gr)
    assert _close(gr.flops, go.flops) and gr.params == go.params
    # the exporter folded batch norm into the convolutions
    gt = from_torch(model, (x,)).fold_batchnorm()
    assert _kind_counts(gr) == _kind_counts(gt) and _close(gr.flops, gt.flops)


def test_symbolic_batch_needs_a_value():
    model, x = torchvision.models.resnet18().eval(), torch.randn(2, 3, 64, 64)
    ep = _export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    mod = from_exported_program(ep, keep_params_as_input=True)
    with pytest.raises(DynamicShapeError, match="symbolic dimension") as e:
        from_relax(mod)
    assert "batch=" in str(e.value)
    g8 = from_relax(mod, batch=8)
    ref = from_torch(model, (torch.randn(8, 3, 64, 64),)).fold_constants()
    assert g8.meta["batch"] == 8 and _close(g8.flops, ref.flops)
    sym = mod["main"].params[0].ty.shape[0].name
    assert _close(from_relax(mod, bindings={sym: 8}).flops, g8.flops)
    # a binding the function has no variable for is refused, naming the ones it has (a typo is not ignored)
    with pytest.raises(InvalidInputError, match=rf"'batch', which is no symbolic shape variable.*{sym}"):
        from_relax(mod, bindings={"batch": 8})


def test_tvmscript_module_and_dispatch():
    """A hand-written module (dead tuple element, function call, unknown op) through to_graph."""
    from tvm.script import ir as I
    from tvm.script import relax as R

    @I.ir_module
    class Mod:
        @R.function
        def block(x: R.Tensor((4, 16), "float32"), w: R.Tensor((16, 16), "float32")) -> R.Tensor((4, 16), "float32"):
            y = R.matmul(x, w)
            return R.nn.relu(y)

        @R.function
        def main(x: R.Tensor((4, 16), "float32"), w: R.Tensor((16, 16), "float32")) -> R.Tensor((4, 16), "float32"):
            cls = Mod
            with R.dataflow():
                a = cls.block(x, w)
                t = (a, R.zeros_like(a))
                b = t[0]
                c = R.add(b, x)
                s = R.cumsum(c, axis=1)
                R.output(s)
            return s

    g = to_graph(Mod)
    kinds = [n.kind for n in g.nodes]
    assert kinds == ["matmul", "relu", "add", "reduction"]  # zeros_like was dead; block() inlined
    assert g.nodes[0].flops == 2 * 4 * 16 * 16
    assert (0, 1) in g.edges and (1, 2) in g.edges and (2, 3) in g.edges


def test_bad_input():
    with pytest.raises(InvalidInputError, match="tvm.IRModule"):
        from_relax(42)
    mod = tvm.IRModule()
    with pytest.raises(InvalidInputError, match="no Relax function 'main'"):
        from_relax(mod)
    model, x = nn.Linear(4, 4), torch.randn(2, 4)
    m = from_exported_program(_export(model, (x,)), keep_params_as_input=True)
    with pytest.raises(InvalidInputError, match="bindings"):
        from_relax(m, bindings={"n": -1})
    with pytest.raises(InvalidInputError, match="mode"):
        from_relax(m, mode="train")


def test_unknown_packed_call_is_other_with_one_warning():
    from tvm.script import ir as I
    from tvm.script import relax as R

    @I.ir_module
    class Mod:
        @R.function
        def main(x: R.Tensor((8, 8), "float32")) -> R.Tensor((8, 8), "float32"):
            with R.dataflow():
                a = R.call_dps_packed("my_kernel", (x,), out_ty=R.Tensor((8, 8), "float32"))
                b = R.call_dps_packed("my_kernel", (a,), out_ty=R.Tensor((8, 8), "float32"))
                c = R.nn.relu(b)
                R.output(c)
            return c

    with pytest.warns(UnsupportedOpWarning) as rec:
        g = from_relax(Mod)
    assert [n.kind for n in g.nodes] == ["other", "other", "relu"]
    assert sum("my_kernel" in str(w.message) for w in rec) == 1


def test_flip_is_a_copy_of_its_input():
    """``torch.flip`` (timm's sequencer2d runs its LSTM both ways) was emitted as a ReverseSequence without its
    sequence lengths, which the graph check refused; it is a copy kernel of the tensor's size."""
    class Flip(nn.Module):
        def forward(self, x):
            return torch.flip(x, dims=[1]) * 2.0

    x = torch.randn(2, 7, 5)
    g = from_relax(from_exported_program(_export(Flip(), (x,)), keep_params_as_input=True))
    copies = [n for n in g.nodes if n.kind == "copy"]
    assert len(copies) == 1 and copies[0].out_shapes[0] == (2, 7, 5)
    assert copies[0].bytes_read >= 2 * 7 * 5 * 4 and copies[0].bytes_written == 2 * 7 * 5 * 4


def test_called_function_binds_its_own_symbolic_dims_from_the_call():
    """A callee written with its own shape variable (``m``, where ``main`` has ``n``) takes the call's argument
    shapes: before, its bindings asked for a ``bindings={'m': ...}`` that ``main`` then refused."""
    from tvm.script import ir as I
    from tvm.script import relax as R

    @I.ir_module
    class Mod:
        @R.function
        def block(x: R.Tensor(("m", 64), "float32"), w: R.Tensor((64, 64), "float32")) -> R.Tensor(("m", 64), "float32"):
            with R.dataflow():
                y = R.matmul(x, w)
                z = R.nn.relu(y)
                R.output(z)
            return z

        @R.function
        def main(x: R.Tensor(("n", 64), "float32"), w: R.Tensor((64, 64), "float32")) -> R.Tensor(("n", 64), "float32"):
            cls = Mod
            with R.dataflow():
                a = cls.block(x, w)
                b = R.add(a, x)
                R.output(b)
            return b

    flops = 2 * 4 * 64 * 64 + 4 * 64 + 4 * 64  # matmul, relu, add
    assert from_relax(Mod, batch=4).flops == flops
    assert from_relax(Mod, bindings={"n": 4}).flops == flops
    assert [n.out_shapes[0] for n in from_relax(Mod, batch=4).nodes] == [(4, 64)] * 3


def test_weight_broadcast_to_the_batch_is_read_once():
    """``linear`` on a 3-D input (nn.MultiheadAttention's in-projection) imports as ``broadcast_to(w^T, (L, K, N))``
    then matmul: the matmul read the weight once per batch row (32x its bytes here), not once."""
    from tvm.script import ir as I
    from tvm.script import relax as R

    @I.ir_module
    class Mod:
        @R.function
        def main(x: R.Tensor((32, 2, 16), "float32"), v: R.Tensor((1, 2, 16), "float32"),
                 w: R.Tensor((16, 8), "float32")):
            R.func_attr({"num_input": 2})
            with R.dataflow():
                wb = R.broadcast_to(w, R.shape([32, 16, 8]))
                y = R.matmul(x, wb)
                u = R.broadcast_to(w, R.shape([4, 16, 8]))  # a broadcast that sets the output's batch stays
                z = R.matmul(v, u)
                R.output(y, z)
            return (y, z)

    g = from_relax(Mod)
    mm = [n for n in g.nodes if n.kind == "matmul"]
    assert mm[0].in_shapes[1] == (16, 8)
    assert mm[0].bytes_read == (32 * 2 * 16 + 16 * 8) * 4 and mm[0].flops == 2 * 32 * 2 * 16 * 8
    assert mm[1].out_shapes[0] == (4, 2, 8) and mm[1].flops == 2 * 4 * 2 * 16 * 8

    layer = nn.TransformerEncoderLayer(32, 2, 64, batch_first=True).eval()
    x = torch.randn(2, 16, 32)
    gr = from_relax(from_exported_program(_export(layer, (x,)), keep_params_as_input=True))
    gt = from_torch(layer, (x,)).fold_constants()
    read = [sum(n.bytes_read for n in g.nodes if n.kind == "matmul") for g in (gr, gt)]
    assert read[0] == read[1]


def test_module_lowered_by_the_build_is_refused_naming_the_fix():
    """After ``relax.get_pipeline`` a function holds allocations and VM builtins; the error said
    ``unsupported constant R.dtype("uint8")``."""
    model, x = nn.Linear(16, 8), torch.randn(4, 16)
    mod = from_exported_program(_export(model, (x,)), keep_params_as_input=True)
    with tvm.target.Target("llvm"):
        lowered = relax.get_pipeline("default")(mod)
    with pytest.raises(InvalidInputError, match=r"already lowered for the VM \(it calls relax\.vm\.alloc_storage\)"
                                                r".*before LegalizeOps"):
        from_relax(lowered)
    assert from_relax(relax.transform.LegalizeOps()(mod)).num_nodes > 0  # legalized, not lowered: still read


@pytest.mark.parametrize("keep_params", [True, False])
def test_second_input_of_another_leading_size_is_data(keep_params):
    """Two inputs of different leading sizes (image rows, text tokens): the second was taken for a weight
    and its branch folded away (FLOPs 33344 instead of 195968, its 77 x 16 values counted as parameters)."""
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(32, 64), nn.Linear(16, 64)

        def forward(self, img, txt):
            return self.a(img).mean(0) + self.b(txt).mean(0)

    model, args = Two().eval(), (torch.randn(8, 32), torch.randn(77, 16))
    gr = from_relax(from_exported_program(_export(model, args), keep_params_as_input=keep_params))
    gt = from_torch(model, args)
    assert gr.flops == gt.flops > 2 * 8 * 32 * 64 + 2 * 77 * 16 * 64  # both linear layers
    assert gr.params == gt.params == 32 * 64 + 64 + 16 * 64 + 64


def _legalized_and_fused(mod):
    leg = relax.transform.LegalizeOps()(mod)
    fused = relax.transform.FuseTIR()(relax.transform.FuseOps()(relax.transform.AnnotateTIROpPattern()(leg)))
    return leg, fused


class _ConvNet(nn.Module):
    """A convolution (with bias), a depthwise one, batch norm, relu and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        y = torch.relu(self.bn(self.dw(y)))
        return self.fc(y.mean((2, 3)))


def test_legalized_and_fused_kernels_are_costed_from_their_tir():
    """After LegalizeOps (and FuseOps + FuseTIR) every operator is an ``R.call_tir`` of a PrimFunc; they
    were ``other`` nodes without FLOPs (ResNet-18 after FuseTIR: 0 FLOPs, one warning per kernel)."""
    model, x = _ConvNet().eval(), torch.randn(2, 3, 16, 16)
    mod = from_exported_program(_export(model, (x,)), keep_params_as_input=True)
    leg, fused = _legalized_and_fused(mod)
    gt, g0 = from_torch(model, (x,)), from_relax(mod)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsupportedOpWarning)  # no kernel is left unknown
        gl, gf = from_relax(leg), from_relax(fused)
    for g in (gl, gf):
        assert "other" not in g.op_counts()
        # the TIR counts a multiply-add as 2 FLOPs, as the other frontends do; the kernels add the
        # bias adds and batch-norm arithmetic the vocabulary folds away (a few per cent here)
        assert _close(g.flops, gt.flops, 0.05) and _close(g.macs, gt.macs, 1e-9)
    # a legalized convolution alone is exactly the torch node's convolution
    conv_t = sorted(n.flops for n in gt.nodes if n.kind == "conv")
    conv_l = sorted(n.flops for n in gl.nodes if n.kind == "conv")
    assert conv_l == conv_t and conv_t[0] > 0
    assert [n.kind for n in gl.nodes if n.kind in ("matmul", "conv", "relu", "batch_norm")].count("relu") == 2
    # a fused kernel takes its dominant operator's kind and counts all its parts
    fc = next(n for n in gf.nodes if n.op.startswith("tvm.tir.fused_conv2d_add") and n.kind == "conv")
    plain = next(n for n in gt.nodes if n.kind == "conv" and n.attrs.get("groups", 1) == 1)
    out = 2 * 16 * 16 * 16
    assert fc.flops == plain.flops + 2 * out  # bias add and relu, one FLOP per element each
    assert fc.macs == plain.macs and fc.attrs["kernel"] == [3, 3] and fc.attrs["groups"] == 1
    dw = next(n for n in gf.nodes if n.kind == "conv" and n.attrs.get("groups") == 16)
    assert dw.macs == 2 * 16 * 16 * 16 * 9
    # fusion keeps the intermediates in the kernel: fewer bytes than the unfused graph
    assert gf.bytes_moved < gl.bytes_moved <= 1.5 * g0.bytes_moved
    assert sum(n.kind == "matmul" for n in gf.nodes) == 1


def test_tir_kernel_kinds_from_names_blocks_and_pattern():
    from tvm.script import ir as I
    from tvm.script import relax as R
    from tvm.script import tirx as T

    @I.ir_module
    class Mod:
        @T.prim_func(private=True, s_tir=True)
        def fused_add1_relu(a: T.Buffer((8, 8), "float32"), b: T.Buffer((8, 8), "float32"),
                            c: T.Buffer((8, 8), "float32")):
            for i, j in T.grid(8, 8):
                with T.sblock("T_add"):
                    vi, vj = T.axis.remap("SS", [i, j])
                    c[vi, vj] = T.max(a[vi, vj] + b[vi, vj], T.float32(0))

        @T.prim_func(private=True, s_tir=True)
        def my_kernel(a: T.Buffer((8, 8), "float32"), b: T.Buffer((8, 8), "float32"),
                      c: T.Buffer((8, 8), "float32")):
            for i, j, k in T.grid(8, 8, 8):
                with T.sblock("T_matmul_NT"):
                    vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                    with T.init():
                        c[vi, vj] = T.float32(0)
                    c[vi, vj] = c[vi, vj] + a[vi, vk] * b[vj, vk]

        @R.function
        def main(x: R.Tensor((8, 8), "float32"), w: R.Tensor((8, 8), "float32")):
            R.func_attr({"num_input": 1})
            cls = Mod
            with R.dataflow():
                y = R.call_tir(cls.my_kernel, (x, w), out_ty=R.Tensor((8, 8), "float32"))
                z = R.call_tir(cls.fused_add1_relu, (y, x), out_ty=R.Tensor((8, 8), "float32"))
                R.output(z)
            return z

    g = from_relax(Mod)
    kinds = {n.op: (n.kind, n.flops, n.macs) for n in g.nodes}
    assert kinds["tvm.tir.my_kernel"] == ("matmul", 2 * 8 * 8 * 8, 8 * 8 * 8)  # named by its block
    assert kinds["tvm.tir.fused_add1_relu"] == ("relu", 2 * 8 * 8, 0)  # an activation before arithmetic


def test_symbolic_tir_kernels_are_counted_at_the_bound_shapes():
    """A kernel of a module with a symbolic batch loops over its own shape variable; the TIR analysis
    counted that loop once, so batch 4 cost what batch 1 did (ResNet-18: 3.64 GFLOP, not 14.57).  A
    strided, padded convolution's stride, padding and dilation were missing (they feed the features)."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(8, 8, 3, dilation=2)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    model = Net().eval()
    dyn = torch.export.export(model, (torch.randn(2, 3, 16, 16),),
                              dynamic_shapes={"x": {0: torch.export.Dim("n", min=1, max=64)}})
    raw = from_exported_program(dyn, keep_params_as_input=True)
    name = str(raw["main"].params[0].ty.shape[0])
    for batch in (1, 4):
        x = torch.randn(batch, 3, 16, 16)
        static = _legalized_and_fused(from_exported_program(_export(model, (x,)), keep_params_as_input=True))[1]
        gs = from_relax(static)
        gd = from_relax(_legalized_and_fused(raw)[1], bindings={name: batch})
        assert gd.flops == gs.flops and gd.macs == gs.macs and gd.num_nodes == gs.num_nodes
        assert _close(gd.macs, from_torch(model, (x,)).macs, 1e-9)
    convs = [n.attrs for n in gd.nodes if n.kind == "conv"]
    want = [(n.attrs["stride"], n.attrs["padding"], n.attrs["dilation"]) for n in from_relax(raw, bindings={name: 4}).nodes
            if n.kind == "conv"]
    assert [(a["stride"], a["padding"], a["dilation"]) for a in convs] == want == [([2, 2], [1, 1], [1, 1]),
                                                                                   ([1, 1], [0, 0], [2, 2])]
