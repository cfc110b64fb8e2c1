"""The published latencies on other GPUs (benchmarks/public_references.py): the file is well formed and names
workloads the package can cost, and the summary's arithmetic."""

import json
import math

import pytest


@pytest.fixture
def refs(benchmark_module):
    return benchmark_module("public_references")


def test_every_row_names_a_source_a_known_device_and_a_valid_workload(refs):
    from costmodel.devices import get_device
    from costmodel.predictors._base import validate_optimizer

    sources, rows = refs.load_references()
    assert len(rows) >= 10
    for r in rows:
        assert r["source"] in sources
        assert get_device(r["device"]).name  # raises on an unknown device
        assert r["mode"] in ("inference", "training") and r["dtype"] == "fp32"
        assert r["latency_ms"] > 0 and r["batch"] >= 32
        if r["mode"] == "training":
            validate_optimizer(r["optimizer"])
    for s in sources.values():
        assert s["repository"] and s["path"] and s["protocol"]


def test_throughput_rows_become_the_latency_of_one_batch(refs, tmp_path):
    doc = {"format": "costmodel.public-references", "sources": {"s": {}},
           "rows": [{"source": "s", "batch": 256, "throughput_samples_s": 938.0},
                    {"source": "s", "batch": 8, "latency_ms": 3.0}]}
    path = tmp_path / "refs.json"
    path.write_text(json.dumps(doc))
    _, rows = refs.load_references(path)
    assert rows[0]["latency_ms"] == pytest.approx(1000 * 256 / 938)
    assert rows[1]["latency_ms"] == 3.0
    doc["rows"][0]["source"] = "elsewhere"
    path.write_text(json.dumps(doc))
    with pytest.raises(SystemExit, match="unknown source 'elsewhere'"):
        refs.load_references(path)


def test_summary_per_gpu_with_and_without_doubted_rows(refs):
    rows = [{"device": "v100", "latency_ms": 100.0}, {"device": "v100", "latency_ms": 100.0},
            {"device": "t4", "latency_ms": 50.0, "doubt": "inconsistent"}]
    preds = {"p": [150.0, 200.0, 25.0]}
    table = {(d, n): rest for d, n, *rest in refs.summarize(rows, preds)}
    n, mape, geo, lo, hi = table[("v100", "p")]
    assert (n, mape, lo, hi) == (2, 75.0, 1.5, 2.0)
    assert geo == pytest.approx(math.sqrt(3.0))
    assert table[("all", "p")][0] == 3 and table[("all", "p")][1] == pytest.approx(200 / 3)
    trusted = {(d, n): rest for d, n, *rest in refs.summarize(rows, preds, trusted_only=True)}
    assert ("t4", "p") not in trusted and trusted[("all", "p")][0] == 2


def test_the_cuda_core_convolution_note_names_the_path_only_where_it_applies():
    """fp32 convolution-heavy graphs on a GPU without TF32, from rows of GPUs with it; not for fp16, not for
    a device with TF32, not for a ViT whose only convolution is its patch embedding, not for the analytic
    predictor (it learned nothing from a device)."""
    import costmodel
    from costmodel.devices import cuda_core_conv_note
    from costmodel.frontends import to_graph

    r50 = to_graph("torchvision:resnet50", batch=2)
    assert "T4's CUDA cores" in cuda_core_conv_note("t4", ["NVIDIA H200"], r50)
    assert cuda_core_conv_note("a100-80gb", ["NVIDIA H200"], r50) is None  # has TF32
    assert cuda_core_conv_note("v100", ["v100"], r50) is None  # trained on a device without TF32 itself
    assert cuda_core_conv_note("v100", ["NVIDIA H200"], to_graph("torchvision:resnet50", batch=2, dtype="fp16")) is None
    assert cuda_core_conv_note("v100", ["NVIDIA H200"], to_graph("torchvision:vit_b_16", batch=1)) is None
    note = lambda e: [a for a in e.assumptions if "CUDA cores" in a]  # noqa: E731
    assert note(costmodel.estimate(r50, batch=2, device="v100", predictor="timeline"))
    assert note(costmodel.estimate(r50, batch=2, device="v100", predictor="dippm"))
    assert not note(costmodel.estimate(r50, batch=2, device="v100", predictor="analytic"))
    assert not note(costmodel.estimate(r50, batch=2, device="h200", predictor="timeline"))


