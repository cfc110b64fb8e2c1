import json
import subprocess
import sys

import pytest

import costmodel
from costmodel import InvalidInputError, UnknownDeviceError
from costmodel.analysis import cast_graph, memory_breakdown, roofline
from costmodel.devices import get_device
from costmodel.frontends import zoo_graph
from costmodel.estimate import recommend_mig
from costmodel.predictors import AnalyticPredictor, get_predictor, load_predictor


def test_import_is_light():
    code = "import costmodel, sys; print(int('torch' in sys.modules), int('onnx' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "0"]


def test_estimate_resnet50_h200():
    est = costmodel.estimate("torchvision:resnet50", batch=8, device="h200", predictor="analytic")
    assert est.predictor == "analytic"
    assert est.device == "H200-SXM5-141GB"
    assert est.latency_ms > 0 and est.energy_j > 0
    dev = get_device("h200")
    assert dev.idle_power_w <= est.power_w <= dev.tdp_w
    assert est.energy_j == pytest.approx(est.power_w * est.latency_ms / 1e3)
    # framework overhead + weights at least
    assert est.memory_mb > dev.framework_overhead_mb + 97
    assert est.mig_profile == "1g.18gb"
    d = est.to_dict()
    for key in ("latency_ms", "memory_mb", "energy_j", "power_w", "mig_profile", "predictor"):
        assert key in d
    json.dumps(d)


def test_training_costs_more_than_inference():
    kw = dict(batch=32, device="a100", predictor="analytic")
    inf = costmodel.estimate("torchvision:resnet18", mode="inference", **kw)
    tr = costmodel.estimate("torchvision:resnet18", mode="training", **kw)
    assert tr.latency_ms > 2.5 * inf.latency_ms
    assert tr.memory_mb > inf.memory_mb
    sgd = costmodel.estimate("torchvision:resnet18", mode="training", optimizer="sgd", **kw)
    assert sgd.memory_mb < tr.memory_mb


def test_fp16_halves_bytes():
    g = zoo_graph("torchvision:resnet18", batch=8)
    h = cast_graph(g, "fp16")
    assert h.weights_bytes == g.weights_bytes // 2
    assert h.flops == g.flops
    assert h.bytes_moved == pytest.approx(g.bytes_moved / 2, rel=1e-6)
    assert memory_breakdown(h).total_bytes < memory_breakdown(g).total_bytes


def test_roofline_regimes():
    dev = get_device("h100")
    small = zoo_graph("torchvision:resnet18", batch=1)
    r = roofline(small, dev)
    # batch 1 is dispatch-bound: most ops cost the host overhead
    assert sum(op.bound == "overhead" for op in r.ops) > len(r.ops) / 2
    big = zoo_graph("torchvision:resnet18", batch=256)
    rb = roofline(big, dev)
    assert rb.latency_s > 5 * r.latency_s
    assert sum(op.bound != "overhead" for op in rb.ops) > len(rb.ops) / 2


def test_mig_recommendation():
    assert recommend_mig("a100-40gb", 3000).name == "1g.5gb"
    assert recommend_mig("a100-40gb", 6000).name == "1g.10gb"
    assert recommend_mig("h100", 30_000).name == "3g.40gb"
    assert recommend_mig("h100", 90_000) is None
    assert recommend_mig("v100", 1000) is None
    assert recommend_mig("h200", 17_000, margin_mb=2000).name == "1g.35gb"


def test_bad_input_errors():
    with pytest.raises(UnknownDeviceError, match="h100"):
        costmodel.estimate("torchvision:resnet18", batch=1, device="h1000")
    with pytest.raises(InvalidInputError, match="batch"):
        costmodel.estimate("torchvision:resnet18", batch=0, device="h100")
    with pytest.raises(InvalidInputError, match="mode"):
        costmodel.estimate("torchvision:resnet18", batch=1, device="h100", mode="eval")
    with pytest.raises(InvalidInputError, match="dtype"):
        costmodel.estimate("torchvision:resnet18", batch=1, device="h100", dtype="fp8")
    with pytest.raises(InvalidInputError, match="optimizer"):
        costmodel.estimate("torchvision:resnet18", batch=1, device="h100", mode="training", optimizer="lion")
    with pytest.raises(InvalidInputError, match="unknown predictor"):
        costmodel.estimate("torchvision:resnet18", batch=1, device="h100", predictor="magic")


