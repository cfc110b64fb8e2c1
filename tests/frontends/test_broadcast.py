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


class SlicedMask(nn.Module):
    """Swin's shifted-window mask: slices of a buffer set to Python numbers (``mask[a:b, c:d] = k``)."""

    def forward(self, x):
        mask = x.new_zeros(x.shape[-2:])
        count = 0
        for h in (slice(0, 4), slice(4, 8)):
            for w in (slice(0, 4), slice(4, 8)):
                mask[h, w] = count
                count += 1
        return x + mask


@pytest.mark.parametrize("method", ["trace", "export"])
def test_a_slice_set_to_a_number_is_one_fill_kernel(method):
    """On meta tensors the number is made a tensor on the meta device (``scalar_tensor``), viewed, expanded and
    copied; eager CUDA makes it on the CPU and fills the slice: one kernel per assignment, not two."""
    with torch.device("meta"):
        m = SlicedMask()
    g = from_torch(m, (torch.empty(2, 3, 8, 8, device="meta"),), method=method)
    numbers = [n for n in g.nodes if n.op == "aten.scalar_tensor"]
    writes = [n for n in g.nodes if n.op in ("aten.copy_", "aten.fill_")]
    assert len(writes) == 4 and all(not n.is_view for n in writes)
    assert len(numbers) == 4 and all(n.is_view and n.bytes_written == 0 for n in numbers)
    kernels = [n for n in g.nodes if not n.is_view]
    assert len(kernels) == 6  # new_zeros, 4 fills, the add
    # each fill reads the number, not the slice it writes; new_zeros reads nothing of x
    assert all(n.bytes_read <= 4 and n.bytes_written == 16 * 4 for n in writes)
    zeros = next(n for n in g.nodes if n.op == "aten.new_zeros")
    assert zeros.bytes_read == 0 and zeros.bytes_written == 8 * 8 * 4


@pytest.mark.parametrize("method", ["trace", "export"])
def test_creation_from_a_template_and_overwrites_read_nothing(method):
    class Make(nn.Module):
        def forward(self, x, y):
            a = torch.zeros_like(x) + torch.full_like(x, 2.0) + torch.ones_like(x)
            b = x.clone()
            b.copy_(y)
            b.fill_(3.0)
            return a + b

    x, y = torch.randn(4, 32), torch.randn(4, 32)
    g = from_torch(Make(), (x, y), method=method)
    by_op = {}
    for n in g.nodes:
        by_op.setdefault(n.op, []).append(n)
    for op in ("aten.zeros_like", "aten.full_like", "aten.ones_like", "aten.fill_"):
        for n in by_op[op]:
            assert n.bytes_read == 0 and n.bytes_written == x.numel() * 4, op
    (copy,) = by_op["aten.copy_"]
    assert copy.bytes_read == y.numel() * 4 and copy.bytes_written == y.numel() * 4
    # the reads of an operator that reads its operands are unchanged
    assert all(n.bytes_read == 2 * x.numel() * 4 for n in by_op["aten.add"])
