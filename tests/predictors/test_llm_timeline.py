"""Transformer workloads through the timeline (``estimate_llm``'s default) and the predictor choice."""

import json

import pytest

import costmodel
from costmodel import InvalidInputError
from costmodel.devices import get_device
from costmodel.measure.host import calibrate
from costmodel.predictors import TimelineLLMPredictor, get_llm_predictor, get_predictor
from costmodel.predictors._llm_timeline import shipped_timeline_llm

#: a two-layer decoder: its graph and its allocation trace build in a second
TINY = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 4, "vocab_size": 128, "intermediate_size": 128, "max_position_embeddings": 512}


@pytest.fixture(scope="module")
def prefill():
    return costmodel.estimate_llm(TINY, batch=4, seq=64, device="h200", dtype="fp16")


def test_the_default_is_the_timeline_over_the_workloads_graph(prefill):
    e = prefill
    assert e.predictor == "llm-timeline" and e.mode == "prefill"
    # the same graph through the shipped timeline-llm gives the same latency and per-call energy
    p = TimelineLLMPredictor()
    from costmodel.features import llm_workload

    g = p.graph(llm_workload(TINY, batch=4, seq=64, mode="prefill", dtype="fp16"))
    assert g.meta["dtype"] == "fp16" and g.meta.get("phase") != "decode"
    ref = shipped_timeline_llm().predict(g, "h200", mode="inference")
    assert e.latency_ms == pytest.approx(ref.latency_ms, rel=1e-12)
    assert e.energy_j_per_call == pytest.approx(ref.energy_j, rel=1e-9)
    # per sample, per call, throughput and tokens follow from the one latency
    assert e.energy_j == pytest.approx(e.energy_j_per_call / 4)
    assert e.throughput_samples_s == pytest.approx(4 / (e.latency_ms / 1e3))
    assert e.tokens_s == pytest.approx(4 * 64 / (e.latency_ms / 1e3))
    assert e.details["ops"]["top"] and e.details["graph"]["kernels"] == g.num_kernels


def test_memory_comes_from_the_replay_and_says_so(prefill):
    from costmodel.analysis.memreplay import replay_memory

    m = replay_memory(TINY, "h200", batch=4, seq=64, phase="prefill", dtype="fp16")
    assert prefill.memory_mb == pytest.approx(m.memory_mb)
    assert prefill.details["memory"]["path"] == "replay"
    assert prefill.allocated_mb == pytest.approx(m.allocated_mb) and prefill.reserved_mb == pytest.approx(m.reserved_mb)
    assert not any(a.startswith("memory from the analytic liveness model") for a in prefill.assumptions)
    d = json.loads(prefill.to_json())
    assert d["allocated_mb"] == pytest.approx(m.allocated_mb) and d["predictor"].startswith("llm-timeline 1")
    assert "(allocated" in prefill.table()
    # the MIG pick holds the replayed memory
    mig = [p for p in get_device("h200").mig_profiles if p.name == prefill.mig_profile][0]
    assert mig.memory_mb >= prefill.memory_mb


def test_a_decode_step_has_its_kv_cache_graph_and_the_loop_cost():
    tl = shipped_timeline_llm()
    d = costmodel.estimate_llm(TINY, batch=4, seq=64, device="h200", dtype="fp16", mode="decode")
    p = costmodel.estimate_llm(TINY, batch=4, seq=64, device="h200", dtype="fp16", mode="prefill")
    assert d.mode == "decode" and d.tokens_s == pytest.approx(d.throughput_samples_s)  # one token per sequence
    # the shipped timeline-llm was fitted with decode rows: it carries the decode loop's host cost
    step = tl.params.decode_step_us
    assert step is not None and tl.params.trained_on["decode_rows"] > 0
    assert d.details["ops"]["decode_step_ms"] == pytest.approx(step / 1e3)
    assert d.latency_ms > p.latency_ms  # one token, but the decode loop's host cost
    assert not any("lower bound" in a for a in d.assumptions)
    assert d.details["memory"]["path"] == "replay"
    # the graph-only timeline (vision rows) has no such cost and says its decode latency is a lower bound
    v = TimelineLLMPredictor(get_predictor("timeline")).predict(TINY, batch=4, seq=64, dtype="fp16", mode="decode")
    assert v.details["ops"]["decode_step_ms"] == 0.0 and any("lower bound" in a for a in v.assumptions)


