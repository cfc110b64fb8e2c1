"""A recurrent layer's memory on a CUDA device: one cuDNN call with its workspace and, in a training step,
the reserve space kept for the backward pass; on the CPU target PyTorch's own RNN."""

import pytest
import torch
from torch import nn

from costmodel.analysis.alloctrace import trace_module


class _Net(nn.Module):
    def __init__(self, cls, **kw):
        super().__init__()
        self.rnn = cls(16, 32, batch_first=True, **kw)

    def forward(self, x):
        return self.rnn(x)[0]


def _allocs(trace, op=None):
    return [e for e in trace.events if e.kind == "alloc" and (op is None or e.op.startswith(op))]


@pytest.mark.parametrize("cls,gates,kept", [(nn.LSTM, 4, 6), (nn.GRU, 3, 7)])
def test_a_training_step_keeps_cudnns_reserve_space_for_the_backward_pass(cls, gates, kept):
    batch, seq, layers, dirs = 4, 20, 2, 2
    tr = trace_module(_Net(cls, num_layers=layers, bidirectional=True), torch.zeros(batch, seq, 16),
                      training=True, steps=1)
    calls = _allocs(tr, "cudnn_rnn.")
    reserve = layers * dirs * seq * batch * 32 * kept * 4  # every step's gates and states, fp32
    workspace = dirs * seq * batch * gates * 32 * 4  # one layer's input projection of every step
    assert reserve in [e.nbytes for e in calls] and workspace in [e.nbytes for e in calls]
    assert any(e.nbytes == workspace for e in _allocs(tr, "cudnn_rnn_backward"))
    # the workspace is freed when the call returns, the reserve after the backward pass has read it
    phase = {e.key: e.phase for e in tr.events if e.kind == "free"}
    (ws,) = [e.key for e in calls if e.nbytes == workspace]
    (res,) = [e.key for e in calls if e.nbytes == reserve]
    assert phase[ws] == "forward" and phase[res] == "backward"
    # no per-step tensor of PyTorch's own RNN
    assert not _allocs(tr, "mkldnn_rnn") and not _allocs(tr, "lstm") and not _allocs(tr, "gru")


def test_inference_takes_a_workspace_and_no_reserve():
    tr = trace_module(_Net(nn.LSTM), torch.zeros(4, 20, 16), steps=1)
    # the output, the last hidden and cell states, an empty reserve and the workspace, freed at once
    assert [e.nbytes for e in _allocs(tr, "cudnn_rnn.")] == [4 * 20 * 32 * 4, 4 * 32 * 4, 4 * 32 * 4, 0,
                                                             20 * 4 * 4 * 32 * 4]
    # besides: the weights, the input, h0 and c0
    assert [e.kind for e in tr.events].count("alloc") == len(_allocs(tr, "cudnn_rnn.")) + 4 + 1 + 2


def test_the_cpu_target_runs_pytorchs_own_rnn():
    tr = trace_module(_Net(nn.LSTM), torch.zeros(4, 20, 16), training=True, steps=1, target="cpu")
    assert not _allocs(tr, "cudnn_rnn") and _allocs(tr)


def test_only_the_known_kinds_are_stand_ins():
    from costmodel.frontends import cudnn_rnn_kernels

    with pytest.raises(ValueError):
        with cudnn_rnn_kernels("fused"):
            pass
