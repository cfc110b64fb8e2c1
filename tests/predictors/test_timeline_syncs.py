"""The timeline's composition where the host waits for the device inside a call."""

import numpy as np
import pytest

from costmodel.frontends import zoo_graph
from costmodel.predictors._timeline_lanes import host_sync_nodes, synced_latency_us


def test_without_a_wait_the_lanes_overlap_over_the_whole_call():
    h = np.array([2.0, 0.5, 3.0, 0.5, 1.0])
    d = np.array([3.0, 0.1, 0.1, 0.5, 0.0])
    node = np.array([0, 1, 2, 3, -1])  # the last row belongs to no node (module calls)
    lat, waits = synced_latency_us(h, d, node, np.array([], dtype=np.int64), call_us=4.0)
    assert waits == 0
    assert lat == pytest.approx(max(h.sum() + 4.0, d.sum()))


def test_a_wait_ends_a_stretch_and_the_stretches_add():
    h = np.array([0.5, 0.5, 3.0, 0.5])
    d = np.array([3.0, 0.1, 0.1, 0.5])
    node = np.arange(4)
    lat, waits = synced_latency_us(h, d, node, np.array([1]), call_us=0.0)
    # rows 0-1 (the wait after row 1): max(1.0, 3.1); rows 2-3: max(3.5, 0.6)
    assert waits == 1
    assert lat == pytest.approx(3.1 + 3.5)
    assert lat > max(h.sum(), d.sum())  # overlapped across the wait it would have been 4.5


def test_rows_without_a_node_are_spread_over_the_stretches():
    h = np.array([1.0, 1.0, 2.0])
    d = np.array([4.0, 0.0, 0.0])
    node = np.array([0, 1, -1])
    lat, _ = synced_latency_us(h, d, node, np.array([0]), call_us=0.0)
    # stretch 0: host 1 + 2 * (1/2), device 4; stretch 1: host 1 + 1, device 0
    assert lat == pytest.approx(4.0 + 2.0)


def test_classifiers_have_no_waits():
    g = zoo_graph("torchvision:resnet18", batch=2)
    assert host_sync_nodes(g).size == 0
