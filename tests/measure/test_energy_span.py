"""Energy between two updates of a stepping counter (costmodel.measure.energy), on a simulated clock."""

from __future__ import annotations

import math

import pytest

from costmodel import InvalidInputError
from costmodel.measure import energy as en
from costmodel.measure.protocol import _energy_span, check_energy_span


class _Sim:
    """Virtual time; a device drawing ``idle_w`` until the workload starts and ``busy_w`` after; an energy
    counter that steps every ``period_s`` (first step at ``phase_s``) to the energy drawn up to
    ``delay_s`` before the step."""

    def __init__(self, *, call_s=0.004, period_s=0.1, phase_s=0.0, delay_s=0.0, idle_w=80.0, busy_w=400.0,
                 read_s=2e-5):
        self.t, self.call_s, self.period_s, self.phase_s, self.delay_s = 0.0, call_s, period_s, phase_s, delay_s
        self.idle_w, self.busy_w, self.read_s = idle_w, busy_w, read_s
        self.start: float | None = None
        self.calls = 0

    def clock(self) -> float:
        return self.t

    def energy_at(self, t: float) -> float:
        if self.start is None or t <= self.start:
            return self.idle_w * t
        return self.idle_w * self.start + self.busy_w * (t - self.start)

    def read(self) -> float:
        self.t += self.read_s
        if self.t < self.phase_s:
            return 0.0
        last = self.phase_s + math.floor((self.t - self.phase_s) / self.period_s) * self.period_s
        return self.energy_at(max(0.0, last - self.delay_s))

    def step(self) -> None:
        if self.start is None:
            self.start = self.t
        self.t += self.call_s
        self.calls += 1

    def window_power(self, window_s: float) -> float:
        """The packaged protocol: read, run calls for ``window_s``, read; energy over the window."""
        e0 = self.read()
        t0 = self.t
        while self.t - t0 < window_s:
            self.step()
        return (self.read() - e0) / (self.t - t0)


@pytest.mark.parametrize("phase", [0.0, 0.013, 0.05, 0.087])
def test_span_recovers_the_power_a_window_misreads(phase):
    sim = _Sim(phase_s=phase)
    span = en.energy_between_updates(sim.step, sim.read, clock=sim.clock)
    assert span is not None
    assert span["power_w"] == pytest.approx(400.0, rel=0.02)
    assert span["update_ms"] == pytest.approx(100.0, abs=5)
    assert span["span_s"] >= en.ENERGY_SPAN_S and span["updates"] >= 3
    assert span["calls"] == sim.calls


def test_the_window_it_replaces_is_off_by_up_to_a_period():
    """The same simulated device read the packaged way: a 0.25 s window between two stale reads."""
    errors = []
    for k in range(20):
        sim = _Sim(phase_s=0.005 * k)
        sim.step()  # the workload has started (warm-up)
        errors.append(abs(sim.window_power(0.25) / 400.0 - 1))
    assert max(errors) > 0.15  # a third of a period either way is common
    assert sum(errors) / len(errors) > 0.05


def test_a_delayed_counter_does_not_count_the_idle_time_before_the_workload():
    sim = _Sim(phase_s=0.03, delay_s=0.06, idle_w=60.0)
    sim.t = 0.5  # idle before the workload
    span = en.energy_between_updates(sim.step, sim.read, clock=sim.clock)
    assert span["power_w"] == pytest.approx(400.0, rel=0.02)
    sim = _Sim(phase_s=0.03, delay_s=0.06, idle_w=60.0)  # without the lead-in the idle time leaks in
    sim.t = 0.5
    short = en.energy_between_updates(sim.step, sim.read, clock=sim.clock, lead_s=0.0)
    assert short["power_w"] < 0.97 * 400.0


