"""TraPPM (thesis ch. 5): pretraining on unlabeled graphs, then training-cost regression.

    python benchmarks/trappm.py [--corpus 3000] [--gae-epochs 20] [--seeds 5] [--epochs 60]
                                [--encoder DIR] [--skip-lofo] [--models ...]

1. Builds (or loads from cache) the unlabeled corpus and prints its make-up.
2. Pretrains the graph autoencoder on 90 % of it and prints edge-reconstruction
   BCE and ROC-AUC on the held-out 10 %, against the same encoder untrained
   (random init).  ``--encoder DIR`` loads a pretrained one instead.
3. Predicts the *training* rows of the H200 data (step time, memory, power)
   with every model on the same splits.  Splits are over models: all rows
   (inference and training) of the training models are training data, the
   training-mode rows of the other models are the test set, so no test model
   was seen at any batch size.  (a) random 70/30 of the models, mean over
   ``--seeds`` seeds; (b) leave-one-family-out, pooled.

Models: analytic; MLP and XGBoost on static features; the NNLQP-style GNN;
the TraPPM regressor without the embedding; with the embedding of the
untrained encoder (random init, frozen); TraPPM (pretrained, frozen).
"""

from __future__ import annotations

import argparse
import random
import time
import warnings
from collections import defaultdict

import numpy as np

from costmodel.datasets import GraphCorpus, PerfDataset
from costmodel.training import report
from costmodel.predictors import GAEConfig, GraphAutoencoder
from costmodel.predictors import NNLQP, GNNPredictor
from costmodel.predictors import TRAPPM_TARGETS, TraPPMPredictor, trappm_config

MODELS = ("analytic", "mlp-static", "xgb-static", "nnlqp", "sage (no embedding)", "trappm (random-init encoder)",
          "trappm (pretrained)")


def model_splits(ds, seeds, lofo):
    """(protocol, key, train_idx, test_idx) with the test set = training rows of held-out models."""
    names = sorted({r.model for r in ds})
    out = []
    for s in range(seeds):
        rng = random.Random(s)
        shuffled = names[:]
        rng.shuffle(shuffled)
        test_models = set(shuffled[: round(0.3 * len(names))])
        tr = [i for i, r in enumerate(ds) if r.model not in test_models]
        te = [i for i, r in enumerate(ds) if r.model in test_models and r.mode == "training"]
        out.append(("random", s, tr, te))
    if lofo:
        for fam in ds.families():
            tr = [i for i, r in enumerate(ds) if r.family != fam]
            te = [i for i, r in enumerate(ds) if r.family == fam and r.mode == "training"]
            if te:
                out.append(("lofo", fam, tr, te))
    return out


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=int, default=3000, help="unlabeled graphs to sample (default 3000)")
    ap.add_argument("--gae-epochs", type=int, default=GAEConfig().epochs)
    ap.add_argument("--encoder", default=None, help="folder of a pretrained encoder (skips pretraining)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--skip-lofo", action="store_true")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of: " + ", ".join(MODELS))
    return ap.parse_args()


def _selected_models(models: str) -> list[str]:
    """The ``--models`` list, checked against :data:`MODELS`."""
    names = [m.strip() for m in models.split(",") if m.strip()]
    for n in names:
        if n not in MODELS:
            raise SystemExit(f"unknown model {n!r}; choose from {list(MODELS)}")
    return names


def corpus_section(size: int):
    """Build (or load) the unlabeled corpus and print its make-up."""
    corpus = GraphCorpus.build(size, seed=0)
    nn_ = corpus.num_nodes()
    print(f"corpus: {len(corpus)} graphs ({len(corpus.failed)} variants failed to build), "
          f"nodes per graph median {int(np.median(nn_))} (min {nn_.min()}, max {nn_.max()}), "
          f"{corpus.build_seconds:.0f} s (cached shards load instantly)")
    print("  " + ", ".join(f"{f} {n}" for f, n in corpus.families().items()))
    return corpus


def pretrain_section(corpus, encoder, gae_epochs: int):
    """Pretrain (or load) the graph autoencoder, compare it with a random-init one; return (gae, rand)."""
    tr_c, te_c = corpus.split(0.1, seed=0)
    if encoder:
        gae = GraphAutoencoder.load(encoder)
    else:
        gae = GraphAutoencoder(GAEConfig(epochs=gae_epochs)).fit(corpus, tr_c)
    rand = GraphAutoencoder(GAEConfig(**dict(vars(gae.config), epochs=0))).fit(corpus, tr_c, progress=False)
    ev_p, ev_r = gae.evaluate(corpus, te_c), rand.evaluate(corpus, te_c)
    print(f"\ngraph autoencoder ({gae.config.layers} SAGE layers, {gae.config.hidden}->{gae.config.out}), "
          f"{len(tr_c)} pretraining graphs, {gae.history.get('train_seconds', 0)} s, "
          f"loss per epoch {gae.history.get('loss', [])[:1]} -> {gae.history.get('loss', [])[-1:]}")
    print(f"  {'encoder':<14}{'held-out BCE':>14}{'edge AUC':>10}")
    print(f"  {'random init':<14}{ev_r['bce']:>14.4f}{ev_r['auc']:>10.3f}")
    print(f"  {'pretrained':<14}{ev_p['bce']:>14.4f}{ev_p['auc']:>10.3f}")
    return gae, rand


