"""Training steps with frozen parameters (``requires_grad=False``): what the frontends record, which
backward kernels and optimizer work the timeline prices, the analytic memory, and the estimate's notes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import costmodel
from costmodel import InvalidInputError
from costmodel.analysis._cast import apply_autocast, cast_graph
from costmodel.analysis._memory import memory_breakdown
from costmodel.devices import get_device
from costmodel.frontends import freeze, zoo_graph
from costmodel.frontends.pytorch import from_torch
from costmodel.predictors._opmodel import DeviceFigures, compose
from costmodel.predictors._optable import PHASES, op_table


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(16, 32)
        self.second = nn.Linear(32, 8)

    def forward(self, x):
        return self.second(torch.relu(self.first(x)))


def _two_layers(frozen: str | None) -> nn.Module:
    torch.manual_seed(0)
    m = TwoLayers()
    if frozen is not None:
        for p in getattr(m, frozen).parameters():
            p.requires_grad_(False)
    return m


def _backward_rows(graph) -> dict[str, int]:
    """Backward kernels per operator name (the H200 op table)."""
    t = op_table(graph, get_device("h200"), mode="training")
    back = t.phase == PHASES.index("backward")
    out: dict[str, int] = {}
    for i in t.node[back & (t.node >= 0)].tolist():
        op = graph.nodes[i].op
        out[op] = out.get(op, 0) + 1
    return out


@pytest.mark.parametrize("method", ["trace", "export"])
def test_the_frontends_count_frozen_parameters_apart(method):
    g = from_torch(_two_layers("first"), input_shape=(16,), batch=4, mode="training", method=method)
    assert g.params == 16 * 32 + 32 + 32 * 8 + 8  # every parameter is part of the model
    assert g.meta["frozen_params"] == 16 * 32 + 32
    assert g.meta["frozen_bytes"] == 4 * (16 * 32 + 32)
    assert g.meta["trainable_bytes"] == 4 * (32 * 8 + 8)
    assert g.meta["trainable_tensors"] == 2  # second.weight, second.bias
    # the first layer's operators read frozen parameters only; the second layer's are trainable
    frozen_ops = [n for n in g.nodes if n.attrs.get("frozen")]
    assert frozen_ops and all(n.out_shapes[0][-1] == 32 or n.kind == "transpose" for n in frozen_ops)
    assert not any(n.attrs.get("frozen") for n in g.nodes if any(n.param_inputs) and n.out_shapes[0][-1] == 8)
    # nothing frozen: the graph is what it always was
    full = from_torch(_two_layers(None), input_shape=(16,), batch=4, mode="training", method=method)
    assert "frozen_params" not in full.meta and not any(n.attrs.get("frozen") for n in full.nodes)
    assert full.needs_gradient() is None


def test_a_frozen_prefix_has_no_backward_and_a_frozen_layer_under_a_trainable_one_only_its_input_gradient():
    full = _backward_rows(from_torch(_two_layers(None), input_shape=(16,), batch=4, mode="training",
                                     method="export"))
    probe = _backward_rows(from_torch(_two_layers("first"), input_shape=(16,), batch=4, mode="training",
                                      method="export"))
    top = _backward_rows(from_torch(_two_layers("second"), input_shape=(16,), batch=4, mode="training",
                                    method="export"))
    # full: the second layer's input and weight gradients, relu's, the first layer's weight gradient
    assert full == {"aten.linear": 3, "aten.relu": 1}
    # linear probe: the second layer's weight gradient only; nothing below it
    assert probe == {"aten.linear": 1}
    # the second layer frozen: its input gradient (no weight gradient), relu, the first layer's weight
    assert top == {"aten.linear": 2, "aten.relu": 1}


def test_the_optimizer_streams_the_trainable_parameters_only():
    dev = get_device("h200")
    full = from_torch(_two_layers(None), input_shape=(16,), batch=4, mode="training")
    probe = from_torch(_two_layers("first"), input_shape=(16,), batch=4, mode="training")
    t_full, t_probe = op_table(full, dev, mode="training"), op_table(probe, dev, mode="training")
    opt = PHASES.index("optimizer")
    assert t_full.host_count[t_full.phase == opt].tolist() == [4.0]
    assert t_probe.host_count[t_probe.phase == opt].tolist() == [2.0]
    # the roofline bound of the update scales with the bytes it streams: 264 of 808 parameters
    b_full, b_probe = t_full.bound_s[t_full.phase == opt][0], t_probe.bound_s[t_probe.phase == opt][0]
    assert b_probe == pytest.approx(b_full * (32 * 8 + 8) / (16 * 32 + 32 + 32 * 8 + 8), rel=1e-6)


def test_the_cpu_composition_follows_the_gradients():
    figs = DeviceFigures.from_device(get_device("cpu"))
    full = compose(from_torch(_two_layers(None), input_shape=(16,), batch=4, mode="training"), figs,
                   mode="training")
    probe_g = from_torch(_two_layers("first"), input_shape=(16,), batch=4, mode="training")
    probe = compose(probe_g, figs, mode="training")
    top_g = from_torch(_two_layers("second"), input_shape=(16,), batch=4, mode="training")
    top = compose(top_g, figs, mode="training")
    n_back = [int((c.phase == 1).sum()) for c in (full, probe, top)]
    assert n_back[1] < n_back[2] <= n_back[0]
    # the probe's backward operators are the second layer's (those reading its trainable weights)
    ids = probe.node[probe.phase == 1].tolist()
    needs = probe_g.needs_gradient()
    assert ids and all(needs[i] for i in ids)
    assert not any(probe_g.nodes[i].attrs.get("frozen") for i in ids)
    # a frozen GEMM under a trainable layer: its backward bound is its forward's (input gradient only)
    g = top_g
    gemm = next(n for n in g.nodes if n.attrs.get("frozen") and n.kind == "matmul")
    fwd = top.bound_us[(top.node == gemm.id) & (top.phase == 0)][0]
    bwd = top.bound_us[(top.node == gemm.id) & (top.phase == 1)][0]
    assert bwd == pytest.approx(fwd)
    # the optimizer's tensor count is the trainable one
    assert probe.host_counts[-1] == 2 and full.host_counts[-1] == 4


class _Normalized(nn.Module):
    """Input preprocessing (``(x - 0.5) * 2``) before the first layer with parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 8)

    def forward(self, x):
        return torch.relu(self.fc((x - 0.5) * 2.0))