def test_predictor_roundtrip(tmp_path):
    p = AnalyticPredictor()
    p.save(tmp_path / "a")
    q = load_predictor(tmp_path / "a")
    g = zoo_graph("torchvision:resnet18", batch=4)
    assert q.predict(g, "h100").to_dict() == p.predict(g, "h100").to_dict()
    assert get_predictor("analytic").name == "analytic"
    with pytest.raises(costmodel.ModelLoadError, match="missing config.json"):
        load_predictor(tmp_path / "nothing")


def test_mig_slice_and_penalty():
    from costmodel.estimate import mig_latency_penalty, slice_device

    dev = get_device("a100-40gb")
    prof = recommend_mig(dev, 3000)
    sl = slice_device(dev, prof)
    # a 1g instance of an A100 has 14 of its 108 SMs (MIG leaves 98 usable), not a seventh of 108
    assert sl.sm_count == 14
    assert sl.peak_flops("fp16") == pytest.approx(dev.peak_flops("fp16") * 14 / 108)
    assert sl.memory_bandwidth_gbps == pytest.approx(dev.memory_bandwidth_gbps / 8)
    assert sl.memory_mb == 4.75 * 1024  # the instance's listed memory, not the name's 5 GB
    big = zoo_graph("torchvision:resnet18", batch=256)
    small = zoo_graph("torchvision:resnet18", batch=1)
    # compute/bandwidth-bound work slows by the slice's share; host-bound work barely
    assert mig_latency_penalty(big, dev, prof) > 4
    assert mig_latency_penalty(small, dev, prof) < 1.5
    est = costmodel.estimate("torchvision:resnet18", batch=1, device="a100-40gb", predictor="analytic")
    assert est.details["mig"]["profile"] == est.mig_profile
    assert est.details["mig"]["compute_fraction"] == pytest.approx(1 / 7)


# ------------------------------------------------------------------ assumptions
# every fallback an estimate rests on is named in ``Estimate.assumptions`` (and in its table and JSON)

# memory from the predictor: these tests are about the other assumptions (tests/estimate/test_memory.py
# covers what the replayed memory assumes)
SMALL = dict(batch=2, input_shape=(3, 32, 32), memory="predictor")


def test_an_ordinary_fp32_h200_estimate_assumes_nothing():
    replayed = {k: v for k, v in SMALL.items() if k != "memory"}
    for predictor, kw in ((None, replayed), ("analytic", SMALL)):
        est = costmodel.estimate("torchvision:resnet18", device="h200", predictor=predictor, **kw)
        assert est.assumptions == [], (predictor, est.assumptions)
        assert est.to_dict()["assumptions"] == [] and "assumes" not in est.table()
    # the default (timeline) learns no memory: asked for the predictor's memory, it says where it came from
    est = costmodel.estimate("torchvision:resnet18", device="h200", **SMALL)
    assert est.predictor == "timeline" and est.assumptions == ["memory from the analytic liveness model"]


def test_bf16_without_bf16_support_is_costed_at_the_fp32_peak_and_says_so():
    for dev in ("v100-16gb", "t4"):
        est = costmodel.estimate("torchvision:resnet18", device=dev, dtype="bf16", predictor="analytic", **SMALL)
        name = get_device(dev).name
        want = f"bf16 tensor ops costed at the fp32 peak ({name} lists no bf16 rate)"
        assert est.assumptions == [want]
        # a line per assumption in the table `costmodel predict` prints
        assert ["assumes", want] in [line.split(None, 1) for line in est.table().splitlines()]
        assert json.loads(est.to_json())["assumptions"] == [want]
    ok = costmodel.estimate("torchvision:resnet18", device="h100-sxm", dtype="bf16", predictor="analytic", **SMALL)
    assert ok.assumptions == []


