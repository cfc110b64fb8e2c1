"""Compare the C++ roofline harness with reference measurements on this machine.

    python benchmarks/roofline_harness.py [--stream-c PATH] [--likwid-bench PATH]
                                          [--elements N] [-o result.json]

Prints three plain-text tables:

1. DRAM bandwidth: the harness's triad and copy (its DRAM plateau, and one
   STREAM-sized footprint) against reference STREAM implementations, run
   back to back:

   * McCalpin's ``stream.c`` (v5.10), compiled here with ``gcc -O3 -fopenmp``
     when a copy is given (``--stream-c`` or ``$STREAM_C``).  No Debian or PyPI
     package ships it, so it is optional;
   * ``likwid-bench`` (Debian package ``likwid``) ``copy_avx`` and
     ``stream_avx_fma`` when found (``--likwid-bench`` or on PATH);
   * numpy ``np.multiply(c, s, out=a); np.add(a, b, out=a)`` (triad) and
     ``np.copyto`` (copy), single-threaded like every numpy ufunc;
   * torch ``torch.add(b, c, alpha=s, out=a)`` and ``a.copy_(b)`` with all
     cores.

   Every figure counts bytes the STREAM way (copy 2 arrays, triad 3, 8 bytes
   per element, no write-allocate traffic); STREAM and likwid report their
   best repetition, so the harness's max is printed beside its median.
2. fp32 peak: the harness's FMA peak against a 2048^3 fp32 matmul in numpy
   and in torch (all cores) and against the theoretical estimate
   (cores x clock x FMA width x FMA units x 2), with ratios; fp64 likewise.
3. Wall time of a full ``measure()`` (and a quick one).

CPU only; the CUDA part of the harness is exercised by
``measure(device="cuda")`` on a GPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GB = 1e9


def _table(headers: list[str], rows: list[list], title: str) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [title, "-" * len(title)]
    for k, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def _best_and_median(fn, reps: int) -> tuple[float, float]:
    fn()  # warm-up (page faults, thread pools)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), statistics.median(ts)


# --------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------


def run_stream_c(src: Path, elements: int, threads: int) -> dict | None:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return {"error": "no C compiler"}
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "stream"
        cmd = [cc, "-O3", "-fopenmp", "-mcmodel=medium", f"-DSTREAM_ARRAY_SIZE={elements}", "-DNTIMES=10",
               str(src), "-o", str(exe)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            return {"error": f"compile failed: {r.stderr.strip()[:300]}"}
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_PROC_BIND="true", OMP_PLACES="cores")
        out = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=600).stdout
    rates = {}
    for name in ("Copy", "Scale", "Add", "Triad"):
        m = re.search(rf"^{name}:\s+([\d.]+)", out, re.MULTILINE)
        if m:
            rates[name.lower()] = float(m.group(1)) * 1e6 / GB  # best rate, MB/s = 1e6 B/s
    rates["validates"] = "Solution Validates" in out
    return rates


def run_likwid(exe: str, kind: str, total_bytes: int, threads: int) -> float | None:
    root = Path(exe).resolve().parents[2]  # <root>/usr/bin/likwid-bench
    env = dict(os.environ)
    libdir = root / "usr" / "lib" / "x86_64-linux-gnu"
    if libdir.is_dir():
        env["LD_LIBRARY_PATH"] = f"{libdir}:{env.get('LD_LIBRARY_PATH', '')}"
    env["PATH"] = f"{root / 'usr' / 'sbin'}:{root / 'usr' / 'bin'}:{env.get('PATH', '')}"
    kb = total_bytes // 1000
    r = subprocess.run([exe, "-t", kind, "-W", f"N:{kb}kB:{threads}"], capture_output=True, text=True, env=env,
                       timeout=600)
    m = re.search(r"^MByte/s:\s+([\d.]+)", r.stdout, re.MULTILINE)
    return float(m.group(1)) * 1e6 / GB if m else None


def numpy_stream(n: int, reps: int) -> dict:
    import numpy as np

    a, b, c = np.ones(n), np.full(n, 2.0), np.zeros(n)
    s = 0.41421356237309503

    def triad():
        np.multiply(c, s, out=a)
        np.add(a, b, out=a)

    bt, mt = _best_and_median(triad, reps)
    bc, mc = _best_and_median(lambda: np.copyto(c, a), reps)
    return {"triad_best": 24 * n / bt / GB, "triad_median": 24 * n / mt / GB,
            "copy_best": 16 * n / bc / GB, "copy_median": 16 * n / mc / GB}


def torch_stream(n: int, reps: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    a, b, c = torch.ones(n, dtype=torch.float64), torch.full((n,), 2.0, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    s = 0.41421356237309503
    bt, mt = _best_and_median(lambda: torch.add(b, c, alpha=s, out=a), reps)
    bc, mc = _best_and_median(lambda: c.copy_(a), reps)
    return {"triad_best": 24 * n / bt / GB, "triad_median": 24 * n / mt / GB,
            "copy_best": 16 * n / bc / GB, "copy_median": 16 * n / mc / GB}


def matmul_gflops(n: int, threads: int, reps: int = 5) -> dict:
    import numpy as np
    import torch

    out = {}
    flops = 2.0 * n**3
    for dt, npdt, tdt in (("fp32", np.float32, torch.float32), ("fp64", np.float64, torch.float64)):
        x = np.random.default_rng(0).standard_normal((n, n)).astype(npdt)
        y = np.random.default_rng(1).standard_normal((n, n)).astype(npdt)
        best, _ = _best_and_median(lambda: x @ y, reps)
        out[f"numpy_{dt}"] = flops / best / 1e9
        torch.set_num_threads(threads)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        best, _ = _best_and_median(lambda: tx @ ty, reps)
        out[f"torch_{dt}"] = flops / best / 1e9
    return out


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stream-c", default=os.environ.get("STREAM_C"), help="path to McCalpin's stream.c")
    ap.add_argument("--likwid-bench", default=shutil.which("likwid-bench"), help="path to likwid-bench")
    ap.add_argument("--elements", type=int, default=2**26,
                    help="elements per array of the reference runs (default 2^26: 3 x 512 MiB)")
    ap.add_argument("--matmul", type=int, default=2048, help="matmul size n (n x n x n)")
    ap.add_argument("-o", "--output", help="also write the numbers as JSON here")
    return ap.parse_args()


def _timed_measures(rl):
    """A quick and a full ``measure("cpu")``, each timed: (quick, t_quick, full, t_full)."""
    t0 = time.perf_counter()
    quick = rl.measure("cpu", quick=True, progress=False)
    t_quick = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = rl.measure("cpu", progress=False)
    t_full = time.perf_counter() - t0
    return quick, t_quick, full, t_full


def _same_footprint_point(ext, footprint: int) -> dict:
    """The harness's copy/triad stream at the reference runs' footprint."""
    h = ext.CpuHarness(0, True)
    point = h.stream(footprint, 2, 10, 0.002)
    h.release()
    del h
    return point


def _harness_rows(full, point: dict, threads: int) -> list[list]:
    """DRAM-table rows of the harness: its plateau, and the same-footprint median and max."""
    k = point["kernels"]
    return [
        ["harness DRAM plateau (median)", threads, f"{full.plateaus[-1].from_bytes / 2**20:.0f}+ MiB",
         statistics.median(p.gbps for p in full.sweep("copy") if p.bytes >= (full.plateaus[-1].from_bytes or 0)),
         full.levels["DRAM"], 1.0],
        ["harness, same footprint (median)", threads, f"{point['footprint_bytes'] / 2**20:.0f} MiB",
         k["copy"]["gbps"]["median"], k["triad"]["gbps"]["median"], None],
        ["harness, same footprint (max)", threads, f"{point['footprint_bytes'] / 2**20:.0f} MiB",
         k["copy"]["gbps"]["max"], k["triad"]["gbps"]["max"], None],
    ]


def _reference_rows(a: argparse.Namespace, n: int, threads: int, rows: list[list]):
    """Run the reference STREAM implementations, appending their rows; return (ref_triad, notes, ns, ts)."""
    footprint = 24 * n
    ref_triad = {}
    notes = []
    if a.stream_c and Path(a.stream_c).is_file():
        s = run_stream_c(Path(a.stream_c), n, threads)
        if s and "error" not in s:
            rows.append(["STREAM stream.c 5.10 (best of 9)", threads, f"{footprint / 2**20:.0f} MiB", s.get("copy"),
                         s.get("triad"), None])
            ref_triad["stream.c"] = s.get("triad")
            if not s.get("validates"):
                notes.append("stream.c did not validate its results")
        else:
            notes.append(f"stream.c: {s and s.get('error')}")
    else:
        notes.append("STREAM stream.c: not run -- no Debian (apt) or PyPI package provides it; "
                     "pass --stream-c PATH (or set STREAM_C) to include it")
    if a.likwid_bench and Path(a.likwid_bench).exists():
        lc = run_likwid(a.likwid_bench, "copy_avx", 16 * n, threads)
        lt = run_likwid(a.likwid_bench, "stream_avx_fma", footprint, threads)
        rows.append(["likwid-bench copy_avx / stream_avx_fma", threads, f"{footprint / 2**20:.0f} MiB", lc, lt, None])
        if lt:
            ref_triad["likwid"] = lt
    else:
        notes.append("likwid-bench: not found (Debian package 'likwid'); pass --likwid-bench PATH")
    ns = numpy_stream(n, 5)
    rows.append(["numpy np.multiply+np.add / copyto (best)", 1, f"{footprint / 2**20:.0f} MiB", ns["copy_best"],
                 ns["triad_best"], None])
    ts = torch_stream(n, 5, threads)
    rows.append(["torch add(alpha) / copy_ (best)", threads, f"{footprint / 2**20:.0f} MiB", ts["copy_best"],
                 ts["triad_best"], None])
    ref_triad["numpy"] = ns["triad_best"]
    ref_triad["torch"] = ts["triad_best"]
    return ref_triad, notes, ns, ts


def _print_dram_table(a: argparse.Namespace, full, point: dict, n: int, threads: int):
    """Table 1: DRAM bandwidth of the harness against the references; return (ref_triad, ns, ts)."""
    rows = _harness_rows(full, point, threads)
    ref_triad, notes, ns, ts = _reference_rows(a, n, threads, rows)
    dram = full.levels["DRAM"]
    for r in rows:
        if r[5] is None and r[4]:
            r[5] = dram / r[4] if dram else None
    print(_table(["method", "threads", "footprint", "copy GB/s", "triad GB/s", "harness DRAM / this triad"], rows,
                 "DRAM bandwidth (bytes counted the STREAM way)"))
    for note in notes:
        print(f"  note: {note}")
    print()
    return ref_triad, ns, ts


def _print_peak_table(full, size: int, threads: int) -> dict:
    """Table 2: the harness's FMA peak against matmuls and the theoretical estimate; return the matmul figures."""
    mm = matmul_gflops(size, threads)
    theo = full.theoretical_peak_gflops or {}
    prow = []
    for dt in ("fp32", "fp64"):
        hp = full.peak_gflops[dt]
        prow.append([f"harness FMA peak {dt} (median)", hp, 1.0, (hp / theo[dt]) if theo.get(dt) else None])
        prow.append([f"numpy {size}^3 matmul {dt} (best of 5)", mm[f"numpy_{dt}"], mm[f"numpy_{dt}"] / hp,
                     mm[f"numpy_{dt}"] / theo[dt] if theo.get(dt) else None])
        prow.append([f"torch {size}^3 matmul {dt} (best of 5)", mm[f"torch_{dt}"], mm[f"torch_{dt}"] / hp,
                     mm[f"torch_{dt}"] / theo[dt] if theo.get(dt) else None])
        prow.append([f"theoretical estimate {dt}", theo.get(dt), (theo[dt] / hp) if theo.get(dt) else None,
                     1.0 if theo.get(dt) else None])
    print(_table(["method", "GFLOP/s", "/ harness peak", "/ theoretical"], prow,
                 f"Peak FLOP/s ({threads} threads, isa {full.isa})"))
    print(f"  theoretical: {full.theoretical_basis}\n")
    return mm


