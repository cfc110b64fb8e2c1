"""A saved timeline's config and training record are checked at load: a damaged value is refused naming the file
(these paths are what an artifact written before checksums were recorded relies on)."""

from __future__ import annotations

import json
import shutil

import pytest

from costmodel import ArtifactError
from costmodel.predictors import ARTIFACTS_DIR, load_predictor
from costmodel.predictors._artifact import CHECKSUMS, CONFIG_SHA


def _edited(tmp_path, section: str, key: str, value):
    folder = tmp_path / "timeline"
    shutil.copytree(ARTIFACTS_DIR / "timeline", folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop(CONFIG_SHA), cfg.pop(CHECKSUMS)  # written before checksums: the structural checks must hold
    cfg[section][key] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize("key, value, says", [
    ("weight_decay", "x", "config.weight_decay"), ("seed", None, "config.seed"), ("epochs", "many", "config.epochs"),
    ("lr", None, "config.lr"), ("hidden", 1.5, "config.hidden"), ("loss", "l3", "config.loss"),
    ("host_blind", ["nope"], "host_blind"), ("extra", 1, "config.extra"),
])
def test_a_bad_config_field_is_refused_naming_the_file(key, value, says, tmp_path):
    folder = _edited(tmp_path, "config", key, value)
    with pytest.raises(ArtifactError) as e:
        load_predictor(folder)
    assert str(folder / "config.json") in str(e.value) and says in str(e.value)


@pytest.mark.parametrize("value", [None, "x", [], {"devices": "H200-SXM5-141GB"}, {"devices": None},
                                   {"devices": [1]}, {"devices": ["H200-SXM5-141GB"], "rows": "342"}])
def test_a_bad_training_record_is_refused_at_load(value, tmp_path):
    folder = _edited(tmp_path, "params", "trained_on", value)
    with pytest.raises(ArtifactError, match=r"config\.json: params\.trained_on"):
        load_predictor(folder)


def test_the_intact_copy_without_checksums_still_loads(tmp_path):
    folder = _edited(tmp_path, "config", "seed", 0)
    assert load_predictor(folder).config.seed == 0