def test_a_module_is_costed_in_its_own_dtype_unless_told_otherwise():
    import torch
    from torch import nn

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 30 * 30, 10))

    kw = dict(batch=8, input_shape=(3, 32, 32), device="h200", predictor="analytic")
    own = costmodel.estimate(net().bfloat16(), **kw)
    told = costmodel.estimate(net(), dtype="bf16", **kw)
    assert own.dtype == told.dtype == "bf16" and own.latency_ms == pytest.approx(told.latency_ms)
    assert own.allocated_mb < costmodel.estimate(net(), **kw).allocated_mb  # bf16 weights and activations
    # told fp32, a bf16 module is converted: the same step as the fp32 module's
    up = costmodel.estimate(net().bfloat16(), dtype="fp32", **kw)
    base = costmodel.estimate(net(), **kw)
    assert up.dtype == "fp32" and up.latency_ms == pytest.approx(base.latency_ms)
    assert up.allocated_mb == pytest.approx(base.allocated_mb, rel=0.05)


def test_fp8_is_costed_at_its_tensor_cores_rate_and_says_so():
    from costmodel.frontends import GraphBuilder

    b = GraphBuilder("fp8-matmul", "test")
    b.add_input("x", (64, 256), "fp8")
    b.add_param("w", (256, 256), "fp8")
    b.add_node("matmul", "matmul", ["x", "w"], [("y", (64, 256), "fp8")], {"k": 256})
    g = b.build(batch=64, dtype="fp8", mode="inference")
    est = AnalyticPredictor().predict(g, "h100-sxm")
    assert est.assumptions == ["fp8 tensor ops costed at twice the fp16 peak (H100-SXM5-80GB's fp8 tensor cores; "
                               "the device database has no fp8 column)"]
    # Hopper's fp8 tensor cores: twice the fp16 rate; an A100 has none: the fp16 rate
    op = roofline(g, get_device("h100")).ops[0]
    assert op.compute_s == pytest.approx(g.nodes[0].flops / (2 * get_device("h100").peak_flops("fp16")))
    op = roofline(g, get_device("a100")).ops[0]
    assert op.compute_s == pytest.approx(g.nodes[0].flops / get_device("a100").peak_flops("fp16"))
    assert AnalyticPredictor().predict(g, "a100-80gb").assumptions == [
        "fp8 tensor ops costed at the fp16 peak (the device database has no fp8 column)"]


def test_quantized_llm_predictions_say_they_have_no_labels():
    for dt in ("int8", "int4"):
        est = costmodel.estimate_llm("llama-2-7b", batch=1, seq=128, device="h200", dtype=dt)
        assert any(a.startswith(f"no measured {dt} rows behind this prediction") for a in est.assumptions)
        assert est.to_dict()["assumptions"] == est.assumptions and "assumes" in est.table()
        # the timeline has no quantized graphs: the XGBoost answers, and the estimate says so
        assert est.predictor == "llm-xgb" and any(a.startswith(f"{dt}: answered by the llm-xgb predictor")
                                                  for a in est.assumptions)
    i4 = costmodel.estimate_llm("llama-2-7b", batch=1, seq=128, device="h200", dtype="int4")
    assert "int4 tensor ops costed at the int8 peak (the device database has no int4 column)" in i4.assumptions
    assert costmodel.estimate_llm("llama-2-7b", batch=1, seq=128, device="h200", dtype="fp16",
                                  predictor="llm-xgb").assumptions == []
    v100 = costmodel.estimate_llm("llama-2-7b", batch=1, seq=128, device="v100", dtype="bf16", predictor="llm-xgb")
    assert "bf16 tensor ops costed at the fp32 peak (V100-SXM2-16GB lists no bf16 rate)" in v100.assumptions


def est_timeline_h100():
    return costmodel.estimate("torchvision:resnet18", device="h100", **SMALL)


