"""``costmodel llm``: throughput, memory, energy, carbon and cost of a transformer workload."""

from __future__ import annotations

from .._errors import InvalidInputError
from ._args import (Working, add_carbon_args, add_command, add_max_batch_args, add_slo_arg, check_max_batch_args,
                    fit_line, max_batch_answers, max_batch_details, non_negative_float, plot_fits, positive_int)

LLM_EXAMPLES = """examples:
  costmodel llm llama-2-7b --batch 32 --seq 512 --device h200 --dtype fp16 --mode prefill
  costmodel llm bert-base --batch 64 --seq 128 --device a100-80gb --json
  costmodel llm mistral-7b --batch 8 --seq 2048 --mode decode --region eu-north-1 --price 3.5
  costmodel llm ./my-checkpoint --batch 1 --seq 4096      # a folder holding config.json
  costmodel llm gpt2 --batch 64 --seq 256 --mode decode --predictor llm-xgb   # fast, no graph
  costmodel llm llama-2-7b --batch 4 --seq 2048 --mode training --dtype bf16   # a fine-tuning step, AdamW
  costmodel llm llama-2-7b --batch 8 --seq 2048 --mode training --dtype bf16 --lora-r 16 --checkpointing
  costmodel llm qwen2.5-0.5b --batch 8 --seq 1024 --mode training --dtype fp32 --autocast bf16   # mixed precision
  costmodel llm t5-base --batch 16 --seq 512 --target-seq 128 --mode training --dtype bf16   # summarization
  costmodel llm mamba-130m --batch 8 --seq 2048 --ssm-kernels fused   # a GPU with mamba_ssm installed
  costmodel llm --list
"""

def register_llm(sub) -> None:
    m = add_command(sub, "llm", _cmd_llm, help="throughput, memory, energy, carbon and cost of a transformer workload",
                    description="Predict a transformer workload. By default its graph goes through the timeline "
                                "predictor and its memory through the allocation-trace replay (the first call per "
                                "workload builds the graph: seconds for a 7B model; cached after that); "
                                "--predictor llm-xgb answers in under a second from closed-form features, less "
                                "accurately on models it never saw. MODEL is a registry name (see --list), a folder "
                                "holding a Hugging Face config.json, or a config.json file.",
                    epilog=LLM_EXAMPLES)
    m.add_argument("model", metavar="MODEL", nargs="?", help="registry name or local config folder")
    m.add_argument("--list", action="store_true", help="list the built-in architectures and exit")
    m.add_argument("--batch", type=positive_int, default=None, help="sequences per call (required)")
    m.add_argument("--seq", type=positive_int, default=None,
                   help="tokens per sequence; for --mode decode the KV-cache length (required)")
    m.add_argument("--target-seq", type=positive_int, default=None, metavar="TOKENS",
                   help="an encoder-decoder's (T5's, BART's) decoder tokens when they differ from its --seq "
                        "source tokens: the targets of --mode forward and training, the tokens generated so far "
                        "in --mode decode (default: --seq)")
    m.add_argument("--ssm-kernels", default="reference", choices=("reference", "fused"),
                   help="a Mamba or Mamba-2 family model's scans: transformers' reference PyTorch code (what runs "
                        "without mamba_ssm; default) or the fused kernels a GPU with mamba_ssm runs")
    m.add_argument("--device", default="h200", help="device name (default h200; see `costmodel devices`)")
    m.add_argument("--dtype", default="fp16", choices=("fp32", "fp16", "bf16", "int8", "int4"),
                   help="weights/activations dtype (default fp16)")
    m.add_argument("--mode", default=None, choices=("forward", "prefill", "decode", "training"),
                   help="forward (encoders), prefill or one-token decode (decoders), or training: one fine-tuning "
                        "step of a decoder (causal-LM loss, backward, optimizer); default by model")
    m.add_argument("--optimizer", default="adamw", choices=("adamw", "adam", "sgd", "sgd_momentum"),
                   help="the optimizer of a --mode training step (default adamw)")
    m.add_argument("--lora-r", type=positive_int, default=None, metavar="RANK",
                   help="a --mode training step with LoRA adapters of this rank (peft; base weights frozen)")
    m.add_argument("--checkpointing", action="store_true",
                   help="a --mode training step with activation checkpointing of the decoder layers")
    m.add_argument("--autocast", default=None, choices=("bf16", "fp16"),
                   help="mixed precision of a --mode training step of the fp32 model (with --dtype fp32): fp32 "
                        "weights, gradients and optimizer state, the forward pass under torch.autocast, as a "
                        "Trainer's bf16=True runs it")
    m.add_argument("--lora-targets", default=None, metavar="NAMES",
                   help="comma-separated module names for the adapters (default: peft's for the model type, "
                        "e.g. q_proj,v_proj)")
    add_carbon_args(m, region_default="world", region_help="grid region for carbon (default world)",
                    intensity_help="override the region's carbon intensity (g CO2e per kWh)")
    m.add_argument("--price", type=non_negative_float, default=None, metavar="USD_PER_GPU_HOUR",
                   help="GPU price per hour, per slice-hour for a MIG slice (default: the cheapest listed "
                        "instance of the device, a slice's share of its GPU's)")
    m.add_argument("--provider", default=None, help="cloud provider for the price table (aws, gcp, azure)")
    m.add_argument("--instance", default=None, help="cloud instance type for the price table")
    m.add_argument("--predictor", default="timeline",
                   help="timeline (default), llm-xgb (fast, for sweeps), or the folder of an artifact trained by "
                        "`costmodel train --predictor timeline-llm` or `llm-xgb` with -o")
    m.add_argument("--host", default=None, metavar="FILE",
                   help="host profile from `costmodel calibrate` (used by --predictor timeline)")
    add_max_batch_args(m, "sequences; seconds per trace for a 7B model")
    add_slo_arg(m)
    m.add_argument("--cuda-graphs", action="store_true",
                   help="cost the step replayed from one captured CUDA graph instead of eager dispatch (the timeline; "
                        "a decode step then leaves out the eager decode loop's per-step host cost)")
    m.add_argument("--json", action="store_true", help="print JSON")


