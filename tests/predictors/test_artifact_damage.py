"""Damaged copies of every shipped artifact fail to load with a clean error naming the file.

Each shipped folder is copied and damaged in one way at a time:

* every file truncated, emptied, deleted, and with bytes inverted at its start,
  middle and end (the JSON documents record the SHA-256 of the data files they
  own, so a changed weight is caught even where its bytes still parse);
* the same file damage on a copy written before checksums were recorded
  (checksums removed), where only the structural checks can catch it;
* every field of every JSON document (depth two: ``config.hidden``,
  ``norm.static_std``...) deleted, given a value of the wrong type, given a
  garbage value (NaN for numbers, an empty string, an empty object, a list
  with a garbage first entry) and, for lists, one entry too many;
* safetensors files rewritten with a tensor of the wrong shape, a missing
  tensor, an extra tensor, a NaN weight and the wrong dtype; XGBoost models
  with an out-of-range child, a cycle, an out-of-range feature index and a
  wrong feature count (these are re-sealed: their checksums are updated, so
  that the structural check is what has to catch them).

Then each variant is loaded by path and asked for one estimate.  It must
raise :class:`ModelLoadError` (``ArtifactError``) or
:class:`SchemaMismatchError` whose message names the damaged file, or load
and give exactly the estimate of the intact artifact, and then only if it is
in :func:`harmless`, which says why it cannot matter.  A raw exception, an
error at prediction time, or a load that changes the estimate fails the test.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

import costmodel
from costmodel import ModelLoadError, SchemaMismatchError
from costmodel.predictors import ARTIFACTS_DIR, GNN_CONFIG_LATER, GNNConfig
from costmodel.predictors._artifact import CONFIG_SHA, seal

ARTIFACTS = ("dippm", "trappm", "xgb-static", "gnn-llm", "llm-xgb", "graphmae")
#: JSON documents whose fields are damaged one by one (tokenizer.json and the XGBoost models are file-level)
DOCS = ("config.json", "gae.json", "graphmae.json", "lm_config.json")
#: which document records the checksum of which file
OWNER = {"gae.safetensors": "gae.json", "graphmae.safetensors": "graphmae.json"}
STATS: dict[str, dict[str, int]] = {}


def _as_json(value):
    """A config default as it reads back from JSON (a tuple is a list there)."""
    return list(value) if isinstance(value, tuple) else value


@pytest.fixture(scope="module")
def graph():
    return costmodel.to_graph("torchvision:squeezenet1_1", batch=1, method="trace")


def _finite(v) -> bool:
    if isinstance(v, dict):
        return all(_finite(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return all(_finite(x) for x in v)
    return not isinstance(v, float) or math.isfinite(v)


def _answer(name: str, path: Path, graph, *, by_name: bool = False):
    """Load the artifact at ``path`` as its kind is loaded, and ask it for one estimate (JSON-comparable)."""
    if name == "llm-xgb":
        from costmodel.predictors import XGBLLMPredictor

        return XGBLLMPredictor.load(path).predict("gpt2", batch=2, seq=64).to_dict()
    if name == "graphmae":
        from costmodel.predictors import GraphMAE

        return GraphMAE.load(path).embed_many([graph]).tolist()
    p = costmodel.get_predictor(str(path)) if by_name else costmodel.load_predictor(path)
    return p.predict(graph, "h200").to_dict()


# ------------------------------------------------------------------ damage
def _owner_of(name: str, folder: Path) -> str | None:
    if name in OWNER:
        return OWNER[name]
    if name in ("config.json", "gae.json", "graphmae.json"):
        return None
    return "config.json" if (folder / "config.json").exists() else None


def _reseal(folder: Path, name: str) -> list[str]:
    """Update the checksum that ``name``'s owner records (the damage then has to be caught structurally)."""
    owner = _owner_of(name, folder)
    if owner is None:
        return []
    d = json.loads((folder / owner).read_text())
    if "checksums" in d and name in d["checksums"]:
        d["checksums"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        (folder / owner).write_text(json.dumps(seal(d) if CONFIG_SHA in d else d, indent=1))
        return [owner]
    return []


def _wrong_type(v):
    if isinstance(v, bool):
        return "yes"
    if isinstance(v, (int, float)):
        return "12"
    if isinstance(v, str):
        return 12
    if isinstance(v, list):
        return 7
    if isinstance(v, dict):
        return [1]
    return 7  # None


def _garbage_scalar(v):
    if isinstance(v, bool):
        return None  # a bool has no garbage value of its own type (the wrong-type variant covers it)
    if isinstance(v, (int, float)):
        return float("nan")
    return ""  # strings (names, hashes, versions, paths) are never empty; None stands for a path or a name


def _garbage(v):
    if isinstance(v, list):
        if not v:
            return [""]
        g = _garbage_scalar(v[0]) if not isinstance(v[0], (list, dict)) else _wrong_type(v[0])
        return None if g is None else [g] + v[1:]
    if isinstance(v, dict):
        return {}
    return _garbage_scalar(v)


def _field_variants(folder: Path):
    """``(doc, path, kind, new document or None, original value)`` for every field of every JSON document."""
    for doc in DOCS:
        if not (folder / doc).exists():
            continue
        d = json.loads((folder / doc).read_text())
        paths = []
        for k, v in d.items():
            paths.append((k,))
            if isinstance(v, dict):
                paths += [(k, s) for s in v]
        for path in paths:
            parent = d if len(path) == 1 else d[path[0]]
            orig = parent[path[-1]]
            changes = {"deleted": ..., "wrong type": _wrong_type(orig), "garbage": _garbage(orig)}
            if isinstance(orig, list):
                changes["length"] = orig + [orig[-1]] if orig else [0.0]
            for kind, new in changes.items():
                if new is None:
                    continue
                nd = copy.deepcopy(d)
                target = nd if len(path) == 1 else nd[path[0]]
                if new is ...:
                    del target[path[-1]]
                else:
                    target[path[-1]] = new
                yield doc, path, kind, nd, orig


def _tensor_variants():
    import torch

    def mutate(t, kind):
        t = dict(t)
        k = next(k for k, x in t.items() if x.is_floating_point() and x.ndim >= 1 and x.shape[0] > 1)
        if kind == "tensor of the wrong shape":
            t[k] = t[k][:-1].clone()
        elif kind == "tensor missing":
            del t[k]
        elif kind == "extra tensor":
            t["bogus.weight"] = torch.zeros(3)
        elif kind == "NaN weight":
            x = t[k].clone()
            x.view(-1)[0] = float("nan")
            t[k] = x
        else:  # wrong dtype
            t[k] = t[k].double()
        return t

    return mutate, ("tensor of the wrong shape", "tensor missing", "extra tensor", "NaN weight", "wrong dtype")


def _tree_variants(model: dict):
    tree = model["learner"]["gradient_booster"]["model"]["trees"][0]
    inner = next(i for i, c in enumerate(tree["left_children"]) if c >= 0)
    out = {}
    m = copy.deepcopy(model)
    m["learner"]["gradient_booster"]["model"]["trees"][0]["left_children"][inner] = 10 ** 6
    out["child index out of range"] = m
    m = copy.deepcopy(model)
    m["learner"]["gradient_booster"]["model"]["trees"][0]["left_children"][inner] = 0
    out["child pointing back to the root (a cycle)"] = m
    m = copy.deepcopy(model)
    m["learner"]["gradient_booster"]["model"]["trees"][0]["split_indices"][inner] = 10 ** 6
    out["feature index out of range"] = m
    m = copy.deepcopy(model)
    m["learner"]["learner_model_param"]["num_feature"] = "3"
    out["wrong feature count"] = m
    return out


# --------------------------------------------------------------- harmless
INFORMATIONAL_META = ("train_seconds", "stage2_seconds", "stage3_seconds", "loss", "summary_loss",
                      "pretrained_encoder")
LM_CONFIG_CORE = ("model_type", "n_layer", "n_embd", "n_head", "n_positions", "vocab_size")


def harmless(name: str, doc: str, path: tuple, kind: str, orig) -> str | None:
    """Why a field variant that loads cannot change an estimate, or None (then it must not load)."""
    if path == ("checksums",) and kind == "deleted":
        return ("an artifact written before checksums were recorded has none; its files are intact here and "
                "still checked structurally")
    if path == (CONFIG_SHA,) and kind == "deleted":
        return ("an artifact written before its documents recorded their own checksum has none; its values are "
                "intact here and still checked structurally")
    if doc == "config.json" and path[:1] == ("meta",) and len(path) == 2 and path[1] in INFORMATIONAL_META:
        if kind == "deleted":
            return "an optional training record (timing, losses): no estimate reads it"
        if kind == "length" and path[1] in ("loss", "summary_loss"):
            return "per-epoch losses: any number of epochs is valid"
    if doc in ("gae.json", "graphmae.json") and path[:1] == ("history",):
        if len(path) == 2 and kind == "deleted":
            return "the pretraining history is informational and every record of it optional"
        if path == ("history",) and kind == "garbage":
            return "an empty pretraining history (informational)"
        if path == ("history", "loss") and kind == "length":
            return "per-epoch pretraining losses: any number of epochs is valid"
    if doc == "config.json" and path[:1] == ("params",) and (kind == "deleted" or (path == ("params",)
                                                                                   and kind == "garbage")):
        return ("XGBoost hyperparameters are read only to refit; an absent one takes the library's default, "
                "which changes no stored tree")
    if doc == "config.json" and name == "llm-xgb" and path in (("target_scale",), ("grid_search",)) \
            and kind == "deleted":
        return "an optional description of the targets / the grid search behind the parameters"
    if doc == "config.json" and path[:1] == ("config",) and len(path) == 2 and kind == "deleted" \
            and path[1] in GNN_CONFIG_LATER and name in ("dippm", "trappm", "xgb-static") \
            and orig == _as_json(getattr(GNNConfig(), path[1])):
        return ("a config field added after the first artifacts shipped takes its default when absent, and the "
                "stored value is that default")
    if doc == "lm_config.json" and kind == "deleted" and path[0] not in LM_CONFIG_CORE:
        return ("lm_config.json records the LM that config.json's sizes and the tokenizer build; a key it does not "
                "record takes nothing away from that LM (the core sizes are required)")
    if doc == "lm_config.json" and path == ("transformers_version",):
        return "which transformers version wrote the record; informational, not compared"
    return None


# ------------------------------------------------------------------- test
def _run(name: str, folder: Path, graph, ref, label: str, why: str | None, *, problems: list, stats: dict,
         by_name: bool = False, names_file: str | None = None):
    """Load the damaged ``folder``; record a problem unless the outcome is acceptable."""
    stats["variants"] += 1
    try:
        got = _answer(name, folder, graph, by_name=by_name)
    except (ModelLoadError, SchemaMismatchError) as e:
        stats["clean errors"] += 1
        if names_file and names_file not in str(e):
            problems.append(f"{label}: the error does not name {names_file}: {e}")
    except Exception as e:  # noqa: BLE001 - exactly what this test hunts for
        problems.append(f"{label}: raw {type(e).__name__}: {str(e)[:200]}")
    else:
        if why is None:
            same = "the same estimate" if got == ref else "a DIFFERENT estimate"
            problems.append(f"{label}: loaded silently and gave {same}")
        elif got != ref or not _finite(got):
            problems.append(f"{label}: listed as harmless ({why}) but the estimate changed")
        else:
            stats["harmless"] += 1


@pytest.mark.parametrize("name", ARTIFACTS)
def test_damaged_artifact_fails_cleanly(name, graph, tmp_path):
    src = ARTIFACTS_DIR / name
    folder = tmp_path / name
    shutil.copytree(src, folder)
    ref = _answer(name, folder, graph)
    assert _finite(ref)
    original = {f.name: f.read_bytes() for f in folder.iterdir()}
    problems: list[str] = []
    stats = STATS.setdefault(name, {"variants": 0, "clean errors": 0, "harmless": 0})

    def restore(names):
        for n in set(names):
            (folder / n).write_bytes(original[n])

    def run(label, touched, why=None, names_file=None, by_name=False):
        _run(name, folder, graph, ref, label, why, by_name=by_name, names_file=names_file, problems=problems,
             stats=stats)
        restore(touched)

    holders = [d for d in ("config.json", "gae.json", "graphmae.json") if d in original]
    # 1. file damage (checksums recorded)
    for n, data in original.items():
        size = len(data)
        for kind, new in (("truncated", data[: size // 2]), ("emptied", b""),
                          *((f"bytes inverted at {where}", _invert(data, at)) for where, at in
                            (("start", 0), ("middle", size // 2), ("end", max(0, size - 16))))):
            (folder / n).write_bytes(new)
            run(f"{n} {kind}", [n], names_file=n, by_name=n == "config.json")
        (folder / n).unlink()
        run(f"{n} deleted", [n], names_file=n, by_name=n == "config.json")
    # 2. the same on a copy written before checksums were recorded
    for h in holders:
        d = json.loads(original[h])
        d.pop("checksums", None)
        d.pop(CONFIG_SHA, None)
        (folder / h).write_text(json.dumps(d, indent=1))
    for n, data in original.items():
        if n in holders:
            continue
        kinds = [("truncated", data[: len(data) // 2]), ("emptied", b""), ("bytes inverted at start", _invert(data, 0))]
        if n.endswith(".json"):  # inverted text is never UTF-8; inverted weights parse (what checksums are for)
            kinds.append(("bytes inverted in the middle", _invert(data, len(data) // 2)))
        for kind, new in kinds:
            (folder / n).write_bytes(new)
            _run(name, folder, graph, ref, f"{n} {kind} (no checksums)", None, names_file=n, problems=problems,
                 stats=stats)
            (folder / n).write_bytes(data)
    restore(holders)
    # 3. every field of every JSON document
    for doc, path, kind, nd, orig in _field_variants(folder):
        # re-sealed (the document's own checksum updated), so that the structural checks have to catch it; a
        # damaged own checksum is left as it is
        sealed = path[:1] != (CONFIG_SHA,) and CONFIG_SHA in nd
        (folder / doc).write_text(json.dumps(seal(nd) if sealed else nd, indent=1))
        touched = [doc] + _reseal(folder, doc)
        why = harmless(name, doc, path, kind, orig)
        run(f"{doc} {'.'.join(path)} {kind}", touched, why, names_file=doc)
    # 4. structurally wrong data files, re-sealed
    from safetensors.torch import load, save

    mutate, kinds = _tensor_variants()
    for n in original:
        if n.endswith(".safetensors"):
            tensors = load(original[n])
            for kind in kinds:
                (folder / n).write_bytes(save(mutate(tensors, kind)))
                run(f"{n}: {kind}", [n] + _reseal(folder, n), names_file=n)
        elif n.endswith(".json") and n not in DOCS and n != "tokenizer.json":  # an XGBoost model
            for kind, m in _tree_variants(json.loads(original[n])).items():
                (folder / n).write_text(json.dumps(m))
                run(f"{n}: {kind}", [n] + _reseal(folder, n), names_file=n)
    assert not problems, f"{len(problems)} of {stats['variants']} damaged {name} artifacts misbehaved:\n" + \
        "\n".join(problems[:40])
    assert stats["variants"] > 50
    print(f"\n{name}: {stats['variants']} variants, {stats['clean errors']} clean errors, "
          f"{stats['harmless']} harmless")


def _invert(data: bytes, at: int, n: int = 16) -> bytes:
    b = bytearray(data)
    for i in range(at, min(at + n, len(b))):
        b[i] ^= 0xFF
    return bytes(b)


def test_harmless_list_is_not_a_blanket():
    """The allowlist names specific informational fields, never a weight, a size or a normalization."""
    for doc, path in [("config.json", ("norm", "static_mean")), ("config.json", ("config", "hidden")),
                      ("config.json", ("intervals", "log_halfwidth")), ("config.json", ("meta", "devices")),
                      ("gae.json", ("node_std",)), ("lm_config.json", ("n_embd",))]:
        for kind in ("deleted", "wrong type", "garbage", "length"):
            assert harmless("trappm", doc, path, kind, None) is None, (doc, path, kind)
    assert np.isnan(_garbage(1.5)) and _garbage("abc") == "" and _garbage({"a": 1}) == {}


@pytest.mark.parametrize("name", ARTIFACTS)
def test_an_edited_document_is_refused(name, graph, tmp_path):
    """A changed value in a document (a normalization scaled by 3 gave a 7x latency), or its checksums
    deleted, is refused by the document's own checksum, naming the file."""
    folder = tmp_path / name
    shutil.copytree(ARTIFACTS_DIR / name, folder)
    doc = folder / ("graphmae.json" if name == "graphmae" else "config.json")
    d = json.loads(doc.read_text())
    assert d[CONFIG_SHA] == seal(d)[CONFIG_SHA]
    for edit in ("version", "checksums"):
        nd = dict(d)
        if edit == "checksums":
            nd.pop("checksums")
        else:
            nd["library_version"] = nd.get("library_version", "0") + "x"
        doc.write_text(json.dumps(nd, indent=1))
        with pytest.raises(ModelLoadError, match=rf"{doc.name}.*does not match its own checksum"):
            _answer(name, folder, graph)
