"""An estimate by a trained artifact given by its folder names that folder."""

import shutil

import torch

import costmodel
from costmodel.predictors import ARTIFACTS_DIR


def _model():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(8 * 14 * 14, 10))


def test_an_estimate_names_the_artifact_folder_that_answered(tmp_path):
    mine = tmp_path / "my-xgb"
    shutil.copytree(ARTIFACTS_DIR / "xgb-static", mine)
    kw = dict(batch=2, input_shape=(3, 16, 16), device="h200")
    by_path = costmodel.estimate(_model(), predictor=str(mine), **kw)
    shipped = costmodel.estimate(_model(), predictor="xgb-static", **kw)
    assert by_path.predictor == shipped.predictor == "xgb-static"
    assert by_path.details["artifact"] == str(mine.resolve())
    assert f"artifact {mine.resolve()}" in by_path.table()
    assert by_path.to_dict()["details"]["artifact"] == str(mine.resolve())
    assert "artifact" not in shipped.details and "artifact" not in shipped.table()
