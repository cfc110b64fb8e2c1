"""Predictors: objects that turn a CostGraph + device into an Estimate."""

from ._base import (
    Estimate,
    Predictor,
    available_predictors,
    get_predictor,
    load_predictor,
    register_predictor,
)

__all__ = [
    "AnalyticPredictor",
    "Estimate",
    "Predictor",
    "available_predictors",
    "get_predictor",
    "load_predictor",
    "register_predictor",
]


def __getattr__(name):
    if name == "AnalyticPredictor":
        from ._analytic import AnalyticPredictor

        return AnalyticPredictor
    raise AttributeError(name)
