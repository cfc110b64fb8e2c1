"""Export graphs carry the copies ATen's composite operators make on a GPU, as the trace records them."""

import pytest
import torch.nn.functional as F
from torch import nn

from costmodel.frontends import from_torch, zoo_graph


def _kernels(g):
    return [n for n in g.nodes if not n.is_view]


def _copy_bytes(g):
    return sum(n.bytes_read + n.bytes_written for n in _kernels(g) if n.kind == "copy")


class PermuteReshape(nn.Module):  # a window partition: the reshape cannot view the permuted tensor
    def forward(self, x):
        return x.permute(0, 2, 1).reshape(x.shape[0], -1) * 2


class TokenMix(nn.Module):  # MLP-Mixer's token mixing: a linear layer over a transposed input
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 24)

    def forward(self, x):
        return self.fc(x.transpose(1, 2))


class Contiguous(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 24)

    def forward(self, x):
        h = self.fc(x)
        return h.reshape_as(h.flatten(1))


class Attention(nn.Module):  # SDPA then the usual transpose + reshape back to (B, T, D)
    def forward(self, x):
        b, t, d = x.shape
        q = x.view(b, t, 4, d // 4).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, q, q)
        return o.transpose(1, 2).reshape(b, t, d)


def test_a_reshape_that_cannot_view_is_a_copy_in_both_captures():
    for method in ("export", "trace"):
        g = from_torch(PermuteReshape(), input_shape=(8, 16), batch=4, method=method)
        copies = [n for n in _kernels(g) if n.kind == "copy"]
        assert len(copies) == 1, method
        assert copies[0].bytes_read + copies[0].bytes_written == 2 * 4 * 8 * 16 * 4


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_a_linear_layer_on_a_transposed_input_copies_and_adds_its_bias_apart(mode):
    ex = from_torch(TokenMix(), input_shape=(16, 32), batch=4, method="export", mode=mode)
    tr = from_torch(TokenMix(), input_shape=(16, 32), batch=4, method="trace", mode=mode)
    kinds = sorted(n.kind for n in _kernels(ex))
    assert kinds == sorted(n.kind for n in _kernels(tr))
    assert kinds == ["add", "copy", "matmul"]  # the fold copies the input, mm, then the bias
    assert _copy_bytes(ex) == _copy_bytes(tr) == 2 * 4 * 16 * 32 * 4
    assert {n.scope for n in _kernels(ex)} == {"fc"}
    assert sum(n.flops for n in ex.nodes if n.kind == "matmul") == 2 * 4 * 32 * 16 * 24


def test_a_contiguous_linear_layer_stays_one_node_and_reshape_as_is_a_view():
    g = from_torch(Contiguous(), input_shape=(8, 16), batch=2, method="export")
    assert [n.op for n in _kernels(g)] == ["aten.linear"]
    assert any(n.op == "aten.reshape_as" and n.is_view for n in g.nodes)


def test_the_reshape_after_fused_attention_is_a_view():
    for method in ("export", "trace"):
        g = from_torch(Attention(), input_shape=(10, 32), batch=2, method=method)
        assert [n.kind for n in _kernels(g)] == ["attention"], method


def test_export_and_trace_dispatch_the_same_kernels_for_swin():
    ex = zoo_graph("swin_t", batch=1, method="export", cache=False)
    tr = zoo_graph("swin_t", batch=1, method="trace", cache=False)
    assert ex.meta["capture"] == "export"
    assert len(_kernels(ex)) == len(_kernels(tr))
    assert _copy_bytes(ex) == pytest.approx(_copy_bytes(tr), rel=1e-9) and _copy_bytes(ex) > 0
    assert sum(n.flops for n in ex.nodes) == pytest.approx(sum(n.flops for n in tr.nodes), rel=1e-6)


class InplaceActs(nn.Module):  # in-place activations after batch norms, as MobileNet and EfficientNet use them
    def __init__(self):
        super().__init__()
        self.c1, self.b1, self.a1 = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU6(inplace=True)
        self.c2, self.b2, self.a2 = nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.SiLU(inplace=True)
        self.c3, self.b3, self.a3 = nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.a1(self.b1(self.c1(x)))
        x = self.a2(self.b2(self.c2(x)))
        return self.a3(self.b3(self.c3(x))).mean((2, 3))


def test_training_saves_the_input_of_an_in_place_activation_whose_gradient_needs_it():
    # autograd clones the input of hardtanh_ and silu_ before overwriting it (their backward reads it);
    # relu_'s backward reads its result, so nothing is saved
    graphs = {m: from_torch(InplaceActs(), input_shape=(3, 16, 16), batch=2, method=m, mode="training")
              for m in ("export", "trace")}
    for method, g in graphs.items():
        clones = [n for n in _kernels(g) if n.kind == "copy"]
        assert [n.scope for n in clones] == ["a1", "a2"], method
        succ = g.successors()
        assert all(not succ[n.id] for n in clones), method  # nothing reads them in the forward
        assert clones[0].bytes_read == 2 * 8 * 14 * 14 * 4
    assert len(_kernels(graphs["export"])) == len(_kernels(graphs["trace"]))
    inference = from_torch(InplaceActs(), input_shape=(3, 16, 16), batch=2, method="export", mode="inference")
    assert not [n for n in _kernels(inference) if n.kind == "copy"]


def test_a_saved_copy_gets_no_backward_kernels():
    from costmodel.devices import get_device
    from costmodel.predictors._optable import op_table

    g = from_torch(InplaceActs(), input_shape=(3, 16, 16), batch=2, method="export", mode="training")
    t = op_table(g, get_device("h200"), mode="training")
    clones = {n.id for n in _kernels(g) if n.kind == "copy"}
    bwd = t.node[t.phase == 1]
    assert clones and not clones & set(bwd.tolist())
    # the batch norms the clones read get no gradient sum for them: one reader each (the activation)
    bn = [n.id for n in g.nodes if n.kind == "batch_norm"]
    assert all((bwd == i).sum() == 1 for i in bn)


class BlockAttention(nn.Module):  # NesT's attention: (B, heads, blocks, tokens, dim), a 5-D query
    def forward(self, x):
        b, n, t, d = x.shape
        q = x.view(b, n, t, 2, d // 2).permute(0, 3, 1, 2, 4)
        o = F.scaled_dot_product_attention(q, q, q)
        return o.permute(0, 2, 3, 1, 4).reshape(b, n, t, d)


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_attention_no_fused_kernel_takes_runs_its_math_path_in_both_captures(mode):
    kinds = {}
    for method in ("export", "trace"):
        g = from_torch(BlockAttention(), input_shape=(4, 16, 32), batch=2, method=method, mode=mode)
        ks = [n.kind for n in _kernels(g)]
        assert "attention" not in ks, method  # no fused kernel takes a 5-D query
        assert ks.count("matmul") == 2 and ks.count("softmax") == 1, (method, ks)
        kinds[method] = sorted(ks)
    assert kinds["export"] == kinds["trace"]
    # a 4-D query keeps the one fused kernel
    g = from_torch(Attention(), input_shape=(8, 16), batch=2, method="export", mode=mode)
    assert [n.kind for n in _kernels(g)].count("attention") == 1


class LikeOps(nn.Module):  # eva02's q.type_as(v): the second operand lends its dtype, nothing else
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 32)

    def forward(self, x):
        q, v = self.fc(x).chunk(2, dim=-1)
        r = (q * 2).type_as(v)
        return F.scaled_dot_product_attention(r[:, None], r[:, None], v[:, None]).expand_as(v[:, None])


def test_an_operator_that_takes_only_a_dtype_or_shape_reads_its_first_operand():
    g = from_torch(LikeOps(), input_shape=(8, 16), batch=2, method="export")
    preds = g.predecessors()
    like = [n for n in g.nodes if n.op in ("aten.type_as", "aten.expand_as")]
    assert {n.op for n in like} == {"aten.type_as", "aten.expand_as"}
    for n in like:
        assert len(n.in_shapes) == 1, n.op
        assert len(set(preds[n.id])) == 1, n.op
    mul = next(n for n in g.nodes if n.kind == "mul")
    assert preds[next(n for n in like if n.op == "aten.type_as").id] == [mul.id]
