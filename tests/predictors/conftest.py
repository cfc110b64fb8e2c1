"""Fixtures shared by the pretrained-encoder tests (graph autoencoder, GraphMAE)."""

import pytest

from costmodel.datasets import GraphCorpus
from costmodel.frontends import zoo_graph


@pytest.fixture(scope="module")
def corpus():
    specs = [("squeezenet1_1", 1), ("mnasnet0_5", 8), ("resnet18", 1), ("shufflenet_v2_x1_0", 8),
             ("mobilenet_v2", 1), ("resnet18", 8)]
    return GraphCorpus.from_graphs(zoo_graph(n, batch=b, method="trace") for n, b in specs)
