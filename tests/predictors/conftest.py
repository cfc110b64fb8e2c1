"""Fixtures shared by the pretrained-encoder tests (graph autoencoder, GraphMAE)."""

import pytest

from costmodel.datasets import GraphCorpus
from costmodel.frontends import zoo_graph


@pytest.fixture(scope="module")
def corpus():
    specs = [("squeezenet1_1", 1), ("mnasnet0_5", 8), ("resnet18", 1), ("shufflenet_v2_x1_0", 8),
             ("mobilenet_v2", 1), ("resnet18", 8)]
    return GraphCorpus.from_graphs(zoo_graph(n, batch=b, method="trace") for n, b in specs)


#: the 25 measured models whose graphs build fastest (six rows each): rows to measure interval coverage on
COVERAGE_MODELS = (
    "alexnet", "vgg11", "vgg13", "vgg16", "squeezenet1_1", "vgg11_bn", "resnet18", "resnet34", "vgg19_bn",
    "googlenet(aux_logits=False,init_weights=True)", "mnasnet1_3", "mnasnet0_5", "mnasnet1_0", "resnet50@160",
    "mnasnet0_75", "shufflenet_v2_x1_0", "resnet50@320", "efficientnet_b0@320", "mobilenet_v2@160",
    "mobilenet_v2(width_mult=0.75)", "mobilenet_v2(width_mult=1.4)", "mobilenet_v2", "regnet_y_800mf",
    "mixer_b16_224", "poolformer_s12",
)


@pytest.fixture(scope="session")
def coverage_split():
    """``(dataset, train, calibration, test)``: measured H200 rows of :data:`COVERAGE_MODELS` split at random
    into three disjoint thirds (a model is trained on the first, calibrated on the second, and its intervals'
    coverage measured on the third, rows it never saw)."""
    import random

    from costmodel.datasets import PerfDataset

    ds = PerfDataset.load(method="trace")
    data = PerfDataset([r for r in ds.rows if r.model in COVERAGE_MODELS], method="trace")
    idx = list(range(len(data)))
    random.Random(0).shuffle(idx)
    k = len(idx) // 3
    return data, idx[:k], idx[k:2 * k], idx[2 * k:]


@pytest.fixture(scope="session")
def coverage_features(coverage_split):
    """Row index -> (GraphFeatures, analytic Estimate) in the DIPPM layout (gnn-llm reads the same)."""
    from costmodel.predictors import GNNConfig, GNNPredictor

    data = coverage_split[0]
    p = GNNPredictor(GNNConfig())
    return {i: p.features(data.graph(i), data[i].device, data[i].mode) for i in range(len(data))}


@pytest.fixture(scope="session")
def heldout_graphs():
    """Graphs the shipped pretrained encoders never saw: fresh draws from the pretraining corpus' own
    generator (same families and weights, another seed), minus every (spec, batch, mode) that the
    3000-item pretraining corpus (``costmodel pretrain``, seed 0) drew.  ``SimpleNamespace(x, edge_index)``."""
    import json
    from types import SimpleNamespace

    import numpy as np

    from costmodel.datasets import sample_corpus_specs
    from costmodel.datasets._corpus import _build_one

    def key(i):
        return json.dumps([i.spec, i.batch, i.mode], sort_keys=True)

    seen = {key(i) for i in sample_corpus_specs(3000, seed=0)}
    xs, eis = [], []
    for item in sample_corpus_specs(40, seed=2024):
        if key(item) in seen:
            continue
        out = _build_one(item)
        if not isinstance(out, str):
            xs.append(out[0].astype(np.float32))
            eis.append(out[1].astype(np.int64))
    assert len(xs) >= 20
    return SimpleNamespace(x=xs, edge_index=eis)
