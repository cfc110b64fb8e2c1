import json
import math
import sys
import time
import types
from pathlib import Path

import pytest
import torch

import costmodel.collect as C
from costmodel._errors import InvalidInputError
from costmodel.cli import main
from costmodel.collect import (
    WorkItem,
    calls_for,
    collect,
    load_work,
    measure,
    measure_cpu,
    output_paths,
    parse_work,
    row_key,
)
from costmodel.datasets import PerfDataset, default_root

SPECS_DIR = Path(C.__file__).resolve().parent / "data" / "specs"
SPEC = {"family": "misc", "name": "squeezenet1_1", "res": 64, "src": "tv"}
TINY_GPT2 = {"model": "tiny-gpt2", "model_type": "gpt2", "causal": True,
             "config": {"n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 256, "n_positions": 128,
                        "bos_token_id": 0, "eos_token_id": 0}}
TINY_BERT = {"model": "tiny-bert", "model_type": "bert", "causal": False,
             "config": {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2,
                        "intermediate_size": 64, "vocab_size": 256, "max_position_embeddings": 128}}

VISION_GPU_FIELDS = {"batch", "device", "dtype", "energy_j", "input", "iters", "latency_ms", "latency_ms_chunks", "mode",
                     "nvml_used_mb", "params", "peak_alloc_mb", "peak_reserved_mb", "power_w", "power_w_sample", "spec",
                     "weights_mb", "window_s"}
LLM_GPU_FIELDS = {"batch", "causal", "config", "device", "dtype", "energy_j", "iters", "latency_ms", "latency_ms_chunks",
                  "mode", "model", "model_type", "nvml_used_mb", "params", "peak_alloc_mb", "peak_reserved_mb", "power_w",
                  "power_w_sample", "seq", "throughput_samples_s", "tokens_s", "weights_mb", "window_s"}


def _fake_measure(delay=0.0, oom_batch=None):
    calls = []

    def fn(item, device="cpu"):
        calls.append(item)
        if delay:
            time.sleep(delay)
        if item.batch == oom_batch:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return {"spec": item.spec, "mode": item.mode, "dtype": item.dtype, "batch": item.batch, "latency_ms": 1.0,
                "device": device}

    fn.calls = calls
    return fn


