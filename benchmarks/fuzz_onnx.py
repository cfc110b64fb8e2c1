"""Mutation fuzzing of the ONNX frontend: thousands of broken and unusual models.

    python benchmarks/fuzz_onnx.py [--mutants 2000] [--seed 0] [--timeout-s 10] [--default-every 10]
                                   [--max-rss-mb 4000] [--models resnet18,transformer,...] [--examples 3]

Builds the seed models of ``tests/frontends/_onnx_fuzz.py`` (small torch exports and hand-written
protos), mutates them (deleted nodes, rewired inputs and cycles, garbage attributes, unknown ops and
domains, bad dims and dtypes, truncated and flipped bytes...) and costs every mutant with
``costmodel.estimate(..., device="h100")`` in a worker process under a watchdog (``--timeout-s``
per mutant, ``--max-rss-mb`` of memory): the analytic predictor, and every ``--default-every``-th
mutant the default learned one as well.

A mutant must give an estimate whose latency, memory and energy are finite and non-negative, or
raise a ``CostModelError``.  The table counts estimates, clean errors by class, unclean exceptions by
type (with an example), hangs, NaN/negative results and the time per mutant; the exit status is 1
if any outcome is unclean.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "frontends"))
sys.path.insert(0, str(ROOT))

import _onnx_fuzz as fuzz  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mutants", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0, help="fuzz seed: a mutant is determined by (seed, index)")
    ap.add_argument("--timeout-s", type=float, default=10.0, help="per-mutant time limit")
    ap.add_argument("--max-rss-mb", type=float, default=4000.0, help="per-mutant memory limit of the worker")
    ap.add_argument("--default-every", type=int, default=10,
                    help="every N-th mutant runs the default (learned) predictor; 0: analytic only")
    ap.add_argument("--models", default="", help="comma-separated seed models (default: all)")
    ap.add_argument("--examples", type=int, default=3, help="examples shown per unclean outcome")
    a = ap.parse_args(argv)

    from tqdm import tqdm

    wanted = {m.strip() for m in a.models.split(",") if m.strip()}
    t0 = time.perf_counter()
    seeds = fuzz.build_seeds((lambda n: n in wanted) if wanted else None)
    if not seeds:
        ap.error(f"no seed model named {', '.join(sorted(wanted))}")
    print(f"{len(seeds)} seed models built in {time.perf_counter() - t0:.1f} s: {', '.join(s.name for s in seeds)}")

    results = []
    with fuzz.Runner(timeout_s=a.timeout_s, max_rss_mb=a.max_rss_mb) as runner:
        runner.warm_up("analytic", *([None] if a.default_every else []))
        bar = tqdm(fuzz.mutants(seeds, a.mutants, a.seed, default_every=a.default_every), total=a.mutants,
                   unit="mutant", dynamic_ncols=True)
        for m in bar:
            o = runner.run(m)
            results.append((m, o))
            if not o.ok:
                bar.set_postfix(unclean=sum(not r.ok for _, r in results))
    report(results, a)
    return 1 if any(not o.ok for _, o in results) else 0


def report(results, a) -> None:
    n = len(results)
    kinds = Counter(o.kind for _, o in results)
    clean = Counter(o.what for _, o in results if o.kind == "clean")
    unclean: dict[str, list] = defaultdict(list)
    for m, o in results:
        if o.kind in ("unclean", "hang", "bad_result"):
            unclean[f"{o.kind}: {o.what}"].append((m, o))
    times = sorted(o.seconds for _, o in results)
    by_pred: dict[str, list[float]] = defaultdict(list)
    for m, o in results:
        by_pred[m.predictor or "default"].append(o.seconds)

    def row(label: str, count: int) -> str:
        return f"  {label:<44}{count:>8}{100 * count / max(n, 1):>9.1f} %"

    print(f"\nONNX frontend fuzzing: {n} mutants, fuzz seed {a.seed}, limit {a.timeout_s:g} s / "
          f"{a.max_rss_mb:g} MB per mutant")
    print(f"  {'outcome':<44}{'mutants':>8}{'share':>11}")
    print(row("estimates (finite, non-negative)", kinds["estimate"]))
    print(row("clean errors (CostModelError)", kinds["clean"]))
    for what, c in clean.most_common():
        print(row(f"  {what}", c))
    print(row("unclean exceptions", kinds["unclean"]))
    for what, c in Counter(o.what for _, o in results if o.kind == "unclean").most_common():
        print(row(f"  {what}", c))
    print(row("hangs (time or memory limit)", kinds["hang"]))
    print(row("NaN / infinite / negative results", kinds["bad_result"]))

    print(f"\n  {'seed model':<24}{'mutants':>8}{'estimates':>11}{'clean':>8}{'unclean':>9}")
    per_seed: dict[str, Counter] = defaultdict(Counter)
    for m, o in results:
        per_seed[m.seed]["n"] += 1
        per_seed[m.seed]["estimate" if o.kind == "estimate" else "clean" if o.kind == "clean" else "bad"] += 1
    for name, c in per_seed.items():
        print(f"  {name:<24}{c['n']:>8}{c['estimate']:>11}{c['clean']:>8}{c['bad']:>9}")

    def ms(xs, q):
        return 1e3 * xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0

    print(f"\n  time per mutant (ms){'':<4}{'mean':>10}{'median':>10}{'p99':>10}{'max':>10}")
    for label, xs in [("all", times)] + [(f"predictor {k}", sorted(v)) for k, v in sorted(by_pred.items())]:
        print(f"  {label:<24}{1e3 * statistics.fmean(xs) if xs else 0:>10.1f}{ms(xs, 0.5):>10.1f}"
              f"{ms(xs, 0.99):>10.1f}{ms(xs, 1.0):>10.1f}")

    if unclean:
        print("\nUnclean outcomes (first examples; reproduce with fuzz.make_mutant(seed, fuzz seed, index)):")
        for key, items in sorted(unclean.items(), key=lambda kv: -len(kv[1])):
            print(f"  {key} x{len(items)}")
            for m, o in items[: a.examples]:
                print(f"    {o.detail}\n      {m.describe()}")
    else:
        print("\nNo unclean outcome: every mutant gave an estimate or a CostModelError.")


if __name__ == "__main__":
    sys.exit(main())
