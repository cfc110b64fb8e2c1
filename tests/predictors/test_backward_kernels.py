"""The backward kernels a training step's timeline charges where a tensor is read in pieces, against what
PyTorch's autograd runs (the CPU profiler's operators of ``loss.backward()`` for each of these blocks, with
torch 2.x: ``chunk`` and ``unbind`` come back in one ``cat``/``stack``; every ``select`` or ``slice`` is a
``zeros`` fill and a ``copy_`` of its part, and the whole-size gradients are summed by ``add_``)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from costmodel.devices import get_device  # noqa: E402
from costmodel.frontends.pytorch import from_torch  # noqa: E402
from costmodel.predictors._optable import op_table  # noqa: E402


class _Block(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.lin = nn.Linear(64, 256)
        self.f = f

    def forward(self, x):
        return self.f(self.lin(x))


def _gates(a, b, c, d):
    return a.sigmoid() * b.tanh() + c.sigmoid() * d


# per block: the bytes (in multiples of the linear layer's output) of each backward kernel that gathers
# its output's gradient, between the last elementwise kernel and the two GEMMs: a cat reads the pieces and
# writes the whole (2); a slice's fill writes the whole (1) and its copy reads and writes its part (2 x
# its share); a sum of two whole-size gradients reads two and writes one (3)
CASES = {
    "chunk": (lambda h: _gates(*h.chunk(4, 1)), [2]),
    "unbind": (lambda h: _gates(*h.view(8, 4, 64).unbind(1)), [2]),
    "slices": (lambda h: h[:, :128].sigmoid() * h[:, 128:].tanh(), [1, 1, 1, 1, 3]),
    "reused": (lambda h: h.sigmoid() * h.tanh(), [3]),
    "a quarter": (lambda h: h[:, :64].sigmoid(), [1, 0.5]),
    "read once": (lambda h: h.sigmoid(), []),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_gradients_of_pieces_are_gathered_as_autograd_does(name):
    f, expected = CASES[name]
    g = from_torch(_Block(f), input_shape=(64,), batch=8, mode="training", method="trace")
    h200 = get_device("h200")
    t = op_table(g, h200, mode="training")
    lin = next(n.id for n in g.nodes if n.kind == "matmul")
    rows = [int(r) for r in np.flatnonzero(t.phase == 1) if int(t.node[r]) == lin]
    assert len(rows) == len(expected) + 2  # then the input's and the weight's gradient GEMMs
    whole = 8 * 256 * 4  # the linear layer's output, fp32
    got = t.bound_s[rows[:-2]] * h200.bandwidth_bytes_s / whole
    assert got.tolist() == pytest.approx(expected)
    assert (t.bound_s[rows[-2:]] > 0).all()
