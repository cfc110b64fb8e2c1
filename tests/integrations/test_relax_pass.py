"""tvm_passes: the Relax module pass and the relax.build wrapper, checked on modules and attributes."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import tvm  # noqa: E402  (the test extra installs apache-tvm)
from tvm import relax  # noqa: E402
from tvm.relax.frontend.torch import from_exported_program  # noqa: E402

import tvm_passes  # noqa: E402
from tvm_ffi import structural_equal  # noqa: E402
from costmodel import estimate  # noqa: E402
from costmodel import InvalidInputError, UnknownDeviceError  # noqa: E402
from costmodel.frontends import from_relax  # noqa: E402

KEYS = ("perf.latency_ms", "perf.memory_mb", "perf.energy_j", "perf.mig_profile", "perf.predictor")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        y = y + torch.relu(y)
        return self.fc(y.mean((2, 3)))


@pytest.fixture(scope="module")
def net_mod():
    model, x = Net().eval(), torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ep = torch.export.export(model, (x,))
    return model, x, from_exported_program(ep, keep_params_as_input=True)


def _without_perf(func):
    for k in tvm_passes.ATTR_KEYS:
        func = func.without_attr(k)
    return func


def test_pass_annotates_module_and_functions(net_mod):
    model, x, mod = net_mod
    p = tvm_passes.AnnotatePerformance(device="h100", predictor="analytic")
    assert isinstance(p, tvm.transform.Pass)
    out = p(mod)
    ann = tvm_passes.read_annotations(out)
    assert set(KEYS) <= set(ann)
    assert tvm_passes.read_annotations(out["main"]) == ann
    # the same numbers as the one-call API on the same graph
    ref = estimate(from_relax(mod), batch=2, device="h100", predictor="analytic")
    assert ann["perf.latency_ms"] == pytest.approx(ref.latency_ms)
    assert ann["perf.memory_mb"] == pytest.approx(ref.memory_mb)
    assert ann["perf.energy_j"] == pytest.approx(ref.energy_j)
    assert ann["perf.mig_profile"] == (ref.mig_profile or "")
    assert ann["perf.predictor"] == "analytic" and ann["perf.batch"] == 2
    # code untouched: only attributes were added
    assert structural_equal(_without_perf(out["main"]), mod["main"])
    assert not tvm_passes.read_annotations(mod)  # the input module is not mutated


def test_inside_sequential_and_user_pass_context(net_mod):
    _, _, mod = net_mod
    seq = tvm.transform.Sequential(
        [tvm_passes.AnnotatePerformance(device="a100-80gb", predictor="analytic"), relax.transform.LegalizeOps()]
    )
    with tvm.transform.PassContext(opt_level=3):
        out = seq(mod)
    ann = tvm_passes.read_annotations(out)
    assert ann["perf.device"] == "A100-SXM4-80GB" and ann["perf.latency_ms"] > 0
    assert any(isinstance(f, tvm.tirx.PrimFunc) for _, f in out.functions_items())  # the next pass ran
    # opt_level 0: runs under any context, even a minimal one
    with tvm.transform.PassContext(opt_level=0):
        assert "perf.latency_ms" in tvm_passes.read_annotations(
            tvm_passes.AnnotatePerformance(device="h100", predictor="analytic")(mod))


def test_each_relax_function_gets_its_own_estimate():
    from tvm.script import ir as I
    from tvm.script import relax as R

    @I.ir_module
    class Mod:
        @R.function
        def small(x: R.Tensor((4, 64), "float32"), w: R.Tensor((64, 64), "float32")) -> R.Tensor((4, 64), "float32"):
            return R.matmul(x, w)

        @R.function
        def main(x: R.Tensor((4, 64), "float32"), w: R.Tensor((64, 64), "float32")) -> R.Tensor((4, 64), "float32"):
            cls = Mod
            with R.dataflow():
                a = cls.small(x, w)
                b = cls.small(a, w)
                c = R.nn.relu(b)
                R.output(c)
            return c

    out = tvm_passes.AnnotatePerformance(device="h100", predictor="analytic")(Mod)
    small, main = tvm_passes.read_annotations(out["small"]), tvm_passes.read_annotations(out["main"])
    assert small["perf.latency_ms"] < main["perf.latency_ms"]
    assert tvm_passes.read_annotations(out) == main


def test_build_logs_one_line_and_runs(net_mod, caplog):
    model, x, mod = net_mod
    with caplog.at_level(logging.INFO, logger="costmodel.tvm"):
        ex = tvm_passes.build(mod, "llvm", device="h100", predictor="analytic")
    lines = [r.getMessage() for r in caplog.records if r.name == "costmodel.tvm"]
    assert len(lines) == 1 and "H100" in lines[0] and " ms" in lines[0] and "MB" in lines[0]
    vm = relax.VirtualMachine(ex, tvm.cpu())
    params = [p.detach().numpy() for p in model.parameters()] + [b.numpy() for n, b in model.named_buffers()
                                                                  if "running" in n]
    n_in = int(mod["main"].attrs["num_input"])
    names = [p.name for p in mod["main"].params[n_in:]]
    state = {k.replace(".", "_"): v.detach().numpy() for k, v in model.state_dict().items()}
    args = [tvm.runtime.tensor(x.numpy())] + [tvm.runtime.tensor(state[n[2:]]) for n in names]
    del params
    res = vm["main"](*args)
    got = res[0].numpy() if hasattr(res, "__getitem__") else res.numpy()
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_bad_arguments_fail_at_construction():
    with pytest.raises(UnknownDeviceError, match="h1000"):
        tvm_passes.AnnotatePerformance(device="h1000")
    with pytest.raises(InvalidInputError, match="mode"):
        tvm_passes.AnnotatePerformance(device="h100", mode="train")
    with pytest.raises(InvalidInputError):
        tvm_passes.AnnotatePerformance(device="h100", batch=0)


def test_unestimable_module_warns_and_passes_through(net_mod):
    _, _, mod = net_mod
    # a static batch of 2 with batch=4 requested: no estimate, a warning, the module unchanged
    p = tvm_passes.AnnotatePerformance(device="h100", predictor="analytic", batch=4)
    with pytest.warns(RuntimeWarning, match="batch"):
        out = p(mod)
    assert not tvm_passes.read_annotations(out)
    assert structural_equal(out, mod)
    strict = tvm_passes.AnnotatePerformance(device="h100", predictor="analytic", batch=4, strict=True)
    with pytest.raises(Exception, match="batch"):
        strict(mod)


def test_symbolic_batch_is_bound_by_the_pass():
    model, x = Net().eval(), torch.randn(2, 3, 16, 16)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("b", min=1, max=64)},))
    mod = from_exported_program(ep, keep_params_as_input=True)
    a8 = tvm_passes.read_annotations(tvm_passes.AnnotatePerformance(device="h100", predictor="analytic", batch=8)(mod))
    a1 = tvm_passes.read_annotations(tvm_passes.AnnotatePerformance(device="h100", predictor="analytic", batch=1)(mod))
    assert a8["perf.batch"] == 8 and a1["perf.batch"] == 1
    e8 = tvm_passes.estimate_module(mod, device="h100", predictor="analytic", batch=8)
    e1 = tvm_passes.estimate_module(mod, device="h100", predictor="analytic", batch=1)
    assert e8.flops == pytest.approx(8 * e1.flops) and e8.allocated_mb > e1.allocated_mb
    # NVML-level memory is the allocator's: both batches' few KiB of activations sit in one 2 MiB segment
    assert a8["perf.memory_mb"] >= a1["perf.memory_mb"]
    assert a8["perf.memory_path"] == a1["perf.memory_path"] == "liveness-fallback"
    # the walk's interval: its upper end is what the MIG profile holds
    assert a8["perf.memory_mb_upper"] == pytest.approx(e8.memory_mb_interval[1]) and e8.memory_mb_interval[1] > e8.memory_mb


def test_importing_the_package_does_not_import_tvm():
    import subprocess
    import sys

    code = "import sys, tvm_passes; print('tvm' in sys.modules, tvm_passes.ATTR_KEYS[0])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "perf.latency_ms"]


# ------------------------------------------------------------ a predictor that misbehaves
from types import SimpleNamespace  # noqa: E402

from costmodel.predictors import AnalyticPredictor  # noqa: E402


class _Raising(AnalyticPredictor):
    def predict(self, *a, **k):
        raise KeyError("not a CostModelError")


class _ReturnsNone(AnalyticPredictor):
    def predict(self, *a, **k):
        return None


class _Incomplete(AnalyticPredictor):
    def predict(self, *a, **k):
        return SimpleNamespace(latency_ms=1.0, memory_mb=2.0)  # no energy_j, mig_profile, predictor...


def _two_function_module():
    from tvm.script import ir as I
    from tvm.script import relax as R

    @I.ir_module
    class Mod:
        @R.function
        def small(x: R.Tensor((4, 64), "float32"), w: R.Tensor((64, 64), "float32")) -> R.Tensor((4, 64), "float32"):
            return R.matmul(x, w)

        @R.function
        def main(x: R.Tensor((4, 64), "float32"), w: R.Tensor((64, 64), "float32")) -> R.Tensor((4, 64), "float32"):
            cls = Mod
            with R.dataflow():
                a = cls.small(x, w)
                c = R.nn.relu(a)
                R.output(c)
            return c

    return Mod


@pytest.mark.parametrize("predictor", [_Raising, _ReturnsNone, _Incomplete])
def test_a_misbehaving_predictor_warns_for_every_function_and_passes_the_module_through(predictor):
    mod = _two_function_module()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = tvm_passes.AnnotatePerformance(device="h100", predictor=predictor())(mod)
    msgs = [str(x.message) for x in w if issubclass(x.category, RuntimeWarning)]
    # one warning per function, the non-entry one included
    assert any("'small'" in s for s in msgs) and any("'main'" in s for s in msgs), msgs
    assert structural_equal(out, mod) and not tvm_passes.read_annotations(out)
    with pytest.raises(Exception):
        tvm_passes.AnnotatePerformance(device="h100", predictor=predictor(), strict=True)(mod)


@pytest.mark.parametrize("predictor", [_Raising, _ReturnsNone, _Incomplete])
def test_build_with_a_misbehaving_predictor_warns_and_builds(net_mod, predictor):
    _, _, mod = net_mod
    with pytest.warns(RuntimeWarning, match="no estimate for Relax function 'main'"):
        ex = tvm_passes.build(mod, "llvm", device="h100", predictor=predictor())
    assert ex is not None
    with pytest.raises(Exception):
        tvm_passes.build(mod, "llvm", device="h100", predictor=predictor(), strict=True)


def test_one_failing_function_keeps_the_estimates_of_the_others():
    class FailsOnSmall(AnalyticPredictor):
        def predict(self, graph, *a, **k):
            if graph.meta.get("name") == "small":
                return None
            return super().predict(graph, *a, **k)

    mod = _two_function_module()
    with pytest.warns(RuntimeWarning, match="'small'.*returned None"):
        out = tvm_passes.AnnotatePerformance(device="h100", predictor=FailsOnSmall())(mod)
    assert not tvm_passes.read_annotations(out["small"])
    assert tvm_passes.read_annotations(out["main"])["perf.latency_ms"] > 0
    assert tvm_passes.read_annotations(out) == tvm_passes.read_annotations(out["main"])


def test_an_error_warning_filter_does_not_break_the_pass():
    mod = _two_function_module()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = tvm_passes.AnnotatePerformance(device="h100", predictor=_ReturnsNone())(mod)
    assert structural_equal(out, mod)


def _symbolic_module():
    from tvm.script import ir as I
    from tvm.script import relax as R

    @I.ir_module
    class Mod:
        @R.function
        def main(x: R.Tensor(("n", 8), "float32")) -> R.Tensor(("n", 8), "float32"):
            with R.dataflow():
                y = R.nn.relu(x)
                R.output(y)
            return y

    return Mod


def test_strict_raises_the_costmodel_error_through_tvm():
    """The pass runs inside TVM's C++ pass infrastructure, which turned every error it raised into a
    ``RuntimeError``: ``except DynamicShapeError`` (or ``InvalidInputError``) never caught it."""
    from costmodel import DynamicShapeError

    p = tvm_passes.AnnotatePerformance(device="h100", predictor="analytic", strict=True)
    with pytest.raises(DynamicShapeError, match="symbolic dimension 'n'"):
        p(_symbolic_module())
    with pytest.raises(InvalidInputError, match="symbolic dimension 'n'"):
        tvm.transform.Sequential([p])(_symbolic_module())


def test_bad_bindings_fail_when_the_pass_is_created():
    """Like an unknown device or a bad batch: before, the pass was created and every compile warned."""
    for bad in ({"n": 0}, {"n": "4"}, [("n", 4)]):
        with pytest.raises(InvalidInputError, match="bindings must map shape-variable names to positive ints"):
            tvm_passes.AnnotatePerformance(device="h100", predictor="analytic", bindings=bad)
    p = tvm_passes.AnnotatePerformance(device="h100", predictor="analytic", bindings={"n": 4})
    assert tvm_passes.read_annotations(p(_symbolic_module()))["perf.batch"] == 4


def test_pass_late_in_the_pipeline_costs_the_tir_kernels():
    """Run after LegalizeOps + FuseOps + FuseTIR, the kernels were ``other`` nodes without FLOPs: the
    estimate carried no FLOPs (and a warning per kernel)."""
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 10)).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        mod = from_exported_program(torch.export.export(model, (x,)), keep_params_as_input=True)
    late = tvm.transform.Sequential([
        relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(), relax.transform.FuseOps(),
        relax.transform.FuseTIR()])(mod)
    early = tvm_passes.AnnotatePerformance(device="h100", predictor="analytic")
    after = tvm_passes.AnnotatePerformance(device="h100", predictor="analytic")
    early(mod)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        after(late)
    before_flops, after_flops = early.estimates["main"].flops, after.estimates["main"].flops
    assert before_flops > 0 and after_flops == pytest.approx(before_flops, rel=0.02)
    kinds = from_relax(late).op_counts()
    assert kinds.get("conv") == 1 and kinds.get("matmul") == 1 and "other" not in kinds
