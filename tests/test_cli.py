"""The command line: output contract and clean failures (no tracebacks)."""

import json

import pytest
import torch

from costmodel.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_table(capsys):
    code, out, err = run(capsys, "predict", "torchvision:resnet18", "--batch", "8", "--device", "h200")
    assert code == 0
    assert "latency" in out and "MIG profile" in out and "trappm" in out
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


def test_devices(capsys):
    code, out, _ = run(capsys, "devices")
    assert code == 0 and "H200-SXM5-141GB" in out and "1g.18gb" in out
    code, out, _ = run(capsys, "devices", "--json")
    assert {d["name"] for d in json.loads(out)} >= {"A100-SXM4-40GB", "T4", "L4", "cpu"}


def test_help_has_examples(capsys):
    for cmd in ("predict", "graph", "devices"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        assert "examples:" in capsys.readouterr().out


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
    with pytest.raises(SystemExit) as e:
        main(["predict", "torchvision:resnet18", "--batch", "0", "--device", "h100"])
    assert e.value.code == 2
    assert "positive integer" in capsys.readouterr().err


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


def _small_data(tmp_path) -> list[str]:
    """A small measurement folder in the data's layout; returns its rows."""
    import shutil

    from costmodel.datasets import default_root

    src = default_root() / "h200"
    (tmp_path / "data" / "h200").mkdir(parents=True)
    shutil.copy(src / "hardware.json", tmp_path / "data" / "h200")
    lines = [ln for ln in (src / "vision.jsonl").read_text().splitlines()
             if '"resnet18"' in ln or '"squeezenet1_1"' in ln or '"mnasnet0_5"' in ln]
    (tmp_path / "data" / "h200" / "vision.jsonl").write_text("\n".join(lines) + "\n")
    return lines


def test_pretrain_then_train_trappm(capsys, tmp_path):
    from costmodel.predictors import load_predictor

    code, out, _ = run(capsys, "pretrain", "--corpus", "4", "--epochs", "1", "--workers", "1",
                       "-o", str(tmp_path / "gae"))
    assert code == 0 and "held-out edge AUC" in out
    assert (tmp_path / "gae" / "gae.safetensors").exists()
    lines = _small_data(tmp_path)
    code, out, _ = run(capsys, "train", "--predictor", "trappm", "--encoder", str(tmp_path / "gae"),
                       "--data", str(tmp_path / "data"), "--epochs", "2", "-o", str(tmp_path / "t"))
    assert code == 0 and "saved" in out
    p = load_predictor(tmp_path / "t")
    assert p.name == "trappm" and p.meta["trained_rows"] == len(lines)
    # no encoder: one clean line, exit 2
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "train", "--predictor", "trappm", "--encoder", str(tmp_path / "empty"),
                       "--data", str(tmp_path / "data"), "-o", str(tmp_path / "t2"))
    assert code == 2 and "costmodel pretrain" in err and "Traceback" not in err


def test_pretrain_graphmae_then_train_gnn_llm(capsys, tmp_path):
    pytest.importorskip("peft")
    from costmodel.predictors import load_predictor
    from costmodel.predictors._graphmae import GraphMAE

    code, out, _ = run(capsys, "pretrain", "--method", "graphmae", "--corpus", "4", "--epochs", "1",
                       "--workers", "1", "-o", str(tmp_path / "mae"))
    assert code == 0 and "masked-feature SCE" in out
    mae = GraphMAE.load(tmp_path / "mae")
    assert mae.history["corpus"] == 4 and mae.config.hidden == 128
    lines = _small_data(tmp_path)
    code, out, _ = run(capsys, "train", "--predictor", "gnn-llm", "--encoder", str(tmp_path / "mae"),
                       "--data", str(tmp_path / "data"), "--epochs", "1", "--summary-epochs", "1",
                       "--lora-r", "4", "-o", str(tmp_path / "g"))
    assert code == 0 and "saved" in out
    p = load_predictor(tmp_path / "g")
    assert p.name == "gnn-llm" and p.config.lora_r == 4 and p.config.gnn_hidden == 128
    assert p.meta["trained_rows"] == len(lines) and p.meta["pretrained_encoder"]
    assert len(p.meta["summary_loss"]) == 1 and p.intervals["calibration_rows"] >= 5
    # gnn-llm flags on another predictor, and a missing encoder: one clean line, exit 2
    code, _, err = run(capsys, "train", "--predictor", "dippm", "--lm", str(tmp_path), "-o", str(tmp_path / "x"))
    assert code == 2 and "--lm" in err and "gnn-llm" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "train", "--predictor", "gnn-llm", "--encoder", str(tmp_path / "empty"),
                       "--data", str(tmp_path / "data"), "-o", str(tmp_path / "x"))
    assert code == 2 and "pretrain --method graphmae" in err and "Traceback" not in err
