"""Graph features: static vector, node matrix and edge index of a CostGraph."""

import numpy as np

from costmodel.devices import HARDWARE_FEATURE_NAMES, get_device
from costmodel.features import (
    NODE_FEATURE_NAMES,
    edge_index,
    featurize,
    node_arrays,
    schema_fingerprint,
    static_feature_names,
    static_features,
)
from costmodel.frontends import GraphBuilder
from costmodel.ir import OP_KINDS, CostGraph


def diamond():
    """x -> conv -> relu -> (conv, dropout -> reshape) -> add"""
    b = GraphBuilder("diamond", "test")
    b.add_input("x", (2, 3, 8, 8), "fp32")
    b.add_param("w1", (4, 3, 3, 3), "fp32")
    b.add_param("w2", (4, 4, 1, 1), "fp32")
    b.add_node("conv", "conv", ["x", "w1"], [("c1", (2, 4, 8, 8), "fp32")], {"kernel": [3, 3]})
    b.add_node("relu", "relu", ["c1"], [("r1", (2, 4, 8, 8), "fp32")])
    b.add_node("conv", "conv", ["r1", "w2"], [("c2", (2, 4, 8, 8), "fp32")])
    b.add_node("dropout", "dropout", ["r1"], [("d1", (2, 4, 8, 8), "fp32")])
    b.add_node("add", "add", ["c2", "d1"], [("y", (2, 4, 8, 8), "fp32")])
    return b.build(batch=2, input_shape=[3, 8, 8], dtype="fp32", mode="inference")


def test_static_features_are_totals_counts_and_workload_facts():
    g = diamond()
    feats = static_features(g)
    assert feats["count_conv"] == 2 and feats["batch"] == 2 and feats["num_edges"] == len(g.edges)
    assert feats["flops"] == g.flops and feats["params"] == g.params and feats["dtype_bytes"] == 4
    assert feats["is_training"] == 0 and feats["input_rank"] == 3 and feats["input_numel"] == 3 * 8 * 8
    assert all(f"count_{k}" in feats and f"flops_{k}" in feats for k in OP_KINDS)
    assert list(static_features(CostGraph(nodes=[], edges=[]))) == list(feats)  # one layout for every graph


def test_edge_index_is_pyg_layout():
    g = diamond()
    ei = edge_index(g)
    assert ei.dtype == np.int64 and ei.shape == (2, len(g.edges))
    assert sorted(map(tuple, ei.T.tolist())) == sorted(g.edges)
    assert edge_index(CostGraph(nodes=[], edges=[])).shape == (2, 0)


def test_node_arrays_bridge_dropout():
    x, ei = node_arrays(diamond())
    assert x.shape == (4, len(NODE_FEATURE_NAMES)) and x.dtype == np.float32
    assert sorted(map(tuple, ei.T.tolist())) == [(0, 1), (1, 2), (1, 3), (2, 3)]  # relu -> add directly
    x0, ei0 = node_arrays(CostGraph(nodes=[], edges=[]))
    assert x0.shape == (1, len(NODE_FEATURE_NAMES)) and ei0.shape == (2, 0)


def test_featurize_matches_the_named_layout():
    names = static_feature_names(HARDWARE_FEATURE_NAMES, analytic=False)
    f = featurize(diamond(), get_device("h100"))
    assert f.static.shape == (len(names),) and np.isfinite(f.static).all()
    assert "log_flops" in names and "hw_" + HARDWARE_FEATURE_NAMES[0] in names
    assert len(schema_fingerprint(names)) == 16
    assert schema_fingerprint(names) != schema_fingerprint(static_feature_names(HARDWARE_FEATURE_NAMES, True))
