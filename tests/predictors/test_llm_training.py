"""Fine-tuning steps of decoders: ``estimate_llm(mode="training")``, their graph and their allocation trace."""

import json
import subprocess
import sys

import pytest

import costmodel
from costmodel import InvalidInputError
from costmodel.analysis.memreplay import replay_memory
from costmodel.frontends import hf_graph
from costmodel.predictors._llm_timeline import TRAINING_NOTE

#: a two-layer decoder with grouped-query attention: its graphs and traces build in about a second
TINY = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 128, "intermediate_size": 128, "max_position_embeddings": 512}
ENCODER = {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "vocab_size": 128, "intermediate_size": 128, "max_position_embeddings": 512}
MIB = 2**20


@pytest.fixture(scope="module")
def step():
    return costmodel.estimate_llm(TINY, batch=4, seq=64, device="h200", dtype="bf16", mode="training")


@pytest.fixture(scope="module")
def prefill():
    return costmodel.estimate_llm(TINY, batch=4, seq=64, device="h200", dtype="bf16", mode="prefill")


def test_a_training_step_costs_more_than_its_forward_call_and_says_what_it_rests_on(step, prefill):
    assert step.mode == "training" and step.details["optimizer"] == "adamw"
    # forward + backward + optimizer on the timeline: longer than the forward call alone
    assert step.latency_ms > prefill.latency_ms
    assert step.flops == pytest.approx(3 * prefill.flops)
    assert step.tokens_s == pytest.approx(4 * 64 / (step.latency_ms / 1e3))
    # the step holds gradients and optimizer state the inference call never has
    assert step.allocated_mb > prefill.allocated_mb and step.memory_mb > prefill.memory_mb
    assert step.details["memory"]["path"] == "replay"
    assert TRAINING_NOTE in step.assumptions
    assert json.loads(step.to_json())["mode"] == "training"


def test_the_training_graph_carries_the_loss_and_the_step_its_backward_and_optimizer():
    g = hf_graph("llama", TINY, batch=2, seq=16, causal=True, mode="training")
    inf = hf_graph("llama", TINY, batch=2, seq=16, causal=True)
    loss = [n for n in g.nodes if n.op == "aten.cross_entropy_loss"]
    assert len(loss) == 1 and loss[0].kind == "softmax" and loss[0].flops > 0
    assert not any(n.op == "aten.cross_entropy_loss" for n in inf.nodes)
    tl = costmodel.get_predictor("timeline")
    phases = {o["phase"] for o in tl.operator_times(g, "h200", mode="training", optimizer="adamw")}
    assert phases == {"forward", "backward", "optimizer"}


def test_the_trace_holds_weights_gradients_and_both_adam_moments():
    m = replay_memory(TINY, "h200", batch=2, seq=32, mode="training", dtype="fp32", optimizer="adamw")
    inf = replay_memory(TINY, "h200", batch=2, seq=32, phase="prefill", dtype="fp32")
    params = sum(p.numel() for p in _tiny_model().parameters()) * 4 / MIB
    # AdamW's second step starts with weights, gradients and two moments live: four copies of the parameters
    assert m.allocated_mb >= 4 * params
    assert m.path == "replay" and m.peak_phase in ("forward", "backward", "optimizer")
    assert m.allocated_mb > inf.allocated_mb
    sgd = replay_memory(TINY, "h200", batch=2, seq=32, mode="training", dtype="fp32", optimizer="sgd")
    assert sgd.allocated_mb < m.allocated_mb  # plain SGD keeps no moments
    # the vision steps' reserved allowance is applied, and said to be borrowed
    assert any("no transformer training step was measured" in n for n in m.notes)


def _tiny_model():
    from costmodel.frontends.hf import build_hf_model

    return build_hf_model("llama", TINY, causal=True)[0]


