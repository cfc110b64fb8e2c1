"""The allocation trace against the CPU allocator's own events (a real step on CPU tensors)."""

import pytest
import torch
from torch import nn

from costmodel._errors import InvalidInputError
from costmodel.analysis.allocheck import check_module, real_cpu_peak, step_peak
from costmodel.analysis.alloctrace import trace_module

pytestmark = pytest.mark.skipif(not torch.autograd.kineto_available(), reason="torch.profiler without kineto")


def _net():
    # a convolution, batch norm (its num_batches_tracked is updated in place in training) and a linear
    # layer whose weight is a large share of the step (training transposes it: a view, no allocation)
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 16 * 16, 64), nn.ReLU(), nn.Linear(64, 10))


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("training", [False, True])
def test_the_trace_sees_every_result_the_cpu_allocator_hands_out(one_thread, training):
    # The trace records the storages operators return; the profiler's events come from the allocator.
    # Without the kernels' own temporaries (blocks freed inside the operator that took them) the two
    # peaks are the same storages: on every model of benchmarks/memory.py --cpu-check they agree to
    # the byte. 0.5 % leaves room for a kernel that sizes a result differently on another PyTorch
    # version; a missed gradient, optimizer state or a view counted as a copy (the first linear
    # weight's transpose, taken as an allocation, would add a quarter to the training peak) is far
    # outside it.
    c = check_module(_net(), torch.empty(4, 3, 16, 16), training=training)
    assert c.real_results_bytes > 0
    assert abs(c.results_error) < 0.005, (c.traced_bytes, c.real_results_bytes)
    # the kernels' temporaries only add to what the allocator saw
    assert c.real_bytes >= c.real_results_bytes


@pytest.mark.parametrize("trainable", ["head", "last"])
def test_a_step_with_frozen_parameters_allocates_what_autograd_needs(one_thread, trainable):
    # frozen parameters get no gradient and no optimizer state, and the frozen layers before the first
    # trainable one save nothing for the backward: the trace follows requires_grad as the real step does
    full = check_module(_net(), torch.empty(4, 3, 16, 16), training=True)
    m = _net()
    for i, layer in enumerate(m):
        layer.requires_grad_(i == 6 if trainable == "head" else i >= 4)
    c = check_module(m, torch.empty(4, 3, 16, 16), training=True)
    assert abs(c.results_error) < 0.005, (c.traced_bytes, c.real_results_bytes)
    assert c.traced_bytes < full.traced_bytes


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(64, 512), nn.Linear(512, 512), nn.Linear(512, 10)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.c(self.b(h) + h)  # h's gradient is a sum: autograd adds it in place


