import json
import math

import pytest

from costmodel.cli import main
from costmodel.collect import calls_for, collect, measure_cpu
from costmodel.datasets import PerfDataset, default_root


def test_calls_for_protocol():
    assert calls_for(0.001) == 250  # 0.25 s window
    assert calls_for(0.05) == 10  # at least 10 calls
    assert calls_for(1.0) == 3  # capped at 2.5 s, at least 3
    assert calls_for(0.2) == 10
    assert calls_for(0.3) == 8  # 10 calls would exceed 2.5 s


SPEC = {"family": "misc", "name": "squeezenet1_1", "res": 64, "src": "tv"}


def test_measure_cpu_row():
    r = measure_cpu(SPEC, 1)
    assert r["latency_ms"] > 0 and len(r["latency_ms_chunks"]) == 3
    assert r["params"] == 1_235_496
    # protocol: >= 10 calls unless that would pass 2.5 s (a loaded machine), never < 3
    assert r["iters"] >= 3
    # the window is the timed calls: iters x mean latency
    assert r["iters"] * r["latency_ms"] / 1e3 == pytest.approx(r["window_s"], rel=0.2, abs=0.01)
    assert r["energy_j"] is None and r["device"]


def test_collect_is_resumable(tmp_path):
    out = tmp_path / "rows.jsonl"
    assert collect([SPEC], [1, 2], out, progress=False, cooldown_s=0) == 2
    assert collect([SPEC], [1, 2], out, progress=False, cooldown_s=0) == 0
    assert len(out.read_text().splitlines()) == 2


def test_collect_cli_errors(capsys, tmp_path):
    assert main(["collect", str(tmp_path / "nope.json"), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_packaged_cpu_measurements():
    ds = PerfDataset.load(device="cpu")
    assert len(ds) == 112 and ds[0].device == "cpu"
    assert {r.batch for r in ds} == {1, 2, 4, 8} and len({r.model for r in ds}) == 28
    assert all(r.latency_ms > 0 for r in ds)
    assert all(math.isnan(r.energy_j) and math.isnan(r.memory_mb) for r in ds)
    hw = json.loads((default_root() / "cpu" / "hardware.json").read_text())
    assert hw["costmodel_device"] == "cpu"
