"""Evaluate XGBoost JSON models with numpy alone.

Importing ``xgboost`` costs more than a second (it pulls in scikit-learn
when present); answering a question should not.  Training still uses
XGBoost; prediction reads the model's own JSON file (the format XGBoost
writes with ``save_model``) and walks every tree at once: one array of node
indices of shape ``(rows, trees)`` advanced level by level.

Supported: ``gbtree`` boosters with numerical splits and a single output
(regression objectives with an identity link, e.g. ``reg:squarederror``).
Anything else is refused with a clear error rather than mis-predicted.
Splits follow XGBoost's rule: go left when ``x < threshold`` compared in
float32, missing values (NaN) follow ``default_left``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._errors import ModelLoadError

_IDENTITY = {"reg:squarederror", "reg:pseudohubererror", "reg:absoluteerror", "reg:quantileerror"}


def _base_score(text: str) -> float:
    return float(str(text).strip("[]"))


class TreeEnsemble:
    """Flattened trees of one XGBoost model; :meth:`predict` matches ``XGBRegressor.predict``."""

    def __init__(self, model: dict, where: str = "model") -> None:
        try:
            learner = model["learner"]
            booster = learner["gradient_booster"]
            objective = learner["objective"]["name"]
            params = learner["learner_model_param"]
        except (KeyError, TypeError):
            raise ModelLoadError(f"{where} is not an XGBoost JSON model") from None
        if booster.get("name") != "gbtree":
            raise ModelLoadError(f"{where}: booster {booster.get('name')!r} is not supported (gbtree only)")
        if objective not in _IDENTITY:
            raise ModelLoadError(f"{where}: objective {objective!r} is not supported ({sorted(_IDENTITY)})")
        if int(params.get("num_target", 1) or 1) != 1 or int(params.get("num_class", 0) or 0) > 1:
            raise ModelLoadError(f"{where}: multi-output models are not supported")
        trees = booster["model"]["trees"]
        self.num_feature = int(params["num_feature"])
        self.base_score = _base_score(params["base_score"])
        left, right, feat, cond, dleft = [], [], [], [], []
        roots, offset = [], 0
        for t in trees:
            if any(t.get("split_type", [])) or t.get("categories_nodes"):
                raise ModelLoadError(f"{where}: categorical splits are not supported")
            n = len(t["left_children"])
            lc = np.asarray(t["left_children"], np.int64)
            rc = np.asarray(t["right_children"], np.int64)
            leaf = lc < 0
            left.append(np.where(leaf, np.arange(n), lc) + offset)  # a leaf points to itself
            right.append(np.where(leaf, np.arange(n), rc) + offset)
            feat.append(np.where(leaf, 0, np.asarray(t["split_indices"], np.int64)))
            cond.append(np.asarray(t["split_conditions"], np.float32))
            dleft.append(np.asarray(t["default_left"], bool))
            roots.append(offset)
            offset += n
        self.left = np.concatenate(left) if left else np.zeros(0, np.int64)
        self.right = np.concatenate(right) if right else np.zeros(0, np.int64)
        self.feature = np.concatenate(feat) if feat else np.zeros(0, np.int64)
        self.threshold = np.concatenate(cond) if cond else np.zeros(0, np.float32)  # leaf value at leaves
        self.default_left = np.concatenate(dleft) if dleft else np.zeros(0, bool)
        self.is_leaf = self.left == np.arange(offset)
        self.roots = np.asarray(roots, np.int64)

    @classmethod
    def from_text(cls, text: str, where: str = "model") -> "TreeEnsemble":
        try:
            obj = cls(json.loads(text), where=where)
        except ValueError as e:
            raise ModelLoadError(f"cannot read XGBoost model {where}: {e}") from None
        obj.text = text
        return obj

    @classmethod
    def from_xgboost(cls, regressor) -> "TreeEnsemble":
        """The trees of a fitted ``xgboost.XGBRegressor`` (through its JSON)."""
        return cls.from_text(bytes(regressor.get_booster().save_raw("json")).decode(), "fitted model")

    @classmethod
    def load(cls, path: str | Path) -> "TreeEnsemble":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ModelLoadError(f"cannot read XGBoost model {path}: {e}") from None
        return cls.from_text(text, str(path))

    def save(self, path: str | Path) -> None:
        """Write the model in XGBoost's JSON format (loadable by ``xgboost`` too)."""
        Path(path).write_text(self.text)

    def predict(self, X) -> np.ndarray:
        X = np.asarray(X, np.float32)
        if X.ndim != 2 or X.shape[1] != self.num_feature:
            raise ModelLoadError(f"expected a (rows, {self.num_feature}) feature matrix, got shape {X.shape}")
        if not len(self.roots):
            return np.full(len(X), self.base_score)
        node = np.broadcast_to(self.roots, (len(X), len(self.roots))).copy()
        rows = np.arange(len(X))[:, None]
        while True:
            active = ~self.is_leaf[node]
            if not active.any():
                break
            v = X[rows, self.feature[node]]
            go_left = np.where(np.isnan(v), self.default_left[node], v < self.threshold[node])
            node = np.where(go_left, self.left[node], self.right[node])
        leaves = self.threshold[node].astype(np.float64)
        return leaves.sum(axis=1) + self.base_score
