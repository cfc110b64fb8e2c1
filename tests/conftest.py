import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

# Hermetic graph cache for the whole test session (never the user's cache).
os.environ.setdefault("COSTMODEL_CACHE", tempfile.mkdtemp(prefix="costmodel-test-cache-"))

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="session")
def benchmark_module():
    """``benchmark_module("energy_labels")``: a script of ``benchmarks/`` imported as a module (the scripts
    are not a package), so a test can call the functions the script's tables rest on."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load
