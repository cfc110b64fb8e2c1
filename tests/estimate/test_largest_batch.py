"""The largest batch that fits a limit: the search, the two answers (replayed memory and its interval's upper
end), their use by the compile backend, and the CLI's ``--max-batch``."""

import json
import random
import warnings

import pytest
import torch
from torch import nn

import costmodel
from costmodel import InvalidInputError, OOMRiskWarning, OOMWarning
from costmodel.analysis.memreplay import replay_memory
from costmodel.cli._main import main
from costmodel.estimate import search_batch


def _brute(mem, cap, limit):
    fits = [b for b in range(1, limit + 1) if mem(b) <= cap]
    return max(fits) if fits else 0


@pytest.mark.parametrize("seed", range(40))
def test_the_search_finds_what_trying_every_batch_finds(seed):
    rng = random.Random(seed)
    fixed, slope = rng.uniform(100, 5000), rng.uniform(0.5, 300)
    knee = rng.randint(1, 400)  # below it a plateau (the optimizer's state is the peak), then a line
    wiggle = [rng.uniform(0, 0.4 * slope) for _ in range(2001)]  # allocator rounding: not a straight line

    def mem(b):
        return fixed + slope * max(0, b - knee) + sum(wiggle[: b]) / max(b, 1) + 1e-3 * b

    calls = []

    def counted(b):
        calls.append(b)
        return mem(b)

    limit = rng.choice([64, 1000, 2000])
    cap = rng.uniform(fixed * 0.9, fixed + slope * 900)
    lo, hi = search_batch(counted, cap, limit)
    assert lo == _brute(mem, cap, limit)
    if lo:
        assert mem(lo) <= cap
    if hi is not None:
        assert hi == lo + 1 and mem(hi) > cap
    else:
        assert lo == limit
    assert len(calls) == len(set(calls)), "a batch was replayed twice"
    assert len(calls) <= 2 * limit.bit_length() + 4


def test_known_values_are_not_asked_again():
    calls = []

    def mem(b):
        calls.append(b)
        return 1000.0 + 10.0 * b

    lo, hi = search_batch(mem, 1500.0, 4096, known={1: 1010.0, 30: 1300.0, 80: 1800.0})
    assert (lo, hi) == (50, 51)
    assert 1 not in calls and 30 not in calls and 80 not in calls
    assert len(calls) <= 3  # the line through 30 and 80 is the function: its guess and the batch beside it


def _net():
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def test_both_answers_sit_on_their_limit():
    m = _net()
    one = replay_memory(m, "h200", batch=1, input_shape=(3, 64, 64), mode="training")
    cap = one.memory_mb + 900.0
    fit = costmodel.largest_batch(m, device="h200", mode="training", input_shape=(3, 64, 64), memory_mb=cap)
    assert fit["path"] == "replay" and fit["coverage"] == pytest.approx(0.9) and fit["limit_mb"] == cap

    def at(b):
        return replay_memory(m, "h200", batch=b, input_shape=(3, 64, 64), mode="training")

    b, u = fit["batch"], fit["upper_batch"]
    assert at(b).memory_mb <= cap < at(b + 1).memory_mb
    assert fit["memory_mb"] == pytest.approx(at(b).memory_mb)
    assert at(u).interval_mb[1] <= cap < at(u + 1).interval_mb[1]
    assert fit["upper_memory_mb"] == pytest.approx(at(u).interval_mb[1])
    # the training group's upper end is above the replayed memory, so it fits fewer samples
    assert at(1).interval_mb[1] > at(1).memory_mb and 0 < u < b


def test_a_mig_slice_is_a_limit_and_bad_limits_are_refused():
    fit = costmodel.largest_batch("torchvision:resnet18", device="a100-40gb", mig="1g.5gb", input_shape=(3, 64, 64),
                                  limit=64)
    assert fit["limit"] == "MIG 1g.5gb" and fit["limit_mb"] == 4.75 * 1024  # what the GPU instance holds
    assert fit["batch"] == 64 and fit["next_memory_mb"] is None and fit["capped"]  # the search stops at its cap
    with pytest.raises(InvalidInputError, match=r"unknown MIG profile '9g.1tb'.*choose one of 1g.5gb"):
        costmodel.largest_batch("torchvision:resnet18", device="a100-40gb", mig="9g.1tb")
    with pytest.raises(InvalidInputError, match="T4 has no MIG profiles"):
        costmodel.largest_batch("torchvision:resnet18", device="t4", mig="1g.5gb")
    with pytest.raises(InvalidInputError, match="not both"):
        costmodel.largest_batch("torchvision:resnet18", memory_mb=1000, mig="1g.18gb")
    with pytest.raises(InvalidInputError, match="memory_mb must be a positive number of MB, got -5"):
        costmodel.largest_batch("torchvision:resnet18", memory_mb=-5)
    with pytest.raises(InvalidInputError, match="needs input_shape"):
        costmodel.largest_batch(_net())
    with pytest.raises(InvalidInputError, match="mode must be one of"):
        costmodel.largest_batch("torchvision:resnet18", mode="serve")
    with pytest.raises(InvalidInputError, match=r"'gpt2' is a transformer.*largest_llm_batch\('gpt2', seq="):
        costmodel.largest_batch("gpt2", memory_mb=1000)


