import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from costmodel.frontends import GraphBuilder
from costmodel.ir import CostGraph


def diamond():
    """x -> conv -> bn -> relu -> (a: conv, b: identity) -> add"""
    b = GraphBuilder("diamond", "test")
    b.add_input("x", (2, 3, 8, 8), "fp32")
    b.add_param("w1", (4, 3, 3, 3), "fp32")
    b.add_param("w2", (4, 4, 1, 1), "fp32")
    b.add_param("rm", (4,), "fp32", trainable=False)
    b.add_node("conv", "conv", ["x", "w1"], [("c1", (2, 4, 8, 8), "fp32")], {"kernel": [3, 3]})
    b.add_node("bn", "batch_norm", ["c1", "rm"], [("b1", (2, 4, 8, 8), "fp32")])
    b.add_node("relu", "relu", ["b1"], [("r1", (2, 4, 8, 8), "fp32")])
    b.add_node("conv", "conv", ["r1", "w2"], [("c2", (2, 4, 8, 8), "fp32")])
    b.add_node("add", "add", ["c2", "r1"], [("y", (2, 4, 8, 8), "fp32")])
    return b.build(batch=2, input_shape=[3, 8, 8], dtype="fp32", mode="inference")


def test_edges_are_data_dependencies_not_a_chain():
    g = diamond()
    assert g.num_nodes == 5
    # relu feeds both the second conv and the add: a skip connection
    assert sorted(g.edges) == [(0, 1), (1, 2), (2, 3), (2, 4), (3, 4)]
    assert g.predecessors()[4] == [2, 3] or sorted(g.predecessors()[4]) == [2, 3]
    assert g.depth() == 5


def test_params_counted_once_and_buffers_excluded():
    g = diamond()
    assert g.params == 4 * 3 * 9 + 4 * 4
    assert g.weights_bytes == (4 * 3 * 9 + 4 * 4 + 4) * 4
    assert g.meta["trainable_bytes"] == (4 * 3 * 9 + 4 * 4) * 4


def test_flops_and_counts():
    g = diamond()
    conv1_macs = 2 * 4 * 8 * 8 * 3 * 9
    assert g.nodes[0].macs == conv1_macs
    assert g.nodes[0].flops == 2 * conv1_macs
    assert g.op_counts() == {"conv": 2, "batch_norm": 1, "relu": 1, "add": 1}
    assert g.category_counts()["compute"] == 2


def test_roundtrip_json_gz(tmp_path):
    g = diamond()
    p = tmp_path / "g.json.gz"
    g.save(p)
    h = CostGraph.load(p)
    assert h.to_dict() == g.to_dict()
    assert h.nodes[0].in_shapes[0] == (2, 3, 8, 8)


def test_subgraph_bridges_dropped_nodes():
    g = diamond().without(["batch_norm", "relu"])
    assert g.op_counts() == {"conv": 2, "add": 1}
    # conv1 now feeds conv2 and add directly
    assert sorted(g.edges) == [(0, 1), (0, 2), (1, 2)]


def test_fold_batchnorm():
    g = diamond().fold_batchnorm()
    assert "batch_norm" not in g.op_counts()
    assert g.meta["batchnorm_folded"] is True


def test_validate_rejects_bad_edges():
    g = diamond()
    bad = CostGraph(g.nodes, [(3, 1)], g.inputs, g.meta)
    with pytest.raises(ValueError, match="topological"):
        bad.validate()
    with pytest.raises(ValueError, match="outside"):
        CostGraph(g.nodes, [(0, 9)], g.inputs, g.meta).validate()


def test_load_rejects_other_format(tmp_path):
    d = diamond().to_dict()
    d["format"] = 999
    with pytest.raises(ValueError, match="format 999"):
        CostGraph.from_dict(d)


def test_unknown_kind_rejected():
    b = GraphBuilder("x", "test")
    with pytest.raises(ValueError, match="unknown op kind"):
        b.add_node("foo", "not_a_kind", [], [("y", (1,), "fp32")])


# ------------------------------------------------------- concurrent writers of one file
THREADS = 8


def _small_graph():
    b = GraphBuilder("g", "test")
    b.add_input("x", (8, 64), "fp32")
    b.add_param("w", (64, 64), "fp32")
    for i in range(50):
        b.add_node("matmul", "matmul", ["x" if i == 0 else f"y{i - 1}", "w"], [(f"y{i}", (8, 64), "fp32")], {"k": 64})
    return b.build(batch=8, dtype="fp32", mode="inference")


def test_concurrent_writers_of_one_cache_file_leave_a_valid_file(tmp_path):
    g = _small_graph()
    path = tmp_path / "graph.json.gz"
    start = threading.Barrier(THREADS)

    def writer(_):
        start.wait()
        for _ in range(25):
            g.save(path)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(writer, range(THREADS)))  # re-raises any writer's error
    assert CostGraph.load(path).to_dict() == g.to_dict()
    assert [p.name for p in tmp_path.iterdir()] == ["graph.json.gz"]  # no temporary file left behind


def test_processes_writing_one_cache_file_leave_a_valid_file(tmp_path):
    g = _small_graph()
    path = tmp_path / "graph.json.gz"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(g.save, [path] * 120, chunksize=1)  # the graph travels pickled; workers import only costmodel
    assert CostGraph.load(path).to_dict() == g.to_dict()
    assert [p.name for p in tmp_path.iterdir()] == ["graph.json.gz"]
