"""XGBoost on the static features: the non-graph baseline (thesis ch. 6 style).

Same static features, targets and analytic residual as the GNN predictors
(it subclasses them for featurization and Estimate assembly); the model is
one ``XGBRegressor`` per target, stored in XGBoost's own JSON format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .._errors import InvalidInputError, ModelLoadError
from ._base import read_artifact_config, register_predictor
from ._gnn import GNNConfig, GNNPredictor, ShippedArtifact, _analytic_log, data_hash

XGB_PARAMS = dict(n_estimators=600, max_depth=5, learning_rate=0.05, subsample=0.8, colsample_bytree=0.8,
                  min_child_weight=1.0, reg_lambda=1.0)


@register_predictor("xgb-static")
class XGBStaticPredictor(ShippedArtifact, GNNPredictor):
    """Gradient-boosted trees on graph-level features (no message passing)."""

    name = "xgb-static"
    _requires = ("xgboost",)
    _extra = "xgb"
    version = "1"

    def __init__(self, config: GNNConfig | None = None, *, seed: int = 0, params: dict | None = None) -> None:
        super().__init__(config or GNNConfig(conv="none", seed=seed))
        self.params = dict(XGB_PARAMS, **(params or {}))
        self.models: list = []

    def fit(self, dataset, indices: Sequence[int] | None = None, *, progress: bool = True,
            cached: dict | None = None) -> "XGBStaticPredictor":
        try:
            import xgboost as xgb
        except ImportError:
            raise InvalidInputError("the xgb-static predictor needs xgboost: pip install 'costmodel[xgb]'") from None
        idx = list(range(len(dataset))) if indices is None else list(indices)
        S, Y = [], []
        for i in idx:
            if cached is not None and i in cached:
                f, est = cached[i]
            else:
                f, est = self.features(dataset.graph(i), dataset[i].device, dataset[i].mode)
            S.append(f.static)
            Y.append(self._target(dataset[i], est))
        S, Y = np.stack(S), np.asarray(Y)
        self.models = []
        for t in range(len(self.targets)):
            m = xgb.XGBRegressor(random_state=self.config.seed, n_jobs=2, **self.params)
            known = np.isfinite(Y[:, t])  # missing labels (no energy counter) are left out
            m.fit(S[known], Y[known, t])
            self.models.append(m)
        self.net = True  # marks "trained" for the shared checks
        self.meta = {"trained_rows": len(idx), "data_hash": data_hash([dataset[i] for i in idx]),
                     "devices": sorted({dataset[i].device for i in idx})}
        return self

    def _predict_features(self, items):
        if not self.models:
            raise ModelLoadError(f"predictor {self.name!r} is not trained: call fit() or load an artifact")
        S = np.stack([f.static for f, _ in items])
        y = np.stack([m.predict(S) for m in self.models], axis=1).astype(np.float64)
        if self.config.residual:
            y = y + np.asarray([[_analytic_log(e, t) for t in self.targets] for _, e in items])
        return np.exp(np.clip(y, -30, 30))

    def save(self, path: str | Path) -> None:
        if not self.models:
            raise ModelLoadError("cannot save an untrained predictor")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for t, m in zip(self.targets, self.models):
            m.save_model(str(path / f"{t}.json"))
        cfg = self._artifact_config(params=self.params)
        (path / "config.json").write_text(json.dumps(cfg, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "XGBStaticPredictor":
        import xgboost as xgb

        path = Path(path)
        cfg = read_artifact_config(path, {cls.name: cls})
        obj = cls(GNNConfig(**cfg["config"]), params=cfg.get("params"))
        obj._check_schema(cfg, path)
        obj.models = []
        for t in obj.targets:
            m = xgb.XGBRegressor()
            m.load_model(str(path / f"{t}.json"))
            obj.models.append(m)
        obj.net = True
        return obj
