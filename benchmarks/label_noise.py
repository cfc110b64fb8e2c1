"""How repeatable is one measured label? The same workload measured again and again with the data protocol.

A launch-bound row (small model, small batch) is as fast as the host dispatches its operators, and a
shared host's dispatch speed wanders: on this project's 2-core machine a tiny operator's dispatch
switches between about 3 and 5 microseconds every second or so. A row's timed window (0.25 s in the
packaged protocol) catches one such spell, so the same workload measured twice can differ by far more
than its three chunks suggest. This script measures that directly, on the device given:

* each workload is measured repeatedly with ``costmodel.measure.measure`` at each timed window of
  ``--windows`` (the windows interleaved round by round, so every window sees the same spells);
* right before each measurement the host's dispatch speed is probed
  (``costmodel.measure.host.dispatch_reference``, what ``collect`` records as
  ``host_reference.dispatch_us``).

Per workload and window it prints the spread of the labels (max / min, coefficient of variation), the
**label floor** (mean absolute deviation from the median label, in %: the MAPE a predictor that knew the
true typical latency exactly would score against these labels), the correlation of the label with the
probe before it, and the floor after dividing each label by its probe's ratio to the median probe
(how much of the spread the probe explains).

    PYTHONPATH=. python benchmarks/label_noise.py                      # CPU, one thread, ~4 minutes
    PYTHONPATH=. python benchmarks/label_noise.py --device cuda --budget 120
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

from costmodel.measure import measure
from costmodel.measure.host import dispatch_reference

#: small torchvision models at a tiny resolution and batch 1: their latency is mostly dispatch
WORKLOADS = (
    {"family": "misc", "name": "squeezenet1_1", "res": 32, "src": "tv"},
    {"family": "resnet", "name": "resnet18", "res": 32, "src": "tv"},
    {"family": "mobilenet", "name": "mobilenet_v2", "res": 32, "src": "tv"},
)


def _stats(lat: list[float], probe: list[float]) -> dict:
    y = np.asarray(lat)
    p = np.asarray(probe)
    med = float(np.median(y))
    floor = float(np.mean(np.abs(y / med - 1)) * 100)
    norm = y / (p / np.median(p))  # each label at the run's median dispatch speed
    norm_floor = float(np.mean(np.abs(norm / np.median(norm) - 1)) * 100)
    corr = float(np.corrcoef(y, p)[0, 1]) if len(y) > 2 and y.std() > 0 and p.std() > 0 else float("nan")
    return {"n": len(y), "median_ms": med, "spread": float(y.max() / y.min()), "cv": float(y.std() / y.mean() * 100),
            "floor": floor, "corr": corr, "norm_floor": norm_floor}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--windows", type=float, nargs="+", default=[0.25, 1.0, 2.5],
                    help="timed windows to compare, seconds (default 0.25, the protocol's, 1 and 2.5)")
    ap.add_argument("--budget", type=float, default=240.0, help="seconds for the whole run (default 240)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--min-repeats", type=int, default=3, help="stop early only after this many rounds")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    warnings.simplefilter("ignore")
    lat: dict = {(w["name"], win): [] for w in WORKLOADS for win in a.windows}
    probe: dict = {k: [] for k in lat}
    for w in WORKLOADS:  # build each model and warm the probe once, outside the budget
        measure(w, 1, device=a.device)
    dispatch_reference(a.device)
    print(f"device {a.device}, {a.threads} thread(s), windows {a.windows} s, budget {a.budget:g} s")
    t0 = time.monotonic()
    rounds = 0
    per_round = None
    from tqdm import tqdm

    bar = tqdm(desc="rounds", unit="round")
    while True:
        t_round = time.monotonic()
        for w in WORKLOADS:
            for win in a.windows:
                probe[(w["name"], win)].append(dispatch_reference(a.device, budget_s=0.05))
                lat[(w["name"], win)].append(measure(w, 1, device=a.device, window_s=win)["latency_ms"])
        rounds += 1
        bar.update(1)
        per_round = time.monotonic() - t_round
        if rounds >= a.min_repeats and time.monotonic() - t0 + per_round > a.budget:
            break
    bar.close()
    print(f"{rounds} rounds in {time.monotonic() - t0:.0f} s\n")
    head = ("workload", "window s", "n", "median ms", "max/min", "CV %", "floor %", "corr(probe)", "floor / probe %")
    print("| " + " | ".join(head) + " |")
    print("| " + " | ".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + " |")
    floors: dict = {win: [] for win in a.windows}
    for w in WORKLOADS:
        for win in a.windows:
            s = _stats(lat[(w["name"], win)], probe[(w["name"], win)])
            floors[win].append((s["floor"], s["norm_floor"]))
            print(f"| {w['name']}@{w['res']} b1 | {win:g} | {s['n']} | {s['median_ms']:.3f} | {s['spread']:.2f} | "
                  f"{s['cv']:.1f} | {s['floor']:.1f} | {s['corr']:+.2f} | {s['norm_floor']:.1f} |")
    print()
    for win in a.windows:
        f = floors[win]
        print(f"window {win:g} s: label floor {statistics.mean(x for x, _ in f):.1f} % on average, "
              f"{statistics.mean(y for _, y in f):.1f} % with each label scaled by its dispatch probe")


if __name__ == "__main__":
    main()
