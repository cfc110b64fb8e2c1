import json
import subprocess
import sys

import pytest

import costmodel
from costmodel import InvalidInputError, UnknownDeviceError
from costmodel.analysis import cast_graph, memory_breakdown, roofline
from costmodel.devices import get_device
from costmodel.frontends import zoo_graph
from costmodel.mig import recommend_mig
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
    from costmodel.mig import mig_latency_penalty, slice_device

    dev = get_device("a100-40gb")
    prof = recommend_mig(dev, 3000)
    sl = slice_device(dev, prof)
    assert sl.peak_flops("fp16") == pytest.approx(dev.peak_flops("fp16") / 7)
    assert sl.memory_bandwidth_gbps == pytest.approx(dev.memory_bandwidth_gbps / 8)
    big = zoo_graph("torchvision:resnet18", batch=256)
    small = zoo_graph("torchvision:resnet18", batch=1)
    # compute/bandwidth-bound work slows by the slice's share; host-bound work barely
    assert mig_latency_penalty(big, dev, prof) > 4
    assert mig_latency_penalty(small, dev, prof) < 1.5
    est = costmodel.estimate("torchvision:resnet18", batch=1, device="a100-40gb", predictor="analytic")
    assert est.details["mig"]["profile"] == est.mig_profile
    assert est.details["mig"]["compute_fraction"] == pytest.approx(1 / 7)
