"""The torch.compile backend: estimates per graph, OOM warnings, never breaking the compile."""

import warnings
from importlib.metadata import entry_points
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import costmodel
import costmodel.predictors
from costmodel import OOMWarning, UnknownDeviceError


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(512, 4096), nn.ReLU(), nn.Linear(4096, 10))


def _compile_and_run(model, x, backend, *, grad=False):
    torch._dynamo.reset()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with torch.set_grad_enabled(grad):
            y = torch.compile(model, backend=backend)(x)
    return y, w


def test_oom_warning_names_memory_and_a_batch_that_fits():
    m, x = _mlp().eval(), torch.randn(64, 512)
    be = costmodel.torch_backend(device="t4", memory_limit_mb=500, inner="eager", predictor="analytic")
    y, w = _compile_and_run(m, x, be)
    assert torch.allclose(y, m(x))  # the graph still ran
    oom = [x.message for x in w if isinstance(x.message, OOMWarning)]
    assert len(oom) == 1 and isinstance(oom[0], UserWarning)
    text = str(oom[0])
    assert "500 MB are available" in text and "largest batch" in text
    est = be.estimates[0]
    assert est.batch == 64 and est.mode == "inference" and est.memory_mb > 500
    assert est.params == 512 * 4096 + 4096 + 4096 * 10 + 10  # lifted parameters counted as weights


def test_no_warning_when_it_fits():
    m, x = _mlp().eval(), torch.randn(8, 512)
    be = costmodel.torch_backend(device="h100", inner="eager", predictor="analytic")
    _, w = _compile_and_run(m, x, be)
    assert not [x for x in w if isinstance(x.message, OOMWarning)]
    assert len(be.estimates) == 1


def test_training_is_estimated_when_grad_is_on():
    m, x = _mlp().train(), torch.randn(32, 512)
    be = costmodel.torch_backend(device="h100", inner="eager", predictor="analytic")
    y, _ = _compile_and_run(m, x, be, grad=True)
    y.sum().backward()
    est = be.estimates[0]
    mem = est.details["memory_breakdown_mb"]
    assert est.mode == "training" and mem["gradients_mb"] == pytest.approx(mem["weights_mb"])
    assert mem["optimizer_mb"] > 0


def test_a_fine_tune_with_a_frozen_backbone_trains_only_its_head():
    # a frozen convolution and batch norm under a trainable classifier: lifted parameters keep
    # requires_grad, lifted buffers stay buffers (not parameters, frozen or not)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                      nn.Linear(16, 10)).train()
    x = torch.randn(8, 3, 32, 32)
    full = costmodel.torch_backend(device="h100", inner="eager", predictor="timeline")
    _compile_and_run(m, x, full, grad=True)
    for p in list(m[0].parameters()) + list(m[1].parameters()):
        p.requires_grad_(False)
    be = costmodel.torch_backend(device="h100", inner="eager", predictor="timeline")
    _compile_and_run(m, x, be, grad=True)
    est, f = be.estimates[0], full.estimates[0]
    frozen = 3 * 16 * 9 + 16 + 2 * 16
    assert est.mode == "training" and est.params == f.params == frozen + 16 * 10 + 10
    assert any(a.startswith(f"{frozen:,} of {est.params:,} parameters are frozen") for a in est.assumptions)
    assert not any("frozen" in a for a in f.assumptions)
    assert est.latency_ms < f.latency_ms
    assert est.details["memory_breakdown_mb"]["gradients_mb"] < f.details["memory_breakdown_mb"]["gradients_mb"]


