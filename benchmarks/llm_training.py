"""Fine-tuning steps of decoders, as ``costmodel llm --mode training`` costs them: a table and a chart.

    python benchmarks/llm_training.py [--models llama-2-7b,qwen2-0.5b] [--seq 2048] [--batches 1,4,8]
                                      [--device h200] [--plot docs/img] [--json FILE]

No measured row is a training step of a transformer, so this prints predictions, not errors: per model,
recipe (full fine-tuning, LoRA rank 16 on peft's default targets, LoRA with activation checkpointing,
all with bf16 weights; and full fine-tuning of the fp32 model under bf16 autocast, a Trainer's
``bf16=True``; AdamW) and batch: the step's latency and tokens/s (the timeline), its memory (the
step's allocation trace through the caching allocator: NVML level, allocated and reserved), the
smallest MIG slice that holds it and which whole GPUs do, and the seconds the estimate took. What the
memory rests on is checked against the CPU allocator by ``benchmarks/memory.py --cpu-check`` (the
fine-tune rows: the same operator results to the byte) and ``tests/analysis/test_allocheck.py``.

``--plot DIR`` draws ``llm_training_memory.png``: memory over batch per recipe, with the GPUs'
memory as lines.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RECIPES = (("full", {}), ("LoRA r16", {"lora_r": 16}), ("LoRA r16 + ckpt", {"lora_r": 16, "checkpointing": True}),
           ("full bf16 AMP", {"dtype": "fp32", "autocast": "bf16"}))
GPUS = ("a100-40gb", "h100", "h200")


def _fits(memory_mb: float) -> str:
    from costmodel.devices import get_device

    return ", ".join(get_device(g).name.split("-")[0] + f" {get_device(g).memory_gb:.0f}G"
                     for g in GPUS if get_device(g).memory_mb >= memory_mb) or "none"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="llama-2-7b,qwen2-0.5b")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--device", default="h200")
    ap.add_argument("--recipes", default=",".join(r for r, _ in RECIPES),
                    help="comma-separated recipes to run (default all: " + ", ".join(r for r, _ in RECIPES) + ")")
    ap.add_argument("--plot", default=None, metavar="DIR")
    ap.add_argument("--json", default=None, metavar="FILE")
    a = ap.parse_args()
    import costmodel

    batches = [int(b) for b in a.batches.split(",")]
    known = dict(RECIPES)
    wanted = [r.strip() for r in a.recipes.split(",") if r.strip()]
    bad = [r for r in wanted if r not in known]
    if bad:
        raise SystemExit(f"unknown recipe(s) {bad}; valid: {', '.join(known)}")
    rows = []
    print(f"fine-tuning steps on {a.device}, bf16 weights (or fp32 under bf16 autocast), AdamW, seq {a.seq} "
          "(predictions: no measured row is a transformer training step)")
    print(f"{'model':<14}{'recipe':<17}{'batch':>6}{'latency ms':>12}{'tokens/s':>11}{'memory MB':>11}"
          f"{'allocated':>11}{'trainable':>12}{'MIG slice':>11}  {'whole GPUs that hold it':<28}{'s':>6}")
    for model in a.models.split(","):
        for recipe in wanted:
            kw = {"dtype": "bf16", **known[recipe]}
            for b in batches:
                t0 = time.perf_counter()
                e = costmodel.estimate_llm(model, batch=b, seq=a.seq, device=a.device, mode="training", **kw)
                dt = time.perf_counter() - t0
                trainable = e.details.get("lora", {}).get("trainable_params") or e.params
                row = {"model": model, "recipe": recipe, "batch": b, "seq": a.seq, "latency_ms": e.latency_ms,
                       "tokens_s": e.tokens_s, "memory_mb": e.memory_mb, "allocated_mb": e.allocated_mb,
                       "trainable_params": trainable, "mig_profile": e.mig_profile, "seconds": dt}
                rows.append(row)
                print(f"{model:<14}{recipe:<17}{b:>6}{e.latency_ms:>12.1f}{e.tokens_s:>11.0f}{e.memory_mb:>11.0f}"
                      f"{e.allocated_mb:>11.0f}{trainable / 1e6:>11.1f}M{str(e.mig_profile):>11}  "
                      f"{_fits(e.memory_mb):<28}{dt:>6.1f}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    if a.plot:
        _chart(rows, Path(a.plot) / "llm_training_memory.png", a.seq)


def _chart(rows, out: Path, seq: int) -> None:
    from costmodel.devices import get_device
    from costmodel.measure.charts import pyplot

    plt = pyplot("the fine-tuning chart")
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models):
        for recipe in dict.fromkeys(r["recipe"] for r in rows):
            sub = [r for r in rows if r["model"] == model and r["recipe"] == recipe]
            ax.plot([r["batch"] for r in sub], [r["memory_mb"] / 1024 for r in sub], marker="o", label=recipe)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["batch"] for r in rows}), [str(b) for b in sorted({r["batch"] for r in rows})])
        for g, style in zip(GPUS, (":", "--", "-.")):
            d = get_device(g)
            ax.axhline(d.memory_mb / 1024, color="grey", linestyle=style, linewidth=1)
            ax.text(ax.get_xlim()[1], d.memory_mb / 1024, f"{d.name} ", va="bottom", ha="right", fontsize=7,
                    color="grey")
        ax.set_xlabel(f"batch (sequences of {seq} tokens)")
        ax.set_ylabel("predicted memory (GiB, NVML level)")
        ax.set_title(f"{model}, AdamW")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"   chart: {out}")


if __name__ == "__main__":
    main()
