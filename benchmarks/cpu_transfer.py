"""The CPU operator model on CPUs it was not trained on, and whether a measured roofline carries it.

    PYTHONPATH=. python benchmarks/cpu_transfer.py [--folders cpu_xeon cpu_xeon_2t cpu_tasks] [--json FILE]

The shipped CPU operator model learned every operator's time from profiles of one
CPU (``costmodel/data/cpu``: an AMD EPYC at one torch thread). Each folder under
``benchmarks/data`` named here holds rows that ``costmodel collect`` measured on
another CPU (``hardware.json`` says which, and its notes how) with the protocol of
the packaged CPU rows; ``host.json``, where there is one, is what ``costmodel
calibrate --device cpu`` wrote on that CPU at the rows' thread count. Nothing here
is trained on. Columns, by workload group:

* **first CPU's measurement**: the packaged row of the same workload measured on
  the profiled CPU, as if the two CPUs ran at one speed (the rows both measured);
* **timeline (shipped)**: the estimate for ``device="cpu"``, the profiled CPU's speed;
* **roofline: host.json** and **roofline: the rows' references**: the operator model
  carried to the other CPU by a measured roofline (each operator at the fraction of
  its roofline bound it reached on the profiled CPU, ``OpTimeline.predict(...,
  target=)``), read once by ``calibrate``, or as the median of the GEMM rates and copy
  bandwidths the rows' own host references read during the run;
* **one scale, best possible**: the shipped estimate times the single factor that
  fits the folder's rows best (an oracle, not a prediction: what any transfer by
  one speed ratio could reach on these rows).

Columns: MAPE %, median APE %, Kendall tau, Acc(10 %), and the geometric mean of
predicted / measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FOLDERS = ("cpu_xeon", "cpu_xeon_2t", "cpu_tasks")


def group_of(r) -> str:
    """A row's workload group: the mode and batch the folders measured."""
    if r.kind == "llm":
        return f"transformers b{r.batch}"
    return f"{'training' if r.mode == 'training' else 'inference'} b{r.batch}"


def first_cpu_rows() -> dict:
    """The packaged CPU's model-level rows profiled at one thread, by workload."""
    from costmodel.datasets import PerfDataset

    ds = PerfDataset.load(device="cpu", kinds=("vision", "llm"), prefix="ops_", method="trace")
    return {_key(r): r for r in ds.rows}


def _key(r) -> tuple:
    """A workload: a vision row by its spec, a transformer by its name (its config as transformers
    wrote it out carries fields of the version that measured it)."""
    spec = json.dumps(r.spec, sort_keys=True) if r.kind == "vision" else ""
    return (r.kind, r.model, spec, r.mode, r.batch, r.seq)


def best_scale(y: np.ndarray, p: np.ndarray) -> float:
    """The factor s minimising the mean of |s p / y - 1| (a weighted median of y / p)."""
    q = y / p
    order = np.argsort(q)
    w = (p / y)[order]
    c = np.cumsum(w)
    return float(q[order][np.searchsorted(c, 0.5 * c[-1])])


def score(y, p) -> dict:
    from costmodel.training.metrics import report

    m = report(np.asarray(y), np.asarray(p))
    ape = np.abs(np.asarray(p) / np.asarray(y) - 1) * 100
    return {"n": len(y), "mape": m["mape"], "median_ape": float(np.median(ape)), "tau": m["kendall_tau"],
            "acc10": m["acc10"], "ratio_gm": float(np.exp(np.mean(np.log(np.asarray(p) / np.asarray(y)))))}


