"""The transformer XGBoost predictor: fit, artifacts, predictions, the CLI."""

import json

import numpy as np
import pytest

from costmodel import ModelLoadError, SchemaMismatchError
from costmodel.datasets import PerfDataset
from costmodel.devices import get_device
from costmodel.features import llm_feature_names
from costmodel.predictors import LLM_TARGETS, XGBLLMPredictor, workload_of_row
from costmodel.devices import HARDWARE_FEATURE_NAMES

H200 = get_device("h200")


@pytest.fixture(scope="module")
def llm_rows():
    ds = PerfDataset.load(kinds=("llm",))
    keep = [r for r in ds.rows if r.model in ("gpt2", "bert-base-uncased", "distilbert-base-uncased")]
    return PerfDataset(keep)


def test_predictor_fit_roundtrip_and_estimate(llm_rows, tmp_path):
    p = XGBLLMPredictor({"n_estimators": 30}).fit(llm_rows)
    assert p.meta["trained_rows"] == len(llm_rows) and p.meta["devices"] == ["NVIDIA H200"]
    e = p.predict("gpt2", batch=8, seq=128, device="h200", dtype="fp16", region="eu-north-1")
    assert e.throughput_samples_s == pytest.approx(8 / (e.latency_ms / 1e3))
    assert e.tokens_s == pytest.approx(8 * 128 / (e.latency_ms / 1e3))
    assert e.energy_j == pytest.approx(e.power_w * e.latency_ms / 1e3 / 8)
    assert e.carbon_g == pytest.approx(e.energy_j / 3.6e6 * e.carbon_intensity_g_per_kwh)
    assert e.cost_per_1k_samples_usd == pytest.approx(1000 / e.throughput_samples_s / 3600 * e.price_per_gpu_hour_usd)
    assert not e.extrapolated_device and e.fits_device and e.mode == "prefill"
    other = p.predict("gpt2", batch=8, seq=128, device="a100-80gb", price_per_gpu_hour_usd=2.0)
    assert other.extrapolated_device and other.price_per_gpu_hour_usd == 2.0
    # save -> load gives the same numbers; the artifact is JSON only
    p.save(tmp_path / "m")
    assert sorted(f.name for f in (tmp_path / "m").iterdir()) == ["config.json"] + [f"{t}.json" for t in LLM_TARGETS]
    q = XGBLLMPredictor.load(tmp_path / "m")
    assert q.predict("gpt2", batch=8, seq=128, region="eu-north-1").to_dict() == e.to_dict()
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["schema"]["features"] = cfg["schema"]["features"][:-1]
    cfg["schema"]["fingerprint"] = "0" * 16
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SchemaMismatchError, match="Retrain"):
        XGBLLMPredictor.load(tmp_path / "m")
    with pytest.raises(ModelLoadError, match="config.json missing"):
        XGBLLMPredictor.load(tmp_path)


def test_predictions_follow_the_rows(llm_rows):
    # trained on these rows, the model reproduces them closely (a check that cannot pass by chance)
    p = XGBLLMPredictor({"n_estimators": 200}).fit(llm_rows)
    ws = [workload_of_row(r) for r in llm_rows]
    pred = p.predict_many(ws, "h200")
    lat = np.asarray([r.latency_ms for r in llm_rows])
    assert np.median(np.abs(pred[:, 0] / lat - 1)) < 0.05


