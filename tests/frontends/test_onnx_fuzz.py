"""ONNX frontend under mutation: every mutant is an estimate or a CostModelError.

A seeded, bounded run of the fuzzer in ``_onnx_fuzz.py`` (``benchmarks/fuzz_onnx.py`` runs
thousands of mutants): seed models are exported once per module, each gets ``MUTANTS_PER_SEED``
mutants (deleted nodes, rewired inputs and cycles, garbage attributes, unknown ops and domains,
bad dims and dtypes, truncated and flipped bytes...).  Each mutant is costed in a worker process
under a watchdog, so a hang or a memory blow-up is a failure naming the mutation, never a stuck
test run.
"""

from __future__ import annotations

import pytest

import _onnx_fuzz as fuzz

MUTANTS_PER_SEED = 30
FUZZ_SEED = 0
DEFAULT_EVERY = 15  # every 15th mutant also runs the default (learned) predictor
TIMEOUT_S = 60.0  # per mutant; the slowest takes well under a second


@pytest.fixture(scope="module")
def seeds():
    return {s.name: s for s in fuzz.build_seeds()}


@pytest.fixture(scope="module")
def runner():
    with fuzz.Runner(timeout_s=TIMEOUT_S, max_rss_mb=3000) as r:
        r.warm_up("analytic", None)
        yield r


SEED_NAMES = ["resnet18", "mobilenet_v2", "transformer", "cnn_weights_as_inputs", "contrib_attention",
              "shape_plumbing", "conv_gemm", "sequence_einsum", "opset23_attention", "control_flow_function",
              "quantized"]

_outcomes: dict[str, list] = {}


def test_seed_models_estimate(seeds, runner):
    assert sorted(seeds) == sorted(SEED_NAMES)
    for s in seeds.values():
        for predictor in ("analytic", None):
            out = runner.run_raw(s.data, False, s.batch, predictor)
            assert out.kind == "estimate", (s.name, predictor, out)


@pytest.mark.parametrize("name", SEED_NAMES)
def test_mutants_estimate_or_fail_cleanly(seeds, runner, name):
    results = []
    for i in range(MUTANTS_PER_SEED):
        m = fuzz.make_mutant(seeds[name], FUZZ_SEED, i, default_every=DEFAULT_EVERY)
        results.append((m, runner.run(m)))
    _outcomes[name] = [o for _, o in results]
    bad = fuzz.unclean(results)
    assert not bad, f"{len(bad)} of {len(results)} mutants failed uncleanly:\n" + "\n".join(bad)


def test_mutants_reach_both_estimates_and_errors():
    """The mutations exercise the costing path, not only the error paths (runs after the per-seed tests)."""
    outs = [o for name in SEED_NAMES for o in _outcomes.get(name, [])]
    if len(outs) < len(SEED_NAMES) * MUTANTS_PER_SEED:
        pytest.skip("needs the per-seed fuzz tests of this module")
    kinds = {o.kind for o in outs}
    errors = {o.what for o in outs if o.kind == "clean"}
    assert kinds == {"estimate", "clean"}
    assert sum(o.kind == "estimate" for o in outs) >= len(outs) // 10
    assert {"ModelLoadError", "InvalidGraphError"} <= errors


def test_mutants_are_deterministic(seeds):
    s = seeds["conv_gemm"]
    a = [fuzz.make_mutant(s, 7, i) for i in range(20)]
    b = [fuzz.make_mutant(s, 7, i) for i in range(20)]
    assert [(m.data, m.steps, m.batch, m.as_file) for m in a] == [(m.data, m.steps, m.batch, m.as_file) for m in b]
    assert len({m.data for m in a}) > 10  # and they differ from each other


def test_watchdog_turns_an_overrun_into_a_hang_and_recovers(seeds, runner):
    """A limit far below what costing takes is reported as a hang; the next mutant gets a fresh worker."""
    s = seeds["resnet18"]
    with fuzz.Runner(timeout_s=1e-4) as quick:
        out = quick.run_raw(s.data, False, s.batch, "analytic")
    assert (out.kind, out.what) == ("hang", "hang") and "no answer after" in out.detail
    assert runner.run_raw(s.data, False, s.batch, "analytic").kind == "estimate"
