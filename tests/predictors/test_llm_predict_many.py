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


def test_xgb_sweep_by_name_predicts_each_point_once(monkeypatch):
    """Workloads built from a model name each resolve their own (equal) spec; the sweep still predicts every
    shared point of their ladders once, as it does for workloads of one spec, with the same answers."""
    from costmodel.llm import resolve_llm

    p = default_llm_predictor()
    rows = []
    raw = type(p)._raw
    monkeypatch.setattr(p, "_raw", lambda flat, dev, costs=None: rows.append(len(flat)) or raw(p, flat, dev, costs))
    batches = (1, 2, 4, 8, 16)
    spec = resolve_llm("gpt2")
    shared = p.predict_many([llm_workload(spec, batch=b, seq=256, mode="prefill") for b in batches], "h200")
    by_name = p.predict_many([llm_workload("gpt2", batch=b, seq=256, mode="prefill") for b in batches], "h200")
    assert rows[1] == rows[0], rows
    assert (by_name == shared).all()