def _rows(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


# ------------------------------------------------------------------ protocol
def test_calls_for_protocol():
    assert calls_for(0.001) == 250  # 0.25 s window
    assert calls_for(0.05) == 10  # at least 10 calls
    assert calls_for(1.0) == 3  # capped at 2.5 s, at least 3
    assert calls_for(0.2) == 10
    assert calls_for(0.3) == 8  # 10 calls would exceed 2.5 s
    assert C._chunk_sizes(10) == [4, 3, 3] and C._chunk_sizes(250) == [84, 83, 83]
    assert C._chunk_sizes(3) == [1, 1, 1] and C._chunk_sizes(8) == [3, 3, 2]


def test_measure_cpu_row():
    r = measure_cpu(SPEC, 1)
    assert r["latency_ms"] > 0 and len(r["latency_ms_chunks"]) == 3
    assert r["params"] == 1_235_496
    # protocol: >= 10 calls unless that would pass 2.5 s (a loaded machine), never < 3
    assert r["iters"] >= 3
    # the window is the timed calls: iters x mean latency
    assert r["iters"] * r["latency_ms"] / 1e3 == pytest.approx(r["window_s"], rel=0.2, abs=0.01)
    assert r["device"] and r["rss_mb"] > 0 and r["nvml_used_mb"] is None
    # RAPL energy where this machine exposes it, else null with the reason
    if C._Rapl().error:
        assert r["energy_j"] is None and r["power_w"] is None and "RAPL" in r["energy_error"]
    else:
        assert r["energy_j"] is not None and r["energy_j"] >= 0


def test_measure_cpu_training_and_transformers():
    r = measure(dict(SPEC, res=32), 2, device="cpu", mode="train")
    assert r["mode"] == "train" and r["latency_ms"] > 0 and r["iters"] >= 3
    fwd = measure(TINY_BERT, 2, device="cpu", seq=16)
    assert fwd["mode"] == "forward" and fwd["model"] == "tiny-bert" and fwd["config"]["model_type"] == "bert"
    assert fwd["tokens_s"] == pytest.approx(2 * 16 / (fwd["latency_ms"] / 1e3))
    dec = measure(TINY_GPT2, 2, device="cpu", mode="decode", seq=16, dtype="bf16")
    # decode: 8 one-token steps after a prefilled cache, timed as one chunk
    assert dec["iters"] == C.DECODE_TOKENS and len(dec["latency_ms_chunks"]) == 1
    assert dec["tokens_s"] == pytest.approx(dec["throughput_samples_s"])
    assert dec["causal"] is True and dec["seq"] == 16 and dec["dtype"] == "bf16"
    pre = measure(TINY_GPT2, 2, device="cpu", seq=16)
    assert pre["mode"] == "prefill" and pre["params"] == dec["params"]
    assert LLM_GPU_FIELDS - {"weights_mb", "peak_alloc_mb", "peak_reserved_mb", "power_w_sample"} <= set(pre)


# --------------------------------------------------- the CUDA path, simulated
class _FakeEvent:
    def __init__(self, enable_timing=False):
        self.t = None

    def record(self, stream=None):
        self.t = time.perf_counter()

    def elapsed_time(self, end):
        return (end.t - self.t) * 1e3


class _FakeMeter:
    def __init__(self):
        self.e = 1000.0
        self.error = self.energy_error = None

    def energy_j(self):
        self.e += 2.5
        return self.e

    def delta(self, e0, e1):
        return e1 - e0

    def power_w(self):
        return 123.0

    def used_mb(self):
        return 2048.0


@pytest.fixture
def fake_cuda(monkeypatch):
    """The CUDA branches of the protocol on the CPU: events, allocator stats and NVML faked."""
    tc = torch.cuda
    for name, fn in {"synchronize": lambda *a, **k: None, "empty_cache": lambda: None,
                     "reset_peak_memory_stats": lambda *a, **k: None, "memory_allocated": lambda *a: 100 * 2**20,
                     "max_memory_allocated": lambda *a: 300 * 2**20, "max_memory_reserved": lambda *a: 400 * 2**20,
                     "get_device_name": lambda *a: "Fake GPU"}.items():
        monkeypatch.setattr(tc, name, fn)
    monkeypatch.setattr(tc, "Event", _FakeEvent)
    d = object.__new__(C._Device)
    d.torch, d.cuda, d.index, d.dev, d.name = torch, True, 0, torch.device("cpu"), "Fake GPU"
    d.meter, d.context_used_mb = _FakeMeter(), 500.0
    monkeypatch.setattr(C, "_device", lambda device: d)
    yield d
    C._drop_model()


def test_cuda_path_rows_have_the_data_fields(fake_cuda):
    r = measure(SPEC, 1, device="cuda")
    assert VISION_GPU_FIELDS <= set(r) and set(r) - VISION_GPU_FIELDS <= {"costmodel_version"}
    assert r["device"] == "Fake GPU" and r["weights_mb"] == 100 and r["peak_alloc_mb"] == 300
    assert r["peak_reserved_mb"] == 400 and r["nvml_used_mb"] == 2048 and r["power_w_sample"] == 123
    assert r["energy_j"] == pytest.approx(2.5 / r["iters"])  # counter delta over the window, per call
    assert r["power_w"] == pytest.approx(2.5 / r["window_s"], rel=0.05)
    assert len(r["latency_ms_chunks"]) == 3
    # the packaged rows have the same fields
    packaged = json.loads((default_root() / "h200" / "vision.jsonl").read_text().splitlines()[0])
    assert set(packaged) <= set(r)
    t = measure(dict(SPEC, res=32), 2, device="cuda", mode="train")
    assert t["mode"] == "train" and VISION_GPU_FIELDS <= set(t)
    dec = measure(TINY_GPT2, 1, device="cuda", mode="decode", seq=8)
    assert set(dec) - {"costmodel_version"} == LLM_GPU_FIELDS
    packaged = json.loads((default_root() / "h200" / "llm.jsonl").read_text().splitlines()[0])
    assert set(packaged) <= set(dec)


def test_cuda_hardware_description_and_nvml(fake_cuda, monkeypatch):
    calls = []

    class Mem:
        used = 3 * 2**30

    fake = types.SimpleNamespace(
        NVML_CLOCK_SM=1, NVML_CLOCK_MEM=2,
        nvmlInit=lambda: calls.append("init"),
        nvmlDeviceGetHandleByUUID=lambda u: calls.append(u) or "h",
        nvmlDeviceGetHandleByIndex=lambda i: "h",
        nvmlDeviceGetTotalEnergyConsumption=lambda h: 5_000_000,
        nvmlDeviceGetPowerUsage=lambda h: 150_000,
        nvmlDeviceGetMemoryInfo=lambda h: Mem(),
        nvmlDeviceGetName=lambda h: b"Fake GPU",
        nvmlDeviceGetEnforcedPowerLimit=lambda h: 700_000,
        nvmlDeviceGetMaxClockInfo=lambda h, k: 1980 if k == 1 else 3201,
        nvmlDeviceGetMemoryBusWidth=lambda h: 6016,
        nvmlSystemGetDriverVersion=lambda: "580.1",
        nvmlDeviceGetMigMode=lambda h: [0, 0],
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    props = types.SimpleNamespace(uuid="1234-abcd", name="Fake GPU", major=9, minor=0, total_memory=80 * 2**30,
                                  multi_processor_count=132)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda *a: props)
    nv = C._Nvml(0)
    assert nv.error is None and "GPU-1234-abcd" in calls
    assert nv.energy_j() == 5000.0 and nv.power_w() == 150.0 and nv.used_mb() == 3072.0
    fake_cuda.meter = nv
    hw = C.hardware_description("cuda")
    assert hw["kind"] == "cuda" and hw["name"] == "Fake GPU" and hw["driver"] == "580.1"
    assert hw["power_limit_w"] == 700.0 and hw["mig_mode"] == [0, 0] and hw["prop_multi_processor_count"] == 132
    assert hw["context_used_mb"] == 500.0 and hw["energy_counter"] is True and "peak_matmul" not in hw
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed: null energy with the reason
    nv = C._Nvml(0)
    assert nv.error and nv.energy_j() is None and nv.used_mb() is None


def _fake_pynvml(**overrides):
    class Mem:
        used = 3 * 2**30

    fns = dict(
        NVML_CLOCK_SM=1, NVML_CLOCK_MEM=2,
        nvmlInit=lambda: None,
        nvmlDeviceGetHandleByUUID=lambda u: "h",
        nvmlDeviceGetHandleByIndex=lambda i: "h",
        nvmlDeviceGetTotalEnergyConsumption=lambda h: 5_000_000,
        nvmlDeviceGetPowerUsage=lambda h: 150_000,
        nvmlDeviceGetMemoryInfo=lambda h: Mem(),
        nvmlDeviceGetName=lambda h: b"Fake GPU",
        nvmlDeviceGetEnforcedPowerLimit=lambda h: 700_000,
        nvmlDeviceGetMaxClockInfo=lambda h, k: 1980,
        nvmlDeviceGetMemoryBusWidth=lambda h: 6016,
        nvmlSystemGetDriverVersion=lambda: "580.1",
        nvmlDeviceGetMigMode=lambda h: [0, 0],
    )
    fns.update(overrides)
    return types.SimpleNamespace(**fns)


def test_without_pynvml_a_warning_once_and_the_reason_recorded(fake_cuda, monkeypatch, capsys):
    monkeypatch.setattr(C, "_WARNED", set())
    monkeypatch.setitem(sys.modules, "pynvml", None)  # the import fails: nvidia-ml-py is not installed
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda *a: types.SimpleNamespace(uuid="1234", name="Fake GPU", multi_processor_count=132))
    nv = C._Nvml(0)
    assert nv.handle is None and "nvidia-ml-py" in nv.error and 'pip install "costmodel[gpu]"' in nv.error
    err = capsys.readouterr().err
    assert err.count("costmodel: warning:") == 1 and 'pip install "costmodel[gpu]"' in err
    C._Nvml(0)  # a second device handle: no second warning
    assert capsys.readouterr().err == ""
    fake_cuda.meter = nv
    r = measure(SPEC, 1, device="cuda")
    assert r["energy_j"] is None and r["power_w"] is None and r["nvml_used_mb"] is None
    assert "nvidia-ml-py" in r["energy_error"] and "nvidia-ml-py" in r["memory_error"]
    hw = C.hardware_description("cuda")
    assert hw["energy_counter"] is False and "nvidia-ml-py" in hw["nvml_error"]
    assert "nvidia-ml-py" in hw["energy_error"] and "nvidia-ml-py" in hw["memory_error"]


