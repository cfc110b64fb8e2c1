"""The transformer predictors' batch API: a bad item is named."""

import pytest

from costmodel import InvalidInputError
from costmodel.features import llm_workload
from costmodel.predictors import TimelineLLMPredictor
from costmodel.predictors._llm_xgb import default_llm_predictor

TINY = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 4, "vocab_size": 128, "intermediate_size": 128, "max_position_embeddings": 512}


@pytest.fixture(scope="module")
def ok():
    return llm_workload("gpt2", batch=1, seq=128, mode="prefill", dtype="fp16")


@pytest.mark.parametrize("bad", ["gpt2", None, 3])
def test_xgb_names_an_item_that_is_no_workload(ok, bad):
    with pytest.raises(InvalidInputError, match=r"predict_many: item 1 is a .*not a workload"):
        default_llm_predictor().predict_many([ok, bad], "h200")


@pytest.mark.parametrize("bad", ["gpt2", "one"])
def test_xgb_refuses_a_lone_workload_or_a_name(ok, bad):
    with pytest.raises(InvalidInputError, match="predict_many takes a list of workloads"):
        default_llm_predictor().predict_many(ok if bad == "one" else bad, "h200")


def test_xgb_names_the_training_item(ok):
    step = llm_workload("gpt2", batch=1, seq=128, mode="training", dtype="fp16")
    with pytest.raises(InvalidInputError, match=r"item 2 \(gpt2, training\).*inference calls"):
        default_llm_predictor().predict_many([ok, ok, step], "h200")


def test_timeline_names_an_item_that_is_no_workload():
    w = llm_workload(TINY, batch=1, seq=16, mode="prefill", dtype="fp16")
    with pytest.raises(InvalidInputError, match=r"predict_many: item 1 is a str"):
        TimelineLLMPredictor().predict_many([w, "gpt2"], "h200")
