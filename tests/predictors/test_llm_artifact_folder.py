"""A transformer predictor trained with ``-o`` answers ``costmodel llm --predictor DIR`` and
``estimate_llm(predictor=DIR)``, and the estimate names the folder."""

import shutil

import pytest

import costmodel
from costmodel._errors import ArtifactError, InvalidInputError
from costmodel.cli import main
from costmodel.predictors import ARTIFACTS_DIR, TimelineLLMPredictor, get_llm_predictor
from costmodel.predictors._llm_xgb import XGBLLMPredictor

SHIPPED = ARTIFACTS_DIR


@pytest.mark.parametrize("which,cls", [("timeline-llm", TimelineLLMPredictor), ("llm-xgb", XGBLLMPredictor)])
def test_a_trained_folder_is_a_transformer_predictor(tmp_path, which, cls):
    folder = tmp_path / "mine"
    shutil.copytree(SHIPPED / which, folder)
    pred = get_llm_predictor(str(folder))
    assert isinstance(pred, cls) and pred.artifact == str(folder.resolve())
    est = costmodel.estimate_llm("gpt2", batch=1, seq=64, device="h200", mode="prefill", predictor=str(folder))
    same = costmodel.estimate_llm("gpt2", batch=1, seq=64, device="h200", mode="prefill",
                                  predictor="timeline" if which == "timeline-llm" else "llm-xgb")
    assert est.latency_ms == pytest.approx(same.latency_ms)
    assert est.details["artifact"] == str(folder.resolve()) and "artifact" not in same.details
    assert f"artifact {folder.resolve()}" in est.table()


def test_a_folder_that_is_no_transformer_predictor_is_refused(tmp_path, capsys):
    graph_only = tmp_path / "xgb"
    shutil.copytree(SHIPPED / "xgb-static", graph_only)
    with pytest.raises(ArtifactError, match="xgb-static.*timeline-llm"):
        get_llm_predictor(str(graph_only))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="config.json"):
        get_llm_predictor(str(tmp_path / "empty"))
    with pytest.raises(InvalidInputError, match="unknown transformer predictor 'nope'.*artifact's folder"):
        get_llm_predictor("nope")
    assert main(["llm", "gpt2", "--batch", "1", "--seq", "64", "--mode", "prefill", "--device", "h200",
                 "--predictor", str(graph_only)]) != 0
    assert "xgb-static" in capsys.readouterr().err
