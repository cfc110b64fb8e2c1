"""The default predictor is an explicit choice, and shipped artifacts are loaded once and cached."""

from __future__ import annotations

import os
import shutil
import threading

import numpy as np
import pytest

import costmodel
from costmodel.predictors import _registry, DEFAULT_ORDER, DEFAULT_PREDICTOR, clear_artifact_cache, get_predictor
from costmodel.predictors import DIPPMPredictor, TraPPMPredictor


def _count_loads(monkeypatch, cls) -> list:
    """Replace ``cls.load`` by a wrapper that records each call."""
    calls = []
    real = cls.load.__func__

    def load(klass, path):
        calls.append(str(path))
        return real(klass, path)

    monkeypatch.setattr(cls, "load", classmethod(load))
    return calls


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_artifact_cache()
    yield
    clear_artifact_cache()


def test_the_default_is_named_and_falls_back_in_the_documented_order(monkeypatch):
    from costmodel.predictors import TimelinePredictor

    assert DEFAULT_PREDICTOR == "timeline" and DEFAULT_ORDER == ("timeline", "trappm", "dippm", "analytic")
    assert get_predictor(None).name == "timeline"
    monkeypatch.setattr(TimelinePredictor, "is_available", classmethod(lambda cls: False))
    assert get_predictor(None).name == "trappm"
    monkeypatch.setattr(TraPPMPredictor, "is_available", classmethod(lambda cls: False))
    assert get_predictor(None).name == "dippm"
    monkeypatch.setattr(DIPPMPredictor, "is_available", classmethod(lambda cls: False))
    assert get_predictor(None).name == "analytic"


def test_registering_a_predictor_does_not_move_the_default():
    from costmodel.predictors import AnalyticPredictor, register_predictor

    order = list(_registry._DEFAULT_ORDER)
    try:
        register_predictor("analytic-copy")(type("AnalyticCopy", (AnalyticPredictor,), {"name": "analytic-copy"}))
        register_predictor("dippm")(DIPPMPredictor)  # registered again, as a reload would
        assert _registry._DEFAULT_ORDER == order and get_predictor(None).name == "timeline"
    finally:
        _registry._REGISTRY.pop("analytic-copy", None)
        _registry._DEFAULT_ORDER[:] = order


def test_two_estimates_load_the_default_once(monkeypatch):
    from costmodel.predictors import TimelinePredictor

    calls = _count_loads(monkeypatch, TimelinePredictor)
    a = costmodel.estimate("torchvision:squeezenet1_1", batch=1, device="h200")
    b = costmodel.estimate("torchvision:squeezenet1_1", batch=1, device="h200")
    assert a.predictor == b.predictor == "timeline"
    assert len(calls) == 1
    assert a.to_dict() == b.to_dict()
    get_predictor("timeline")  # by name: the same cached artifact
    assert len(calls) == 1


def test_cache_follows_the_files(monkeypatch, tmp_path):
    from costmodel.predictors import _artifacts

    shutil.copytree(_artifacts.ARTIFACTS_DIR / "dippm", tmp_path / "dippm")
    monkeypatch.setattr(_artifacts, "ARTIFACTS_DIR", tmp_path)
    calls = _count_loads(monkeypatch, DIPPMPredictor)
    get_predictor("dippm")
    get_predictor("dippm")
    assert len(calls) == 1
    w = tmp_path / "dippm" / "weights.safetensors"
    st = w.stat()
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # rewritten (e.g. by `costmodel train`)
    get_predictor("dippm")
    assert len(calls) == 2
    # a path is not a shipped default: loading by path always reads the files
    costmodel.load_predictor(tmp_path / "dippm")
    assert len(calls) == 3


def test_concurrent_first_requests_load_once(monkeypatch):
    calls = _count_loads(monkeypatch, DIPPMPredictor)
    barrier = threading.Barrier(4)
    got, errors = [], []

    def worker():
        try:
            barrier.wait()
            got.append(get_predictor("dippm"))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 4 and len(calls) == 1
    assert len({id(p.net) for p in got}) == 1  # one set of weights in memory


def test_a_cached_predictor_is_not_changed_by_predict_or_by_its_users():
    g = costmodel.to_graph("torchvision:squeezenet1_1", batch=1, method="trace")
    p = get_predictor("trappm")
    state = {k: v.clone() for k, v in p.net.state_dict().items()}
    enc = {k: v.clone() for k, v in p.encoder.encoder.state_dict().items()}
    records = (repr(p.norm), repr(p.meta), repr(p.intervals), p.net.training)
    first = p.predict(g, "h200").to_dict()
    p.predict_many([g, g], "a100", mode="training")
    assert all(np.array_equal(v, p.net.state_dict()[k]) for k, v in state.items())
    assert all(np.array_equal(v, p.encoder.encoder.state_dict()[k]) for k, v in enc.items())
    assert (repr(p.norm), repr(p.meta), repr(p.intervals), p.net.training) == records
    # a caller that edits its handle does not edit the next caller's
    p.intervals = None
    p.meta["devices"].append("T4")
    p.norm.y_mean[0] += 1.0
    q = get_predictor("trappm")
    assert q.intervals is not None and q.meta["devices"] == ["NVIDIA H200"]
    assert q.predict(g, "h200").to_dict() == first
