"""autocast_graph: a graph as CUDA autocast runs it, checked against PyTorch's own autocast."""

import warnings

import pytest
import torch

import costmodel
from costmodel._errors import InvalidInputError
from costmodel.analysis import autocast_graph


class _Net(torch.nn.Module):
    """conv-bn-relu twice with a residual add, global pooling, a linear layer with a bias."""

    def __init__(self, softmax: bool = False):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.b1 = torch.nn.BatchNorm2d(8)
        self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1, bias=True)
        self.b2 = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, 10)
        self.softmax = softmax

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = y + torch.relu(self.b2(self.c2(y)))
        y = self.fc(y.mean((2, 3)))
        return y.softmax(-1) if self.softmax else y


def _graph(model, mode="inference"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return costmodel.to_graph(model, batch=2, input_shape=(3, 8, 8), method="trace", mode=mode)


_FAMILY = {"convolution": "conv", "conv2d": "conv", "native_batch_norm": "bn", "batch_norm": "bn", "relu": "relu",
           "add": "add", "mean": "mean", "addmm": "linear", "linear": "linear"}


def test_dtypes_and_casts_match_pytorchs_autocast():
    """On operators whose autocast policy CPU and CUDA share (convolutions and linear layers lowered,
    batch norm, activations, adds and means following their inputs), the graph's output dtypes and its
    number of casts are those of a real run under torch.autocast."""
    from torch.utils._python_dispatch import TorchDispatchMode

    torch.manual_seed(0)
    m = _Net().eval()
    log = []

    class Log(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            first = out[0] if isinstance(out, (tuple, list)) else out
            log.append((func.overloadpacket.__name__, first.dtype))
            return out

    x = torch.randn(2, 3, 8, 8)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16), Log():
        m(x)
    names = {torch.bfloat16: "bf16", torch.float32: "fp32"}
    real = [(_FAMILY[op], names[dt]) for op, dt in log if op in _FAMILY]
    real_casts = sum(op in ("to", "_to_copy") for op, _ in log)

    a = autocast_graph(_graph(m), "bf16")
    ours = [(_FAMILY[n.op.split(".")[1]], n.out_dtypes[0]) for n in a.nodes if n.op.split(".")[1] in _FAMILY]
    ours_casts = sum(bool(n.attrs.get("autocast")) for n in a.nodes)
    assert ours == real
    assert ours_casts == real_casts == 6  # image, conv1 weight; conv2 weight and bias; fc weight and bias
    assert [dt for _, dt in real] == ["bf16"] * len(real)


def test_casts_sit_before_their_operator_and_the_weights_stay_fp32():
    g = _graph(_Net())
    a = autocast_graph(g, "fp16").validate().check_costable()
    assert a.meta["autocast"] == "fp16" and a.meta["dtype"] == "fp32"
    assert a.meta["weights_bytes"] == g.meta["weights_bytes"]
    preds = a.predecessors()
    for n in a.nodes:
        if n.attrs.get("autocast"):
            succ = [d for s, d in a.edges if s == n.id]
            nxt = next(m for m in a.nodes[n.id + 1:] if not m.attrs.get("autocast"))
            assert succ == [nxt.id]  # read by the operator it was cast for, the next one that is not a cast
            assert n.kind == "copy" and n.in_dtypes[0] == "fp32" and n.out_dtypes[0] == "fp16"
            assert n.bytes_read == 2 * n.bytes_written  # fp32 in, fp16 out
    conv = next(n for n in a.nodes if n.kind == "conv")
    # the convolution reads the casts: its weight operand is no longer the parameter itself
    assert conv.in_dtypes == ["fp16", "fp16"] and conv.param_inputs == [False, False]
    assert all(a.nodes[p].attrs.get("autocast") for p in preds[conv.id])
    weight_casts = [n for n in a.nodes if n.attrs.get("autocast") and n.param_inputs[0]]
    assert len(weight_casts) == 4  # conv1, conv2 and its bias, the fc bias (the fc weight goes through t())
    # FLOPs are the model's own: the casts add none
    assert sum(n.flops for n in a.nodes) == pytest.approx(sum(n.flops for n in g.nodes))


def test_the_fp32_list_and_type_promotion():
    """softmax (on CUDA autocast's fp32 list) is cast up and runs in fp32; a residual add of an fp16 and an
    fp32 tensor is fp32, as PyTorch's type promotion makes it."""

    class Mixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(16, 16)
            self.ln = torch.nn.LayerNorm(16)

        def forward(self, x):
            h = self.fc(x)  # fp16 under autocast
            return (x + h).softmax(-1), self.ln(h)  # fp32 + fp16 -> fp32; layer norm -> fp32

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = costmodel.to_graph(Mixed(), batch=4, input_shape=(16,), method="trace")
    a = autocast_graph(g, "fp16")
    by_kind = {}
    for n in a.nodes:
        by_kind.setdefault(n.kind, []).append(n)
    assert [n.out_dtypes[0] for n in by_kind["matmul"]] == ["fp16"]
    residual = [n for n in by_kind["add"] if not any(n.param_inputs)]
    # (x and h have one shape: which operand is which cannot be told from the graph, the dtypes can)
    assert residual and sorted(residual[0].in_dtypes) == ["fp16", "fp32"] and residual[0].out_dtypes == ["fp32"]
    assert by_kind["softmax"][0].out_dtypes == ["fp32"]
    ln = by_kind["layer_norm"][0]
    assert ln.in_dtypes[0] == "fp32" and ln.out_dtypes[0] == "fp32"  # its fp16 input was cast up first
    assert any(n.attrs.get("autocast") and n.out_dtypes == ["fp32"] for n in a.nodes)


def test_training_backward_plan_sees_the_casts():
    """The first convolution reads the image (no gradient) and a weight cast: autocast's step computes only
    its weight gradient, as without autocast, and each weight cast gets one backward kernel."""
    from costmodel.devices import get_device
    from costmodel.predictors._optable import op_table

    g = _graph(_Net(), mode="training")
    a = autocast_graph(g, "fp16")
    t = op_table(a, get_device("h200"), mode="training")
    backward = t.node[t.phase == 1].tolist()
    first_conv = next(n.id for n in a.nodes if n.kind == "conv")
    assert backward.count(first_conv) == 1
    weight_casts = [n.id for n in a.nodes if n.attrs.get("autocast") and n.param_inputs[0]]
    assert weight_casts and all(backward.count(i) == 1 for i in weight_casts)
    image_cast = next(n.id for n in a.nodes if n.attrs.get("autocast") and not n.param_inputs[0])
    assert image_cast not in backward
    # without autocast the first convolution also computes its weight gradient alone
    t32 = op_table(g, get_device("h200"), mode="training")
    assert t32.node[t32.phase == 1].tolist().count(next(n.id for n in g.nodes if n.kind == "conv")) == 1


def test_bad_autocast_requests_are_named():
    g = _graph(_Net())
    with pytest.raises(ValueError, match="autocast dtype must be one of fp16, bf16, got 'fp8'"):
        autocast_graph(g, "fp8")
    with pytest.raises(ValueError, match="already autocast"):
        autocast_graph(autocast_graph(g, "fp16"), "bf16")
    with pytest.raises(ValueError, match="applies to an fp32 graph"):
        autocast_graph(costmodel.analysis.cast_graph(g, "fp16"), "fp16")
    with pytest.raises(InvalidInputError, match="autocast must be None or one of fp16, bf16; got 'half'"):
        costmodel.to_graph("torchvision:resnet18", batch=1, method="trace", autocast="half")
    with pytest.raises(InvalidInputError, match="dtype='fp16' casts the whole model"):
        costmodel.to_graph("torchvision:resnet18", batch=1, method="trace", dtype="fp16", autocast="fp16")


def test_estimate_under_autocast():
    """A training step under autocast: the graph runs its GEMMs in fp16 and the memory trace runs under
    autocast (activations saved in fp16, weights and optimizer state fp32)."""
    kw = dict(batch=16, device="h200", mode="training", optimizer="adam")
    fp32 = costmodel.estimate("torchvision:resnet18", **kw)
    amp = costmodel.estimate("torchvision:resnet18", autocast="fp16", **kw)
    assert amp.details["autocast"] == "fp16" and "autocast" not in fp32.details
    assert any(s.startswith("autocast fp16:") for s in amp.assumptions)
    assert amp.details["memory"]["path"] == "replay"
    # the saved activations halve; weights, gradients and Adam's state do not
    assert amp.allocated_mb < fp32.allocated_mb
    assert amp.latency_ms != fp32.latency_ms
    assert "autocast fp16" in amp.table()


def test_the_graph_walk_under_autocast():
    """A CostGraph has no module to trace: replay_memory walks the graph as autocast runs it. A training
    step saves the convolutions' half-precision inputs, so its walked peak drops; the weights, their
    gradients and Adam's state stay fp32."""
    from costmodel.analysis.memreplay import replay_memory

    g = costmodel.to_graph("torchvision:resnet18", batch=32, mode="training", method="trace")
    plain = replay_memory(g, "h200", batch=32, mode="training")
    amp = replay_memory(g, "h200", batch=32, mode="training", autocast="fp16")
    assert plain.path == amp.path == "liveness-fallback"
    assert any("autocast=fp16" in n for n in amp.notes)
    assert amp.allocated_mb < 0.8 * plain.allocated_mb
    # the same walk as of the graph autocast_graph returns
    same = replay_memory(autocast_graph(g, "fp16"), "h200", batch=32, mode="training")
    assert same.allocated_mb == amp.allocated_mb
