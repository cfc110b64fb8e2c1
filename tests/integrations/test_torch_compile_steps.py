"""The torch.compile backend over a whole step: graph breaks, a compiled optimizer step, and symbolic sizes
other than the batch."""

import warnings

import torch
from torch import nn

import costmodel
from costmodel import OOMWarning


def _run(fn, *args, grad=False):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with torch.set_grad_enabled(grad):
            out = fn(*args)
    return out, w


class _TwoHalves(nn.Module):
    """Two MLPs with a graph break between: Dynamo compiles each half as its own graph."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Sequential(nn.Linear(256, 4096), nn.ReLU(), nn.Linear(4096, 256))
        self.b = nn.Sequential(nn.Linear(256, 4096), nn.ReLU(), nn.Linear(4096, 256))

    def forward(self, x):
        y = self.a(x)
        torch._dynamo.graph_break()
        return self.b(y)


def _weights_mb(module) -> float:
    return sum(p.numel() * p.element_size() for p in module.parameters()) / 2**20


def test_a_graph_after_a_break_is_checked_with_the_weights_the_graph_before_it_holds():
    # each half fits the limit on its own, but the first half's weights stay allocated while the second runs:
    # the whole step does not fit, and the second graph's check says so
    m, x = _TwoHalves().eval(), torch.randn(64, 256)
    probe = costmodel.torch_backend(device="t4", inner="eager", predictor="analytic")
    torch._dynamo.reset()
    _run(torch.compile(m, backend=probe), x)
    alone = max(e.memory_mb for e in probe.estimates)
    held = _weights_mb(m.a)
    be = costmodel.torch_backend(device="t4", inner="eager", predictor="analytic", memory_limit_mb=alone + held / 2)
    torch._dynamo.reset()
    y, w = _run(torch.compile(m, backend=be), x)
    assert torch.allclose(y, m(x))
    oom = [str(x.message) for x in w if type(x.message) is OOMWarning]  # not the first graph's risk warning
    assert len(oom) == 1 and len(be.estimates) == 2
    assert f"{held:,.0f} MB stay allocated" in oom[0]
    assert f"{be.estimates[1].memory_mb + held:,.0f} MB in all" in oom[0]


def test_a_recompile_does_not_count_its_own_weights_twice():
    m, x = _TwoHalves().a.eval(), torch.randn(64, 256)
    probe = costmodel.torch_backend(device="t4", inner="eager", predictor="analytic")
    torch._dynamo.reset()
    _run(torch.compile(m, backend=probe), x)
    be = costmodel.torch_backend(device="t4", inner="eager", predictor="analytic",
                                 memory_limit_mb=probe.estimates[0].memory_mb * 1.2)
    for _ in range(2):  # the same parameters compiled again
        torch._dynamo.reset()
        _, w = _run(torch.compile(m, backend=be), x)
        assert not [x for x in w if type(x.message) is OOMWarning]


def _trained_mlp():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 8))
    opt = torch.optim.Adam(m.parameters())
    m(torch.randn(16, 64)).sum().backward()
    return m, opt


def test_a_compiled_optimizer_step_has_no_batch():
    # its inputs are the gradients: the leading size of the first (256) is no batch, and no batch makes it fit
    m, opt = _trained_mlp()
    be = costmodel.torch_backend(device="t4", inner="eager", predictor="analytic", memory_limit_mb=100)
    torch._dynamo.reset()
    _, w = _run(torch.compile(opt.step, backend=be))
    est = be.estimates[0]
    assert est.batch == 1
    assert any(a.startswith("an optimizer step") for a in est.assumptions)
    oom = [str(x.message) for x in w if isinstance(x.message, OOMWarning)]
    assert len(oom) == 1 and "an optimizer step, no batch" in oom[0]
    assert "largest batch" not in oom[0] and "does not depend on the batch" in oom[0]


def test_an_optimizer_step_after_its_model_counts_the_shared_parameters_once():
    m, opt = _trained_mlp()
    be = costmodel.torch_backend(device="t4", inner="eager", predictor="analytic", memory_limit_mb=100)
    torch._dynamo.reset()
    _run(lambda: torch.compile(m, backend=be)(torch.randn(16, 64)).sum().backward(), grad=True)
    _, w = _run(torch.compile(opt.step, backend=be))
    oom = [str(x.message) for x in w if isinstance(x.message, OOMWarning)]
    assert len(be.estimates) == 2 and len(oom) == 1 and "stay allocated" not in oom[0]


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.qkv, self.o = nn.Embedding(100, 64), nn.Linear(64, 192), nn.Linear(64, 64)

    def forward(self, ids):
        h = self.emb(ids)
        b, s, _ = h.shape
        q, k, v = self.qkv(h).view(b, s, 3, 2, 32).permute(2, 0, 3, 1, 4)
        a = (q @ k.transpose(-1, -2)).softmax(-1) @ v
        return self.o(a.transpose(1, 2).reshape(b, s, 64))


def test_a_symbolic_sequence_length_is_named_and_a_longer_call_says_it_is_not_checked():
    # the batch's line holds the sequence length at its compiled size: a call at a longer one (whose
    # attention scores grow with its square) ran without a word
    be = costmodel.torch_backend(device="t4", inner="eager", predictor="analytic")
    torch._dynamo.reset()
    f = torch.compile(_Attention().eval(), backend=be, dynamic=True)
    seen = []
    with torch.no_grad():
        for b, s in ((2, 16), (4, 16), (2, 8), (2, 32), (2, 64)):
            _, w = _run(f, torch.randint(0, 100, (b, s)))
            seen.append([str(x.message) for x in w if "not checked" in str(x.message)])
    assert len(be.estimates) == 1
    assert seen[:3] == [[], [], []] and seen[4] == []  # once, on the first call above the compiled size
    assert len(seen[3]) == 1 and "of 16, and is now called with 32" in seen[3][0]
    assert any("symbolic sizes the out-of-memory check does not follow" in a and "= 16" in a
               for a in be.estimates[0].assumptions)


def _train_compiled(fns, x, be):
    """One training step through ``fns`` compiled with ``be`` (each the next one's input); its warnings."""
    torch._dynamo.reset()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        y = x
        for f in fns:
            y = torch.compile(f, backend=be)(y)
        y.sum().backward()
    return [str(m.message) for m in w if isinstance(m.message, OOMWarning)]


def test_a_training_graph_after_a_break_counts_the_activations_the_graph_before_it_saved():
    # in a training step the first half's forward keeps its ReLU output (batch x 4096 floats) for its
    # backward pass, which runs after the second half's: while the second half runs, they are allocated
    m, x = _TwoHalves().train(), torch.randn(2048, 256)
    probe = costmodel.torch_backend(device="t4", inner="eager", predictor="analytic")
    assert _train_compiled([m], x, probe) == [] and len(probe.estimates) == 2
    saved = 2048 * 4096 * 4 / 2**20  # the ReLU output, fp32 (the first half's output goes on to the second)
    weights = 4 * _weights_mb(m.a)  # weights, gradients, Adam's two moments
    second = probe.estimates[1].memory_mb
    be = costmodel.torch_backend(device="t4", inner="eager", predictor="analytic",
                                 memory_limit_mb=second + weights + saved / 2)
    oom = [w for w in _train_compiled([m], x, be) if "stay allocated" in w]
    assert len(oom) == 1, oom
    assert f"{saved:,.0f} MB stay allocated for the activations" in oom[0]
    assert f"{second + weights + saved:,.0f} MB in all" in oom[0]
    # the suggested batch leaves room for the first half's activations at that batch too
    fit = int(oom[0].rsplit("the largest batch predicted to fit is ", 1)[1].split()[0])
    assert 0 < fit < 2048


def test_separate_training_steps_do_not_count_each_others_activations():
    # the same two halves compiled and trained one after the other, each on its own input: the first one's
    # backward has run before the second one starts, so only its weights and their state stay allocated
    m, x = _TwoHalves().train(), torch.randn(2048, 256)
    probe = costmodel.torch_backend(device="t4", inner="eager", predictor="analytic")
    _train_compiled([m.a], x, probe)
    _train_compiled([m.b], x, probe)
    second = probe.estimates[1].memory_mb
    weights = 4 * _weights_mb(m.a)
    saved = 2048 * 4096 * 4 / 2**20
    be = costmodel.torch_backend(device="t4", inner="eager", predictor="analytic",
                                 memory_limit_mb=second + weights + saved / 2)
    _train_compiled([m.a], x, be)
    alone = _train_compiled([m.b], x, be)
    assert not [w for w in alone if "for the activations" in w or "are available" in w], alone
    # chained in one step (the second half's input carries the first half's autograd history), they do
    chained = [w for w in _train_compiled([m.a, m.b], x, be) if "for the activations" in w]
    assert len(chained) == 1 and f"{saved:,.0f} MB stay allocated for the activations" in chained[0]
