"""Step time and memory of the gnn-llm predictor with real-size LMs on one GPU.

    PYTHONPATH=. python benchmarks/gnn_llm_gpu.py [--lms gpt2-small,llama-1b] [--batch 16] [--steps 20]
    PYTHONPATH=. python benchmarks/gnn_llm_gpu.py --cpu-smoke      # tiny LM, 2 steps, on the CPU

Builds each causal LM from its config with RANDOM weights (no download):

* ``gpt2-small``: GPT-2 12 layers x 768, vocabulary 50257, fp32;
* ``llama-1b``: a Llama-style 16 x 2048 model (intermediate 5504, 16 heads,
  vocabulary 32000, about 0.95 B parameters) in bf16;

wraps it with LoRA (r = 8, peft's default target modules) and the gnn-llm
graph token (GIN -> projection -> one input embedding), and times, after
warm-up, stage-2 steps (next-token loss on graph summaries; GIN frozen) and
stage-3 steps (regression head on the last hidden state plus the static
features; GIN, projection, LoRA and head trained) at the given batch.
Inputs are real CostGraphs of a few torchvision models, featurized on the
CPU and repeated to fill the batch; the regression targets are synthetic.
Prints ms per step, peak CUDA memory (``torch.cuda.max_memory_allocated``)
and trainable / total parameters.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

MODELS = (("resnet18", 1), ("mobilenet_v2", 8), ("squeezenet1_1", 4), ("efficientnet_b0", 2))


def _items(pred, names, device_name: str):
    from costmodel.frontends import zoo_graph

    graphs = [zoo_graph(n, batch=b, method="trace") for n, b in names]
    return graphs, [pred.features(g, device_name, "inference") for g in graphs]


def _base_lm(kind: str, vocab_min: int):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "tiny":
        return GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=vocab_min, n_positions=512)), \
            torch.float32
    if kind == "gpt2-small":
        return GPT2LMHeadModel(GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=max(50257, vocab_min))), \
            torch.float32
    if kind == "llama-1b":
        cfg = LlamaConfig(hidden_size=2048, intermediate_size=5504, num_hidden_layers=16, num_attention_heads=16,
                          vocab_size=max(32000, vocab_min), max_position_embeddings=2048)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            return LlamaForCausalLM(cfg).to(torch.bfloat16), torch.bfloat16
    raise SystemExit(f"unknown LM {kind!r}; use gpt2-small, llama-1b")


def run_one(kind: str, graphs, items, *, device: str, batch: int, steps: int, warmup: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from types import SimpleNamespace

    from costmodel.predictors import FeatureNorm as _Norm, safe_std as _safe_std
    from costmodel.predictors import (
        SUMMARY_PROMPT,
        GNNLLMConfig,
        GNNLLMNet,
        GNNLLMPredictor,
        GraphMAE,
        GraphMAEConfig,
        PromptTokenizer,
        graph_summary,
        tiny_tokenizer,
    )

    tok = PromptTokenizer(tiny_tokenizer(), hf=False)
    base, dtype = _base_lm(kind, len(tok))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
                                             fan_in_fan_out=kind != "llama-1b"))
    cfg = GNNLLMConfig(gnn_hidden=128, gnn_layers=3, lora_r=8, targets=("latency_ms",))
    p = GNNLLMPredictor(cfg)
    enc = GraphMAE(GraphMAEConfig(hidden=cfg.gnn_hidden, layers=cfg.gnn_layers, epochs=0))
    enc.fit(SimpleNamespace(x=[f.x for f, _ in items], edge_index=[f.edge_index for f, _ in items]), progress=False)
    p.encoder, p.tok = enc, tok
    p.net = GNNLLMNet(cfg, enc.encoder, 1, lm=lm, tok=tok, static_dim=len(p.static_names))
    S = np.stack([f.static for f, _ in items]).astype(np.float64)
    p.norm = _Norm(static_mean=S.mean(0).tolist(), static_std=_safe_std(S), y_mean=[0.0], y_std=[1.0])
    p.net.to(device)  # the LM's own dtype is kept (bf16 for llama-1b); GIN, projection, head in fp32
    rep = [i % len(items) for i in range(batch)]
    bitems = [items[i] for i in rep]
    gb, static, prompts = p.model_inputs(bitems)
    gb, static = gb.to(device), static.to(device)
    summary_prompt = tok.encode(SUMMARY_PROMPT)
    answers = [tok.encode(graph_summary(graphs[i])) + [tok.eos_id] for i in rep]
    y = torch.randn(batch, 1, device=device)
    loss_fn = torch.nn.HuberLoss()
    total = sum(q.numel() for q in p.net.parameters())
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    out = {"lm": kind, "dtype": str(dtype).replace("torch.", ""), "total": total,
           "seq_stage2": 3 + len(summary_prompt) + max(map(len, answers)), "seq_stage3": 3 + max(map(len, prompts))}

    def timed(name, step, trainable):
        opt = torch.optim.AdamW([q for q in trainable if q.requires_grad], lr=1e-4)
        out[f"trainable_{name}"] = sum(q.numel() for q in trainable if q.requires_grad)
        for _ in range(warmup):
            step(opt)
        sync()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(steps):
            step(opt)
        sync()
        out[f"ms_{name}"] = 1e3 * (time.perf_counter() - t0) / steps
        out[f"mem_{name}"] = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")

    # stage 2: projection + LoRA, GIN frozen, next-token loss on the summaries
    def s2(opt):
        opt.zero_grad(set_to_none=True)
        o, _ = p.net.lm_forward(gb, [summary_prompt] * batch, answers)
        o.loss.backward()
        opt.step()

    p.net.train()
    for q in p.net.gin.parameters():
        q.requires_grad_(False)
    p.net.gin.eval()
    timed("stage2", s2, list(p.net.proj.parameters()) + [q for n, q in p.net.lm.named_parameters() if "lora_" in n])

    # stage 3: GIN + projection + LoRA + head, Huber loss on the regression output
    def s3(opt):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(p.net(gb, prompts=prompts, static=static), y)
        loss.backward()
        opt.step()

    for q in p.net.gin.parameters():
        q.requires_grad_(True)
    p.net.train()
    timed("stage3", s3, [q for q in p.net.parameters() if q.requires_grad])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lms", default="gpt2-small,llama-1b")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny LM, 2 steps, on the CPU (checks the script)")
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if a.cpu_smoke:
        device, lms, a.steps, a.warmup, a.batch = "cpu", ["tiny"], 2, 1, 4
    else:
        if not torch.cuda.is_available():
            print("error: no CUDA device visible (torch.cuda.is_available() is False). This benchmark needs one "
                  "NVIDIA GPU; use --cpu-smoke to check the script on a CPU.", file=sys.stderr)
            return 2
        device, lms = "cuda", [s for s in a.lms.split(",") if s]
    t_start = time.perf_counter()
    from costmodel.predictors import GNNLLMPredictor

    feat = GNNLLMPredictor()
    graphs, items = _items(feat, MODELS[:2] if a.cpu_smoke else MODELS, "h100")
    print(f"featurized {len(graphs)} graphs on the CPU ({', '.join(f'{n} b{b}' for n, b in MODELS[:len(graphs)])}) "
          f"in {time.perf_counter() - t_start:.1f} s; device {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}"
          f", torch {torch.__version__}", flush=True)
    results = []
    for kind in lms:
        t0 = time.perf_counter()
        r = run_one(kind, graphs, items, device=device, batch=a.batch, steps=a.steps, warmup=a.warmup)
        r["seconds"] = time.perf_counter() - t0
        results.append(r)
        print(f"  {kind}: done in {r['seconds']:.0f} s", flush=True)
        if device == "cuda":
            torch.cuda.empty_cache()
    print(f"\ngnn-llm training steps, batch {a.batch}, LoRA r=8, {a.steps} timed steps after {a.warmup} warm-up")
    print(f"{'LM':<12}{'dtype':>9}{'stage':>7}{'seq':>5}{'ms/step':>10}{'peak MiB':>10}{'trainable':>13}"
          f"{'total':>15}{'trainable %':>12}")
    for r in results:
        for st in ("stage2", "stage3"):
            tr = r[f"trainable_{st}"]
            print(f"{r['lm']:<12}{r['dtype']:>9}{st[-1]:>7}{r['seq_' + st]:>5}{r['ms_' + st]:>10.1f}"
                  f"{r['mem_' + st]:>10.0f}{tr:>13,}{r['total']:>15,}{100 * tr / r['total']:>11.2f}%")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
