"""How much of the energy error is the label's own: NVML's energy counter read over a short window.

    python benchmarks/energy_labels.py [--update-ms 100] [--draws 4000] [--skip-predict]
    python benchmarks/energy_labels.py --check ROWS.jsonl [MORE.jsonl ...]

NVML's total-energy counter advances in steps, about every 100 ms on recent
data-centre GPUs, not continuously. A row's ``energy_j`` is the counter's
difference across the timed window divided by the calls in it, and the packaged
protocol's window is only 0.25 s (median 0.24 s), so each of the two reads is
stale by an unknown part of an update period: the energy counted belongs to a
span that is up to one period longer or shorter than the window. With both
reads at independent, uniform phases the relative error of one row is
``(u1 - u2) * period / window_s`` (u uniform on [0, 1]): a mean absolute error of
``period / (3 window_s)``, 13 % at 0.25 s, and 3 % at a second.

Prints:

1. the floor this puts under any energy predictor, per set of rows: the MAPE a
   predictor that knew every row's true energy would score against these
   labels (Monte Carlo over the counter's phases, each row with its own window);
2. the check: workloads measured on two H200 hosts whose latencies agree
   within 5 % (so the GPU did the same work at the same pace): the spread of
   their measured power next to what two independent counter errors give for
   their windows, and the update period that fits the spread best;
3. (unless ``--skip-predict``) the shipped timeline's energy error on the
   packaged vision rows (in-sample) and on the second host's later
   architectures, per window length, next to each group's floor.

``--check`` reads rows that ``costmodel collect`` measured with the energy span
(``energy_method: counter-updates``, :mod:`costmodel.measure.energy`) and checks
the span against the window on the same rows: the counter's step as the rows
measured it (``update_ms``), the spread of the window's power around the span's,
next to what one counter error at each row's window gives, and the step that
fits the spread best. If the span works, the fitted step is close to the
measured one.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SETS = {
    "packaged vision": ROOT / "costmodel/data/h200/vision.jsonl",
    "packaged transformers": ROOT / "costmodel/data/h200/llm.jsonl",
    "second host, vision": HERE / "data/h200_extend/vision.jsonl",
    "third host, vision": HERE / "data/h200_ops/ops_vision.jsonl",
    "third host, packaged archs": ROOT / "costmodel/data/h200/ops/ops_vision.jsonl",
}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def counter_errors(window_s: np.ndarray, period_s: float, draws: int, rng) -> np.ndarray:
    """(draws, rows) relative errors of a counter difference over windows of ``window_s``."""
    u = rng.random((draws, len(window_s))) - rng.random((draws, len(window_s)))
    return u * period_s / np.asarray(window_s, dtype=float)


def floor_mape(window_s, period_s: float, draws: int, rng) -> float:
    """MAPE of a perfect predictor against labels read off the counter (measured = true x (1 + e))."""
    e = counter_errors(window_s, period_s, draws, rng)
    return float(np.mean(np.abs(e) / (1.0 + e)) * 100)


def _key(r: dict) -> tuple:
    return json.dumps(r["spec"], sort_keys=True), r["mode"], r["dtype"], r["batch"]


def _pairs(tol: float) -> list[tuple[dict, dict]]:
    first = {_key(r): r for r in _rows(SETS["packaged vision"])}
    out = []
    for name in ("third host, packaged archs", "second host, vision"):
        for r in _rows(SETS[name]):
            o = first.get(_key(r))
            if o is not None and abs(np.log(r["latency_ms"] / o["latency_ms"])) < tol:
                out.append((o, r))
    return out


def _pair_spread(pairs, period_s: float, draws: int, rng) -> float:
    w1 = np.array([a["window_s"] for a, _ in pairs])
    w2 = np.array([b["window_s"] for _, b in pairs])
    e1, e2 = counter_errors(w1, period_s, draws, rng), counter_errors(w2, period_s, draws, rng)
    # a window shorter than the period can count almost nothing; a count floors at 5 % of the truth
    return float(np.mean(np.abs(np.log(np.maximum(1 + e1, 0.05)) - np.log(np.maximum(1 + e2, 0.05)))))


def _section_floor(period_s: float, draws: int, rng) -> None:
    print(f"1. the label floor: MAPE % of a perfect energy predictor, counter updated every "
          f"{period_s * 1e3:.0f} ms")
    print(f"{'rows':<30}{'n':>5}{'window p10/p50/p90 s':>24}{'floor %':>9}")
    for name, path in SETS.items():
        w = np.array([r["window_s"] for r in _rows(path)])
        q = np.percentile(w, [10, 50, 90])
        print(f"{name:<30}{len(w):>5}{'%.2f / %.2f / %.2f' % tuple(q):>24}{floor_mape(w, period_s, draws, rng):>9.1f}")
    for w in (0.25, 0.5, 1.0, 2.0):
        print(f"{'  any row, window %.2f s' % w:<30}{'':>5}{'':>24}"
              f"{floor_mape(np.array([w]), period_s, draws, rng):>9.1f}")


def _section_pairs(period_s: float, draws: int, rng) -> None:
    pairs = _pairs(0.05)
    obs = np.abs([np.log(a["power_w"] / b["power_w"]) for a, b in pairs])
    print(f"\n2. the same workload on two hosts, latencies within 5 % ({len(pairs)} pairs): "
          "|log power ratio|")
    print(f"   measured: mean {obs.mean():.3f}, median {np.median(obs):.3f}")
    print(f"   two counter errors at the pairs' windows ({period_s * 1e3:.0f} ms): mean "
          f"{_pair_spread(pairs, period_s, draws, rng):.3f}")
    grid = np.arange(10, 301, 5) / 1e3
    fit = [abs(_pair_spread(pairs, p, draws, rng) - obs.mean()) for p in grid]
    best = grid[int(np.argmin(fit))]
    print(f"   the update period whose spread matches the measured mean: {best * 1e3:.0f} ms "
          "(everything else that differs between two hosts' boards is in it too)")


def _section_predict(period_s: float, draws: int, rng) -> None:
    warnings.simplefilter("ignore")
    from costmodel.datasets import PerfDataset
    from costmodel.devices import get_device
    from costmodel.predictors import get_predictor

    dev, pred = get_device("h200"), get_predictor("timeline")
    packaged = PerfDataset.load()
    sets = {"packaged vision (in-sample)": packaged.subset([i for i, r in enumerate(packaged.rows)
                                                            if r.kind == "vision"])}
    later = PerfDataset.load(str(HERE / "data"), device="h200_extend")
    seen = {r.model for r in packaged.rows}
    sets["second host, later archs"] = later.subset([i for i, r in enumerate(later.rows) if r.model not in seen])
    print("\n3. the shipped timeline's energy MAPE % by window, next to the floor of the same rows")
    print(f"{'rows':<30}{'window s':>12}{'n':>5}{'energy':>9}{'power':>8}{'floor':>8}")
    bins = ((0.0, 0.22), (0.22, 0.26), (0.26, 0.5), (0.5, 99.0))
    for name, ds in sets.items():
        est = pred.predict_many(ds.graphs(progress=False), dev)
        w = np.array([r.raw["window_s"] for r in ds.rows])
        ye = np.array([r.energy_j for r in ds.rows])
        yp = ye / np.array([r.latency_ms for r in ds.rows])
        pe = np.array([e.energy_j for e in est])
        pp = pe / np.array([e.latency_ms for e in est])
        for lo, hi in ((0.0, 99.0), *bins):
            m = (w >= lo) & (w < hi)
            if not m.any():
                continue
            label = "all" if hi == 99.0 and lo == 0.0 else (f">= {lo:.2f}" if hi == 99.0 else f"{lo:.2f}-{hi:.2f}")
            print(f"{name:<30}{label:>12}{int(m.sum()):>5}{np.mean(np.abs(pe[m] - ye[m]) / ye[m]) * 100:>9.1f}"
                  f"{np.mean(np.abs(pp[m] - yp[m]) / yp[m]) * 100:>8.1f}{floor_mape(w[m], period_s, draws, rng):>8.1f}")


def check_rows(rows: list[dict], draws: int, rng) -> dict:
    """The energy span against the window on rows measured with both (see ``--check``)."""
    rows = [r for r in rows if r.get("energy_method") == "counter-updates" and r.get("power_w_window")]
    if not rows:
        return {"rows": 0}
    w = np.array([r["window_s"] for r in rows])
    obs = np.abs(np.log(np.array([r["power_w_window"] / r["power_w"] for r in rows])))
    step = float(np.median([r["energy_span"]["update_ms"] for r in rows])) / 1e3

    def spread(period):
        e = counter_errors(w, period, draws, rng)
        return float(np.mean(np.abs(np.log(np.maximum(1 + e, 0.05)))))

    grid = np.arange(10, 301, 5) / 1e3
    best = grid[int(np.argmin([abs(spread(p) - obs.mean()) for p in grid]))]
    return {"rows": len(rows), "update_ms": step * 1e3, "spread": float(obs.mean()),
            "expected_spread": spread(step), "fitted_update_ms": float(best * 1e3)}


def _section_check(paths: list[str], draws: int, rng) -> None:
    rows = [r for p in paths for r in _rows(Path(p))]
    c = check_rows(rows, draws, rng)
    print(f"the energy span against the window: {c['rows']} rows measured both ways (of {len(rows)})")
    if not c["rows"]:
        return
    print(f"   the counter's step as measured by the spans: {c['update_ms']:.0f} ms (median)")
    print(f"   |log(window power / span power)|: mean {c['spread']:.3f}; one counter error at these windows "
          f"with that step: {c['expected_spread']:.3f}")
    print(f"   the step that fits the spread best: {c['fitted_update_ms']:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--update-ms", type=float, default=100.0, help="the energy counter's update period")
    ap.add_argument("--draws", type=int, default=4000, help="Monte Carlo draws of the counter's phases")
    ap.add_argument("--skip-predict", action="store_true", help="skip section 3 (it builds 420 graphs)")
    ap.add_argument("--check", nargs="+", metavar="ROWS", default=None,
                    help="only check rows measured with the energy span against their windows")
    a = ap.parse_args()
    if a.update_ms <= 0 or a.draws < 1:
        ap.error(f"--update-ms must be > 0 and --draws >= 1, got {a.update_ms} and {a.draws}")
    rng = np.random.default_rng(0)
    period = a.update_ms / 1e3
    if a.check:
        _section_check(a.check, a.draws, rng)
        return
    _section_floor(period, a.draws, rng)
    _section_pairs(period, a.draws, rng)
    if not a.skip_predict:
        _section_predict(period, a.draws, rng)


if __name__ == "__main__":
    main()