def test_preprocessing_gets_no_backward_on_either_lane():
    """Nothing frozen, yet the operators on the input alone need no gradient: autograd runs no backward
    for them. The CPU composition and the GPU operator table agree on which operators get one."""
    g = from_torch(_Normalized(), input_shape=(16,), batch=4, mode="training")
    assert not g.meta.get("frozen_params") and g.needs_gradient() is None
    needs = g.needs_gradient(always=True)
    pre = [n.id for n in g.nodes if not n.is_view and n.kind in ("elementwise", "sub", "mul", "add") and n.params == 0]
    assert len(pre) == 2 and not any(needs[i] for i in pre)
    comp = compose(g, DeviceFigures.from_device(get_device("cpu")), mode="training")
    cpu_back = set(comp.node[comp.phase == 1].tolist())
    t = op_table(g, get_device("h200"), mode="training")
    gpu_back = {int(i) for i in t.node[t.phase == PHASES.index("backward")]}
    assert not cpu_back & set(pre) and not gpu_back & set(pre)
    linear = next(n.id for n in g.nodes if n.params > 0)
    assert linear in cpu_back and linear in gpu_back and cpu_back == gpu_back
    assert comp.host_counts[4] == len(cpu_back)


def test_casts_keep_the_frozen_marks():
    g = from_torch(_two_layers("first"), input_shape=(16,), batch=4, mode="training")
    for h in (cast_graph(g, "fp16"), apply_autocast(g, "fp16")):
        assert h.meta["frozen_params"] == g.meta["frozen_params"]
        assert _backward_rows(h).keys() == _backward_rows(g).keys() or h.meta.get("autocast")
        needs = h.needs_gradient()
        # no operator before the trainable layer needs a gradient, casts of frozen weights included
        casts = [n for n in h.nodes if n.attrs.get("autocast") and n.attrs.get("frozen")]
        assert all(not needs[n.id] for n in casts)
    assert cast_graph(g, "fp16").meta["frozen_bytes"] == g.meta["frozen_bytes"] // 2


