"""The train, pretrain and adapt commands: artifacts, and never the package unless asked."""

import pytest

from costmodel.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


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
    from costmodel.predictors import load_predictor
    from costmodel.predictors import GraphMAE

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


# ------------------------------------------- train / pretrain never write the package
def _package_snapshot() -> dict:
    """sha1 of every data file of the installed package (sources and bytecode aside)."""
    import hashlib
    from pathlib import Path

    import costmodel

    root = Path(costmodel.__file__).resolve().parent
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}


def test_train_and_pretrain_write_the_user_folder_not_the_package(capsys, tmp_path, monkeypatch):
    from costmodel.predictors import load_predictor

    home = tmp_path / "home"
    monkeypatch.setenv("COSTMODEL_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    before = _package_snapshot()
    code, out, _ = run(capsys, "pretrain", "--corpus", "4", "--epochs", "1", "--workers", "1")
    assert code == 0 and (home / "artifacts" / "gae" / "gae.safetensors").exists()
    assert str(home / "artifacts" / "gae") in out
    _small_data(tmp_path)
    code, out, _ = run(capsys, "train", "--data", str(tmp_path / "data"), "--epochs", "1")
    assert code == 0 and load_predictor(home / "artifacts" / "dippm").name == "dippm"
    # trappm picks up the encoder `costmodel pretrain` just wrote, not the shipped one
    code, out, _ = run(capsys, "train", "--predictor", "trappm", "--data", str(tmp_path / "data"), "--epochs", "1")
    assert code == 0
    mine = (home / "artifacts" / "gae" / "gae.safetensors").read_bytes()
    assert (home / "artifacts" / "trappm" / "gae.safetensors").read_bytes() == mine
    assert _package_snapshot() == before


def test_train_llm_writes_the_user_folder(capsys, tmp_path, monkeypatch):
    import costmodel.predictors as lp

    saved = []

    class Fake:
        def __init__(self, params=None, seed=0):
            self.meta = {"data_hash": "x"}

        def fit(self, ds):
            return self

        def save(self, path, extra=None):
            saved.append(path)

    monkeypatch.setattr(lp, "XGBLLMPredictor", Fake)
    monkeypatch.setenv("COSTMODEL_HOME", str(tmp_path / "home"))
    code, _, _ = run(capsys, "train", "--predictor", "llm-xgb")
    assert code == 0 and saved == [tmp_path / "home" / "artifacts" / "llm-xgb"]
    code, _, _ = run(capsys, "train", "--predictor", "llm-xgb", "--to-package")  # maintainers only
    assert code == 0 and saved[-1] == lp.artifact_dir("llm-xgb")


def test_help_names_the_default_output(capsys):
    for cmd in ("train", "pretrain"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "COSTMODEL_HOME" in text and "--to-package" in text and "never written" in text


@pytest.mark.parametrize("argv, flag", [
    (["--predictor", "timeline", "--lm", "x"], "--lm"),
    (["--predictor", "timeline-llm", "--lora-r", "4"], "--lora-r"),
    (["--predictor", "llm-xgb", "--backbone", "none"], "--backbone"),
    (["--predictor", "xgb-static", "--encoder", "x"], "--encoder"),
    (["--predictor", "dippm", "--encoder", "x"], "--encoder"),
    (["--predictor", "xgb-static", "--epochs", "3"], "--epochs"),
    (["--predictor", "llm-xgb", "--epochs", "3"], "--epochs"),
])
def test_train_refuses_a_flag_the_predictor_ignores(argv, flag, capsys, tmp_path, monkeypatch):
    import costmodel.training as tr

    monkeypatch.setattr(tr, "train", lambda *a, **k: pytest.fail("trained with an ignored flag"))
    code, _, err = run(capsys, "train", *argv, "-o", str(tmp_path / "x"))
    assert code == 2 and flag in err and "only applies to --predictor" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_adapt_refuses_a_file_output_before_fitting(capsys, tmp_path, monkeypatch):
    import costmodel.training as tr

    monkeypatch.setattr(tr, "adapt", lambda *a, **k: pytest.fail("fitted before the output was checked"))
    (tmp_path / "f").write_text("x")
    code, _, err = run(capsys, "adapt", "--device", "cpu", "--data", str(tmp_path), "-o", str(tmp_path / "f"))
    assert code == 2 and "existing file" in err and str(tmp_path / "f") in err
