"""The predict, graph and annotate commands: output and capture."""

import json

import pytest
import torch

from costmodel.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


R18 = "torchvision:resnet18"


def test_predict_table(capsys):
    code, out, err = run(capsys, "predict", "torchvision:resnet18", "--batch", "8", "--device", "h200")
    assert code == 0
    assert "latency" in out and "MIG profile" in out and "timeline" in out
    code, out, err = run(capsys, "predict", "torchvision:resnet18", "--batch", "8", "--device", "h200",
                         "--predictor", "analytic")
    assert code == 0 and "analytic" in out


def test_predict_json_keys(capsys):
    code, out, _ = run(capsys, "predict", "torchvision:resnet18", "--batch", "4", "--device", "H100-80GB",
                       "--mode", "training", "--dtype", "fp16", "--json")
    assert code == 0
    d = json.loads(out)
    for k in ("latency_ms", "memory_mb", "energy_j", "power_w", "mig_profile", "predictor"):
        assert k in d
    assert d["mode"] == "training" and d["dtype"] == "fp16" and d["batch"] == 4
    assert d["device"] == "H100-SXM5-80GB"


def test_graph_command(capsys):
    code, out, _ = run(capsys, "graph", "torchvision:resnet18", "--json")
    assert code == 0
    s = json.loads(out)
    assert s["op_kinds"]["conv"]["count"] == 20 and s["edges"] > s["nodes"] - 1
    code, out, _ = run(capsys, "graph", "torchvision:resnet18")
    assert "op kind" in out and "conv" in out


@pytest.fixture
def onnx_file(tmp_path):
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    p = tmp_path / "tiny.onnx"
    torch.onnx.export(m, (torch.randn(1, 3, 8, 8),), dynamo=True, optimize=False, verbose=False).save(str(p))
    return p


def test_predict_onnx(capsys, onnx_file):
    code, out, _ = run(capsys, "predict", str(onnx_file), "--batch", "1", "--device", "t4", "--json")
    assert code == 0 and json.loads(out)["device"] == "T4"


@pytest.mark.parametrize(
    "argv_tail,needle",
    [
        (["predict", "/nonexistent/model.onnx", "--batch", "1", "--device", "h100"], "no such file"),
        (["predict", "torchvision:resnet5O", "--batch", "1", "--device", "h100"], "Did you mean"),
        (["predict", "torchvision:resnet18", "--batch", "1", "--device", "h1000"], "known devices"),
    ],
)
def test_errors_are_one_line(capsys, argv_tail, needle):
    code, out, err = run(capsys, *argv_tail)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_bad_batch_is_usage_error(capsys):
    code, out, err = run(capsys, "predict", "torchvision:resnet18", "--batch", "0", "--device", "h100")
    assert code == 2 and out == ""
    # argparse's error, as one line: no usage block, the subcommand named
    assert err == ("costmodel: error: predict: argument --batch/-b: expected a positive integer, got 0 "
                   "(see 'costmodel predict --help')\n")


def test_not_onnx_and_truncated(capsys, tmp_path, onnx_file):
    txt = tmp_path / "notes.onnx"
    txt.write_text("this is not a model\n" * 10)
    code, _, err = run(capsys, "predict", str(txt), "--batch", "1", "--device", "h100")
    assert code == 2 and "Traceback" not in err
    cut = tmp_path / "cut.onnx"
    data = onnx_file.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    code, _, err = run(capsys, "predict", str(cut), "--batch", "1", "--device", "h100")
    assert code == 2 and "Traceback" not in err


def test_dynamic_dims_need_shape(capsys, tmp_path):
    import onnx

    m = torch.nn.Sequential(torch.nn.Linear(16, 4)).eval()
    p = tmp_path / "dyn.onnx"
    torch.onnx.export(m, (torch.randn(2, 16),), dynamo=True, optimize=False, verbose=False,
                      dynamic_shapes=({0: torch.export.Dim("batch")},)).save(str(p))
    assert onnx.load(str(p)).graph.input[0].type.tensor_type.shape.dim[0].dim_param
    code, _, err = run(capsys, "graph", str(p))
    # `graph` without --batch: the dynamic batch dim has no value
    assert code == 2 and "batch" in err and "Traceback" not in err
    code, out, err = run(capsys, "graph", str(p), "--batch", "2", "--json")
    assert code == 0 and json.loads(out)["batch"] == 2
    code, out, err = run(capsys, "predict", str(p), "--batch", "3", "--device", "h100", "--json")
    assert code == 0 and json.loads(out)["batch"] == 3


