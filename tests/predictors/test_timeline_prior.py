"""The timeline fit's streaming prior: large elementwise kernels pulled toward the measured copy bandwidth."""

import json
from pathlib import Path

import numpy as np
import pytest

import costmodel
from costmodel.devices import get_device
from costmodel.frontends import zoo_graph
from costmodel.predictors._optable import FEATURE_NAMES, op_table
from costmodel.predictors._timeline import TimelineConfig, TimelinePredictor
from costmodel.predictors._timeline_start import copy_efficiency, streaming_targets

_COL = {n: i for i, n in enumerate(FEATURE_NAMES)}


def test_copy_efficiency_is_the_packaged_measurement_over_the_datasheet():
    dev = get_device("h200")
    lg, eff = copy_efficiency(dev)
    hw = json.loads((Path(costmodel.__file__).parent / "data" / "h200" / "hardware.json").read_text())
    measured = sorted(hw["bandwidth"].items(), key=lambda kv: float(kv[0][5:-7]))
    assert len(lg) == len(measured) and np.all(np.diff(lg) > 0)
    # traffic counts the read and the write of a copy of that many MiB
    assert 10 ** lg[0] == pytest.approx(2 * float(measured[0][0][5:-7]) * 2 ** 20, rel=1e-9)
    assert eff == pytest.approx([v / dev.memory_bandwidth_gbps for _, v in measured])
    assert 0.5 < eff[0] < eff[-1] < 1.0  # a large copy gets closer to the datasheet than a small one
    assert copy_efficiency(get_device("a100-80gb")) is None  # no packaged measurement


def test_the_prior_applies_to_large_streaming_kernels_only():
    dev = get_device("h200")
    g = zoo_graph("resnet18", batch=128, method="trace")
    t = op_table(g, dev, mode="training", optimizer="sgd")
    target, use = streaming_targets([t], [dev], FEATURE_NAMES)
    assert target.shape == use.shape == t.bound_s.shape
    ops = g.nodes  # a row's node is its index among the graph's nodes
    chosen = {ops[int(t.node[i])].kind for i in np.flatnonzero(use)}
    assert chosen and chosen <= {"relu", "add"}  # resnet18's streaming kernels; never a conv or a norm
    assert np.all(t.phase[use] == 0)  # forward only
    l2_bytes = 2 * dev.l2_cache_mb * 2 ** 20
    moved = np.array([ops[int(t.node[i])].bytes_read + ops[int(t.node[i])].bytes_written for i in np.flatnonzero(use)])
    assert np.all(moved >= l2_bytes)
    lg, eff = copy_efficiency(dev)
    assert np.all((target[use] >= eff[0]) & (target[use] <= eff[-1]))
    # a batch-1 graph moves too little for any kernel to qualify, and a device without a measurement gets none
    small = op_table(zoo_graph("resnet18", batch=1, method="trace"), dev, mode="inference")
    assert not streaming_targets([small], [dev], FEATURE_NAMES)[1].any()
    a100 = get_device("a100-80gb")
    assert not streaming_targets([op_table(g, a100, mode="inference")], [a100], FEATURE_NAMES)[1].any()


def test_the_prior_pulls_the_fitted_efficiency_toward_the_copy(coverage_split):
    with pytest.raises(costmodel.InvalidInputError, match="stream_prior must be a finite number >= 0, got -1"):
        TimelineConfig(stream_prior=-1)
    assert TimelineConfig().stream_prior == 0.0  # off by default (docs/predictors.md says why)
    data, train, _, _ = coverage_split
    graphs, rows = [data.graph(i) for i in train], [data[i] for i in train]
    dev = get_device("h200")
    gap = {}
    for w in (0.0, 1.0):
        p = TimelinePredictor(TimelineConfig(epochs=100, hidden=16, stream_prior=w)).fit_graphs(graphs, rows)
        assert ("stream_prior_rows" in p.params.trained_on) == (w > 0)
        tables = [op_table(g, dev, mode=r.mode) for g, r in zip(graphs, rows)]
        target, use = streaming_targets(tables, [dev] * len(tables), FEATURE_NAMES)
        eff = np.concatenate([p._device_us(t)[1] for t in tables])
        assert use.sum() > 20
        gap[w] = float(np.median(np.abs(np.log(eff[use] / target[use]))))
    assert gap[1.0] < 0.5 * gap[0.0], gap
