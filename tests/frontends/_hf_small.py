"""Configurations and a helper the transformers frontend tests share."""

import warnings

#: a two-layer Mamba-1 that builds in milliseconds
MAMBA = {"hidden_size": 64, "num_hidden_layers": 2, "state_size": 8, "vocab_size": 512, "pad_token_id": 0,
         "bos_token_id": 0, "eos_token_id": 0}


def quiet(fn, *a, **kw):
    """``fn(*a, **kw)`` with its warnings (the frontends' notes on reference kernels) silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)
