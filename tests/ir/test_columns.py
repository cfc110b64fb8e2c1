"""node_columns reads, for several graphs at once, what each node says about itself."""

import math

import numpy as np

from costmodel.ir import CostGraph, Node, node_columns


def _graph(name: str, nodes: list[Node]) -> CostGraph:
    return CostGraph(nodes, [(i, i + 1) for i in range(len(nodes) - 1)], meta={"name": name, "dtype": "fp32"})


def _odd_nodes() -> list[Node]:
    """One output; several outputs (a batch norm's output, mean and inverse std); a scalar; an empty tensor;
    no output at all; a view; an integer tensor."""
    return [
        Node(0, "conv", "conv", {"kernel": [3, 3]}, [(2, 3, 8, 8)], ["fp32"], [False], [(2, 4, 8, 8)], ["fp32"],
             1e4, 5e3, 1536.0, 2048.0),
        Node(1, "bn", "batch_norm", {}, [(2, 4, 8, 8)], ["fp16"], [False], [(2, 4, 8, 8), (4,), (4,)],
             ["fp16", "fp32", "fp32"], 2e3, 0.0, 1024.0, 1024.0),
        Node(2, "sum", "reduction", {}, [(2, 4, 8, 8)], ["fp16"], [False], [()], ["fp32"], 512.0, 0.0, 1024.0, 4.0),
        Node(3, "slice", "slice", {}, [()], ["fp32"], [False], [(0, 4)], ["bf16"], 0.0, 0.0, 0.0, 0.0),
        Node(4, "noop", "other", {}, [(0, 4)], ["bf16"], [False], [], [], 0.0, 0.0, 0.0, 0.0),
        Node(5, "view", "reshape", {}, [(0, 4)], ["bf16"], [False], [(4, 0)], ["bf16"], is_view=True),
        Node(6, "idx", "gather", {}, [(4, 0)], ["bf16"], [False], [(7, 3)], ["int64"], 0.0, 0.0, 8.0, 168.0),
    ]


def test_columns_hold_each_nodes_facts_in_graph_order():
    graphs = [_graph("a", _odd_nodes()), _graph("empty", []), _graph("b", _odd_nodes()[:2])]
    c = node_columns(graphs)
    nodes = [n for g in graphs for n in g.nodes]
    assert c.offsets.tolist() == [0, 7, 7, 9] and c.num_graphs == 3
    assert c.span(1) == slice(7, 7) and c.span(2) == slice(7, 9)
    assert c.nodes == nodes
    # out_bytes is Node.out_bytes for every case above, computed the fast way where it can be
    assert c.out_bytes.tolist() == [float(n.out_bytes) for n in nodes]
    assert c.out_bytes[2] == 4.0 and c.out_bytes[3] == 0.0 and c.out_bytes[4] == 0.0
    # element counts of the first output: a scalar and a missing output count 0 (no tile to fill)
    assert c.numel.tolist() == [512.0, 512.0, 0.0, 0.0, 0.0, 0.0, 21.0, 512.0, 512.0]
    assert c.shaped.tolist() == [True, True, False, True, False, True, True, True, True]
    assert c.view.tolist() == [n.is_view for n in nodes]
    assert c.flops.tolist() == [n.flops for n in nodes]
    assert c.nbytes.tolist() == [n.bytes_read + n.bytes_written for n in nodes]
    assert c.dtype0 == ["fp32", "fp16", "fp32", "bf16", None, "bf16", "int64", "fp32", "fp16"]
    assert all(a is n.attrs for a, n in zip(c.attrs, nodes))
    assert c.kind.dtype == np.int64 and c.out_bytes.dtype == np.float64


def test_no_graphs_and_empty_graphs_give_empty_columns():
    for graphs in ([], [_graph("empty", [])]):
        c = node_columns(graphs)
        assert len(c.view) == len(c.out_bytes) == len(c.numel) == 0
        assert c.offsets.tolist() == [0] * (len(graphs) + 1)


def test_out_bytes_of_a_large_tensor_is_exact():
    big = Node(0, "mm", "matmul", {}, [(65536, 65536)], ["fp32"], [False], [(65536, 65536)], ["fp32"])
    c = node_columns([_graph("big", [big])])
    assert c.out_bytes[0] == 4 * math.prod((65536, 65536)) == big.out_bytes


def test_a_kind_outside_the_vocabulary_is_named():
    import pytest

    from costmodel._errors import InvalidGraphError

    odd = Node(0, "mystery", "warp_drive", {}, [], [], [], [(2, 2)], ["fp32"])
    with pytest.raises(InvalidGraphError, match=r"node 0 \(mystery\) of graph 'odd' has unknown kind 'warp_drive'"):
        node_columns([_graph("odd", [odd])])
