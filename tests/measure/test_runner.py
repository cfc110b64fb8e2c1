"""The collection loop (costmodel.measure.runner): resumable output, budget, failures, the CLI, Ray."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch

import costmodel.measure.protocol as P
from costmodel._errors import InvalidInputError
from costmodel.cli import main
from costmodel.datasets import PerfDataset, default_root
from costmodel.measure import WorkItem, collect, load_work, measure, output_paths, parse_work


SPEC = {"family": "misc", "name": "squeezenet1_1", "res": 64, "src": "tv"}
TINY_GPT2 = {"model": "tiny-gpt2", "model_type": "gpt2", "causal": True,
             "config": {"n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 256, "n_positions": 128,
                        "bos_token_id": 0, "eos_token_id": 0}}



def _fake_measure(delay=0.0, oom_batch=None):
    calls = []

    def fn(item, device="cpu"):
        calls.append(item)
        if delay:
            time.sleep(delay)
        if item.batch == oom_batch:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return {"spec": item.spec, "mode": item.mode, "dtype": item.dtype, "batch": item.batch, "latency_ms": 1.0,
                "device": P._device_name(device)}

    fn.calls = calls
    return fn


def _rows(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]



def test_unbuildable_specs_fail_before_the_first_row(tmp_path, monkeypatch):
    fn = _fake_measure()
    monkeypatch.setattr(P, "measure", fn)
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

    monkeypatch.setattr(P, "measure", boom)
    work = tmp_path / "w.json"
    work.write_text(json.dumps([SPEC]))
    assert main(["collect", str(work), "-o", str(tmp_path / "o.jsonl"), "--cooldown", "0"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == ("costmodel: error: no row could be measured: 1 failed (first: "
                                    "squeezenet1_1@64 infer fp32 b1: RuntimeError: the kernel crashed)")


# ------------------------------------------------------------------ collect
def test_collect_is_resumable(tmp_path):
    out = tmp_path / "rows.jsonl"
    assert collect([SPEC], [1, 2], out, progress=False, cooldown_s=0) == 2
    assert collect([SPEC], [1, 2], out, progress=False, cooldown_s=0) == 0
    assert len(out.read_text().splitlines()) == 2
    assert json.loads((tmp_path / "hardware.json").read_text())["kind"] == "cpu"


def test_resume_uses_the_full_key(tmp_path, monkeypatch):
    fn = _fake_measure()
    monkeypatch.setattr(P, "measure", fn)
    out = tmp_path / "vision.jsonl"
    items = [(SPEC, 1, "infer", "fp32"), (SPEC, 1, "infer", "fp16"), (SPEC, 1, "train", "fp32"),
             WorkItem(SPEC, 2, "infer", "fp32")]
    assert collect(items[:2], out, progress=False, cooldown_s=0) == 2
    out.write_text(out.read_text() + '{"spec": {"name": "cut mid-li')  # an interrupted write
    stats = {}
    with pytest.warns(UserWarning, match="removed 1 line"):
        assert collect(items + items, output=out, progress=False, cooldown_s=0, stats=stats) == 2
    assert [(c.mode, c.dtype, c.batch) for c in fn.calls[2:]] == [("train", "fp32", 1), ("infer", "fp32", 2)]
    assert stats["skipped"] == 2 and stats["repeated"] == 4  # 2 of the 4 rows there; each row listed twice
    # the cut line is gone: every line is a row again, and the file loads (it used to fail at that line)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 4 and all("latency_ms" in r for r in rows)


def test_a_row_the_work_lists_twice_is_not_counted_as_already_there(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(P, "measure", _fake_measure())
    work = tmp_path / "w.json"
    work.write_text(json.dumps([SPEC, SPEC]))
    out = tmp_path / "vision.jsonl"
    assert main(["collect", str(work), "-o", str(out), "--cooldown", "0", "--no-reference"]) == 0
    assert "wrote 1 rows to" in (msg := capsys.readouterr().out) and "(0 already there, 1 repeated" in msg
    assert main(["collect", str(work), "--batch", "1", "2", "-o", str(out), "--cooldown", "0", "--no-reference"]) == 0
    assert "wrote 1 rows to" in (msg := capsys.readouterr().out) and "(1 already there, 2 repeated" in msg


def test_a_line_an_older_resume_left_cut_is_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "measure", _fake_measure())
    out = tmp_path / "vision.jsonl"
    collect([(SPEC, 1, "infer", "fp32")], out, progress=False, cooldown_s=0)
    good = out.read_text()
    out.write_text('{"spec": {"name": "cut mid-li\n' + good)  # a cut row followed by a fresh line
    with pytest.warns(UserWarning, match="removed 1 line"):
        assert collect([(SPEC, 1, "infer", "fp32")], out, progress=False, cooldown_s=0) == 0
    assert out.read_text() == good


def test_removing_a_cut_line_keeps_the_files_permissions(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "measure", _fake_measure())
    out = tmp_path / "vision.jsonl"
    collect([(SPEC, 1, "infer", "fp32")], out, progress=False, cooldown_s=0, reference=False)
    out.write_text(out.read_text() + '{"spec": {"name": "cut mid-li')
    out.chmod(0o644)
    with pytest.warns(UserWarning, match="removed 1 line"):
        assert collect([(SPEC, 1, "infer", "fp32")], out, progress=False, cooldown_s=0, reference=False) == 0
    assert out.stat().st_mode & 0o777 == 0o644 and len(_rows(out)) == 1


@pytest.mark.parametrize("content", ["a,b,c\n1,2,3\n", '[{"spec": {}, "batch": 1}]\n', "[\n  1,\n  2\n]\n",
                                     "model,latency_ms",  # one line without its newline: no row's start
                                     "{'name': 'x', 'latency_ms': 3}\n{'name': 'y', 'latency_ms': 4}\n"])
def test_an_output_of_another_format_is_refused(tmp_path, monkeypatch, content):
    monkeypatch.setattr(P, "measure", _fake_measure())
    out = tmp_path / "rows.jsonl"
    out.write_text(content)
    with pytest.raises(InvalidInputError, match=r"rows.jsonl:1: not a row of measurements .* choose another output"):
        collect([(SPEC, 1, "infer", "fp32")], out, progress=False, cooldown_s=0)
    assert out.read_text() == content  # untouched


def test_resuming_with_other_settings_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "measure", _fake_measure())
    out = tmp_path / "vision.jsonl"
    collect([(SPEC, 1, "infer", "fp32")], out, progress=False, cooldown_s=0)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    out.write_text("".join(json.dumps({**r, "threads": 1}) + "\n" for r in rows))
    more = [(SPEC, 2, "infer", "fp32")]
    with pytest.raises(InvalidInputError, match=r"measured with 1 CPU thread\(s\); this run uses 2: .*--threads 1"):
        collect(more, out, progress=False, cooldown_s=0, threads=2)
    # rows without operator profiles cannot be resumed with them
    with pytest.raises(InvalidInputError, match=r"1 row\(s\) measured without operator profiles"):
        collect(more, out, progress=False, cooldown_s=0, threads=1, ops=True)
    # nor another device's rows
    out.write_text("".join(json.dumps({**r, "threads": 1, "device": "NVIDIA H200"}) + "\n" for r in rows))
    with pytest.raises(InvalidInputError, match=r"rows measured on NVIDIA H200; this run measures"):
        collect(more, out, progress=False, cooldown_s=0, threads=1)
    assert collect(more, tmp_path / "other.jsonl", progress=False, cooldown_s=0, threads=1) == 1


def test_oom_is_a_row_and_the_run_goes_on(tmp_path, monkeypatch):
    fn = _fake_measure(oom_batch=128)
    monkeypatch.setattr(P, "measure", fn)
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

    monkeypatch.setattr(P, "measure", boom)
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

    monkeypatch.setattr(P, "measure", measure_10s)
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


def test_budget_counts_the_checks_before_the_first_row(tmp_path, monkeypatch):
    import costmodel.measure.runner as R

    clock = _Clock(row_s=10.0)
    fn = _fake_measure()

    def measure_10s(item, device="cpu"):
        clock.t += clock.row_s
        return fn(item, device)

    def slow_checks(todo):  # building every spec once on the meta device takes 30 s of the budget
        clock.t += 30.0

    monkeypatch.setattr(P, "measure", measure_10s)
    monkeypatch.setattr(R, "check_buildable", slow_checks)
    stats = {}
    # 30 s of checks, then one 10 s row ends at 40 s: past a 45 s budget a second would end at 50 s
    n = collect([SPEC], [1, 2, 3], tmp_path / "v.jsonl", progress=False, cooldown_s=0, budget_s=45, stats=stats,
                clock=clock, reference=False)
    assert n == 1 and stats["left"] == 2 and stats["budget_stopped"] is True


def test_limit_measures_the_first_rows_left(tmp_path, monkeypatch):
    fn = _fake_measure()
    monkeypatch.setattr(P, "measure", fn)
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

    monkeypatch.setattr(P, "measure", fake)
    assert output_paths(tmp_path / "vision_extend.jsonl")["llm"] == tmp_path / "llm_extend.jsonl"
    assert output_paths(tmp_path / "llm.jsonl") == {"llm": tmp_path / "llm.jsonl", "vision": tmp_path / "vision.jsonl"}
    assert output_paths(tmp_path / "rows.jsonl")["llm"] == tmp_path / "rows_llm.jsonl"
    items = parse_work({"vision": [{"spec": SPEC, "batch": 1}], "llm": [dict(TINY_GPT2, batch=1, seq=[8, 16])]})
    out = tmp_path / "vision_extend.jsonl"
    assert collect(items, out, progress=False, cooldown_s=0) == 3
    assert len(_rows(out)) == 1 and [r["seq"] for r in _rows(tmp_path / "llm_extend.jsonl")] == [8, 16]
    assert collect(items, out, progress=False, cooldown_s=0) == 0


def test_progress_bar(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(P, "measure", _fake_measure())
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
    # an endless pause between rows: refused before the first row, not a crash after it
    assert main(["collect", str(work), "--cooldown", "inf", "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "--cooldown must be a finite number >= 0 of seconds, got inf" in capsys.readouterr().err
    with pytest.raises(InvalidInputError, match="cooldown must be a finite number"):
        collect([SPEC], [1, 2], tmp_path / "o.jsonl", progress=False, cooldown_s=math.inf)
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
    monkeypatch.setattr(P, "measure", _fake_measure(oom_batch=4))
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


# ------------------------------------------------------------------ host reference
def test_every_row_records_the_host_reference_and_slowed_rows_are_flagged(tmp_path, monkeypatch, capsys):
    import costmodel.measure.runner as R

    monkeypatch.setattr(P, "measure", _fake_measure())
    # the host's speed before each row: steady, a spell at 60 % of its bandwidth, back, then a faster reading
    readings = iter([{"gflops": 100.0, "gbps": 50.0}, {"gflops": 98.0, "gbps": 30.0},
                     {"gflops": 97.0, "gbps": 48.0}, {"gflops": 120.0, "gbps": 60.0}, {"gflops": 95.0, "gbps": 55.0}])
    monkeypatch.setattr(R, "host_reference", lambda budget_s=0.4, device="cpu": next(readings))
    stats = {}
    out = tmp_path / "v.jsonl"
    assert collect([SPEC], [1, 2, 3, 4, 5], out, progress=False, cooldown_s=0, stats=stats) == 5
    rows = _rows(out)
    assert [r["host_reference"]["gbps"] for r in rows] == [50.0, 30.0, 48.0, 60.0, 55.0]
    # slowed: below 80 % of the fastest reading so far in either figure (the last: 95 of 120 GFLOP/s is 79 %)
    assert [bool(r.get("host_slowed")) for r in rows] == [False, True, False, False, True]
    assert stats["host_slowed"] == ["squeezenet1_1@64 infer fp32 b2", "squeezenet1_1@64 infer fp32 b5"]
    assert "the host ran at 60% of its reference speed in this run" in capsys.readouterr().err
    # without the reference nothing is measured or recorded
    monkeypatch.setattr(R, "host_reference", lambda budget_s=0.4, device="cpu": pytest.fail("measured the host"))
    out2 = tmp_path / "w.jsonl"
    assert collect([SPEC], [1], out2, progress=False, cooldown_s=0, reference=False) == 1
    assert "host_reference" not in _rows(out2)[0]


def test_a_slower_dispatch_flags_the_row_even_where_the_rates_hold(tmp_path, monkeypatch, capsys):
    import costmodel.measure.runner as R

    monkeypatch.setattr(P, "measure", _fake_measure())
    # GEMM rate and bandwidth steady; the dispatch of a tiny operator 1.7x the run's median for one row,
    # then a lucky fast reading (flags nothing after it: the reference is the median), then 1.2x the median
    disp = [5.0, 8.5, 5.1, 3.0, 6.1]
    readings = iter([{"gflops": 100.0, "gbps": 50.0, "dispatch_us": d} for d in disp])
    seen = []

    def ref(budget_s=0.4, device="cpu"):
        seen.append(device)
        return next(readings)

    monkeypatch.setattr(R, "host_reference", ref)
    stats = {}
    out = tmp_path / "v.jsonl"
    assert collect([SPEC], [1, 2, 3, 4, 5], out, progress=False, cooldown_s=0, stats=stats) == 5
    rows = _rows(out)
    assert [r["host_reference"]["dispatch_us"] for r in rows] == disp
    assert [bool(r.get("host_slowed")) for r in rows] == [False, True, False, False, False]
    assert stats["host_slowed"] == ["squeezenet1_1@64 infer fp32 b2"]
    assert seen == ["cpu"] * 5  # the probe runs on the run's device
    assert "at 59% of its reference speed in this run (100 GFLOP/s, 50 GB/s, 8.5 µs per dispatch)" in \
        capsys.readouterr().err


def test_the_host_reference_measures_this_cpu():
    from costmodel.measure.host import dispatch_reference
    from costmodel.measure.runner import host_reference

    ref = host_reference(budget_s=0.1)
    assert set(ref) == {"gflops", "gbps", "dispatch_us"} and ref["gflops"] > 0 and ref["gbps"] > 0
    # a tiny eager operator on a CPU: more than a tenth of a microsecond, less than a millisecond
    assert 0.1 < ref["dispatch_us"] < 1000
    assert 0.1 < dispatch_reference("cpu", budget_s=0.05) < 1000


# ------------------------------------------------------------------ timed window
def test_the_timed_window_can_be_lengthened(tmp_path, capsys, monkeypatch):
    from costmodel.measure.protocol import calls_for, check_window

    # the protocol: at least 0.25 s and 10 calls, at most 2.5 s
    assert calls_for(0.001) == 250 and calls_for(0.1) == 10 and calls_for(1.0) == 3
    # a longer window: its own minimum, and a cap of at least that
    assert calls_for(0.001, 1.0) == 1000 and calls_for(0.5, 4.0) == 8 and calls_for(0.001, 4.0) == 4000
    assert check_window(None) is None and check_window("2") == 2.0
    for bad, why in ((0.1, "between 0.25 and 60 seconds"), (61, "between 0.25 and 60 seconds"),
                     ("long", "a number of seconds, got 'long'")):
        with pytest.raises(InvalidInputError, match=why):
            check_window(bad)
    tiny = {"family": "misc", "name": "squeezenet1_1", "res": 32, "src": "tv"}
    # the timed calls are planned from the calibration (fixed here: this machine's calls vary several-fold)
    monkeypatch.setattr(P, "_calibrate", lambda step, d: 0.01)
    long, short = measure(tiny, 1, device="cpu", window_s=2.0), measure(tiny, 1, device="cpu")
    assert long["min_window_s"] == 2.0 and "min_window_s" not in short
    # planned from the calibration, or timed again where that window came out short (below)
    for row, planned, window in ((long, 200, 2.0), (short, 25, 0.25)):
        assert row["iters"] == planned or (row["iters"] > planned and row["window_replanned_from_s"] < window)
    # through the CLI, and refused there with the flag's value
    work = tmp_path / "w.json"
    work.write_text(json.dumps([tiny]))
    out = tmp_path / "o.jsonl"
    assert main(["collect", str(work), "-o", str(out), "--cooldown", "0", "--no-reference", "--window", "0.5"]) == 0
    (r,) = _rows(out)
    assert r["min_window_s"] == 0.5 and (r["iters"] == 50 or r["window_replanned_from_s"] < 0.5)
    assert main(["collect", str(work), "-o", str(tmp_path / "p.jsonl"), "--window", "0"]) == 2
    assert "window must be between 0.25 and 60 seconds" in capsys.readouterr().err


def test_a_window_shorter_than_the_protocols_is_timed_again(monkeypatch):
    from types import SimpleNamespace

    meter = SimpleNamespace(read=lambda: None, delta=lambda a, b: None)
    d = SimpleNamespace(cuda=False, min_window_s=0.25, meter=meter, sync=lambda: None)
    # a calibration 25x slower than the calls plans 10 calls, a 0.02 s window
    monkeypatch.setattr(P, "_calibrate", lambda step, d: 0.05)
    out = P._protocol(lambda: time.sleep(0.002), d)
    # timed again with the count planned from the short window's own latency: ~120 calls, not 10
    assert out["window_replanned_from_s"] < 0.1 < out["window_s"] and out["iters"] > 50
    # a calibration that was right: timed once
    monkeypatch.setattr(P, "_calibrate", lambda step, d: 0.002)
    out = P._protocol(lambda: time.sleep(0.002), d)
    assert "window_replanned_from_s" not in out and out["iters"] == P.calls_for(0.002)


def test_the_calibration_is_the_median_of_several_calls():
    from types import SimpleNamespace

    d = SimpleNamespace(cuda=False)
    # one slow call among fast ones does not set the window: the median of five does
    delays = iter([0.012, 0.002, 0.002, 0.002, 0.002, 1.0])

    def step():
        time.sleep(next(delays))

    t = P._calibrate(step, d)
    assert 0.002 <= t < 0.006 and next(delays) == 1.0  # five calls timed, no more
    # a call longer than the calibration budget is timed once
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.06)

    assert P._calibrate(slow, d) >= 0.06 and len(calls) == 1
