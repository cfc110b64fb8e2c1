"""Memory from the execution path: overheads, the replay of a workload, caching, fallbacks, bad input."""

import warnings

import pytest
import torch
from torch import nn

from costmodel._errors import InvalidInputError, UnsupportedOpWarning
from costmodel.analysis import memreplay
from costmodel.analysis.memreplay import Overheads, fit_overheads, overheads_for, replay_memory
from costmodel.datasets import default_root, read_jsonl
from costmodel.devices import get_device


def test_overheads_are_medians_of_the_rows_by_kind():
    rows = [
        {"params": 1 << 20, "dtype": "fp32", "weights_mb": 4 + w, "nvml_used_mb": 1000 + c + 50, "peak_reserved_mb": 50,
         "spec": {}}
        for w, c in ((30, 400), (32, 410), (34, 420))
    ] + [{"params": 1 << 20, "dtype": "fp16", "weights_mb": 2 + 8, "nvml_used_mb": 1300, "peak_reserved_mb": 100,
          "model_type": "gpt2"}]
    ov = fit_overheads(rows, "x")
    assert ov.workspace("vision") == pytest.approx(32)
    assert ov.context("vision") == pytest.approx(1410)
    assert ov.workspace("transformer") == pytest.approx(8)
    assert ov.context("transformer") == pytest.approx(1200)
    assert ov.rows == 4
    with pytest.raises(InvalidInputError, match="no measured rows"):
        fit_overheads([{"params": 1}], "y")


def test_the_h200_overheads_come_from_its_packaged_rows_and_other_devices_say_so():
    ov = overheads_for("h200")
    assert ov.rows > 300 and "packaged rows" in ov.source
    assert 0 < ov.workspace("vision") < 200 and 500 < ov.context("vision") < 3000
    other = overheads_for("a100-80gb")
    assert other.rows == 0 and "no rows for" in other.source


def test_replay_memory_layers_add_up():
    out = replay_memory("torchvision:resnet18", "h200", batch=8)
    assert out.path == "replay"
    assert out.memory_mb == pytest.approx(out.reserved_mb + out.context_mb)
    assert out.requested_mb <= out.allocated_mb <= out.reserved_mb
    assert 0 <= out.fragmentation < 1
    # the state held before the step: resnet18's 11.7 M fp32 parameters (+ buffers) and the input
    assert out.state_mb == pytest.approx((11_689_512 * 4 + 8 * 3 * 224 * 224 * 4) / 2**20, rel=0.01)
    train = replay_memory("torchvision:resnet18", "h200", batch=8, mode="training")
    assert train.allocated_mb > out.allocated_mb + 2 * 11_689_512 * 4 / 2**20  # gradients + Adam state at least


def test_replay_matches_a_measured_h200_row():
    """A packaged row the replay should land on: resnet50, fp32 inference at batch 128 (large enough that
    the library workspace's history between rows is a small share)."""
    rows = [r for _, r in read_jsonl(default_root() / "h200" / "vision.jsonl")]
    row = next(r for r in rows if r["spec"]["name"] == "resnet50" and r["mode"] == "infer" and r["batch"] == 128
               and r["dtype"] == "fp32")
    out = replay_memory(row["spec"], "h200", batch=128)
    assert out.allocated_mb == pytest.approx(row["peak_alloc_mb"], rel=0.03)
    assert out.memory_mb == pytest.approx(row["nvml_used_mb"], rel=0.05)


def test_traces_are_cached_per_model_and_workload(monkeypatch):
    calls = []
    real = memreplay._trace

    def counting(model, **kw):
        calls.append(kw["batch"])
        return real(model, **kw)

    monkeypatch.setattr(memreplay, "_trace", counting)
    m = nn.Sequential(nn.Linear(8, 8))
    a = replay_memory(m, "h200", batch=4, input_shape=(8,))
    b = replay_memory(m, "h200", batch=4, input_shape=(8,))
    replay_memory(m, "h200", batch=5, input_shape=(8,))
    assert calls == [4, 5]
    assert a.allocated_mb == b.allocated_mb