def test_none_fits_when_one_sample_is_over():
    fit = costmodel.largest_batch("torchvision:resnet18", input_shape=(3, 64, 64), memory_mb=10.0)
    assert fit["batch"] == 0 and fit["upper_batch"] == 0 and fit["memory_mb"] is None
    assert fit["next_memory_mb"] > 10.0
    assert fit["latency_ms"] is None and fit["throughput_samples_s"] is None and fit["latency_batch"] is None


def test_each_answer_carries_its_latency_on_the_memory_it_answers_for():
    from costmodel.devices import slice_device
    from costmodel.frontends import to_graph
    from costmodel.predictors import get_predictor

    fits = costmodel.largest_batch("torchvision:resnet18", device="h200", mode="training", input_shape=(3, 64, 64),
                                   mig="all", limit=256)
    pred = get_predictor(None)
    for f in fits:
        b = f["upper_batch"] or f["batch"]
        sl = slice_device("h200", f["limit"].removeprefix("MIG "))
        assert f["latency_batch"] == b and f["latency_device"] == sl.name
        g = to_graph("torchvision:resnet18", batch=b, input_shape=(3, 64, 64), mode="training")
        assert f["latency_ms"] == pytest.approx(pred.predict(g, sl, mode="training").latency_ms, rel=1e-6)
        assert f["throughput_samples_s"] == pytest.approx(b / (f["latency_ms"] / 1e3))
    # the smallest slice is the slowest at the same capped batch (an eighth of the SMs and bandwidth; the whole
    # GPU's step is partly the host's)
    assert fits[0]["latency_batch"] == fits[-1]["latency_batch"] and fits[0]["latency_ms"] > 2 * fits[-1]["latency_ms"]
    # a number of MB answers on the device itself; latency=False leaves the prediction out
    mb = costmodel.largest_batch("torchvision:resnet18", device="h200", input_shape=(3, 64, 64), memory_mb=3000.0,
                                 limit=64)
    assert mb["latency_device"] == "H200-SXM5-141GB" and mb["latency_ms"] > 0
    bare = costmodel.largest_batch("torchvision:resnet18", device="h200", input_shape=(3, 64, 64), memory_mb=3000.0,
                                   limit=64, latency=False)
    assert "latency_ms" not in bare and bare["batch"] == mb["batch"]


def test_the_compile_backend_warns_of_a_risk_between_the_memory_and_its_upper_end():
    m = _net()
    probe = costmodel.torch_backend(device="h200", inner="eager")
    torch._dynamo.reset()
    with torch.no_grad():
        torch.compile(m, backend=probe)(torch.randn(64, 3, 64, 64))
    est = probe.estimates[0]
    lo, hi = est.memory_mb_interval
    assert hi > est.memory_mb
    limit = (est.memory_mb + hi) / 2  # the memory fits; its upper end does not
    be = costmodel.torch_backend(device="h200", memory_limit_mb=limit, inner="eager")
    torch._dynamo.reset()
    with warnings.catch_warnings(record=True) as w, torch.no_grad():
        warnings.simplefilter("always")
        torch.compile(m, backend=be)(torch.randn(64, 3, 64, 64))
    risk = [x for x in w if issubclass(x.category, OOMWarning)]
    assert len(risk) == 1 and issubclass(risk[0].category, OOMRiskWarning)
    text = str(risk[0].message)
    assert "may run out of memory" in text and f"{hi:,.0f} MB" in text
    safe = int(text.rsplit(" ", 1)[-1])

    def upper(b):
        return replay_memory(m, "h200", batch=b, input_shape=(3, 64, 64)).interval_mb[1]

    assert 0 < safe < 64 and upper(safe) <= limit < upper(safe + 1)
    # over the limit outright: the plain warning, naming both batches
    be = costmodel.torch_backend(device="h200", memory_limit_mb=est.memory_mb - 50.0, inner="eager")
    torch._dynamo.reset()
    with warnings.catch_warnings(record=True) as w, torch.no_grad():
        warnings.simplefilter("always")
        torch.compile(m, backend=be)(torch.randn(64, 3, 64, 64))
    (over,) = [x for x in w if issubclass(x.category, OOMWarning)]
    assert over.category is OOMWarning and "upper end fits is" in str(over.message)


