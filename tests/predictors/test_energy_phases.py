"""The timeline's power per training phase (costmodel.predictors._energy): each table's busy device time in
the backward pass and the optimizer step, its place in the fit's design, and how an estimate uses it."""

import copy
import dataclasses

import numpy as np
import pytest

from costmodel.devices import get_device
from costmodel.frontends import zoo_graph
from costmodel.predictors import get_predictor
from costmodel.predictors._energy import (ENERGY_PHASES, energy_design, nnls_relative, phase_busy_us,
                                          phase_weights_ok, split_weights)
from costmodel.predictors._optable import ENERGY_CLASSES, PHASES, op_table, op_tables
from costmodel.predictors._timeline import _mlp_numpy
from costmodel.predictors._timeline_lanes import chunk_lanes


@pytest.fixture(scope="module")
def tables():
    dev = get_device("h200")
    gs = [zoo_graph(m, batch=b, method="trace") for m, b in (("resnet18", 8), ("mobilenet_v2", 8), ("vgg11", 2),
                                                            ("squeezenet1_1", 32))]
    return dev, gs, op_tables(gs + gs, dev, modes=["inference"] * len(gs) + ["training"] * len(gs))


def _lanes(pred, tabs):
    xs = pred._scaled_x_rows(tabs)
    z_dev = _mlp_numpy(pred._weights, pred._scaled_x_rows(tabs, True) if any(t.device_x is not None for t in tabs)
                       else xs)
    return chunk_lanes(tabs, z_dev, _mlp_numpy(pred._host_weights, xs), pred._host_vector()[0], pred)


def test_phase_busy_time_is_the_backward_and_optimizer_rows_time(tables):
    pred = get_predictor("timeline")
    _, _, tabs = tables
    lanes = _lanes(pred, tabs)
    assert lanes.phase_us.shape == (8, len(ENERGY_PHASES))
    for j, t in enumerate(tabs):
        d, _, _ = lanes.segment(j)
        want = [float((d * t.busy())[t.phase == PHASES.index(p)].sum()) for p in ENERGY_PHASES]
        assert lanes.phase_us[j] == pytest.approx(want, rel=1e-12)
        assert phase_busy_us(t, d) == pytest.approx(want, rel=1e-12)
    assert not lanes.phase_us[:4].any()  # inference has neither phase
    assert (lanes.phase_us[4:] > 0).all()  # a training step has both (backward kernels, Adam's step)
    # the phases' time is part of the device lane, not added to it
    assert (lanes.phase_us[4:].sum(1) < lanes.device_us[4:]).all()


def test_the_fit_recovers_a_training_steps_own_power(tables):
    """Energies made with known watts, training kernels drawing 150 W (backward) and 60 W (optimizer) more
    than a forward kernel of their class: the design's non-negative fit gives them back."""
    pred = get_predictor("timeline")
    _, _, tabs = tables
    rng = np.random.default_rng(0)
    lanes = _lanes(pred, tabs)
    rows = []
    for j, t in enumerate(tabs):  # the same tables at several latencies (host-bound spells)
        d, e, _ = lanes.segment(j)
        for s in (1.0, 1.3, 2.0):
            rows.append((t, d, e, float(lanes.device_us[j]) * s))
    A = energy_design([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                      np.asarray([r[3] for r in rows]))
    k = len(ENERGY_CLASSES)
    assert A.shape == (len(rows), 1 + 2 * k + len(ENERGY_PHASES))
    true = np.asarray([80.0, *[200.0] * k, *[300.0] * k, 150.0, 60.0])
    y = A @ true * np.exp(rng.normal(0, 0.002, len(rows)))
    got = split_weights(nnls_relative(A, y, iters=20000))
    assert got["energy_phase_w"] == pytest.approx([150.0, 60.0], rel=0.1)
    assert got["energy_static_w"] == pytest.approx(80.0, rel=0.05)


def _with_phase_w(w):
    pred = copy.copy(get_predictor("timeline"))
    pred.params = dataclasses.replace(pred.params, energy_phase_w=w)
    return pred


def test_an_estimate_adds_the_phase_power_to_training_steps_only():
    dev = get_device("h200")
    g = zoo_graph("resnet18", batch=32, method="trace")
    zero, more = _with_phase_w([0.0, 0.0]), _with_phase_w([400.0, 400.0])
    t = op_table(g, dev, mode="training")
    d, _ = zero._device_us(t)
    a, b = zero.predict(g, dev, mode="training"), more.predict(g, dev, mode="training")
    assert a.latency_ms == b.latency_ms
    assert b.energy_j - a.energy_j == pytest.approx(400.0 * phase_busy_us(t, d).sum() * 1e-6, rel=1e-3)
    i0, i1 = zero.predict(g, dev, mode="inference"), more.predict(g, dev, mode="inference")
    assert i0.energy_j == i1.energy_j
    # the shipped artifact was fitted with the phase terms
    assert len(get_predictor("timeline").params.energy_phase_w) == len(ENERGY_PHASES)


def test_an_artifact_from_before_the_phase_terms_keeps_its_energy():
    """``energy_phase_w`` null (an artifact saved before the phase terms): the class terms alone, as such an
    artifact was fitted."""
    g = zoo_graph("resnet18", batch=32, method="trace")
    old, zero = _with_phase_w(None), _with_phase_w([0.0, 0.0])
    assert old.predict(g, "h200", mode="training").energy_j == zero.predict(g, "h200", mode="training").energy_j
    assert phase_weights_ok(None) and phase_weights_ok([0.0, 2.5])
    assert not phase_weights_ok([1.0]) and not phase_weights_ok([float("nan"), 0.0]) and not phase_weights_ok([True, 0])