def test_nvml_that_cannot_read_energy_or_memory_says_so(fake_cuda, monkeypatch, capsys):
    monkeypatch.setattr(C, "_WARNED", set())

    def unsupported(h):
        raise RuntimeError("Not Supported")

    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(nvmlDeviceGetTotalEnergyConsumption=unsupported,
                                                           nvmlDeviceGetMemoryInfo=unsupported))
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda *a: types.SimpleNamespace(uuid="1234", name="Fake GPU", multi_processor_count=132))
    nv = C._Nvml(0)
    assert nv.error is None and "energy counter" in nv.energy_error and "memory" in nv.memory_error
    err = capsys.readouterr().err
    assert err.count("costmodel: warning:") == 2 and "Not Supported" in err
    fake_cuda.meter = nv
    r = measure(SPEC, 1, device="cuda")
    assert r["energy_j"] is None and "energy counter" in r["energy_error"]
    assert r["nvml_used_mb"] is None and "nvml_used_mb" in r["memory_error"]
    assert r["power_w_sample"] == 150.0  # what NVML can read is still recorded
    hw = C.hardware_description("cuda")
    assert hw["energy_counter"] is False and "energy counter" in hw["energy_error"] and "memory" in hw["memory_error"]


def test_unbuildable_specs_fail_before_the_first_row(tmp_path, monkeypatch):
    fn = _fake_measure()
    monkeypatch.setattr(C, "measure", fn)
    bad_kw = dict(SPEC, kw={"speed": 2})
    with pytest.raises(InvalidInputError, match="unexpected keyword argument 'speed'"):
        collect([SPEC, bad_kw], [1], tmp_path / "v.jsonl", progress=False, cooldown_s=0)
    unknown_type = dict(TINY_GPT2, model="x", model_type="gpt3", batch=1, seq=8)
    heads = dict(TINY_GPT2, model="y", config=dict(TINY_GPT2["config"], n_embd=33), batch=1, seq=8)
    with pytest.raises(InvalidInputError, match="model_type 'gpt3'") as e:
        collect(parse_work({"llm": [unknown_type]}), tmp_path / "v.jsonl", progress=False, cooldown_s=0)
    assert len(str(e.value)) < 300  # the closest few types and a count, not all of them
    with pytest.raises(InvalidInputError, match="not divisible"):
        collect(parse_work({"llm": [heads]}), tmp_path / "v.jsonl", progress=False, cooldown_s=0)
    assert fn.calls == [] and not (tmp_path / "v.jsonl").exists()


