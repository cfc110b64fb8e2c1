"""Features for the learned predictors: of a CostGraph (:mod:`.graph`) and of a transformer workload (:mod:`.llm`).

The IR describes a model; this package encodes it for learned models: node
matrices, edge indices and static vectors of a graph on a device, and the
closed-form costs, graph structure and feature vector of a transformer
workload.
"""

from .graph import (
    ANALYTIC_NAMES,
    FEATURE_SCHEMA_VERSION,
    NODE_FEATURE_NAMES,
    GraphFeatures,
    edge_index,
    featurize,
    node_arrays,
    node_features,
    schema_fingerprint,
    static_feature_names,
    static_features,
)
from .llm import (
    EAGER_ATTENTION_TYPES,
    LLM_WORKLOAD_MODES,
    STRUCTURE_PATH,
    LLMWorkload,
    analytic_costs,
    check_model_type,
    graph_structure,
    llm_feature_names,
    llm_feature_vector,
    llm_workload,
    structure_key,
    structure_table,
    write_structure_table,
)

__all__ = [
    "ANALYTIC_NAMES",
    "EAGER_ATTENTION_TYPES",
    "FEATURE_SCHEMA_VERSION",
    "LLM_WORKLOAD_MODES",
    "NODE_FEATURE_NAMES",
    "STRUCTURE_PATH",
    "GraphFeatures",
    "LLMWorkload",
    "analytic_costs",
    "check_model_type",
    "edge_index",
    "featurize",
    "graph_structure",
    "llm_feature_names",
    "llm_feature_vector",
    "llm_workload",
    "node_arrays",
    "node_features",
    "schema_fingerprint",
    "static_feature_names",
    "static_features",
    "structure_key",
    "structure_table",
    "write_structure_table",
]