def test_bad_training_workloads_are_refused_with_the_reason():
    with pytest.raises(InvalidInputError, match="encoder"):
        costmodel.estimate_llm(ENCODER, batch=2, seq=32, mode="training")
    with pytest.raises(InvalidInputError, match="encoder"):
        replay_memory(ENCODER, "h200", batch=2, seq=32, mode="training")
    with pytest.raises(InvalidInputError, match="optimizer"):
        costmodel.estimate_llm(TINY, batch=2, seq=32, mode="training", optimizer="lion")
    with pytest.raises(InvalidInputError, match="training step is costed in"):
        costmodel.estimate_llm(TINY, batch=2, seq=32, mode="training", dtype="int8")
    with pytest.raises(InvalidInputError, match="predictor='timeline'"):
        costmodel.estimate_llm(TINY, batch=2, seq=32, mode="training", predictor="llm-xgb")
    with pytest.raises(InvalidInputError, match="phase"):
        replay_memory(TINY, "h200", batch=2, seq=32, mode="training", phase="decode")
    with pytest.raises(InvalidInputError, match="mode must be one of"):
        costmodel.estimate_llm(TINY, batch=2, seq=32, mode="finetune")


def test_a_module_without_its_own_loss_is_refused():
    import transformers

    cfg = transformers.AutoConfig.for_model(**TINY)
    import torch

    with torch.device("meta"):
        base = transformers.AutoModel.from_config(cfg)  # no LM head: forward takes no labels
    with pytest.raises(InvalidInputError, match="takes no labels"):
        replay_memory(base, "h200", batch=2, seq=16, mode="training")