class _SharedWeights(nn.Module):
    """One weight read by two uses: a linear layer applied twice, or an embedding tied to the output."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        if kind == "tied":
            self.emb, self.out = nn.Embedding(4000, 128), nn.Linear(128, 4000, bias=False)
            self.out.weight = self.emb.weight
        else:
            self.l, self.out = nn.Linear(512, 512), nn.Linear(512, 10)

    def forward(self, x):
        if self.kind == "tied":
            return self.out(torch.tanh(self.emb(x)))
        return self.out(self.l(torch.relu(self.l(x))))


class _Recurrent(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.rnn, self.fc = getattr(nn, kind)(32, 128, batch_first=True), nn.Linear(128, 10)

    def forward(self, x):
        return self.fc(self.rnn(x)[0][:, -1])


@pytest.mark.parametrize("case", ["twice", "tied", "GRU", "RNN"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_weight_with_two_uses_gets_its_gradients_summed_out_of_place(one_thread, case, optimizer):
    # A weight read through t() (a linear layer's) gets a gradient that is a view of a matrix product's
    # result; autograd cannot add a second gradient into it in place (the view's base holds the storage
    # too) and allocates the sum. A layer applied twice, tied embeddings, a recurrent layer's weights read
    # at every time step: the trace folded each sum into the first gradient and was 15-33 % under the
    # allocator here.
    torch.manual_seed(0)
    if case in ("twice", "tied"):
        m = _SharedWeights(case)
        x = torch.zeros(4, 16, dtype=torch.long) if case == "tied" else torch.empty(8, 512)
    else:
        m, x = _Recurrent(case), torch.empty(4, 8, 32)
    c = check_module(m, x, training=True, optimizer=optimizer)
    assert abs(c.results_error) < 0.005, (c.traced_bytes, c.real_results_bytes)


def test_without_temporaries_a_linear_network_is_exact_on_the_raw_peak_too(one_thread):
    # addmm and the elementwise kernels take no temporaries: the raw allocator peak is the trace's
    torch.manual_seed(0)
    c = check_module(_Residual(), torch.empty(256, 64), training=True, optimizer="adamw")
    assert abs(c.error) < 0.005, (c.traced_bytes, c.real_bytes)


def test_the_real_peak_counts_what_a_call_allocates_and_frees(one_thread):
    def f():
        a = torch.empty(1000, dtype=torch.uint8)
        b = torch.empty(3000, dtype=torch.uint8)
        del a, b
        c = torch.empty(2000, dtype=torch.uint8)
        del c
    peak, results = real_cpu_peak(f)
    assert peak == results == 4000


def test_step_peak_starts_at_the_reset_and_follows_frees():
    tr = trace_module(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)), torch.zeros(4, 16),
                      target="cpu")
    # the two live activations at once: linear's output read by relu
    assert step_peak(tr) == 2 * 4 * 32 * 4


def test_the_cpu_target_takes_no_convolution_workspace_and_the_check_refuses_half_precision():
    m = nn.Conv2d(3, 8, 3)
    x = torch.zeros(1, 3, 8, 8)
    assert any(e.op == "cudnn_workspace" for e in trace_module(m, x).events)
    assert not any(e.op == "cudnn_workspace" for e in trace_module(m, x, target="cpu").events)
    with pytest.raises(InvalidInputError):
        trace_module(m, x, target="tpu")
    with pytest.raises(InvalidInputError):
        check_module(m.half(), x)


def test_grouped_convolutions_take_the_workspace_and_depthwise_ones_do_not():
    from costmodel.analysis.alloctrace import conv_workspace_bytes

    x = torch.zeros(2, 16, 8, 8)
    ws = [e.nbytes for e in trace_module(nn.Conv2d(16, 16, 3, padding=1, groups=4), x).events
          if e.op == "cudnn_workspace" and e.kind == "alloc"]
    assert ws == [2 * 2 * 16 * 8 * 8 * 4]  # input + output bytes
    assert not any(e.op == "cudnn_workspace"
                   for e in trace_module(nn.Conv2d(16, 16, 3, padding=1, groups=16), x).events)
    assert not any(e.op == "cudnn_workspace" for e in trace_module(nn.Conv2d(16, 32, 1, groups=4), x).events)
    # the graph walk's rule: without the input's channels a grouped convolution cannot be told from a
    # depthwise one, and takes none
    assert conv_workspace_bytes(100, 50, groups=4, kernel=(3, 3), in_channels=16) == 150
    assert conv_workspace_bytes(100, 50, groups=16, kernel=(3, 3), in_channels=16) == 0
    assert conv_workspace_bytes(100, 50, groups=4, kernel=(3, 3)) == 0


def test_the_backward_pass_takes_a_workspace_per_cudnn_call():
    """Training: the first convolution's input needs no gradient (one backward call, for its weights), the
    second's does (two calls); both take the forward rule's input + output bytes. The graph walk agrees."""
    from costmodel.analysis.memreplay import graph_trace
    from costmodel.frontends import to_graph

    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.Flatten(),
                      nn.Linear(8 * 8 * 8, 4))
    x = torch.zeros(2, 3, 8, 8)
    tr = trace_module(m, x, training=True, steps=1)
    back = [e.nbytes for e in tr.events if e.op == "cudnn_workspace" and e.kind == "alloc" and e.phase == "backward"]
    first = (2 * 3 * 64 + 2 * 8 * 64) * 4
    second = (2 * 8 * 64 + 2 * 8 * 64) * 4
    assert sorted(back) == sorted([second, second, first])
    g = to_graph(m, inputs=(x,), mode="training")
    walk = graph_trace(g, training=True)
    wback = [e.nbytes for e in walk.events if e.op == "cudnn_workspace" and e.kind == "alloc" and e.phase == "backward"]
    assert sorted(wback) == sorted(back * (len(wback) // len(back)))  # one walk step or two, each the same calls
    assert wback
    # on the CPU target nothing of cuDNN's is traced
    assert not any(e.op == "cudnn_workspace" for e in trace_module(m, x, training=True, steps=1, target="cpu").events)


class _Checkpointed(nn.Module):
    """Four residual MLP blocks, each under non-reentrant activation checkpointing when ``ckpt``."""

    def __init__(self, ckpt: bool):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64)) for _ in range(4))
        self.head = nn.Linear(64, 10)
        self.ckpt = ckpt

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint

        for b in self.blocks:
            x = x + (checkpoint(b, x, use_reentrant=False) if self.ckpt else b(x))
        return self.head(x.mean(1))


def test_activation_checkpointing_is_traced_and_checked_against_the_allocator(one_thread):
    # The trace runs the module's own forward and autograd's backward on fake tensors, so checkpointed
    # blocks drop their activations in the forward and recompute them in the backward, as they do for
    # real, with the step's parameters (they stay in the module through the backward pass; a block
    # recomputed with the module's own weights made a copy of each). Without checkpointing the two
    # peaks are the same bytes; with it they differ by one tensor the real run holds at its peak and
    # the trace does not: the CPU random-number state a checkpoint keeps for its recomputation, which on
    # a GPU is host memory.
    x = torch.empty(8, 32, 64)
    full = check_module(_Checkpointed(False), x, training=True)
    ck = check_module(_Checkpointed(True), x, training=True)
    assert full.error == 0.0
    assert ck.real_bytes - ck.traced_bytes == torch.get_rng_state().numel(), (ck.traced_bytes, ck.real_bytes)
    assert ck.real_bytes < 0.7 * full.real_bytes and ck.traced_bytes < 0.7 * full.traced_bytes


class _Mixed(nn.Module):
    """Linear layers (autocast runs them in half precision), a GELU and a layer norm (autocast keeps the
    norm in fp32)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.f = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64), nn.LayerNorm(64))
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.f(x).mean(1))


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_autocast_is_traced_to_the_byte(one_thread, amp):
    # Mixed precision: the forward pass (and the loss) under torch.autocast, the weights fp32, the backward
    # pass outside it. The casts of the weights, the half-precision activations autograd saves, the fp32
    # gradients: the trace and the CPU allocator hold the same bytes of operator results at the peak,
    # inference and training. A half-precision GEMM may also take a scratch buffer inside the kernel, whose
    # size depends on the CPU (oneDNN's bf16 path on a CPU with AVX-512 BF16 takes 73-97 KiB here): a
    # kernel's own temporary, which no trace of operator results sees, so the all-allocations peak may only
    # be higher.
    x = torch.empty(8, 32, 64)
    for training in (False, True):
        mixed = check_module(_Mixed(), x, training=training, autocast=amp)
        plain = check_module(_Mixed(), x, training=training)
        assert mixed.traced_bytes == mixed.real_results_bytes, (training, mixed.traced_bytes, mixed.real_results_bytes)
        assert mixed.real_bytes >= mixed.real_results_bytes
        assert plain.traced_bytes == plain.real_bytes
        # half-precision activations: a smaller peak than fp32, measured and traced alike
        assert mixed.real_results_bytes < 0.8 * plain.real_bytes


