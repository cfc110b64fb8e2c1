"""Transformer workloads through the timeline predictor: what ``costmodel llm`` answers with.

A transformer workload (a config, a batch, a sequence length, a phase) is
built into the same CostGraph the measured rows were fitted on (encoder
forward and prefill: the model on ``(batch, seq)`` token ids; decode: one
token per sequence against a KV cache of ``seq`` tokens), and that graph goes
through the shipped timeline: every operator under its roofline with a
learned efficiency, composed on the host and device lanes, plus the decode
loop's own host cost for a decode step. Memory comes from the allocation
trace of the same workload replayed through the caching allocator.

Leave-one-model-out on the 206 H200 transformer rows, this is ahead of the
XGBoost workload model in throughput and energy (``docs/results.md``), and
the replay is ahead of its learned memory on rows of unseen models. The price
is time: the first estimate of a (model, batch, seq, phase) builds its graph
(seconds for a 7B decoder; cached on disk after that), where the XGBoost
answers from closed-form features in a millisecond. ``predictor="llm-xgb"``
keeps that path for sweeps. Quantized dtypes (int8, int4) have no graph cast
and no measured rows: they are answered by the XGBoost, which says so.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._errors import InvalidInputError
from ..devices import get_device
from ..estimate import LLMEstimate, finish_estimate

#: dtypes the timeline's graphs can be cast to (the rest go to the XGBoost)
GRAPH_DTYPES = ("fp32", "fp16", "bf16")


class TimelineLLMPredictor:
    """The timeline over a transformer workload's graph, with the replayed memory.

    ``timeline``: a fitted :class:`~costmodel.predictors.TimelinePredictor` (default: the shipped one);
    ``method``: the frontend's capture method for the graphs (``export``, as the rows were fitted).
    """

    name = "llm-timeline"
    version = "1"

    def __init__(self, timeline=None, *, method: str = "export") -> None:
        self._timeline = timeline
        self.method = method

    @classmethod
    def default(cls) -> "TimelineLLMPredictor":
        return cls()

    @property
    def timeline(self):
        """The fitted timeline: the one given, else the shipped ``timeline-llm`` (fitted on the vision and
        the transformer rows, decode steps included)."""
        if self._timeline is None:
            self._timeline = shipped_timeline_llm()
        elif isinstance(self._timeline, (str, Path)):
            from ._timeline import TimelinePredictor

            self._timeline = TimelinePredictor.load(self._timeline)
        return self._timeline

    def _timeline_for(self, dev):
        """A CPU goes to the shipped vision timeline's CPU operator model (profiled operators, transformers
        among them), which the GPU-fitted ``timeline-llm`` does not carry."""
        from ._optable import _is_cpu

        if self._timeline is None and _is_cpu(dev):
            from ._registry import get_predictor

            return get_predictor("timeline")
        return self.timeline

    def graph(self, w, lora: dict | None = None, ssm_kernels: str = "reference"):
        """The CostGraph of an :class:`~costmodel.features.LLMWorkload` (built once, then cached); ``lora``:
        a training step's adapters (:func:`~costmodel.frontends.hf.lora_spec`); ``ssm_kernels``: Mamba's
        selective scans as transformers' ``reference`` loop or ``fused`` kernels."""
        from .._errors import UnsupportedOpWarning
        from ..analysis import cast_graph
        from ..frontends import hf_graph

        s = w.spec
        with warnings.catch_warnings():  # operators outside the vocabulary are listed in the assumptions
            warnings.simplefilter("ignore", UnsupportedOpWarning)
            g = hf_graph(s.model_type, s.config, batch=w.batch, seq=w.seq, causal=s.causal, method=self.method,
                         decode=w.mode == "decode", mode="training" if w.mode == "training" else "inference",
                         lora=lora, target_seq=w.target_seq, ssm_kernels=ssm_kernels)
        return cast_graph(g, w.dtype) if g.meta.get("dtype") != w.dtype else g

    def predict(self, model: Any, *, batch: int, seq: int, device="h200", mode: str | None = None,
                dtype: str = "fp16", region: str = "world", carbon_intensity_g_per_kwh: float | None = None,
                price_per_gpu_hour_usd: float | None = None, provider: str | None = None,
                instance: str | None = None, host=None, optimizer: str = "adamw", lora_r: int | None = None,
                lora_targets=None, checkpointing: bool = False, autocast: str | None = None,
                target_seq: int | None = None, ssm_kernels: str = "reference",
                cuda_graphs: bool = False) -> LLMEstimate:
        """Estimate one workload; see :class:`~costmodel.LLMEstimate` for the fields. ``host``: a host
        profile (``costmodel calibrate``) for the timeline's host lane; ``cuda_graphs``: the step replayed from one
        CUDA graph (``TimelinePredictor.with_cuda_graphs``). ``mode="training"``: one fine-tuning step of a decoder
        or an encoder-decoder (its own loss on the ``(batch, seq)`` tokens, backward, ``optimizer``: ``adamw`` by
        default, ``adam``, ``sgd``, ``sgd_momentum``); the model's weights are in ``dtype``.
        ``lora_r``: LoRA adapters of that rank (``peft``, alpha ``2 r``) on ``lora_targets`` (module names;
        default peft's for the model type), the base weights frozen. ``checkpointing``: activation
        checkpointing of the decoder layers (non-reentrant): their forward pass runs again in the backward.
        ``autocast``: ``fp16`` or ``bf16`` mixed precision for a training step of an fp32 model (``dtype="fp32"``):
        the forward pass and the loss under ``torch.autocast``, the weights, gradients and optimizer state in
        fp32, as a Trainer's ``bf16=True`` runs it. ``target_seq``: an encoder-decoder's decoder tokens (default
        ``seq``): teacher-forced in ``forward`` and ``training`` (the labels), generated so far in ``decode``.
        ``ssm_kernels="fused"``: a Mamba-family model's selective scans as the fused kernels a GPU with
        ``mamba_ssm`` runs (one per layer), not transformers' reference loop over the tokens."""
        from ..estimate import replay_into
        from ..frontends.hf import check_ssm_kernels
        from ..frontends.hf import amp_option, step_options
        from ..features import llm_feature_vector, llm_workload
        from ._llm_xgb import XGBLLMPredictor, compose_llm_estimate
        from ._base import validate_optimizer

        w = llm_workload(model, batch=batch, seq=seq, mode=mode, dtype=dtype, target_seq=target_seq)
        dev = get_device(device)
        training = w.mode == "training"
        lora = step_options(w.mode, lora_r, lora_targets, checkpointing)
        amp = amp_option(w.mode, w.dtype, autocast)
        if training:
            optimizer = validate_optimizer(optimizer)
        kw = dict(region=region, carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh,
                  price_per_gpu_hour_usd=price_per_gpu_hour_usd, provider=provider, instance=instance)
        if training and w.dtype not in GRAPH_DTYPES:
            raise InvalidInputError(f"a training step is costed in {', '.join(GRAPH_DTYPES)}; got dtype {w.dtype!r}")
        if w.dtype not in GRAPH_DTYPES and target_seq is not None:
            raise InvalidInputError(f"target_seq is costed in {', '.join(GRAPH_DTYPES)} graphs; got dtype {w.dtype!r}")
        if w.dtype not in GRAPH_DTYPES:
            est = XGBLLMPredictor.default().predict(w.spec, batch=batch, seq=seq, device=dev, mode=w.mode,
                                                    dtype=w.dtype, **kw)
            est.assumptions = [*est.assumptions, f"{w.dtype}: answered by the llm-xgb predictor (the timeline "
                                                 f"costs {', '.join(GRAPH_DTYPES)} graphs only)"]
            return est
        tl = self._timeline_for(dev)
        if host is not None:
            from ..measure.host import load_host

            tl = tl.with_host(load_host(host))
        if cuda_graphs:
            tl = tl.with_cuda_graphs()
        # the closed-form costs (of the forward pass for a training step); an unknown model type fails here
        _, c = llm_feature_vector(replace(w, mode="prefill" if w.spec.causal else "forward") if training else w, dev)
        g = self.graph(w, lora, check_ssm_kernels(ssm_kernels))
        if amp:
            from ..analysis import apply_autocast

            g = apply_autocast(g, amp)
        # parameters and FLOPs as the graph counts them: exact for every architecture (state-space layers,
        # experts, encoder-decoders), where the closed form knows dense attention blocks only
        c = {**c, "params": float(g.params), "flops": float(g.flops)}
        if training:  # a step: the forward pass and a backward pass of about twice its work (once for the
            # input gradients alone where LoRA freezes the base), plus the recomputed forward when checkpointing
            c["flops"] *= 3 - bool(lora) + bool(checkpointing)
        e = tl.predict(g, dev, mode="training" if training else "inference",
                       **({"optimizer": optimizer} if training else {}))
        recompute = _recompute_ms(tl, g, dev, optimizer) if checkpointing else None
        lat = e.latency_ms + (recompute["ms"] if recompute else 0.0)
        est = compose_llm_estimate(w, dev, c, lat, e.memory_mb, e.power_w, region=region,
                                   intensity=carbon_intensity_g_per_kwh, price=price_per_gpu_hour_usd,
                                   provider=provider, instance=instance, predictor=self.name, version=self.version)
        # the finishing step below says which devices the labels come from, once, for this predictor
        kept = [a for a in e.assumptions if not a.startswith("no measured rows for ")]
        est.assumptions = list(dict.fromkeys([*kept, *est.assumptions]))
        # no intervals: the timeline's come from held-out vision families, which say nothing of transformers
        est.details.update(ops=e.details.get("ops"), timeline_analytic=e.details.get("analytic"),
                           graph={"nodes": len(g.nodes), "kernels": g.num_kernels},
                           **({"cuda_graphs": True} if cuda_graphs else {}))
        if w.target_seq is not None:
            est.details["target_seq"] = w.target_seq
        if w.mode == "decode":  # the step's inputs after its tokens are the cache's tensors, at their true shapes
            from ..llm import DTYPE_BYTES

            elems = sum(int(np.prod(i.shape)) for i in g.inputs[int(g.meta.get("cache_inputs_from", 1)):])
            est.details["cache_mb"] = elems * DTYPE_BYTES[w.dtype] / 2**20
        # memory from the workload's allocation trace, as estimate() does for a module
        if training:
            est = replay_into(est, w.spec, dev, batch=w.batch, mode="training", dtype=w.dtype, optimizer=optimizer,
                              seq=w.seq, phase=None, lora=lora, checkpointing=checkpointing, autocast=amp,
                              target_seq=w.target_seq, ssm_kernels=ssm_kernels)
            _step_details(est, g, optimizer=optimizer, amp=amp, lora=lora, recompute=recompute)
        else:
            est = replay_into(est, w.spec, dev, batch=w.batch, mode="inference", dtype=w.dtype, optimizer="adam",
                              seq=w.seq, phase=w.mode, target_seq=w.target_seq, ssm_kernels=ssm_kernels)
        _kernel_notes(est, ssm_kernels)
        return _finished(est, dev, self.version, tl, g)

    def predict_many(self, workloads: Sequence, device="h200") -> np.ndarray:
        """``(n, 3)`` latency_ms, memory_mb, power_w of :class:`~costmodel.features.LLMWorkload` s (one graph
        per workload: slow the first time; the XGBoost's ``predict_many`` answers sweeps in milliseconds)."""
        from ._llm_xgb import llm_workloads

        out = []
        device = get_device(device)  # an unknown device fails once, before any workload
        for i, w in enumerate(llm_workloads(workloads)):
            try:
                e = self.predict(w.spec, batch=w.batch, seq=w.seq, device=device, mode=w.mode, dtype=w.dtype,
                                 target_seq=w.target_seq)
            except InvalidInputError as ex:
                raise InvalidInputError(f"predict_many: item {i} ({w.spec.name}, {w.mode}): {ex}") from None
            out.append((e.latency_ms, e.memory_mb, e.power_w))
        return np.asarray(out, np.float64).reshape(-1, 3)


