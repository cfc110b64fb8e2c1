"""The measurement protocol of one row (costmodel.measure.protocol), on the CPU and on a simulated
CUDA device, with the NVML probes of costmodel.measure.probes."""

from __future__ import annotations

import json
import sys
import time
import types

import pytest
import torch

from costmodel import InvalidInputError
import costmodel.measure.models as M
import costmodel.measure.probes as probes
import costmodel.measure.protocol as P
from costmodel.datasets import default_root
from costmodel.measure import calls_for, measure, measure_cpu


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





# ------------------------------------------------------------------ protocol
def test_calls_for_protocol():
    assert calls_for(0.001) == 250  # 0.25 s window
    assert calls_for(0.05) == 10  # at least 10 calls
    assert calls_for(1.0) == 3  # capped at 2.5 s, at least 3
    assert calls_for(0.2) == 10
    assert calls_for(0.3) == 8  # 10 calls would exceed 2.5 s
    assert P._chunk_sizes(10) == [4, 3, 3] and P._chunk_sizes(250) == [84, 83, 83]
    assert P._chunk_sizes(3) == [1, 1, 1] and P._chunk_sizes(8) == [3, 3, 2]


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
    if probes._Rapl().error:
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
    assert dec["iters"] == P.DECODE_TOKENS and len(dec["latency_ms_chunks"]) == 1
    assert dec["tokens_s"] == pytest.approx(dec["throughput_samples_s"])
    assert dec["causal"] is True and dec["seq"] == 16 and dec["dtype"] == "bf16"
    pre = measure(TINY_GPT2, 2, device="cpu", seq=16)
    assert pre["mode"] == "prefill" and pre["params"] == dec["params"]
    assert LLM_GPU_FIELDS - {"weights_mb", "peak_alloc_mb", "peak_reserved_mb", "power_w_sample"} <= set(pre)

def test_an_encoder_decoder_is_measured_as_it_is_costed():
    t5 = {"model": "tiny-t5", "model_type": "t5", "causal": False,
          "config": {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2, "d_kv": 16,
                     "vocab_size": 256}}
    from costmodel.frontends.hf import build_hf_model

    model, _ = build_hf_model("t5", t5["config"])
    fwd = measure(t5, 2, device="cpu", seq=16)  # its decoder gets the tokens too
    assert fwd["mode"] == "forward" and fwd["params"] == sum(p.numel() for p in model.parameters())
    dec = measure(t5, 2, device="cpu", mode="decode", seq=16)  # steps against both caches
    assert dec["iters"] == P.DECODE_TOKENS and dec["tokens_s"] == pytest.approx(dec["throughput_samples_s"])
    t5_step = measure(t5, 2, device="cpu", mode="training", seq=16)  # its seq2seq loss on the tokens
    assert t5_step["mode"] == "training" and t5_step["latency_ms"] > 0
    with pytest.raises(InvalidInputError, match="not valid for an encoder-decoder.*valid: forward, decode, training"):
        measure(t5, 2, device="cpu", mode="prefill", seq=16)


def test_an_encoder_decoders_target_length_is_measured_keyed_and_read_back(tmp_path):
    from costmodel.datasets import PerfDataset
    from costmodel.measure.work import key_of_row, parse_work

    t5 = {"model": "tiny-t5", "model_type": "t5", "causal": False,
          "config": {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2, "d_kv": 16,
                     "vocab_size": 256}}
    items = parse_work({"llm": [dict(t5, mode=["forward", "training"], batch=2, seq=16, target_seq=[4, 32])]})
    assert sorted((i.mode, i.target_seq) for i in items) == [("forward", 4), ("forward", 32), ("training", 4),
                                                            ("training", 32)]
    assert len({i.key() for i in items}) == 4 and "t4" in items[0].label()
    # a row measured with the same target as its source keeps the key rows had before targets existed
    same = parse_work({"llm": [dict(t5, batch=2, seq=16)]})[0]
    assert same.key() == json.dumps(["llm", "tiny-t5", "forward", "fp32", 2, 16])
    rows = [measure(i, device="cpu") for i in items if i.mode == "training"]
    assert [r["target_seq"] for r in rows] == [4, 32] and all(r["latency_ms"] > 0 for r in rows)
    assert {key_of_row(r) for r in rows} == {i.key() for i in items if i.mode == "training"}
    # the dataset builds each row's graph with its target: the longer target, the more work
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "llm.jsonl").write_text("".join(json.dumps(dict(r, device="cpu")) + "\n" for r in rows))
    ds = PerfDataset.load(tmp_path, device="cpu", kinds=("llm",))
    g4, g32 = ds.graph(0), ds.graph(1)
    assert g4.meta["target_seq"] == 4 and g32.meta["target_seq"] == 32 and g4.flops < g32.flops
    with pytest.raises(InvalidInputError, match="'target_seq' is an encoder-decoder's"):
        parse_work({"llm": [dict(TINY_GPT2, batch=2, seq=16, target_seq=4)]})
    with pytest.raises(InvalidInputError, match="target_seq 200 .*exceeds the model's 128 positions"):
        parse_work({"llm": [dict(TINY_BERT, model_type="bart", model="tiny-bart", causal=False,
                                 config={"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "vocab_size": 256,
                                         "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                                         "max_position_embeddings": 128},
                                 batch=1, seq=16, target_seq=200)]})


def test_a_transformer_fine_tuning_step_is_measured(tmp_path):
    step = measure(TINY_GPT2, 2, device="cpu", mode="training", seq=16)
    pre = measure(TINY_GPT2, 2, device="cpu", seq=16)
    assert step["mode"] == "training" and step["optimizer"] == "adamw" and step["iters"] >= 3
    assert step["tokens_s"] == pytest.approx(2 * 16 / (step["latency_ms"] / 1e3))
    assert step["params"] == pre["params"]
    # the dataset reads it back as a training row with the step's graph (the loss included)
    from costmodel.datasets import PerfDataset

    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "llm.jsonl").write_text(json.dumps(dict(step, device="cpu")) + "\n")
    ds = PerfDataset.load(tmp_path, device="cpu", kinds=("llm",))
    assert ds[0].mode == "training" and ds[0].phase == "training" and ds[0].has_graph
    g = ds.graph(0)
    assert g.meta["mode"] == "training" and any(n.kind == "softmax" and "cross_entropy" in n.op for n in g.nodes)