def test_an_unknown_autocast_dtype_is_refused():
    from costmodel.analysis.memreplay import replay_memory

    with pytest.raises(InvalidInputError, match="autocast must be None or one of fp16, bf16; got 'fp8'"):
        trace_module(_Mixed(), torch.empty(2, 4, 64), autocast="fp8")
    with pytest.raises(InvalidInputError, match="autocast"):
        replay_memory(_Mixed(), "h200", input_shape=(4, 64), autocast="int8")
    with pytest.raises(InvalidInputError, match="transformer workload takes dtype"):
        replay_memory("gpt2", "h200", seq=16, phase="prefill", autocast="fp16")


def test_replay_memory_takes_autocast_and_caches_it_apart():
    from costmodel.analysis.memreplay import replay_memory

    m = _Mixed()
    fp32 = replay_memory(m, "h200", batch=64, input_shape=(128, 64), mode="training")
    amp = replay_memory(m, "h200", batch=64, input_shape=(128, 64), mode="training", autocast="bf16")
    assert amp.allocated_mb < fp32.allocated_mb
    again = replay_memory(m, "h200", batch=64, input_shape=(128, 64), mode="training")
    assert again.allocated_mb == fp32.allocated_mb


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
@pytest.mark.parametrize("amp", [None, "bf16"])
def test_a_language_models_fine_tuning_step_is_traced_to_the_allocator(one_thread, model_type, amp):
    # A transformers decoder given labels computes its own causal-LM loss (logits upcast to fp32, shifted
    # targets, cross entropy); the step drops the output before the backward pass, as a training loop
    # does, then AdamW runs. GPT-2 (learned positions, its Conv1D projections, dropout in training mode)
    # and Llama (rotary positions, grouped-query attention, a gated MLP): the trace and the CPU
    # allocator hold the same operator results at the peak, in fp32 and under bf16 autocast.
    import transformers

    kw = {"gpt2": dict(n_layer=2, n_embd=64, n_head=4, vocab_size=512, n_positions=512),
          "llama": dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                        num_key_value_heads=2, vocab_size=512)}[model_type]
    torch.manual_seed(0)
    # without a KV cache, as the trace builds a registry model (and a training loop runs one)
    cfg = transformers.AutoConfig.for_model(model_type, use_cache=False, **kw)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    model.loss_type = "ForCausalLM"
    # long enough that an attention mask materialized per layer (2 x 256 x 256 floats, which transformers
    # skips for one sequence per row on real tensors) shows: the trace held one until it skipped it too
    # (Llama's peak was 14 % over the allocator's)
    ids = torch.zeros((2, 256), dtype=torch.long)
    c = check_module(model, {"input_ids": ids, "labels": ids}, training=True, optimizer="adamw", autocast=amp)
    assert c.real_results_bytes > 0
    assert abs(c.results_error) < 0.005, (c.traced_bytes, c.real_results_bytes)
    # the step allocates gradients and both moments (three copies of the weights) on top of them
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    assert c.traced_bytes > 2 * params


