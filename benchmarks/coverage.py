"""Which architectures the default estimate answers for, and whether its answers keep physics' order.

    python benchmarks/coverage.py [--quick] [--jobs N] [--json FILE] [--source transformers|torchvision-tasks]

Accuracy on architectures nobody trained on starts with answering for them at all. This script
asks ``costmodel.estimate`` (default predictor and memory path, an H200) about every torchvision
classification model, a list of timm architectures none of the packaged rows measured (hybrids,
MLP mixers, reparameterised and mobile networks, newer convolution and attention designs), and
``costmodel.estimate_llm`` about small configurations of transformers model types the packaged rows
do not have (mixtures of experts among them), and ``costmodel.estimate`` about every model of
torchvision's other tasks (segmentation, video, detection, optical flow), built on the CPU with random
weights. Nothing here is measured, so nothing is scored
against a label; what is checked is what no label is needed for:

* **answered**: the estimate came back; **refused by the model**: PyTorch itself raises for that
  workload on any device (a training step's batch norm over one value per channel at batch 1, an
  input smaller than the kernels), and the error says how to change it; **failed**: anything else
  (a frontend or predictor gap, listed with its message).
* **memory traced**: the answer's memory came from the allocation trace replayed through the caching
  allocator, not from a fallback (each fallback is listed with its reason).
* **order**: latency and memory grow with the batch (batch 32 against batch 1), a training step
  costs more than an inference call of the same batch, a decode step reads its cache.

Prints one table per source (models, workloads, answered / refused / failed, order violations,
median and largest seconds per estimate, all of it: graph, timeline and the memory trace) and every
failure. ``--quick`` takes a handful of each source.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

#: timm architectures of designs the packaged rows do not measure (they hold torchvision families,
#: PoolFormer, DeiT, MLP-Mixer and Visformer)
TIMM = [
    "convnext_tiny", "convnextv2_nano", "coatnet_0_rw_224", "maxvit_tiny_tf_224", "efficientformer_l1",
    "efficientformerv2_s0", "edgenext_small", "fastvit_t8", "mobilevit_s", "mobilevitv2_100", "repvgg_a2",
    "rexnet_100", "hrnet_w18_small", "dla34", "dpn68", "cspdarknet53", "cspresnet50", "darknet53", "nfnet_l0",
    "nf_resnet50", "res2net50_26w_4s", "resnest50d", "skresnet18", "selecsls42b", "tresnet_m", "xception41",
    "inception_v4", "inception_resnet_v2", "levit_128", "pit_ti_224", "tnt_s_patch16_224", "crossvit_9_240",
    "cait_xxs24_224", "xcit_tiny_12_p16_224", "twins_svt_small", "pvt_v2_b0", "mvitv2_tiny", "gcvit_xxtiny",
    "davit_tiny", "focalnet_tiny_srf", "hgnet_tiny", "hgnetv2_b0", "ghostnetv2_100", "lcnet_050", "tinynet_a",
    "mixnet_s", "fbnetc_100", "ese_vovnet19b_dw", "gernet_s", "regnetz_b16", "eva02_tiny_patch14_224",
    "beit_base_patch16_224", "deit3_small_patch16_224", "convmixer_768_32", "sequencer2d_s", "gmlp_s16_224",
    "resmlp_12_224", "vit_small_patch16_224", "inception_next_tiny", "efficientvit_b0", "efficientvit_m0",
    "repvit_m1", "tiny_vit_5m_224", "nest_tiny", "swinv2_cr_tiny_ns_224", "rdnet_tiny", "starnet_s1",
    "mambaout_femto",
    # one of each further timm module whose design the list above does not hold
    "botnet50ts_256", "caformer_s18", "coat_lite_tiny", "convit_tiny", "cpubone_nano", "csatv2", "cspnext_tiny",
    "deepseek_vit_412m", "efficientvim_m1", "fasternet_s", "gemma4_vit_167m", "hardcorenas_a", "hiera_tiny_224",
    "iformer_s", "lcnetv2_small", "legacy_senet154", "legacy_xception", "lowformer_b0", "mobilenetv5_300m",
    "naflexvit_base_patch16_siglip", "nasnetalarge", "nextvit_small", "pnasnet5large", "qwen3_vit_88m",
    "regnety_040_sgn", "repghostnet_050", "resnetv2_18", "sam2_hiera_tiny", "samvit_base_patch16", "shvit_s1",
    "swiftformer_xs", "swin_s3_tiny_224", "swinv2_tiny_window8_256", "vit_relpos_small_patch16_224",
    "vit_tiny_r_s16_p8_224", "vitamin_small_224", "volo_d1_224",
]  # fmt: skip

_SMALL = {"hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 4, "num_attention_heads": 8,
          "num_key_value_heads": 4, "vocab_size": 32000}
#: transformers model types the packaged rows do not have, small (4 layers, width 512)
LLM_CONFIGS = {
    "mistral": dict(_SMALL), "mixtral": dict(_SMALL, num_local_experts=8, num_experts_per_tok=2),
    "qwen2_moe": dict(_SMALL, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=688,
                      shared_expert_intermediate_size=1376),
    "qwen3_moe": dict(_SMALL, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=688, head_dim=64),
    "olmoe": dict(_SMALL, num_experts=8, num_experts_per_tok=2), "phi3": dict(_SMALL, vocab_size=32064),
    "gemma2": dict(_SMALL, head_dim=64), "qwen3": dict(_SMALL, head_dim=64), "olmo": dict(_SMALL),
    "starcoder2": dict(_SMALL), "stablelm": dict(_SMALL), "granite": dict(_SMALL), "cohere": dict(_SMALL),
    "falcon": {"hidden_size": 512, "num_hidden_layers": 4, "num_attention_heads": 8, "vocab_size": 32000},
    "opt": {"hidden_size": 512, "ffn_dim": 2048, "num_hidden_layers": 4, "num_attention_heads": 8,
            "vocab_size": 32000, "word_embed_proj_dim": 512},
    "gpt_neox": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 4, "num_attention_heads": 8,
                 "vocab_size": 32000},
    "bloom": {"hidden_size": 512, "n_layer": 4, "n_head": 8, "vocab_size": 32000},
    "gptj": {"n_embd": 512, "n_layer": 4, "n_head": 8, "vocab_size": 32000, "rotary_dim": 32},
    "mpt": {"d_model": 512, "n_layers": 4, "n_heads": 8, "vocab_size": 32000},
    "electra": {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4},
    "albert": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 4, "num_attention_heads": 8},
    # per-layer lists, as a config.json holds them (one entry per layer)
    "gemma3_text": dict(_SMALL, head_dim=64, layer_types=["sliding_attention"] * 3 + ["full_attention"]),
    "modernbert": {"hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 8,
                   "vocab_size": 32000, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "cls_token_id": 1,
                   "sep_token_id": 2, "layer_types": ["full_attention", "sliding_attention", "sliding_attention",
                                                      "full_attention"]},
    "gpt_oss": dict(_SMALL, head_dim=64, intermediate_size=512, num_local_experts=8, num_experts_per_tok=2,
                    layer_types=["sliding_attention", "full_attention"] * 2),
    # multi-head latent attention with routed and shared experts
    "deepseek_v3": dict(_SMALL, num_key_value_heads=8, q_lora_rank=256, kv_lora_rank=128, qk_rope_head_dim=32,
                        qk_nope_head_dim=64, v_head_dim=64, n_routed_experts=8, num_experts_per_tok=2,
                        moe_intermediate_size=256, n_shared_experts=1, first_k_dense_replace=1, n_group=1,
                        topk_group=1),
    # hybrids: convolution, linear-attention or state-space layers beside attention (their cache holds states)
    "lfm2": dict(_SMALL, layer_types=["conv", "conv", "full_attention", "conv"]),
    "qwen3_next": dict(_SMALL, head_dim=64, layer_types=["linear_attention"] * 3 + ["full_attention"],
                       num_experts=8, num_experts_per_tok=2, moe_intermediate_size=344,
                       shared_expert_intermediate_size=344, linear_num_value_heads=8, linear_num_key_heads=4,
                       linear_key_head_dim=64, linear_value_head_dim=64),
    "jamba": dict(_SMALL, attn_layer_period=4, attn_layer_offset=2, expert_layer_period=2, expert_layer_offset=1,
                  num_experts=4, num_experts_per_tok=2, mamba_d_state=16, mamba_expand=2),
    # attention-free state-space models
    "mamba": {"hidden_size": 512, "num_hidden_layers": 4, "state_size": 16, "vocab_size": 32000},
    "mamba2": {"hidden_size": 512, "num_hidden_layers": 4, "num_heads": 16, "head_dim": 64, "n_groups": 1,
               "state_size": 64, "expand": 2, "vocab_size": 32000},
    # multimodal configs, as their config.json holds them: the text decoder is costed
    "gemma3": {"text_config": dict(_SMALL, model_type="gemma3_text", head_dim=64,
                                   layer_types=["sliding_attention"] * 3 + ["full_attention"])},
    "llava": {"text_config": dict(_SMALL, model_type="llama")},
    "qwen2_5_vl": {"text_config": dict(_SMALL, model_type="qwen2_5_vl_text")},
    # encoder-decoders: forward runs both stacks over the tokens, a training step their seq2seq loss
    "t5": {"d_model": 512, "d_ff": 2048, "num_layers": 4, "num_decoder_layers": 4, "num_heads": 8, "d_kv": 64,
           "vocab_size": 32000},
    "bart": {"d_model": 512, "encoder_layers": 4, "decoder_layers": 4, "encoder_attention_heads": 8,
             "decoder_attention_heads": 8, "encoder_ffn_dim": 2048, "decoder_ffn_dim": 2048, "vocab_size": 32000},
}  # fmt: skip

VISION_WORK = [("inference", "fp32", 1), ("inference", "fp32", 32), ("inference", "fp16", 32), ("training", "fp32", 32)]
LLM_WORK = [("forward", 1, 256), ("forward", 4, 256), ("decode", 4, 256), ("training", 4, 256)]
#: messages of errors PyTorch raises for the workload on any device (the model refuses it), and of
#: workloads that do not exist for the architecture (a decode step or a causal-LM step of an encoder)
REFUSED = ("use a larger batch", "pass a larger input_shape", "is an encoder", "built as an encoder")


def _memory_path(e) -> dict:
    """Which path gave the estimate's memory (``replay``: the allocation trace) and, if another, why."""
    mem = e.details.get("memory") or {}
    out = {"memory_path": mem.get("path", "predictor")}
    if out["memory_path"] != "replay":
        out["memory_reason"] = str(mem.get("reason") or "; ".join(mem.get("notes") or ()))[:200]
    return out


