"""The array versions of the roofline and of the liveness peak hold the per-operator definitions."""

import pytest

from costmodel.analysis import RooflineConfig, roofline
from costmodel.analysis._memory import _buffers, _nbytes, peak_activation_bytes
from costmodel.analysis._roofline import ADAM_BYTES_PER_PARAM_BYTE, BACKWARD_FACTOR, _op_dtype, _peak
from costmodel.devices import get_device
from costmodel.frontends import zoo_graph


@pytest.fixture(scope="module")
def graphs():
    return [zoo_graph("resnet18", batch=4, method="trace"), zoo_graph("mobilenet_v3_small", batch=2, method="trace"),
            zoo_graph("vit_b_16", batch=1, method="trace")]


def _reference(g, dev, mode, cfg):
    """One operator at a time, as the roofline's docstring defines it."""
    factor = 1.0 + (BACKWARD_FACTOR if mode == "training" else 0.0)
    out = []
    for n in g.nodes:
        if n.is_view:
            continue
        peak = _peak(n, _op_dtype(n, g.meta.get("dtype", "fp32")), dev, cfg) * cfg.efficiency
        c = n.flops / peak if peak > 0 else 0.0
        m = (n.bytes_read + n.bytes_written) / (dev.bandwidth_bytes_s * cfg.efficiency)
        d = factor * (max(c, m) + dev.kernel_launch_overhead_us * 1e-6)
        h = factor * cfg.host_overhead_us * 1e-6
        out.append((n.id, max(d, h), "overhead" if h >= d else ("compute" if c >= m else "memory")))
    return out


@pytest.mark.parametrize("device", ["h200", "v100", "cpu"])
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_roofline_arrays_match_the_per_operator_definition(graphs, device, mode):
    dev, cfg = get_device(device), RooflineConfig(efficiency=0.8)
    for g in graphs:
        r = roofline(g, dev, mode=mode, cfg=cfg)
        ref = _reference(g, dev, mode, cfg)
        assert [(o.node, o.bound) for o in r.ops] == [(i, b) for i, _, b in ref]
        assert [o.total_s for o in r.ops] == pytest.approx([t for _, t, _ in ref], rel=1e-12)
        assert r.bound_counts() == {b: sum(1 for *_, x in ref if x == b) for b in ("compute", "memory", "overhead")}
        bw = dev.bandwidth_bytes_s * cfg.efficiency
        # training adds the optimizer's sweep over the parameters and its host cost
        opt = 0.0 if mode == "inference" else ADAM_BYTES_PER_PARAM_BYTE * g.weights_bytes / bw + 4 * cfg.host_overhead_us * 1e-6
        assert r.latency_s == pytest.approx(sum(t for _, t, _ in ref) + opt, rel=1e-12)


def _peak_reference(g):
    """The liveness scan one step at a time."""
    n = len(g.nodes)
    owner, allocates = _buffers(g)
    succ = g.successors()
    last = list(range(n))
    for i in range(n):
        end = max(succ[i]) if succ[i] else n
        last[owner[i]] = max(last[owner[i]], end)
    free_at = {}
    for o in set(owner):
        free_at.setdefault(last[o], []).append(o)
    size = {i: g.nodes[i].out_bytes for i in range(n) if allocates[i]}
    live = peak = float(sum(_nbytes(x.shape, x.dtype) for x in g.inputs))
    for i in range(n):
        if allocates[i]:
            live += size[i]
            peak = max(peak, live)
        for o in free_at.get(i, ()):
            live -= size.get(o, 0)
    return peak


def test_the_liveness_peak_over_arrays_is_the_step_by_step_one(graphs):
    for g in graphs:
        assert peak_activation_bytes(g) == _peak_reference(g)
