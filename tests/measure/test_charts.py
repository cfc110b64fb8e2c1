"""Roofline charts: points, ceilings and files."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from costmodel._errors import CostModelError, InvalidInputError, UnknownDeviceError
from costmodel.frontends import from_torch
from costmodel.measure.charts import ceilings, machine_chart, op_points, roofline_chart


def _graph():
    m = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 30 * 30, 10))
    return from_torch(m, (torch.randn(4, 3, 32, 32),))


def test_op_points_follow_the_graph():
    g = _graph()
    pts = op_points(g, "h100")
    kinds = [p["kind"] for p in pts]
    assert kinds == ["conv", "relu", "matmul"]
    conv = pts[0]
    assert conv["intensity"] == pytest.approx(conv["flops"] / conv["bytes"])
    # no point above its roof: FLOP/s <= min(peak, intensity x bandwidth)
    c = ceilings("h100")
    for p in pts:
        assert p["achieved_flops"] <= min(max(c["compute"].values()), p["intensity"] * c["memory"]["DRAM"]) * 1.0001


def test_chart_files(tmp_path):
    g = _graph()
    for suffix in (".png", ".svg"):
        out = tmp_path / f"chart{suffix}"
        fig = roofline_chart(g, "a100-80gb", output=out, top=2)
        assert out.stat().st_size > 5000
        texts = [t.get_text() for t in fig.axes[0].texts]
        assert any("DRAM" in t for t in texts) and any("TFLOP/s" in t for t in texts)
        assert sum("%" in t for t in texts) == 2  # the two slowest ops are labelled
    head = (tmp_path / "chart.svg").read_text()[:200]
    assert "<svg" in head or "<?xml" in head


def test_machine_chart_uses_measured_levels(tmp_path):
    class Profile:
        name = "test cpu"
        levels = {"L1": 400.0, "L2": 200.0, "DRAM": 20.0}
        peak_gflops = {"fp32": 150.0}

    fig = machine_chart("cpu", machine=Profile(), output=tmp_path / "m.png")
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "L1 400 GB/s" in texts and "L2 200 GB/s" in texts and "fp32 measured" in texts


def test_machine_chart_draws_each_peak_where_it_was_measured():
    class Profile:  # a scalar-only core: peaks of a few GFLOP/s
        name = "slow cpu"
        levels = {"L1": 40.0, "DRAM": 4.0}
        peak_gflops = {"fp32": 1.4, "fp64": 0.4}

    fig = machine_chart("cpu", machine=Profile())
    peaks = sorted(float(seg[0][1]) for coll in fig.axes[0].collections for seg in coll.get_segments())
    assert peaks == pytest.approx([0.4e9, 1.4e9])  # were drawn at 0 and 1 GFLOP/s


def test_bad_arguments(tmp_path):
    with pytest.raises(InvalidInputError, match=r"\.jpg"):
        roofline_chart(_graph(), "h100", output=tmp_path / "x.jpg")
    with pytest.raises(UnknownDeviceError):
        roofline_chart(_graph(), "h1000")
    with pytest.raises(InvalidInputError, match="top"):
        roofline_chart(_graph(), "h100", top=-1)


def test_a_saved_machine_profile_is_a_device(tmp_path):
    """get_device (and so --device on the command line) accepts a profile saved by roofline.measure."""
    roofline = pytest.importorskip("costmodel.measure.harness")
    if not roofline.available():
        pytest.skip("the roofline extension is not built")
    from costmodel.devices import get_device

    prof = roofline.measure("cpu", quick=True, progress=False)
    path = prof.save(tmp_path / "cpu.json")
    dev = get_device(str(path))
    assert dev.source == "measured"
    assert dev.peak_flops("fp32", tensor=False) == pytest.approx(prof.peak_gflops["fp32"] * 1e9)
    assert get_device(prof).memory_bandwidth_gbps == dev.memory_bandwidth_gbps


def test_without_matplotlib_the_error_names_the_plot_extra(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # not installed
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(CostModelError, match=r'pip install "costmodel\[plot\]"'):
        roofline_chart(_graph(), "h100", output=tmp_path / "r.png")
    with pytest.raises(CostModelError, match=r'pip install "costmodel\[plot\]"'):
        machine_chart("h100", output=tmp_path / "m.png")
    assert not list(tmp_path.iterdir())


def test_timeline_points_sit_below_the_roof_where_the_learned_efficiency_puts_them(tmp_path):
    from costmodel.predictors import get_predictor

    g = _graph()
    ana = {p["node"]: p for p in op_points(g, "h200")}
    tl = {p["node"]: p for p in op_points(g, "h200", predictor="timeline")}
    assert set(tl) == set(ana)
    c = ceilings("h200")
    learned = {r["node"]: r for r in get_predictor("timeline").operator_times(g, "h200") if r["phase"] == "forward"}
    for nid, p in tl.items():
        # the point's time is the predictor's own operator time, never faster than the roof allows
        assert p["time_s"] == pytest.approx(learned[nid]["device_ms"] / 1e3)
        assert p["achieved_flops"] <= min(max(c["compute"].values()), p["intensity"] * c["memory"]["DRAM"]) * 1.0001
    assert any(tl[n]["time_s"] != pytest.approx(ana[n]["time_s"]) for n in tl)
    fig = roofline_chart(g, "h200", output=tmp_path / "tl.png", predictor="timeline", top=1)
    assert "learned efficiency" in fig.axes[0].get_ylabel()
    with pytest.raises(InvalidInputError, match="no per-operator times"):
        op_points(g, "h200", predictor="dippm")


def test_cli_roofline_with_the_timeline_predictor(tmp_path, capsys):
    from costmodel.cli import main

    out = tmp_path / "r.png"
    assert main(["roofline", "torchvision:resnet18", "--device", "h200", "--predictor", "timeline",
                 "-o", str(out)]) == 0
    assert out.stat().st_size > 5000 and "wrote" in capsys.readouterr().out


def test_roofline_under_autocast(tmp_path, capsys):
    """--autocast: the chart's graph is the autocast one, its convolutions costed as fp16 operators (faster
    than the same convolutions in fp32, which run at TF32, on the H200's roofline)."""
    import costmodel
    from costmodel.cli import main

    out = tmp_path / "amp.png"
    assert main(["roofline", "torchvision:resnet18", "--device", "h200", "--batch", "32", "--autocast", "fp16",
                 "-o", str(out)]) == 0
    assert out.stat().st_size > 5000
    # at batch 256 the convolutions are compute-bound: TF32 ceilings against fp16's (twice as high)
    g32 = costmodel.to_graph("torchvision:resnet18", batch=256, method="trace")
    amp = costmodel.to_graph("torchvision:resnet18", batch=256, method="trace", autocast="fp16")
    conv = lambda g: sum(p["time_s"] for p in op_points(g, "h200") if p["kind"] == "conv")  # noqa: E731
    assert conv(amp) < 0.75 * conv(g32)


