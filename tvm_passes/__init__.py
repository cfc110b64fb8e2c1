"""TVM Relax integration: cost estimates attached to an IRModule while it compiles.

>>> import tvm_passes
>>> mod = tvm_passes.AnnotatePerformance(device="h100")(mod)      # a tvm.transform.Pass
>>> mod.attrs["perf.latency_ms"], mod["main"].attrs["perf.mig_profile"]
>>> ex = tvm_passes.build(mod, "llvm", device="h100")             # tvm.relax.build + a one-line estimate

TVM removed Relay in 0.20; current TVM (0.27) compiles Relax, so this is a
Relax module pass (the design of the first papers on compiler-integrated cost
models speaks of a Relay pass).  This package is the public import path; the
implementation lives in :mod:`costmodel.integrations.relax_pass`.  Importing
this package does not import TVM; the names below load it on first use.
"""

from __future__ import annotations

__all__ = ["ATTR_KEYS", "AnnotatePerformance", "build", "estimate_module", "read_annotations"]

#: the attributes the pass attaches to the IRModule and to each Relax function
ATTR_KEYS = ("perf.latency_ms", "perf.memory_mb", "perf.energy_j", "perf.mig_profile", "perf.predictor",
             "perf.device", "perf.batch", "perf.dtype", "perf.memory_path", "perf.memory_mb_upper")


def __getattr__(name: str):
    if name in ("AnnotatePerformance", "build", "estimate_module", "read_annotations"):
        from costmodel.integrations import relax_pass

        return getattr(relax_pass, name)
    raise AttributeError(f"module 'tvm_passes' has no attribute {name!r}")