def _vision(name: str) -> list[dict]:
    import costmodel

    out = []
    for mode, dtype, batch in VISION_WORK:
        t0 = time.perf_counter()
        row = {"model": name, "mode": mode, "dtype": dtype, "batch": batch}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                e = costmodel.estimate(name, batch=batch, device="h200", mode=mode, dtype=dtype)
            row.update(ok=True, latency_ms=e.latency_ms, memory_mb=e.memory_mb, energy_j=e.energy_j, **_memory_path(e))
        except Exception as ex:  # noqa: BLE001 - every failure is reported
            row.update(ok=False, error=f"{type(ex).__name__}: {str(ex)[:300]}")
        row["s"] = time.perf_counter() - t0
        out.append(row)
    return out


#: torchvision's other tasks by zoo name (segmentation at 520 x 520, video on a 16-frame clip, a detector at its
#: own resize size, built on the CPU because its box filtering needs one run on data) and the workloads asked;
#: optical flow takes two frames, so its models are built here and given them
TASKS = {
    "segmentation": [("inference", "fp32", 1), ("inference", "fp32", 8), ("inference", "fp16", 8),
                     ("training", "fp32", 8)],
    "video": [("inference", "fp32", 1), ("inference", "fp32", 8), ("inference", "fp16", 8), ("training", "fp32", 8)],
    # a detector's training step needs its targets (boxes and labels); inference only
    "detection": [("inference", "fp32", 1), ("inference", "fp32", 4)],
    "optical_flow": [("inference", "fp32", 1), ("inference", "fp32", 8)],
}
FLOW_SHAPE = (3, 368, 496)