def _recompute_ms(tl, graph, dev, optimizer: str) -> dict:
    """What activation checkpointing adds to a step: the forward operators of the checkpointed blocks
    (``graph.meta["checkpoint_blocks"]``) run again in the backward pass, on both lanes; the longer lane's
    share is added (ms)."""
    blocks = tuple(graph.meta.get("checkpoint_blocks") or ())
    if not blocks:
        raise InvalidInputError("this model's graph names no checkpointed blocks (transformers' decoder layers)")
    inside = {n.id for n in graph.nodes if n.scope and any(n.scope == b or n.scope.startswith(b + ".") for b in blocks)}
    host = dev_ms = 0.0
    for o in tl.operator_times(graph, dev, mode="training", optimizer=optimizer):
        if o["phase"] == "forward" and o["node"] in inside:
            dev_ms += o["device_ms"]
            host += o["host_ms"] or 0.0
    return {"blocks": len(blocks), "device_ms": dev_ms, "host_ms": host, "ms": max(dev_ms, host)}


def _step_details(est, graph, *, optimizer: str, amp, lora, recompute) -> None:
    """What a training step's estimate says of its recipe (in place): the optimizer, autocast, LoRA and
    checkpointing, in ``details`` and in the assumptions."""
    est.assumptions = [*est.assumptions, TRAINING_NOTE]
    if amp:
        est.details["autocast"] = amp
        est.assumptions = [*est.assumptions, amp_note(amp)]
    est.details["optimizer"] = optimizer
    if lora:
        est.details["lora"] = {**lora, "trainable_params": _trainable(graph)}
    if recompute:
        est.details["checkpointing"] = recompute
        est.assumptions = [*est.assumptions, CHECKPOINT_NOTE]


