"""Peak memory from the allocation trace and the caching-allocator replay, measured.

    python benchmarks/memory.py [--kind vision|transformer|all] [--limit N] [--skip-learned]

Every packaged H200 row (vision: inference and training, fp32 and fp16;
transformers: encoder forward, prefill, decode) and the rows measured later on
a second H200 host (``benchmarks/data/h200_extend``, architectures no
predictor trained on). For each row the step is traced on fake tensors and
replayed through the caching-allocator model; the device's two overheads (the
library workspace and the context, medians) are fitted leave-one-family-out:
on the rows of every other family (every other ``model_type`` for
transformers), never on the row's own.

Prints, per group of rows:

1. ``memory_mb`` against NVML (what a MIG slice must hold): MAPE, max error,
   Acc(2 %), next to the analytic predictor and the shipped learned
   predictors. The learned predictors were trained on the packaged rows, so
   their numbers on those rows are in-sample (marked ``*``); on the second
   host's new architectures nobody trained on the rows;
2. the replay's own layers against PyTorch's counters:
   ``max_memory_allocated`` and ``max_memory_reserved``;
3. the MIG pick from the replayed memory: does the slice hold the measured
   memory, and is it the smallest that does;
4. time per estimate (trace + replay, then the cached trace's replay);
5. ``--speed`` (alone, in a fresh process: after the tables the fake-tensor
   caches are warm) resnet50's training step at batch 32 and a 7 B decoder's
   prefill and decode, traced from scratch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _stats(pairs: list[tuple[float, float]]) -> tuple[float, float, float]:
    errs = [100.0 * (p - y) / y for p, y in pairs if y and y == y and p == p]
    if not errs:
        return float("nan"), float("nan"), float("nan")
    return (statistics.mean(abs(e) for e in errs), max(abs(e) for e in errs),
            100.0 * sum(abs(e) <= 2.0 for e in errs) / len(errs))


def _group(row: dict) -> str:
    if "model_type" in row:
        return f"transformer {row['mode']}"
    mode = "train" if row["mode"] == "train" else "infer"
    return f"vision {mode} {row['dtype']}"


def _family(row: dict) -> str:
    return row["model_type"] if "model_type" in row else row["spec"].get("family", "unknown")


def _replay(row: dict, ov):
    from costmodel.analysis.memreplay import replay_memory

    if "model_type" in row:
        model = {**row["config"], "model_type": row["model_type"]}
        return replay_memory(model, "h200", batch=row["batch"], seq=row["seq"], phase=row["mode"],
                             dtype=row["dtype"], overheads=ov)
    mode = "training" if row["mode"] == "train" else "inference"
    return replay_memory(row["spec"], "h200", batch=row["batch"], mode=mode, dtype=row["dtype"], overheads=ov)


def _learned(rows: list[dict], folder: str, names: list[str]) -> dict[str, list[float]]:
    """Memory of each row from the shipped predictors (NaN where a predictor has no answer)."""
    from costmodel import estimate_llm
    from costmodel.datasets import PerfDataset
    from costmodel.predictors import get_predictor

    out: dict[str, list[float]] = {n: [float("nan")] * len(rows) for n in names}
    ds = PerfDataset.load(HERE / "data" if folder != "h200" else None, device=folder, kinds=("vision", "llm"))
    index = {json.dumps(r.raw, sort_keys=True): i for i, r in enumerate(ds.rows)}
    preds = {n: get_predictor(n) for n in names if n != "llm-xgb"}
    for j, row in enumerate(rows):
        i = index.get(json.dumps(row, sort_keys=True))
        if i is None:
            continue
        r = ds.rows[i]
        if r.kind == "llm":
            if "llm-xgb" in out:
                try:
                    e = estimate_llm({**row["config"], "model_type": row["model_type"]}, batch=r.batch, seq=r.seq,
                                     mode=r.phase, dtype=r.dtype, device="h200")
                    out["llm-xgb"][j] = e.memory_mb
                except Exception:  # a config the transformer predictor does not take
                    pass
            if r.phase == "decode":
                continue
        g = ds.graph(i)
        for n, p in preds.items():
            try:
                out[n][j] = p.predict(g, "h200", mode=r.mode).memory_mb
            except Exception:
                pass
    return out


def _read(folder: Path) -> list[dict]:
    from costmodel.datasets import read_jsonl

    rows = [row for name in ("vision.jsonl", "llm.jsonl") if (folder / name).exists()
            for _, row in read_jsonl(folder / name)]
    return [r for r in rows if r.get("nvml_used_mb") is not None and r.get("peak_reserved_mb") is not None]


def _section(title: str, rows: list[dict], fit_rows: list[dict], learned: dict[str, list[float]],
             in_sample: bool, mig: bool) -> None:
    from costmodel import recommend_mig
    from costmodel.analysis.memreplay import fit_overheads

    print(f"\n{title}: {len(rows)} rows")
    by_fam: dict[str, list[dict]] = defaultdict(list)
    for r in fit_rows:
        by_fam[_family(r)].append(r)
    cache: dict[str, object] = {}
    res = []
    t_first, t_again = defaultdict(list), defaultdict(list)
    for k, row in enumerate(rows):
        fam = _family(row)
        if fam not in cache:  # overheads without this family's rows
            cache[fam] = fit_overheads([r for f, rs in by_fam.items() if f != fam for r in rs], "h200",
                                       f"h200 rows without {fam}")
        t0 = time.perf_counter()
        try:
            out = _replay(row, cache[fam])
        except Exception as e:  # reported, never dropped
            print(f"   {_group(row)} {row.get('model') or row['spec'].get('name')}: {type(e).__name__}: {e}")
            res.append(None)
            continue
        t_first[_group(row)].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _replay(row, cache[fam])
        t_again[_group(row)].append(time.perf_counter() - t0)
        res.append(out)
        if (k + 1) % 50 == 0:
            print(f"   ... {k + 1}/{len(rows)}", file=sys.stderr, flush=True)
    groups = sorted({_group(r) for r in rows})
    star = "*" if in_sample else ""
    names = list(learned)
    head = f"{'':<26}{'rows':>5}{'replay MAPE':>12}{'max':>7}{'Acc2':>6}"
    head += "".join(f"{n + star:>12}" for n in names)
    print("\n1. memory_mb vs NVML (MAPE %; max |error| %; Acc(2 %) share of rows)")
    print(head)
    for grp in groups + ["all"]:
        idx = [i for i, r in enumerate(rows) if (grp == "all" or _group(r) == grp) and res[i] is not None]
        if not idx:
            continue
        m, mx, acc = _stats([(res[i].memory_mb, rows[i]["nvml_used_mb"]) for i in idx])
        line = f"{grp:<26}{len(idx):>5}{m:>12.2f}{mx:>7.1f}{acc:>6.0f}"
        for n in names:
            lm, _, _ = _stats([(learned[n][i], rows[i]["nvml_used_mb"]) for i in idx])
            line += f"{lm:>12.2f}" if lm == lm else f"{'-':>12}"
        print(line)
    print("\n2. the replay against PyTorch's counters (MAPE %, max %)")
    print(f"{'':<26}{'allocated':>10}{'max':>7}{'reserved':>10}{'max':>7}")
    for grp in groups + ["all"]:
        idx = [i for i, r in enumerate(rows) if (grp == "all" or _group(r) == grp) and res[i] is not None]
        if not idx:
            continue
        a, amx, _ = _stats([(res[i].allocated_mb, rows[i]["peak_alloc_mb"]) for i in idx])
        v, vmx, _ = _stats([(res[i].reserved_mb, rows[i]["peak_reserved_mb"]) for i in idx])
        print(f"{grp:<26}{a:>10.2f}{amx:>7.1f}{v:>10.2f}{vmx:>7.1f}")
    worst = sorted((abs(res[i].memory_mb / rows[i]["nvml_used_mb"] - 1), i) for i in range(len(rows))
                   if res[i] is not None)[-5:]
    print("   worst rows: " + "; ".join(
        f"{rows[i].get('model') or rows[i]['spec'].get('name')} {rows[i]['mode']} {rows[i]['dtype']} "
        f"b{rows[i]['batch']} {100 * (res[i].memory_mb / rows[i]['nvml_used_mb'] - 1):+.1f} %" for _, i in worst))
    if mig:
        holds = smallest = n = 0
        for i, r in enumerate(rows):
            if res[i] is None:
                continue
            pick = recommend_mig("h200", res[i].memory_mb)
            best = recommend_mig("h200", r["nvml_used_mb"])
            n += 1
            holds += pick is not None and pick.memory_mb >= r["nvml_used_mb"] or (pick is None and best is None)
            smallest += (pick.name if pick else None) == (best.name if best else None)
        print(f"\n3. MIG pick from the replayed memory: holds the measured memory in {100 * holds / n:.1f} % of rows, "
              f"is the smallest that does in {100 * smallest / n:.1f} %")
    print("\n4. time per estimate, median ms (trace + replay; replay of the cached trace)")
    for grp in groups:
        if t_first[grp]:
            print(f"{grp:<26}{1e3 * statistics.median(t_first[grp]):>10.0f}{1e3 * statistics.median(t_again[grp]):>10.1f}")


def _speed() -> None:
    """The two speed targets: resnet50's training step at batch 32, and a 7 B decoder's prefill and
    decode, each traced from scratch (no cached trace) and replayed."""
    from costmodel.analysis import memreplay
    from costmodel.analysis.memreplay import replay_memory

    replay_memory("torchvision:resnet18", "h200", batch=1)  # imports and first-call set-up, not timed
    print("\n5. speed, trace + replay from scratch (seconds)")
    cases = [("torchvision:resnet50", dict(batch=32, mode="training"), "resnet50 training step, batch 32"),
             ("llama-2-7b", dict(batch=8, seq=512, phase="prefill", dtype="fp16"), "llama-2-7b prefill, 8 x 512"),
             ("llama-2-7b", dict(batch=8, seq=512, phase="decode", dtype="fp16"),
              "llama-2-7b decode, 8 x 512 cache (prefill + 8 steps, twice)")]
    for model, kw, label in cases:
        memreplay._CACHE.clear()
        t0 = time.perf_counter()
        out = replay_memory(model, "h200", **kw)
        print(f"{label:<58}{time.perf_counter() - t0:>8.2f}   ({out.memory_mb:,.0f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=("vision", "transformer", "all"), default="all")
    ap.add_argument("--limit", type=int, default=None, help="only the first N rows of each set (a quick look)")
    ap.add_argument("--skip-learned", action="store_true", help="replay only (the learned columns need graphs)")
    ap.add_argument("--speed", action="store_true", help="only the speed section (5), in this fresh process")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    if a.speed:
        _speed()
        return
    from costmodel.datasets import default_root

    def keep(rows):
        rows = [r for r in rows if a.kind == "all" or ("model_type" in r) == (a.kind == "transformer")]
        return rows[: a.limit] if a.limit else rows

    packaged = _read(default_root() / "h200")
    extend = _read(HERE / "data" / "h200_extend")
    seen = {json.dumps(r["spec"], sort_keys=True) for r in packaged if "spec" in r}
    new_arch = [r for r in extend if "spec" in r and json.dumps(r["spec"], sort_keys=True) not in seen]
    new_arch += [r for r in extend if "model_type" in r]
    names = [] if a.skip_learned else ["analytic", "trappm", "dippm", "xgb-static", "llm-xgb"]
    rows = keep(packaged)
    learned = _learned(rows, "h200", names) if names else {}
    _section("H200, packaged rows, overheads fitted leave-one-family-out", rows, packaged, learned, True, True)
    rows = keep(new_arch)
    if rows:
        learned = _learned(rows, "h200_extend", names) if names else {}
        _section("H200, second host, architectures no predictor trained on (overheads from the packaged rows)",
                 rows, packaged, learned, False, True)


if __name__ == "__main__":
    main()
