"""Rows measured on a GPU the device database does not list train and adapt predictors: the dataset and
``load_rows`` label them with the hardware.json that derives the GPU from its CUDA properties."""

import json
from pathlib import Path

import pytest

import costmodel
from costmodel import UnknownDeviceError
from costmodel.datasets import PerfDataset
from costmodel.devices import get_device
from costmodel.predictors._timeline import TimelineConfig, TimelinePredictor
from costmodel.training import adapt, load_rows

PACKAGED = Path(costmodel.__file__).parent / "data" / "h200" / "vision.jsonl"
NAME = "NVIDIA A10G"


@pytest.fixture(scope="module")
def folder(tmp_path_factory, request):
    """A ``costmodel collect`` folder of an A10G (not in the database): its hardware.json with the CUDA
    properties, and 8 rows (packaged workloads, relabelled; the labels only have to be numbers here)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "cuda_devices.py"
    spec = importlib.util.spec_from_file_location("cuda_devices", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    props = vars(mod.reported_properties("A10", name=NAME, multi_processor_count=80, clock_rate=1710000))
    root = tmp_path_factory.mktemp("rows")
    (root / "gpu").mkdir()
    hw = {f"prop_{k}": v for k, v in props.items()}
    hw.update(name=NAME, power_limit_w=300.0, peak_matmul={"fp16": {"tflops": 70.0}}, bandwidth={"copy_1024mb_gbps": 520.0})
    (root / "gpu" / "hardware.json").write_text(json.dumps(hw))
    rows = [json.loads(x) for x in PACKAGED.read_text().splitlines() if x.strip()]
    keep = [r for r in rows if r["spec"]["name"] in ("resnet18", "mobilenet_v2") and r["mode"] == "infer"][:8]
    with open(root / "gpu" / "vision.jsonl", "w") as f:
        for r in keep:
            f.write(json.dumps({**r, "device": NAME}) + "\n")
    return root


def test_the_dataset_names_the_file_that_derives_the_gpu(folder):
    hw = folder / "gpu" / "hardware.json"
    with pytest.raises(UnknownDeviceError):
        get_device(NAME)  # the name alone is not enough: the database does not list it
    ds = PerfDataset.load(folder, device="gpu")
    assert len(ds) == 8 and {r.device for r in ds.rows} == {str(hw.resolve())}
    dev = get_device(ds.rows[0].device)
    assert (dev.name, dev.sm_count, dev.tdp_w) == (NAME, 80, 300.0)
    # a listed GPU's rows keep its name
    assert {r.device for r in PerfDataset.load().rows[:5]} == {"NVIDIA H200"}


def test_a_timeline_trains_on_them_and_counts_the_gpu_as_measured(folder):
    ds = PerfDataset.load(folder, device="gpu")
    pred = TimelinePredictor(TimelineConfig(epochs=3, hidden=8)).fit(ds)
    assert pred.params.trained_on["devices"] == [NAME]
    g = ds.graph(0)
    own = pred.predict(g, str(folder / "gpu" / "hardware.json"))
    other = pred.predict(g, "h200")
    assert own.latency_ms > 0 and not own.extrapolated_device and other.extrapolated_device


def test_load_rows_and_adapt_take_the_hardware_json(folder):
    hw = folder / "gpu" / "hardware.json"
    rows = load_rows(folder / "gpu", device=str(hw))
    assert len(rows) == 8 and get_device(rows[0].device).name == NAME
    res = adapt("dippm", rows, shots=4, epochs=1, progress=False)
    assert res.device == str(hw.resolve())
    assert res.before is not None and res.after is not None and len(res.test_rows) == 4
    with pytest.raises(UnknownDeviceError):
        load_rows(folder / "gpu", device=NAME)


def test_the_adapt_command_takes_the_hardware_json(folder, tmp_path, monkeypatch, capsys):
    from costmodel.cli import main

    monkeypatch.chdir(tmp_path)
    hw = folder / "gpu" / "hardware.json"
    code = main(["adapt", "--device", str(hw), "--data", str(folder / "gpu"), "--shots", "6", "--epochs", "1",
                 "--json"])
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    # the default folder is named by the GPU, not by the file's path
    assert rep["artifact"] == "adapted-dippm-nvidia-a10g" and (tmp_path / rep["artifact"] / "config.json").exists()
    est = costmodel.estimate("resnet18", batch=8, device=str(hw), predictor=str(tmp_path / rep["artifact"]))
    assert est.latency_ms > 0 and not est.extrapolated_device
    # the artifact names the GPU, not the file (which may be gone when the artifact is used)
    meta = json.loads((tmp_path / rep["artifact"] / "config.json").read_text())
    assert NAME in json.dumps(meta) and str(hw.resolve()) not in json.dumps(meta.get("meta", meta))
    assert main(["adapt", "--device", NAME, "--data", str(folder / "gpu")]) == 2  # the name alone: unknown
