"""A host profile (``costmodel calibrate``'s) reaches the timeline through every compiler hook: the
``torch.compile`` backend, the Relax pass and ``relax.build`` wrapper, and the ONNX export and annotate
calls (and ``costmodel annotate --host``)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

import costmodel
import costmodel.onnx as conx
from costmodel.cli import main
from costmodel.measure.host import OP_CLASSES, HostProfile


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def slow_host(tmp_path_factory):
    """A host that dispatches every operator in 400 us: at batch 1 the call is all host."""
    prof = HostProfile(dispatch_us={c: 400.0 for c in ("default", *OP_CLASSES)}, module_call_us=40.0,
                       synchronous=False, kernel_us=5.0, sync_us=20.0, host={"hostname": "slowbox"}, source="test",
                       library_version=costmodel.__version__)
    return prof.save(tmp_path_factory.mktemp("host") / "slow.json")


def _compile(m, x, backend):
    torch._dynamo.reset()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.compile(m, backend=backend)(x)
    return backend.estimates[0]


def test_the_compile_backend_takes_a_host_profile(slow_host, tmp_path):
    m, x = Net().eval(), torch.randn(1, 3, 16, 16)
    plain = _compile(m, x, costmodel.torch_backend(device="h200", inner="eager", predictor="timeline"))
    slow = _compile(m, x, costmodel.torch_backend(device="h200", inner="eager", predictor="timeline", host=slow_host))
    assert slow.latency_ms > 3 * plain.latency_ms  # a few operators at 400 us each, against ~20 us
    assert any("slowbox" in a for a in slow.assumptions)
    ignored = _compile(m, x, costmodel.torch_backend(device="h200", inner="eager", predictor="analytic",
                                                     host=slow_host))
    assert any("host profile ignored" in a for a in ignored.assumptions)
    with pytest.raises(costmodel.ArtifactError, match="nope.json"):  # at creation, not inside a compile
        costmodel.torch_backend(device="h200", host=tmp_path / "nope.json")


def test_the_relax_pass_and_build_take_a_host_profile(slow_host, tmp_path):
    tvm_passes = pytest.importorskip("tvm_passes")
    pytest.importorskip("tvm")
    from tvm.relax.frontend.torch import from_exported_program

    with torch.no_grad():
        ep = torch.export.export(Net().eval(), (torch.randn(1, 3, 16, 16),))
    mod = from_exported_program(ep, keep_params_as_input=True)
    plain = tvm_passes.read_annotations(tvm_passes.AnnotatePerformance(device="h200", predictor="timeline")(mod))
    pss = tvm_passes.AnnotatePerformance(device="h200", predictor="timeline", host=slow_host)
    slow = tvm_passes.read_annotations(pss(mod))
    assert slow["perf.latency_ms"] > 3 * plain["perf.latency_ms"]
    assert any("slowbox" in a for a in pss.estimates["main"].assumptions)
    est = tvm_passes.estimate_module(mod, device="h200", predictor="timeline", host=slow_host)
    assert est.latency_ms == pytest.approx(slow["perf.latency_ms"])
    with pytest.raises(costmodel.ArtifactError, match="nope.json"):
        tvm_passes.AnnotatePerformance(device="h200", host=tmp_path / "nope.json")


def test_onnx_export_and_annotate_take_a_host_profile(slow_host, tmp_path, capsys):
    m, x = Net().eval(), torch.randn(1, 3, 16, 16)
    plain = conx.export(m, (x,), tmp_path / "plain.onnx", device="h200", predictor="timeline")
    slow = conx.export(m, (x,), tmp_path / "slow.onnx", device="h200", predictor="timeline", host=slow_host)
    assert slow.latency_ms > 3 * plain.latency_ms
    stored = conx.read_annotations(tmp_path / "slow.onnx")
    assert stored[slow.device]["latency_ms"] == pytest.approx(slow.latency_ms)
    # a bad profile fails before anything is exported
    with pytest.raises(costmodel.ArtifactError, match="nope.json"):
        conx.export(m, (x,), tmp_path / "never.onnx", device="h200", host=tmp_path / "nope.json")
    assert not (tmp_path / "never.onnx").exists()
    # the CLI: costmodel annotate --host
    capsys.readouterr()  # what torch.onnx.export printed
    assert main(["annotate", str(tmp_path / "plain.onnx"), "--device", "h200", "--predictor", "timeline",
                 "--host", str(slow_host), "-o", str(tmp_path / "cli.onnx"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["latency_ms"] == pytest.approx(slow.latency_ms, rel=1e-6)


def test_the_cost_of_a_job_takes_a_host_profile(slow_host, tmp_path, capsys):
    from costmodel.economics import inference_cost, job_cost

    m = Net().eval()
    kw = dict(device="h200", batch=1, mode="inference", steps=1000, input_shape=(3, 16, 16), predictor="timeline")
    plain, slow = job_cost(m, **kw), job_cost(m, host=slow_host, **kw)
    est = costmodel.estimate(m, batch=1, input_shape=(3, 16, 16), device="h200", predictor="timeline", host=slow_host)
    assert slow.step_latency_ms == pytest.approx(est.latency_ms) and slow.step_latency_ms > 3 * plain.step_latency_ms
    assert slow.hours == pytest.approx(1000 * est.latency_ms / 3.6e6)
    graphed = inference_cost(m, device="h200", batch=1, samples=1000, input_shape=(3, 16, 16), predictor="timeline",
                             host=slow_host, cuda_graphs=True)
    assert graphed.step_latency_ms < slow.step_latency_ms  # a replayed graph leaves the slow host out
    with pytest.raises(costmodel.ArtifactError, match="nope.json"):
        job_cost(m, host=tmp_path / "nope.json", **kw)
    # the CLI: costmodel cost --host, on a zoo model
    args = ["cost", "torchvision:resnet18", "--device", "h200", "--batch", "1", "--mode", "inference",
            "--steps", "10", "--predictor", "timeline", "--json"]
    assert main(args) == 0
    base = json.loads(capsys.readouterr().out)["step_latency_ms"]
    assert main([*args, "--host", str(slow_host)]) == 0
    assert json.loads(capsys.readouterr().out)["step_latency_ms"] > 2 * base
