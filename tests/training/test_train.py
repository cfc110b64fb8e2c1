"""train() and pretrain() as library calls: arguments are checked before any work."""

import pytest

from costmodel import InvalidInputError
from costmodel.training import METHODS, PREDICTORS, pretrain, train


def test_unknown_predictor_and_method():
    assert "dippm" in PREDICTORS and "gae" in METHODS
    with pytest.raises(InvalidInputError, match="unknown predictor 'nope'"):
        train("nope")
    with pytest.raises(InvalidInputError, match="unknown pretraining method 'nope'"):
        pretrain("nope")


def test_output_conflict_fails_before_the_corpus(tmp_path):
    with pytest.raises(InvalidInputError, match="not both"):
        pretrain("gae", corpus=4, output=tmp_path / "x", to_package=True)
