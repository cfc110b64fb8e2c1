"""Recurrent layers: their work is recorded (torch.export kept each as one operator costed as free), and
their per-step kernels are launched by one library call, not dispatched one by one. Scatters read the
values they write, and an embedding bag the rows it pools."""

import copy

import pytest
import torch
from torch import nn

import costmodel


class _LSTM(nn.Module):
    def __init__(self, hidden=64):
        super().__init__()
        self.rnn = nn.LSTM(hidden, hidden, batch_first=True)

    def forward(self, x):
        return self.rnn(x)[0]


def test_an_lstm_is_costed_by_its_per_step_work():
    m = _LSTM()
    g = costmodel.to_graph(m, batch=4, input_shape=(16, 64))  # export asked: it kept aten.lstm, at 0 FLOPs
    assert g.meta["capture"] == "trace"
    # 4 gates of (input + hidden) x hidden multiply-adds per step and sequence
    gemm = 2 * 4 * 16 * 4 * (64 + 64) * 64
    assert gemm <= g.flops <= 1.2 * gemm
    assert g.meta["launched_nodes"] and any("recurrent layers (rnn)" in a for a in g.meta["assumptions"])
    # latency follows the sequence (it was flat at the cost of the layers around the free operator)
    short = costmodel.estimate(m, batch=4, input_shape=(16, 64), device="h100")
    long = costmodel.estimate(m, batch=4, input_shape=(128, 64), device="h100")
    assert long.latency_ms > 4 * short.latency_ms


def test_the_kernels_of_an_rnn_call_are_launches_not_dispatches():
    from costmodel.devices import get_device
    from costmodel.predictors._optable import HOST_CLASSES, op_tables

    g = costmodel.to_graph(_LSTM(), batch=2, input_shape=(32, 64))
    dispatched = copy.deepcopy(g)
    del dispatched.meta["launched_nodes"]
    ids = set(g.meta["launched_nodes"])
    for mode in ("inference", "training"):
        a, b = op_tables([g, dispatched], get_device("h100"), modes=[mode, mode])
        rows = [i for i, n in enumerate(a.node) if n in ids]
        assert rows and {HOST_CLASSES[a.host_class[i]] for i in rows} == {"launch"}
        assert "launch" not in {HOST_CLASSES[b.host_class[i]] for i in rows}