def test_a_graph_compiled_under_autocast_is_estimated_under_autocast():
    """Compiled and called inside torch.autocast: the estimate costs the graph as autocast runs it (the
    GEMMs in bf16 after their casts) and traces its memory under autocast."""
    m, x = _mlp().eval(), torch.randn(64, 512)
    plain = costmodel.torch_backend(device="h100", inner="eager")
    _compile_and_run(m, x, plain)
    amp = costmodel.torch_backend(device="h100", inner="eager")
    torch._dynamo.reset()
    with torch.autocast("cpu", dtype=torch.bfloat16), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.compile(m, backend=amp)(x)
    a, p = amp.estimates[0], plain.estimates[0]
    assert a.details["autocast"] == "bf16" and "autocast" not in p.details
    assert a.details["memory"]["path"] == "replay"
    # the bf16 copies of the two weight matrices are extra memory at inference (autocast keeps them)
    assert a.allocated_mb > p.allocated_mb


def test_graph_breaks_give_one_estimate_per_graph():
    def f(x):
        y = torch.relu(x) * 2
        torch._dynamo.graph_break()
        return y + 1

    be = costmodel.torch_backend(device="h100", inner="eager", predictor="analytic")
    y, _ = _compile_and_run(f, torch.randn(4, 16), be)
    assert len(be.estimates) == 2 and y.shape == (4, 16)


def test_a_detectors_graphs_are_estimated_between_its_breaks():
    """Dynamo breaks a detector at its value-sized operators; the graphs between carry constants made on
    the CPU (``torch.as_tensor(mean, device=cpu)``) and copies to it, which the meta trace keeps on the meta
    device, and graphs with no tensor input at all, which hold nothing to cost."""
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    m = tv.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    be = costmodel.torch_backend(device="h100", inner="eager", predictor="analytic")
    with torch.no_grad():
        out, w = _compile_and_run(m, torch.randn(1, 3, 320, 320), be)
    assert isinstance(out, list) and "boxes" in out[0]
    assert not [x for x in w if "could not estimate" in str(x.message)]
    assert len(be.estimates) >= 3 and max(e.latency_ms for e in be.estimates) > 0


def test_a_failing_cost_model_never_breaks_the_compile():
    from costmodel.predictors import AnalyticPredictor

    class Exploding(AnalyticPredictor):
        def predict(self, *a, **k):
            raise RuntimeError("boom")

    m, x = _mlp().eval(), torch.randn(4, 512)
    be = costmodel.torch_backend(device="h100", inner="eager", predictor=Exploding())
    y, w = _compile_and_run(m, x, be)
    assert torch.allclose(y, m(x))
    msgs = [str(x.message) for x in w if issubclass(x.category, RuntimeWarning)]
    assert any("could not estimate" in s and "boom" in s for s in msgs)


def test_factory_validates_and_name_is_registered():
    with pytest.raises(UnknownDeviceError):
        costmodel.torch_backend(device="h1000")
    with pytest.raises(costmodel.InvalidInputError, match="memory_limit_mb"):
        costmodel.torch_backend(memory_limit_mb=0)
    # an inner backend torch.compile does not know fails here, naming the known ones, not at the first call
    with pytest.raises(costmodel.InvalidInputError, match=r"unknown inner backend 'nope'; choose one of .*inductor"):
        costmodel.torch_backend(device="h200", inner="nope")
    with pytest.raises(costmodel.InvalidInputError, match="another backend"):
        costmodel.torch_backend(device="h200", inner="costmodel")  # itself: it would call itself
    assert callable(costmodel.torch_backend(device="h200", inner="eager"))
    from costmodel.integrations.torch_compile import costmodel_backend, register

    register()
    from torch._dynamo import lookup_backend

    assert lookup_backend("costmodel") is costmodel_backend
    assert "costmodel" in {e.name for e in entry_points(group="torch_dynamo_backends")}


def _compile_under_error_filter(model, x, backend, caplog):
    """Compile and run with every warning turned into an exception, as ``-W error`` does."""
    import logging

    torch._dynamo.reset()
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="costmodel.compile"):
        warnings.simplefilter("error")
        with torch.no_grad():
            y = torch.compile(model, backend=backend)(x)
    return y, [r.getMessage() for r in caplog.records if r.name == "costmodel.compile"]