def test_cli_run_where_every_row_failed_is_one_error_line(tmp_path, monkeypatch, capsys):
    def boom(item, device="cpu"):
        raise RuntimeError("the kernel crashed")

    monkeypatch.setattr(C, "measure", boom)
    work = tmp_path / "w.json"
    work.write_text(json.dumps([SPEC]))
    assert main(["collect", str(work), "-o", str(tmp_path / "o.jsonl"), "--cooldown", "0"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == ("costmodel: error: no row could be measured: 1 failed (first: "
                                    "squeezenet1_1@64 infer fp32 b1: RuntimeError: the kernel crashed)")


# --------------------------------------------------------------- work files
def test_parse_work_file_formats(tmp_path):
    items = parse_work({
        "grid": [{"mode": "infer", "dtype": "fp32", "batch": [1, 8]}, {"mode": "train", "dtype": "fp32", "batch": 4}],
        "vision": [{"spec": SPEC},
                   {"spec": dict(SPEC, res=32), "batch": [2], "mode": "infer", "dtype": ["fp32", "fp16"]},
                   {"spec": dict(SPEC, res=48), "grid": [{"mode": "train", "batch": 2}]}],
        "llm": [{"model": "gpt2", "mode": ["prefill", "decode"], "dtype": "fp16", "batch": [1, 8], "seq": 512},
                dict(TINY_BERT, batch=2, seq=[16, 32])],
    })
    v = [i for i in items if i.kind == "vision"]
    assert [(i.spec["res"], i.mode, i.dtype, i.batch) for i in v] == [
        (64, "infer", "fp32", 1), (64, "infer", "fp32", 8), (64, "train", "fp32", 4),
        (32, "infer", "fp32", 2), (32, "infer", "fp16", 2), (48, "train", "fp32", 2)]
    llm = [i for i in items if i.kind == "llm"]
    assert len(llm) == 4 + 2
    assert llm[0].spec["model_type"] == "gpt2" and llm[0].spec["causal"] and llm[0].spec["config"]["n_layer"] == 12
    assert {i.mode for i in llm[4:]} == {"forward"} and [i.seq for i in llm[4:]] == [16, 32]
    # the old format: a JSON list or JSONL of specs with --batch
    (tmp_path / "l.json").write_text(json.dumps([SPEC, dict(SPEC, res=32)]))
    (tmp_path / "l.jsonl").write_text(json.dumps(SPEC) + "\n" + json.dumps(dict(SPEC, res=32)) + "\n")
    for f in ("l.json", "l.jsonl"):
        w = load_work(tmp_path / f, batches=[1, 2])
        assert [(i.spec["res"], i.batch, i.mode, i.dtype) for i in w] == [
            (64, 1, "infer", "fp32"), (64, 2, "infer", "fp32"), (32, 1, "infer", "fp32"), (32, 2, "infer", "fp32")]
    assert len(load_work(tmp_path / "l.json")) == 2  # batch 1 by default


@pytest.mark.parametrize("data, msg", [
    ({"vision": [{"spec": SPEC, "batch": 1, "mode": "inference"}]}, "unknown mode 'inference'; valid: infer, train"),
    ({"vision": [{"spec": SPEC, "batch": 1, "dtype": "fp8"}]}, "unknown dtype 'fp8'; valid: fp32, fp16, bf16"),
    ({"vision": [{"spec": SPEC, "batch": [1, 0]}]}, "batch sizes must be positive integers, got 0"),
    ({"vision": [{"spec": SPEC, "batches": [1]}]}, "unknown keys ['batches']"),
    ({"vision": [{"spec": SPEC}]}, "no batch sizes"),
    ({"vision": [{"spec": dict(SPEC, src="keras")}]}, "spec 'src' must be one of tv, tv_resnet, tv_vit, timm"),
    ({"vison": []}, "unknown keys ['vison']"),
    ({"vision": []}, "nothing to measure"),
    ({"llm": [dict(TINY_BERT, batch=1, seq=8, mode="decode")]}, "mode 'decode' is not valid for an encoder"),
    ({"llm": [dict(TINY_GPT2, batch=1, seq=124, mode="decode")]}, "exceeds the model's 128 positions"),
    ({"llm": [dict(TINY_GPT2, batch=1)]}, "'seq' is missing"),
    ({"llm": [{"model": "no-such-llm", "batch": 1, "seq": 8}]}, "no-such-llm"),
    ("resnet50", "expected a JSON object"),
    ([], "nothing to measure: the list of specs is empty"),
    ({"vision": [{"spec": dict(SPEC, speed=2), "batch": 1}]}, "unknown spec keys ['speed']"),
])
def test_work_validation_errors(data, msg):
    with pytest.raises(InvalidInputError) as e:
        parse_work(data)
    assert msg in str(e.value)


def test_batch_flag_only_for_plain_lists():
    with pytest.raises(InvalidInputError, match="--batch applies to a plain list"):
        parse_work({"vision": [{"spec": SPEC, "batch": 1}]}, batches=[2])


def test_shipped_cpu_spec_list_reproduces_the_cpu_data():
    items = load_work(SPECS_DIR / "cpu_vision.json")
    rows = _rows(default_root() / "cpu" / "vision.jsonl")
    assert len(items) == 112
    assert {i.key() for i in items} == {row_key(r["spec"], r["batch"], r["mode"], r["dtype"]) for r in rows}


def test_shipped_gpu_extension():
    items = load_work(SPECS_DIR / "h200_extend.json")
    assert 60 <= len(items) <= 95
    vision = [i for i in items if i.kind == "vision"]
    packaged = _rows(default_root() / "h200" / "vision.jsonl")
    names = {r["spec"]["name"] for r in packaged}
    families = {r["spec"]["family"] for r in packaged}
    check = [i for i in vision if i.spec["name"] in names]
    new = [i for i in vision if i.spec["name"] not in names]
    # a few leading rows repeat packaged ones (a harness check); then only new architectures
    assert len(check) <= 6 and vision[: len(check)] == check
    new_specs = {json.dumps(i.spec, sort_keys=True) for i in new}
    assert len(new_specs) >= 10
    assert all(json.loads(s).get("family") for s in new_specs)
    assert len({json.loads(s)["family"] for s in new_specs} - families) >= 8
    for s in new_specs:  # the packaged grid for every new architecture
        grid = {(i.mode, i.dtype, i.batch) for i in new if json.dumps(i.spec, sort_keys=True) == s}
        assert grid == {("infer", "fp32", 1), ("infer", "fp32", 8), ("infer", "fp32", 32), ("infer", "fp32", 128),
                        ("train", "fp32", 32), ("infer", "fp16", 32)}
    assert all(i.kind == "llm" for i in items[len(vision):])  # transformer rows last


def test_gpu_extension_models_build():
    """Every spec of the GPU extension builds (on the meta device: no weights)."""
    from costmodel.frontends.zoo import build_zoo_model

    seen = set()
    for i in load_work(SPECS_DIR / "h200_extend.json"):
        key = i.group()
        if i.kind == "vision" and key not in seen:
            seen.add(key)
            zm = build_zoo_model(i.spec)
            assert zm.input_shape == (3, i.spec["res"], i.spec["res"])


# ------------------------------------------------------------------ collect
def test_collect_is_resumable(tmp_path):
    out = tmp_path / "rows.jsonl"
    assert collect([SPEC], [1, 2], out, progress=False, cooldown_s=0) == 2
    assert collect([SPEC], [1, 2], out, progress=False, cooldown_s=0) == 0
    assert len(out.read_text().splitlines()) == 2
    assert json.loads((tmp_path / "hardware.json").read_text())["kind"] == "cpu"


def test_resume_uses_the_full_key(tmp_path, monkeypatch):
    fn = _fake_measure()
    monkeypatch.setattr(C, "measure", fn)
    out = tmp_path / "vision.jsonl"
    items = [(SPEC, 1, "infer", "fp32"), (SPEC, 1, "infer", "fp16"), (SPEC, 1, "train", "fp32"),
             WorkItem(SPEC, 2, "infer", "fp32")]
    assert collect(items[:2], out, progress=False, cooldown_s=0) == 2
    out.write_text(out.read_text() + '{"spec": {"name": "cut mid-li')  # an interrupted write
    stats = {}
    assert collect(items + items, output=out, progress=False, cooldown_s=0, stats=stats) == 2
    assert [(c.mode, c.dtype, c.batch) for c in fn.calls[2:]] == [("train", "fp32", 1), ("infer", "fp32", 2)]
    assert stats["skipped"] == 6
    rows = [json.loads(x) for x in out.read_text().splitlines() if x.strip() and not x.endswith("li")]
    assert len(rows) == 4


def test_oom_is_a_row_and_the_run_goes_on(tmp_path, monkeypatch):
    fn = _fake_measure(oom_batch=128)
    monkeypatch.setattr(C, "measure", fn)
    out = tmp_path / "vision.jsonl"
    stats = {}
    n = collect([SPEC], [1, 128, 8], out, progress=False, cooldown_s=0, stats=stats)
    rows = _rows(out)
    assert n == 3 and stats["oom"] == 1 and [r["batch"] for r in rows] == [1, 128, 8]
    oom = rows[1]
    assert oom["oom"] is True and oom["spec"] == SPEC and oom["mode"] == "infer" and oom["dtype"] == "fp32"
    assert "out of memory" in oom["error"] and "latency_ms" not in oom
    # the row counts as measured: a resumed run does not retry it
    assert collect([SPEC], [1, 128, 8], out, progress=False, cooldown_s=0) == 0
    # and the packaged-data loader skips it
    assert len(PerfDataset.load(tmp_path.parent, device=tmp_path.name)) == 2


def test_other_failures_are_skipped_not_written(tmp_path, monkeypatch, capsys):
    def boom(item, device="cpu"):
        if item.batch == 2:
            raise ValueError("bad model")
        return _fake_measure()(item, device)

    monkeypatch.setattr(C, "measure", boom)
    stats = {}
    assert collect([SPEC], [1, 2, 4], tmp_path / "v.jsonl", progress=False, cooldown_s=0, stats=stats) == 2
    assert list(stats["failed"].values()) == ["ValueError: bad model"]
    assert "skipped squeezenet1_1@64 infer fp32 b2: ValueError: bad model" in capsys.readouterr().err


class _Clock:
    """A clock the test moves: each measured row takes ``row_s`` seconds of it."""

    def __init__(self, row_s: float):
        self.t, self.row_s = 1000.0, row_s

    def __call__(self) -> float:
        return self.t


def test_budget_stops_between_rows_and_a_rerun_resumes(tmp_path, monkeypatch, capsys):
    clock = _Clock(row_s=10.0)
    fn = _fake_measure()

    def measure_10s(item, device="cpu"):
        clock.t += clock.row_s
        return fn(item, device)

    monkeypatch.setattr(C, "measure", measure_10s)
    out = tmp_path / "vision.jsonl"
    stats = {}
    # rows of 10 s under a 35 s budget: 3 rows (30 s); a 4th would end at 40 s, so it is not started
    n = collect([SPEC], list(range(1, 21)), out, progress=False, cooldown_s=0, budget_s=35, stats=stats, clock=clock)
    assert n == 3 and [c.batch for c in fn.calls] == [1, 2, 3]
    assert stats["budget_stopped"] is True and stats["left"] == 17 and stats["written"] == 3
    text = out.read_text()
    assert text.endswith("\n") and [r["batch"] for r in _rows(out)] == [1, 2, 3]  # whole rows only
    assert "time budget of 35 s reached: 17 rows left" in capsys.readouterr().err
    # a second run measures only the rows the first one left
    stats = {}
    n = collect([SPEC], list(range(1, 21)), out, progress=False, cooldown_s=0, budget_s=1000, stats=stats,
                clock=clock)
    assert n == 17 and stats["skipped"] == 3 and stats["budget_stopped"] is False and stats["left"] == 0
    assert [c.batch for c in fn.calls] == list(range(1, 21))  # nothing measured twice
    assert [r["batch"] for r in _rows(out)] == list(range(1, 21))


def test_limit_measures_the_first_rows_left(tmp_path, monkeypatch):
    fn = _fake_measure()
    monkeypatch.setattr(C, "measure", fn)
    out = tmp_path / "vision.jsonl"
    stats = {}
    assert collect([SPEC], list(range(1, 11)), out, progress=False, cooldown_s=0, limit=3, stats=stats) == 3
    assert stats["left"] == 7 and stats["budget_stopped"] is False
    assert collect([SPEC], list(range(1, 11)), out, progress=False, cooldown_s=0, limit=3, stats=stats) == 3
    assert stats["left"] == 4 and [r["batch"] for r in _rows(out)] == [1, 2, 3, 4, 5, 6]


def test_llm_rows_go_to_a_sibling_file(tmp_path, monkeypatch):
    def fake(item, device="cpu"):
        if item.kind == "vision":
            return _fake_measure()(item, device)
        return {"model": item.spec["model"], "mode": item.mode, "dtype": item.dtype, "batch": item.batch,
                "seq": item.seq, "latency_ms": 1.0}

    monkeypatch.setattr(C, "measure", fake)
    assert output_paths(tmp_path / "vision_extend.jsonl")["llm"] == tmp_path / "llm_extend.jsonl"
    assert output_paths(tmp_path / "llm.jsonl") == {"llm": tmp_path / "llm.jsonl", "vision": tmp_path / "vision.jsonl"}
    assert output_paths(tmp_path / "rows.jsonl")["llm"] == tmp_path / "rows_llm.jsonl"
    items = parse_work({"vision": [{"spec": SPEC, "batch": 1}], "llm": [dict(TINY_GPT2, batch=1, seq=[8, 16])]})
    out = tmp_path / "vision_extend.jsonl"
    assert collect(items, out, progress=False, cooldown_s=0) == 3
    assert len(_rows(out)) == 1 and [r["seq"] for r in _rows(tmp_path / "llm_extend.jsonl")] == [8, 16]
    assert collect(items, out, progress=False, cooldown_s=0) == 0


def test_progress_bar(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(C, "measure", _fake_measure())
    collect([SPEC], [1, 2], tmp_path / "v.jsonl", cooldown_s=0, progress=True)
    assert "2/2" in capsys.readouterr().err


# ---------------------------------------------------------------------- CLI
def test_collect_cli_errors(capsys, tmp_path):
    assert main(["collect", str(tmp_path / "nope.json"), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    work = tmp_path / "w.json"
    work.write_text(json.dumps({"vision": [{"spec": SPEC, "batch": 1, "mode": "fast"}]}))
    assert main(["collect", str(work), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "unknown mode 'fast'; valid: infer, train" in capsys.readouterr().err
    work.write_text("{not json")
    assert main(["collect", str(work), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "neither a JSON work file" in capsys.readouterr().err
    work.write_text(json.dumps([SPEC]))
    assert main(["collect", str(work), "--device", "tpu", "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "unknown device 'tpu'; valid: cpu, cuda, cuda:N" in capsys.readouterr().err
    assert main(["collect", str(work), "--budget", "0", "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "--budget must be > 0 seconds, got 0" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_is_a_clear_error(capsys, tmp_path):
    work = tmp_path / "w.json"
    work.write_text(json.dumps([SPEC]))
    assert main(["collect", str(work), "--device", "cuda", "-o", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("costmodel: error: no CUDA device") and "Traceback" not in err
    with pytest.raises(InvalidInputError, match="no CUDA device"):
        measure(SPEC, 1, device="cuda")


def test_collect_cli_end_to_end(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(C, "measure", _fake_measure(oom_batch=4))
    work = tmp_path / "w.json"
    work.write_text(json.dumps({"vision": [{"spec": SPEC, "batch": [1, 2, 4], "mode": "infer"}]}))
    out = tmp_path / "d" / "vision.jsonl"
    assert main(["collect", str(work), "-o", str(out), "--cooldown", "0", "--limit", "2"]) == 0
    assert "wrote 2 rows" in capsys.readouterr().out
    assert main(["collect", str(work), "-o", str(out), "--cooldown", "0"]) == 0
    msg = capsys.readouterr().out
    assert "wrote 1 rows" in msg and "2 already there, 1 out of memory" in msg
    assert len(_rows(out)) == 3 and (out.parent / "hardware.json").exists()


# ---------------------------------------------------------------------- Ray
def test_ray_local_cluster(tmp_path, capsys):
    work = tmp_path / "w.json"
    tiny = [{"family": "misc", "name": "squeezenet1_1", "res": 32, "src": "tv"},
            {"family": "resnet", "name": "resnet18", "res": 32, "src": "tv"}]
    work.write_text(json.dumps({"vision": [{"spec": s, "batch": 1, "mode": "infer"} for s in tiny]}))
    out = tmp_path / "ray" / "vision.jsonl"
    assert main(["collect", str(work), "--ray", "local", "-o", str(out), "--cooldown", "0"]) == 0
    rows = _rows(out)
    assert sorted(r["spec"]["name"] for r in rows) == ["resnet18", "squeezenet1_1"]
    assert all(r["latency_ms"] > 0 and r["iters"] >= 3 for r in rows)
    assert json.loads((out.parent / "hardware.json").read_text())["kind"] == "cpu"
    assert "wrote 2 rows" in capsys.readouterr().out
    # resumable through Ray too: nothing left, no cluster started
    assert collect(load_work(work), out, ray_address="local", progress=False) == 0


def test_packaged_cpu_measurements():
    ds = PerfDataset.load(device="cpu")
    assert len(ds) == 112 and ds[0].device == "cpu"
    assert {r.batch for r in ds} == {1, 2, 4, 8} and len({r.model for r in ds}) == 28
    assert all(r.latency_ms > 0 for r in ds)
    assert all(math.isnan(r.energy_j) and math.isnan(r.memory_mb) for r in ds)
    hw = json.loads((default_root() / "cpu" / "hardware.json").read_text())
    assert hw["costmodel_device"] == "cpu"