def run_folder(folder: Path, first: dict) -> dict:
    from costmodel.datasets import PerfDataset
    from costmodel.devices import get_device
    from costmodel.measure.host import HostProfile
    from costmodel.predictors import cpu_target, get_predictor, row_graph

    hw = json.loads((folder / "hardware.json").read_text())
    ds = PerfDataset.load(folder.parent, device=folder.name, kinds=("vision", "llm"), method="trace")
    rows = [r for r in ds.rows if not r.raw.get("excluded")]
    ds = ds.subset([i for i, r in enumerate(ds.rows) if not r.raw.get("excluded")])
    refs = [r.raw["host_reference"] for r in rows if r.raw.get("host_reference")]
    profiles = {}
    if (folder / "host.json").exists():
        profiles["roofline: host.json"] = HostProfile.load(folder / "host.json")
    threads = {r.raw.get("threads") for r in rows}
    if refs and len(threads) == 1:  # the roofline the rows' own host references read (median over the run)
        import costmodel

        profiles["roofline: the rows' references"] = HostProfile(
            dispatch_us={"default": 0.0}, module_call_us=0.0, synchronous=True, host={"cpu": hw.get("name")},
            library_version=costmodel.__version__,
            roofline={"peak_gflops_fp32": statistics.median(x["gflops"] for x in refs),
                      "bandwidth_gbps": statistics.median(x["gbps"] for x in refs), "threads": int(threads.pop())})
    if not profiles:
        raise SystemExit(f"{folder}: no host.json and no host references of one thread count to read a roofline from")
    graphs = [row_graph(ds, i) for i in range(len(ds))]
    dev = get_device("cpu")
    pred = get_predictor("timeline")
    plain = np.asarray([e.latency_ms for e in pred.predict_many(graphs, dev)])
    # the roofline transfer (not what an estimate does): each operator at the fraction of its roofline bound
    # it reached on the profiled CPU, under the other CPU's measured bound
    carried = {k: np.asarray([pred.cpu.predict(g, r.mode, "adam", target=cpu_target(h))["latency_ms"]
                              for g, r in zip(graphs, rows)]) for k, h in profiles.items()}
    y = np.asarray([r.latency_ms for r in rows])
    seen = np.asarray([_key(r) in first for r in rows])
    ref = np.asarray([first[_key(r)].latency_ms if _key(r) in first else np.nan for r in rows])
    s = best_scale(y, plain)
    out = {"cpu": hw.get("name"), "threads": sorted({r.raw.get("threads") for r in rows}),
           "rooflines": {k: h.roofline for k, h in profiles.items()}, "rows": len(rows), "best_scale": s,
           "groups": {}}
    groups = defaultdict(list)
    for i, r in enumerate(rows):
        groups[group_of(r)].append(i)
    groups = {"all": list(range(len(rows))), **dict(sorted(groups.items()))}
    for g, idx in groups.items():
        idx = np.asarray(idx)
        cols = {"timeline (shipped)": plain[idx], **{k: v[idx] for k, v in carried.items()},
                "one scale, best possible": s * plain[idx]}
        res = {k: score(y[idx], v) for k, v in cols.items()}
        both = idx[seen[idx]]
        if len(both):
            res["first CPU's measurement"] = score(y[both], ref[both])
        out["groups"][g] = res
    out["per_row"] = [{"model": r.model, "mode": r.mode, "batch": r.batch, "latency_ms": float(y[i]),
                       "no_profile_ms": float(plain[i]), **{k: float(v[i]) for k, v in carried.items()}}
                      for i, r in enumerate(rows)]
    return out


def print_folder(name: str, res: dict) -> None:
    roofs = "; ".join(f"{k.split(': ', 1)[1]}: {r['peak_gflops_fp32']:.1f} GFLOP/s, {r['bandwidth_gbps']:.1f} GB/s"
                      for k, r in res["rooflines"].items())
    print(f"\n{name}: {res['rows']} rows measured on {res['cpu']} at {res['threads']} thread(s); rooflines: {roofs}; "
          f"the best single scale {res['best_scale']:.2f}")
    cols = [c for c in ("first CPU's measurement", "timeline (shipped)", "roofline: host.json",
                        "roofline: the rows' references", "one scale, best possible") if c in res["groups"]["all"]]
    print("| rows | n | " + " | ".join(cols) + " |")
    print("| --- | ---: |" + " ---: |" * len(cols))
    for g, r in res["groups"].items():
        cells = []
        for c in cols:
            m = r.get(c)
            n = "" if m is None or m["n"] == r["timeline (shipped)"]["n"] else f", {m['n']} rows"
            cells.append("-" if m is None else
                         f"{m['mape']:.1f} / {m['median_ape']:.1f} / {m['tau']:.2f} / {m['acc10']:.0f} "
                         f"(x{m['ratio_gm']:.2f}{n})")
        print(f"| {g} | {r['timeline (shipped)']['n']} | " + " | ".join(cells) + " |")
    print("(MAPE % / median APE % / Kendall tau / Acc(10 %), and the geometric mean of predicted / measured)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(HERE / "data"))
    ap.add_argument("--folders", nargs="+", default=list(FOLDERS))
    ap.add_argument("--json", default=None, help="also write every number (and every row's predictions) here")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    first = first_cpu_rows()
    out = {}
    for name in a.folders:
        out[name] = run_folder(Path(a.data) / name, first)
        print_folder(name, out[name])
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