def test_an_error_warning_filter_never_breaks_the_compile_and_the_oom_warning_still_reaches_the_user(caplog):
    m, x = _mlp().eval(), torch.randn(64, 512)
    be = costmodel.torch_backend(device="t4", memory_limit_mb=500, inner="eager", predictor="analytic")
    y, logged = _compile_under_error_filter(m, x, be, caplog)
    assert torch.allclose(y, m(x))
    assert len(be.estimates) == 1 and be.estimates[0].memory_mb > 500
    oom = [s for s in logged if s.startswith("OOMWarning: ")]
    assert len(oom) == 1 and "500 MB are available" in oom[0] and "largest batch" in oom[0]


class _Exploding(costmodel.predictors.AnalyticPredictor):
    def predict(self, *a, **k):
        raise RuntimeError("boom")


class _ReturnsNone(costmodel.predictors.AnalyticPredictor):
    def predict(self, *a, **k):
        return None


@pytest.mark.parametrize("predictor, needle", [(_Exploding, "boom"), (_ReturnsNone, "NoneType")])
def test_an_error_warning_filter_with_a_failing_predictor_never_breaks_the_compile(caplog, predictor, needle):
    m, x = _mlp().eval(), torch.randn(4, 512)
    be = costmodel.torch_backend(device="h100", inner="eager", predictor=predictor())
    y, logged = _compile_under_error_filter(m, x, be, caplog)
    assert torch.allclose(y, m(x))
    assert not be.estimates
    assert any(s.startswith("RuntimeWarning: costmodel could not estimate") and needle in s for s in logged)


def test_warnings_raised_while_estimating_do_not_abort_the_estimate(caplog):
    # an operator outside the vocabulary warns while the graph is featurized; under an "error" filter
    # that warning is logged and the estimate (and its OOM check) still happens
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            return self.fc(torch.erfinv(torch.tanh(x)))

    m, x = Odd().eval(), torch.randn(4, 8)
    be = costmodel.torch_backend(device="h100", inner="eager", predictor="analytic")
    y, logged = _compile_under_error_filter(m, x, be, caplog)
    assert torch.allclose(y, m(x))
    assert len(be.estimates) == 1 and "aten.erfinv" in be.estimates[0].assumptions[0]
    assert any(s.startswith("UnsupportedOpWarning: ") and "erfinv" in s for s in logged)


def test_pyproject_entry_point_names_the_backend():
    import tomllib
    from importlib import import_module
    from pathlib import Path

    from costmodel.integrations.torch_compile import costmodel_backend

    cfg = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    mod, _, attr = cfg["project"]["entry-points"]["torch_dynamo_backends"]["costmodel"].partition(":")
    assert getattr(import_module(mod), attr) is costmodel_backend


def test_the_default_device_is_the_gpu_this_process_sees(monkeypatch):
    from costmodel.integrations.torch_compile import auto_device

    # no CUDA device here: an H100, and the estimates say so
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    dev, notes = auto_device()
    assert dev.name == "H100-SXM5-80GB" and "no CUDA device" in notes[0]
    m, x = _mlp().eval(), torch.randn(8, 512)
    be = costmodel.torch_backend(inner="eager", predictor="analytic")
    _compile_and_run(m, x, be)
    assert be.estimates[0].device == "H100-SXM5-80GB" and any("device='auto'" in a for a in be.estimates[0].assumptions)
    # inside a MIG instance CUDA reports the slice, which is the device (its memory the limit)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200 MIG 1g.18gb")
    dev, notes = auto_device()
    assert dev.name == "H200-SXM5-141GB MIG 1g.18gb" and dev.memory_mb == 16 * 1024 and not notes
    # a GPU the database does not list: its figures from what CUDA reports (its memory the limit)
    props = SimpleNamespace(name="NVIDIA GeForce RTX 3060", major=8, minor=6, multi_processor_count=28,
                            total_memory=12 * 2**30, L2_cache_size=3 * 2**20, clock_rate=1777000,
                            memory_clock_rate=7501000, memory_bus_width=192)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: props.name)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    dev, notes = auto_device()
    assert (dev.name, dev.memory_mb, dev.source, notes) == ("NVIDIA GeForce RTX 3060", 12 * 1024, "cuda-properties", [])
    be = costmodel.torch_backend(inner="eager", predictor="analytic")  # the device is resolved here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the graph itself compiles on this CPU
    _compile_and_run(m, x, be)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert be.estimates[0].device == "NVIDIA GeForce RTX 3060"
    assert any("derived from its CUDA properties" in a for a in be.estimates[0].assumptions)
    # a GPU older than Volta: no rates to derive it with, so an H100 and the reason
    props = SimpleNamespace(**{**vars(props), "name": "NVIDIA GeForce GTX 1080", "major": 6, "minor": 1})
    dev, notes = auto_device()
    assert dev.name == "H100-SXM5-80GB" and "('NVIDIA GeForce GTX 1080') cannot be costed" in notes[0]
    assert "compute capability 6.1" in notes[0]