def _finished(est, dev, version: str, tl, g):
    """``finish_estimate`` for the devices ``tl`` was trained on, its MIG pick holding the replayed memory
    interval's upper end, as the replay picked it (not the point estimate alone)."""
    iv = est.memory_mb_interval
    return finish_estimate(est, dev, version=version, meta={"devices": tl.params.trained_on.get("devices", [])},
                           graph=g, margin_mb=max(0.0, iv[1] - est.memory_mb) if iv else 0.0)


def _kernel_notes(est, ssm_kernels: str) -> None:
    """Say (in place) which fused kernels an estimate costed as transformers' reference code (the allocation
    trace names them), and where Mamba's selective scans were costed as fused kernels."""
    from ..frontends.hf import REFERENCE_NOTE

    ref = [n[len(REFERENCE_NOTE):] for n in (est.details.get("memory") or {}).get("notes", ())
           if n.startswith(REFERENCE_NOTE)]
    if ref:
        est.assumptions = [*est.assumptions, reference_note(ref[0])]
    if ssm_kernels == "fused":
        est.details["ssm_kernels"] = "fused"
        est.assumptions = [*est.assumptions, FUSED_SSM_NOTE]


def _trainable(graph) -> int:
    """Parameters the step updates: the graph's parameters less its frozen ones."""
    return int(graph.params - int(graph.meta.get("frozen_params") or 0))