def _print_measure_times(full, quick, t_full: float, t_quick: float) -> None:
    """Table 3: wall time of the full and the quick ``measure()``."""
    trow = [
        ["measure('cpu') full", t_full, len(full.sweep("triad")), f"{full.settings['max_bytes'] / 2**20:.0f} MiB",
         f"{full.settings['reps']}/{full.settings['stream_reps']}"],
        ["measure('cpu', quick=True)", t_quick, len(quick.sweep("triad")),
         f"{quick.settings['max_bytes'] / 2**20:.0f} MiB", f"{quick.settings['reps']}/{quick.settings['stream_reps']}"],
    ]
    print(_table(["call", "wall s", "sweep sizes", "max footprint", "peak/stream reps"], trow, "Time to measure"))
    print()


def _print_levels(full) -> None:
    """The memory levels (triad plateaus) the full ``measure()`` located."""
    lv = [[p.level, p.gbps, p.gbps_min, p.gbps_max,
           f"{(p.from_bytes or 0) / 1024:.0f}..{(p.to_bytes or 0) / 1024:.0f} KiB" if p.gbps else "-",
           "yes" if p.boundary_detected else "no (from cache size)"] for p in full.plateaus]
    print(_table(["level", "triad GB/s", "min", "max", "footprints", "drop found"], lv,
                 "Levels located by the full measure() (triad plateaus)"))


def main() -> int:
    a = _parse_args()

    from costmodel.measure import harness as rl

    if not rl.available():
        rl._extension()  # raises the explanatory RooflineUnavailableError
    ext = rl._extension()
    threads = len(rl._allowed_cpus())
    n = a.elements
    footprint = 24 * n
    print(f"machine: {rl._cpu_name()}, {threads} CPUs, harness isa {ext.cpu_isas()[0]}, {ext.compiler}")
    print(f"reference footprint: 3 arrays x {n} doubles = {footprint / 2**20:.0f} MiB\n", flush=True)

    quick, t_quick, full, t_full = _timed_measures(rl)
    point = _same_footprint_point(ext, footprint)

    ref_triad, ns, ts = _print_dram_table(a, full, point, n, threads)
    mm = _print_peak_table(full, a.matmul, threads)
    _print_measure_times(full, quick, t_full, t_quick)
    _print_levels(full)

    if a.output:
        Path(a.output).write_text(json.dumps({
            "profile": full.to_dict(), "quick_s": t_quick, "full_s": t_full, "same_footprint": point,
            "references": {"triad_best": ref_triad, "numpy": ns, "torch": ts}, "matmul_gflops": mm,
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