def test_shipped_artifact_and_cli(capsys):
    from costmodel.cli import main

    assert main(["llm", "llama-2-7b", "--batch", "4", "--seq", "512", "--device", "h200", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    for k in ("throughput_samples_s", "tokens_s", "memory_mb", "energy_j", "carbon_g", "latency_ms",
              "cost_per_1k_samples_usd", "mig_profile", "predictor"):
        assert k in d
    assert d["mode"] == "prefill" and d["params"] == 6738415616 and d["memory_mb"] > 12800  # fp16 weights alone
    assert main(["llm", "bert-base", "--batch", "8", "--seq", "128", "--region", "france", "--price", "2.5"]) == 0
    out = capsys.readouterr().out
    assert "carbon" in out and "$2.5/GPU-hour" in out
    assert main(["llm", "--list"]) == 0
    listed = {line.split()[0]: line.split()[-1] for line in capsys.readouterr().out.splitlines()}
    assert listed["llama-2-70b"] == "decoder" and listed["bert-base-uncased"] == "encoder"
    assert listed["t5-small"] == "encoder-decoder"
    assert main(["llm", "lama-2-7b", "--batch", "1", "--seq", "8"]) == 2
    assert "llama-2-7b" in capsys.readouterr().err  # suggestion
    assert main(["llm", "gpt2", "--seq", "8"]) == 2
    assert "--batch" in capsys.readouterr().err


def test_numpy_tree_evaluator_matches_xgboost(tmp_path):
    import xgboost as xgb
    from costmodel.predictors import TreeEnsemble, train_booster

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 7)).astype(np.float32)
    y = X[:, 0] * 2 + np.sin(X[:, 1] * 3) + (X[:, 2] > 0.5)
    m = train_booster(X, y, {"n_estimators": 60, "max_depth": 6, "learning_rate": 0.2}, seed=0)
    assert m.num_boosted_rounds() == 60
    X_test = rng.normal(size=(100, 7)).astype(np.float32)
    X_test[::7, 3] = np.nan  # missing values take the default branch
    ours = TreeEnsemble.from_xgboost(m).predict(X_test)
    np.testing.assert_allclose(ours, m.inplace_predict(X_test), rtol=1e-5, atol=1e-5)
    m.save_model(str(tmp_path / "m.json"))
    np.testing.assert_allclose(TreeEnsemble.load(tmp_path / "m.json").predict(X_test), ours, rtol=1e-6)
    with pytest.raises(ModelLoadError, match="feature matrix"):
        TreeEnsemble.from_xgboost(m).predict(X_test[:, :3])
    with pytest.raises(ModelLoadError, match="not an XGBoost JSON model"):
        TreeEnsemble({"nope": 1})
    clf = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(X, (y > 0).astype(int)), num_boost_round=3)
    with pytest.raises(ModelLoadError, match="objective"):
        TreeEnsemble.from_xgboost(clf)


def test_training_needs_no_scikit_learn(monkeypatch, tmp_path):
    """The regressors are fitted with xgboost's native API: scikit-learn is not a dependency."""
    import builtins

    import xgboost.sklearn as xgb_sklearn
    real = builtins.__import__

    def no_sklearn(name, *args, **kw):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError("scikit-learn is not installed")
        return real(name, *args, **kw)

    # as in an environment without scikit-learn: xgboost's scikit-learn wrapper refuses to be built
    monkeypatch.setattr(xgb_sklearn, "SKLEARN_INSTALLED", False)
    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    rng = np.random.default_rng(1)
    n_feat = len(llm_feature_names(HARDWARE_FEATURE_NAMES))
    X = rng.normal(size=(64, n_feat))
    Y = np.stack([X[:, 0], X[:, 1] ** 2, -X[:, 2]], axis=1)
    p = XGBLLMPredictor({"n_estimators": 100}).fit_arrays(X, Y, devices=["h200"])
    assert len(p.models) == 3 and all(m.num_feature == n_feat for m in p.models)
    assert np.corrcoef(p.models[0].predict(X), X[:, 0])[0, 1] > 0.95  # it learned the first target
    p.save(tmp_path / "m")  # trained from bare arrays, it still records a data hash and loads back
    q = XGBLLMPredictor.load(tmp_path / "m")
    assert len(q.meta["data_hash"]) == 16
    np.testing.assert_array_equal(q.models[1].predict(X), p.models[1].predict(X))