def test_a_device_without_measured_rows_names_where_the_labels_come_from():
    for predictor in (None, "trappm"):  # learned, trained on H200 rows
        est = costmodel.estimate("torchvision:resnet18", device="h100", predictor=predictor, **SMALL)
        assert est.predictor != "analytic" and est.details["extrapolated_device"] and est.extrapolated_device
        note = (f"no measured rows for H100-SXM5-80GB: the {est.predictor} predictor's labels come from "
                "H200-SXM5-141GB; its correction is extrapolated to this device through hardware features")
        assert [a for a in est.assumptions if a.startswith("no measured rows")] == [note]
    # the timeline also says whose host its host lane is
    assert any(a.startswith("host lane fitted to the machine") for a in est_timeline_h100().assumptions)
    for name in ("llm-xgb", "timeline"):
        llm = costmodel.estimate_llm("llama-2-7b", batch=1, seq=128, device="h100", dtype="fp16", predictor=name)
        assert llm.extrapolated_device
        assert [a for a in llm.assumptions if a.startswith("no measured rows for H100-SXM5-80GB")] == [
            f"no measured rows for H100-SXM5-80GB: the {llm.predictor} predictor's labels come from H200-SXM5-141GB; "
            "its correction is extrapolated to this device through hardware features"
        ]
    # the analytic model has no labels: nothing is extrapolated (a plain 'h100' also names the PCIe part it fits)
    assert costmodel.estimate("torchvision:resnet18", device="h100-sxm", predictor="analytic", **SMALL).assumptions == []
    assert costmodel.estimate("torchvision:resnet18", device="h100", predictor="analytic", **SMALL).assumptions == [
        "device name 'h100' also fits H100-PCIe-80GB, H100-NVL-94GB; costed as H100-SXM5-80GB"]


def test_a_predictor_answering_for_an_unavailable_default_says_so(monkeypatch):
    from costmodel.predictors import ShippedArtifact

    from costmodel.predictors import TimelinePredictor

    monkeypatch.setattr(ShippedArtifact, "_missing", classmethod(lambda cls: ["torch_geometric"]))
    monkeypatch.setattr(TimelinePredictor, "_missing", classmethod(lambda cls: ["safetensors"]))
    est = costmodel.estimate("torchvision:resnet18", device="h200", **SMALL)
    assert est.predictor == "analytic"
    assert len(est.assumptions) == 1
    note = est.assumptions[0]
    assert note.startswith("the default predictor is not available (timeline: needs safetensors; "
                           "trappm: needs torch_geometric")
    assert "dippm: needs torch_geometric" in note and note.endswith("the analytic predictor answered instead")
    # a predictor the caller named is no fallback
    assert costmodel.estimate("torchvision:resnet18", device="h200", predictor="analytic", **SMALL).assumptions == []


def test_a_device_name_fitting_several_devices_says_which_was_costed():
    est = costmodel.estimate("torchvision:resnet18", device="a100", predictor="analytic", **SMALL)
    assert est.device == "A100-SXM4-80GB"
    assert est.assumptions == ["device name 'a100' also fits A100-SXM4-40GB, A100-PCIe-80GB, A100-PCIe-40GB; "
                               "costed as A100-SXM4-80GB"]
    exact = costmodel.estimate("torchvision:resnet18", device="a100-80gb", predictor="analytic", **SMALL)
    assert exact.assumptions == []


def test_unknown_operators_mapped_to_other_are_named():
    import torch
    from torch import nn

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            return self.fc(torch.erfinv(torch.tanh(x)))

    with pytest.warns(costmodel.UnsupportedOpWarning, match="erfinv"):
        est = costmodel.estimate(Odd(), batch=2, input_shape=(8,), device="h200", predictor="analytic")
    assert est.assumptions == [
        "1 operator type(s) outside the op vocabulary costed as kind 'other' (no FLOPs): aten.erfinv"
    ]


