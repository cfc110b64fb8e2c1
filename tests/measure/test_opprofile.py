"""Per-operator profiles (costmodel.measure.opprofile) and ``collect(..., ops=True)`` / ``collect --ops``."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from costmodel import InvalidInputError
from costmodel.cli import main
from costmodel.measure import WorkItem, collect, ops_path
from costmodel.frontends import from_torch
from costmodel.measure.opprofile import PROFILED_STEPS, _align, _name, map_step, profile_step

REPO = Path(__file__).resolve().parents[2]
SPEC = {"family": "resnet", "name": "resnet18", "res": 32, "src": "tv"}
SUMMARY_KEYS = {"profiled_steps", "graph_nodes", "work_nodes", "work_nodes_mapped", "backward_nodes_mapped",
                "unmapped_ops", "unmapped_ms", "unmapped_share", "python_gap_ms", "profiled_step_ms",
                "profiled_wall_ms", "profiler_overhead"}


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """collect(threads=1) sets torch's thread count for the process: restore it for other tests."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.relu(self.bn(self.conv(x)))), 1))


def _graph(model, x, mode):
    return from_torch(model, x, mode=mode, method="trace")


def _work_ids(graph):
    return {n.id for n in graph.nodes if not n.is_view and (n.flops > 0 or n.bytes_read + n.bytes_written > 0)}


