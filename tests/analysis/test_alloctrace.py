"""The allocation trace: what a step allocates and frees, on fake tensors."""

import pytest
import torch
from torch import nn

from costmodel._errors import InvalidInputError
from costmodel.analysis.allocator import replay
from costmodel.analysis.alloctrace import TraceError, cuda_attention, trace_decoder, trace_module


def _allocs(trace, phase=None):
    return [e for e in trace.events if e.kind == "alloc" and (phase is None or e.phase == phase)]


def _mlp():
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))


def test_inference_allocates_each_output_and_frees_it_after_its_last_reader():
    tr = trace_module(_mlp(), torch.zeros(4, 16))
    fwd = _allocs(tr, "forward")
    assert [e.op for e in fwd] == ["linear.default", "relu.default", "linear.default"]
    assert [e.nbytes for e in fwd] == [4 * 32 * 4, 4 * 32 * 4, 4 * 8 * 4]
    # the first linear's output dies once ReLU has read it, before the second linear allocates
    kinds = [(e.kind, e.key) for e in tr.events if e.phase == "forward"]
    first = fwd[0].key
    assert kinds.index(("free", first)) < kinds.index(("alloc", fwd[2].key))
    w = (16 * 32 + 32 + 32 * 8 + 8) * 4
    assert tr.state_bytes == w + 4 * 16 * 4
    st = replay(tr.events)
    # weights, input and the two live activations, each rounded up to 512-byte blocks
    assert st.peak_requested_bytes == w + 4 * 16 * 4 + 2 * 4 * 32 * 4


def test_views_and_in_place_results_allocate_nothing():
    class M(nn.Module):
        def forward(self, x):
            y = x * 2
            y = y.view(4, 4, 4).transpose(1, 2)  # views of y's storage
            y.add_(1)  # in place
            return y.relu_()

    tr = trace_module(M(), torch.zeros(4, 16))
    assert [e.op for e in _allocs(tr, "forward")] == ["mul.Tensor"]


def test_training_holds_gradients_and_adam_state_and_sgd_holds_none():
    m = _mlp()
    n_params = sum(p.numel() for p in m.parameters())
    tr = trace_module(m, torch.zeros(4, 16), training=True, optimizer="adam")
    opt = _allocs(tr, "optimizer")
    # first step: exp_avg and exp_avg_sq per parameter (zeros_like), plus foreach temporaries
    state = [e for e in opt if e.op.startswith("zeros_like")]
    assert sum(e.nbytes for e in state) == 2 * 4 * n_params
    grads = sum(e.nbytes for e in _allocs(tr, "backward"))
    assert grads >= 4 * n_params  # every parameter gets a gradient (plus backward temporaries)
    tr_sgd = trace_module(m, torch.zeros(4, 16), training=True, optimizer="sgd")
    assert not [e for e in _allocs(tr_sgd, "optimizer") if e.op.startswith("zeros_like")]
    tr_mom = trace_module(m, torch.zeros(4, 16), training=True, optimizer="momentum")
    assert sum(e.nbytes for e in _allocs(tr_mom, "optimizer") if e.op.startswith("clone")) == 4 * n_params
    # Adam holds more at its peak than SGD
    assert replay(tr.events).peak_allocated_bytes > replay(tr_sgd.events).peak_allocated_bytes


@pytest.mark.parametrize("returns", ["scalar", "tuple", "scores"])
def test_a_model_that_returns_its_loss_or_one_score_per_sample_trains(returns):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = _mlp()

        def forward(self, x):
            y = self.body(x)
            return {"scalar": y.pow(2).mean(), "tuple": (y.pow(2).mean(), y), "scores": y.sum(-1)}[returns]

    tr = trace_module(M(), torch.zeros(4, 16), training=True, optimizer="sgd")
    fwd_ops = [e.op for e in _allocs(tr, "forward")]
    # the model's own loss is the loss: no cross entropy is added after it; scores are summed
    assert not any(op.startswith(("log_softmax", "nll_loss")) for op in fwd_ops)
    assert ("sum.default" in fwd_ops) == (returns == "scores")
    n_params = sum(p.numel() for p in M().parameters())
    assert sum(e.nbytes for e in _allocs(tr, "backward")) >= 4 * n_params  # every parameter got a gradient


def test_views_and_in_place_updates_of_weights_and_buffers_allocate_nothing():
    # training decomposes linear into a transpose of the weight (a view of its storage) and addmm;
    # batch norm adds one to num_batches_tracked in place: both return storages that exist before the step
    m = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.Linear(32, 8))
    tr = trace_module(m, torch.zeros(4, 16), training=True, optimizer="sgd")
    ops = {e.op for e in _allocs(tr, "forward")}
    assert "addmm.default" in ops and "t.default" not in ops and "add_.Tensor" not in ops