def test_a_module_that_needs_data_falls_back_with_a_warning_naming_the_operator():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)

        def forward(self, x):
            y = self.lin(x)
            return y * 2 if y.sum() > 0 else y

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = replay_memory(Branchy(), "h200", batch=4, input_shape=(8,))
    assert out.path == "liveness-fallback"
    msgs = [str(x.message) for x in w if issubclass(x.category, UnsupportedOpWarning)]
    assert msgs and "is_nonzero" in msgs[0]
    assert any("liveness walk" in n for n in out.notes)


def test_a_cost_graph_takes_the_liveness_walk():
    from costmodel.frontends import to_graph

    g = to_graph("torchvision:resnet18", batch=8)
    out = replay_memory(g, "h200")
    assert out.path == "liveness-fallback"
    traced = replay_memory("torchvision:resnet18", "h200", batch=8)
    # the walk takes the trace's cuDNN workspace rule and holds the same live activations
    assert out.allocated_mb == pytest.approx(traced.allocated_mb, rel=0.05)
    assert out.peak_op == traced.peak_op == "cudnn_workspace"


@pytest.mark.parametrize("name", ["torchvision:resnet18", "torchvision:mobilenet_v3_small", "timm:deit_tiny_patch16_224"])
def test_the_walk_of_a_training_step_follows_autograd(name):
    """Two training steps from the graph alone: saved buffers, the backward pass's gradients, parameter
    gradients, optimizer state; its allocated peak is the module trace's within a few per cent."""
    from costmodel.frontends import to_graph

    g = to_graph(name, batch=16, mode="training")
    walk = replay_memory(g, "h200", batch=16, mode="training")
    traced = replay_memory(name, "h200", batch=16, mode="training")
    assert walk.path == "liveness-fallback" and traced.path == "replay"
    assert walk.peak_phase == traced.peak_phase == "backward"
    assert walk.allocated_mb == pytest.approx(traced.allocated_mb, rel=0.08)
    inference = replay_memory(g, "h200", batch=16)  # the same graph walked as an inference call
    assert walk.allocated_mb > 2 * inference.allocated_mb


def test_the_walk_saves_a_clone_for_an_in_place_operator_whose_backward_needs_its_input():
    from costmodel.analysis.allocator import replay
    from costmodel.analysis.memreplay import graph_trace
    from costmodel.frontends import from_torch

    def step(inplace):
        m = nn.Sequential(nn.Linear(256, 256), nn.SiLU(inplace=inplace), nn.Linear(256, 256), nn.ReLU(inplace=True))
        g = from_torch(m, (torch.randn(64, 256),), mode="training")
        tr = graph_trace(g, training=True)
        return tr, replay(tr.events).peak_allocated_bytes

    (tr, peak_inplace), (_, peak) = step(True), step(False)
    act = 64 * 256 * 4
    assert any(e.op.endswith("(saved input)") and e.nbytes == act for e in tr.events if e.kind == "alloc")
    # the clone stands in for the separate output the out-of-place SiLU allocates
    assert peak_inplace == pytest.approx(peak, abs=act)


@pytest.mark.parametrize("kw,needle", [
    ({"batch": 0}, "batch"),
    ({"dtype": "int4"}, "dtype must be one of fp32, fp16, bf16"),
    ({"mode": "training", "optimizer": "lion"}, "unknown optimizer 'lion'"),
    ({"mode": "eval"}, "mode must be one of inference, training"),
    ({"kind": "audio"}, "kind must be one of vision, transformer"),
])
def test_bad_input_names_the_valid_choices(kw, needle):
    with pytest.raises(InvalidInputError, match=needle):
        replay_memory("torchvision:resnet18", "h200", **{"batch": 1, **kw})


def test_a_transformer_needs_its_sequence_length():
    with pytest.raises(InvalidInputError, match="seq"):
        replay_memory("gpt2", "h200", batch=1)


def test_explicit_overheads_replace_the_fitted_ones():
    ov = Overheads("x", {"vision": 0.0}, {"vision": 100.0}, 0, "test")
    out = replay_memory("torchvision:resnet18", "h200", batch=1, overheads=ov)
    assert out.context_mb == 100.0 and out.workspace_mb == 0.0
    assert out.memory_mb == pytest.approx(out.reserved_mb + 100.0)
    assert out.notes[-1] == "overheads: test"