def test_native_training_matches_the_scikit_learn_wrapper_parameters():
    """``n_estimators`` is the number of rounds and ``seed`` the learner's seed (``random_state``)."""
    from costmodel.predictors import train_booster

    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = X[:, 0] + rng.normal(size=200) * 0.1
    kw = {"n_estimators": 25, "subsample": 0.5, "colsample_bytree": 0.5, "learning_rate": 0.3}
    a, b = train_booster(X, y, kw, seed=3), train_booster(X, y, kw, seed=3)
    c = train_booster(X, y, kw, seed=4)
    assert a.num_boosted_rounds() == 25
    assert bytes(a.save_raw("json")) == bytes(b.save_raw("json"))  # seeded: the same model
    assert bytes(a.save_raw("json")) != bytes(c.save_raw("json"))  # the seed reaches the row sampling


def test_shipped_llm_predictor_is_loaded_once_and_shared_safely(monkeypatch):
    from costmodel.llm import estimate_llm
    from costmodel.predictors import clear_artifact_cache

    clear_artifact_cache()
    calls = []
    real = XGBLLMPredictor.load.__func__

    def load(cls, path):
        calls.append(path)
        return real(cls, path)

    monkeypatch.setattr(XGBLLMPredictor, "load", classmethod(load))
    a = estimate_llm("gpt2", batch=2, seq=64)
    XGBLLMPredictor.default().meta["devices"] = []  # a caller editing its handle...
    b = estimate_llm("gpt2", batch=2, seq=64)
    assert len(calls) == 1
    assert a.to_dict() == b.to_dict() and not b.extrapolated_device  # ...does not edit the next caller's
    clear_artifact_cache()


