#!/usr/bin/env bash
# Extend the measured GPU data in one command, on one NVIDIA GPU (H100/H200).
#
#   bash benchmarks/gpu_collect.sh [OUT]        # OUT defaults to $OUT, else ./gpu_rows
#
# Runs from the repository root without installing the package (PYTHONPATH=.);
# needs torch with CUDA, torchvision, timm, transformers and nvidia-ml-py
# (module pynvml) for energy and device memory.  Measures
# costmodel/data/specs/h200_extend.json (about 90 rows: a 4-row harness check
# that repeats packaged H200 rows, 13 new vision architectures on the packaged
# grid, a few transformer rows) and writes, row by row:
#
#   OUT/vision_extend.jsonl   vision rows
#   OUT/llm_extend.jsonl      transformer rows
#   OUT/hardware.json         the device (CUDA properties, NVML facts, versions)
#   OUT/host.json             this host's profile (`costmodel calibrate`, about 6 s, before the rows;
#                             kept on resume)
#
# The run stops cleanly after BUDGET seconds (default 300) and resumes where
# it stopped when started again with the same OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-gpu_rows}}"
BUDGET="${BUDGET:-300}"
mkdir -p "$OUT_DIR"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"

python - <<'EOF' || true
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
    python -m costmodel calibrate --device cuda --budget 6 -o "$OUT_DIR/host.json" \
        || echo "gpu_collect.sh: calibrate failed; measuring the rows anyway" >&2
fi

python -m costmodel collect costmodel/data/specs/h200_extend.json --device cuda \
    -o "$OUT_DIR/vision_extend.jsonl" --budget "$BUDGET"