def test_a_gradient_summed_from_two_uses_reuses_the_first_gradients_block():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(16, 64), nn.Linear(64, 64)

        def forward(self, x):
            h = self.a(x)
            return self.b(h) + h  # h's gradient: the sum of two

    tr = trace_module(Res(), torch.zeros(8, 16), training=True, optimizer="sgd")
    # autograd adds the second gradient into the first in place (fake tensors make it add out of place)
    assert not [e for e in _allocs(tr, "backward") if e.op == "add.Tensor"]
    # and the folded block is freed once, as the first gradient's
    keys = [e.key for e in tr.events if e.kind == "free"]
    assert len(keys) == len(set(keys))


class _Tied(nn.Module):
    """An embedding whose weight the output projection shares (tied weights, as a language model's)."""

    def __init__(self):
        super().__init__()
        self.emb, self.out = nn.Embedding(1000, 64), nn.Linear(64, 1000, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, ids):
        return self.out(torch.tanh(self.emb(ids)))


def test_a_gradient_that_is_a_view_is_summed_into_a_new_block():
    # the output projection's gradient for the shared weight is t() of a matrix product: a view whose base
    # holds the storage too, so autograd cannot add the embedding's gradient into it and allocates the sum
    tr = trace_module(_Tied(), torch.zeros(4, 16, dtype=torch.long), training=True, optimizer="sgd")
    weight_bytes = 1000 * 64 * 4
    sums = [e for e in _allocs(tr, "backward") if e.op == "add.Tensor"]
    assert [e.nbytes for e in sums] == [weight_bytes] * 2  # one per step
    keys = [e.key for e in tr.events if e.kind == "free"]
    assert len(keys) == len(set(keys))


def test_half_precision_replays_the_conversion_and_halves_the_weights():
    m = _mlp()
    tr = trace_module(m, torch.zeros(4, 16), dtype="fp16")
    build = [e for e in tr.events if e.phase == "weights" and e.kind == "alloc" and e.op == "build"]
    conv = [e for e in tr.events if e.phase == "weights" and e.kind == "alloc" and e.op == "convert"]
    assert sum(e.nbytes for e in build) == 2 * sum(e.nbytes for e in conv)
    assert len([e for e in tr.events if e.phase == "weights" and e.kind == "free"]) == len(build)
    assert _allocs(tr, "forward")[0].nbytes == 4 * 32 * 2


def test_a_half_precision_module_traced_in_fp32_replays_its_conversion_up():
    tr = trace_module(_mlp().half(), torch.zeros(4, 16), dtype="fp32")
    build = [e for e in tr.events if e.phase == "weights" and e.kind == "alloc" and e.op == "build"]
    conv = [e for e in tr.events if e.phase == "weights" and e.kind == "alloc" and e.op == "convert"]
    # model.float(): each fp32 copy allocated, then the fp16 original freed; the step runs in fp32
    assert 2 * sum(e.nbytes for e in build) == sum(e.nbytes for e in conv) > 0
    assert _allocs(tr, "forward")[0].nbytes == 4 * 32 * 4
    assert not [e for e in trace_module(_mlp(), torch.zeros(4, 16), dtype="fp32").events if e.op == "convert"]


def test_the_users_module_is_left_as_it_was():
    m = _mlp().eval()
    before = [(n, p.device, p.dtype, p.requires_grad, p.grad) for n, p in m.named_parameters()]
    trace_module(m, torch.zeros(4, 16), training=True, dtype="fp16")
    assert [(n, p.device, p.dtype, p.requires_grad, p.grad) for n, p in m.named_parameters()] == before
    assert not m.training


def test_fused_attention_keeps_no_score_matrix():
    b, h, L, d = 2, 4, 256, 16

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(d, d)

        def forward(self, q):
            q = self.proj(q)
            return torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True).sum(-1)

    tr = trace_module(Attn(), torch.zeros(b, h, L, d), training=True)
    scores = b * h * L * L * 4
    assert max(e.nbytes for e in _allocs(tr)) < scores
    # the fused kernel stands in only while a trace runs
    orig = torch.nn.functional.scaled_dot_product_attention
    with cuda_attention():
        assert torch.nn.functional.scaled_dot_product_attention is not orig
    assert torch.nn.functional.scaled_dot_product_attention is orig