#: what a transformer training step's estimate rests on (no measured row is one)
TRAINING_NOTE = ("no transformer training step was measured: its latency and energy extrapolate the timeline "
                 "fitted on vision training steps and transformer inference calls; its memory is the step's "
                 "allocation trace (checked against the CPU allocator)")


#: how a checkpointed step's latency is composed
CHECKPOINT_NOTE = ("activation checkpointing: the checkpointed blocks' forward operators are costed again, their "
                   "longer lane (host or device) added to the step's latency")


def amp_note(amp: str) -> str:
    """What a mixed-precision transformer step rests on."""
    return (f"autocast {amp}: the fp32 model's step with CUDA autocast's operator lists applied to its graph "
            f"(GEMMs and attention in {amp} after a cast of each fp32 operand, its fp32 list in fp32) and its "
            "allocation trace run under autocast (fp32 weights, gradients and optimizer state); no measured row "
            "ran autocast")


#: what an estimate with Mamba's fused selective scans rests on
FUSED_SSM_NOTE = ("selective scans costed as mamba_ssm's fused kernels (one operator per layer and call, its "
                  "operands read and written once, what the kernels keep for the backward pass allocated); the "
                  "projections and convolution around them as transformers runs them; no measured row has a "
                  "state-space layer")


def reference_note(kernels: str) -> str:
    """What an estimate rests on when transformers ran reference code in place of fused kernels."""
    return (f"costed as transformers' reference PyTorch code for {kernels} (a loop of small operators "
            "over the sequence or its chunks): a GPU with the fused kernels' package installed runs them as a few "
            "kernels, so its latency, energy and activation memory are likely lower than estimated here")


