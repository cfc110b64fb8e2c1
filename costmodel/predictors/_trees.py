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

from .._errors import ArtifactError, ModelLoadError

_IDENTITY = {"reg:squarederror", "reg:pseudohubererror", "reg:absoluteerror", "reg:quantileerror"}


def train_booster(X, y, params: dict, *, seed: int, nthread: int = 2):
    """Fit one XGBoost regressor (``reg:squarederror``) with XGBoost's native API; returns the ``Booster``.

    ``params`` use the names the predictors store (``n_estimators``, ``learning_rate``, ``max_depth``,
    ``subsample``, ``reg_lambda``...): ``n_estimators`` is the number of boosting rounds (100 when
    absent), the others go to the learner as they are.  The data goes through a ``QuantileDMatrix``, as
    ``xgboost.XGBRegressor.fit`` does, so the model is the one that wrapper fits with
    ``random_state=seed, n_jobs=nthread`` (byte for byte), without scikit-learn.
    """
    import xgboost as xgb

    p = dict(params)
    rounds = p.pop("n_estimators", None)
    rounds = 100 if rounds is None else int(rounds)
    native = {"objective": "reg:squarederror", **p, "nthread": nthread, "seed": seed}
    data = xgb.QuantileDMatrix(np.asarray(X), np.asarray(y), nthread=nthread)
    return xgb.train(native, data, num_boost_round=rounds)


def _base_score(text) -> float:
    v = float(str(text).strip("[]"))
    if not np.isfinite(v):
        raise ValueError(f"base_score {text!r} is not finite")
    return v


def _ints(t: dict, key: str, n: int | None) -> np.ndarray:
    a = np.asarray(t[key])
    if a.ndim != 1 or (len(a) and a.dtype.kind not in "iub") or (n is not None and len(a) != n):
        raise ValueError(f"{key} must be a list of {n if n is not None else ''} integers".replace("  ", " "))
    return a.astype(np.int64)


