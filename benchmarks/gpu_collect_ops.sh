#!/usr/bin/env bash
# Per-operator profiles on one NVIDIA GPU (H100/H200) in one command, within 8 minutes.
#
#   bash benchmarks/gpu_collect_ops.sh [--out DIR] [--device DEV] [--budget S] [--limit N]
#                                      [--specs FILE] [--threads N]
#
#   --out DIR      where rows go (default $OUT, else ./gpu_ops_rows)
#   --device DEV   cuda (default), cuda:N, or cpu (a quick check of the script without a GPU)
#   --budget S     stop cleanly between rows after S seconds (default $BUDGET, else 390: the
#                  budget starts after imports, the model check and the roofline measurement,
#                  and the last row may run past it, so 390 s keeps the run within 8 minutes)
#   --limit N      measure at most N rows (passed to costmodel collect)
#   --specs FILE   work file (default costmodel/data/specs/h200_extend.json, the GPU extension
#                  of the packaged H200 data that benchmarks/gpu_collect.sh measures)
#   --threads N    torch CPU threads (with --device cpu only)
#
# Runs `costmodel collect SPECS --ops` from the repository root without installing the
# package (PYTHONPATH=.; the interpreter is $PYTHON, else python).  Every workload's step
# is timed with the data protocol, then profiled under torch.profiler and its operators
# mapped onto the nodes of the CostGraph (costmodel/measure/opprofile.py).  Rows are written one
# by one:
#
#   OUT/vision_extend.jsonl   vision rows, each with an "ops" summary (mapped nodes, unmapped time)
#   OUT/llm_extend.jsonl      transformer rows (decode rows are not profiled per operator)
#   OUT/ops.jsonl             one row per profiled operator, joined to its model row by "key"
#   OUT/hardware.json         the device, with a "roofline" entry (measured GEMM rate, copy bandwidth)
#   OUT/host.json             this host's profile (`costmodel calibrate`, about 6 s, before the rows;
#                             kept on resume): what the host lane of the rows' machine costs per operator
#
# Rows go to the same files as with benchmarks/gpu_collect.sh, so use a separate OUT for the
# two scripts.  A run resumes where it stopped when started again with the same OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT_DIR="${OUT:-gpu_ops_rows}"
DEVICE=cuda
BUDGET="${BUDGET:-390}"
SPECS=costmodel/data/specs/h200_extend.json
LIMIT=()
THREADS=()
PY="${PYTHON:-python}"

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
need() { [[ $# -ge 2 && -n "$2" ]] || { echo "gpu_collect_ops.sh: $1 needs a value" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) need "$@"; OUT_DIR="$2"; shift 2 ;;
        --device) need "$@"; DEVICE="$2"; shift 2 ;;
        --budget) need "$@"; BUDGET="$2"; shift 2 ;;
        --limit) need "$@"; LIMIT=(--limit "$2"); shift 2 ;;
        --specs) need "$@"; SPECS="$2"; shift 2 ;;
        --threads) need "$@"; THREADS=(--threads "$2"); shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_collect_ops.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

mkdir -p "$OUT_DIR"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"

"$PY" - <<'EOF' || true
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu",
      torch.cuda.get_device_name() if torch.cuda.is_available() else None)
for m in ("torchvision", "timm", "transformers", "pynvml"):
    try:
        print(m, getattr(importlib.import_module(m), "__version__", "ok"))
    except Exception as e:
        print(m, "missing:", e)
EOF

if [[ ! -s "$OUT_DIR/host.json" ]]; then  # the host that measures the rows, calibrated before them
    "$PY" -m costmodel calibrate --device "${DEVICE%%:*}" --budget 6 -o "$OUT_DIR/host.json" \
        || echo "gpu_collect_ops.sh: calibrate failed; measuring the rows anyway" >&2
fi

"$PY" -m costmodel collect "$SPECS" --device "$DEVICE" --ops --budget "$BUDGET" \
    ${LIMIT[@]+"${LIMIT[@]}"} ${THREADS[@]+"${THREADS[@]}"} -o "$OUT_DIR/vision_extend.jsonl"

"$PY" - "$OUT_DIR" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])


def rows(name):
    p = out / name
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.exists() else []


models = rows("vision_extend.jsonl") + rows("llm_extend.jsonl")
ops = rows("ops.jsonl")
print("rows went to: " + ", ".join(
    f"{out / n} ({len(rows(n))})" for n in ("vision_extend.jsonl", "llm_extend.jsonl", "ops.jsonl") if (out / n).exists())
    + (f"; device and roofline: {out / 'hardware.json'}" if (out / "hardware.json").exists() else "")
    + (f"; host profile: {out / 'host.json'}" if (out / "host.json").exists() else ""))
summ = [r["ops"] for r in models if isinstance(r.get("ops"), dict) and "work_nodes" in r["ops"]]
work = sum(s["work_nodes"] for s in summ)
work_mapped = sum(s["work_nodes_mapped"] for s in summ)
t_all = sum(o.get("device_us") or 0.0 for o in ops)
t_mapped = sum(o.get("device_us") or 0.0 for o in ops if o.get("mapped"))
pct = lambda a, b: f"{100 * a / b:.1f}%" if b else "n/a"  # noqa: E731
print(f"summary: {len(models)} rows ({len(summ)} profiled), {len(ops)} op rows "
      f"({sum(1 for o in ops if not o.get('mapped'))} unmapped), mapped share: "
      f"{pct(work_mapped, work)} of work nodes, {pct(t_mapped, t_all)} of operator device time")
EOF