def shipped_timeline_llm():
    """The shipped ``timeline-llm`` artifact (loaded once, then cached; a handle on it per call)."""
    from .._errors import ModelLoadError
    from ._artifacts import artifact_dir, cached_artifact
    from ._timeline import TimelinePredictor

    path = artifact_dir("timeline-llm")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"no timeline-llm artifact in {path}; build it with "
                             "`costmodel train --predictor timeline-llm --to-package`")
    return cached_artifact("timeline", path, TimelinePredictor.load)


#: what ``estimate_llm(predictor=...)`` and ``costmodel llm --predictor`` take
LLM_PREDICTORS = ("timeline", "llm-xgb")


def default_llm_predictor() -> TimelineLLMPredictor:
    """The transformer model ``costmodel llm`` uses: the shipped timeline over the workload's graph."""
    return get_llm_predictor("timeline")


def get_llm_predictor(name):
    """A transformer predictor by name (``"timeline"``, the default, or ``"llm-xgb"``), a trained artifact's
    folder (``costmodel train --predictor timeline-llm`` or ``llm-xgb -o DIR``: a timeline folder is used
    as the transformer timeline, an ``llm-xgb`` folder as the XGBoost), or ``name`` itself when it is
    already one (an object with the transformer ``predict``)."""
    from .._errors import InvalidInputError

    if name is None:
        name = "timeline"
    if not isinstance(name, (str, Path)):
        return name
    key = str(name).strip().lower()
    if key in ("timeline", "llm-timeline"):
        return TimelineLLMPredictor.default()
    if key == "llm-xgb":
        from ._llm_xgb import XGBLLMPredictor

        return XGBLLMPredictor.default()
    if Path(name).is_dir():
        return _llm_artifact(Path(name))
    raise InvalidInputError(f"unknown transformer predictor {str(name)!r}; choose one of "
                            f"{', '.join(LLM_PREDICTORS)}, or a trained timeline-llm or llm-xgb artifact's folder")


def _llm_artifact(path: Path):
    """The transformer predictor a trained artifact's folder holds (its ``config.json`` names the kind);
    the predictor's ``artifact`` is the folder, which its estimates name."""
    import json

    from .._errors import ArtifactError

    try:
        kind = json.loads((path / "config.json").read_text()).get("predictor")
    except (OSError, ValueError, AttributeError) as e:
        raise ArtifactError(f"{path / 'config.json'}: not a trained predictor's config ({e})") from None
    if kind == "timeline":
        from ._timeline import TimelinePredictor

        pred = TimelineLLMPredictor(TimelinePredictor.load(path))
    elif kind == "llm-xgb":
        from ._llm_xgb import XGBLLMPredictor

        pred = XGBLLMPredictor.load(path)
    else:
        raise ArtifactError(f"{path} holds a {kind!r} predictor; a transformer estimate takes a timeline "
                            "(costmodel train --predictor timeline-llm) or an llm-xgb artifact")
    pred.artifact = str(path.resolve())
    return pred