def test_the_cli_prints_both_batches(capsys):
    argv = ["predict", "torchvision:resnet18", "--batch", "8", "--input", "3,64,64", "--device", "h200",
            "--mode", "training", "--max-batch", "--memory-mb", "3000"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "max batch    " in out and "by its 90 % interval's upper end" in out and "3,000 MB" in out
    assert main([*argv, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)["details"]["max_batch"]
    assert d["limit_mb"] == 3000.0 and 0 < d["upper_batch"] <= d["batch"] and "traced" not in d
    assert main(["predict", "torchvision:resnet18", "--batch", "8", "--device", "h200", "--mig", "1g.18gb"]) == 2
    assert "--mig is the limit of --max-batch" in capsys.readouterr().err


def test_the_cli_answers_for_every_slice(capsys):
    argv = ["predict", "torchvision:resnet18", "--batch", "8", "--device", "a100-40gb", "--mode", "training",
            "--max-batch", "--mig", "all", "--json"]
    assert main(argv) == 0
    fits = json.loads(capsys.readouterr().out)["details"]["max_batch"]
    names = [p.name for p in costmodel.get_device("a100-40gb").mig_profiles]
    assert [f["limit"] for f in fits] == [f"MIG {n}" for n in sorted(names, key=lambda n: (
        costmodel.get_device("a100-40gb").mig_profiles[names.index(n)].memory_mb, n))]
    batches = [f["batch"] for f in fits]
    assert batches == sorted(batches) and batches[0] < batches[-1]  # a larger slice never fits fewer
    direct = costmodel.largest_batch("torchvision:resnet18", device="a100-40gb", mode="training",
                                     mig=fits[0]["limit"].split()[-1])
    assert (direct["batch"], direct["upper_batch"]) == (fits[0]["batch"], fits[0]["upper_batch"])
    assert main(["predict", "torchvision:resnet18", "--batch", "8", "--device", "t4", "--max-batch",
                 "--mig", "all"]) == 2
    assert "T4 has no MIG profiles" in capsys.readouterr().err


def test_a_module_with_example_inputs():
    m = _net()
    by_shape = costmodel.largest_batch(m, device="h200", input_shape=(3, 64, 64), memory_mb=2500.0)
    by_inputs = costmodel.largest_batch(m, device="h200", inputs=(torch.randn(4, 3, 64, 64),), memory_mb=2500.0)
    assert (by_inputs["batch"], by_inputs["upper_batch"]) == (by_shape["batch"], by_shape["upper_batch"])
    with pytest.raises(InvalidInputError, match="not both"):
        costmodel.largest_batch(m, input_shape=(3, 64, 64), inputs=(torch.randn(4, 3, 64, 64),))
    with pytest.raises(InvalidInputError, match="no tensor with a batch dimension"):
        costmodel.largest_batch(m, inputs=(torch.tensor(1.0),))


def _onnx(path, *, dynamic: bool):
    kw = {"input_names": ["x"], "dynamic_axes": {"x": {0: "batch"}}} if dynamic else {}
    torch.onnx.export(_net().eval(), (torch.randn(2, 3, 64, 64),), str(path), dynamo=False, **kw)
    return path


def test_an_onnx_file_is_searched_by_its_graph(tmp_path):
    path = _onnx(tmp_path / "dyn.onnx", dynamic=True)
    fit = costmodel.largest_batch(str(path), device="h200", memory_mb=2000.0)
    assert fit["path"] == "liveness-fallback" and 0 < fit["upper_batch"] <= fit["batch"]
    from costmodel.frontends import to_graph

    def walk(b):
        g = to_graph(str(path), batch=b)
        return replay_memory(g, "h200", batch=b, graph=g)

    b = fit["batch"]
    assert walk(b).memory_mb <= 2000.0 < walk(b + 1).memory_mb
    # the estimate at that batch walks the same graph: its memory is the search's
    assert costmodel.estimate(str(path), batch=b, device="h200", predictor="analytic").memory_mb == pytest.approx(
        fit["memory_mb"])
    static = _onnx(tmp_path / "static.onnx", dynamic=False)
    with pytest.raises(InvalidInputError, match="fixed batch dimension of size 2.*dynamic batch dimension"):
        costmodel.largest_batch(str(static), memory_mb=2000.0)
    with pytest.raises(InvalidInputError, match="an ONNX graph takes input_shape"):
        costmodel.largest_batch(str(path), inputs=(torch.randn(2, 3, 64, 64),))


def test_the_cli_draws_the_answers(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    chart = tmp_path / "fit.png"
    argv = ["predict", "torchvision:resnet18", "--batch", "8", "--input", "3,64,64", "--device", "h200",
            "--mode", "training", "--max-batch", "--memory-mb", "3000"]
    assert main([*argv, "--plot", str(chart)]) == 0
    assert f"chart        {chart}" in capsys.readouterr().out
    assert chart.stat().st_size > 10_000 and chart.read_bytes()[:4] == b"\x89PNG"
    assert main([*argv, "--plot", str(tmp_path / "fit.txt")]) == 2
    assert "must end in one of" in capsys.readouterr().err
    assert main(argv[:-3] + ["--plot", str(chart)]) == 2
    assert "--plot draws the answer of --max-batch" in capsys.readouterr().err
    from costmodel.measure.charts import fit_chart

    with pytest.raises(InvalidInputError, match="at least one answer"):
        fit_chart([])


def test_a_latency_target_gives_the_largest_batch_within_it():
    from costmodel.devices import slice_device
    from costmodel.frontends import to_graph
    from costmodel.predictors import get_predictor

    pred = get_predictor(None)
    sl = slice_device("h200", "1g.18gb")

    def lat(b):
        return pred.predict(to_graph("torchvision:resnet18", batch=b, input_shape=(3, 64, 64)), sl).latency_ms

    target = 1.5 * lat(1)
    fit = costmodel.largest_batch("torchvision:resnet18", device="h200", mig="1g.18gb", input_shape=(3, 64, 64),
                                  limit=512, latency_slo_ms=target)
    b = fit["slo_batch"]
    assert 1 <= b < fit["latency_batch"] and fit["latency_slo_ms"] == target
    assert lat(b) <= target < lat(b + 1) and fit["slo_latency_ms"] == pytest.approx(lat(b), rel=1e-6)
    assert fit["slo_throughput_samples_s"] == pytest.approx(b / (fit["slo_latency_ms"] / 1e3))
    none = costmodel.largest_batch("torchvision:resnet18", device="h200", mig="1g.18gb", input_shape=(3, 64, 64),
                                   limit=512, latency_slo_ms=0.5 * lat(1))
    assert none["slo_batch"] == 0 and none["slo_latency_ms"] is None
    with pytest.raises(InvalidInputError, match="latency_slo_ms needs latency=True"):
        costmodel.largest_batch("torchvision:resnet18", device="h200", latency=False, latency_slo_ms=10)
    with pytest.raises(InvalidInputError, match="expected latency_slo_ms to be a finite number > 0"):
        costmodel.largest_batch("torchvision:resnet18", device="h200", latency_slo_ms=0)


def test_the_latency_at_the_answer_is_the_asked_predictors(capsys):
    """``costmodel predict --predictor analytic --max-batch`` gave the answer's latency by the default
    (timeline) predictor, beside an analytic table: the two disagreed at the same batch and device."""
    m = _net()
    one = replay_memory(m, "t4", batch=1, input_shape=(3, 64, 64))
    fit = costmodel.largest_batch(m, device="t4", input_shape=(3, 64, 64), memory_mb=one.memory_mb + 200.0,
                                  predictor="analytic")
    b = fit["latency_batch"]
    assert b and fit["latency_ms"] == pytest.approx(
        costmodel.estimate(m, batch=b, input_shape=(3, 64, 64), device="t4", predictor="analytic").latency_ms)
    argv = ["predict", "torchvision:resnet18", "--batch", "4", "--input", "3,64,64", "--device", "t4",
            "--predictor", "analytic", "--max-batch", "--memory-mb", "1700", "--json"]
    assert main(argv) == 0
    got = json.loads(capsys.readouterr().out)["details"]["max_batch"]
    est = costmodel.estimate("torchvision:resnet18", batch=got["latency_batch"], input_shape=(3, 64, 64),
                             device="t4", predictor="analytic")
    assert got["latency_ms"] == pytest.approx(est.latency_ms)