def _task(job: str) -> list[dict]:
    import torch
    import torchvision

    import costmodel

    task, name = job.split(":")
    model = f"torchvision:{name}"
    if task == "optical_flow":
        model = torchvision.models.get_model(name, weights=None).eval()
    out = []
    for mode, dtype, batch in TASKS[task]:
        t0 = time.perf_counter()
        row = {"model": f"torchvision:{name}", "mode": mode, "dtype": dtype, "batch": batch}
        try:
            kw = ({"inputs": tuple(torch.empty(batch, *FLOW_SHAPE, device="meta") for _ in range(2))}
                  if task == "optical_flow" else {})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                e = costmodel.estimate(model, batch=batch, device="h200", mode=mode, dtype=dtype, **kw)
            waits = [re.search(r"waits for the device (\d+) time", a) for a in e.assumptions]
            row.update(ok=True, latency_ms=e.latency_ms, memory_mb=e.memory_mb, energy_j=e.energy_j, **_memory_path(e),
                       waits=sum(int(w.group(1)) for w in waits if w))
        except Exception as ex:  # noqa: BLE001 - every failure is reported
            row.update(ok=False, error=f"{type(ex).__name__}: {str(ex)[:300]}")
        row["s"] = time.perf_counter() - t0
        out.append(row)
    return out


