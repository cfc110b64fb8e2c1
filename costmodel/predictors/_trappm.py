"""TraPPM: semi-supervised training-cost predictor (thesis ch. 5).

Phase 1 pretrains a graph autoencoder (:mod:`._gae`) on thousands of
unlabeled graphs.  Phase 2 freezes its encoder; the supervised regressor sees,
for every workload, the frozen encoder's pooled embedding next to the static
features, plus its own GraphSAGE over the same graph, and predicts the
training step time, the memory and the power (energy per step follows as
power x time).

The regressor is the DIPPM network (same features, analytic residual, loss
and optimizer) so that the ablation in ``benchmarks/trappm.py`` isolates what
the pretrained embedding adds: the same network without the embedding, with
the embedding of a randomly initialized (untrained) encoder, and with the
pretrained one.

Artifact: the GNN's ``config.json`` + ``weights.safetensors`` with the
encoder's ``gae.json`` + ``gae.safetensors`` next to them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._errors import ModelLoadError
from ..features import GraphFeatures
from ._registry import read_artifact_config, register_predictor
from ._gae import GraphAutoencoder
from ._artifacts import ShippedArtifact
from ._dippm import GNNConfig, GNNPredictor, load_gnn_config

TRAPPM_TARGETS = ("latency_ms", "memory_mb", "power_w")


def trappm_config(**kw) -> GNNConfig:
    """The TraPPM regressor's default configuration."""
    return GNNConfig(**dict(dict(conv="sage", targets=TRAPPM_TARGETS), **kw))


@register_predictor("trappm")
class TraPPMPredictor(ShippedArtifact, GNNPredictor):
    """GraphSAGE regressor + frozen pretrained graph-autoencoder embedding."""

    name = "trappm"

    def __init__(self, config: GNNConfig | None = None, encoder: GraphAutoencoder | None = None) -> None:
        super().__init__(config or trappm_config())
        self.encoder = encoder
        if encoder is not None:
            self._static_names = self._static_names + tuple(f"gae_{i}" for i in range(encoder.config.out))

    def features(self, graph, device, mode: str, optimizer: str = "adam"):
        f, est = super().features(graph, device, mode, optimizer)
        return self.with_embedding(f), est

    def _features_many(self, graphs, dev, modes, optimizer) -> list:
        # the encoder embeds every graph in one batched pass
        base = GNNPredictor._features_many(self, graphs, dev, modes, optimizer,
                                           lambda *a: GNNPredictor.features(self, *a))
        return self.with_embeddings(base)

    def with_embedding(self, f: GraphFeatures) -> GraphFeatures:
        """``f`` with the frozen encoder's embedding appended to its static vector."""
        if self.encoder is None:
            raise ModelLoadError("TraPPM needs a pretrained graph autoencoder (pass encoder=...)")
        emb = self.encoder.embed(f.x, f.edge_index).astype(np.float32)
        return GraphFeatures(f.x, f.edge_index, np.concatenate([f.static, emb]))

    def with_embeddings(self, items: list) -> list:
        """Batched :meth:`with_embedding` over ``(GraphFeatures, Estimate)`` pairs (benchmarks)."""
        embs = self.encoder.embed_many([(f.x, f.edge_index) for f, _ in items]).astype(np.float32)
        return [(GraphFeatures(f.x, f.edge_index, np.concatenate([f.static, e])), est)
                for (f, est), e in zip(items, embs)]

    # ---------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        super().save(path)
        self.encoder.save(path)

    @classmethod
    def load(cls, path: str | Path) -> "TraPPMPredictor":
        path = Path(path)
        cfg = read_artifact_config(path, {cls.name: cls})
        config = load_gnn_config(cfg, path)
        return cls(config, GraphAutoencoder.load(path))._load_weights(cfg, path)