@pytest.mark.parametrize("targets", [None, "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"])
def test_a_lora_fine_tuning_step_is_traced_to_the_allocator(one_thread, targets):
    # peft's adapters on a Llama: gradients and AdamW moments for the adapters alone, the frozen base's
    # weights read without a gradient, the activations autograd keeps to reach the adapters of earlier
    # layers: the same operator results as the CPU allocator's at the peak
    import transformers

    from costmodel.frontends.hf import apply_lora, lora_spec

    cfg = transformers.AutoConfig.for_model("llama", use_cache=False, num_hidden_layers=2, hidden_size=128,
                                            intermediate_size=256, num_attention_heads=4, num_key_value_heads=2,
                                            vocab_size=512)
    torch.manual_seed(0)
    model = apply_lora(transformers.AutoModelForCausalLM.from_config(cfg), lora_spec(8, targets))
    ids = torch.zeros((2, 256), dtype=torch.long)
    c = check_module(model, {"input_ids": ids, "labels": ids}, training=True, optimizer="adamw")
    assert abs(c.results_error) < 0.005, (c.traced_bytes, c.real_results_bytes)
    full = check_module(transformers.AutoModelForCausalLM.from_config(cfg), {"input_ids": ids, "labels": ids},
                        training=True, optimizer="adamw")
    assert c.traced_bytes < full.traced_bytes  # no gradient or moments for the frozen base


def test_a_checkpointed_fine_tuning_step_is_traced_to_the_allocator(one_thread):
    # transformers' gradient checkpointing (non-reentrant) of a Llama's decoder layers: the trace drops the
    # layers' activations in the forward pass and recomputes them in the backward, as the real step does;
    # the two differ only by the CPU random-number state each live checkpoint keeps (host memory on a GPU)
    import transformers

    from costmodel.frontends.hf import enable_checkpointing

    cfg = transformers.AutoConfig.for_model("llama", use_cache=False, num_hidden_layers=4, hidden_size=128,
                                            intermediate_size=256, num_attention_heads=4, num_key_value_heads=2,
                                            vocab_size=512)
    ids = {"input_ids": torch.zeros((2, 256), dtype=torch.long), "labels": torch.zeros((2, 256), dtype=torch.long)}
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    full = check_module(model, ids, training=True, optimizer="adamw")
    enable_checkpointing(model)
    ck = check_module(model, ids, training=True, optimizer="adamw")
    rng = torch.get_rng_state().numel()
    assert full.real_results_bytes == full.traced_bytes
    assert ck.real_results_bytes - ck.traced_bytes in (rng, 2 * rng, 3 * rng, 4 * rng), \
        (ck.traced_bytes, ck.real_results_bytes)
    assert ck.traced_bytes < 0.7 * full.traced_bytes


