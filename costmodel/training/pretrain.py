"""Pretrain a graph encoder on unlabeled graphs (``costmodel pretrain``)."""

from __future__ import annotations

import sys
import time

from .._errors import InvalidInputError
from .artifacts import TrainResult, artifact_dir

#: what :func:`pretrain` can pretrain
METHODS = ("gae", "graphmae")


def pretrain(method: str = "gae", *, corpus: int = 3000, epochs: int | None = None, seed: int = 0, workers: int = 2,
             output=None, to_package: bool = False) -> TrainResult:
    """Sample ``corpus`` architecture variants, build their graphs (cached) and pretrain an encoder on 90 % of them.

    ``method`` ``"gae"``: the edge-reconstruction autoencoder TraPPM uses;
    ``"graphmae"``: the masked-feature GIN gnn-llm starts from.  The encoder
    is evaluated on the 10 % held out (``evaluation``) and saved to
    ``output``, the package (``to_package``) or ``$COSTMODEL_HOME/artifacts/METHOD``.
    """
    from ..datasets import GraphCorpus

    if method not in METHODS:
        raise InvalidInputError(f"unknown pretraining method {method!r}; choose from {', '.join(METHODS)}")

    # the shipped GAE lives inside the TraPPM artifact (TraPPM is built on it)
    shipped = "trappm" if to_package and not output else "gae"
    out = artifact_dir("graphmae" if method == "graphmae" else shipped, output=output,
                       to_package=to_package)  # a bad output fails before the work
    t0 = time.perf_counter()
    graphs = GraphCorpus.build(corpus, seed=seed, workers=workers)
    print(f"corpus: {len(graphs)} graphs ({len(graphs.failed)} variants could not be built)", file=sys.stderr)
    train, held = graphs.split(0.1, seed=seed)
    ep = {"epochs": epochs} if epochs else {}
    if method == "graphmae":
        from ..predictors import GraphMAE, GraphMAEConfig

        model = GraphMAE(GraphMAEConfig(seed=seed, **ep)).fit(graphs, train)
        ev = model.evaluate(graphs, held)
        model.history.update(heldout_sce=round(ev["sce"], 5), heldout_sce_untrained=round(ev["sce_untrained"], 5),
                             corpus=corpus, corpus_seed=seed)
    else:
        from ..predictors import GAEConfig, GraphAutoencoder

        model = GraphAutoencoder(GAEConfig(seed=seed, **ep)).fit(graphs, train)
        ev = model.evaluate(graphs, held)
        model.history.update(heldout_bce=round(ev["bce"], 5), heldout_auc=round(ev["auc"], 4), corpus=corpus,
                             corpus_seed=seed)
    model.save(out)
    return TrainResult(out, time.perf_counter() - t0, model, ev)
