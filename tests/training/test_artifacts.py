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