#: what a GPU row adds beyond the packaged fields when its energy is read between counter updates
ENERGY_SPAN_FIELDS = {"energy_method", "energy_j_window", "power_w_window", "energy_span"}


# --------------------------------------------------- the CUDA path, simulated
class _FakeEvent:
    def __init__(self, enable_timing=False):
        self.t = None

    def record(self, stream=None):
        self.t = time.perf_counter()

    def elapsed_time(self, end):
        return (end.t - self.t) * 1e3

    def query(self):
        return True


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
    d = object.__new__(probes._Device)
    d.torch, d.cuda, d.index, d.dev, d.name = torch, True, 0, torch.device("cpu"), "Fake GPU"
    d.meter, d.context_used_mb = _FakeMeter(), 500.0
    monkeypatch.setattr(P, "_device", lambda device: d)
    monkeypatch.setattr(probes, "_device", lambda device: d)
    yield d
    M._drop_model()


def test_cuda_path_rows_have_the_data_fields(fake_cuda):
    r = measure(SPEC, 1, device="cuda")
    # window_replanned_from_s: present where the calibration was slower than the calls (a busy machine)
    assert VISION_GPU_FIELDS <= set(r) and set(r) - VISION_GPU_FIELDS <= {"costmodel_version", *ENERGY_SPAN_FIELDS,
                                                                         "window_replanned_from_s"}
    assert r["device"] == "Fake GPU" and r["weights_mb"] == 100 and r["peak_alloc_mb"] == 300
    assert r["peak_reserved_mb"] == 400 and r["nvml_used_mb"] == 2048 and r["power_w_sample"] == 123
    assert r["energy_j_window"] == pytest.approx(2.5 / r["iters"])  # counter delta over the window, per call
    assert r["power_w_window"] == pytest.approx(2.5 / r["window_s"], rel=0.05)
    # the energy span: the fake counter advances at every read, so the span is read between two of them
    assert r["energy_method"] == "counter-updates" and r["energy_span"]["span_s"] >= 0.3
    assert r["energy_j"] == pytest.approx(r["power_w"] * r["latency_ms"] / 1e3)
    plain = measure(SPEC, 1, device="cuda", energy_span_s=0)  # the packaged protocol's reading
    assert plain["energy_method"] == "window" and "energy_j_window" not in plain
    assert plain["energy_j"] == pytest.approx(2.5 / plain["iters"])
    assert len(r["latency_ms_chunks"]) == 3
    # the packaged rows have the same fields
    packaged = json.loads((default_root() / "h200" / "vision.jsonl").read_text().splitlines()[0])
    assert set(packaged) <= set(r)
    t = measure(dict(SPEC, res=32), 2, device="cuda", mode="train")
    assert t["mode"] == "train" and VISION_GPU_FIELDS <= set(t)
    dec = measure(TINY_GPT2, 1, device="cuda", mode="decode", seq=8)
    assert set(dec) - {"costmodel_version", "window_replanned_from_s"} == LLM_GPU_FIELDS | {"energy_method"}
    assert dec["energy_method"] == "window"  # a decode window grows its cache: no span after it
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
    nv = probes._Nvml(0)
    assert nv.error is None and "GPU-1234-abcd" in calls
    assert nv.energy_j() == 5000.0 and nv.power_w() == 150.0 and nv.used_mb() == 3072.0
    fake_cuda.meter = nv
    hw = probes.hardware_description("cuda")
    assert hw["kind"] == "cuda" and hw["name"] == "Fake GPU" and hw["driver"] == "580.1"
    assert hw["power_limit_w"] == 700.0 and hw["mig_mode"] == [0, 0] and hw["prop_multi_processor_count"] == 132
    assert hw["context_used_mb"] == 500.0 and hw["energy_counter"] is True and "peak_matmul" not in hw
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed: null energy with the reason
    nv = probes._Nvml(0)
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
    monkeypatch.setattr(probes, "_WARNED", set())
    monkeypatch.setitem(sys.modules, "pynvml", None)  # the import fails: nvidia-ml-py is not installed
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda *a: types.SimpleNamespace(uuid="1234", name="Fake GPU", multi_processor_count=132))
    nv = probes._Nvml(0)
    assert nv.handle is None and "nvidia-ml-py" in nv.error and 'pip install "costmodel[gpu]"' in nv.error
    err = capsys.readouterr().err
    assert err.count("costmodel: warning:") == 1 and 'pip install "costmodel[gpu]"' in err
    probes._Nvml(0)  # a second device handle: no second warning
    assert capsys.readouterr().err == ""
    fake_cuda.meter = nv
    r = measure(SPEC, 1, device="cuda")
    assert r["energy_j"] is None and r["power_w"] is None and r["nvml_used_mb"] is None
    assert "nvidia-ml-py" in r["energy_error"] and "nvidia-ml-py" in r["memory_error"]
    hw = probes.hardware_description("cuda")
    assert hw["energy_counter"] is False and "nvidia-ml-py" in hw["nvml_error"]
    assert "nvidia-ml-py" in hw["energy_error"] and "nvidia-ml-py" in hw["memory_error"]