def test_a_half_precision_model_is_costed_in_its_own_dtype():
    # the graph dynamo hands over is the model's own: fp16 weights are an fp16 estimate, latency and memory
    # alike, as costmodel.estimate gives for the module (the replay converts to the dtype it is given)
    m = _mlp().half().eval()
    x = torch.randn(32, 512, dtype=torch.float16)
    be = costmodel.torch_backend(device="h100", inner="eager")
    with torch.no_grad():
        _compile_and_run(m, x, be)
    est = be.estimates[0]
    direct = costmodel.estimate(m, inputs=(x,), batch=32, device="h100")
    assert est.dtype == direct.dtype == "fp16"
    assert est.memory_mb == pytest.approx(direct.memory_mb, rel=0.01)
    fp32 = costmodel.estimate(_mlp().eval(), inputs=(x.float(),), batch=32, device="h100")
    assert est.latency_ms < fp32.latency_ms and est.allocated_mb < fp32.allocated_mb

    # a bf16 model fed integer ids: its dtype is its weights', not fp32 for want of a floating input
    class Ids(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.out = nn.Embedding(32000, 1024), nn.Linear(1024, 32000)

        def forward(self, ids):
            return self.out(self.emb(ids))

    ids_model, ids = Ids().bfloat16().eval(), torch.randint(0, 32000, (8, 128))
    be = costmodel.torch_backend(device="h100", inner="eager")
    with torch.no_grad():
        _compile_and_run(ids_model, ids, be)
    direct = costmodel.estimate(ids_model, inputs=(ids,), batch=8, device="h100")
    assert be.estimates[0].dtype == "bf16"
    assert be.estimates[0].memory_mb == pytest.approx(direct.memory_mb, rel=0.01)
    # and its memory note says the replay answered, once
    notes = be.estimates[0].assumptions
    assert be.estimates[0].details["memory"]["path"] == "replay"
    assert not any(n.startswith("memory: a liveness walk") for n in notes) and len(notes) == len(set(notes))


def test_a_limit_above_the_device_does_not_lift_the_device():
    # the OOM warning compares with the smaller of the limit and what the device holds
    t4 = costmodel.get_device("t4")
    assert costmodel.torch_backend(device="t4", memory_limit_mb=10_000_000).memory_limit_mb == t4.capacity_mb
    assert costmodel.torch_backend(device="t4", memory_limit_mb=500).memory_limit_mb == 500
    assert costmodel.torch_backend(device="t4").memory_limit_mb == t4.capacity_mb
    for bad in ("20000", float("inf"), float("nan"), -1):
        with pytest.raises(costmodel.InvalidInputError, match="memory_limit_mb"):
            costmodel.torch_backend(device="t4", memory_limit_mb=bad)
    # an unknown predictor name fails when the backend is made, naming the registered ones
    with pytest.raises(costmodel.InvalidInputError, match=r"unknown predictor 'nonsense'.*timeline"):
        costmodel.torch_backend(device="t4", predictor="nonsense")


def test_torch_compile_mode_and_options_reach_the_backend():
    # torch.compile(..., mode=...) hands the backend mode=; reduce-overhead replays CUDA graphs, costed as such
    m, x = _mlp().eval(), torch.randn(8, 512)
    seen = {}

    def inner(gm, example_inputs, **kw):
        seen.update(kw)
        return gm.forward

    be = costmodel.torch_backend(device="h100", inner=inner)
    torch._dynamo.reset()
    with torch.no_grad():
        y = torch.compile(m, backend=be, mode="reduce-overhead")(x)
    assert torch.allclose(y, m(x)) and seen == {"mode": "reduce-overhead"}
    est = be.estimates[0]
    assert est.details.get("cuda_graphs") is True
    eager = costmodel.torch_backend(device="h100", inner="eager")
    _compile_and_run(m, x, eager)
    assert eager.estimates[0].latency_ms > est.latency_ms  # no host dispatch per operator


def _conv_bn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 10))