def test_the_cli_runs_a_training_step(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(TINY))
    out = subprocess.run([sys.executable, "-m", "costmodel", "llm", str(cfg), "--batch", "2", "--seq", "32",
                          "--mode", "training", "--optimizer", "sgd", "--dtype", "bf16", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["mode"] == "training" and d["latency_ms"] > 0 and d["memory_mb"] > 0
    # --max-batch against a limit below one sequence's memory: none fits, and the table says what one needs
    out = subprocess.run([sys.executable, "-m", "costmodel", "llm", str(cfg), "--batch", "2", "--seq", "32",
                          "--mode", "training", "--max-batch", "--memory-mb", "100"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "max batch    0: one sequence of 32 tokens needs" in out.stdout


def test_lora_adapters_train_their_own_parameters_only(step):
    lora = costmodel.estimate_llm(TINY, batch=4, seq=64, device="h200", dtype="bf16", mode="training", lora_r=4)
    # peft's default targets for Llama: the query (64 -> 64) and value (64 -> 2 KV heads x 16 = 32) projections,
    # each with A (r x in) and B (out x r), in both layers
    assert lora.details["lora"] == {"r": 4, "targets": None, "trainable_params": 2 * 4 * ((64 + 64) + (64 + 32))}
    # no weight gradients or optimizer state for the frozen base, and no backward into its weights
    assert lora.allocated_mb < step.allocated_mb
    assert lora.latency_ms < step.latency_ms
    wide = costmodel.estimate_llm(TINY, batch=4, seq=64, device="h200", dtype="bf16", mode="training", lora_r=4,
                                  lora_targets="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
    assert wide.details["lora"]["trainable_params"] > lora.details["lora"]["trainable_params"]
    # the frozen base's weight gradients are not computed: a forward and the input gradients' backward, two
    # passes of the adapted graph (whose count includes the adapters' own small matmuls) against three
    cfg = {k: v for k, v in TINY.items() if k != "model_type"}
    full_g = hf_graph("llama", cfg, batch=4, seq=64, causal=True, mode="training")
    lora_g = hf_graph("llama", cfg, batch=4, seq=64, causal=True, mode="training", lora={"r": 4, "targets": None})
    assert step.flops == pytest.approx(3 * full_g.flops)
    assert lora.flops == pytest.approx(2 * lora_g.flops) and lora_g.flops > full_g.flops
    assert "LoRA r4 on peft's default modules" in lora.table()
    assert wide.details["lora"]["targets"] == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                      "down_proj"])


def test_bad_lora_settings_are_refused():
    with pytest.raises(InvalidInputError, match="training step"):
        costmodel.estimate_llm(TINY, batch=2, seq=32, mode="prefill", lora_r=8)
    with pytest.raises(InvalidInputError, match="lora_r must be a positive integer"):
        costmodel.estimate_llm(TINY, batch=2, seq=32, mode="training", lora_r=0)
    with pytest.raises(InvalidInputError, match="without a rank"):
        costmodel.estimate_llm(TINY, batch=2, seq=32, mode="training", lora_targets="q_proj")
    with pytest.raises(InvalidInputError, match=r"LoRA adapters.*The model's linear layers: .*q_proj.*v_proj"):
        costmodel.estimate_llm(TINY, batch=2, seq=32, mode="training", lora_r=8, lora_targets="no_such_proj")
    with pytest.raises(InvalidInputError, match="llm-xgb"):
        costmodel.estimate_llm(TINY, batch=2, seq=32, mode="training", lora_r=8, predictor="llm-xgb")
    # a model type peft has no default targets for (a mixture of experts): the error says how to name them
    moe = {"model_type": "mixtral", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": 128, "intermediate_size": 128, "num_local_experts": 4,
           "num_experts_per_tok": 2}
    with pytest.raises(InvalidInputError, match="lora_targets"):
        costmodel.estimate_llm(moe, batch=2, seq=32, mode="training", lora_r=8)


def test_an_unmatched_lora_target_names_gpt2s_conv1d_projections():
    # GPT-2's attention and MLP projections are transformers' Conv1D, which peft adapts (c_attn is its default):
    # the hint names them, not the LM head alone
    gpt2 = {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 128, "n_positions": 64}
    with pytest.raises(InvalidInputError, match=r"The model's linear layers: c_attn, c_fc, c_proj, lm_head\."):
        costmodel.estimate_llm(gpt2, batch=2, seq=32, mode="training", lora_r=8, lora_targets="no_such_proj")


def test_activation_checkpointing_trades_memory_for_a_second_forward(step):
    ck = costmodel.estimate_llm(TINY, batch=4, seq=64, device="h200", dtype="bf16", mode="training",
                                checkpointing=True)
    # both decoder layers are checkpointed: their forward operators are costed again in the backward pass
    assert ck.details["checkpointing"]["blocks"] == 2
    assert ck.latency_ms == pytest.approx(step.latency_ms + ck.details["checkpointing"]["ms"])
    assert ck.details["checkpointing"]["ms"] > 0
    assert ck.allocated_mb < step.allocated_mb  # the layers' activations are not kept through the forward
    assert ck.flops == pytest.approx(4 / 3 * step.flops)  # and the forward runs twice
    assert "activation checkpointing of 2 layers" in ck.table()
    with pytest.raises(InvalidInputError, match="training step"):
        costmodel.estimate_llm(TINY, batch=2, seq=32, mode="prefill", checkpointing=True)


def test_the_largest_batch_that_fits_is_found_with_a_few_traces():
    mem = {b: replay_memory(TINY, "h200", batch=b, seq=256, mode="training", dtype="bf16", optimizer="adamw").memory_mb
           for b in (1, 5, 6, 7, 8)}
    # a limit between two neighbouring batches of this workload whose memories differ (the allocator's
    # 2 MiB segments can give neighbours the same reserved memory): b fits, b + 1 does not
    b = next(b for b in (6, 5, 7) if mem[b] < mem[b + 1])
    limit = (mem[b] + mem[b + 1]) / 2
    assert mem[b] < limit < mem[b + 1]
    fit = costmodel.largest_llm_batch(TINY, seq=256, mode="training", dtype="bf16", memory_mb=limit)
    assert fit["batch"] == b and fit["memory_mb"] == pytest.approx(mem[b])
    assert fit["next_memory_mb"] == pytest.approx(mem[b + 1]) and fit["limit_mb"] == limit
    assert len(fit["traced"]) <= 8  # a guess from batches 1 and 2, then a bracket around it
    none = costmodel.largest_llm_batch(TINY, seq=256, mode="training", dtype="bf16", memory_mb=mem[1] / 2)
    assert none["batch"] == 0 and none["next_memory_mb"] == pytest.approx(mem[1])
    # the device's own memory when no limit is given: a tiny model fits up to the search's cap
    assert costmodel.largest_llm_batch(TINY, seq=32, mode="prefill", limit=64)["batch"] == 64


def test_largest_batch_refuses_bad_limits(capsys):
    with pytest.raises(InvalidInputError, match="memory_mb must be a positive number"):
        costmodel.largest_llm_batch(TINY, seq=32, memory_mb=-1)
    with pytest.raises(InvalidInputError, match="training step"):
        costmodel.largest_llm_batch(TINY, seq=32, mode="prefill", lora_r=8)
    from costmodel.cli import main

    assert main(["llm", "gpt2", "--batch", "1", "--seq", "32", "--memory-mb", "1000"]) != 0
    assert "add --max-batch" in capsys.readouterr().err


def test_estimate_of_a_module_given_labels_costs_its_fine_tuning_step():
    # the general estimate() of a transformers module called with labels: the graph carries the loss and
    # the memory trace takes the module's own loss, as estimate_llm's training mode does
    import torch
    import transformers

    cfg = transformers.AutoConfig.for_model(use_cache=False, **TINY)
    with torch.device("meta"):
        m = transformers.AutoModelForCausalLM.from_config(cfg)
    ids = torch.zeros((2, 64), dtype=torch.long, device="meta")
    step = costmodel.estimate(m, batch=2, inputs={"input_ids": ids, "labels": ids}, device="h200", mode="training",
                              optimizer="adamw")
    call = costmodel.estimate(m, batch=2, inputs={"input_ids": ids}, device="h200")
    assert step.details["memory"]["path"] == "replay"
    assert step.allocated_mb > call.allocated_mb and step.latency_ms > call.latency_ms


def test_mixed_precision_is_the_fp32_models_step_under_autocast():
    """autocast='bf16' with dtype='fp32' (a Trainer's bf16=True): the graph gets autocast's casts (this tiny,
    host-bound step pays them as more operators to dispatch) and the same FLOPs; the trace runs under autocast
    with fp32 weights, gradients and Adam moments, so more memory than the model converted to bf16; the
    memory is the replay of that very step."""
    kw = dict(batch=4, seq=64, device="h200", mode="training")
    amp = costmodel.estimate_llm(TINY, dtype="fp32", autocast="bf16", **kw)
    fp32 = costmodel.estimate_llm(TINY, dtype="fp32", **kw)
    half = costmodel.estimate_llm(TINY, dtype="bf16", **kw)
    assert amp.details["autocast"] == "bf16" and any(a.startswith("autocast bf16") for a in amp.assumptions)
    assert amp.details["graph"]["nodes"] > fp32.details["graph"]["nodes"] and amp.flops == fp32.flops
    assert amp.allocated_mb > half.allocated_mb
    m = replay_memory(TINY, "h200", batch=4, seq=64, mode="training", dtype="fp32", optimizer="adamw",
                      autocast="bf16")
    assert amp.memory_mb == pytest.approx(m.memory_mb)
    assert "autocast" not in fp32.details
    assert "bf16 autocast over fp32 weights" in amp.table() and "autocast" not in fp32.table()
    with pytest.raises(InvalidInputError, match="autocast runs an fp32 model"):
        costmodel.estimate_llm(TINY, dtype="bf16", autocast="bf16", **kw)
    with pytest.raises(InvalidInputError, match="costed for a training step"):
        costmodel.estimate_llm(TINY, batch=4, seq=64, mode="prefill", dtype="fp32", autocast="bf16")
    with pytest.raises(InvalidInputError, match="autocast must be None or one of"):
        costmodel.estimate_llm(TINY, dtype="fp32", autocast="fp8", **kw)
    with pytest.raises(InvalidInputError, match="llm-xgb predictor has none"):
        costmodel.estimate_llm(TINY, dtype="fp32", autocast="bf16", predictor="llm-xgb", **kw)
    fit = costmodel.largest_llm_batch(TINY, seq=64, mode="training", dtype="fp32", autocast="bf16",
                                      memory_mb=m.memory_mb + 1)
    assert fit["batch"] >= 4


def test_largest_batch_latency_is_the_asked_predictors():
    """``costmodel llm --predictor llm-xgb --max-batch`` gave the answer's latency by the timeline."""
    fit = costmodel.largest_llm_batch(TINY, seq=32, mode="prefill", limit=64, predictor="llm-xgb")
    est = costmodel.estimate_llm(TINY, batch=fit["latency_batch"], seq=32, mode="prefill", predictor="llm-xgb")
    assert fit["latency_ms"] == pytest.approx(est.latency_ms)