def test_nvml_that_cannot_read_energy_or_memory_says_so(fake_cuda, monkeypatch, capsys):
    monkeypatch.setattr(probes, "_WARNED", set())

    def unsupported(h):
        raise RuntimeError("Not Supported")

    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(nvmlDeviceGetTotalEnergyConsumption=unsupported,
                                                           nvmlDeviceGetMemoryInfo=unsupported))
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda *a: types.SimpleNamespace(uuid="1234", name="Fake GPU", multi_processor_count=132))
    nv = probes._Nvml(0)
    assert nv.error is None and "energy counter" in nv.energy_error and "memory" in nv.memory_error
    err = capsys.readouterr().err
    assert err.count("costmodel: warning:") == 2 and "Not Supported" in err
    fake_cuda.meter = nv
    r = measure(SPEC, 1, device="cuda")
    assert r["energy_j"] is None and "energy counter" in r["energy_error"]
    assert r["nvml_used_mb"] is None and "nvml_used_mb" in r["memory_error"]
    assert r["power_w_sample"] == 150.0  # what NVML can read is still recorded
    hw = probes.hardware_description("cuda")
    assert hw["energy_counter"] is False and "energy counter" in hw["energy_error"] and "memory" in hw["memory_error"]




def test_a_transformer_row_records_the_kernels_it_ran(tmp_path):
    # on this CPU a Mamba model runs transformers' reference scan and convolution: the row says so, and the
    # dataset costs a row that ran the fused scan (on a GPU with mamba_ssm) with the stand-ins
    from costmodel.datasets import PerfDataset

    mamba = {"model": "tiny-mamba", "model_type": "mamba", "causal": True,
             "config": {"hidden_size": 32, "num_hidden_layers": 1, "state_size": 4, "vocab_size": 256}}
    row = measure(mamba, 1, device="cpu", seq=8)
    assert row["ssm_kernels"] == "reference" and "selective_scan_fn" in row["reference_kernels"]
    (tmp_path / "cpu").mkdir()
    rows = [dict(row, device="cpu"), dict(row, device="cpu", ssm_kernels="fused", batch=2)]
    (tmp_path / "cpu" / "llm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = PerfDataset.load(tmp_path, device="cpu", kinds=("llm",))
    scans = [[n for n in ds.graph(i).nodes if "selective_scan_fwd" in n.op] for i in range(2)]
    assert len(scans[0]) == 0 and len(scans[1]) == 1
    assert "ssm_kernels" not in measure(TINY_GPT2, 1, device="cpu", seq=8)
    assert P.kernel_record("mamba", {"causal_conv1d_fn"}) == {"reference_kernels": ["causal_conv1d_fn"],
                                                              "ssm_kernels": "fused"}
    assert P.kernel_record("gpt2", set()) == {}