@pytest.mark.parametrize("grad", [False, True])
def test_a_dynamic_batch_is_estimated_as_the_static_one(grad):
    # dynamic=True lifts each batch norm's eps and momentum into 0-d tensor inputs read with .item(), and the
    # batch into a symbolic int input: the estimate failed ("Tensor.item() cannot be called on meta tensors")
    m, x = _conv_bn().train(grad), torch.randn(4, 3, 16, 16)
    ests = []
    for dynamic in (False, True):
        be = costmodel.torch_backend(device="t4", inner="eager", predictor="analytic")
        torch._dynamo.reset()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            with torch.set_grad_enabled(grad):
                torch.compile(m, backend=be, dynamic=dynamic)(x)
        assert not [x for x in w if issubclass(x.category, RuntimeWarning)], [str(x.message) for x in w]
        ests.append(be.estimates[0])
    static, dynamic = ests
    assert dynamic.batch == static.batch == 4 and dynamic.mode == static.mode
    assert dynamic.latency_ms == pytest.approx(static.latency_ms)
    assert dynamic.memory_mb == pytest.approx(static.memory_mb)
    assert any("dynamic batch" in a for a in dynamic.assumptions)
    assert not any("dynamic batch" in a for a in static.assumptions)


def test_a_dynamic_batch_is_checked_at_every_call():
    # a graph compiled once for a symbolic batch runs later batches without a new compile: each call's batch
    # is checked against the limit by the line through two replays
    from costmodel.analysis.memreplay import replay_memory

    m = nn.Sequential(nn.Linear(64, 4096), nn.ReLU(), nn.Linear(4096, 64)).eval()
    probe = costmodel.torch_backend(device="t4", inner="eager", predictor="analytic")
    torch._dynamo.reset()
    with torch.no_grad():
        torch.compile(m, backend=probe, dynamic=True)(torch.randn(2, 64))
    base = probe.estimates[0].memory_mb
    be = costmodel.torch_backend(device="t4", inner="eager", predictor="analytic", memory_limit_mb=base + 100)
    torch._dynamo.reset()
    f = torch.compile(m, backend=be, dynamic=True)
    seen = {}
    with torch.no_grad():
        for b in (2, 8, 64, 4096, 4096, 8192):
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                f(torch.randn(b, 64))
            seen.setdefault(b, []).append([x.message for x in w if isinstance(x.message, OOMWarning)])
    assert len(be.estimates) == 1  # one compile
    assert seen[2] == [[]] and seen[8] == [[]]
    assert len(seen[4096][0]) == 1 and seen[4096][1] == []  # warned once per batch
    text = str(seen[4096][0][0])
    assert "batch 4096" in text and f"{be.memory_limit_mb:,.0f} MB are available" in text
    # the line's memory is the replay's at that batch, within the allocator's segments
    replayed = replay_memory(m, "t4", batch=8192, input_shape=(64,)).memory_mb
    predicted = float(str(seen[8192][0][0]).split("predicted to need ")[1].split(" MB")[0].replace(",", ""))
    assert predicted == pytest.approx(replayed, rel=0.02)