def _cmd_llm(a) -> int:
    from ..llm import estimate_llm, is_encoder_decoder, list_llms, resolve_llm

    if a.list:
        for n in list_llms():
            s = resolve_llm(n)
            kind = "decoder" if s.causal else "encoder-decoder" if is_encoder_decoder(s) else "encoder"
            print(f"{n:<28}{s.model_type:<14}{kind}")
        return 0
    if not a.model:
        raise InvalidInputError("name a MODEL (a registry name, see `costmodel llm --list`, or a config folder)")
    missing = [f for f in ("batch", "seq") if getattr(a, f) is None]
    if missing:
        raise InvalidInputError(f"--{' and --'.join(missing)} required (e.g. --batch 8 --seq 512)")
    check_max_batch_args(a)
    if a.max_batch and a.dtype in ("int8", "int4"):  # before the estimate, not after it
        raise InvalidInputError(f"--max-batch searches the allocation trace of an fp32, fp16 or bf16 model; an "
                                f"{a.dtype} model has none (its memory is the llm-xgb predictor's): drop --max-batch "
                                "and try batches, or give --dtype fp16")
    with Working(f"estimating {a.model} (a workload's first estimate builds its graph; cached after)",
                 enabled=None if not a.json else False):
        est = estimate_llm(a.model, batch=a.batch, seq=a.seq, device=a.device, mode=a.mode, dtype=a.dtype,
                           region=a.region, carbon_intensity_g_per_kwh=a.carbon_intensity,
                           price_per_gpu_hour_usd=a.price, provider=a.provider, instance=a.instance,
                           predictor=a.predictor, host=a.host, optimizer=a.optimizer, lora_r=a.lora_r,
                           lora_targets=a.lora_targets, checkpointing=a.checkpointing, autocast=a.autocast,
                           target_seq=a.target_seq, ssm_kernels=a.ssm_kernels, latency_slo_ms=a.latency_slo_ms,
                           cuda_graphs=a.cuda_graphs, pue=a.pue)
    fits = []
    if a.max_batch:
        from ..estimate import largest_llm_batch

        with Working("finding the largest batch that fits (an allocation trace per batch tried)",
                     enabled=None if not a.json else False):
            fits = max_batch_answers(a, lambda **limit: largest_llm_batch(
                a.model, seq=a.seq, device=a.device, mode=est.mode, dtype=a.dtype, optimizer=a.optimizer,
                lora_r=a.lora_r, lora_targets=a.lora_targets, checkpointing=a.checkpointing, autocast=a.autocast,
                target_seq=a.target_seq, ssm_kernels=a.ssm_kernels, latency_slo_ms=a.latency_slo_ms,
                predictor=a.predictor, host=a.host, cuda_graphs=a.cuda_graphs, **limit))
        est.details["max_batch"] = max_batch_details(fits)
    print(est.to_json() if a.json else est.table())
    if not a.json:
        for fit in fits:
            print(fit_line(fit, f"one sequence of {a.seq} tokens", f" sequences of {a.seq} tokens"))
    plot_fits(a, fits, f"{a.model} {est.mode}, {a.seq} tokens", f"sequences of {a.seq} tokens")
    return 0
