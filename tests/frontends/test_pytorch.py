import pytest
import torch
import torch.nn as nn
import torchvision

from costmodel import InvalidInputError, ModelLoadError
from costmodel.frontends import from_torch

NON_LAYOUT = ("compute", "norm", "activation", "pool", "elementwise", "reduction", "memory")


def compute_counts(g):
    return {k: v for k, v in g.op_counts(include_views=False).items() if g_cat(k) in NON_LAYOUT}


def g_cat(kind):
    from costmodel.ir import category

    return category(kind)


def meta_model(name, **kw):
    with torch.device("meta"):
        return torchvision.models.get_model(name, **kw).eval()


def test_resnet_skip_connections_are_edges():
    g = from_torch(meta_model("resnet18"), input_shape=(3, 224, 224), batch=2)
    preds = g.predecessors()
    adds = [n for n in g.nodes if n.kind == "add"]
    assert len(adds) == 8
    for n in adds:
        assert len(set(preds[n.id])) == 2  # main path + identity/downsample branch
    assert g.num_edges > g.num_nodes - 1
    assert g.meta["batch"] == 2 and g.meta["input_shape"] == [3, 224, 224]
    assert g.params == 11_689_512


def test_attention_fan_out():
    m = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64
    ).eval()
    g = from_torch(m, torch.randn(2, 3, 32, 32))
    attn = [n for n in g.nodes if n.kind == "attention"]
    assert len(attn) == 2
    preds = g.predecessors()
    for n in attn:
        # q, k and v arrive through separate operators
        assert len(set(preds[n.id])) >= 3
        assert n.in_shapes[0][-2:] == (17, 16)


def test_export_and_trace_agree_on_compute():
    m = meta_model("resnet50")
    ge = from_torch(m, input_shape=(3, 224, 224), batch=4, method="export")
    gt = from_torch(m, input_shape=(3, 224, 224), batch=4, method="trace")
    assert ge.meta["capture"] == "export" and gt.meta["capture"] == "trace"
    assert compute_counts(ge) == compute_counts(gt)
    assert ge.flops == pytest.approx(gt.flops, rel=1e-9)
    assert ge.params == gt.params == 25_557_032


class DataDependent(nn.Module):
    """Python control flow on tensor values: export cannot capture it."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 4)

    def forward(self, x):
        y = self.a(x)
        if y.sum() > 0:  # data-dependent branch
            y = torch.relu(y)
        return self.b(y)


def test_data_dependent_model_on_meta_fails_clearly():
    with torch.device("meta"):
        m = DataDependent()
    with pytest.warns(UserWarning, match="falling back"), pytest.raises(ModelLoadError, match="branches on tensor values"):
        from_torch(m, input_shape=(16,), batch=3)


def test_export_failure_falls_back_to_trace():
    m = DataDependent()
    with pytest.warns(UserWarning, match="falling back"):
        g = from_torch(m, torch.randn(3, 16))
    assert g.meta["capture"] == "trace-real"  # ran once on real CPU data
    assert g.op_counts(include_views=False)["matmul"] == 2
    assert g.params == 16 * 16 + 16 + 16 * 4 + 4


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 8)
        self.head = nn.Linear(8, 100, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        return self.head(self.emb(ids))


@pytest.mark.parametrize("method", ["export", "trace"])
def test_tied_weights_counted_once(method):
    g = from_torch(Tied(), torch.zeros(2, 5, dtype=torch.long), method=method)
    assert g.params == 800
    assert g.op_counts(include_views=False) == {"matmul": 1, "embedding": 1}


class Unused(nn.Module):
    """One linear read through ``t()`` (what a traced ``F.linear`` becomes), a batch norm with two
    buffers, and a layer that is never called."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.bn = nn.BatchNorm1d(8)
        self.spare = nn.Linear(8, 8)

    def forward(self, x):
        return self.bn(self.fc(x))