#: the suffix of a transformers job whose Mamba scans are costed as mamba_ssm's fused kernels
FUSED = "+fused-scan"


def _llm(job: str) -> list[dict]:
    import costmodel

    model_type = job.removesuffix(FUSED)
    kernels = {"ssm_kernels": "fused"} if job.endswith(FUSED) else {}
    out = []
    for mode, batch, seq in LLM_WORK:
        t0 = time.perf_counter()
        row = {"model": f"hf:{job}", "mode": mode, "dtype": "bf16" if mode == "training" else "fp16",
               "batch": batch}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                e = costmodel.estimate_llm(dict(LLM_CONFIGS[model_type], model_type=model_type), batch=batch,
                                           seq=seq, device="h200", dtype="bf16" if mode == "training" else "fp16",
                                           mode=mode, **kernels)
            row.update(ok=True, latency_ms=e.latency_ms, memory_mb=e.memory_mb, energy_j=e.energy_j, **_memory_path(e))
        except Exception as ex:  # noqa: BLE001
            row.update(ok=False, error=f"{type(ex).__name__}: {str(ex)[:300]}")
        row["s"] = time.perf_counter() - t0
        out.append(row)
    return out


def _run(job: tuple[str, str]) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    src, name = job
    rows = _llm(name) if src == "transformers" else _task(name) if src == "torchvision-tasks" else _vision(name)
    for r in rows:
        r["source"] = src
    return rows


def order_violations(rows: list[dict]) -> list[str]:
    """Workload pairs of one model whose estimates break an order physics fixes."""
    by = {(r["model"], r["mode"], r["dtype"], r["batch"]): r for r in rows if r["ok"]}
    bad = []
    for (model, mode, dtype, batch), r in by.items():
        if mode == "inference" and batch == 1:
            big = max((v for k, v in by.items() if k[:3] == (model, mode, dtype) and k[3] > 1),
                      key=lambda v: v["batch"], default=None)
            if big and big["latency_ms"] < r["latency_ms"]:
                bad.append(f"{model}: batch {big['batch']} faster than batch 1 ({big['latency_ms']:.3g} < "
                           f"{r['latency_ms']:.3g} ms)")
            if big and big["memory_mb"] < r["memory_mb"]:
                bad.append(f"{model}: batch {big['batch']} holds less memory than batch 1")
        if mode == "training":
            inf = by.get((model, "inference", dtype, batch))
            if inf and r["latency_ms"] <= inf["latency_ms"]:
                bad.append(f"{model}: training step at batch {batch} no slower than inference")
            if inf and r["memory_mb"] <= inf["memory_mb"]:
                bad.append(f"{model}: training step at batch {batch} holds no more memory than inference")
        if mode == "forward" and batch == 1:
            big = by.get((model, "forward", dtype, 4))
            if big and big["latency_ms"] < r["latency_ms"]:
                bad.append(f"{model}: batch 4 faster than batch 1")
        if mode == "training" and model.startswith("hf:"):  # a fine-tuning step against the forward call
            fwd = by.get((model, "forward", "fp16", batch))
            if fwd and r["latency_ms"] <= fwd["latency_ms"]:
                bad.append(f"{model}: fine-tuning step at batch {batch} no slower than its forward call")
            if fwd and r["memory_mb"] <= fwd["memory_mb"]:
                bad.append(f"{model}: fine-tuning step at batch {batch} holds no more memory than its forward call")
    return bad