# ------------------------------------------------------------------ --method
def test_predict_method_trace_is_used(capsys, monkeypatch):
    import costmodel
    import costmodel.frontends as fe

    seen = []
    real = fe.zoo_graph

    def spy(*args, **kwargs):
        seen.append(kwargs.get("method"))
        return real(*args, **kwargs)

    monkeypatch.setattr(fe, "zoo_graph", spy)
    code, out, _ = run(capsys, "predict", R18, "--batch", "1", "--device", "h100", "--method", "trace", "--json")
    assert code == 0 and seen == ["trace"]
    got = json.loads(out)
    traced = costmodel.estimate(costmodel.to_graph(R18, batch=1, method="trace"), batch=1, device="h100")
    exported = costmodel.estimate(R18, batch=1, device="h100")
    assert got["latency_ms"] == pytest.approx(traced.latency_ms)
    # the two captures differ (the trace keeps more nodes), and so do their estimates
    assert traced.latency_ms != pytest.approx(exported.latency_ms, rel=1e-9)
    # memory comes from the module's own allocation trace whichever way the graph was captured; a
    # graph alone (what the CLI once passed on) only has the liveness walk
    assert got["details"]["memory"]["path"] == "replay" and traced.details["memory"]["path"] != "replay"
    assert got["memory_mb"] == pytest.approx(exported.memory_mb)
    api = costmodel.estimate(R18, batch=1, device="h100", method="trace")
    assert api.latency_ms == pytest.approx(traced.latency_ms) and api.memory_mb == pytest.approx(exported.memory_mb)
    with pytest.raises(costmodel.InvalidInputError, match="one of export, trace, got 'jit'"):
        costmodel.estimate(R18, batch=1, device="h100", method="jit")
    seen.clear()
    code, out, _ = run(capsys, "graph", R18, "--method", "trace", "--json")
    assert code == 0 and seen == ["trace"]
    code, out2, _ = run(capsys, "graph", R18, "--json")
    assert json.loads(out)["nodes"] != json.loads(out2)["nodes"]


def test_predict_and_graph_under_autocast(capsys):
    code, out, _ = run(capsys, "predict", R18, "--batch", "4", "--device", "h200", "--mode", "training",
                       "--method", "trace", "--autocast", "bf16", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["details"]["autocast"] == "bf16" and d["dtype"] == "fp32"
    code, out, _ = run(capsys, "graph", R18, "--method", "trace", "--autocast", "fp16")
    assert code == 0 and "fp32, autocast fp16" in out
    # the casts autocast adds are in the graph: the image and each weight of the 20 convolutions and the fc
    code, out, _ = run(capsys, "graph", R18, "--method", "trace", "--autocast", "fp16", "--json")
    amp_copies = json.loads(out)["op_kinds"]["copy"]["count"]
    code, out, _ = run(capsys, "graph", R18, "--method", "trace", "--json")
    assert amp_copies - json.loads(out)["op_kinds"]["copy"]["count"] == 23
    code, _, err = run(capsys, "predict", R18, "--batch", "1", "--device", "h200", "--autocast", "fp8")
    assert code != 0 and "fp8" in err and "fp16" in err and "bf16" in err
    code, _, err = run(capsys, "predict", R18, "--batch", "1", "--device", "h200", "--dtype", "fp16",
                       "--autocast", "fp16")
    assert code != 0 and "casts the whole model" in err


def test_predict_with_frozen_parameters(capsys, tmp_path):
    code, out, _ = run(capsys, "predict", R18, "--batch", "4", "--device", "h200", "--mode", "training",
                       "--method", "trace", "--json")
    full = json.loads(out)
    code, out, _ = run(capsys, "predict", R18, "--batch", "4", "--device", "h200", "--mode", "training",
                       "--method", "trace", "--trainable", "layer4,fc", "--json")
    assert code == 0
    part = json.loads(out)
    assert part["latency_ms"] < full["latency_ms"] and part["memory_mb"] < full["memory_mb"]
    assert any("parameters are frozen" in a for a in part["assumptions"])
    code, out, _ = run(capsys, "predict", R18, "--batch", "4", "--device", "h200", "--mode", "training",
                       "--method", "trace", "--trainable", "head", "--json")
    assert json.loads(out)["latency_ms"] < part["latency_ms"]
    code, _, err = run(capsys, "predict", R18, "--batch", "4", "--device", "h200", "--mode", "training",
                       "--trainable", "layer9")
    assert code == 2 and "['layer9'] match no parameter" in err and "layer4" in err
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"")
    code, _, err = run(capsys, "predict", str(onnx), "--batch", "1", "--device", "h200", "--trainable", "head")
    assert code == 2 and "--trainable applies to PyTorch models" in err
