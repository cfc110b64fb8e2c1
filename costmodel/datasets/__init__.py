"""Measured performance data as a typed dataset with reproducible splits."""

from ._dataset import KINDS, TARGETS, PerfDataset, PerfRow, default_root

__all__ = ["KINDS", "TARGETS", "PerfDataset", "PerfRow", "default_root"]
from ._corpus import FAMILIES as CORPUS_FAMILIES, GraphCorpus, sample_corpus_specs

__all__ += ["CORPUS_FAMILIES", "GraphCorpus", "sample_corpus_specs"]
