"""Graph autoencoder pretrained on unlabeled graphs (TraPPM phase 1, thesis ch. 5).

Encoder: GraphSAGE layers with batch norm, ReLU and dropout (thesis: four
layers, dropout 0.5) over the standardized node features, message passing on
both edge directions.  Decoder: the inner product ``sigmoid(z_i . z_j)``.
Loss: binary cross-entropy of real edges against negative edges sampled
*within the same graph* (sampling across the graphs of a mini-batch would
make negatives trivially easy: nodes of different graphs never connect).

The graph embedding handed to the supervised regressor is the sum of the
node embeddings (the thesis' aggregation).  Sizes are smaller than the
thesis' (512-wide on an A100 for 25 h) so that pretraining runs on a laptop
CPU in minutes; ``GAEConfig`` takes the thesis sizes too.

Saved as ``gae.json`` (config, node normalization, training history, the
weights' SHA-256) plus ``gae.safetensors``; no pickle.  Loading checks both
(:mod:`._artifact`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._errors import ArtifactError, InvalidInputError, ModelLoadError, SchemaMismatchError
from ..features import NODE_FEATURE_NAMES
from . import _artifact as A
from ._base import check_sizes

_CLIP = 8.0


@dataclass(frozen=True)
class GAEConfig:
    hidden: int = 128
    out: int = 64
    layers: int = 4
    dropout: float = 0.5
    lr: float = 5e-4
    epochs: int = 30
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self):
        check_sizes(self, ("hidden", "out", "layers", "batch_size"))
        if not 0 <= self.dropout < 1:
            raise InvalidInputError(f"GAEConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.epochs < 0:
            raise InvalidInputError(f"GAEConfig.epochs must be >= 0, got {self.epochs}")


#: what each GAEConfig field may hold in a saved gae.json
GAE_CONFIG_RULES = {"hidden": A.Int(1), "out": A.Int(1), "layers": A.Int(1), "dropout": A.Num(0, 1, hi_open=True),
                    "lr": A.Num(0, lo_open=True), "epochs": A.Int(0), "batch_size": A.Int(1), "seed": A.Int(0)}


def _build_encoder(cfg: GAEConfig, node_dim: int):
    from ._nets import GAEEncoder

    return GAEEncoder(node_dim, cfg.hidden, cfg.out, cfg.layers, cfg.dropout)


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Area under the ROC curve of scores of positives vs negatives (ties count half)."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    if not len(pos) or not len(neg):
        return float("nan")
    scores = np.concatenate([pos, neg])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    r_pos = ranks[: len(pos)].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@dataclass
class GraphAutoencoder:
    """Self-supervised GraphSAGE encoder; ``embed`` gives a graph's pooled embedding."""

    config: GAEConfig = field(default_factory=GAEConfig)
    node_mean: list[float] = field(default_factory=list)
    node_std: list[float] = field(default_factory=list)
    #: per-epoch mean training loss, and link-prediction metrics on held-out graphs
    history: dict = field(default_factory=dict)
    encoder: object = None

    # ----------------------------------------------------------------- data
    def _data(self, x: np.ndarray, edge_index: np.ndarray):
        return graph_data(x, edge_index, self.node_mean, self.node_std)

    def _loss(self, z, edge_index, batch, *, return_scores: bool = False):
        import torch
        from torch_geometric.utils import batched_negative_sampling

        if edge_index.numel() == 0:
            zero = z.sum() * 0
            return (zero, np.zeros(0), np.zeros(0)) if return_scores else zero
        neg = batched_negative_sampling(edge_index, batch, num_neg_samples=None)
        pos_logit = (z[edge_index[0]] * z[edge_index[1]]).sum(-1)
        neg_logit = (z[neg[0]] * z[neg[1]]).sum(-1)
        # -log(sigmoid(p)) - log(1 - sigmoid(n)), computed stably
        loss = -torch.nn.functional.logsigmoid(pos_logit).mean() - torch.nn.functional.logsigmoid(-neg_logit).mean()
        if return_scores:
            return loss, pos_logit.detach().numpy(), neg_logit.detach().numpy()
        return loss

    # ------------------------------------------------------------------ fit
    def fit(self, corpus, indices: Sequence[int] | None = None, *, progress: bool = True) -> "GraphAutoencoder":
        """Pretrain on ``corpus`` (a :class:`~costmodel.datasets.GraphCorpus` or any
        object with ``x`` and ``edge_index`` lists).  ``epochs=0`` only fits the
        normalization: the random-init encoder of the ablation."""
        cfg = self.config
        self.encoder, data = start_pretraining(self, corpus, indices, _build_encoder)

        def loss(b):
            return self._loss(self.encoder(b.x, b.edge_index), b.edge_index, b.batch)

        self.history = pretrain(self.encoder, loss, data, lr=cfg.lr, epochs=cfg.epochs, batch_size=cfg.batch_size,
                                seed=cfg.seed, desc="pretraining graph autoencoder", metric="bce", progress=progress)
        return self

    def evaluate(self, corpus, indices: Sequence[int]) -> dict:
        """Edge-reconstruction BCE and ROC-AUC on graphs (held out from pretraining)."""
        import torch
        from torch_geometric.data import Batch

        self._require()
        idx = list(indices)
        losses, pos_all, neg_all = [], [], []
        torch.manual_seed(self.config.seed)
        with torch.no_grad():
            for k in range(0, len(idx), 64):
                b = Batch.from_data_list([self._data(corpus.x[i], corpus.edge_index[i]) for i in idx[k:k + 64]])
                z = self.encoder(b.x, b.edge_index)
                loss, p, n = self._loss(z, b.edge_index, b.batch, return_scores=True)
                losses.append(float(loss) * b.num_graphs)
                pos_all.append(p)
                neg_all.append(n)
        return {"bce": sum(losses) / max(len(idx), 1),
                "auc": roc_auc(np.concatenate(pos_all), np.concatenate(neg_all)), "graphs": len(idx)}

    # --------------------------------------------------------------- embed
    def _require(self):
        if self.encoder is None:
            raise ModelLoadError("the graph autoencoder is not trained: call fit() or load() first")

    def embed(self, x: np.ndarray, edge_index: np.ndarray) -> np.ndarray:
        """Sum-pooled node embeddings of one graph, shape ``(config.out,)``."""
        return self.embed_many([(x, edge_index)])[0]

    def embed_many(self, graphs: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        import torch
        from torch_geometric.data import Batch
        from torch_geometric.nn import global_add_pool

        self._require()
        out = []
        with torch.no_grad():
            for k in range(0, len(graphs), 128):
                b = Batch.from_data_list([self._data(x, e) for x, e in graphs[k:k + 128]])
                z = self.encoder(b.x, b.edge_index)
                out.append(global_add_pool(z, b.batch).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.config.out), np.float32)

    # --------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        return pretrained_document(self)

    def save(self, path: str | Path) -> None:
        self._require()
        save_pretrained(path, "gae", self.to_dict(), self.encoder)

    @classmethod
    def load(cls, path: str | Path) -> "GraphAutoencoder":
        config, d = read_pretrained(path, "gae", "graph autoencoder", "rebuild it with `costmodel pretrain`",
                                    config_cls=GAEConfig, rules=GAE_CONFIG_RULES,
                                    history={"heldout_bce": A.Num(0), "heldout_auc": A.Num(0, 1)})
        obj = cls(config, d["node_mean"], d["node_std"], d.get("history", {}))
        obj.encoder = load_pretrained_network(_build_encoder, config, path, "gae", "the graph autoencoder's encoder")
        return obj


