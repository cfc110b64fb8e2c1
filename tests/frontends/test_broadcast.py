"""Broadcast views (``expand``): a reader reads the storage, not the expanded shape."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from costmodel.analysis import autocast_graph, cast_graph
from costmodel.frontends import GraphBuilder, from_onnx, from_torch


class RepeatKV(nn.Module):
    """Grouped-query attention's key/value repeat (Hugging Face's ``repeat_kv``): 2 heads to 8."""

    def forward(self, k, x):
        b, h, s, d = k.shape
        kk = k[:, :, None].expand(b, h, 4, s, d).reshape(b, h * 4, s, d)
        return kk * 2 + x


@pytest.mark.parametrize("method", ["trace", "export"])
def test_a_copy_of_an_expanded_tensor_reads_its_storage(method):
    k, x = torch.randn(2, 2, 16, 8), torch.randn(2, 8, 16, 8)
    g = from_torch(RepeatKV(), (k, x), method=method)
    clone = next(n for n in g.nodes if n.op == "aten.clone")
    assert clone.in_shapes == [(2, 2, 4, 16, 8)]
    # the kernel reads each of k's elements (4x fewer than the expanded shape has) and writes all
    assert clone.bytes_read == k.numel() * 4
    assert clone.bytes_written == 4 * k.numel() * 4
    assert clone.attrs["operand_elems"] == [k.numel()]
    # the dense copy's readers are unaffected
    mul = next(n for n in g.nodes if n.op == "aten.mul")
    assert mul.bytes_read == x.numel() * 4 and "operand_elems" not in mul.attrs


class MaskedAttention(nn.Module):
    """A padding mask (batch, 1, 1, keys) broadcast over heads and queries, as encoders build it."""

    def forward(self, q, mask):
        b, h, s, _ = q.shape
        m = mask[:, None, None, :].expand(b, h, s, s)
        return F.scaled_dot_product_attention(q, q, q, attn_mask=m)


@pytest.mark.parametrize("method", ["trace", "export"])
def test_fused_attention_reads_a_broadcast_mask_once(method):
    q, mask = torch.randn(2, 4, 32, 16), torch.zeros(2, 32)
    g = from_torch(MaskedAttention(), (q, mask), method=method)
    att = next(n for n in g.nodes if n.kind == "attention")
    qkv = 3 * q.numel() * 4
    assert att.bytes_read == qkv + mask.numel() * 4  # not 2 * 4 * 32 * 32 mask elements
    assert att.flops == 2 * 2 * 4 * 32 * 32 * 32  # the FLOPs keep the expanded shapes


def _builder_graph(aliases=None):
    b = GraphBuilder("b", "test")
    b.add_input("x", (1, 64), "fp32")
    b.add_input("y", (32, 64), "fp32")
    b.add_node("aten.expand", "reshape", ["x"], [("xe", (32, 64), "fp32")], is_view=True, aliases=aliases)
    b.add_node("aten.transpose", "transpose", ["xe"], [("xt", (64, 32), "fp32")], is_view=True)
    b.add_node("aten.mm", "matmul", ["y", "xt"], [("z", (32, 32), "fp32")], {"k": 64})
    return b.build()


def test_views_of_a_broadcast_keep_its_storage_and_a_fresh_tensor_does_not():
    mm = _builder_graph().nodes[-1]
    assert mm.attrs["operand_elems"] == [32 * 64, 64]
    assert mm.bytes_read == (32 * 64 + 64) * 4 and mm.flops == 2 * 32 * 32 * 64
    # an output that aliases no input (``empty_like``) is a dense tensor
    dense = _builder_graph(aliases=False).nodes[-1]
    assert "operand_elems" not in dense.attrs and dense.bytes_read == 2 * 32 * 64 * 4


def test_casts_and_autocast_keep_the_storage_reads():
    g = _builder_graph()
    half = cast_graph(g, "fp16").nodes[-1]
    assert half.bytes_read == (32 * 64 + 64) * 2
    ac = autocast_graph(g, "fp16")
    casts = [n for n in ac.nodes if n.attrs.get("autocast")]
    mm = next(n for n in ac.nodes if n.kind == "matmul")
    # autocast casts both operands; the broadcast one is read at its storage and written dense
    bcast = next(c for c in casts if c.attrs.get("operand_elems"))
    assert bcast.bytes_read == 64 * 4 and bcast.bytes_written == 32 * 64 * 2
    assert "operand_elems" not in mm.attrs and mm.bytes_read == 2 * 32 * 64 * 2


def test_onnx_expand_is_read_as_materialized():
    # an ONNX runtime writes Expand's output; its readers stream the expanded tensor, as before
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [32, 64])
    shape = numpy_helper.from_array(np.array([32, 64], np.int64), "shape")
    nodes = [helper.make_node("Expand", ["x", "shape"], ["xe"]), helper.make_node("Add", ["xe", "y"], ["z"])]
    model = helper.make_model(
        helper.make_graph(nodes, "e", [x, y], [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], [shape]),
        opset_imports=[helper.make_opsetid("", 17)])
    add = next(n for n in from_onnx(model).nodes if n.kind == "add")
    assert add.bytes_read == 2 * 32 * 64 * 4 and "operand_elems" not in add.attrs


class RelativeGather(nn.Module):
    """DeBERTa's relative-position lookup: one (query, key) index expanded over batch and heads."""

    def forward(self, scores, idx):
        b, h, s, p = scores.shape
        return torch.gather(scores, -1, idx.expand(b, h, s, s))


@pytest.mark.parametrize("method", ["trace", "export"])
def test_a_lookup_reads_a_broadcast_index_at_its_storage(method):
    scores, idx = torch.randn(2, 4, 16, 32), torch.randint(0, 32, (1, 1, 16, 16))
    g = from_torch(RelativeGather(), (scores, idx), method=method)
    gather = next(n for n in g.nodes if n.kind == "gather")
    gathered = 2 * 4 * 16 * 16 * 4
    # the gathered values (what it writes) plus the index's 256 int64 elements, not 8x that
    assert gather.bytes_read == gathered + idx.numel() * 8
    assert gather.bytes_written == gathered
    # a dense index is read in full, as before
    g2 = from_torch(RelativeGather(), (scores, idx.expand(2, 4, 16, 16).contiguous()), method=method)
    dense = next(n for n in g2.nodes if n.kind == "gather")
    assert dense.bytes_read == gathered + 2 * 4 * 16 * 16 * 8
