"""GNN + causal LM cost model (thesis ch. 7): stages, baselines, LoRA sizes.

    PYTHONPATH=. python benchmarks/gnn_llm.py [--quick] [--corpus N] [--families vit,resnet,mobilenet]
                                                [--epochs 20] [--lm DIR]

Stage 1 is the shipped GraphMAE encoder (``costmodel pretrain --method
graphmae``: 3000 unlabeled graphs); ``--corpus N`` pretrains a fresh one on N
graphs instead (``--quick``: 200).

Latency of the H200 vision rows (``PerfDataset.load()``), MAPE and Acc(10%),
on a seeded 70/30 random split and leave-one-family-out over a few families.
Every variant's head also reads the standardized static graph features
(with the analytic estimate) and predicts log(measured / analytic), as DIPPM
does (``GNNLLMConfig.residual``, ``use_static``):

* GNN: GIN + MLP head on the graph embedding and the prompt's numbers
  (hardware features, batch, mode, dtype), no LM, GIN trained from scratch;
* GNN + MiniLM: the GIN embedding next to the all-MiniLM-L6-v2 embedding of
  the prompt text, MLP head (the thesis' baseline);
* GNN + LM, no pretraining stages (random-init GIN, stage 3 only);
* GNN + LM, stage 1 (GraphMAE-pretrained GIN, then stage 3);
* GNN + LM, stages 1+2 (plus graph-to-text alignment before stage 3).

Then the training time of each stage and the trainable parameter count per
LoRA rank (r = 4, 8, 16) for the small LM and for a GPT-2-small-sized one.

Read the LM numbers with care: without ``--lm`` the LM is a 2-layer GPT-2
built from a config with RANDOM weights and a word-level tokenizer over a
fixed vocabulary, so it brings no language knowledge; its accuracy is
expected to be weak, and the stage ablation only shows that the pipeline
trains.  Claims about LLM-based cost prediction need ``--lm`` pointing at a
real pretrained causal LM (and a GPU).  ``--quick`` uses a smaller corpus,
fewer epochs and one held-out family so that the run takes minutes on a laptop CPU.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from costmodel.datasets import GraphCorpus, PerfDataset
from costmodel.training import acc_within, mape
from costmodel.predictors import ARTIFACTS_DIR as _ARTIFACTS
from costmodel.predictors import GNNLLMConfig, GNNLLMPredictor, lora_parameter_count
from costmodel.predictors import GraphMAE, GraphMAEConfig

VARIANTS = ("GNN (GIN+MLP, no LM)", "GNN + MiniLM prompt", "GNN+LM no pretraining", "GNN+LM stage 1",
            "GNN+LM stages 1+2")


def _variant(name: str, base: dict, mae: GraphMAE, summary_epochs: int):
    if name.startswith("GNN (GIN"):
        return GNNLLMConfig(**base, backbone="none"), None
    if name.startswith("GNN + MiniLM"):
        return GNNLLMConfig(**base, backbone="sentence"), None
    if name.endswith("no pretraining"):
        return GNNLLMConfig(**base, summary_epochs=0), None
    if name.endswith("stage 1"):
        return GNNLLMConfig(**base, summary_epochs=0), mae
    return GNNLLMConfig(**base, summary_epochs=summary_epochs), mae


def split_table(title: str, results: dict, splits: list[str], rows, label: str = "model", width: int = 26) -> None:
    """Print ``results[split, row] = (MAPE, Acc10)`` as one line per row, one column per split."""
    print(f"\n{title}")
    print(f"{label:<{width}}" + "".join(f"{n:>20}" for n in splits))
    for v in rows:
        print(f"{v:<{width}}" + "".join(f"{results[n, v][0]:>12.1f} / {results[n, v][1]:5.1f}" for n in splits))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--corpus", type=int, default=None, help="unlabeled graphs for stage 1")
    ap.add_argument("--families", default=None, help="comma-separated families held out in turn")
    ap.add_argument("--epochs", type=int, default=None, help="stage-3 epochs")
    ap.add_argument("--lm", default=None, help="local directory of a pretrained causal LM")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    q = args.quick
    n_corpus = args.corpus or (200 if q else None)
    families = (args.families or ("vit" if q else "vit,resnet,mobilenet")).split(",")
    epochs = args.epochs or (10 if q else 20)
    summary_epochs = 2 if q else 3

    ds = PerfDataset.load()
    print(f"H200 vision rows: {len(ds)} ({len(ds.families())} families); stage-3 epochs {epochs}")
    t0 = time.perf_counter()
    feat = GNNLLMPredictor()
    cached = {i: feat.features(ds.graph(i), r.device, r.mode) for i, r in enumerate(ds.rows)}
    print(f"featurized in {time.perf_counter() - t0:.0f} s")

    # ---------------------------------------------------------------- stage 1
    if n_corpus is None:
        mae = GraphMAE.load(_ARTIFACTS / "graphmae")
        h = mae.history
        stage1_s = h["train_seconds"]
        print(f"stage 1 GraphMAE (shipped): {h['train_graphs']} graphs, {mae.config.epochs} epochs, "
              f"{stage1_s:.0f} s; held-out masked SCE {h['heldout_sce']:.4f} (untrained encoder "
              f"{h['heldout_sce_untrained']:.4f})")
    else:
        t0 = time.perf_counter()
        corpus = GraphCorpus.build(n_corpus, seed=0, progress=False)
        print(f"corpus: {len(corpus)} graphs ({len(corpus.failed)} failed) in {time.perf_counter() - t0:.0f} s")
        tr, ho = corpus.split(0.1, seed=0)
        mae = GraphMAE(GraphMAEConfig(epochs=8 if q else 20)).fit(corpus, tr, progress=False)
        ev = mae.evaluate(corpus, ho)
        stage1_s = mae.history["train_seconds"]
        print(f"stage 1 GraphMAE: {len(tr)} graphs, {mae.config.epochs} epochs, {stage1_s:.0f} s; held-out "
              f"masked SCE {ev['sce']:.4f} (untrained encoder {ev['sce_untrained']:.4f}, {ev['graphs']} graphs)")
    base = dict(lm=args.lm, gnn_hidden=mae.config.hidden, gnn_layers=mae.config.layers, epochs=epochs,
                batch_size=16, lr=1e-3, targets=("latency_ms",))

    # ------------------------------------------------------------ accuracy
    splits = [("random 70/30", *ds.random_split(0.3, seed=0))]
    for fam, train, test in ds.leave_one_family_out():
        if fam in families:
            splits.append((f"LOFO {fam}", train, test))
    results, timing = {}, {v: [] for v in VARIANTS}
    y_all = np.asarray(ds.targets("latency_ms"))
    for split, train, test in splits:
        for v in VARIANTS:
            cfg, enc = _variant(v, base, mae, summary_epochs)
            t0 = time.perf_counter()
            p = GNNLLMPredictor(cfg).fit(ds, train, encoder=enc, progress=False, cached=cached)
            pred = p._predict_features([cached[i] for i in test])[:, 0]
            y = y_all[test]
            results[split, v] = (mape(y, pred), acc_within(y, pred, 0.10))
            timing[v].append((p.meta.get("stage2_seconds", 0.0), p.meta["stage3_seconds"],
                              time.perf_counter() - t0))
            print(f"  {split:<16} {v:<24} MAPE {results[split, v][0]:7.1f} %  Acc(10%) "
                  f"{results[split, v][1]:5.1f} %  ({time.perf_counter() - t0:.0f} s)", flush=True)

    split_table("Latency, H200 vision rows: MAPE % / Acc(10%) %", results, [s for s, _, _ in splits], VARIANTS)

    print("\nTraining time per stage (s, mean over splits)")
    print(f"{'model':<26}{'stage 1':>9}{'stage 2':>9}{'stage 3':>9}{'fit total':>11}")
    for v in VARIANTS:
        s2, s3, tot = np.mean(np.asarray(timing[v]), axis=0)
        s1 = stage1_s if v.endswith(("stage 1", "1+2")) else 0.0
        print(f"{v:<26}{s1:>9.0f}{s2:>9.1f}{s3:>9.1f}{tot:>11.1f}")

    print("\nTrainable parameters per LoRA rank (LoRA on c_attn; projection + head + GIN trained too)")
    print(f"{'LM':<34}{'r':>4}{'LoRA':>10}{'LM frozen':>13}{'LoRA share':>12}{'proj+head+GIN':>15}")
    sizes = [("GPT-2 2x128 (random, benchmark)", {})]
    if args.lm is None:
        sizes.append(("GPT-2 12x768 (GPT-2 small size)", dict(lm_layers=12, lm_hidden=768, lm_heads=12)))
    for label, kw in sizes:
        for r in (4, 8, 16):
            p = GNNLLMPredictor(GNNLLMConfig(**dict(base, **kw), lora_r=r))
            p._build(mae)
            c = p.trainable_parameters()
            assert c["lora"] == lora_parameter_count(p.net.lm) == p.net.lm.get_nb_trainable_parameters()[0]
            other = c["projection"] + c["head"] + c["gin"]
            print(f"{label:<34}{r:>4}{c['lora']:>10,}{c['lm_frozen']:>13,}"
                  f"{100 * c['lora'] / c['lm_frozen']:>11.2f}%{other:>15,}")


if __name__ == "__main__":
    main()
