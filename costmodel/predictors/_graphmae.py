"""GraphMAE: a masked graph autoencoder over GIN (thesis ch. 7, stage 1).

Encoder: GIN layers, each ``GINConv`` with an MLP ``Linear-BN-ReLU-Linear``,
with batch norm and ReLU between layers, over the standardized node features
(message passing on both edge directions).  The graph embedding is the mean
of the node embeddings.

Pretraining (Hou et al., 2022): a share of the nodes (``mask_rate``) has its
input features replaced by a learnable mask token; the graph is encoded, the
hidden states of the masked nodes are zeroed again ("re-masking"), and a
one-layer GIN decoder maps the hidden states back to feature space.  The loss
is the scaled cosine error over the masked nodes,
``mean((1 - cos(x_i, x_hat_i)) ** gamma)``.

``replace_rate`` of the masked nodes get another node's features instead of
the mask token (GraphMAE's random-substitution trick).

Defaults are CPU-sized.  The thesis (Table 7.7) pretrained 5 GIN layers of
1024 units for 500 epochs (batch 128, lr 5e-4, mask rate 0.5, replace rate
0.1, SCE exponent 2, PReLU, input dropout 0.2) on a GPU; here 3 layers of
128 units, 20 epochs, batch 32, lr 1e-3, the same mask rate and exponent, no
substitution and no dropout reach a held-out SCE of 0.27 (untrained 1.02) on
the 3000-graph corpus in about two minutes of CPU.  ``GraphMAEConfig`` takes
the thesis's sizes.  Saved as ``graphmae.json``
(config, node normalization, history, the weights' SHA-256) plus
``graphmae.safetensors``; no pickle.  Loading checks both (:mod:`._artifact`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .._errors import InvalidInputError, ModelLoadError
from ..features import NODE_FEATURE_NAMES, node_arrays
from . import _artifact as A
from ._base import check_sizes
from ._gae import (
    graph_data,
    load_pretrained_network,
    node_normalization,
    pretrain,
    pretrained_document,
    read_pretrained,
    save_pretrained,
    start_pretraining,
)


@dataclass(frozen=True)
class GraphMAEConfig:
    hidden: int = 128
    layers: int = 3
    mask_rate: float = 0.5
    #: share of the masked nodes that get a random node's features instead of the mask token
    replace_rate: float = 0.0
    #: exponent of the scaled cosine error (>= 1 down-weights easy nodes)
    gamma: float = 2.0
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 20
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self):
        check_sizes(self, ("hidden", "layers", "batch_size"))
        if not 0 < self.mask_rate < 1:
            raise InvalidInputError(f"GraphMAEConfig.mask_rate must be in (0, 1), got {self.mask_rate}")
        if not 0 <= self.replace_rate < 1:
            raise InvalidInputError(f"GraphMAEConfig.replace_rate must be in [0, 1), got {self.replace_rate}")
        if self.gamma < 1:
            raise InvalidInputError(f"GraphMAEConfig.gamma must be >= 1, got {self.gamma}")
        if self.lr <= 0:
            raise InvalidInputError(f"GraphMAEConfig.lr must be > 0, got {self.lr}")
        if self.epochs < 0:
            raise InvalidInputError(f"GraphMAEConfig.epochs must be >= 0, got {self.epochs}")


#: what each GraphMAEConfig field may hold in a saved graphmae.json
GRAPHMAE_CONFIG_RULES = {
    "hidden": A.Int(1), "layers": A.Int(1), "mask_rate": A.Num(0, 1, lo_open=True, hi_open=True),
    "replace_rate": A.Num(0, 1, hi_open=True), "gamma": A.Num(1), "lr": A.Num(0, lo_open=True),
    "weight_decay": A.Num(0), "epochs": A.Int(0), "batch_size": A.Int(1), "seed": A.Int(0),
}
#: fields added after the first artifacts shipped (absent: the default, what those were trained with)
GRAPHMAE_CONFIG_LATER = ("replace_rate",)


def _build(cfg: GraphMAEConfig, node_dim: int):
    """The GIN encoder plus the pretraining parts (mask token, re-mask projection, decoder)."""
    from ._nets import GraphMAENet

    return GraphMAENet(node_dim, cfg.hidden, cfg.layers, mask_rate=cfg.mask_rate, replace_rate=cfg.replace_rate,
                       gamma=cfg.gamma)


def sce_loss(pred, target, gamma: float = 2.0):
    """Scaled cosine error ``mean((1 - cos(pred_i, target_i)) ** gamma)``."""
    import torch.nn.functional as F

    cos = (F.normalize(pred, dim=-1) * F.normalize(target, dim=-1)).sum(-1)
    return ((1 - cos).clamp_min(0) ** gamma).mean()


def _as_arrays(g) -> tuple[np.ndarray, np.ndarray]:
    """``(x, edge_index)`` of a CostGraph, or the pair itself."""
    if isinstance(g, tuple):
        return g
    return node_arrays(g)


@dataclass
class GraphMAE:
    """Masked-feature GIN autoencoder; ``embed_many`` gives mean-pooled graph embeddings."""

    config: GraphMAEConfig = field(default_factory=GraphMAEConfig)
    node_mean: list[float] = field(default_factory=list)
    node_std: list[float] = field(default_factory=list)
    #: per-epoch mean training loss and timing
    history: dict = field(default_factory=dict)
    model: object = None

    @property
    def encoder(self):
        """The GIN encoder module (``forward(x, edge_index)`` -> node states, ``pool`` -> graph embedding)."""
        self._require()
        return self.model.encoder

    @property
    def out_dim(self) -> int:
        return self.config.hidden

    # ----------------------------------------------------------------- data
    def data(self, x: np.ndarray, edge_index: np.ndarray):
        """A PyG ``Data`` with standardized, clipped node features and undirected edges."""
        return graph_data(x, edge_index, self.node_mean, self.node_std)

    def fit_normalization(self, xs: Sequence[np.ndarray]) -> None:
        self.node_mean, self.node_std = node_normalization(xs)

    # ------------------------------------------------------------------ fit
    def fit(self, corpus, indices: Sequence[int] | None = None, *, progress: bool = True) -> "GraphMAE":
        """Pretrain on ``corpus`` (a :class:`~costmodel.datasets.GraphCorpus` or any object with
        ``x`` and ``edge_index`` lists).  ``epochs=0`` only fits the normalization: the
        random-init encoder of the ablation."""
        cfg = self.config
        self.model, data = start_pretraining(self, corpus, indices, _build)
        self.history = pretrain(self.model, lambda b: self.model.loss(b.x, b.edge_index), data, lr=cfg.lr,
                                epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                                desc="pretraining GraphMAE", metric="sce", progress=progress,
                                weight_decay=cfg.weight_decay)
        return self

    def reconstruction_error(self, corpus, indices: Sequence[int], *, seed: int = 0) -> float:
        """Mean scaled cosine error of masked-node reconstruction (fixed masks per ``seed``)."""
        import torch
        from torch_geometric.data import Batch

        self._require()
        idx = list(indices)
        if not idx:
            raise InvalidInputError("no graphs to evaluate")
        gen = torch.Generator().manual_seed(seed)
        total = 0.0
        self.model.eval()
        with torch.no_grad():
            for k in range(0, len(idx), 64):
                b = Batch.from_data_list([self.data(corpus.x[i], corpus.edge_index[i]) for i in idx[k:k + 64]])
                total += float(self.model.loss(b.x, b.edge_index, generator=gen)) * b.num_graphs
        return total / len(idx)

    def evaluate(self, corpus, indices: Sequence[int], *, seed: int = 0) -> dict:
        """Held-out masked reconstruction error, next to an untrained encoder's (same
        architecture, seed and normalization) on the same graphs and masks."""
        import torch

        sce = self.reconstruction_error(corpus, indices, seed=seed)
        torch.manual_seed(self.config.seed)
        untrained = GraphMAE(self.config, self.node_mean, self.node_std)
        untrained.model = _build(self.config, len(NODE_FEATURE_NAMES))
        untrained.model.eval()
        return {"sce": sce, "sce_untrained": untrained.reconstruction_error(corpus, indices, seed=seed),
                "graphs": len(list(indices))}

    # --------------------------------------------------------------- embed
    def _require(self):
        if self.model is None:
            raise ModelLoadError("the GraphMAE encoder is not trained: call fit() or load() first")

    def embed_many(self, graphs: Sequence) -> np.ndarray:
        """Mean-pooled node embeddings, shape ``(len(graphs), config.hidden)``; items are CostGraphs
        or ``(x, edge_index)`` pairs."""
        import torch
        from torch_geometric.data import Batch

        self._require()
        out = []
        enc = self.model.encoder
        enc.eval()
        with torch.no_grad():
            for k in range(0, len(graphs), 128):
                b = Batch.from_data_list([self.data(*_as_arrays(g)) for g in graphs[k:k + 128]])
                out.append(enc.pool(b.x, b.edge_index, b.batch).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.config.hidden), np.float32)

    def embed(self, graph) -> np.ndarray:
        return self.embed_many([graph])[0]

    # --------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        return pretrained_document(self)

    def save(self, path: str | Path) -> None:
        self._require()
        save_pretrained(path, "graphmae", self.to_dict(), self.model)

    @classmethod
    def load(cls, path: str | Path) -> "GraphMAE":
        config, d = read_pretrained(path, "graphmae", "GraphMAE encoder",
                                    "pretrain it again on this library's graphs", config_cls=GraphMAEConfig,
                                    rules=GRAPHMAE_CONFIG_RULES, optional=GRAPHMAE_CONFIG_LATER,
                                    history={"heldout_sce": A.Num(0), "heldout_sce_untrained": A.Num(0)})
        obj = cls(config, d["node_mean"], d["node_std"], d.get("history", {}))
        obj.model = load_pretrained_network(_build, config, path, "graphmae", "the GraphMAE network")
        return obj
