import pytest

from costmodel import InvalidInputError, ModelLoadError
from costmodel.datasets import PerfDataset


@pytest.fixture(scope="module")
def vision():
    return PerfDataset.load()


def test_rows_and_labels(vision):
    assert len(vision) == 342
    assert len(vision.families()) == 13
    r = vision[0]
    assert r.kind == "vision" and r.device == "NVIDIA H200"
    assert r.memory_mb == r.raw["nvml_used_mb"] and r.latency_ms == r.raw["latency_ms"]
    assert {x.mode for x in vision} == {"inference", "training"}
    assert {x.dtype for x in vision} == {"fp32", "fp16"}


def test_llm_rows():
    ds = PerfDataset.load(kinds=("llm",))
    assert len(ds) == 206
    assert {r.phase for r in ds} == {"forward", "prefill", "decode"}
    assert all(r.seq for r in ds)
    assert sum(r.graph_supported for r in ds) == sum(r.phase != "decode" for r in ds)


def test_random_split_is_seeded_and_disjoint(vision):
    tr, te = vision.random_split(0.3, seed=1)
    assert len(te) == round(0.3 * 342) and not set(tr) & set(te)
    assert sorted(tr + te) == list(range(342))
    assert vision.random_split(0.3, seed=1) == (tr, te)
    assert vision.random_split(0.3, seed=2) != (tr, te)


def test_leave_one_family_out(vision):
    folds = list(vision.leave_one_family_out())
    assert [f for f, _, _ in folds] == vision.families()
    for fam, tr, te in folds:
        assert all(vision[i].family == fam for i in te)
        assert all(vision[i].family != fam for i in tr)
        assert len(tr) + len(te) == len(vision)


def test_row_graph_matches_measured_params(vision):
    sub = vision.filter(model="squeezenet1_1")
    assert len(sub) == 6
    for i in range(len(sub)):
        g = sub.graph(i)
        r = sub[i]
        assert g.params == r.raw["params"]
        assert g.meta["batch"] == r.batch and g.meta["dtype"] == r.dtype and g.meta["mode"] == r.mode


def test_llm_graph_params_match():
    ds = PerfDataset.load(kinds=("llm",)).filter(model="distilbert-base-uncased", batch=1)
    g = ds.graph(0)
    assert g.params == ds[0].raw["params"]
    assert g.meta["input_shape"] == [ds[0].seq]


def test_bad_arguments(vision, tmp_path):
    with pytest.raises(InvalidInputError, match="unknown dataset kind"):
        PerfDataset.load(kinds=("audio",))
    with pytest.raises(ModelLoadError, match="no measurements"):
        PerfDataset.load(device="mi300")
    with pytest.raises(InvalidInputError, match="test_fraction"):
        vision.random_split(1.5)
    with pytest.raises(InvalidInputError, match="unknown target"):
        vision[0].target("latency")
