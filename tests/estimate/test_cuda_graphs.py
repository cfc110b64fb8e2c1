"""A step replayed from one captured CUDA graph: the timeline's device lane without per-operator dispatch."""

import json

import pytest

import costmodel
from costmodel import InvalidInputError
from costmodel.cli import main


def _pair(model="resnet18", **kw):
    kw = {"batch": 1, "device": "h200", **kw}
    return costmodel.estimate(model, **kw), costmodel.estimate(model, cuda_graphs=True, **kw)


def test_a_host_bound_call_loses_its_dispatch_and_keeps_its_device_lane():
    eager, graph = _pair()
    ops = eager.details["ops"]
    assert ops["bound"] == "host" and graph.details["ops"]["bound"] == "device"
    assert graph.latency_ms < 0.5 * eager.latency_ms  # the host lane was most of it
    # the same device lane, begun by one launch and ended by the synchronisation (microseconds on top)
    assert graph.details["ops"]["device_ms"] == pytest.approx(ops["device_ms"], rel=1e-9)
    assert ops["device_ms"] < graph.latency_ms < ops["device_ms"] + 0.05
    assert graph.details["ops"]["single_call_ms"] > graph.latency_ms  # a lone call waits for its launch too
    assert graph.energy_j < eager.energy_j and graph.details["cuda_graphs"] is True
    assert any(a.startswith("CUDA graphs: every kernel replayed") for a in graph.assumptions)
    assert not any(a.startswith("CUDA graphs") for a in eager.assumptions) and "cuda_graphs" not in eager.details
    # no interval: the residuals that calibrate them are eager runs'
    assert eager.latency_ms_interval is not None and graph.latency_ms_interval is None


def test_a_device_bound_step_is_what_eager_runs():
    eager, graph = _pair(batch=128)
    assert eager.details["ops"]["bound"] == "device"
    assert graph.latency_ms == pytest.approx(eager.latency_ms, rel=0.01)


def test_a_training_step_and_a_slice():
    eager, graph = _pair(mode="training", batch=4)
    assert graph.latency_ms < eager.latency_ms
    # the MIG slice is asked about the same way
    assert graph.details["mig"]["latency_ms"] <= eager.details["mig"]["latency_ms"]


def test_what_cannot_be_costed_as_a_graph_is_refused():
    with pytest.raises(InvalidInputError, match="cuda_graphs=True needs a predictor with a host and a device lane"):
        costmodel.estimate("resnet18", batch=1, device="h200", predictor="analytic", cuda_graphs=True)
    with pytest.raises(InvalidInputError, match="CUDA graphs replay kernels on a GPU; cpu is a CPU"):
        costmodel.estimate("resnet18", batch=1, device="cpu", cuda_graphs=True)
    with pytest.raises(InvalidInputError, match="cuda_graphs must be True or False, got 'yes'"):
        costmodel.estimate("resnet18", batch=1, device="h200", cuda_graphs="yes")


def test_the_cli_flag(capsys):
    assert main(["predict", "resnet18", "--batch", "1", "--device", "h200", "--cuda-graphs", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    eager = costmodel.estimate("resnet18", batch=1, device="h200")
    assert d["details"]["cuda_graphs"] is True and d["latency_ms"] < 0.5 * eager.latency_ms


def test_a_transformer_step_in_a_cuda_graph():
    """Prefill loses its dispatch; a decode step also loses the eager decode loop's per-step host cost, and
    says its device lane is unchecked; the closed-form predictor cannot cost a graph."""
    kw = {"batch": 1, "seq": 128, "device": "h200"}
    eager = costmodel.estimate_llm("gpt2", mode="prefill", **kw)
    graph = costmodel.estimate_llm("gpt2", mode="prefill", cuda_graphs=True, **kw)
    assert graph.latency_ms < eager.latency_ms and graph.details["cuda_graphs"] is True
    assert graph.tokens_s > eager.tokens_s
    d_eager = costmodel.estimate_llm("gpt2", mode="decode", **kw)
    d_graph = costmodel.estimate_llm("gpt2", mode="decode", cuda_graphs=True, **kw)
    assert d_graph.latency_ms < d_eager.details["ops"]["decode_step_ms"] < d_eager.latency_ms
    assert d_graph.details["ops"]["decode_step_ms"] == 0.0  # the eager loop's per-step cost is gone
    assert any(a.startswith("decode step in a CUDA graph") and "unchecked" in a for a in d_graph.assumptions)
    assert not any(a.startswith("decode step in a CUDA graph") for a in d_eager.assumptions)
    with pytest.raises(InvalidInputError, match="the llm-xgb predictor learned whole eager steps"):
        costmodel.estimate_llm("gpt2", mode="prefill", predictor="llm-xgb", cuda_graphs=True, **kw)
    with pytest.raises(InvalidInputError, match="cuda_graphs must be True or False"):
        costmodel.estimate_llm("gpt2", mode="prefill", cuda_graphs=1, **kw)
    assert main(["llm", "gpt2", "--batch", "1", "--seq", "128", "--mode", "prefill", "--cuda-graphs", "--json"]) == 0


def test_a_call_the_host_waits_in_is_not_captured():
    torch = pytest.importorskip("torch")

    class Masked(torch.nn.Module):  # boolean-mask indexing: the host reads how many elements it kept
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(64, 64)

        def forward(self, x):
            y = self.fc(x)
            return y[y > 0].sum()

    g = costmodel.to_graph(Masked(), batch=4, input_shape=(64,), method="trace")
    p = costmodel.get_predictor("timeline")
    eager, graph = p.predict(g, "h200"), p.with_cuda_graphs().predict(g, "h200")
    assert eager.details["ops"]["host_waits"] == 1
    # costed as the eager call it has to stay (it was the device lane alone: 0.02 ms against 0.34)
    assert graph.latency_ms == pytest.approx(eager.latency_ms, rel=1e-9)
    assert graph.details["ops"]["host_waits"] == 1 and graph.details["ops"]["bound"] == eager.details["ops"]["bound"]
    assert any(a.startswith("CUDA graphs: not applied") and "aten.index" in a for a in graph.assumptions)
    assert not any(a.startswith("CUDA graphs: every kernel") for a in graph.assumptions)
    # a graph the host does not wait in is still replayed from one launch
    plain = costmodel.to_graph(torch.nn.Linear(64, 64), batch=4, input_shape=(64,), method="trace")
    assert p.with_cuda_graphs().predict(plain, "h200").latency_ms < 0.5 * p.predict(plain, "h200").latency_ms
