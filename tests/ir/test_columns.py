"""node_columns reads, for several graphs at once, what each node says about itself.

Every test runs against both readers: the compiled one (``costmodel._nodes``, what ``node_columns`` uses
when the package was built with it) and the Python one it falls back to."""

import math

import numpy as np
import pytest

from costmodel.ir import CostGraph, Node
from costmodel.ir._columns import NodeColumns, compiled_reader, node_columns as _node_columns, python_node_columns

READERS = {"compiled": _node_columns, "python": python_node_columns}


@pytest.fixture(params=sorted(READERS))
def node_columns(request):
    return READERS[request.param]


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


def test_columns_hold_each_nodes_facts_in_graph_order(node_columns):
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


def test_no_graphs_and_empty_graphs_give_empty_columns(node_columns):
    for graphs in ([], [_graph("empty", [])]):
        c = node_columns(graphs)
        assert len(c.view) == len(c.out_bytes) == len(c.numel) == 0
        assert c.offsets.tolist() == [0] * (len(graphs) + 1)


def test_out_bytes_of_a_large_tensor_is_exact(node_columns):
    big = Node(0, "mm", "matmul", {}, [(65536, 65536)], ["fp32"], [False], [(65536, 65536)], ["fp32"])
    c = node_columns([_graph("big", [big])])
    assert c.out_bytes[0] == 4 * math.prod((65536, 65536)) == big.out_bytes


def test_a_kind_outside_the_vocabulary_is_named(node_columns):
    from costmodel._errors import InvalidGraphError

    odd = Node(0, "mystery", "warp_drive", {}, [], [], [], [(2, 2)], ["fp32"])
    with pytest.raises(InvalidGraphError, match=r"node 0 \(mystery\) of graph 'odd' has unknown kind 'warp_drive'"):
        node_columns([_graph("odd", [odd])])


def _same(a: NodeColumns, b: NodeColumns) -> None:
    for f in NodeColumns.__dataclass_fields__:
        x, y = getattr(a, f), getattr(b, f)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape, f
            assert np.array_equal(x, y), f
        elif f in ("nodes", "attrs"):
            assert len(x) == len(y) and all(p is q for p, q in zip(x, y)), f
        else:
            assert x == y, f


def test_the_installed_package_has_the_compiled_reader():
    # `pip install .` builds it; without it every batch estimate takes the slower Python walk
    assert compiled_reader() is not None, "costmodel._nodes is missing: reinstall with `pip install .`"


def test_attributes_every_way_a_frontend_writes_them(node_columns):
    """1-d and 3-d kernels (the last two sizes count), strides as lists, groups 0 or None (one group),
    an in-place flag that is not a bool, shapes as lists, a node without attributes."""
    odd = [
        Node(0, "c1", "conv", {"kernel": [5], "stride": [2], "groups": 0}, [(2, 3, 8)], ["fp32"], [False],
             [[2, 4, 4]], ["fp32"], 1e3, 0.0, 96.0, 128.0),
        Node(1, "c3", "conv", {"kernel": (3, 5, 7), "stride": (1, 2, 3), "groups": None, "inplace": 1},
             [(2, 4, 4, 4, 4)], ["fp16"], [False], [(2, 4, 4, 2, 2)], ["fp16"], 2e3, 0.0, 64.0, 32.0),
        Node(2, "dw", "conv", {"kernel": [], "stride": [], "groups": 4, "inplace": False},
             [(2, 4, 4, 2, 2)], ["fp16"], [False], [(2, 4, 4, 2, 2)], ["fp16"], 10.0, 0.0, 32, 32),
        Node(3, "relu", "relu", {}, [(2, 4, 4, 2, 2)], ["fp16"], [False], [(2, 4, 4, 2, 2)], ["fp16"], 64.0),
    ]
    c = node_columns([_graph("odd", odd)])
    assert c.kernel_area.tolist() == [5.0, 35.0, 1.0, 1.0]
    assert c.stride.tolist() == [2.0, 3.0, 1.0, 1.0]
    assert c.groups.tolist() == [1, 1, 4, 1]
    assert c.inplace.tolist() == [False, True, False, False]
    assert c.channels.tolist() == [4, 4, 4, 4]
    assert c.nbytes.tolist() == [224.0, 96.0, 64.0, 0.0]
    assert c.scopes == [{""}]


def test_the_two_readers_agree_on_built_graphs():
    import costmodel

    graphs = [costmodel.to_graph("torchvision:resnet18", batch=2, method="trace"),
              costmodel.to_graph("torchvision:mobilenet_v3_small", batch=1, mode="training", method="trace"),
              costmodel.to_graph("torchvision:vit_b_16", batch=1, dtype="fp16", method="trace")]
    graphs.insert(1, _graph("empty", []))
    _same(_node_columns(graphs), python_node_columns(graphs))
    _same(_node_columns(iter(graphs)), python_node_columns(graphs))  # any iterable of graphs


def test_what_the_compiled_reader_leaves_alone_goes_to_the_python_reader():
    """A dimension that is not a Python int (a numpy integer) or a product beyond 64 bits: the compiled
    reader declines (returns None) and node_columns answers with the Python reader."""
    from costmodel.ir._columns import _DTYPE_BYTES, _KIND_ID

    np_dim = Node(0, "mm", "matmul", {}, [(4, 4)], ["fp32"], [False], [(np.int64(4), 4)], ["fp32"], 128.0)
    huge = Node(0, "mm", "matmul", {}, [(4, 4)], ["fp32"], [False], [(2**40, 2**40)], ["fp32"], 128.0)
    for node in (np_dim, huge):
        graphs = [_graph("odd", [node])]
        if compiled_reader() is not None:
            assert compiled_reader().read_nodes(graphs, _KIND_ID, _DTYPE_BYTES) is None
        _same(_node_columns(graphs), python_node_columns(graphs))


def test_a_dtype_without_a_width_is_an_error_from_both_readers(node_columns):
    odd = Node(0, "mm", "matmul", {}, [(4, 4)], ["fp32"], [False], [(4, 4), (4,)], ["fp32", "fp7"], 128.0)
    with pytest.raises(ValueError, match="unknown dtype 'fp7'"):
        node_columns([_graph("odd", [odd])])


def test_a_graph_of_foreign_objects_raises_instead_of_crashing():
    with pytest.raises(AttributeError):
        _node_columns([CostGraph([object()], [], meta={"name": "bad"})])


def test_parameter_counts_are_read_when_asked(node_columns):
    nodes = _odd_nodes()
    nodes[0].param_inputs = [False, True]
    graphs = [_graph("a", nodes)]
    full = node_columns(graphs)
    assert full.param_count.tolist() == [1, 0, 0, 0, 0, 0, 0]
    lean = node_columns(graphs, params=False)
    assert lean.param_count is None
    for f in NodeColumns.__dataclass_fields__:
        if f not in ("param_count", "nodes", "attrs") and isinstance(getattr(full, f), np.ndarray):
            assert np.array_equal(getattr(full, f), getattr(lean, f)), f


def test_training_tables_refuse_columns_without_parameter_counts():
    import costmodel
    from costmodel.devices import get_device
    from costmodel.predictors._optable import op_tables

    g = costmodel.to_graph("torchvision:resnet18", batch=1, mode="training", method="trace")
    cols = _node_columns([g], params=False)
    assert len(op_tables([g], get_device("h200"), modes=["inference"], columns=cols)) == 1
    with pytest.raises(ValueError, match="params=True"):
        op_tables([g], get_device("h200"), modes=["training"], columns=cols)