def _jsonl(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


# ------------------------------------------------------------------ profile_step / map_step
def test_inference_step_maps_every_work_node():
    torch.manual_seed(0)
    model, x = Tiny().eval(), torch.randn(1, 3, 16, 16)
    graph = _graph(model, x, "inference")
    by_id = {n.id: n for n in graph.nodes}
    with torch.inference_mode():
        rows, summ = profile_step(lambda: model(x), graph, cuda=False, unprofiled_ms=0.5)

    assert summ["profiled_steps"] == PROFILED_STEPS
    assert summ["graph_nodes"] == len(graph.nodes)
    assert summ["work_nodes"] == len(_work_ids(graph)) > 0
    assert summ["work_nodes_mapped"] == summ["work_nodes"]
    assert summ["backward_nodes_mapped"] == 0 and summ["unmapped_ops"] == 0 and summ["unmapped_ms"] == 0
    assert isinstance(summ["profiler_overhead"], float) and summ["profiler_overhead"] > -1
    assert summ["profiled_wall_ms"] > 0 and summ["profiled_step_ms"] > 0 and summ["python_gap_ms"] >= 0

    assert rows and all(r["phase"] == "forward" and r["mapped"] for r in rows)
    assert {r["node"] for r in rows} >= _work_ids(graph)
    for r in rows:
        n = by_id[r["node"]]  # a node of this graph
        assert r["op"] == _name(n.op) and r["kind"] == n.kind
        assert r["cpu_us"] >= r["device_us"] >= 0
        assert r["seen"] == f"{PROFILED_STEPS}/{PROFILED_STEPS}" and r["kernels"] is None
    kinds = {r["kind"] for r in rows}
    assert {"conv", "batch_norm", "relu", "matmul"} <= kinds
    conv = next(r for r in rows if r["kind"] == "conv")
    assert conv["flops"] == by_id[conv["node"]].flops > 0 and conv["in_shapes"][0] == [1, 3, 16, 16]
    json.dumps(rows)  # rows go to JSONL as they are

    # without an unprofiled latency there is no overhead to report
    with torch.inference_mode():
        _, summ2 = profile_step(lambda: model(x), graph, cuda=False, steps=1)
    assert summ2["profiled_steps"] == 1 and "profiler_overhead" not in summ2


def test_map_step_on_one_profiled_step():
    from torch.profiler import ProfilerActivity, profile, record_function

    model, x = Tiny().eval(), torch.randn(1, 3, 16, 16)
    graph = _graph(model, x, "inference")
    with torch.inference_mode():
        model(x)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            with record_function("costmodel::step"):
                model(x)
    root = next(e for e in prof.events() if e.name == "costmodel::step" and e.cpu_parent is None)
    m = map_step(root, graph, cuda=False)
    assert set(m["forward"]) >= _work_ids(graph)
    assert set(m["forward"]) <= {n.id for n in graph.nodes}
    assert all(c >= d >= 0 for c, d, _ in m["forward"].values())
    assert m["backward"] == {} and m["optimizer"] is None and m["unmapped"] == []
    assert m["step_us"] >= m["gap_us"] >= 0 and m["step_us"] > 0


@pytest.mark.parametrize("optim", ["sgd", "adam"])
def test_training_step_maps_backward_and_keeps_the_loss(optim):
    torch.manual_seed(0)
    model, x, y = Tiny(), torch.randn(2, 3, 16, 16), torch.tensor([1, 3])
    graph = _graph(model, x, "training")
    model.train()
    by_id = {n.id: n for n in graph.nodes}
    opt = (torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if optim == "sgd"
           else torch.optim.Adam(model.parameters()))

    def step():
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    rows, summ = profile_step(step, graph, cuda=False, unprofiled_ms=1.0)
    fwd = [r for r in rows if r["phase"] == "forward" and r["mapped"]]
    bwd = [r for r in rows if r["phase"] == "backward" and r["mapped"]]
    assert summ["work_nodes_mapped"] == summ["work_nodes"] > 0
    assert bwd and summ["backward_nodes_mapped"] == len(bwd)
    # a backward row is the backward function of a forward node of this graph
    for r in bwd:
        n = by_id[r["node"]]
        assert r["node"] in {f["node"] for f in fwd} and r["op"] == _name(n.op) and r["kind"] == n.kind
        assert r["cpu_us"] >= r["device_us"] >= 0
    bwd_kinds = {r["kind"] for r in bwd}
    assert {"conv", "matmul", "batch_norm", "relu"} <= bwd_kinds
    # BatchNorm's num_batches_tracked.add_ makes no autograd function: it gets no backward row
    # (it shares its sequence number with batch_norm, whose backward is its own)
    assert "add" not in bwd_kinds
    assert [by_id[r["node"]].op for r in bwd if r["kind"] == "batch_norm"] == ["aten.native_batch_norm"]

    opt_rows = [r for r in rows if r["phase"] == "optimizer"]
    assert len(opt_rows) == 1 and opt_rows[0]["node"] is None and opt_rows[0]["cpu_us"] > 0

    # the loss is on no node of the graph: reported as unmapped rows, forward and backward
    un = [r for r in rows if not r["mapped"]]
    assert un and all(r["node"] is None for r in un)
    un_fwd = {r["op"] for r in un if r["phase"] == "forward"}
    un_bwd = {r["op"] for r in un if r["phase"] == "backward"}
    assert any("cross_entropy" in o or "nll_loss" in o or "log_softmax" in o for o in un_fwd), un_fwd
    assert {"NllLossBackward0", "LogSoftmaxBackward0"} <= un_bwd
    assert summ["unmapped_ops"] > 0 and summ["unmapped_ms"] > 0 and 0 < summ["unmapped_share"] < 1
    assert isinstance(summ["profiler_overhead"], float)


# ------------------------------------------------------------------ _align
class _Ev:
    def __init__(self, name, *shapes):
        self.name = name
        self.input_shapes = [list(s) for s in shapes]


class _Node:
    def __init__(self, id, op, *shapes):
        self.id = id
        self.op = op
        self.in_shapes = [tuple(s) for s in shapes]


A, B = (1, 8, 4, 4), (1, 8, 2, 2)


def test_align_a_node_missing_from_the_profile_does_not_shift_later_matches():
    nodes = [_Node(0, "aten.convolution", (1, 3, 4, 4), (8, 3, 3, 3)), _Node(1, "aten.relu", A),
             _Node(2, "aten.add", A, A), _Node(3, "aten.relu", A), _Node(4, "aten.mean", A)]
    # node 1 (the first relu) never ran; a greedy matching would give it the later relu event
    events = [_Ev("aten::convolution", (1, 3, 4, 4), (8, 3, 3, 3)), _Ev("aten::add", A, A),
              _Ev("aten::relu", A), _Ev("aten::mean", A)]
    assert _align(nodes, events, [False] * len(events)) == [(0, 0), (2, 1), (3, 2), (4, 3)]


def test_align_an_extra_event_in_the_profile():
    nodes = [_Node(0, "aten.convolution", (1, 3, 4, 4)), _Node(1, "aten.relu", A), _Node(2, "aten.mean", A)]
    events = [_Ev("aten::convolution", (1, 3, 4, 4), (8, 3, 3, 3)),
              _Ev("aten::fill_", A, ()),  # not in the graph
              _Ev("aten::relu", B),  # the graph's operator on other shapes
              _Ev("aten::relu", A), _Ev("aten::mean", A)]
    assert _align(nodes, events, [False] * len(events)) == [(0, 0), (1, 3), (2, 4)]


def test_align_skipped_events_shapes_and_empty_inputs():
    nodes = [_Node(0, "aten.relu", A), _Node(1, "aten.empty")]  # no input shapes: any event of its name
    events = [_Ev("aten::relu", A), _Ev("aten::relu", A), _Ev("aten::empty", [])]
    assert _align(nodes, events, [True, False, False]) == [(0, 1), (1, 2)]
    assert _align(nodes, events, [True, True, True]) == []
    assert _align([], events, [False] * 3) == []
    assert _align([_Node(0, "aten.relu", B)], events, [False] * 3) == []


def test_align_takes_cudnn_batch_norm_for_the_graphs_native_batch_norm():
    """A fp32 CUDA run dispatches batch norm as ``cudnn_batch_norm`` (after an ``empty`` of its own): the
    graph's ``native_batch_norm`` must take it, or the norm's kernels land on the ``empty`` node."""
    nodes = [_Node(0, "aten.empty"), _Node(1, "aten.native_batch_norm", A), _Node(2, "aten.relu", A)]
    events = [_Ev("aten::batch_norm", A), _Ev("aten::empty", []), _Ev("aten::cudnn_batch_norm", A),
              _Ev("aten::relu", A)]
    assert _align(nodes, events, [False] * 4) == [(0, 1), (1, 2), (2, 3)]


# ------------------------------------------------------------------ collect(..., ops=True)
def test_collect_ops_end_to_end_resumable_and_orphans_dropped(tmp_path):
    out = tmp_path / "d" / "vision.jsonl"
    items = [WorkItem(SPEC, 1, "infer"), WorkItem(SPEC, 2, "train")]
    stats: dict = {}
    assert collect(items, output=out, ops=True, threads=1, progress=False, cooldown_s=0, stats=stats) == 2
    assert stats["failed"] == {}
    ops_file = ops_path(out)
    assert ops_file == out.parent / "ops.jsonl" and ops_file.exists()

    models = {r["mode"]: r for r in _jsonl(out)}
    assert set(models) == {"infer", "train"}
    keys = {WorkItem(SPEC, 1, "infer").key(), WorkItem(SPEC, 2, "train").key()}
    for r in models.values():
        assert SUMMARY_KEYS <= set(r["ops"]) and "_ops" not in r
        assert r["ops"]["work_nodes_mapped"] == r["ops"]["work_nodes"] > 0
        assert r["threads"] == 1
    assert models["infer"]["ops"]["backward_nodes_mapped"] == 0
    assert models["train"]["ops"]["backward_nodes_mapped"] > 0 and models["train"]["ops"]["unmapped_ms"] > 0

    ops = _jsonl(ops_file)
    assert ops and {o["key"] for o in ops} == keys
    mode_of = {WorkItem(SPEC, 1, "infer").key(): "infer", WorkItem(SPEC, 2, "train").key(): "train"}
    assert all(o["mode"] == mode_of[o["key"]] and o["model"] == "resnet18" and o["device"] for o in ops)
    train_ops = [o for o in ops if o["mode"] == "train"]
    assert {o["phase"] for o in train_ops} == {"forward", "backward", "optimizer"}
    assert any(not o["mapped"] for o in train_ops)
    assert {"conv", "batch_norm", "add"} <= {o["kind"] for o in train_ops if o["phase"] == "backward" and o["mapped"]}
    assert all(o["mapped"] and o["phase"] == "forward" for o in ops if o["mode"] == "infer")

    hw = json.loads((out.parent / "hardware.json").read_text())
    roof = hw["roofline"]
    assert roof["peak_gflops_fp32"] > 0 and roof["bandwidth_gbps"] > 0 and roof["threads"] == 1

    # resumable: nothing left to measure, nothing written
    before = ops_file.read_bytes()
    assert collect(items, output=out, ops=True, threads=1, progress=False, cooldown_s=0) == 0
    assert ops_file.read_bytes() == before and len(_jsonl(out)) == 2

    # operator rows of a run cut before its model row was written are dropped on the next run
    orphan = dict(ops[0], key=WorkItem(SPEC, 4, "infer").key())
    with ops_file.open("a") as f:
        f.write(json.dumps(orphan) + "\n")
    assert len(_jsonl(ops_file)) == len(ops) + 1
    assert collect(items, output=out, ops=True, threads=1, progress=False, cooldown_s=0) == 0
    assert ops_file.read_bytes() == before


def _fake_profiled(item, device="cpu"):
    from costmodel.measure.protocol import _device_name

    return {"spec": item.spec, "mode": item.mode, "dtype": item.dtype, "batch": item.batch, "latency_ms": 1.0,
            "device": _device_name(device), "threads": 1, "ops": {"profiled_steps": 1},
            "_ops": [{"phase": "forward", "node": 0, "mapped": True, "op": "aten::add", "cpu_us": 1.0}]}


def test_outputs_sharing_a_folder_keep_each_others_operator_rows(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    roof = {"peak_gflops_fp32": 1.0, "bandwidth_gbps": 1.0, "threads": 1, "how": "test"}
    (d / "hardware.json").write_text(json.dumps({"name": "cpu", "roofline": roof}))
    other = {"family": "misc", "name": "squeezenet1_1", "res": 32, "src": "tv"}
    kw = dict(ops=True, threads=1, measure_fn=_fake_profiled, reference=False, progress=False, cooldown_s=0)
    assert collect([WorkItem(SPEC, 1, "infer")], output=d / "a.jsonl", **kw) == 1
    assert collect([WorkItem(other, 1, "infer")], output=d / "b.jsonl", **kw) == 1
    keys = [o["key"] for o in _jsonl(d / "ops.jsonl")]
    assert sorted(keys) == sorted([WorkItem(SPEC, 1, "infer").key(), WorkItem(other, 1, "infer").key()])
    # the first output resumes with its operator rows still there
    assert collect([WorkItem(SPEC, 1, "infer")], output=d / "a.jsonl", **kw) == 0
    # an operator row whose model row is in no output of the folder still goes
    with (d / "ops.jsonl").open("a") as f:
        f.write(json.dumps({"key": WorkItem(SPEC, 8, "infer").key(), "op": "aten::add"}) + "\n")
    assert collect([WorkItem(other, 1, "infer")], output=d / "b.jsonl", **kw) == 0
    assert sorted(o["key"] for o in _jsonl(d / "ops.jsonl")) == sorted(keys)


def test_operator_profiles_at_another_thread_count_than_the_folders_roofline_are_refused(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    roof = {"peak_gflops_fp32": 1.0, "bandwidth_gbps": 1.0, "threads": 1, "how": "test"}
    (d / "hardware.json").write_text(json.dumps({"name": "cpu", "roofline": roof}))
    kw = dict(ops=True, measure_fn=_fake_profiled, reference=False, progress=False, cooldown_s=0)
    with pytest.raises(InvalidInputError, match=r"roofline measured at 1 thread\(s\).*this run uses 2: pass --threads 1"):
        collect([WorkItem(SPEC, 1, "infer")], output=d / "b.jsonl", threads=2, **kw)
    assert not (d / "b.jsonl").exists() and not (d / "ops.jsonl").exists()
    assert collect([WorkItem(SPEC, 1, "infer")], output=d / "b.jsonl", threads=1, **kw) == 1


def test_an_output_profiled_throughout_resumes_with_its_skipped_and_oom_rows(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    roof = {"peak_gflops_fp32": 1.0, "bandwidth_gbps": 1.0, "threads": 1, "how": "test"}
    (d / "hardware.json").write_text(json.dumps({"name": "cpu", "roofline": roof}))

    def fake(item, device="cpu"):
        if item.batch == 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        row = _fake_profiled(item, device)
        if item.batch == 2:  # a step collect does not profile per operator (a decode step, say)
            del row["_ops"]
            row["ops"] = {"skipped": "decode steps are not profiled per operator yet"}
        return row

    kw = dict(ops=True, threads=1, measure_fn=fake, reference=False, progress=False, cooldown_s=0)
    items = [WorkItem(SPEC, b, "infer") for b in (1, 2, 3)]
    stats: dict = {}
    assert collect(items, output=d / "vision.jsonl", stats=stats, **kw) == 3 and stats["oom"] == 1
    more = [*items, WorkItem(SPEC, 4, "infer")]
    assert collect(more, output=d / "vision.jsonl", **kw) == 1
    assert [r["batch"] for r in _jsonl(d / "vision.jsonl")] == [1, 2, 3, 4]


def test_collect_ops_argument_errors(tmp_path):
    out = tmp_path / "vision.jsonl"
    item = WorkItem(SPEC, 1, "infer")
    with pytest.raises(InvalidInputError, match="Ray"):
        collect([item], output=out, ops=True, ray_address="local", progress=False)
    for bad in (0, -2, 1.5):
        with pytest.raises(InvalidInputError, match="threads"):
            collect([item], output=out, threads=bad, progress=False)
    assert not out.exists() and not ops_path(out).exists()
    # model rows named like the operator rows would share their file (and be dropped as orphans on resume)
    same = tmp_path / "ops.jsonl"
    same.write_text(json.dumps({"spec": SPEC, "batch": 1, "mode": "infer", "dtype": "fp32", "latency_ms": 1.0}) + "\n")
    before = same.read_text()
    with pytest.raises(InvalidInputError, match=r"operator rows go to .*ops.jsonl; give the model rows another name"):
        collect([item], output=same, ops=True, threads=1, progress=False)
    assert same.read_text() == before


def test_cli_collect_ops(tmp_path, capsys):
    work = tmp_path / "work.json"
    work.write_text(json.dumps({"vision": [{"spec": SPEC, "batch": 1, "mode": "infer"}]}))
    out = tmp_path / "rows" / "vision.jsonl"
    assert main(["collect", str(work), "--ops", "--threads", "1", "-o", str(out), "--cooldown", "0"]) == 0
    msg = capsys.readouterr().out
    assert "wrote 1 rows" in msg and str(out.parent / "ops.jsonl") in msg
    assert len(_jsonl(out)) == 1 and "ops" in _jsonl(out)[0]
    assert {o["key"] for o in _jsonl(out.parent / "ops.jsonl")} == {WorkItem(SPEC, 1, "infer").key()}


# ------------------------------------------------------------------ benchmarks/gpu_collect_ops.sh
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_collect_ops_script_on_the_cpu(tmp_path):
    specs = tmp_path / "specs.json"
    specs.write_text(json.dumps({"vision": [{"spec": SPEC, "batch": [1, 2], "mode": "infer"}]}))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable)
    p = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_collect_ops.sh"), "--device", "cpu", "--specs",
                        str(specs), "--limit", "1", "--threads", "1", "--budget", "120", "--out", str(out)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = _jsonl(out / "vision_extend.jsonl")
    assert len(rows) == 1 and rows[0]["ops"]["work_nodes_mapped"] == rows[0]["ops"]["work_nodes"]
    ops = _jsonl(out / "ops.jsonl")
    assert ops and {o["key"] for o in ops} == {WorkItem(SPEC, 1, "infer").key()}
    assert "roofline" in json.loads((out / "hardware.json").read_text())
    # the host that measured the rows, calibrated before them (CPU only here, and the profile says so)
    from costmodel.measure.host import HostProfile

    prof = HostProfile.load(out / "host.json")
    assert prof.synchronous and prof.dispatch_us["elementwise"] > 0 and prof.notes
    assert "1 left for a later run" in p.stdout
    assert f"rows went to: {out / 'vision_extend.jsonl'} (1), {out / 'ops.jsonl'} ({len(ops)})" in p.stdout
    assert f"; host profile: {out / 'host.json'}" in p.stdout
    assert f"summary: 1 rows (1 profiled), {len(ops)} op rows (0 unmapped), mapped share: 100.0% of work nodes" \
        in p.stdout


def test_backward_outside_the_step_subtree_is_mapped():
    """On CUDA autograd runs the backward functions on its device thread, outside the step's host
    subtree (``map_step``'s ``extra``).  The same events moved out of a CPU step's subtree must map
    as they do inside it, and are lost without ``extra``."""
    from torch.profiler import ProfilerActivity, profile, record_function

    torch.manual_seed(0)
    model, x, y = Tiny(), torch.randn(2, 3, 16, 16), torch.tensor([1, 3])
    graph = _graph(model, x, "training")
    model.train()
    nn.functional.cross_entropy(model(x), y).backward()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        with record_function("costmodel::step"):
            nn.functional.cross_entropy(model(x), y).backward()
    root = next(e for e in prof.events() if e.name == "costmodel::step" and e.cpu_parent is None)
    moved = [c for c in root.cpu_children if c.name.startswith("autograd::engine::evaluate_function")]
    assert moved

    class HostOnly:  # the step as the host thread records it on CUDA: no backward functions
        cpu_children = [c for c in root.cpu_children if c not in moved]
        time_range, cpu_time_total = root.time_range, root.cpu_time_total

    whole = map_step(root, graph, cuda=False)
    split = map_step(HostOnly, graph, cuda=False, extra=moved)
    assert whole["backward"] and split["backward"] == whole["backward"]
    assert split["forward"] == whole["forward"]
    assert {k for k, *_ in split["unmapped"]} == {k for k, *_ in whole["unmapped"]}
    assert map_step(HostOnly, graph, cuda=False)["backward"] == {}


class _Dev:
    def __init__(self, name):
        self.name = name


class _Range:
    def __init__(self, start, end):
        self.start, self.end = start, end


class _StepEv:
    def __init__(self, name, device, thread=1, start=0, end=10, parent=None):
        self.name, self.device_type, self.thread, self.cpu_parent = name, _Dev(device), thread, parent
        self.time_range = _Range(start, end)


def test_step_roots_skip_the_gpu_annotations_of_the_step():
    from costmodel.measure.opprofile import _other_threads, step_roots

    host = [_StepEv("costmodel::step", "CPU", start=10 * i, end=10 * i + 9) for i in range(3)]
    gpu = [_StepEv("costmodel::step", "CUDA", start=10 * i + 1, end=10 * i + 9) for i in range(3)]
    assert step_roots(host + gpu + gpu[:2]) == host
    bwd = _StepEv("autograd::engine::evaluate_function: ConvolutionBackward0", "CPU", thread=2, start=3, end=5)
    other = [bwd, _StepEv("aten::add_", "CPU", thread=2, start=3, end=4),
             _StepEv("autograd::engine::evaluate_function: ReluBackward0", "CPU", thread=2, start=12, end=13),
             _StepEv("autograd::engine::evaluate_function: X", "CPU", thread=1, start=3, end=4)]
    assert _other_threads(host[0], host + gpu + other) == [bwd]