def test_fp32_convolutions_on_cuda_cores_read_as_the_matmuls_the_rows_measured():
    """On a GPU without TF32 the efficiency network reads the rows of an fp32 convolution with an fp32
    matmul's kind columns (its FLOPs, bytes and bound stay its own), and the host network reads the
    convolution it dispatches; fp16 convolutions there, and every convolution on a GPU with TF32, have one
    reading. The estimate says which reading it used."""
    import numpy as np

    import costmodel
    from costmodel.devices import get_device
    from costmodel.frontends import to_graph
    from costmodel.predictors import _optable as T
    from costmodel.predictors import cuda_core_conv_reading

    r50 = to_graph("torchvision:resnet50", batch=2)
    is_conv = T.FEATURE_NAMES.index("is_conv")

    def table(graph, device):
        t = T.op_table(graph, get_device(device), mode="inference")
        return t, np.isin(t.node, [n.id for n in graph.nodes if n.kind == "conv"])

    v100, conv = table(r50, "v100")
    assert conv.sum() == sum(n.kind == "conv" for n in r50.nodes)
    assert (v100.x[conv, is_conv] == 1).all()  # the host network's reading: a convolution
    assert (v100.device_x[conv, :T._C] == T._KIND_HEAD[T._KIND_ID["matmul"]]).all()
    assert np.array_equal(v100.device_x[~conv], v100.x[~conv])  # every other row reads the same
    assert table(r50, "a100-80gb")[0].device_x is None  # TF32 tensor cores: a convolution
    assert table(to_graph("torchvision:resnet50", batch=2, dtype="fp16"), "v100")[0].device_x is None
    big = to_graph("torchvision:resnet50", batch=64)
    with cuda_core_conv_reading(False):
        v100_off, _ = table(r50, "v100")
        off = costmodel.estimate(big, batch=64, device="v100", predictor="timeline")
        h200_off = costmodel.estimate(big, batch=64, device="h200", predictor="timeline")
    assert v100_off.device_x is None
    assert np.array_equal(v100.bound_s, v100_off.bound_s)  # the bound is the convolution's own either way
    on = costmodel.estimate(big, batch=64, device="v100", predictor="timeline")
    assert on.latency_ms != off.latency_ms
    assert on.details["ops"]["host_ms"] == off.details["ops"]["host_ms"]  # the host dispatches the same
    assert any("costed as the CUDA-core fp32 matmuls" in a for a in on.assumptions), on.assumptions
    assert not any("costed as the CUDA-core" in a for a in off.assumptions)
    assert costmodel.estimate(big, batch=64, device="h200", predictor="timeline").latency_ms == h200_off.latency_ms


def test_a_timeline_trained_on_a_gpu_without_tf32_reads_its_convolutions_as_they_are():
    import copy
    from dataclasses import replace

    from costmodel.predictors import get_predictor

    shipped = get_predictor("timeline")
    assert shipped._conv_as_gemm()  # its rows come from an H200 (TF32)
    other = copy.copy(shipped)
    other.params = replace(shipped.params, trained_on={**shipped.params.trained_on, "devices": ["H200", "V100"]})
    assert not other._conv_as_gemm()  # a V100 row taught the CUDA-core path itself


def test_the_breakdown_splits_the_device_lane_by_operator_kind(refs):
    from costmodel.predictors import cuda_core_conv_reading

    lanes = refs.lane_breakdown("resnet18", 8, ["v100", "h200"])
    for kinds in lanes.values():
        assert kinds["conv"][0] > 0 and all(0 < eff <= 1 for _, eff in kinds.values())
    with cuda_core_conv_reading(False):
        before = refs.lane_breakdown("resnet18", 8, ["v100", "h200"])
    assert before["h200"] == lanes["h200"]  # a GPU with TF32 reads its convolutions one way
    assert before["v100"]["conv"] != lanes["v100"]["conv"] and before["v100"]["relu"] == lanes["v100"]["relu"]