def test_decode_rows_of_a_small_decoder(tmp_path):
    pytest.importorskip("transformers")
    cfg = {"model_type": "gpt2", "n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 256, "n_positions": 64,
           "bos_token_id": 0, "eos_token_id": 0}
    pre = replay_memory(cfg, "h200", batch=2, seq=32, phase="prefill", dtype="fp16")
    dec = replay_memory(cfg, "h200", batch=2, seq=32, phase="decode", dtype="fp16")
    assert pre.path == dec.path == "replay"
    assert dec.allocated_mb > pre.allocated_mb  # the decode row holds its KV cache beside the prefill
    # a fine-tuning step holds gradients and AdamW's moments besides the weights
    step = replay_memory(cfg, "h200", batch=2, seq=32, mode="training", dtype="fp16", optimizer="adamw")
    assert step.path == "replay" and step.allocated_mb > pre.allocated_mb
    assert torch.get_default_dtype() == torch.float32  # nothing leaks out of a trace


class _InplaceActs(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1, self.a1 = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU6(inplace=True)
        self.c2, self.b2, self.a2 = nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.SiLU(inplace=True)

    def forward(self, x):
        return self.a2(self.b2(self.c2(self.a1(self.b1(self.c1(x)))))).mean((2, 3))


@pytest.mark.parametrize("method", ["export", "trace"])
def test_the_graph_walk_counts_a_recorded_saved_clone_once(method):
    # both captures record autograd's clone of an in-place activation's input as a copy nothing reads; the
    # walk's own saved input of that activation stands for it: no second buffer, no gradient for it
    from costmodel.frontends import from_torch

    g = from_torch(_InplaceActs(), input_shape=(3, 12, 12), batch=2, method=method, mode="training")
    assert sum(n.kind == "copy" and not n.is_view for n in g.nodes) >= 2
    allocs = [e for e in memreplay.graph_trace(g, training=True).events if e.kind == "alloc"]
    saved = [e for e in allocs if e.op.endswith("(saved input)")]
    assert sorted(e.op for e in saved) == sorted(["aten.hardtanh_ (saved input)", "aten.silu_ (saved input)"] * 2)
    assert [e.nbytes for e in saved[:2]] == [2 * 8 * 10 * 10 * 4, 2 * 8 * 8 * 8 * 4]
    assert not [e for e in allocs if e.op == "aten.clone"]


def test_the_allocator_gets_the_board_less_the_context():
    """The replay's allocator may take what the board leaves after the process's context: near that room it
    releases its cache (as PyTorch does before an out-of-memory error) and says so; a roomy board does not."""
    roomy = replay_memory("torchvision:resnet18", "h200", batch=64, mode="training")
    assert not any("released its cached segments" in n for n in roomy.notes)
    # a board whose room (less the context) sits between the allocated and the reserved peak of the roomy run
    room_mb = (roomy.allocated_mb + roomy.reserved_mb - roomy.slack_mb) / 2
    gb = (room_mb + roomy.context_mb) / 1024
    small = get_device("h200").with_overrides(memory_gb=gb, mig_profiles=[])
    tight = replay_memory("torchvision:resnet18", small, batch=64, mode="training")
    assert tight.allocated_mb == pytest.approx(roomy.allocated_mb, rel=0.01)  # blocks split anew after a release
    assert tight.reserved_mb - tight.slack_mb <= room_mb < roomy.reserved_mb - roomy.slack_mb
    assert not tight.oom and any("released its cached segments" in n for n in tight.notes)


def test_a_training_step_reports_what_its_forward_pass_saved_for_the_backward():
    # Linear -> ReLU -> Linear, then the loss: autograd keeps the ReLU's output (for the ReLU's and the second
    # linear layer's gradients) and the loss's log-softmax; the first layer's input is the batch, held anyway
    m = nn.Sequential(nn.Linear(256, 4096), nn.ReLU(), nn.Linear(4096, 256))
    for b in (64, 128):
        r = replay_memory(m, "t4", batch=b, mode="training", inputs=(torch.randn(b, 256, device="meta"),))
        assert r.saved_mb * 2**20 == pytest.approx(b * 4096 * 4 + b * 256 * 4, abs=64)
    assert replay_memory(m, "t4", batch=64, inputs=(torch.randn(64, 256, device="meta"),)).saved_mb == 0.0