@pytest.mark.parametrize("method", ["export", "trace"])
def test_a_training_step_updates_the_trainable_tensors_it_reads(method):
    # what the optimizer updates: fc.weight, fc.bias, bn.weight, bn.bias; not the running statistics
    # (buffers), not the spare layer's parameters (no gradient), tied weights once
    g = from_torch(Unused(), torch.zeros(4, 8), method=method, mode="training")
    assert g.meta["trainable_tensors"] == 4
    assert from_torch(Tied(), torch.zeros(2, 5, dtype=torch.long), method=method).meta["trainable_tensors"] == 1
    r18 = meta_model("resnet18")
    g = from_torch(r18, input_shape=(3, 64, 64), batch=2, mode="training", method=method)
    assert g.meta["trainable_tensors"] == sum(1 for _ in r18.parameters()) == 62


def test_training_mode_batchnorm():
    g = from_torch(meta_model("resnet18"), input_shape=(3, 64, 64), batch=2, mode="training")
    bns = [n for n in g.nodes if n.kind == "batch_norm"]
    assert bns and all(n.attrs["training"] for n in bns)
    assert g.meta["mode"] == "training"


def test_meta_model_allocates_nothing():
    # a ~1.3B-parameter MLP on meta featurizes without memory
    with torch.device("meta"):
        m = nn.Sequential(*[nn.Linear(8192, 8192) for _ in range(20)])
    g = from_torch(m, input_shape=(8192,), batch=1, method="trace")
    assert g.params == 20 * (8192 * 8192 + 8192)


def test_bad_inputs():
    with pytest.raises(InvalidInputError, match="nn.Module"):
        from_torch("resnet", input_shape=(3, 2, 2))
    with pytest.raises(InvalidInputError, match="input shape"):
        from_torch(nn.Linear(2, 2))
    with pytest.raises(InvalidInputError, match="expected batch to be a positive integer, got 0"):
        from_torch(nn.Linear(2, 2), input_shape=(2,), batch=0)
    with pytest.raises(InvalidInputError, match="method"):
        from_torch(nn.Linear(2, 2), input_shape=(2,), method="fx")
    with pytest.raises(InvalidInputError, match="mode"):
        from_torch(nn.Linear(2, 2), input_shape=(2,), mode="eval")


def test_a_capture_fallback_is_recorded_in_the_graph():
    with pytest.warns(UserWarning, match="falling back"):
        g = from_torch(DataDependent(), torch.randn(3, 16))
    assert g.meta["capture"] == "trace-real"
    assert g.meta["capture_fallback"]["requested"] == "export"
    (note,) = g.meta["assumptions"]
    assert note.startswith("torch.export failed for DataDependent (")
    assert note.endswith("featurized by running it once on the CPU with its own weights and its inputs (seeded random values where an input has none) instead")
    t = from_torch(DataDependent(), torch.randn(3, 16), method="trace")
    assert t.meta["assumptions"] == ["the meta-tensor trace of DataDependent needs tensor values; featurized by "
                                     "running it once on the CPU with its own weights and its inputs (seeded random values where an input has none) instead"]
    # a capture that did what was asked records nothing
    ok = from_torch(nn.Linear(4, 4), input_shape=(4,), batch=2)
    assert ok.meta["capture"] == "export" and "assumptions" not in ok.meta and "capture_fallback" not in ok.meta


def test_an_export_error_without_a_message_still_falls_back(monkeypatch):
    from costmodel.frontends import pytorch

    def broken(*a, **k):
        raise RuntimeError()

    monkeypatch.setattr(pytorch, "_from_export", broken)
    with pytest.warns(UserWarning, match=r"torch.export failed for Linear \(RuntimeError: \)"):
        g = from_torch(nn.Linear(4, 4), input_shape=(4,), batch=2)
    assert g.meta["capture"] == "trace" and g.op_counts(include_views=False) == {"matmul": 1}


def test_captures_from_several_threads_match_serial_ones():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    names = ["resnet18", "alexnet", "mobilenet_v3_small"]

    def capture(name, method):
        g = from_torch(meta_model(name), input_shape=(3, 64, 64), batch=2, method=method)
        return g.meta["capture"], g.num_nodes, g.num_edges, g.flops

    serial = {(n, m): capture(n, m) for n in names for m in ("export", "trace")}
    jobs = list(serial) * 2
    start = threading.Barrier(len(jobs))

    def run(job):
        start.wait()
        return capture(*job)

    with ThreadPoolExecutor(len(jobs)) as pool:
        got = list(pool.map(run, jobs))
    assert got == [serial[j] for j in jobs]


