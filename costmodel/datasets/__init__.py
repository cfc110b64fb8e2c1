"""Measured performance data as a typed dataset with reproducible splits."""

from ._dataset import KINDS, TARGETS, PerfDataset, PerfRow, _vision_row as vision_row, default_root, read_jsonl

__all__ = ["KINDS", "TARGETS", "PerfDataset", "PerfRow", "default_root", "read_jsonl", "vision_row"]
from ._corpus import FAMILIES as CORPUS_FAMILIES, GraphCorpus, sample_corpus_specs

__all__ += ["CORPUS_FAMILIES", "GraphCorpus", "sample_corpus_specs"]