def test_an_operator_that_needs_data_is_named():
    class Branchy(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    with pytest.raises(TraceError) as e:
        trace_module(Branchy(), torch.zeros(2, 2))
    assert e.value.op  # the operator is named
    assert "cannot run on meta tensors" in str(e.value)


def test_overflow_and_padding_checks_read_as_for_finite_unpadded_inputs():
    class Guarded(nn.Module):  # BART's fp16 overflow guard, and a padding check
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(16, 16)

        def forward(self, x):
            h = self.lin(x)
            if not torch.isfinite(h).all():
                h = h.clamp(-1e4, 1e4)  # would allocate one more activation
            if (x == 0).any():
                h = h * 0  # likewise
            return h

    tr = trace_module(Guarded(), torch.zeros(4, 16))
    plain = trace_module(nn.Linear(16, 16), torch.zeros(4, 16))
    # the guards' own bool results are allocated; neither branch ran: no clamp, no product
    assert [e.nbytes for e in _allocs(tr) if e.nbytes >= 4 * 16 * 4] == [e.nbytes for e in _allocs(plain)
                                                                         if e.nbytes >= 4 * 16 * 4]
    assert any("2 host read(s)" in n and "all() true, any() false" in n for n in tr.notes), tr.notes
    assert not any("host read" in n for n in plain.notes)
    # a value read that is not such a guard still fails, naming the operator
    with pytest.raises(TraceError, match="cannot run on meta tensors"):
        trace_module(type("Sum", (nn.Module,), {"forward": lambda self, x: x * 2 if x.sum() > 0 else x})(),
                     torch.zeros(2, 2))


def test_bad_arguments_name_the_valid_choices():
    with pytest.raises(InvalidInputError, match="unknown optimizer 'lion'.*sgd, sgd_momentum, adam, adamw"):
        trace_module(_mlp(), torch.zeros(1, 16), training=True, optimizer="lion")
    with pytest.raises(InvalidInputError, match="dtype must be one of fp32, fp16, bf16"):
        trace_module(_mlp(), torch.zeros(1, 16), dtype="int8")
    with pytest.raises(InvalidInputError, match="needs parameters"):
        trace_module(nn.ReLU(), torch.zeros(1, 16), training=True)


def _tiny_gpt2():
    from costmodel.frontends.hf import build_hf_model

    return build_hf_model("gpt2", {"n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 256, "n_positions": 64,
                                   "bos_token_id": 0, "eos_token_id": 0}, causal=True)[0]


def test_decode_holds_a_cache_that_grows_and_drops_the_first_one():
    pytest.importorskip("transformers")
    m = _tiny_gpt2()
    pre = trace_decoder(m, batch=2, seq=16, phase="prefill")
    dec = trace_decoder(m, batch=2, seq=16, phase="decode", decode_tokens=4, warmup=2)
    st = replay(dec.events)  # every free matches a live allocation
    assert st.allocated_bytes > 0
    # two rounds, as the protocol runs them: the same prefill twice
    ops = [e.op for e in _allocs(dec, "prefill")]
    assert len(ops) % 2 == 0 and ops[: len(ops) // 2] == ops[len(ops) // 2:]
    frees_between = [e for e in dec.events if e.kind == "free" and e.phase == "decode"]
    assert frees_between  # the first round's cache is dropped before the second prefill
    # a prefill that keeps its cache holds more than one that does not
    assert replay(dec.events).peak_allocated_bytes > replay(pre.events).peak_allocated_bytes
    with pytest.raises(InvalidInputError, match="phase must be one of forward, prefill, decode"):
        trace_decoder(m, batch=1, seq=4, phase="generate")


class _TiedLM(nn.Module):
    """An embedding and an output projection tied the way ``transformers`` ties them: the
    projection is built with a weight of its own, which the tie replaces."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(1000, 64)
        self.body = nn.Linear(64, 64)
        self.head = nn.Linear(64, 1000, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids):
        return self.head(self.body(self.embed(ids)))


def test_a_tied_weight_was_built_twice_and_its_first_copy_freed_before_the_conversion():
    tr = trace_module(_TiedLM(), torch.zeros(2, 8, dtype=torch.long), dtype="fp16")
    weights = [e for e in tr.events if e.phase == "weights"]
    tied = [i for i, e in enumerate(weights) if e.kind == "alloc" and e.op == "build (tied later)"]
    assert len(tied) == 1 and weights[tied[0]].nbytes == 1000 * 64 * 4
    key = weights[tied[0]].key
    freed = [i for i, e in enumerate(weights) if e.kind == "free" and e.key == key]
    first_convert = min(i for i, e in enumerate(weights) if e.op == "convert")
    assert len(freed) == 1 and tied[0] < freed[0] < first_convert
    # the tied copy is freed, so the weights the step holds are counted once
    gone = {e.key for e in weights if e.kind == "free"}
    held = sum(e.nbytes for e in weights if e.kind == "alloc" and e.key not in gone)
    assert held == (1000 * 64 + 64 * 64 + 64) * 2


def test_transformers_builds_the_tied_output_projection_before_tying_it():
    """The rule above is how the library builds a model; if it ever stops allocating the projection's
    own weight, this fails and the rule must go."""
    transformers = pytest.importorskip("transformers")
    from torch.utils._python_dispatch import TorchDispatchMode

    cfg = transformers.AutoConfig.for_model("qwen2", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                            num_attention_heads=4, num_key_value_heads=2, vocab_size=5000,
                                            tie_word_embeddings=True)
    shapes = []

    class Log(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is torch.ops.aten.empty.memory_format:
                shapes.append(tuple(out.shape))
            return out

    with torch.device("meta"), Log():
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert shapes.count((5000, 32)) == 2
    tr = trace_decoder(model, batch=1, seq=4, phase="prefill", dtype="fp16")
    assert sum(e.op == "build (tied later)" for e in tr.events) == 1