def test_analytic_memory_keeps_no_activation_for_a_frozen_prefix():
    full = memory_breakdown(zoo_graph("resnet18", batch=8, mode="training"), mode="training")
    part = memory_breakdown(zoo_graph({"name": "resnet18", "trainable": ["layer4", "fc"]}, batch=8,
                                      mode="training"), mode="training")
    probe = memory_breakdown(zoo_graph({"name": "resnet18", "trainable": "head"}, batch=8, mode="training"),
                             mode="training")
    assert full.weights_bytes == part.weights_bytes == probe.weights_bytes
    assert probe.gradients_bytes == 4 * (512 * 1000 + 1000)
    assert probe.activations_bytes < part.activations_bytes < full.activations_bytes
    assert probe.optimizer_bytes < part.optimizer_bytes < full.optimizer_bytes


def test_zoo_specs_freeze_what_they_say():
    m = freeze(_two_layers(None), "head")
    assert [n for n, p in m.named_parameters() if p.requires_grad] == ["second.weight", "second.bias"]
    m = freeze(_two_layers(None), ["first"])
    assert [n for n, p in m.named_parameters() if p.requires_grad] == ["first.weight", "first.bias"]
    assert all(p.requires_grad for p in freeze(_two_layers(None), "all").parameters())
    with pytest.raises(InvalidInputError, match=r"\['third'\] match no parameter.*first, second"):
        freeze(_two_layers(None), ["third"])
    with pytest.raises(InvalidInputError, match="trainable must be one of all, head"):
        freeze(_two_layers(None), "none")
    g = zoo_graph({"name": "resnet18", "trainable": "head"}, batch=2, mode="training")
    assert g.meta["trainable_tensors"] == 2 and g.meta["frozen_params"] == g.params - (512 * 1000 + 1000)


def test_collect_specs_check_the_trainable_key():
    from costmodel.measure.work import parse_work

    items = parse_work({"vision": [{"spec": {"src": "tv", "name": "resnet18", "trainable": ["layer4", "fc"]},
                                    "batch": [2], "mode": ["train"]}]})
    assert items[0].spec["trainable"] == ["layer4", "fc"]
    with pytest.raises(InvalidInputError, match="spec 'trainable' must be one of all, head"):
        parse_work({"vision": [{"spec": {"src": "tv", "name": "resnet18", "trainable": []}, "batch": [2]}]})


def test_estimates_say_how_they_priced_the_frozen_parameters():
    spec = {"name": "resnet18", "trainable": "head"}
    t = costmodel.estimate(spec, device="h200", batch=8, mode="training", predictor="timeline")
    full = costmodel.estimate("resnet18", device="h200", batch=8, mode="training", predictor="timeline")
    assert t.latency_ms < 0.6 * full.latency_ms and t.memory_mb < full.memory_mb
    assert any("parameters are frozen: no gradient" in a for a in t.assumptions)
    assert t.details["frozen_params"] == t.params - (512 * 1000 + 1000) and "M frozen)" in t.table()
    assert "frozen_params" not in full.details
    d = costmodel.estimate(spec, device="h200", batch=8, mode="training", predictor="dippm")
    assert any("which the dippm predictor does not see" in a for a in d.assumptions)
    inf = costmodel.estimate(spec, device="h200", batch=8, mode="inference", predictor="timeline")
    assert not any("frozen" in a for a in inf.assumptions)
    m = _two_layers(None)
    for p in m.parameters():
        p.requires_grad_(False)
    with pytest.raises(InvalidInputError, match="updates nothing: all 808 of its parameters are frozen"):
        costmodel.estimate(m, device="h200", batch=4, mode="training", input_shape=(16,))


