"""Where trained artifacts go: the user's data folder, an explicit folder or (maintainers) the package."""

from pathlib import Path

import pytest

from costmodel import InvalidInputError
from costmodel.training import artifact_dir, pretrained_dir, user_data_dir


def test_default_artifact_folder(monkeypatch, tmp_path):
    from costmodel.predictors import ARTIFACTS_DIR as _ARTIFACTS

    monkeypatch.delenv("COSTMODEL_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert user_data_dir() == tmp_path / "xdg" / "costmodel"
    monkeypatch.setenv("COSTMODEL_HOME", str(tmp_path / "h"))
    assert artifact_dir("dippm") == tmp_path / "h" / "artifacts" / "dippm"
    assert artifact_dir("dippm", to_package=True) == _ARTIFACTS / "dippm"
    assert artifact_dir("dippm", output="x") == Path("x")


def test_output_and_to_package_conflict():
    with pytest.raises(InvalidInputError, match="not both"):
        artifact_dir("dippm", output="x", to_package=True)


def test_pretrained_dir_prefers_the_users_encoder(monkeypatch, tmp_path):
    from costmodel.predictors import ARTIFACTS_DIR as _ARTIFACTS

    monkeypatch.setenv("COSTMODEL_HOME", str(tmp_path))
    # the shipped encoder is the one inside the TraPPM artifact
    assert pretrained_dir("gae", "gae.json", shipped="trappm") == _ARTIFACTS / "trappm"
    assert (_ARTIFACTS / "trappm" / "gae.json").exists()
    (tmp_path / "artifacts" / "gae").mkdir(parents=True)
    (tmp_path / "artifacts" / "gae" / "gae.json").write_text("{}")
    assert pretrained_dir("gae", "gae.json", shipped="trappm") == tmp_path / "artifacts" / "gae"


def test_an_output_that_is_a_file_is_refused_before_the_work(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidInputError, match="is an existing file"):
        artifact_dir("dippm", output=tmp_path / "f")
    with pytest.raises(InvalidInputError, match="which is a file"):
        artifact_dir("dippm", output=tmp_path / "f" / "sub")
    assert artifact_dir("dippm", output=tmp_path / "new") == tmp_path / "new"


def test_train_refuses_a_file_output_before_loading_any_row(tmp_path, monkeypatch):
    import costmodel.datasets as ds
    from costmodel.training import train

    def no_rows(*a, **k):  # the check must come before the rows are read and featurized
        raise AssertionError("rows read before the output was checked")

    monkeypatch.setattr(ds.PerfDataset, "load", classmethod(lambda cls, *a, **k: no_rows()))
    (tmp_path / "f").write_text("x")
    for name in ("xgb-static", "timeline", "llm-xgb"):
        with pytest.raises(InvalidInputError, match="existing file"):
            train(name, output=tmp_path / "f")
    assert (tmp_path / "f").read_text() == "x"
