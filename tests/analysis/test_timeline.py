import numpy as np
import pytest
import torch

from costmodel.analysis._timeline import latency_ms, latency_ms_torch, replay


def _loop(h, d, sync=0.0):
    """The recurrence written out, one operator at a time."""
    t_host, end, starts, ends = 0.0, 0.0, [], []
    for hi, di in zip(h, d):
        t_host += hi
        start = max(t_host, end)
        end = start + di
        starts.append(start)
        ends.append(end)
    return end + sync, np.array(starts), np.array(ends)


@pytest.mark.parametrize("seed", range(5))
def test_closed_form_matches_the_recurrence(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    # mixed regimes: kernels both shorter and longer than their dispatch
    h = rng.exponential(0.02, n)
    d = rng.exponential(0.02, n) * rng.choice([0.1, 1.0, 10.0], n)
    want, starts, ends = _loop(h, d, 0.05)
    tl = replay(h, d, sync_ms=0.05)
    assert tl.latency_ms == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(tl.start_ms, starts, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(tl.end_ms, ends, rtol=1e-12, atol=1e-15)
    assert latency_ms(h, d, sync_ms=0.05) == pytest.approx(want, rel=1e-12)
    got = latency_ms_torch(torch.tensor(h), torch.tensor(d), 0.05)
    assert float(got) == pytest.approx(want, rel=1e-12)
    # the device is either busy or idle until the last kernel ends
    assert tl.device_busy_ms + tl.device_idle_ms == pytest.approx(tl.end_ms[-1], rel=1e-12)


def test_launch_bound_and_compute_bound_limits():
    n = 100
    # launch-bound: 20 us to dispatch, 1 us kernels -> latency is the host lane plus the last kernel
    tl = replay(np.full(n, 0.020), np.full(n, 0.001))
    assert tl.latency_ms == pytest.approx(n * 0.020 + 0.001)
    assert tl.host_bound.all() and tl.host_bound_share > 0.9
    # compute-bound: kernels queue behind each other -> first dispatch plus all kernels
    tl = replay(np.full(n, 0.001), np.full(n, 0.5))
    assert tl.latency_ms == pytest.approx(0.001 + n * 0.5)
    assert tl.host_bound.sum() == 1 and tl.device_idle_ms == pytest.approx(0.001)


def test_batched_torch_and_its_gradient_follow_the_critical_path():
    h = torch.tensor([[0.1, 0.1, 0.1], [0.01, 0.01, 0.01]], requires_grad=True)
    d = torch.tensor([[0.01, 0.01, 0.01], [1.0, 1.0, 1.0]], requires_grad=True)
    lat = latency_ms_torch(h, d)
    assert lat.tolist() == pytest.approx([0.31, 3.01])
    lat.sum().backward()
    # row 0 is host-bound: every host cost counts, only the last kernel does
    assert h.grad[0].tolist() == [1, 1, 1] and d.grad[0].tolist() == [0, 0, 1]
    # row 1 is device-bound: the first dispatch and every kernel count
    assert h.grad[1].tolist() == [1, 0, 0] and d.grad[1].tolist() == [1, 1, 1]


@pytest.mark.parametrize(
    "h, d, match",
    [
        ([0.1, 0.2], [0.1], "one length"),
        ([0.1, -0.2], [0.1, 0.1], "non-negative"),
        ([0.1, float("nan")], [0.1, 0.1], "finite"),
    ],
)
def test_bad_input_is_refused(h, d, match):
    with pytest.raises(ValueError, match=match):
        replay(h, d)


def test_empty_sequence_is_the_sync_alone():
    assert replay([], [], sync_ms=0.2).latency_ms == 0.2
    with pytest.raises(ValueError, match="sync_ms"):
        replay([0.1], [0.1], sync_ms=-1)
