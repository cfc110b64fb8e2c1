"""Few-shot adaptation: costmodel.training.adapt and the `costmodel adapt` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from costmodel._errors import InvalidInputError, ModelLoadError, UnknownDeviceError
from costmodel.training import adapt, load_rows

CPU_ROWS = Path(__file__).resolve().parents[2] / "costmodel" / "data" / "cpu" / "vision.jsonl"


@pytest.fixture(scope="module")
def small_rows():
    rows = load_rows(CPU_ROWS, device="cpu")
    return rows.subset(list(range(12)))  # three models x four batch sizes


def test_load_rows(tmp_path):
    rows = load_rows(CPU_ROWS, device="cpu")
    assert len(rows) == 112 and {r.device for r in rows} == {"cpu"}
    # a folder holding vision.jsonl works too; OOM rows and transformer rows are skipped
    lines = CPU_ROWS.read_text().splitlines()[:3]
    lines.append(json.dumps({"spec": {"name": "resnet50", "src": "tv"}, "batch": 512, "mode": "infer",
                             "dtype": "fp32", "oom": True}))
    lines.append(json.dumps({"model": "gpt2", "mode": "forward", "batch": 1, "latency_ms": 1.0}))
    (tmp_path / "vision.jsonl").write_text("\n".join(lines) + "\n")
    assert len(load_rows(tmp_path, device="cpu")) == 3
    with pytest.raises(ModelLoadError, match="no measured rows"):
        load_rows(tmp_path / "missing.jsonl", device="cpu")
    with pytest.raises(UnknownDeviceError):
        load_rows(CPU_ROWS, device="h1000")


def test_rows_of_another_device_are_refused(tmp_path):
    # the CPU rows name the CPU (their hardware.json) and adapting the H100's predictor on them passed
    with pytest.raises(InvalidInputError, match=r"holds rows of cpu, not H100-SXM5-80GB .*--device 'cpu'"):
        load_rows(CPU_ROWS, device="h100")
    # without a hardware.json, by the rows' own device names
    row = json.loads(CPU_ROWS.read_text().splitlines()[0])
    (tmp_path / "vision.jsonl").write_text(json.dumps({**row, "device": "NVIDIA H200"}) + "\n")
    with pytest.raises(InvalidInputError, match=r"rows were measured on 'NVIDIA H200'"):
        load_rows(tmp_path, device="a100")
    assert len(load_rows(tmp_path, device="h200")) == 1


def test_adapt_improves_held_out_rows_and_saves(small_rows, tmp_path):
    from costmodel.predictors import get_predictor

    g0 = small_rows.graph(0)
    shipped = get_predictor("dippm").predict(g0, "cpu").to_dict()
    res = adapt("dippm", small_rows, shots=8, epochs=40, progress=False)
    # fine-tuning starts from the cached shipped predictor and leaves it as it was
    assert get_predictor("dippm").predict(g0, "cpu").to_dict() == shipped
    assert len(res.train_rows) == 8 and len(res.test_rows) == 4
    assert set(res.train_rows).isdisjoint(res.test_rows)
    # the H200-trained model is far off on this CPU; a few CPU rows pull it in
    assert res.after["mape"] < res.before["mape"]
    assert res.predictor.meta["adapted_from"] == "dippm" and "cpu" in res.predictor.meta["devices"]
    res.predictor.save(tmp_path / "a")
    again = get_predictor(str(tmp_path / "a"))
    g = small_rows.graph(res.test_rows[0])
    from costmodel.devices import get_device

    e1 = res.predictor.predict(g, get_device("cpu"))
    e2 = again.predict(g, get_device("cpu"))
    assert e1.latency_ms == pytest.approx(e2.latency_ms, rel=1e-5)
    assert "before" in res.table() and "after" in res.table()


def test_adapt_rejects_bad_arguments(small_rows):
    with pytest.raises(InvalidInputError, match="shots"):
        adapt("dippm", small_rows, shots=2)
    with pytest.raises(InvalidInputError, match="only 12"):
        adapt("dippm", small_rows, shots=64)
    with pytest.raises(InvalidInputError, match="does not support adaptation"):
        adapt("analytic", small_rows, shots=8)


def test_cli(tmp_path, capsys):
    from costmodel.cli import main

    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(CPU_ROWS.read_text().splitlines()[:8]) + "\n")
    out = tmp_path / "artifact"
    code = main(["adapt", "--device", "cpu", "--data", str(data), "--shots", "6", "--epochs", "2",
                 "-o", str(out), "--json"])
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["shots"] == 6 and rep["held_out"] == 2 and rep["artifact"] == str(out)
    assert (out / "config.json").exists()
    assert main(["adapt", "--device", "cpu", "--data", str(tmp_path / "none.jsonl")]) == 2
