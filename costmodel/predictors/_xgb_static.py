"""XGBoost on the static features: the non-graph baseline (thesis ch. 6 style).

Same static features, targets and analytic residual as the GNN predictors
(it subclasses them for featurization and Estimate assembly); the model is
one XGBoost regressor (``xgboost.train``, ``reg:squarederror``) per target,
stored in XGBoost's own JSON format.  Loading checks each model file
completely (:class:`~costmodel.llm._trees.TreeEnsemble`) before XGBoost
reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .._errors import InvalidInputError, ModelLoadError
from . import _artifact as A
from ._registry import read_artifact_config, register_predictor
from ._artifacts import ShippedArtifact
from ._dippm import GNNConfig, GNNPredictor, _analytic_log, data_hash, load_gnn_config

XGB_PARAMS = dict(n_estimators=600, max_depth=5, learning_rate=0.05, subsample=0.8, colsample_bytree=0.8,
                  min_child_weight=1.0, reg_lambda=1.0)


@register_predictor("xgb-static")
class XGBStaticPredictor(ShippedArtifact, GNNPredictor):
    """Gradient-boosted trees on graph-level features (no message passing)."""

    name = "xgb-static"
    _requires = ("xgboost",)
    _extra = "xgb"
    version = "1"

    _has_norm = False  # trees need no feature normalization
    _uses_node_features = False  # graph-level features only

    def __init__(self, config: GNNConfig | None = None, *, seed: int = 0, params: dict | None = None) -> None:
        super().__init__(config or GNNConfig(conv="none", seed=seed))
        self.params = dict(XGB_PARAMS, **(params or {}))
        self.models: list = []

    @property
    def _files(self) -> tuple[str, ...]:
        return tuple(f"{t}.json" for t in self.targets)

    def fit(self, dataset, indices: Sequence[int] | None = None, *, progress: bool = True,
            cached: dict | None = None) -> "XGBStaticPredictor":
        try:
            import xgboost  # noqa: F401
        except ImportError:
            raise InvalidInputError("the xgb-static predictor needs xgboost: pip install 'costmodel[xgb]'") from None
        from ._trees import train_booster

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
            known = np.isfinite(Y[:, t])  # missing labels (no energy counter) are left out
            self.models.append(train_booster(S[known], Y[known, t], self.params, seed=self.config.seed))
        self.net = True  # marks "trained" for the shared checks
        self.meta = {"trained_rows": len(idx), "data_hash": data_hash([dataset[i] for i in idx]),
                     "devices": sorted({dataset[i].device for i in idx})}
        return self

    def _predict_features(self, items):
        if not self.models:
            raise ModelLoadError(f"predictor {self.name!r} is not trained: call fit() or load an artifact")
        S = np.stack([f.static for f, _ in items])
        y = np.stack([m.inplace_predict(S) for m in self.models], axis=1).astype(np.float64)
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
        cfg = self._artifact_config(params=self.params, **{A.CHECKSUMS: A.checksums(path, self._files)})
        (path / "config.json").write_text(json.dumps(A.seal(cfg), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "XGBStaticPredictor":
        import xgboost as xgb

        from ._trees import TreeEnsemble

        path = Path(path)
        cfg = read_artifact_config(path, {cls.name: cls})
        file = path / "config.json"
        params = A.xgb_params(cfg.get("params"), file)
        obj = cls(load_gnn_config(cfg, path), params=params)
        obj._check_schema(cfg, path)
        obj.models = []
        for t in obj.targets:
            f = path / f"{t}.json"
            text = A.read_text(f)
            trees = TreeEnsemble.from_text(text, str(f))  # the whole model checked before XGBoost reads it
            if trees.num_feature != len(obj._static_names):
                raise A.fail(f, f"has {trees.num_feature} features; the static features are {len(obj._static_names)}")
            m = xgb.Booster()
            try:
                m.load_model(bytearray(text.encode()))
            except xgb.core.XGBoostError as e:
                raise A.fail(f, f"XGBoost cannot read it ({str(e).splitlines()[0]})") from None
            obj.models.append(m)
        obj.net = True
        return obj