def test_damaged_tree_files_are_refused(tmp_path):
    from costmodel import ArtifactError
    from costmodel.predictors import ARTIFACTS_DIR, TreeEnsemble

    text = (ARTIFACTS_DIR / "llm-xgb" / "latency_ms.json").read_text()
    model = json.loads(text)
    tree = model["learner"]["gradient_booster"]["model"]["trees"][0]
    tree["right_children"][0] = tree["left_children"][0]  # two edges into one node: not a tree
    with pytest.raises(ArtifactError, match="do not form a tree"):
        TreeEnsemble(model, "m.json")
    (tmp_path / "t.json").write_bytes(text[: len(text) // 3].encode())
    with pytest.raises(ArtifactError, match="t.json"):
        TreeEnsemble.load(tmp_path / "t.json")
    (tmp_path / "t.json").write_bytes(b"\xff\xfe" + text.encode())
    with pytest.raises(ArtifactError, match="not UTF-8"):
        TreeEnsemble.load(tmp_path / "t.json")


def test_a_larger_batch_is_never_predicted_faster_or_smaller_nor_a_slice_faster_than_its_gpu():
    from costmodel.predictors import get_llm_predictor
    from costmodel.predictors._llm_xgb import held_batches

    p = get_llm_predictor("llm-xgb")
    assert held_batches(5) == [1, 2, 3, 4, 5] and held_batches(70)[-3:] == [64, 67, 70]
    for model, mode, dtype in (("gpt2", "decode", "int4"), ("qwen2-0.5b", "prefill", "fp16")):
        ests = [p.predict(model, batch=b, seq=512, mode=mode, dtype=dtype) for b in (1, 2, 3, 4, 6, 8, 16, 32)]
        lat, mem = [e.latency_ms for e in ests], [e.memory_mb for e in ests]
        assert lat == sorted(lat) and mem == sorted(mem), (model, lat, mem)
    # the trees alone put gpt2's int4 decode at batch 4 above batch 8's; the estimate says its latency moved
    e4 = p.predict("gpt2", batch=4, seq=512, mode="decode", dtype="int4")
    assert any(a.startswith("llm-xgb: latency_ms") and "fitted to rise with the batch" in a for a in e4.assumptions)
    assert e4.latency_ms <= p.predict("gpt2", batch=8, seq=512, mode="decode", dtype="int4").latency_ms
    whole = p.predict("bert-base-uncased", batch=4, seq=128, device="h100", dtype="int8")
    part = p.predict("bert-base-uncased", batch=4, seq=128, device="h100 1g.10gb", dtype="int8")
    assert part.latency_ms >= whole.latency_ms
    # the sweep's fast path holds them the same way
    from costmodel.features.llm import llm_workload

    ws = [llm_workload("gpt2", batch=b, seq=512, mode="decode", dtype="int4") for b in (4, 8)]
    assert p.predict_many(ws)[:, 0].tolist() == pytest.approx([e.latency_ms for e in
                                                               (p.predict("gpt2", batch=b, seq=512, mode="decode",
                                                                          dtype="int4") for b in (4, 8))])


def test_the_isotonic_fit_pools_violators_and_the_max_hold_remains_available():
    from costmodel.predictors import get_llm_predictor
    from costmodel.predictors._llm_xgb import isotonic

    assert isotonic(np.asarray([1.0, 3.0, 2.0, 2.0, 5.0, 4.0, 6.0])).tolist() == pytest.approx(
        [1.0, 7 / 3, 7 / 3, 7 / 3, 4.5, 4.5, 6.0])
    p = get_llm_predictor("llm-xgb")
    iso = [p.predict("gpt2", batch=b, seq=512, mode="decode", dtype="int4").latency_ms for b in (2, 4, 8, 16)]
    p.latency_hold = "max"
    try:
        top = [p.predict("gpt2", batch=b, seq=512, mode="decode", dtype="int4").latency_ms for b in (2, 4, 8, 16)]
    finally:
        p.latency_hold = "isotonic"
    assert iso == sorted(iso) and top == sorted(top)
    assert all(i <= t * (1 + 1e-9) for i, t in zip(iso, top))  # the pooled level never exceeds the largest


def test_a_longer_sequence_is_never_predicted_faster_nor_below_the_weights_and_cache():
    import json as _json
    from collections import defaultdict

    from costmodel.datasets import default_root
    from costmodel.predictors import get_llm_predictor
    from costmodel.predictors._llm_xgb import HELD_SEQ_FROM, held_ladder
    from costmodel.features.llm import llm_workload

    # the hold reaches no shorter sequence than the trees learned from, per mode
    shortest = defaultdict(lambda: 10**9)
    for line in (default_root() / "h200" / "llm.jsonl").read_text().splitlines():
        r = _json.loads(line)
        shortest[r["mode"]] = min(shortest[r["mode"]], r["seq"])
    assert HELD_SEQ_FROM == dict(shortest)
    w = llm_workload("llama-2-7b", batch=2, seq=2048, mode="decode")
    assert held_ladder(w)[-1] == (2, 2048) and {q for _, q in held_ladder(w)} == {512, 1024, 2048}
    p = get_llm_predictor("llm-xgb")
    # memory never falls with a longer sequence (latency is held over batches only: the measured host-bound
    # latencies fall with a longer sequence in a quarter of the doublings)
    for model, mode in (("llama-2-7b", "decode"), ("gpt2", "prefill"), ("bert-base-uncased", "forward")):
        seqs = (512, 1024, 2048, 4096) if model == "llama-2-7b" else (64, 128, 256, 512)
        mem = [p.predict(model, batch=8, seq=q, mode=mode, device="h100").memory_mb for q in seqs]
        assert mem == sorted(mem), (model, mem)
    # Mixtral-8x7B's fp16 weights alone (87 GiB) exceed an 80 GB H100: the trees put the prefill at 73.5 GB
    mix = p.predict("mixtral-8x7b", batch=1, seq=8192, mode="prefill", device="h100", dtype="fp16")
    weights_mb = 2 * mix.params / 2**20
    assert mix.memory_mb > weights_mb and not mix.fits_device and mix.mig_profile is None
    # weight-only int4 keeps an fp16 cache: Llama-2-7B's int4 decode of 8 x 2,048 holds at least that cache
    i4 = p.predict("llama-2-7b", batch=8, seq=2048, mode="decode", dtype="int4")
    assert i4.memory_mb > 2 * 32 * 8 * 2049 * 4096 * 2 / 2**20


def test_an_encoder_decoders_decode_step_holds_its_self_and_cross_attention_caches():
    from costmodel.predictors import get_llm_predictor

    # T5-base at 128 x 2,048: 12 decoder layers keep keys and values (12 heads of 64) of the 2,048 generated
    # tokens and of the 2,048 source tokens, 18,432 MiB in fp16; the trees alone put the step at 7.5 GB
    e = get_llm_predictor("llm-xgb").predict("t5-base", batch=128, seq=2048, mode="decode", device="h200")
    caches_mb = 12 * 128 * (2 * 2048) * 2 * 12 * 64 * 2 / 2**20
    assert e.memory_mb > 2 * e.params / 2**20 + caches_mb
    assert any("held at its weights and key/value cache" in a for a in e.assumptions)


def test_predict_many_holds_power_as_predict_does():
    from costmodel.predictors import get_llm_predictor
    from costmodel.predictors._llm_xgb import llm_workload

    p = get_llm_predictor("llm-xgb")
    w = llm_workload("bert-base", batch=8, seq=512, mode="forward", dtype="fp32")
    for device, limit_w in (("h200", 700.0), ("t4", 70.0)):
        one = p.predict("bert-base", batch=8, seq=512, device=device, mode="forward", dtype="fp32")
        lat, mem, power = p.predict_many([w], device)[0]
        assert (lat, mem, power) == pytest.approx((one.latency_ms, one.memory_mb, one.power_w))
        assert power <= limit_w
    assert p.predict_many([], "h200").shape == (0, 3)


def test_weight_only_quantization_computes_at_the_fp16_rate():
    # int8/int4 weights are dequantized and multiplied in fp16: an int8 prefill came out 1.9x faster than fp16,
    # its roofline at the int8 tensor-core rate
    from costmodel.predictors import get_llm_predictor

    p = get_llm_predictor("llm-xgb")
    fp16, int8, int4 = (p.predict("llama-2-7b", batch=8, seq=512, device="h100", mode="prefill", dtype=dt)
                        for dt in ("fp16", "int8", "int4"))
    assert int8.details["analytic"]["compute_ms"] == pytest.approx(fp16.details["analytic"]["compute_ms"])
    assert int4.details["analytic"]["compute_ms"] == pytest.approx(fp16.details["analytic"]["compute_ms"])
    assert int8.latency_ms > 0.8 * fp16.latency_ms and int4.latency_ms > 0.8 * fp16.latency_ms


def test_the_estimate_names_the_carbon_tables_region():
    """An alias ('virginia') is reported as the table's region, as `costmodel cost` reports it."""
    from costmodel import estimate_llm

    e = estimate_llm("gpt2", batch=2, seq=64, device="h100", predictor="llm-xgb", region="virginia")
    assert e.region == "us-east-1" and e.to_dict()["region"] == "us-east-1"
    assert e.carbon_intensity_g_per_kwh == 403.0 and "(us-east-1, 403 g/kWh)" in e.table()
    given = estimate_llm("gpt2", batch=2, seq=64, device="h100", predictor="llm-xgb", region="virginia",
                         carbon_intensity_g_per_kwh=50.0)
    assert given.region == "custom" and given.carbon_intensity_g_per_kwh == 50.0


def test_a_mig_slice_s_price_is_per_slice_hour(capsys):
    # a slice is priced at its share of its GPU's price: the table said "$0.9829/GPU-hour" of an H100 slice
    from costmodel.cli import main

    assert main(["llm", "gpt2", "--batch", "2", "--seq", "64", "--mode", "decode", "--predictor", "llm-xgb",
                 "--device", "h100 1g.10gb", "--instance", "p5.48xlarge"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("cloud cost"))
    assert line.endswith(f"(at ${55.04 / 8 / 7:.4g}/slice-hour)") and "GPU-hour" not in line