def test_a_torch_export_failure_featurized_by_the_trace_says_so(monkeypatch):
    from torch import nn

    from costmodel.frontends import pytorch as _torch

    def broken(*a, **k):
        raise RuntimeError("export is broken here")

    monkeypatch.setattr(_torch, "_from_export", broken)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU())
    with pytest.warns(UserWarning, match="falling back"):
        est = costmodel.estimate(model, batch=4, input_shape=(16,), device="h200", predictor="analytic")
    assert est.assumptions == [
        "torch.export failed for Sequential (RuntimeError: export is broken here); "
        "featurized by the dispatch-level trace on meta tensors instead"
    ]
    monkeypatch.undo()
    assert costmodel.estimate(model, batch=4, input_shape=(16,), device="h200", predictor="analytic").assumptions == []


def test_a_module_without_work_is_an_invalid_graph():
    """An nn.Identity (or a model of views only) has nothing to cost: a clean error, never a math error
    inside a learned predictor or a 0.0 ms answer."""
    import torch

    import costmodel

    for model in (torch.nn.Identity(), torch.nn.Flatten()):
        for pred in (None, "analytic"):
            with pytest.raises(costmodel.InvalidGraphError, match="nothing to cost"):
                costmodel.estimate(model, batch=2, input_shape=(3, 8, 8), device="h100", predictor=pred)


def test_a_zoo_model_priced_at_its_weights_resolution_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("COSTMODEL_CACHE", str(tmp_path))
    est = costmodel.estimate("torchvision:efficientnet_b3", batch=2, device="h200", predictor="analytic",
                             memory="predictor")
    assert est.details["input_shape"] == [3, 300, 300]
    assert "input 3x300x300" in est.table()
    assert any(a.startswith("input 3x300x300: the resolution the model's published weights") for a in est.assumptions)
    # a shape given, or a spec with its own resolution: nothing to say
    for model, kw in (("torchvision:efficientnet_b3", {"input_shape": (3, 224, 224)}),
                      ({"src": "tv", "name": "efficientnet_b3", "res": 256}, {})):
        est = costmodel.estimate(model, batch=2, device="h200", predictor="analytic", memory="predictor", **kw)
        assert not any(a.startswith("input ") for a in est.assumptions)


def test_a_workload_the_model_itself_refuses_names_the_fix():
    import torch

    # batch norm after global pooling: one value per channel at batch 1, which PyTorch refuses in training
    with torch.device("meta"):
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.BatchNorm2d(8),
                                  torch.nn.Flatten(), torch.nn.Linear(8, 2))
    with pytest.raises(costmodel.ModelLoadError, match="use a larger batch"):
        costmodel.estimate(net, batch=1, input_shape=(3, 16, 16), device="h200", mode="training",
                           predictor="analytic", memory="predictor")
    est = costmodel.estimate(net, batch=2, input_shape=(3, 16, 16), device="h200", mode="training",
                             predictor="analytic", memory="predictor")
    assert est.latency_ms > 0
    with pytest.raises(costmodel.ModelLoadError, match="pass a larger input_shape"):
        costmodel.estimate(torch.nn.Conv2d(3, 8, 7).to("meta"), batch=1, input_shape=(3, 4, 4), device="h200",
                           predictor="analytic", memory="predictor")


def test_a_prefill_says_its_memory_keeps_no_cache_and_how_much_one_holds():
    from costmodel.llm import kv_cache_bytes, resolve_llm

    est = costmodel.estimate_llm("gpt2", batch=64, seq=1000, mode="prefill", predictor="llm-xgb")
    kv_mib = kv_cache_bytes(resolve_llm("gpt2"), batch=64, seq=1000, dtype_bytes="fp16") / 2**20
    note = [a for a in est.assumptions if a.startswith("prefill: one forward call")]
    assert len(note) == 1 and f"holds {kv_mib:,.0f} MiB more" in note[0]
    decode = costmodel.estimate_llm("gpt2", batch=64, seq=1000, mode="decode", predictor="llm-xgb")
    assert not [a for a in decode.assumptions if a.startswith("prefill:")]
    # a cache a few percent of the memory or less is not worth a note (18 MiB beside the context's 1.4 GB)
    small = costmodel.estimate_llm("gpt2", batch=4, seq=128, mode="prefill", predictor="llm-xgb")
    assert not [a for a in small.assumptions if a.startswith("prefill:")]
