"""The packaged CPU operator profiles: complete, joined to their model rows, as the spec file says."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from costmodel.measure import key_of_row as _key_of_row, load_work

DATA = Path(__file__).resolve().parents[2] / "costmodel" / "data"
CPU = DATA / "cpu"


@pytest.fixture(scope="module")
def packaged():
    models = [json.loads(x) for f in ("ops_vision.jsonl", "ops_llm.jsonl") for x in (CPU / f).read_text().splitlines()]
    with gzip.open(CPU / "ops.jsonl.gz", "rt") as f:
        ops = [json.loads(x) for x in f]
    return models, ops


def test_every_operator_row_belongs_to_a_model_row_and_every_run_has_operators(packaged):
    models, ops = packaged
    keys = [_key_of_row(r) for r in models]
    assert len(set(keys)) == len(keys)
    per_key = Counter(o["key"] for o in ops)
    assert set(per_key) == set(keys)
    assert min(per_key.values()) >= 20


def test_the_profiles_cover_what_the_issue_of_the_data_asks(packaged):
    models, ops = packaged
    vision = {r["spec"]["name"] for r in models if "spec" in r}
    transformers = {r["model"] for r in models if "model" in r}
    assert len(vision) >= 30 and len(transformers) >= 4
    assert {r["mode"] for r in models} >= {"infer", "train", "forward", "prefill"}
    assert len({r["batch"] for r in models}) >= 3
    assert len(ops) > 50_000
    phases = Counter(o["phase"] for o in ops)
    assert phases["forward"] and phases["backward"] and phases["optimizer"]
    # every run: its summary, one torch thread, and the operators that could not be placed kept as rows
    for r in models:
        s = r["ops"]
        assert r["threads"] == 1
        assert 0 <= s["work_nodes_mapped"] <= s["work_nodes"]
        assert s["unmapped_share"] is not None and 0 <= s["unmapped_share"] < 0.1
    assert any(not o["mapped"] for o in ops)


def test_operator_rows_carry_costs_and_times(packaged):
    _, ops = packaged
    mapped = [o for o in ops if o["mapped"] and o["node"] is not None]
    assert all(o["cpu_us"] >= 0 and o["device_us"] >= 0 for o in ops)
    assert all({"kind", "in_shapes", "out_shapes", "flops", "bytes", "attrs"} <= set(o) for o in mapped)
    convs = [o for o in mapped if o["kind"] == "conv"]
    assert convs and all(o["flops"] > 0 and "kernel" in o["attrs"] for o in convs)


def test_hardware_and_spec_file_match_the_rows(packaged):
    models, _ = packaged
    hw = json.loads((CPU / "hardware.json").read_text())
    assert hw["roofline"]["threads"] == 1
    assert hw["roofline"]["peak_gflops_fp32"] > 0 and hw["roofline"]["bandwidth_gbps"] > 0
    items = load_work(DATA / "specs" / "cpu_ops.json")
    wanted = {it.key() for it in items}
    have = {_key_of_row(r) for r in models}
    assert have <= wanted
    missing = wanted - have
    assert len(missing) == 1 and "levit_128s" in next(iter(missing))  # fails in the model (see the spec notes)


def test_runs_physics_rules_out_are_flagged_and_only_those(packaged):
    """A training step runs the forward and a backward of about twice its work, so at batch 1 it takes at
    least twice the inference call. Models below that were measured in a slower spell: their inference runs
    carry an ``excluded`` reason (kept, not deleted), and no other run does."""
    models, _ = packaged
    vision = [r for r in models if "spec" in r]
    b1 = {(json.dumps(r["spec"], sort_keys=True), r["mode"]): r["latency_ms"] for r in vision if r["batch"] == 1}
    odd = {s for s, mode in b1 if mode == "infer" and (s, "train") in b1 and b1[(s, "train")] < 2 * b1[(s, mode)]}
    assert {json.loads(s)["name"] for s in odd} == {"regnet_y_800mf", "regnet_x_1_6gf", "squeezenet1_1"}
    flagged = [r for r in models if r.get("excluded")]
    assert all(r["mode"] == "infer" and json.dumps(r["spec"], sort_keys=True) in odd for r in flagged)
    assert {json.dumps(r["spec"], sort_keys=True) for r in flagged if r["batch"] == 1} == odd
    assert all("slower" in r["excluded"] for r in flagged)