# ------------------------------------------------- shared by the pretrained graph encoders
def start_pretraining(model, corpus, indices: Sequence[int] | None, build) -> tuple[Any, list]:
    """The first steps of a pretrained encoder's ``fit``: seed torch with ``model.config.seed``, fit
    ``model``'s node normalization on the corpus graphs, build the network (``build(config, node_dim)``)
    and turn the graphs into PyG ``Data``.  Returns ``(network, data)``."""
    import torch

    idx = list(range(len(corpus.x))) if indices is None else list(indices)
    if not idx:
        raise InvalidInputError("the corpus is empty: build one with GraphCorpus.build()")
    torch.manual_seed(model.config.seed)
    model.node_mean, model.node_std = node_normalization([corpus.x[i] for i in idx])
    net = build(model.config, len(NODE_FEATURE_NAMES))
    data = [graph_data(corpus.x[i], corpus.edge_index[i], model.node_mean, model.node_std) for i in idx]
    return net, data


def pretrained_document(model) -> dict:
    """What ``<stem>.json`` records of a pretrained encoder (with the weights' checksums added on saving):
    its config, node normalization, the node feature names and the training history."""
    return {"config": asdict(model.config), "node_mean": model.node_mean, "node_std": model.node_std,
            "node_features": list(NODE_FEATURE_NAMES), "history": model.history}


def node_normalization(xs: Sequence[np.ndarray]) -> tuple[list[float], list[float]]:
    """Per-feature mean and standard deviation (1 where a feature is nearly constant)."""
    X = np.concatenate([np.asarray(x, np.float32) for x in xs])
    sd = X.std(0)
    return X.mean(0).tolist(), np.where(sd < 1e-3, 1.0, sd).tolist()


