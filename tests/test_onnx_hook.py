"""ONNX export hook: estimates stored in metadata_props, read back, shown by the CLI."""

import json

import onnx
import pytest
import torch
from torch import nn

import costmodel.onnx as conx
from costmodel import InvalidInputError, ModelLoadError
from costmodel.cli import main


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "net.onnx"
    est = conx.export(Net().eval(), (torch.randn(4, 3, 32, 32),), path, device="h100", predictor="analytic",
                      dynamo=False)
    return path, est


def test_export_writes_estimates(exported):
    path, est = exported
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert float(props["costmodel.latency_ms"]) == pytest.approx(est.latency_ms)
    assert props["costmodel.device"] == "H100-SXM5-80GB" and props["costmodel.batch"] == "4"
    assert json.loads(props["costmodel.estimate"])["memory_mb"] == pytest.approx(est.memory_mb)
    assert est.batch == 4 and est.predictor == "analytic"


def test_annotations_per_device_and_copy(exported, tmp_path):
    path, est = exported
    copy = tmp_path / "copy.onnx"
    e2 = conx.annotate(path, device="a100-40gb", predictor="analytic", output=copy)
    ann = conx.read_annotations(copy)
    assert set(ann) == {"H100-SXM5-80GB", "A100-SXM4-40GB"}
    assert ann["A100-SXM4-40GB"]["latency_ms"] == pytest.approx(e2.latency_ms)
    assert set(conx.read_annotations(path)) == {"H100-SXM5-80GB"}  # the original is untouched
    # the annotated file is still a valid model
    onnx.checker.check_model(onnx.load(str(copy)))


def test_cli_annotate_and_show(exported, tmp_path, capsys):
    path, _ = exported
    out = tmp_path / "a.onnx"
    assert main(["annotate", str(path), "--device", "l4", "--predictor", "analytic", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["annotate", str(out), "--show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "L4" in shown and "H100-SXM5-80GB" in shown
    assert main(["annotate", str(tmp_path / "missing.onnx"), "--show"]) == 2
    assert "no such ONNX file" in capsys.readouterr().err


def test_errors():
    with pytest.raises(InvalidInputError, match="batched example tensor"):
        conx.export(Net(), (3,), "/tmp/never.onnx")
    with pytest.raises(ModelLoadError, match="no such ONNX file"):
        conx.annotate("/nonexistent/model.onnx")