class TreeEnsemble:
    """Flattened trees of one XGBoost model; :meth:`predict` matches the booster's own prediction.

    Construction checks the model completely (tree arrays of one length,
    child indices that form a tree, feature indices below ``num_feature``,
    finite thresholds and leaf values): a damaged file raises
    :class:`~costmodel.ArtifactError` instead of mis-predicting or looping.
    """

    def __init__(self, model: dict, where: str = "model") -> None:
        try:
            learner = model["learner"]
            booster = learner["gradient_booster"]
            objective = learner["objective"]["name"]
            params = learner["learner_model_param"]
        except (KeyError, TypeError):
            raise ArtifactError(f"{where} is not an XGBoost JSON model") from None
        try:
            if booster.get("name") != "gbtree":
                raise ArtifactError(f"{where}: booster {booster.get('name')!r} is not supported (gbtree only)")
            if objective not in _IDENTITY:
                raise ArtifactError(f"{where}: objective {objective!r} is not supported ({sorted(_IDENTITY)})")
            if int(params.get("num_target", 1) or 1) != 1 or int(params.get("num_class", 0) or 0) > 1:
                raise ArtifactError(f"{where}: multi-output models are not supported")
            self._flatten(booster, params)
        except ArtifactError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as e:
            what = f"field {e.args[0]!r} is missing" if isinstance(e, KeyError) else str(e)
            raise ArtifactError(f"{where}: damaged XGBoost model ({what})") from None

    def _flatten(self, booster: dict, params: dict) -> None:
        model = booster["model"]
        trees = model["trees"]
        if not isinstance(trees, list):
            raise ValueError("model.trees must be a list")
        n_trees = model.get("gbtree_model_param", {}).get("num_trees")
        if n_trees is not None and int(n_trees) != len(trees):
            raise ValueError(f"num_trees is {n_trees} but the model holds {len(trees)} trees")
        if "tree_info" in model and len(model["tree_info"]) != len(trees):
            raise ValueError("tree_info does not have one entry per tree")
        self.num_feature = int(params["num_feature"])
        if self.num_feature < 1:
            raise ValueError(f"num_feature must be >= 1, got {self.num_feature}")
        self.base_score = _base_score(params["base_score"])
        left, right, feat, cond, dleft = [], [], [], [], []
        roots, offset = [], 0
        for i, t in enumerate(trees):
            if any(t.get("split_type", [])) or t.get("categories_nodes"):
                raise ArtifactError("categorical splits are not supported")
            lc = _ints(t, "left_children", None)
            n = len(lc)
            if n < 1:
                raise ValueError(f"tree {i} has no nodes")
            num_nodes = t.get("tree_param", {}).get("num_nodes")
            if num_nodes is not None and int(num_nodes) != n:
                raise ValueError(f"tree {i}: num_nodes is {num_nodes} but it has {n} nodes")
            rc = _ints(t, "right_children", n)
            si = _ints(t, "split_indices", n)
            dl = _ints(t, "default_left", n)
            sc = np.asarray(t["split_conditions"], np.float64)
            if sc.shape != (n,) or not np.isfinite(sc).all():
                raise ValueError(f"tree {i}: split_conditions must be {n} finite numbers")
            leaf = lc < 0
            inner = ~leaf
            kids = np.concatenate([lc[inner], rc[inner]])
            # a tree: children inside it, never the root, each node with one parent (no cycle reachable)
            if (lc[leaf] != -1).any() or (rc[leaf] != -1).any() or ((kids < 1) | (kids >= n)).any() \
                    or len(np.unique(kids)) != len(kids):
                raise ValueError(f"tree {i}: child indices do not form a tree")
            if ((si[inner] < 0) | (si[inner] >= self.num_feature)).any():
                raise ValueError(f"tree {i}: a split uses a feature index outside [0, {self.num_feature})")
            if not np.isin(dl, (0, 1)).all():
                raise ValueError(f"tree {i}: default_left must hold 0 or 1")
            left.append(np.where(leaf, np.arange(n), lc) + offset)  # a leaf points to itself
            right.append(np.where(leaf, np.arange(n), rc) + offset)
            feat.append(np.where(leaf, 0, si))
            cond.append(sc.astype(np.float32))
            dleft.append(dl.astype(bool))
            roots.append(offset)
            offset += n
        if not np.isfinite(np.concatenate(cond) if cond else np.zeros(0, np.float32)).all():
            raise ValueError("a threshold or leaf value overflows float32")
        self.left = np.concatenate(left) if left else np.zeros(0, np.int64)
        self.right = np.concatenate(right) if right else np.zeros(0, np.int64)
        self.feature = np.concatenate(feat) if feat else np.zeros(0, np.int64)
        self.threshold = np.concatenate(cond) if cond else np.zeros(0, np.float32)  # leaf value at leaves
        self.default_left = np.concatenate(dleft) if dleft else np.zeros(0, bool)
        self.is_leaf = self.left == np.arange(offset)
        self.roots = np.asarray(roots, np.int64)

    @classmethod
    def from_text(cls, text: str, where: str = "model") -> "TreeEnsemble":
        if not text.strip():
            raise ArtifactError(f"{where} is empty")
        try:
            obj = cls(json.loads(text), where=where)
        except ValueError as e:
            raise ArtifactError(f"cannot read XGBoost model {where}: {e}") from None
        obj.text = text
        return obj

    @classmethod
    def from_xgboost(cls, model) -> "TreeEnsemble":
        """The trees of a fitted ``xgboost.Booster`` (or of anything with ``get_booster()``), through its JSON."""
        booster = model.get_booster() if hasattr(model, "get_booster") else model
        return cls.from_text(bytes(booster.save_raw("json")).decode(), "fitted model")

    @classmethod
    def load(cls, path: str | Path) -> "TreeEnsemble":
        from ._artifact import read_text

        path = Path(path)
        return cls.from_text(read_text(path), str(path))

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