def test_parity_chart_draws_each_panel_and_states_its_error(tmp_path):
    from costmodel.measure.charts import parity_chart

    out = tmp_path / "parity.png"
    fig = parity_chart([
        {"title": "held out", "measured": [1.0, 2.0, 4.0], "predicted": [1.05, 2.0, 3.0],
         "groups": ["host", "host", "device"], "unit": "latency (ms)"},
        {"title": "later", "measured": [10.0, 20.0], "predicted": [10.0, 30.0]},
    ], output=out)
    assert out.stat().st_size > 1000
    a, b = fig.axes
    # MAPE of (0.05 + 0 + 0.25) / 3 and (0 + 0.5) / 2; 2 of 3 and 1 of 2 within 10 %
    assert "MAPE 10.0 %, 67 % of 3 within 10 %" in a.get_title()
    assert "MAPE 25.0 %, 50 % of 2 within 10 %" in b.get_title()
    assert [t.get_text() for t in a.get_legend().get_texts()] == ["within 10 %", "host (2)", "device (1)"]
    assert a.get_xscale() == "log" and a.get_xlabel() == "measured latency (ms)"


@pytest.mark.parametrize("panels, match", [
    ([], "non-empty list"),
    ([{"measured": [1.0]}], "needs 'measured' and 'predicted'"),
    ([{"title": "t", "measured": [1.0, 2.0], "predicted": [1.0]}], "t: measured, predicted and groups"),
    ([{"measured": [1.0, 0.0], "predicted": [1.0, 1.0]}], "panel 0: point 1 is measured 0.0"),
    ([{"measured": [1.0], "predicted": [float("nan")]}], "positive finite"),
])
def test_parity_chart_rejects_points_it_cannot_place(panels, match):
    from costmodel.measure.charts import parity_chart

    with pytest.raises(InvalidInputError, match=match):
        parity_chart(panels)


def test_operators_are_timed_against_the_measured_ceilings_drawn():
    # with a machine profile the chart drew its measured peak but timed the operators with the database's
    # nominal cpu entry (1 TFLOP/s): a 2-core machine's convolutions sat ten times above the roof drawn
    from costmodel.devices.profile import MachineProfile

    prof = MachineProfile(
        kind="cpu", name="test cpu", isa="avx2", threads=2, pinned=True,
        peak_gflops={"fp32": 90.0, "fp64": 45.0}, peak_spread={}, bandwidth=(),
        levels={"L1": 400.0, "L2": 200.0, "L3": 100.0, "DRAM": 20.0}, plateaus=(),
        theoretical_peak_gflops=None, theoretical_basis="", caches=(), memory_total_bytes=8 * 2**30,
        elapsed_s=1.0, timestamp="2026-01-01T00:00:00+00:00",
    )  # fmt: skip
    fig = roofline_chart(_graph(), "cpu", machine=prof)
    ys = [y for coll in fig.axes[0].collections for _, y in coll.get_offsets()]
    assert ys and max(ys) <= 90.0e9 * (1 + 1e-9)
    with pytest.raises(InvalidInputError, match=r"profile measured a CPU .* is a GPU"):
        roofline_chart(_graph(), "h100", machine=prof)