def _table(rows: list[dict]) -> str:
    lines = ["| source | models | workloads | answered | memory traced | refused by the model | failed "
             "| order violations | s per estimate, median / max |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for src in dict.fromkeys(r["source"] for r in rows):
        rs = [r for r in rows if r["source"] == src]
        refused = [r for r in rs if not r["ok"] and any(m in r["error"] for m in REFUSED)]
        failed = [r for r in rs if not r["ok"] and r not in refused]
        secs = [r["s"] for r in rs if r["ok"]]
        speed = f"{statistics.median(secs):.2f} / {max(secs):.1f}" if secs else "-"
        traced = sum(r.get("memory_path") == "replay" for r in rs if r["ok"])
        lines.append(f"| {src} | {len({r['model'] for r in rs})} | {len(rs)} | {sum(r['ok'] for r in rs)} "
                     f"| {traced} | {len(refused)} | {len(failed)} | {len(order_violations(rs))} | {speed} |")
    return "\n".join(lines)



def run_jobs(fn, jobs: list, workers: int) -> list[dict]:
    """``fn(job)`` (a list of rows) for every job in ``workers`` processes, in order, with a progress bar."""
    from tqdm.auto import tqdm

    rows: list[dict] = []
    with ProcessPoolExecutor(workers) as pool:
        for got in tqdm(pool.map(fn, jobs), total=len(jobs), desc="models", unit="model"):
            rows.extend(got)
    return rows

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a handful of models of each source")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (one thread each)")
    ap.add_argument("--json", help="write every row here")
    ap.add_argument("--source", choices=("all", "torchvision", "timm", "transformers", "torchvision-tasks"),
                    default="all",
                    help="ask about one source only")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error(f"--jobs must be at least 1, got {args.jobs}")
    import torchvision

    tv = [f"torchvision:{n}" for n in torchvision.models.list_models(module=torchvision.models)]
    timm = [f"timm:{n}" for n in TIMM]
    from costmodel.frontends.hf import MAMBA1_TYPES, MAMBA2_TYPES

    # the Mamba families once more, their scans as the fused kernels a GPU with mamba_ssm runs
    llm = list(LLM_CONFIGS) + [t + FUSED for t in LLM_CONFIGS if t in MAMBA1_TYPES + MAMBA2_TYPES]
    tasks = [f"{t}:{n}" for t in TASKS for n in torchvision.models.list_models(
        module=getattr(torchvision.models, t))]
    if args.quick:
        tv, timm, llm = tv[:4], timm[:4], ["mixtral", "mpt", "electra"]
        tasks = ["segmentation:lraspp_mobilenet_v3_large", "video:r3d_18",
                 "detection:ssdlite320_mobilenet_v3_large"]
    jobs = ([("torchvision", n) for n in tv] + [("timm", n) for n in timm] + [("transformers", n) for n in llm]
            + [("torchvision-tasks", n) for n in tasks])
    jobs = [j for j in jobs if args.source in ("all", j[0])]
    t0 = time.time()
    rows = run_jobs(_run, jobs, args.jobs)
    print(f"{len(jobs)} models, {len(rows)} estimates in {time.time() - t0:.0f} s ({args.jobs} worker(s))\n")
    print(_table(rows))
    failed = [r for r in rows if not r["ok"]]
    if failed:
        print("\nNot answered:")
        for r in failed:
            print(f"- {r['model']} {r['mode']} {r['dtype']} batch {r['batch']}: {r['error']}")
    untraced = [r for r in rows if r["ok"] and r.get("memory_path") != "replay"]
    if untraced:
        print("\nMemory not from the allocation trace:")
        for r in untraced:
            print(f"- {r['model']} {r['mode']} {r['dtype']} batch {r['batch']}: {r['memory_path']}: "
                  f"{r.get('memory_reason', '')}")
    waits = {r["model"]: r["waits"] for r in rows if r["ok"] and r.get("waits")}
    if waits:
        print("\nModels whose host waits for the device inside a call (nonzero, NMS; one run's count):")
        for m, n in waits.items():
            print(f"- {m}: {n} wait(s) at batch {max(r['batch'] for r in rows if r['model'] == m and r['ok'])}")
    bad = order_violations(rows)
    if bad:
        print("\nOrder violations:")
        for b in bad:
            print(f"- {b}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
