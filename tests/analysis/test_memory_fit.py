"""The training allowance: a replayed training step's reserved peak raised by the device's fitted share."""

import json
from dataclasses import replace

import pytest

from costmodel._errors import InvalidInputError, ModelLoadError
from costmodel.analysis.memreplay import (
    MEMORY_FIT,
    fit_train_slack,
    load_memory_fit,
    overheads_for,
    replay_memory,
    write_memory_fit,
)
from costmodel.datasets import default_root

SHIPPED = default_root() / "h200" / MEMORY_FIT


def test_the_shipped_allowance_is_the_median_of_its_rows_and_those_rows_still_replay_as_stored():
    fit = load_memory_fit(SHIPPED)
    assert len(fit["rows"]) == 57  # every packaged vision training row
    assert 0.0 < fit["train_reserved_slack"] < 0.1
    # the stored replays go stale when the trace changes: two small rows replayed again must agree
    ov = replace(overheads_for("h200"), train_slack=0.0)
    small = sorted(fit["rows"], key=lambda r: r["replayed_reserved_mb"])[:2]
    for r in small:
        out = replay_memory(r["spec"], "h200", batch=r["batch"], mode="training", dtype=r["dtype"], overheads=ov)
        assert out.reserved_mb == pytest.approx(r["replayed_reserved_mb"], abs=0.01), r["spec"]["name"]


def test_a_training_replay_carries_the_allowance_and_says_so():
    ov = overheads_for("h200")
    assert ov.train_slack == load_memory_fit(SHIPPED)["train_reserved_slack"]
    bare = replay_memory("torchvision:resnet18", "h200", batch=4, mode="training", overheads=replace(ov, train_slack=0))
    out = replay_memory("torchvision:resnet18", "h200", batch=4, mode="training")
    assert out.slack_mb == pytest.approx(bare.reserved_mb * ov.train_slack)
    assert out.reserved_mb == pytest.approx(bare.reserved_mb + out.slack_mb)
    assert out.memory_mb == pytest.approx(out.reserved_mb + out.context_mb)
    assert out.allocated_mb == bare.allocated_mb
    assert any("training: reserved peak raised" in n for n in out.notes)
    infer = replay_memory("torchvision:resnet18", "h200", batch=4)
    assert infer.slack_mb == 0 and not any("reserved peak raised" in n for n in infer.notes)
    # a device without rows borrows the H200's allowance, as it borrows its workspace
    assert overheads_for("a100-80gb").train_slack == ov.train_slack


def _write(tmp_path, blob) -> str:
    p = tmp_path / MEMORY_FIT
    p.write_text(blob if isinstance(blob, str) else json.dumps(blob))
    return p


@pytest.mark.parametrize("mutate, needle", [
    (lambda b: "{not json", "not a readable memory fit"),
    (lambda b: {**b, "format": "other"}, "not a memory fit"),
    (lambda b: {**b, "version": 99}, "version 99"),
    (lambda b: {**b, "train_reserved_slack": 0.9}, "in \\[0, 0.5\\]"),
    (lambda b: {**b, "train_reserved_slack": 0.02}, "not the median"),
    (lambda b: {**b, "rows": [{"spec": {}}]}, "rows must list"),
    (lambda b: {**b, "rows": []}, "not the median"),
])
def test_a_damaged_or_foreign_fit_is_refused_with_the_reason(tmp_path, mutate, needle):
    good = {"format": "costmodel.memory_fit", "version": 1, "train_reserved_slack": 0.05,
            "rows": [{"peak_reserved_mb": 105.0, "replayed_reserved_mb": 100.0},
                     {"peak_reserved_mb": 210.0, "replayed_reserved_mb": 200.0}]}
    assert load_memory_fit(_write(tmp_path, good))["train_reserved_slack"] == 0.05
    with pytest.raises(ModelLoadError, match=needle):
        load_memory_fit(_write(tmp_path, mutate(good)))


def test_fitting_needs_training_rows():
    with pytest.raises(InvalidInputError, match="no vision training rows"):
        fit_train_slack([{"mode": "infer", "spec": {"name": "resnet18"}, "batch": 1, "dtype": "fp32",
                          "peak_reserved_mb": 10.0}])


def test_a_small_fit_is_the_median_ratio():
    rows = [{"mode": "train", "spec": "torchvision:resnet18", "batch": b, "dtype": "fp32", "peak_reserved_mb": y}
            for b, y in ((2, 1.0), (4, 1.0))]
    ov = replace(overheads_for("h200"), train_slack=0.0)
    want = [replay_memory("torchvision:resnet18", "h200", batch=b, mode="training", overheads=ov).reserved_mb
            for b in (2, 4)]
    rows[0]["peak_reserved_mb"] = want[0] * 1.10
    rows[1]["peak_reserved_mb"] = want[1] * 1.02
    slack, recs = fit_train_slack(rows, "h200")
    assert slack == pytest.approx(0.06, abs=1e-4)
    assert [r["replayed_reserved_mb"] for r in recs] == pytest.approx(want, abs=1e-3)
    rows[0]["peak_reserved_mb"] = rows[1]["peak_reserved_mb"] = 1.0  # reserving less than the replay: no negative share
    assert fit_train_slack(rows, "h200")[0] == 0.0


def test_a_written_fit_loads_back_and_a_wrong_one_is_not_left_unnoticed(tmp_path):
    rows = [{"spec": {"name": "a"}, "peak_reserved_mb": 110.0, "replayed_reserved_mb": 100.0},
            {"spec": {"name": "b"}, "peak_reserved_mb": 103.0, "replayed_reserved_mb": 100.0}]
    p = write_memory_fit(tmp_path / MEMORY_FIT, 0.065, rows, device="X", fitted_by="test")
    back = load_memory_fit(p)
    assert back["rows"] == rows and back["device"] == "X" and back["train_reserved_slack"] == 0.065
    with pytest.raises(ModelLoadError, match="not the median"):
        write_memory_fit(tmp_path / "bad.json", 0.2, rows, device="X", fitted_by="test")
