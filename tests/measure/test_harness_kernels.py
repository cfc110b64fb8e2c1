"""The FMA kernels of bindings/cpu_harness.cpp compile to the work the harness counts.

``peak_flops`` reports ``threads x iterations x accumulators x lanes x 2``
FLOPs per sample; that is only true when the compiled loop really updates
every accumulator each trip.  These tests compile the source to assembly with
the flags bindings/CMakeLists.txt uses and count the arithmetic instructions
in each kernel's loop (x86-64 with GCC or Clang only; skipped elsewhere).
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "bindings" / "cpu_harness.cpp"
CXX = shutil.which("g++") or shutil.which("clang++")

pytestmark = pytest.mark.skipif(
    CXX is None or platform.machine() not in ("x86_64", "AMD64") or not SOURCE.exists(),
    reason="needs an x86-64 C++ compiler (g++ or clang++) and bindings/cpu_harness.cpp",
)

#: kernel -> (mangled-name fragment, arithmetic instructions per loop trip, their pattern)
KERNELS = {
    "scalar fp64": ("fma_scalarId", 24, r"(mulsd|addsd|vfmadd\w*sd)"),
    "scalar fp32": ("fma_scalarIf", 24, r"(mulss|addss|vfmadd\w*ss)"),
    "avx2 fp64": ("fma_avx2_f64", 12, r"vfmadd\w*pd"),
    "avx2 fp32": ("fma_avx2_f32", 12, r"vfmadd\w*ps"),
    "avx512 fp64": ("fma_avx512_f64", 16, r"vfmadd\w*pd"),
    "avx512 fp32": ("fma_avx512_f32", 16, r"vfmadd\w*ps"),
}


@pytest.fixture(scope="module")
def assembly() -> str:
    cmd = [CXX, "-std=c++17", "-O3", "-fPIC", "-S", "-o", "-", str(SOURCE)]
    if "g++" in Path(CXX).name:
        cmd.insert(3, "-fno-tree-loop-distribute-patterns")  # as bindings/CMakeLists.txt
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def _function(asm: str, fragment: str) -> list[str]:
    lines = asm.splitlines()
    start = next(i for i, ln in enumerate(lines) if re.match(rf"^_Z\w*{fragment}\w*:", ln))
    end = next(i for i in range(start + 1, len(lines)) if re.match(r"^\s*\.size\s", lines[i]))
    return lines[start:end]


def _loop_ops(body: list[str], pattern: str) -> int:
    """Arithmetic instructions of the loop (a label jumped to from below it) that has the most of them."""
    labels = {m.group(1): i for i, ln in enumerate(body) if (m := re.match(r"^(\.?L\w+):", ln))}
    best = 0
    for j, ln in enumerate(body):
        m = re.match(r"^\s+j\w+\s+(\.?L\w+)\s*$", ln)
        if m and m.group(1) in labels and labels[m.group(1)] < j:
            loop = body[labels[m.group(1)]:j]
            best = max(best, sum(1 for x in loop if re.match(rf"^\s+{pattern}\s", x)))
    return best


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_fma_loop_updates_every_accumulator(assembly, kernel):
    fragment, expected, pattern = KERNELS[kernel]
    body = _function(assembly, fragment)
    found = _loop_ops(body, pattern)
    # a scalar FMA where the compiler contracts x * m + c counts one instruction for two
    if kernel.startswith("scalar") and found * 2 == expected and any("vfmadd" in ln for ln in body):
        found = expected
    assert found == expected, (
        f"{kernel}: the compiled loop has {found} arithmetic instructions per trip, the harness counts "
        f"{expected} (accumulators x operations): chains were folded away or merged"
    )