class _MaskOps(nn.Module):
    """The operators Hugging Face's mask code runs (``&``, ``torch.diff``), a ``~``, and a constant tensor."""

    def forward(self, x):
        keep = (x > 0) & (x < 1)
        steps = torch.diff(x, dim=-1)
        bias = torch.tensor([0.5], device=x.device)
        return torch.where(~keep, x, 0.0)[..., 1:] + steps + bias


class _PatchOps(nn.Module):
    """``nn.Unfold`` / ``nn.Fold`` (im2col / col2im: TNT, VOLO) and the gate split a traced LSTM cell
    makes (``unsafe_chunk``)."""

    def __init__(self):
        super().__init__()
        self.unfold = nn.Unfold(kernel_size=3, padding=1)
        self.fold = nn.Fold(output_size=(6, 6), kernel_size=3, padding=1)

    def forward(self, x):
        cols = self.unfold(x)  # (N, C*9, 36)
        y = self.fold(cols)  # back to (N, C, 6, 6), overlaps summed
        a, b = y.unsafe_chunk(2, dim=1)
        return a * b


@pytest.mark.parametrize("method", ["export", "trace"])
def test_patch_and_recurrent_operators_are_in_the_vocabulary(method, recwarn):
    from costmodel._errors import UnsupportedOpWarning

    g = from_torch(_PatchOps(), input_shape=(4, 6, 6), batch=2, method=method)
    unknown = [str(w.message) for w in recwarn if issubclass(w.category, UnsupportedOpWarning)]
    assert unknown == []
    assert not [n for n in g.nodes if n.kind == "other"]
    cols = [n for n in g.nodes if n.op.endswith(("im2col", "col2im"))]
    if method == "trace":  # the dispatch trace records the kernels; export may keep nn.Unfold's composite
        assert {n.op.split(".")[-1] for n in cols} >= {"im2col", "col2im"}
    for n in cols:  # a real kernel: the columns are written (im2col) or read (col2im) in full
        assert n.kind == "copy" and not n.is_view
        assert n.bytes_read + n.bytes_written >= 4 * 2 * 4 * 9 * 36


@pytest.mark.parametrize("method", ["export", "trace"])
def test_mask_operators_are_in_the_vocabulary(method, recwarn):
    from costmodel._errors import UnsupportedOpWarning

    g = from_torch(_MaskOps(), input_shape=(4, 8), batch=2, method=method)
    unknown = [str(w.message) for w in recwarn if issubclass(w.category, UnsupportedOpWarning)]
    assert unknown == []
    assert not [n for n in g.nodes if n.kind == "other"]
    diff = [n for n in g.nodes if n.op.endswith("diff")]
    if diff:  # export keeps aten.diff; the trace sees the sub it decomposes into
        assert diff[0].kind == "elementwise" and [tuple(s) for s in diff[0].out_shapes] == [(2, 4, 7)]


def test_a_tensor_no_device_holds_stops_the_capture_without_a_fallback():
    import warnings

    from costmodel._errors import TensorTooLargeError
    from costmodel.frontends import to_graph

    net = torch.nn.Sequential(torch.nn.Linear(8, 2**20))  # (2**19, 2**20) fp32 outputs: 2 TiB
    with warnings.catch_warnings(record=True) as seen, pytest.raises(TensorTooLargeError, match="2 TiB"):
        warnings.simplefilter("always")
        to_graph(net, batch=2**19, input_shape=(8,))
    assert not [w for w in seen if "falling back" in str(w.message)]  # the size is the answer; no trace tried


def test_a_list_of_images_is_a_batch_of_that_many():
    # a torchvision detector takes a list of images: its batch was read as the first image's channels
    class PerImage(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)

        def forward(self, images):
            return [self.conv(x[None]) for x in images]

    imgs = [torch.randn(3, 16, 16) for _ in range(4)]
    g = from_torch(PerImage(), (imgs,), method="trace")
    assert g.meta["batch"] == 4
    import costmodel

    assert costmodel.estimate(PerImage(), batch=4, device="h100", inputs=(imgs,)).batch == 4