_NEW_ARCHS = {  # small configurations of architectures beyond dense decoders
    "t5": (False, dict(d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=16,
                       vocab_size=512)),
    "gemma2": (True, dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, head_dim=16, vocab_size=512, sliding_window=32)),
    "lfm2": (True, dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, vocab_size=512, layer_types=["conv", "full_attention"])),
    "mamba": (True, dict(hidden_size=64, num_hidden_layers=2, state_size=8, vocab_size=512)),
}


@pytest.mark.parametrize("model_type", sorted(_NEW_ARCHS))
def test_architectures_beyond_dense_decoders_are_traced_to_the_allocator(one_thread, model_type):
    # an encoder-decoder (its decoder reads the same tokens), sliding-window attention, a convolution
    # layer beside attention, a selective scan (transformers' reference code): a call and a fine-tuning
    # step hold the same operator results as the CPU allocator at their peaks
    import transformers

    from costmodel.analysis.allocheck import check_decoder
    from costmodel.frontends.hf import model_class

    causal, kw = _NEW_ARCHS[model_type]
    cfg = transformers.AutoConfig.for_model(model_type, use_cache=False, pad_token_id=0, bos_token_id=0,
                                            eos_token_id=0, **kw)
    torch.manual_seed(0)
    model = model_class(cfg, causal).from_config(cfg).eval()
    c = check_decoder(model, batch=2, seq=64, causal=causal)
    assert c.real_results_bytes > 0 and abs(c.results_error) < 0.005, (c.traced_bytes, c.real_results_bytes)
    ids = torch.zeros((2, 32), dtype=torch.long)
    inputs = {"input_ids": ids, "labels": ids, **({} if causal else {"decoder_input_ids": ids})}
    if causal:
        model.loss_type = "ForCausalLM"
    step = check_module(model, inputs, training=True, optimizer="adamw")
    assert abs(step.results_error) < 0.005, (step.traced_bytes, step.real_results_bytes)


@pytest.mark.parametrize("model_type", ["t5", "bart"])
@pytest.mark.parametrize("target_seq", [16, 96])
def test_an_encoder_decoder_with_its_own_target_length_is_traced_to_the_allocator(one_thread, model_type,
                                                                                    target_seq):
    # a source of 48 tokens and a shorter or longer target: the decoder's activations, its cross-attention
    # scores and the logits follow target_seq, the encoder's follow seq; the call and a fine-tuning step
    # (labels of the target's length) hold the same operator results as the CPU allocator at their peaks
    import transformers

    from costmodel.analysis.allocheck import check_decoder
    from costmodel.frontends.hf import model_class

    kw = {"t5": _NEW_ARCHS["t5"][1],
          "bart": dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                       decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=512,
                       max_position_embeddings=128)}[model_type]
    cfg = transformers.AutoConfig.for_model(model_type, use_cache=False, pad_token_id=0, bos_token_id=0,
                                            eos_token_id=0, decoder_start_token_id=0, **kw)
    torch.manual_seed(0)
    model = model_class(cfg, False).from_config(cfg).eval()
    c = check_decoder(model, batch=2, seq=48, target_seq=target_seq)
    same = check_decoder(model, batch=2, seq=48)
    assert c.real_results_bytes > 0 and abs(c.results_error) < 0.005, (c.traced_bytes, c.real_results_bytes)
    assert (c.traced_bytes < same.traced_bytes) == (target_seq < 48)
    ids, tgt = torch.zeros((2, 48), dtype=torch.long), torch.zeros((2, target_seq), dtype=torch.long)
    step = check_module(model, {"input_ids": ids, "labels": tgt, "decoder_input_ids": tgt}, training=True,
                        optimizer="adamw")
    assert abs(step.results_error) < 0.005, (step.traced_bytes, step.real_results_bytes)

