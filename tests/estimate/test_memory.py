"""``estimate(memory=...)``: the replayed memory in an estimate, its MIG pick, and the compile backend."""

import math
import warnings

import pytest
import torch
from torch import nn

import costmodel
from costmodel import InvalidInputError
from costmodel.estimate import PREDICTOR_MEMORY_NOTE, recommend_mig


def test_a_zoo_model_gets_its_memory_from_the_replay():
    est = costmodel.estimate("torchvision:resnet18", batch=8, device="h200", mode="training")
    mem = est.details["memory"]
    assert mem["path"] == "replay"
    assert est.memory_mb == pytest.approx(mem["reserved_mb"] + mem["context_mb"])
    assert est.allocated_mb == mem["allocated_mb"] and est.reserved_mb == mem["reserved_mb"]
    # the replay's interval is its group's held-out residuals (tests/analysis/test_memory_intervals.py)
    from costmodel.analysis.memreplay import bounds_for, memory_intervals

    lo, hi, group, _ = bounds_for(memory_intervals("h200"), "vision train fp32")
    assert mem["interval"]["group"] == group == "vision train fp32"
    assert est.memory_mb_interval == pytest.approx((est.memory_mb * math.exp(lo), est.memory_mb * math.exp(hi)))
    # the normal path is no assumption on the H200 (its overheads are fitted on its own rows); a training
    # step's fitted allowance on its reserved peak is
    (note,) = [a for a in est.assumptions if a.startswith("memory")]
    assert "fitted allowance" in note and mem["slack_mb"] > 0
    assert mem["notes"][-1].startswith("overheads: medians over h200's packaged rows; training allowance 3.9 %")
    infer = costmodel.estimate("torchvision:resnet18", batch=8, device="h200")
    assert not [a for a in infer.assumptions if a.startswith("memory")] and infer.details["memory"]["slack_mb"] == 0
    # the MIG slice and the fit follow the replayed memory, not the predictor's
    pick = recommend_mig("h200", est.memory_mb)
    assert est.mig_profile == (pick.name if pick else None)
    assert est.fits_device
    d = est.to_dict()
    assert d["allocated_mb"] == est.allocated_mb and d["reserved_mb"] == est.reserved_mb
    assert "allocated" in est.table()


def test_predictor_memory_on_request_and_for_a_graph():
    est = costmodel.estimate("torchvision:resnet18", batch=8, device="h200", memory="predictor")
    assert est.allocated_mb is None and "memory" not in est.details
    g = costmodel.to_graph("torchvision:resnet18", batch=8)
    # a learned memory model keeps its own for a graph alone
    est = costmodel.estimate(g, batch=8, device="h200", predictor="trappm")
    assert est.details["memory"]["path"] == "predictor" and est.allocated_mb is None
    # a predictor without one gets the graph's liveness walk through the caching allocator
    est = costmodel.estimate(g, batch=8, device="h200", predictor="timeline")
    assert est.details["memory"]["path"] == "liveness-fallback"
    assert 0 < est.allocated_mb <= est.reserved_mb < est.memory_mb
    assert any("a graph alone holds no module to run" in a for a in est.assumptions)
    assert not any(a.startswith(PREDICTOR_MEMORY_NOTE) for a in est.assumptions)
    # the predictor says whether it learned memory (a class attribute, not a note it writes)
    from costmodel.predictors import get_predictor

    assert [get_predictor(p).learns_memory for p in ("analytic", "timeline", "trappm", "dippm", "xgb-static")] == [
        False, False, True, True, True]
    ana = costmodel.estimate(g, batch=8, device="h200", predictor="analytic")
    assert ana.details["memory"]["path"] == "liveness-fallback" and ana.memory_mb == pytest.approx(est.memory_mb)
    module = costmodel.estimate("torchvision:resnet18", batch=8, device="h200")
    assert module.details["memory"]["path"] == "replay"
    assert abs(est.memory_mb - module.memory_mb) / module.memory_mb < 0.1
    with pytest.raises(InvalidInputError, match="memory must be one of replay, predictor"):
        costmodel.estimate("torchvision:resnet18", batch=8, device="h200", memory="guess")


def test_a_user_module_with_inputs():
    m = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 30 * 30, 10))
    est = costmodel.estimate(m, batch=4, inputs=(torch.randn(4, 3, 32, 32),), device="a100-80gb")
    assert est.details["memory"]["path"] == "replay"
    assert any("no rows for" in a for a in est.assumptions)  # the A100's overheads are borrowed, and it says so


def test_the_compile_backend_warns_with_the_largest_batch_from_the_replay():
    m = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    probe = costmodel.torch_backend(device="h200", inner="eager")
    with torch.no_grad():
        torch.compile(m, backend=probe)(torch.randn(64, 3, 64, 64))
    need = probe.estimates[0].memory_mb
    assert probe.estimates[0].details["memory"]["path"] == "replay"
    limit = need - 50.0  # just under what batch 64 needs
    be = costmodel.torch_backend(device="h200", memory_limit_mb=limit, inner="eager")
    torch._dynamo.reset()
    with warnings.catch_warnings(record=True) as w, torch.no_grad():
        warnings.simplefilter("always")
        torch.compile(m, backend=be)(torch.randn(64, 3, 64, 64))
    oom = [str(x.message) for x in w if issubclass(x.category, costmodel.OOMWarning)]
    assert oom, "no OOM warning"
    fit = int(oom[0].rsplit(" ", 1)[-1])
    assert 0 < fit < 64
    # the batch it names fits under the limit by the same replay, and one more does not
    from costmodel.analysis.memreplay import replay_memory

    def mem(b):
        return replay_memory(m, "h200", batch=b, input_shape=(3, 64, 64)).memory_mb

    assert mem(fit) <= limit + 1.0
    assert mem(fit + 1) > limit - 1.0


def test_a_zoo_name_without_prefix_is_traced_as_a_vision_model():
    # "resnet50" is a zoo name, not a transformer name: without seq a plain string is the zoo's
    est = costmodel.estimate("resnet18", batch=2, input_shape=(3, 32, 32), device="h200")
    assert est.details["memory"]["path"] == "replay"


def test_a_spec_file_is_estimated_by_what_it_holds_now(tmp_path):
    """A .json spec file, as a path string or a Path: traced for memory like the spec it holds, and keyed
    by its contents, so an edit between two calls is not answered from the first one's trace."""
    import json
    from pathlib import Path

    import costmodel

    f = tmp_path / "net.json"
    f.write_text(json.dumps({"src": "tv", "name": "squeezenet1_1", "res": 32}))
    kw = dict(batch=2, device="h200", predictor="analytic")
    small = costmodel.estimate(str(f), **kw)
    assert small.details["memory"]["path"] == "replay"
    assert costmodel.estimate(Path(f), **kw).memory_mb == small.memory_mb
    f.write_text(json.dumps({"src": "tv", "name": "squeezenet1_1", "res": 512}))
    assert costmodel.estimate(str(f), **kw).allocated_mb > small.allocated_mb