def graph_data(x: np.ndarray, edge_index: np.ndarray, mean: Sequence[float], std: Sequence[float]):
    """A PyG ``Data`` with standardized, clipped node features and undirected edges."""
    from ._dippm import _quiet_pyg

    _quiet_pyg()
    import torch
    from torch_geometric.data import Data
    from torch_geometric.utils import to_undirected

    if x.shape[1] != len(NODE_FEATURE_NAMES):
        raise SchemaMismatchError(
            f"node features have {x.shape[1]} columns; this library computes {len(NODE_FEATURE_NAMES)}"
        )
    xn = np.clip((np.asarray(x, np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32),
                 -_CLIP, _CLIP).astype(np.float32)
    ei = torch.as_tensor(np.asarray(edge_index, np.int64))
    if ei.numel():
        ei = to_undirected(ei, num_nodes=xn.shape[0])
    return Data(x=torch.from_numpy(xn), edge_index=ei)


def pretrain(module, loss_fn, data: list, *, lr: float, epochs: int, batch_size: int, seed: int, desc: str,
             metric: str, progress: bool, weight_decay: float = 0.0) -> dict:
    """Adam over mini-batches of ``data`` minimizing ``loss_fn(batch)``; returns the training history."""
    import torch
    from torch_geometric.loader import DataLoader

    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    losses = []
    it = range(epochs)
    bar = None
    if progress and epochs:
        from tqdm.auto import tqdm

        bar = it = tqdm(it, desc=desc, unit="epoch", leave=False)
    t0 = time.perf_counter()
    module.train()
    for _ in it:
        total, n = 0.0, 0
        for b in loader:
            opt.zero_grad()
            loss = loss_fn(b)
            loss.backward()
            opt.step()
            total += loss.item() * b.num_graphs
            n += b.num_graphs
        losses.append(total / max(n, 1))
        if bar is not None:
            bar.set_postfix({metric: f"{losses[-1]:.4f}"})
    module.eval()
    return {"loss": [round(v, 5) for v in losses], "train_graphs": len(data),
            "train_seconds": round(time.perf_counter() - t0, 1)}


def save_pretrained(path: str | Path, stem: str, meta: dict, module) -> None:
    """``<stem>.safetensors`` + ``<stem>.json`` (config, node normalization, feature names, history and the
    weights' checksum); no pickle."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(path / f"{stem}.safetensors"))
    meta = dict(meta, **{A.CHECKSUMS: A.checksums(path, [f"{stem}.safetensors"])})
    (path / f"{stem}.json").write_text(json.dumps(A.seal(meta), indent=1))


#: training records in ``history`` (informational; each is checked when present)
HISTORY_RULES = {"loss": A.ListOf(A.Num(0)), "train_graphs": A.Int(0), "train_seconds": A.Num(0),
                 "corpus": A.Int(1), "corpus_seed": A.Int(0)}


def read_pretrained(path: str | Path, stem: str, what: str, retrain_hint: str, *, config_cls, rules: dict,
                    optional: tuple[str, ...] = (), history: dict | None = None):
    """``(config, document)`` of ``<stem>.json``, every field checked; refuses other node features.

    The weights (``<stem>.safetensors``) are checked against the built module by :func:`load_pretrained_network`.
    """
    path = Path(path)
    file = path / f"{stem}.json"
    if not file.is_file():
        raise ArtifactError(f"{path} holds no {what} ({stem}.json missing)")
    d = A.read_json(file)
    A.check(d.get("node_features"), A.ListOf(A.Str()), file, "node_features")
    if d["node_features"] != list(NODE_FEATURE_NAMES):
        raise SchemaMismatchError(f"{file} was pretrained on different node features; {retrain_hint}")
    n = len(NODE_FEATURE_NAMES)
    hist = dict(HISTORY_RULES, **(history or {}))
    A.check(d, A.Fields({
        "node_mean": A.ListOf(A.Num(), length=n), "node_std": A.ListOf(A.Num(0, lo_open=True), length=n),
        "history": A.Fields(hist, optional=tuple(hist), extra=True),
    }, extra=True), file)
    cfg = A.load_config(config_cls, d.get("config"), rules, file, optional=optional)
    A.verify_checksums(d, file, [f"{stem}.safetensors"])
    return cfg, d


def load_pretrained_network(build, config, path: str | Path, stem: str, what: str):
    """The network ``build(config, node_dim)`` with ``<stem>.safetensors`` loaded into it (names and
    shapes checked first), in eval mode."""
    net = build(config, len(NODE_FEATURE_NAMES))
    A.load_weights(net, Path(path) / f"{stem}.safetensors", what=what)
    net.eval()
    return net
