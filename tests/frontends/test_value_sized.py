"""Models whose operators' output sizes follow the values (a detector's box filtering, NMS): the graph is
built from one run on real data, the module is left as it was, and the estimate says where the host waits."""

import numpy as np
import pytest
import torch
from torch import nn

import costmodel
from costmodel.frontends import from_torch


class Filter(nn.Module):
    """Keeps the positive scores (``nonzero``: a size only the values give) and caches a tensor as a plain
    attribute moved to the input's device, as torchvision's ``AnchorGenerator`` keeps its anchors."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 64)
        self.anchors = [torch.ones(4)]

    def forward(self, x):
        self.anchors = [a.to(x.device) for a in self.anchors]
        s = self.head(self.conv(x).mean((2, 3))).flatten()
        keep = torch.nonzero(s > 0).flatten()
        return s[keep] * self.anchors[0].sum()


def _model():
    torch.manual_seed(0)
    return Filter().eval()


def test_a_value_sized_operator_builds_the_graph_from_one_real_run():
    m = _model()
    with pytest.warns(UserWarning, match="falling back"):
        g = from_torch(m, input_shape=(3, 16, 16), batch=4)
    assert g.meta["capture"] == "trace-real"
    nz = [n for n in g.nodes if n.op == "aten.nonzero"]
    assert len(nz) == 1 and nz[0].kind == "reduction"
    # the kept count is one of the 256 scores' outcomes, not the meta trace's "all of them"
    assert 0 < nz[0].out_shapes[0][0] < 256
    # the meta attempt moved the cached anchors to the meta device; the module got its own back
    assert m.anchors[0].device.type == "cpu" and float(m.anchors[0].sum()) == 4.0
    # the random inputs are seeded, so the same module gives the same graph
    with pytest.warns(UserWarning, match="falling back"):
        g2 = from_torch(m, input_shape=(3, 16, 16), batch=4)
    assert [n.out_shapes for n in g2.nodes] == [n.out_shapes for n in g.nodes]


def test_real_inputs_decide_what_is_kept():
    m = _model()
    x = torch.randn(4, 3, 16, 16)
    kept = m(x).numel()  # the scores the model kept on these values
    with pytest.warns(UserWarning, match="falling back"):
        g = from_torch(m, x)
    nz = next(n for n in g.nodes if n.op == "aten.nonzero")
    assert nz.out_shapes[0][0] == kept


def test_the_estimate_walks_its_graph_and_says_where_the_host_waits():
    m = _model()
    with pytest.warns(UserWarning):
        e = costmodel.estimate(m, batch=4, input_shape=(3, 16, 16), device="h200")
    assert e.details["memory"]["path"] == "liveness-fallback"
    assert any("nonzero" in a and "cannot run on meta tensors" in a for a in e.assumptions)
    assert any("the host waits for the device 1 time" in a for a in e.assumptions)
    assert m.anchors[0].device.type == "cpu"
    # the call is at least its two lanes overlapped, and the wait cannot make it cheaper than that
    ops = e.details["ops"]
    assert ops["host_waits"] == 1
    assert e.latency_ms >= max(ops["host_ms"], ops["device_ms"])
    assert ops["single_call_ms"] >= e.latency_ms


def test_the_allocation_trace_leaves_cached_tensors_alone():
    from costmodel.analysis.alloctrace import TraceError, trace_module

    m = _model()
    with pytest.raises(TraceError, match="nonzero"):
        trace_module(m, torch.empty(4, 3, 16, 16, device="meta"))
    assert m.anchors[0].device.type == "cpu"
    assert not isinstance(m.anchors[0], torch._subclasses.FakeTensor)


def test_a_torchvision_detector_is_estimated(capfd):
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    m = tv.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    with pytest.warns(UserWarning):
        e = costmodel.estimate(m, batch=2, input_shape=(3, 320, 320), device="h200")
    g_ops = e.details["ops"]
    assert e.latency_ms > 0 and np.isfinite(e.energy_j)
    assert e.details["memory"]["path"] == "liveness-fallback"
    assert any("the host waits for the device" in a for a in e.assumptions)
    assert g_ops["host_ms"] > 0 and g_ops["device_ms"] > 0
    # torch.export prints the partial graph of its failed export of SSD to stderr (two copies, thousands of
    # lines); the capture keeps it from the user
    assert "def forward" not in capfd.readouterr().err
