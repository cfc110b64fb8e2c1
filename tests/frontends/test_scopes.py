"""Both PyTorch captures record each operator's module scope and the Python module calls of a forward."""

import threading

import pytest
import torch
from torch import nn

from costmodel.frontends import from_torch, recording_scopes, zoo_graph
from costmodel.predictors._optable import module_calls


class Block(nn.Module):
    def __init__(self, act: nn.Module):
        super().__init__()
        self.fc1 = nn.Linear(16, 16)
        self.fc2 = nn.Linear(16, 16)
        self.act = act  # shared with the parent: one module, called from two places
        self.drop = nn.Dropout(0.1)  # runs no operator at inference

    def forward(self, x):
        return self.drop(self.act(self.fc2(self.act(self.fc1(x)))))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = nn.ReLU()
        self.stem = nn.Linear(8, 16)
        self.blocks = nn.Sequential(Block(self.act), Block(self.act))
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.blocks(self.act(self.stem(x))))


# calls of one forward: stem, act, blocks, 2 x (block, fc1, act, fc2, act, drop), head
NET_CALLS = 1 + 1 + 1 + 2 * 6 + 1


@pytest.mark.parametrize("method", ["export", "trace"])
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_each_capture_counts_every_module_call_of_one_forward(method, mode):
    g = from_torch(Net(), input_shape=(8,), batch=2, method=method, mode=mode)
    assert g.meta["capture"] == method
    assert g.meta["module_calls"] == NET_CALLS
    assert module_calls(g) == NET_CALLS  # the host lane reads the count, not the scopes
    # the innermost module's qualified name, as torch.export's nn_module_stack gives it; the shared
    # activation is named by the path it is called through
    assert {n.scope for n in g.nodes if n.kind == "matmul"} == {
        "stem", "blocks.0.fc1", "blocks.0.fc2", "blocks.1.fc1", "blocks.1.fc2", "head"}
    assert {n.scope for n in g.nodes if n.kind == "relu"} == {"act", "blocks.0.act", "blocks.1.act"}


def test_trace_and_export_give_the_same_scopes_and_calls():
    for name in ("resnet18", "mobilenet_v2", "vit_b_16"):
        exp = zoo_graph(name, batch=2, method="export", cache=False)
        tr = zoo_graph(name, batch=2, method="trace", cache=False)
        assert tr.meta["module_calls"] == exp.meta["module_calls"] > 40, name
        scopes = lambda g: {n.scope for n in g.nodes if not n.is_view}  # noqa: E731
        assert scopes(tr) == scopes(exp), (name, scopes(tr) ^ scopes(exp))


def test_graphs_without_a_count_fall_back_to_the_scopes():
    from costmodel.ir import CostGraph

    def bare(g):
        return CostGraph(g.nodes, g.edges, g.inputs, {k: v for k, v in g.meta.items() if k != "module_calls"})

    # the scopes in execution order see each call of a block's shared ReLU, as the count does
    g = zoo_graph("resnet18", batch=1, method="trace", cache=False)
    assert module_calls(bare(g)) == module_calls(g) == 6 + 4 + 7 * 8 + 3 * 3
    # what they cannot see is a module that leaves no node: torch.export keeps the two dropouts at
    # inference as no-op nodes, the dispatch trace records nothing for them
    net = from_torch(Net(), input_shape=(8,), batch=2, method="export")
    assert module_calls(bare(net)) == NET_CALLS
    net = from_torch(Net(), input_shape=(8,), batch=2, method="trace")
    assert module_calls(bare(net)) == NET_CALLS - 2


def test_hooks_are_removed_and_the_stack_unwinds_after_an_error():
    before = (len(torch.nn.modules.module._global_forward_pre_hooks),
              len(torch.nn.modules.module._global_forward_hooks))

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(4, 4)

        def forward(self, x):
            raise RuntimeError("boom")

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = Broken()

        def forward(self, x):
            try:
                return self.b(x)
            except RuntimeError:
                return self.a(x)

    with recording_scopes(Outer()) as rec:
        m = rec  # keep for after the block
        model = Outer()
    # a fresh recorder on the model that runs
    with recording_scopes(model) as rec:
        assert rec.current() == ""
        seen = []
        orig = model.a.forward
        model.a.forward = lambda x: (seen.append(rec.current()), orig(x))[1]
        model(torch.zeros(1, 4))
        assert rec.current() == ""  # the failed call of "b" was popped
    assert seen == ["a"] and rec.calls == 2 and m.calls == 0
    after = (len(torch.nn.modules.module._global_forward_pre_hooks),
             len(torch.nn.modules.module._global_forward_hooks))
    assert after == before


def test_modules_run_by_another_thread_are_not_counted():
    model, other = Net(), Net()
    with recording_scopes(model) as rec:
        t = threading.Thread(target=lambda: (model(torch.zeros(1, 8)), other(torch.zeros(1, 8))))
        t.start()
        t.join()
        assert rec.calls == 0 and rec.current() == ""
        model(torch.zeros(1, 8))
    assert rec.calls == NET_CALLS
