"""Package the rows of a ``costmodel collect --ops`` run (``benchmarks/gpu_collect_ops.sh``) as a data folder.

    python benchmarks/package_ops.py SRC DEST [--model-rows NAME] [--note TEXT]

SRC holds what the collection wrote: the model rows (``vision_extend.jsonl`` by default, and
``llm_extend.jsonl`` when present), ``ops.jsonl``, ``hardware.json`` and ``host.json``.  DEST gets the
layout the operator-model loaders read (``costmodel.predictors.load_op_dataset``):

    DEST/ops_vision.jsonl   model rows, each with the measuring host (``host``: name, CPU, when)
    DEST/ops_llm.jsonl      transformer rows, when there are any
    DEST/ops.jsonl.gz       operator rows (gzip, no timestamp: the same rows give the same bytes)
    DEST/hardware.json      the device and its measured roofline
    DEST/host.json          the host profile calibrated before the rows

Three things are repaired on the way, each stated in the row (``ops.repaired``), never silently:

1. Runs profiled on CUDA before the profiler's steps were told apart from the GPU-side copies of
   their ``record_function`` range counted those copies as extra steps that held no operator: the
   step count read 6 (or more) and every summary mean and every unmapped row was divided by it
   instead of by the 3 real steps.  The operator rows' own times (means over the steps that saw
   the operator, ``seen``) were right.  Such a run is recognised by its operator rows, which all
   say ``seen: 3/k`` with ``k`` the recorded step count, and its means are multiplied by ``k / 3``.
2. Runs profiled on CUDA before cuDNN's batch norm was matched to the graph's ``native_batch_norm``
   carry the norm's kernels on the ``aten::empty`` node before it: they are moved to the norm's node
   (:func:`_move_cudnn_norms`).
3. Training runs profiled on CUDA before the backward functions on autograd's device thread were
   collected hold no backward rows: they are marked ``ops.backward_captured: false`` (their forward
   and optimizer rows stand; their model rows' latencies cover the whole step).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
from pathlib import Path

MEAN_FIELDS = ("forward_nodes_mapped", "work_nodes_mapped", "backward_nodes_mapped", "unmapped_ops",
               "unmapped_ms", "python_gap_ms", "profiled_step_ms")
STEPS = 3  # costmodel.measure.opprofile.PROFILED_STEPS when these runs were profiled


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def _key(r: dict) -> str:
    from costmodel.measure import key_of_row

    return key_of_row(r)


def _step_factor(row: dict, ops: list[dict]) -> float:
    """``k / 3`` when the run counted ``k`` steps but its operators were seen in 3 (see the module notes)."""
    k = int((row.get("ops") or {}).get("profiled_steps") or 0)
    seen = {o.get("seen") for o in ops if o.get("seen")}
    return k / STEPS if k > STEPS and seen == {f"{STEPS}/{k}"} else 1.0


def repair(row: dict, ops: list[dict], cuda: bool) -> tuple[dict, list[dict]]:
    """The model row and its operator rows with the repairs of the module notes applied."""
    summ = dict(row.get("ops") or {})
    ops = [dict(o) for o in ops]  # the caller's rows stay as they were
    notes = []
    f = _step_factor(row, ops)
    if f != 1.0:
        for k in MEAN_FIELDS:
            if isinstance(summ.get(k), (int, float)):
                summ[k] = round(summ[k] * f, 5)
        notes.append(f"step count {summ['profiled_steps']} -> {STEPS} (GPU copies of the step range are not "
                     f"steps): summary means and unmapped rows x{f:g}")
        summ["profiled_steps"] = STEPS
        for o in ops:
            if o.get("seen"):
                o["seen"] = f"{STEPS}/{STEPS}"
            if not o.get("mapped"):
                for k in ("calls", "cpu_us", "device_us"):
                    if isinstance(o.get(k), (int, float)):
                        o[k] = round(o[k] * f, 3)
    moved = _move_cudnn_norms(ops) if cuda else 0
    if moved:
        notes.append(f"{moved} batch norms run by cuDNN: their kernels moved from the aten::empty node before each "
                     "to its native_batch_norm node")
        if isinstance(summ.get("work_nodes_mapped"), (int, float)):
            summ["work_nodes_mapped"] = round(summ["work_nodes_mapped"] + moved, 5)
    if cuda and row.get("mode") == "train" and summ and not summ.get("backward_nodes_mapped"):
        summ["backward_captured"] = False
        notes.append("backward functions ran on autograd's device thread and were not collected: forward and "
                     "optimizer rows only")
    if notes:
        summ["repaired"] = notes
    out = dict(row)
    if summ:
        out["ops"] = summ
    return out, ops


def _move_cudnn_norms(ops: list[dict]) -> int:
    """Runs profiled before ``cudnn_batch_norm`` was taken for the graph's ``native_batch_norm``
    (``costmodel.measure.opprofile.EVENT_ALIASES``) placed the ``aten::empty`` node that precedes each
    batch norm in the trace graph inside cuDNN's ``batch_norm`` event, and with it the norm's kernels.
    Each such row (an ``empty`` with kernels, no row for the next node) gets a twin on the next node
    named ``aten::native_batch_norm`` with its times, and keeps none itself.  The loaders join a row to
    its node only if the names agree, so a twin on a node that is not a batch norm is never used."""
    fwd = {o.get("node") for o in ops if o.get("mapped") and o.get("phase") == "forward"}
    add, moved = [], 0
    for i, o in enumerate(ops):
        if (o.get("op") == "aten::empty" and o.get("mapped") and o.get("phase") == "forward"
                and (o.get("kernels") or 0) > 0 and (o.get("device_us") or 0) > 0 and o["node"] + 1 not in fwd):
            twin = {k: v for k, v in o.items() if k not in ("attrs", "in_shapes", "out_shapes", "flops", "bytes",
                                                            "dtype", "is_view", "scope")}
            twin.update(node=o["node"] + 1, op="aten::native_batch_norm", kind="batch_norm",
                        moved_from_node=o["node"])
            add.append(twin)
            ops[i] = {**o, "device_us": 0.0, "cpu_us": 0.0, "kernels": 0.0, "moved_to_node": o["node"] + 1}
            moved += 1
    ops.extend(add)
    return moved


def package(src: Path, dest: Path, model_rows: str = "vision_extend.jsonl", note: str | None = None) -> dict:
    hw = json.loads((src / "hardware.json").read_text())
    host = json.loads((src / "host.json").read_text()) if (src / "host.json").exists() else {}
    who = {k: v for k, v in (host.get("host") or {}).items() if k in ("hostname", "cpu", "created", "torch")}
    cuda = hw.get("kind") == "cuda"
    ops_by_key: dict[str, list[dict]] = {}
    for o in _jsonl(src / "ops.jsonl"):
        ops_by_key.setdefault(o["key"], []).append(o)
    dest.mkdir(parents=True, exist_ok=True)
    llm_name = model_rows.replace("vision", "llm") if "vision" in model_rows else None
    stats = {"rows": 0, "op_rows": 0, "repaired_steps": 0, "no_backward": 0, "norms_moved": 0}
    out_ops: list[dict] = []
    for name, kind in ((model_rows, "vision"), (llm_name, "llm")):
        rows = _jsonl(src / name) if name else []
        if not rows:
            continue
        out_rows = []
        for r in rows:
            k = _key(r)
            r2, ops = repair(r, ops_by_key.pop(k, []), cuda)
            if who:
                r2["host"] = who
            if note:
                r2["collection"] = note
            rep = (r2.get("ops") or {}).get("repaired") or []
            stats["repaired_steps"] += any(x.startswith("step count") for x in rep)
            stats["norms_moved"] += sum(int(x.split()[0]) for x in rep if x.endswith("native_batch_norm node"))
            stats["no_backward"] += (r2.get("ops") or {}).get("backward_captured") is False
            out_rows.append(r2)
            out_ops.extend(ops)
        (dest / f"ops_{kind}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out_rows))
        stats["rows"] += len(out_rows)
    orphans = sum(len(v) for v in ops_by_key.values())
    with open(dest / "ops.jsonl.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9,
                                                                 mtime=0, filename="") as f:
        for o in out_ops:
            f.write((json.dumps(o) + "\n").encode())
    stats["op_rows"] = len(out_ops)
    stats["orphan_op_rows_dropped"] = orphans
    shutil.copyfile(src / "hardware.json", dest / "hardware.json")
    if host:
        shutil.copyfile(src / "host.json", dest / "host.json")
    return stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--model-rows", default="vision_extend.jsonl", help="the model rows' file in SRC")
    ap.add_argument("--note", help="a line saved in every model row as 'collection'")
    a = ap.parse_args(argv)
    for need in ("hardware.json", "ops.jsonl", a.model_rows):
        if not (a.src / need).exists():
            print(f"package_ops.py: {a.src / need} is missing (SRC must hold what gpu_collect_ops.sh wrote)",
                  file=sys.stderr)
            return 2
    st = package(a.src, a.dest, a.model_rows, a.note)
    print(f"{a.dest}: {st['rows']} model rows, {st['op_rows']} operator rows; {st['repaired_steps']} runs with "
          f"the step count repaired, {st['norms_moved']} cuDNN batch norms moved to their node, {st['no_backward']} "
          f"training runs without backward rows; "
          f"{st['orphan_op_rows_dropped']} operator rows without a model row dropped")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
