"""The timeline's per-operator breakdown (``Estimate.details["ops"]``) against its own lanes."""

import pytest

import costmodel


@pytest.fixture(scope="module")
def tiny():
    torch = pytest.importorskip("torch")
    m = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU())
    return costmodel.to_graph(m, batch=2, input_shape=(16,))


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_top_lists_only_kernels(tiny, mode):
    # a graph with fewer kernels than the list's length: the module-call row (no kernel) is no operator
    p = costmodel.get_predictor("timeline")
    top = p.predict(tiny, "h200", mode=mode).details["ops"]["top"]
    kernels = p.operator_times(tiny, "h200", mode=mode)
    assert len(top) == len(kernels)
    assert all(o["device_ms"] > 0 for o in top)
    assert sorted((o["node"], o["phase"]) for o in top) == sorted((o["node"], o["phase"]) for o in kernels)
    if mode == "inference":
        assert all(o["phase"] == "forward" and o["op"] != "optimizer" for o in top)
