"""Predictors: objects that turn a workload + device into an :class:`~costmodel.Estimate`.

One model per module: ``_analytic`` (roofline physics), ``_dippm`` (the GNN
predictors, DIPPM the shipped one), ``_trappm`` (DIPPM + a pretrained graph
autoencoder, ``_gae``), ``_xgb_static`` (XGBoost on static features),
``_gnnllm`` (GraphMAE encoder, ``_graphmae``, + a language model),
``_timeline`` (per-operator host/device timeline, with the CPU operator model
of ``_opmodel``), ``_llm_xgb`` (XGBoost on transformer workloads, with the
numpy tree evaluator of ``_trees``) and ``_llm_timeline`` (transformer
workloads through the timeline, ``costmodel llm``'s default).  :mod:`._artifacts` holds the shipped
artifacts' folder, the explicit default and the one cache of loaded models;
:mod:`._registry` the names.  The classes below are imported on first use.
"""

from __future__ import annotations

from importlib import import_module

from ..estimate import Estimate
from ._artifacts import (
    ARTIFACTS_DIR,
    DEFAULT_ORDER,
    DEFAULT_PREDICTOR,
    ShippedArtifact,
    artifact_dir,
    cached_artifact,
    clear_artifact_cache,
)
from ._base import MODES, OPTIMIZERS, Predictor, conformal_quantile, graph_mode, validate_mode, validate_optimizer
from ._registry import (
    available_predictors,
    default_fallback_note,
    get_predictor,
    load_predictor,
    read_artifact_config,
    register_predictor,
    with_cuda_graphs,
    with_host_profile,
)

#: public names defined by implementation modules (imported on first use)
_LAZY = {
    "AnalyticPredictor": "._analytic",
    "graph_assumptions": "._analytic",
    "GNNConfig": "._dippm",
    "GNNPredictor": "._dippm",
    "DIPPMPredictor": "._dippm",
    "GNN_CONFIG_LATER": "._dippm",
    "NNLQP": "._dippm",
    "TARGETS": "._dippm",
    "FeatureNorm": "._dippm",
    "safe_std": "._dippm",
    "GraphAutoencoder": "._gae",
    "GAEConfig": "._gae",
    "GraphMAE": "._graphmae",
    "GraphMAEConfig": "._graphmae",
    "TraPPMPredictor": "._trappm",
    "TRAPPM_TARGETS": "._trappm",
    "trappm_config": "._trappm",
    "XGBStaticPredictor": "._xgb_static",
    "GNNLLMConfig": "._gnnllm",
    "GNNLLMPredictor": "._gnnllm",
    "lora_parameter_count": "._gnnllm",
    "GNNLLMNet": "._nets",
    "PromptTokenizer": "._prompts",
    "tiny_tokenizer": "._prompts",
    "graph_summary": "._prompts",
    "SUMMARY_PROMPT": "._prompts",
    "TimelineConfig": "._timeline",
    "TimelinePredictor": "._timeline",
    "interval_table": "._timeline_start",
    "OpTimeline": "._opmodel",
    "op_arrays": "._opmodel",
    "load_op_dataset": "._opmodel",
    "row_graph": "._opmodel",
    "cpu_target": "._opmodel",
    "fit_stream_line": "._skinny",
    "skinny_kernels": "._skinny",
    "STREAM_START_US": "._skinny",
    "STREAM_SHARE": "._skinny",
    "DeviceFigures": "._opmodel",
    "op_bound_s": "._opmodel",
    "norm_rows": "._optable",
    "element_bound_s": "._optable",
    "MEASURED_ELEMENT_RATES": "._optable",
    "batch_norm_kernels": "._launches",
    "conv_kernels": "._launches",
    "MEASURED_CONV_KERNELS": "._launches",
    "kernel_ceilings": "._optable",
    "cuda_core_conv_reading": "._convreading",
    "node_dtype": "._opmodel",
    "OpRun": "._timeline_ops",
    "packaged_op_runs": "._timeline_ops",
    "workload_key": "._timeline_ops",
    "XGBLLMPredictor": "._llm_xgb",
    "LLM_TARGETS": "._llm_xgb",
    "LLM_DEFAULT_PARAMS": "._llm_xgb",
    "workload_of_row": "._llm_xgb",
    "HELD_SEQ_FROM": "._llm_xgb",
    "default_llm_predictor": "._llm_timeline",
    "get_llm_predictor": "._llm_timeline",
    "TimelineLLMPredictor": "._llm_timeline",
    "LLM_PREDICTORS": "._llm_timeline",
    "TreeEnsemble": "._trees",
    "train_booster": "._trees",
}

__all__ = [
    "ARTIFACTS_DIR", "DEFAULT_ORDER", "DEFAULT_PREDICTOR", "Estimate", "MODES", "OPTIMIZERS", "Predictor",
    "ShippedArtifact", "artifact_dir", "available_predictors", "cached_artifact", "clear_artifact_cache", "conformal_quantile",
    "default_fallback_note", "get_predictor", "load_predictor", "read_artifact_config", "register_predictor",
    "with_cuda_graphs",
    "with_host_profile",
    "graph_mode", "validate_mode", "validate_optimizer",
]
__all__ += list(_LAZY)


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(mod, __name__), name)
    globals()[name] = value
    return value