def test_frozen_rows_of_a_batch_match_their_single_predictions():
    pred = costmodel.get_predictor("timeline")
    dev = get_device("h200")
    gs = [zoo_graph({"name": "resnet18", "trainable": tr}, batch=4, mode="training")
          for tr in ("all", "head", ["layer3", "layer4", "fc"])]
    many = pred.predict_many(gs, dev, mode="training")
    one = [pred.predict(g, dev, mode="training") for g in gs]
    assert np.allclose([e.latency_ms for e in many], [e.latency_ms for e in one], rtol=1e-6)
    lat = [e.latency_ms for e in one]
    assert lat[1] < lat[2] < lat[0]


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update (what peft's LoRA adds)."""

    def __init__(self, base: nn.Linear, r: int = 4):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.a = nn.Linear(base.in_features, r, bias=False)
        self.b = nn.Linear(r, base.out_features, bias=False)

    def forward(self, x):
        return self.base(x) + self.b(self.a(x))


def test_low_rank_adapters_train_only_the_adapters():
    torch.manual_seed(0)
    m = TwoLayers()
    m.first, m.second = LoRALinear(m.first), LoRALinear(m.second)
    g = from_torch(m, input_shape=(16,), batch=4, mode="training", method="export")
    assert g.meta["trainable_tensors"] == 4 and g.meta["frozen_params"] == 16 * 32 + 32 + 32 * 8 + 8
    rows = _backward_rows(g)
    # the second base layer: its input's gradient only; each adapter GEMM: its weight's, and the input's
    # where something below needs it (the first layer's adapters read the input image: weight only)
    base_first = next(n for n in g.nodes if n.attrs.get("frozen") and n.out_shapes[0][-1] == 32)
    base_second = next(n for n in g.nodes if n.attrs.get("frozen") and n.out_shapes[0][-1] == 8)
    needs = g.needs_gradient()
    assert not needs[base_first.id] and needs[base_second.id]
    t = op_table(g, get_device("h200"), mode="training")
    back = t.phase == PHASES.index("backward")
    assert int((back & (t.node == base_first.id)).sum()) == 0
    assert int((back & (t.node == base_second.id)).sum()) == 1
    # 2 (second adapters: input and weight) x 2 + 1 (first layer's a: weight) + 2 (first b) + base 1 = 8
    assert rows["aten.linear"] == 8


def test_a_peft_lora_model_trains_its_adapters_only():
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=1000, bos_token_id=0, eos_token_id=0)
    base = transformers.GPT2LMHeadModel(cfg)
    full = costmodel.estimate(base, inputs=(torch.zeros(2, 64, dtype=torch.long),), batch=2, device="h200",
                              mode="training", predictor="timeline")
    pm = peft.get_peft_model(base, peft.LoraConfig(r=4, target_modules=["c_attn"], lora_dropout=0.0))
    trainable = sum(p.numel() for p in pm.parameters() if p.requires_grad)
    g = from_torch(pm, inputs=(torch.zeros(2, 64, dtype=torch.long),), mode="training", method="trace")
    assert g.meta["frozen_params"] == g.params - trainable and trainable == 2 * (128 * 4 + 4 * 384)
    assert g.meta["trainable_tensors"] == 4  # lora_A and lora_B of two layers
    est = costmodel.estimate(pm, inputs=(torch.zeros(2, 64, dtype=torch.long),), batch=2, device="h200",
                             mode="training", predictor="timeline")
    assert est.latency_ms < full.latency_ms and est.memory_mb < full.memory_mb
    assert est.details["frozen_params"] == g.meta["frozen_params"]
