"""Energy per call from a counter that advances in steps: the span between two of its updates.

NVML's total-energy counter does not advance continuously: on recent data-centre GPUs it steps about
every 100 ms. Read before and after a 0.25 s window (the packaged protocol), each read is stale by an
unknown part of a period, so the energy counted belongs to a span up to a period longer or shorter
than the window: a mean error of ``period / (3 window)``, about 13 % at 0.25 s
(``benchmarks/energy_labels.py`` measures it on the packaged rows). Reading the counter between its
updates removes that error: run the step back to back, note the first update after a lead-in (the
workload running for at least one period, so the counter's own averaging sees only the workload) and
the first update at least ``span_s`` later, and divide the energy between them by the time between
them. What is left is where, between two polls, an update fell; the polls are at most
:data:`POLL_S` apart while the host waits for the device, and :data:`POLL_BUSY_S` or one call's host
time apart while it dispatches.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable

#: the shortest span between the two counter updates that bound the energy (seconds)
ENERGY_SPAN_S = 0.3
#: the workload runs this long before the span may open (one update period and more)
LEAD_S = 0.12
#: no update within this long (after the lead-in, or after the span's length) ends the attempt
UPDATE_TIMEOUT_S = 0.5
#: calls queued ahead of the device while the host watches the counter
IN_FLIGHT = 3
#: the host reads the counter at most this often while it waits for the device
POLL_S = 0.0005
#: and at most this often between calls it dispatches (a read costs host time a dispatch-bound step
#: would otherwise spend on the workload)
POLL_BUSY_S = 0.002


class _Watch:
    """The counter as polled: the last value, when it was read, and the updates seen."""

    def __init__(self, read: Callable[[], float | None], clock: Callable[[], float]) -> None:
        self.read, self.clock = read, clock
        self.value = read()
        self.t_read = clock()
        self.updates: list[tuple[float, float]] = []  # (time of the update, value after it)

    def poll(self, gap_s: float = POLL_S) -> None:
        t = self.clock()
        if t - self.t_read < gap_s:
            return
        v = self.read()
        if v is not None and v != self.value:
            # the update fell between the previous read and this one: take the middle
            self.updates.append((0.5 * (self.t_read + t), v))
            self.value = v
        self.t_read = t


def energy_between_updates(step: Callable[[], Any], read: Callable[[], float | None], *,
                           mark: Callable[[], Any] | None = None, sync: Callable[[], None] | None = None,
                           span_s: float = ENERGY_SPAN_S, lead_s: float = LEAD_S,
                           timeout_s: float = UPDATE_TIMEOUT_S,
                           clock: Callable[[], float] = time.perf_counter) -> dict | None:
    """The device's mean power while ``step`` runs back to back, between two updates of ``read``'s
    counter (joules); ``None`` when the counter cannot be read or does not advance in time.

    ``mark()`` returns an object whose ``query()`` says whether the device has finished the calls
    before it (a CUDA event); with it the host keeps :data:`IN_FLIGHT` calls queued and polls the
    counter while it waits, so the device never idles for the host's sake. Without it every call is
    taken to be finished when it returns. Returns ``power_w``, ``span_s`` (between the two updates),
    ``updates`` (seen within the span), ``update_ms`` (their median interval) and ``calls``.
    """
    if read() is None:
        return None
    w = _Watch(read, clock)
    queue: deque = deque()
    start = clock()
    opened: tuple[float, float] | None = None
    calls = 0
    try:
        while True:
            while len(queue) >= IN_FLIGHT:
                while not queue[0].query():
                    w.poll()
                queue.popleft()
            step()
            calls += 1
            if mark is not None:
                queue.append(mark())
            w.poll(POLL_BUSY_S)
            now = clock()
            if opened is None:
                n_open = next((i for i, u in enumerate(w.updates) if u[0] >= start + lead_s), -1)
                if n_open >= 0:
                    opened = w.updates[n_open]
                elif now - start > lead_s + timeout_s:
                    return None
            else:
                closing = [u for u in w.updates[n_open + 1:] if u[0] - opened[0] >= span_s]
                if closing:
                    closed = closing[0]
                    break
                if now - opened[0] > span_s + timeout_s:
                    return None
    finally:
        if sync is not None:
            sync()
    inside = [u for u in w.updates if opened[0] <= u[0] <= closed[0]]
    gaps = sorted(b[0] - a[0] for a, b in zip(inside, inside[1:]))
    span = closed[0] - opened[0]
    return {"power_w": (closed[1] - opened[1]) / span, "span_s": round(span, 4), "updates": len(inside) - 1,
            "update_ms": round(gaps[len(gaps) // 2] * 1e3, 2), "calls": calls}