def test_training_points_are_the_forward_pass_on_the_same_roof():
    """A training graph's node holds its forward FLOPs; its point is those FLOPs over the forward's time, so an
    operator sits where it sits in inference, not at a third of it (the step's backward kernels timed in too)."""
    m = nn.Sequential(nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 4096))
    x = torch.randn(512, 4096)
    infer = {p["node"]: p for p in op_points(from_torch(m, (x,)), "h100", mode="inference")}
    train = {p["node"]: p for p in op_points(from_torch(m, (x,), mode="training"), "h100", mode="training")}
    assert set(train) == set(infer)
    for nid, p in train.items():
        assert p["achieved_flops"] == pytest.approx(infer[nid]["achieved_flops"], rel=1e-6)
    c = ceilings("h100")
    big = max(train.values(), key=lambda p: p["flops"])  # a compute-bound GEMM: on its roof
    assert big["bound"] == "compute"
    assert big["achieved_flops"] >= 0.9 * min(c["compute"]["fp32"], big["intensity"] * c["memory"]["DRAM"])


def test_fp64_ceiling_says_tensor_core_where_its_figure_is_one():
    """The H100's fp64 67 TFLOP/s is its FP64 tensor-core rate (plain FP64 runs at half of it); a V100's 7.8
    is plain FP64 (Volta has no FP64 tensor cores)."""
    h100 = ceilings("h100")["compute"]
    assert "fp64" not in h100
    assert h100["fp64 tensor"] == pytest.approx(67e12) and h100["fp64 vector"] == pytest.approx(33.5e12)
    assert ceilings("a100-80gb")["compute"]["fp64 vector"] == pytest.approx(9.75e12)
    v100 = ceilings("v100-sxm2-16gb")["compute"]
    assert v100["fp64"] == pytest.approx(7.8e12) and not any(k.startswith("fp64 ") for k in v100)
    b200 = ceilings("b200")["compute"]  # FP64 and FP64 tensor core are one figure there
    assert "fp64" in b200 and "fp64 tensor" not in b200


def test_ceilings_of_one_height_but_another_kind_are_labelled_apart(tmp_path):
    """H100: plain fp32 and the fp64 tensor-core rate are both 67 TFLOP/s, but they are not the same ceiling;
    fp16 and bf16 tensor are, and share one label."""
    fig = roofline_chart(_graph(), "h100", output=tmp_path / "h100.png", top=1)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "fp32 67.0 TFLOP/s" in texts and "fp64 tensor 67.0 TFLOP/s" in texts
    assert "fp64 vector 33.5 TFLOP/s" in texts and "fp16 = bf16 tensor 989.4 TFLOP/s" in texts
    assert not any("fp32 =" in t or "= fp64" in t for t in texts)
    fig = roofline_chart(_graph(), "rtx-4090", top=1)  # tf32 tensor 82.6 and plain fp32 82.6
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "tf32 tensor 82.6 TFLOP/s" in texts and "fp32 82.6 TFLOP/s" in texts


def test_chart_title_names_the_autocast_dtype(tmp_path):
    m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
    fig = roofline_chart(m, "h200", batch=4, input_shape=(64,), autocast="bf16", top=1)
    assert "fp32, autocast bf16" in fig.axes[0].get_title()
    fig = roofline_chart(m, "h200", batch=4, input_shape=(64,), top=1)
    assert "autocast" not in fig.axes[0].get_title()


def test_a_profile_path_is_read_and_anything_else_refused(tmp_path):
    from costmodel.devices.profile import MachineProfile

    prof = MachineProfile(
        kind="cpu", name="test cpu", isa="avx2", threads=2, pinned=True,
        peak_gflops={"fp32": 90.0}, peak_spread={}, bandwidth=(), levels={"L1": 400.0, "DRAM": 20.0},
        plateaus=(), theoretical_peak_gflops=None, theoretical_basis="", caches=(), memory_total_bytes=8 * 2**30,
        elapsed_s=1.0, timestamp="2026-01-01T00:00:00+00:00",
    )  # fmt: skip
    path = prof.save(tmp_path / "p.json")
    for m in (path, str(path)):  # as the CLI's --profile reads it, not the datasheet's ceilings
        c = ceilings("cpu", m)
        assert c["compute"] == {"fp32 measured": pytest.approx(90e9)} and c["memory"]["L1"] == pytest.approx(400e9)
    with pytest.raises(InvalidInputError, match="no such file"):
        ceilings("cpu", str(tmp_path / "missing.json"))
    with pytest.raises(InvalidInputError, match=r"machine must be a measured profile .* got a int"):
        roofline_chart(_graph(), "cpu", machine=3)