def test_an_rnn_cell_in_a_python_loop_is_recorded():
    class Loop(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.GRUCell(32, 32)

        def forward(self, x):
            h = torch.zeros(x.shape[0], 32)
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
            return h

    g = costmodel.to_graph(Loop(), batch=2, input_shape=(8, 32))
    gemm = 2 * 8 * 2 * 3 * (32 + 32) * 32  # 3 gates, input and hidden, per step
    assert g.flops >= gemm and g.meta["launched_nodes"]


class _CellLoop(nn.Module):
    def __init__(self, cls):
        super().__init__()
        self.cell = cls(32, 48)

    def forward(self, x):
        h = torch.zeros(x.shape[0], 48)
        state = (h, torch.zeros_like(h)) if isinstance(self.cell, nn.LSTMCell) else h
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
        return state[0] if isinstance(state, tuple) else state


@pytest.mark.parametrize("cls,gates", [(nn.LSTMCell, 4), (nn.GRUCell, 3)])
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_an_lstm_or_gru_cell_runs_its_two_gemms_and_one_fused_kernel(cls, gates, mode):
    # on a CUDA device PyTorch runs a cell call as the two projections and _thnn_fused_{lstm,gru}_cell
    from costmodel.frontends.pytorch import from_torch

    fused, unrolled = (from_torch(_CellLoop(cls), batch=2, input_shape=(8, 32), mode=mode, method="trace",
                                  fused=f) for f in (True, False))
    points = [n for n in fused.nodes if n.op.endswith("_pointwise")]
    gemms = [n for n in fused.nodes if n.kind == "matmul"]
    assert len(points) == 8 and len(gemms) == 16
    assert {tuple(n.in_shapes[1]) for n in points} == {(2, gates * 48)}
    kernels = [sum(not n.is_view for n in g.nodes) for g in (fused, unrolled)]
    assert kernels[0] <= 3 * 8 + 4 < kernels[1]
    # the same work: the projections' multiply-adds, and the gates' elementwise operators (the biases, which
    # the fused kernel adds, aside)
    gemm = 2 * 2 * 8 * gates * (32 + 48) * 48
    assert sum(n.flops for n in gemms) == pytest.approx(gemm)
    assert fused.flops == pytest.approx(unrolled.flops, rel=0.05)


def test_an_rnn_cell_keeps_its_operators():
    fused = costmodel.to_graph(_CellLoop(nn.RNNCell), batch=2, input_shape=(8, 32))
    assert not any(n.op.endswith("_pointwise") for n in fused.nodes)


def test_a_packed_sequence_runs_once_on_the_cpu():
    from torch.nn.utils.rnn import pack_padded_sequence

    class Packed(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(16, 32, batch_first=True)

        def forward(self, x, lengths):
            _, (h, _) = self.rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
            return h[-1]

    # the lengths must be a CPU int64 tensor: "got 1D meta Long tensor" was not taken as a need for values
    g = costmodel.to_graph(Packed(), batch=4, inputs=(torch.randn(4, 12, 16), torch.tensor([12, 9, 5, 3])))
    assert g.meta["capture"] == "trace-real" and g.flops > 0


def test_a_scatter_reads_the_values_it_writes_and_a_bag_its_rows():
    class Scatter(nn.Module):
        def forward(self, x, idx, src):
            return x.index_add(0, idx, src)

    src = torch.randn(5000, 64)
    g = costmodel.to_graph(Scatter(), batch=100, inputs=(torch.randn(100, 64), torch.randint(0, 100, (5000,)), src))
    (n,) = [x for x in g.nodes if x.kind == "gather"]
    assert n.bytes_read >= src.numel() * 4 and n.flops == src.numel()  # it read 96 % less: the values left out

    class Bag(nn.Module):
        def __init__(self):
            super().__init__()
            self.e = nn.EmbeddingBag(100000, 64, mode="sum")

        def forward(self, idx):
            return self.e(idx)

    g = costmodel.to_graph(Bag(), batch=32, inputs=(torch.randint(0, 100000, (32, 20)),))
    (n,) = [x for x in g.nodes if x.kind == "embedding"]
    assert n.bytes_read == pytest.approx(32 * 20 * 64 * 4 + 32 * 20 * 8, abs=33 * 8)  # 640 rows, the index (offsets)


@pytest.mark.parametrize("method", ["trace", "export"])
def test_a_fourier_transform_states_its_flops(method):
    import math

    class Spectral(nn.Module):
        def forward(self, x):
            return torch.fft.irfft2(torch.fft.rfft2(x) * 2, s=x.shape[-2:])

    g = costmodel.to_graph(Spectral(), batch=4, input_shape=(8, 64, 64), method=method)
    ffts = [n for n in g.nodes if "fft" in n.op]
    # a real transform of 64 x 64 points, 32 of them: 2.5 N log2 n each way (they were free)
    assert len(ffts) == 2 and all(n.flops == pytest.approx(2.5 * 4 * 8 * 64 * 64 * math.log2(64 * 64)) for n in ffts)


def _rnn_graph(cls, fused=True, mode="inference", batch_first=True, seq=6, **kw):
    from costmodel.frontends.pytorch import from_torch

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = cls(8, 16, batch_first=batch_first, **kw)

        def forward(self, x):
            return self.rnn(x)[0]

    shape = (seq, 8) if batch_first else (3, 8)  # time-major: the batch of 3 is the second dimension
    return from_torch(Net(), batch=3 if batch_first else seq, input_shape=shape, mode=mode, method="trace",
                      fused=fused)


@pytest.mark.parametrize("cls,kw,gates", [(nn.LSTM, {}, 4), (nn.GRU, {"num_layers": 2}, 3),
                                          (nn.RNN, {"bidirectional": True}, 1),
                                          (nn.LSTM, {"num_layers": 2, "bidirectional": True, "proj_size": 4}, 4)])
@pytest.mark.parametrize("batch_first", [True, False])
def test_a_recurrent_layer_runs_as_cudnn_kernels(cls, kw, gates, batch_first):
    g = _rnn_graph(cls, batch_first=batch_first, **kw)
    unrolled = _rnn_graph(cls, fused=False, batch_first=batch_first, **kw)
    seq, calls = 6, kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    gemms = [n for n in g.nodes if n.kind == "matmul"]
    gates_ops = [n for n in g.nodes if n.op.endswith("_pointwise")]
    # per layer and direction one GEMM over every step's input, then per step one recurrent GEMM (and the
    # projection's) and one fused gate kernel
    assert len(gates_ops) == calls * seq
    assert len(gemms) == calls * (1 + seq * (2 if "proj_size" in kw else 1))
    assert sum(n.out_shapes[0][0] == 3 * seq for n in gemms) == calls
    assert {tuple(n.in_shapes[1]) for n in gates_ops} == {(3, gates * 16)}
    # the same work in fewer kernels, the same result
    assert g.flops == pytest.approx(unrolled.flops, rel=1e-9)
    kernels = [sum(not n.is_view for n in x.nodes) for x in (g, unrolled)]
    assert kernels[0] < kernels[1]
    assert sorted(n.out_shapes for n in g.nodes[-3:]) == sorted(n.out_shapes for n in unrolled.nodes[-3:])
    assert any("cuDNN's RNN runs" in a for a in g.meta["assumptions"])
    assert not any("cuDNN's RNN runs" in a for a in unrolled.meta["assumptions"])


def test_an_inference_graph_of_cudnn_kernels_predicts_below_the_unrolled_one():
    fused, unrolled = (_rnn_graph(nn.LSTM, fused=f, seq=32, num_layers=2) for f in (True, False))
    for predictor in (None, "analytic"):
        a, b = (costmodel.estimate(g, batch=3, device="h100", predictor=predictor) for g in (fused, unrolled))
        assert a.latency_ms < b.latency_ms



def test_a_training_graph_of_cudnn_kernels_gathers_the_steps_input_gradients_once():
    # a training step runs cuDNN's kernels too; the steps read the one input projection through one
    # unbind, so its gradient comes back in one cat (no sum per step), and the step costs less than the
    # unrolled one while keeping its backward above the forward
    from costmodel.devices import get_device
    from costmodel.predictors._optable import op_table

    fused, unrolled = (_rnn_graph(nn.LSTM, fused=f, mode="training", seq=32) for f in (True, False))
    assert sum(n.op.endswith("_pointwise") for n in fused.nodes) == 32
    assert fused.flops == pytest.approx(unrolled.flops, rel=1e-9)
    h100 = get_device("h100")
    t = op_table(fused, h100, mode="training")
    proj = next(n.id for n in fused.nodes if n.kind == "matmul" and n.out_shapes[0][0] == 3 * 32)
    back = [i for i in range(len(t.node)) if t.phase[i] == 1 and t.node[i] == proj]
    assert len(back) == 1 + 2  # the cat of the steps' slices, then the input's and the weights' GEMMs
    for predictor in (None, "analytic"):
        a, b = (costmodel.estimate(g, batch=3, device="h100", mode="training", predictor=predictor)
                for g in (fused, unrolled))
        infer = costmodel.estimate(_rnn_graph(nn.LSTM, seq=32), batch=3, device="h100", predictor=predictor)
        assert infer.latency_ms < a.latency_ms < b.latency_ms


def test_the_cpu_path_of_an_rnn_is_kept_where_asked():
    from torch import _VF

    from costmodel.frontends import cudnn_rnn_kernels

    own = _VF.lstm
    with cudnn_rnn_kernels(None):
        assert _VF.lstm is own
    with cudnn_rnn_kernels("steps"):
        assert _VF.lstm is not own
        out, _ = nn.LSTM(4, 4)(torch.randn(3, 2, 4))  # real tensors keep PyTorch's own kernels
        assert out.shape == (3, 2, 4)
    assert _VF.lstm is own