def label_features(gae, rand):
    """Load the labeled rows and featurize them once per model family; return (ds, caches).

    ``caches`` maps "base", "nnlqp", "pre" (pretrained embedding) and "rand" (random-init
    embedding) to row index -> features.
    """
    ds = PerfDataset.load()
    graphs = ds.graphs(progress=True)
    base = GNNPredictor(trappm_config())
    nnlqp = GNNPredictor(trappm_config(**NNLQP))
    t0 = time.perf_counter()
    cache = {i: base.features(g, r.device, r.mode) for i, (g, r) in enumerate(zip(graphs, ds))}
    cache_nnlqp = {i: nnlqp.features(g, r.device, r.mode) for i, (g, r) in enumerate(zip(graphs, ds))}
    t1 = time.perf_counter()
    p_pre, p_rand = TraPPMPredictor(encoder=gae), TraPPMPredictor(encoder=rand)
    keys = list(cache)
    cache_pre = dict(zip(keys, p_pre.with_embeddings([cache[i] for i in keys])))
    cache_rand = dict(zip(keys, p_rand.with_embeddings([cache[i] for i in keys])))
    emb_ms = (time.perf_counter() - t1) / len(keys) * 1e3
    print(f"\n{len(ds)} rows ({sum(r.mode == 'training' for r in ds)} training rows); features "
          f"{t1 - t0:.1f} s, encoder embedding {emb_ms:.2f} ms per graph")
    return ds, {"base": cache, "nnlqp": cache_nnlqp, "pre": cache_pre, "rand": cache_rand}


def make_model(name: str, epochs: int, seed: int, gae, rand, caches: dict):
    """The untrained regressor for ``name`` and the feature cache it reads: (model, cache)."""
    if name == "mlp-static":
        return GNNPredictor(trappm_config(conv="none", epochs=epochs, seed=seed)), caches["base"]
    if name == "xgb-static":
        from costmodel.predictors import XGBStaticPredictor

        return XGBStaticPredictor(trappm_config(conv="none", seed=seed)), caches["base"]
    if name == "nnlqp":
        return GNNPredictor(trappm_config(**NNLQP, epochs=epochs, seed=seed)), caches["nnlqp"]
    if name == "sage (no embedding)":
        return GNNPredictor(trappm_config(epochs=epochs, seed=seed)), caches["base"]
    if name == "trappm (random-init encoder)":
        return TraPPMPredictor(trappm_config(epochs=epochs, seed=seed), rand), caches["rand"]
    return TraPPMPredictor(trappm_config(epochs=epochs, seed=seed), gae), caches["pre"]


def evaluate_models(names, protocols, ds, epochs: int, gae, rand, caches: dict):
    """Fit and predict every model on every split: (name, protocol) -> list of (test idx, predictions)."""
    cache = caches["base"]
    results = defaultdict(list)
    fit_time = defaultdict(list)
    for name in names:
        for proto, key, tr, te in protocols:
            seed = key if proto == "random" else 0
            if name == "analytic":
                pred = np.asarray([[getattr(cache[i][1], t) for t in TRAPPM_TARGETS] for i in te])
                results[(name, proto)].append((te, pred))
                continue
            m, c = make_model(name, epochs, seed, gae, rand, caches)
            t = time.perf_counter()
            m.fit(ds, tr, progress=False, cached=c)
            fit_time[name].append(time.perf_counter() - t)
            results[(name, proto)].append((te, m._predict_features([c[i] for i in te])))
        print(f"  {name}: done ({np.mean(fit_time[name]) if fit_time[name] else 0:.1f} s per fit)", flush=True)
    return results


def print_results(results, names, y_all, seeds: int, skip_lofo: bool) -> None:
    """One table per protocol and target: MAPE, RMSE, Kendall tau and Acc10 per model."""
    labels = {"latency_ms": "training step time (ms)", "memory_mb": "training memory (MB)", "power_w": "power (W)"}
    for proto, title in (("random", f"random 70/30 of models, mean over {seeds} seeds"),
                         ("lofo", "leave-one-family-out (pooled)")):
        if proto == "lofo" and skip_lofo:
            continue
        for ti, t in enumerate(TRAPPM_TARGETS):
            print(f"\n{labels[t]}: {title}")
            print(f"  {'model':<30}{'MAPE %':>9}{'RMSE':>11}{'Kendall':>9}{'Acc10 %':>9}")
            for name in names:
                runs = results[(name, proto)]
                if proto == "random":
                    ms = [report(y_all[te, ti], p[:, ti]) for te, p in runs]
                    m = {k: float(np.nanmean([x[k] for x in ms])) for k in ms[0]}
                else:
                    te = np.concatenate([te for te, _ in runs])
                    m = report(y_all[te, ti], np.concatenate([p[:, ti] for _, p in runs]))
                print(f"  {name:<30}{m['mape']:>9.2f}{m['rmse']:>11.4g}{m['kendall_tau']:>9.3f}{m['acc10']:>9.1f}")


def main():
    a = _parse_args()
    warnings.simplefilter("ignore")
    names = _selected_models(a.models)

    corpus = corpus_section(a.corpus)
    gae, rand = pretrain_section(corpus, a.encoder, a.gae_epochs)
    ds, caches = label_features(gae, rand)

    protocols = model_splits(ds, a.seeds, not a.skip_lofo)
    y_all = np.asarray([[r.target(t) for t in TRAPPM_TARGETS] for r in ds])
    results = evaluate_models(names, protocols, ds, a.epochs, gae, rand, caches)
    print_results(results, names, y_all, a.seeds, a.skip_lofo)


if __name__ == "__main__":
    main()