def test_long_calls_with_events_keep_the_polls_fine():
    """A 50 ms call: the host waits for the device's events, polling the counter while it does."""
    sim = _Sim(call_s=0.05, phase_s=0.021)
    done_at: list[float] = []
    queued_at: list[float] = []

    class _Event:
        def __init__(self, t):
            self.t = t

        def query(self):
            sim.t += 1e-4  # the host spins
            return sim.t >= self.t

    device_free = [0.0]

    def step():  # the host only enqueues: the device runs the call when it is free
        if sim.start is None:
            sim.start = sim.t
        device_free[0] = max(device_free[0], sim.t) + sim.call_s
        sim.t += 1e-4
        sim.calls += 1

    def mark():
        done_at.append(device_free[0])
        queued_at.append(sim.t)
        return _Event(device_free[0])

    span = en.energy_between_updates(step, sim.read, mark=mark, clock=sim.clock, span_s=0.3)
    assert span["power_w"] == pytest.approx(400.0, rel=0.01)
    # when the host queues a call, at most IN_FLIGHT calls (that one included) are unfinished on the device
    in_flight = [sum(1 for d in done_at[: i + 1] if d > t) for i, t in enumerate(queued_at)]
    assert max(in_flight) == en.IN_FLIGHT
    # and the device never idled for the host: each call starts when the one before it ends
    gaps = [b - sim.call_s - a for a, b in zip(done_at, done_at[1:])]
    assert max(gaps) < 1e-9


def test_a_counter_that_does_not_advance_or_cannot_be_read_gives_none():
    t = [0.0]

    def step():
        t[0] += 0.01

    assert en.energy_between_updates(step, lambda: 5.0, clock=lambda: t[0]) is None
    assert en.energy_between_updates(step, lambda: None, clock=lambda: t[0]) is None


class _FakeDevice:
    cuda = True

    def __init__(self, sim, span_s=0.3):
        self.sim, self.energy_span_s = sim, span_s
        self.meter = type("M", (), {"energy_j": staticmethod(sim.read)})()

    def event(self):
        return type("E", (), {"query": staticmethod(lambda: True)})()

    def sync(self):
        pass


def test_the_row_keeps_the_windows_reading_and_says_which_energy_it_gives():
    sim = _Sim(phase_s=0.04)
    out = {"latency_ms": 4.0, "energy_j": 1.9, "power_w": 475.0, "energy_method": "window"}
    row = _energy_span(sim.step, _FakeDevice(sim), dict(out), clock=sim.clock)
    assert row["energy_method"] == "counter-updates"
    assert row["energy_j_window"] == 1.9 and row["power_w_window"] == 475.0
    assert row["power_w"] == pytest.approx(400.0, rel=0.02)
    assert row["energy_j"] == pytest.approx(400.0 * 0.004, rel=0.02)
    assert set(row["energy_span"]) == {"span_s", "updates", "update_ms", "calls"}
    # span 0: the packaged protocol's reading stays
    assert _energy_span(sim.step, _FakeDevice(sim, span_s=0.0), dict(out), clock=sim.clock) == out


@pytest.mark.parametrize("bad", [-1, "abc", float("nan"), 61, None])
def test_energy_span_is_checked(bad):
    if bad is None:
        assert check_energy_span(None) == en.ENERGY_SPAN_S
        return
    with pytest.raises(InvalidInputError, match="energy span"):
        check_energy_span(bad)


def test_collect_refuses_a_bad_energy_span_before_measuring(tmp_path, capsys):
    import json

    from costmodel.cli import main

    work = tmp_path / "w.json"
    work.write_text(json.dumps([{"family": "misc", "name": "squeezenet1_1", "res": 32, "src": "tv"}]))
    out = tmp_path / "o.jsonl"
    assert main(["collect", str(work), "-o", str(out), "--energy-span", "-0.5"]) == 2
    assert "energy span must be 0 (off) to 60 seconds, got -0.5" in capsys.readouterr().err
    assert not out.exists()


def test_the_benchmark_check_finds_the_counters_step_in_rows_measured_both_ways(benchmark_module):
    """Rows whose window power carries a 100 ms counter error around the span's: the check fits ~100 ms."""
    import numpy as np

    mod = benchmark_module("energy_labels")
    rng = np.random.default_rng(1)
    w = rng.uniform(0.2, 0.4, 300)
    e = mod.counter_errors(w, 0.1, 1, rng)[0]
    rows = [{"window_s": float(wi), "power_w": 300.0, "power_w_window": float(300.0 * (1 + ei)),
             "energy_method": "counter-updates", "energy_span": {"update_ms": 100.0}} for wi, ei in zip(w, e)]
    rows.append({"window_s": 0.25, "power_w": 100.0, "energy_method": "window"})  # not measured both ways
    c = mod.check_rows(rows, 2000, np.random.default_rng(2))
    assert c["rows"] == 300 and c["update_ms"] == 100.0
    assert 80 <= c["fitted_update_ms"] <= 120
    assert c["spread"] == pytest.approx(c["expected_spread"], rel=0.15)
    assert mod.check_rows(rows[-1:], 10, rng) == {"rows": 0}
