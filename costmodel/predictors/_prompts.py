"""The text side of the GNN+LLM predictor: prompts, graph summaries and the tokenizer.

The language model reads a prompt describing the workload and the device
(:func:`prompt_text`; :func:`numeric_prompt` is the same numbers as a vector
for the text-free baseline) with the graph's embedding spliced in between
``GRAPH_OPEN`` and ``GRAPH_CLOSE``; pretraining stage 2 teaches it to write
:func:`graph_summary`.  The built-in tokenizer is a word-level one over
everything these texts can say (:func:`tiny_tokenizer`); :class:`PromptTokenizer` gives
it and a Hugging Face tokenizer one face.
"""

from __future__ import annotations

import math

from ..devices import HARDWARE_FEATURE_NAMES, get_device
from ..estimate import Estimate

GRAPH_OPEN, GRAPH_CLOSE = "<graph>", "</graph>"
SUMMARY_PROMPT = "summarise the graph"
_SPECIALS = ["[PAD]", "[UNK]", "[EOS]", GRAPH_OPEN, GRAPH_CLOSE]


def _num(v: float) -> str:
    return f"{float(v):.3g}"


def prompt_text(est: Estimate) -> str:
    """The workload + hardware description the LM reads (from an analytic Estimate)."""
    dev = get_device(est.device)
    hw = " ".join(f"{k} {_num(v)}" for k, v in dev.hardware_features().items())
    return (f"predict cost . device {dev.name} {hw} . batch {est.batch or 1} mode {est.mode} "
            f"dtype {est.dtype} .")


def numeric_prompt(est: Estimate) -> list[float]:
    """The prompt's numbers as a vector (the ``backbone="none"`` baseline's input)."""
    from ..ir import dtype_bytes

    dev = get_device(est.device)
    return ([math.log1p(v) for v in dev.hardware_features().values()]
            + [math.log1p(est.batch or 1), 1.0 if est.mode == "training" else 0.0, float(dtype_bytes(est.dtype))])


def graph_summary(graph, top: int = 5) -> str:
    """A short text summary of a CostGraph (the stage-2 target)."""
    kinds = sorted(graph.op_counts(include_views=False).items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    ops = " ".join(f"{k} {c}" for k, c in kinds)
    return (f"nodes {graph.num_nodes} edges {graph.num_edges} batch {graph.meta.get('batch') or 1} "
            f"flops {_num(graph.flops)} params {_num(graph.params)} ops {ops} .")


def _vocab_words() -> list[str]:
    """Everything the prompts and summaries can say, before pre-tokenization."""
    from ..devices import list_devices
    from ..ir import OP_KINDS

    words = ["predict cost . device batch mode dtype inference training fp32 fp16 bf16 tf32 fp64 int8 fp8",
             SUMMARY_PROMPT, "nodes edges flops params ops e + - . , : ( ) / _ %", *map(str, range(10))]
    words += list(OP_KINDS) + list(HARDWARE_FEATURE_NAMES) + [d.name for d in list_devices()]
    return words


def tiny_tokenizer():
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel

    pre = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)])
    pieces = sorted({p for w in _vocab_words() for p, _ in pre.pre_tokenize_str(w)})
    vocab = {t: i for i, t in enumerate(_SPECIALS + [p for p in pieces if p not in _SPECIALS])}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre
    return tok


class PromptTokenizer:
    """A uniform face over a ``tokenizers`` word-level tokenizer and a Hugging Face tokenizer."""

    def __init__(self, raw, hf: bool):
        self.raw, self.hf = raw, hf
        if hf:
            raw.add_special_tokens({"additional_special_tokens": [GRAPH_OPEN, GRAPH_CLOSE]})
            if raw.pad_token is None:
                raw.pad_token = raw.eos_token or raw.unk_token
            self.pad_id = raw.pad_token_id
            self.eos_id = raw.eos_token_id if raw.eos_token_id is not None else self.pad_id
            self.open_id, self.close_id = raw.convert_tokens_to_ids([GRAPH_OPEN, GRAPH_CLOSE])
        else:
            self.pad_id, self.eos_id = raw.token_to_id("[PAD]"), raw.token_to_id("[EOS]")
            self.open_id, self.close_id = raw.token_to_id(GRAPH_OPEN), raw.token_to_id(GRAPH_CLOSE)

    def __len__(self) -> int:
        return len(self.raw) if self.hf else self.raw.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        if self.hf:
            return list(self.raw(text, add_special_tokens=False)["input_ids"])
        return self.raw.encode(text).ids
