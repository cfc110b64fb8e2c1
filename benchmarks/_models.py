"""The models the compiler benchmarks share: torchvision classifiers by name, and bert-base."""

from __future__ import annotations


def model_and_inputs(name: str):
    """``(eval-mode module, example inputs)``: batch 1 at 224x224, or 128 tokens for ``bert-base``."""
    import torch
    import torchvision

    if name == "bert-base":
        import transformers

        return transformers.BertModel(transformers.BertConfig()).eval(), (torch.randint(0, 1000, (1, 128)),)
    return torchvision.models.get_model(name).eval(), (torch.randn(1, 3, 224, 224),)