def test_a_cpu_goes_to_the_cpu_operator_model():
    e = costmodel.estimate_llm(TINY, batch=2, seq=32, device="cpu", dtype="fp32", mode="prefill")
    assert e.predictor == "llm-timeline" and e.details["ops"]["bound"] == "serial"
    assert any(a.startswith("CPU operator model trained on") for a in e.assumptions)


def test_a_missing_artifact_says_how_to_build_it(tmp_path, monkeypatch):
    from costmodel.predictors import _artifacts

    monkeypatch.setattr(_artifacts, "ARTIFACTS_DIR", tmp_path)
    with pytest.raises(costmodel.ModelLoadError, match="costmodel train --predictor timeline-llm"):
        shipped_timeline_llm()
    # a fitted timeline given by path answers without the shipped one
    p = TimelineLLMPredictor(str(_artifacts.Path(__file__).resolve().parents[2] / "costmodel" / "artifacts"
                                 / "timeline-llm"))
    assert p.predict(TINY, batch=1, seq=8).predictor == "llm-timeline"


def test_the_fast_predictor_and_quantized_dtypes():
    x = costmodel.estimate_llm(TINY, batch=4, seq=64, device="h200", dtype="fp16", predictor="llm-xgb")
    assert x.predictor == "llm-xgb" and "memory" not in x.details
    q = costmodel.estimate_llm(TINY, batch=4, seq=64, device="h200", dtype="int8")
    assert q.predictor == "llm-xgb"
    assert any(a.startswith("int8: answered by the llm-xgb predictor") for a in q.assumptions)


def test_a_bad_predictor_name_lists_the_choices():
    with pytest.raises(InvalidInputError, match="'xgb'.*timeline, llm-xgb"):
        costmodel.estimate_llm(TINY, batch=1, seq=8, predictor="xgb")
    assert get_llm_predictor(None).name == "llm-timeline"
    assert get_llm_predictor("LLM-XGB").name == "llm-xgb"


def test_a_host_profile_moves_the_host_lane_only_for_the_timeline(tmp_path):
    prof = calibrate(budget_s=0.5, device="cpu")
    path = prof.save(tmp_path / "host.json")
    base = costmodel.estimate_llm(TINY, batch=1, seq=16, device="h200", dtype="fp16")
    with_host = costmodel.estimate_llm(TINY, batch=1, seq=16, device="h200", dtype="fp16", host=path)
    assert with_host.latency_ms != base.latency_ms
    assert any(a.startswith("host lane from the host profile of") for a in with_host.assumptions)
    x = costmodel.estimate_llm(TINY, batch=1, seq=16, device="h200", dtype="fp16", host=path, predictor="llm-xgb")
    assert x.assumptions[0].startswith("host profile ignored: the llm-xgb predictor has no host lane")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    for name in ("timeline", "llm-xgb"):
        with pytest.raises(costmodel.ArtifactError, match="bad.json"):
            costmodel.estimate_llm(TINY, batch=1, seq=16, host=bad, predictor=name)


def test_cli_llm_takes_the_predictor(capsys):
    from costmodel.cli import main

    assert main(["llm", "gpt2", "--batch", "2", "--seq", "32", "--predictor", "llm-xgb", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["predictor"].startswith("llm-xgb 1") and d["mode"] == "prefill"
    assert main(["llm", "gpt2", "--batch", "2", "--seq", "32", "--predictor", "nope"]) == 2
    err = capsys.readouterr().err  # a name that is neither predictor nor a folder: the choices are named
    assert "unknown transformer predictor 'nope'" in err and "timeline, llm-xgb" in err
