"""Work files and the resumable output of a collection run.

Work files (:func:`load_work`) are JSON::

    {"grid": [{"mode": "infer", "dtype": "fp32", "batch": [1, 8, 32, 128]},
              {"mode": "train", "dtype": "fp32", "batch": [32]}],
     "vision": [{"spec": {"family": "resnet", "name": "resnet50", "res": 224, "src": "tv"}},
                {"spec": {...}, "batch": [1, 8], "mode": "infer", "dtype": ["fp32", "fp16"]},
                {"spec": {...}, "grid": [{"mode": "infer", "dtype": "fp16", "batch": 32}]}],
     "llm": [{"model": "gpt2", "mode": ["prefill", "decode"], "dtype": "fp16",
              "batch": [1, 8], "seq": [512]},
             {"model": "my-encoder", "model_type": "bert", "config": {...}, "causal": false,
              "mode": "forward", "batch": 8, "seq": 128}]}

A vision entry expands to the cross product of its ``mode`` x ``dtype`` x
``batch`` lists, or to its ``grid`` (default: the top-level ``grid``); an
``llm`` entry to ``mode`` x ``dtype`` x ``batch`` x ``seq`` (x ``target_seq``, an
encoder-decoder's decoder lengths, where given).  A plain JSON
list (or JSONL) of vision specs is accepted too, measured at the given batch
sizes in fp32 inference.

Rows go to JSONL files (:func:`output_paths`: vision and transformer rows in
separate files, operator rows in ``ops.jsonl``); a row already present is not
measured again (rows are keyed by :func:`key_of_row`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .._errors import CostModelError, InvalidInputError, ModelLoadError
from .._validate import positive_int, positive_ints
from ..frontends import TRAINABLE_CHOICES, ZOO_SOURCES
from ..ir import LLM_MODES, MODEL_DTYPES as DTYPES

# the protocol's constants (see :mod:`costmodel.measure.protocol`)
WARMUP = 3
MIN_WINDOW_S = 0.25
MAX_WINDOW_S = 2.5
MIN_CALLS = 10
CHUNKS = 3
DECODE_TOKENS = 8

VISION_MODES = ("infer", "train")  # the measurement files' words for inference and training


# ------------------------------------------------------------------ work items
@dataclass
class WorkItem:
    """One row to measure.

    ``spec`` is a vision spec in the data's format (``{"family", "name",
    "res", "src", "kw"}``) for vision items, or ``{"model", "model_type",
    "config", "causal"}`` for transformer items (which also carry ``seq``, and an encoder-decoder's
    ``target_seq`` where its decoder reads a length of its own).
    """

    spec: dict
    batch: int
    mode: str = "infer"
    dtype: str = "fp32"
    seq: int | None = None
    target_seq: int | None = None

    @property
    def kind(self) -> str:
        return "llm" if "model" in self.spec and "src" not in self.spec else "vision"

    def key(self) -> str:
        if self.kind == "llm":
            return llm_row_key(self.spec["model"], self.mode, self.dtype, self.batch, self.seq, self.target_seq)
        return row_key(self.spec, self.batch, self.mode, self.dtype)

    def group(self) -> str:
        """Items of one group share a model (and are measured by one Ray task)."""
        if self.kind == "llm":
            return json.dumps([self.spec["model"], self.spec.get("model_type"), self.spec.get("config")], sort_keys=True)
        return json.dumps(self.spec, sort_keys=True)

    def label(self) -> str:
        if self.kind == "llm":
            target = f" t{self.target_seq}" if self.target_seq is not None else ""
            return f"{self.spec['model']} {self.mode} {self.dtype} b{self.batch} s{self.seq}{target}"
        name = self.spec.get("name", self.spec.get("src"))
        if self.spec.get("kw"):
            name += "(" + ",".join(f"{k}={v}" for k, v in sorted(self.spec["kw"].items())) + ")"
        if "res" in self.spec:
            return f"{name}@{self.spec['res']} {self.mode} {self.dtype} b{self.batch}"
        from ..frontends.zoo import default_resolution  # the size the zoo builds it at (520 for segmentation)

        try:
            res = default_resolution(self.spec)[0]
        except CostModelError:
            res = 224
        return f"{name}@{res} {self.mode} {self.dtype} b{self.batch}"


def row_key(spec: dict, batch: int, mode: str, dtype: str) -> str:
    """Resume key of a vision row."""
    return json.dumps([spec, batch, mode, dtype], sort_keys=True)


def llm_row_key(model: str, mode: str, dtype: str, batch: int, seq: int | None, target_seq: int | None = None) -> str:
    """Resume key of a transformer row (an encoder-decoder's target length last, where it has one)."""
    return json.dumps(["llm", model, mode, dtype, batch, seq, *([target_seq] if target_seq is not None else [])])


def key_of_row(r: dict) -> str | None:
    """The resume key of a written row (vision or transformer); ``None`` for a row that names neither."""
    try:
        if "spec" in r:
            return row_key(r["spec"], r["batch"], r["mode"], r["dtype"])
        if "model" in r:
            return llm_row_key(r["model"], r["mode"], r["dtype"], r["batch"], r.get("seq"), r.get("target_seq"))
    except KeyError:
        return None
    return None


def _as_list(v, what: str, where: str) -> list:
    if v is None:
        raise InvalidInputError(f"{where}: '{what}' is missing")
    out = list(v) if isinstance(v, (list, tuple)) else [v]
    if not out:
        raise InvalidInputError(f"{where}: '{what}' is an empty list")
    return out


def _check_choice(vals: list, choices: tuple[str, ...], what: str, where: str) -> list[str]:
    for v in vals:
        if v not in choices:
            raise InvalidInputError(f"{where}: unknown {what} {v!r}; valid: {', '.join(choices)}")
    return list(vals)


_VISION_ENTRY_KEYS = {"spec", "batch", "mode", "dtype", "grid", "note"}
_LLM_ENTRY_KEYS = {"model", "model_type", "config", "causal", "batch", "mode", "dtype", "seq", "target_seq", "note"}
_TOP_KEYS = {"vision", "llm", "grid", "notes", "description", "device"}


#: keys of a vision spec (``block``/``layers``: the ``tv_resnet`` source's ResNet layout)
_SPEC_KEYS = {"family", "name", "res", "src", "kw", "block", "layers", "trainable"}


def _check_vision_spec(spec, where: str) -> dict:
    if not isinstance(spec, dict):
        raise InvalidInputError(f"{where}: a vision spec must be a JSON object, got {type(spec).__name__}")
    bad = set(spec) - _SPEC_KEYS
    if bad:
        raise InvalidInputError(f"{where}: unknown spec keys {sorted(bad)}; valid: {', '.join(sorted(_SPEC_KEYS))} "
                                "(constructor arguments go in 'kw')")
    src = spec.get("src")
    if src not in ZOO_SOURCES:
        raise InvalidInputError(f"{where}: spec 'src' must be one of {', '.join(ZOO_SOURCES)}, got {src!r}")
    if "name" not in spec and src not in ("tv_vit", "tv_resnet"):
        raise InvalidInputError(f"{where}: spec needs a 'name' (e.g. resnet50), got {spec!r}")
    positive_int(spec.get("res", 224), "spec 'res'", where=where)
    if "kw" in spec and not isinstance(spec["kw"], dict):
        raise InvalidInputError(f"{where}: spec 'kw' must be a JSON object, got {spec['kw']!r}")
    tr = spec.get("trainable", "all")
    if not (tr in TRAINABLE_CHOICES or (isinstance(tr, list) and tr and all(isinstance(p, str) and p for p in tr))):
        raise InvalidInputError(f"{where}: spec 'trainable' must be one of {', '.join(TRAINABLE_CHOICES)} or a "
                                f"non-empty list of parameter-name prefixes, got {tr!r}")
    return spec


def _grid_items(spec: dict, grid, where: str) -> list[WorkItem]:
    if not isinstance(grid, list) or not grid:
        raise InvalidInputError(f"{where}: 'grid' must be a non-empty list of {{mode, dtype, batch}} objects")
    items = []
    for j, g in enumerate(grid):
        w = f"{where} grid[{j}]"
        if not isinstance(g, dict):
            raise InvalidInputError(f"{w}: expected an object with mode, dtype and batch, got {g!r}")
        bad = set(g) - {"mode", "dtype", "batch"}
        if bad:
            raise InvalidInputError(f"{w}: unknown keys {sorted(bad)}; valid: batch, dtype, mode")
        modes = _check_choice(_as_list(g.get("mode", "infer"), "mode", w), VISION_MODES, "mode", w)
        dtypes = _check_choice(_as_list(g.get("dtype", "fp32"), "dtype", w), DTYPES, "dtype", w)
        batches = positive_ints(_as_list(g.get("batch"), "batch", w), "batch sizes", where=w)
        items += [WorkItem(spec, b, m, d) for m in modes for d in dtypes for b in batches]
    return items


def _llm_spec(entry: dict, where: str) -> dict:
    from ..llm import resolve_llm

    model = entry.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidInputError(f"{where}: 'model' must be a name (a registry name or your label), got {model!r}")
    config = entry.get("config")
    if config is None:
        try:
            s = resolve_llm(model)
        except (InvalidInputError, ModelLoadError) as e:
            raise InvalidInputError(f"{where}: {e} (or give 'model_type' and 'config')") from None
        model_type, config, causal = s.model_type, dict(s.config), s.causal
    else:
        if not isinstance(config, dict):
            raise InvalidInputError(f"{where}: 'config' must be a JSON object, got {type(config).__name__}")
        model_type = entry.get("model_type") or config.get("model_type")
        if not isinstance(model_type, str) or not model_type:
            raise InvalidInputError(f"{where}: 'model_type' is missing (the transformers model type, e.g. 'llama')")
        causal = resolve_llm(dict(config, model_type=model_type)).causal
    if "causal" in entry:
        if not isinstance(entry["causal"], bool):
            raise InvalidInputError(f"{where}: 'causal' must be true or false, got {entry['causal']!r}")
        causal = entry["causal"]
    return {"model": model, "model_type": model_type, "config": config, "causal": causal}


def _llm_items(entry: dict, where: str) -> list[WorkItem]:
    from ..llm import is_encoder_decoder

    spec = _llm_spec(entry, where)
    seq2seq = not spec["causal"] and is_encoder_decoder(dict(spec["config"], model_type=spec["model_type"]))
    valid_modes = ((*LLM_MODES, "training") if spec["causal"] else ("forward", "decode", "training") if seq2seq
                   else ("forward",))
    default_mode = "prefill" if spec["causal"] else "forward"
    modes = _as_list(entry.get("mode", default_mode), "mode", where)
    for m in modes:
        if m not in valid_modes:
            kind = "a decoder" if spec["causal"] else "an encoder-decoder" if seq2seq else "an encoder"
            raise InvalidInputError(f"{where}: mode {m!r} is not valid for {kind} ({spec['model']}); "
                                    f"valid: {', '.join(valid_modes)}")
    dtypes = _check_choice(_as_list(entry.get("dtype", "fp32"), "dtype", where), DTYPES, "dtype", where)
    batches = positive_ints(_as_list(entry.get("batch"), "batch", where), "batch sizes", where=where)
    seqs = positive_ints(_as_list(entry.get("seq"), "seq", where), "sequence lengths", where=where)
    targets: list = [None]
    if entry.get("target_seq") is not None:
        if not seq2seq:
            raise InvalidInputError(f"{where}: 'target_seq' is an encoder-decoder's decoder length; "
                                    f"{spec['model']} reads one sequence: leave it out")
        targets = positive_ints(_as_list(entry["target_seq"], "target_seq", where), "target lengths", where=where)
    cfg = spec["config"]
    max_pos = cfg.get("max_position_embeddings") or cfg.get("n_positions")
    if isinstance(max_pos, int):
        for m in modes:
            extra = DECODE_TOKENS + WARMUP if m == "decode" else 0
            for s in seqs:  # the decoder's tokens grow while decoding: the target's, or seq where it has none
                if s + (extra if targets == [None] else 0) > max_pos:
                    raise InvalidInputError(f"{where}: seq {s}{' + decode tokens ' + str(extra) if extra else ''} "
                                            f"exceeds the model's {max_pos} positions")
            for t in targets:
                if t is not None and t + extra > max_pos:
                    raise InvalidInputError(f"{where}: target_seq {t}{' + decode tokens ' + str(extra) if extra else ''}"
                                            f" exceeds the model's {max_pos} positions")
    return [WorkItem(spec, b, m, d, s, t) for m in modes for d in dtypes for b in batches for s in seqs
            for t in targets]


def parse_work(data: Any, *, batches: Iterable[int] | None = None, where: str = "work") -> list[WorkItem]:
    """Turn a work file's content (see the module doc) into work items.

    ``data`` is a ``{"vision": [...], "llm": [...]}`` object, or a plain list
    of vision specs measured at ``batches`` (default ``[1]``), fp32 inference.
    """
    if isinstance(data, dict) and not {"vision", "llm"} & set(data) and ("src" in data or "name" in data):
        data = [data]  # one spec
    if isinstance(data, list):
        if not data:
            raise InvalidInputError(f"{where}: nothing to measure: the list of specs is empty")
        bs = positive_ints(batches or [1], "batch sizes", where=where)
        items = []
        for i, spec in enumerate(data):
            spec = _check_vision_spec(spec, f"{where}[{i}]")
            items += [WorkItem(spec, b, "infer", "fp32") for b in bs]
        return items
    if not isinstance(data, dict):
        raise InvalidInputError(f"{where}: expected a JSON object with 'vision'/'llm' lists, or a list of specs")
    if batches:
        raise InvalidInputError(f"{where}: --batch applies to a plain list of specs; this work file sets "
                                "the batch sizes of every entry")
    bad = set(data) - _TOP_KEYS
    if bad:
        raise InvalidInputError(f"{where}: unknown keys {sorted(bad)}; valid: {', '.join(sorted(_TOP_KEYS))}")
    for k in ("vision", "llm"):
        if data.get(k) and not isinstance(data[k], list):
            raise InvalidInputError(f"{where}: '{k}' must be a list of entries ([{{...}}, ...]), got a "
                                    f"{type(data[k]).__name__}: {json.dumps(data[k])[:80]}")
    if not data.get("vision") and not data.get("llm"):
        raise InvalidInputError(f"{where}: nothing to measure: give a non-empty 'vision' and/or 'llm' list")
    items: list[WorkItem] = []
    for i, e in enumerate(data.get("vision") or []):
        w = f"{where}: vision[{i}]"
        if not isinstance(e, dict) or "spec" not in e:
            raise InvalidInputError(f"{w}: expected an object with a 'spec', got {e!r}")
        bad = set(e) - _VISION_ENTRY_KEYS
        if bad:
            raise InvalidInputError(f"{w}: unknown keys {sorted(bad)}; valid: {', '.join(sorted(_VISION_ENTRY_KEYS))}")
        spec = _check_vision_spec(e["spec"], w)
        if "grid" in e or not {"batch", "mode", "dtype"} & set(e):
            if {"batch", "mode", "dtype"} & set(e):
                raise InvalidInputError(f"{w}: give either 'grid' or batch/mode/dtype, not both")
            grid = e.get("grid", data.get("grid"))
            if grid is None:
                raise InvalidInputError(f"{w}: no batch sizes: give 'batch' (and mode/dtype), a 'grid', "
                                        "or a top-level 'grid'")
            items += _grid_items(spec, grid, w)
        else:
            items += _grid_items(spec, [{k: e[k] for k in ("mode", "dtype", "batch") if k in e}], w)
    for i, e in enumerate(data.get("llm") or []):
        w = f"{where}: llm[{i}]"
        if not isinstance(e, dict):
            raise InvalidInputError(f"{w}: expected an object with model, batch, seq, got {e!r}")
        bad = set(e) - _LLM_ENTRY_KEYS
        if bad:
            raise InvalidInputError(f"{w}: unknown keys {sorted(bad)}; valid: {', '.join(sorted(_LLM_ENTRY_KEYS))}")
        items += _llm_items(e, w)
    return items


def load_work(path: str | os.PathLike, *, batches: Iterable[int] | None = None) -> list[WorkItem]:
    """Read a work file: a JSON object (see the module doc), a JSON list or JSONL of vision specs."""
    path = Path(path)
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder; expected a JSON work file (see costmodel/data/specs/)")
    if not path.is_file():
        raise ModelLoadError(f"no such file: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"cannot read {path} as a JSON work file: {e}") from None
    try:
        if text.lstrip().startswith(("[", "{")):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as whole:
                if not text.lstrip().startswith("{"):
                    raise
                data = _jsonl(text, whole)  # JSONL of specs
        else:
            data = _jsonl(text)
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"{path} is neither a JSON work file, a JSON list nor JSONL of specs: {e}") from None
    return parse_work(data, batches=batches, where=str(path))


def _jsonl(text: str, whole: json.JSONDecodeError | None = None) -> list:
    """The values of a JSONL text; a line that is not JSON raises with its place in the file (line and
    column). Where the first line is not JSON either, the text was one JSON document: ``whole`` (its
    error) is raised."""
    out, start = [], 0
    for line in text.splitlines(keepends=True):
        at, start = start, start + len(line)
        if not line.strip():
            continue
        try:
            out.append(json.loads(line.rstrip("\r\n")))
        except json.JSONDecodeError as e:
            if whole is not None and not out:
                raise whole from None
            raise json.JSONDecodeError(e.msg, text, at + e.pos) from None
    return out


def _as_item(x, batches) -> list[WorkItem]:
    if isinstance(x, WorkItem):
        return [x]
    if isinstance(x, (tuple, list)) and len(x) in (4, 5) and isinstance(x[0], dict):
        spec, b, m, d = x[:4]
        s = x[4] if len(x) == 5 else None
        w = WorkItem(dict(spec), int(b), m, d, s)
        if w.kind == "llm":
            if "config" not in spec or "model_type" not in spec:
                w.spec = _llm_spec(dict(spec), w.label())
            if s is None:
                raise InvalidInputError(f"{w.label()}: a transformer item needs a sequence length")
            _check_choice([m], LLM_MODES, "mode", w.label())
        else:
            _check_choice([m], VISION_MODES, "mode", w.label())
        _check_choice([d], DTYPES, "dtype", w.label())
        return [w]
    if isinstance(x, dict):
        return parse_work([x], batches=batches)
    raise InvalidInputError(f"expected a work item (spec, batch, mode, dtype[, seq]) or a vision spec, got {x!r}")



# ------------------------------------------------------------------ output
def output_paths(output: str | os.PathLike) -> dict[str, Path]:
    """Where vision and transformer rows go: ``output`` for one kind, a sibling for the other
    (``vision*.jsonl`` <-> ``llm*.jsonl``, else ``NAME_llm.jsonl`` for transformer rows)."""
    out = Path(output)
    name = out.name
    if "llm" in name and "vision" not in name:
        return {"llm": out, "vision": out.with_name(name.replace("llm", "vision", 1))}
    if "vision" in name:
        return {"vision": out, "llm": out.with_name(name.replace("vision", "llm", 1))}
    return {"vision": out, "llm": out.with_name(f"{out.stem}_llm{out.suffix or '.jsonl'}")}


def resumed_rows(path: Path) -> list[dict]:
    """The rows of an output file a run resumes, with the lines an interrupted run cut off removed from the
    file (their rows are measured again, and the file loads again): a last line without its newline, and a
    line of an older release's resume left in the middle (a cut row's start, followed by a fresh line), each
    the start of a JSON object as collect writes it (``{"``). Any other line that is not one JSON object is
    refused, the file untouched: it holds something other than rows (a CSV header, Python reprs), and
    appending rows to it would spoil both."""
    import warnings

    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    rows, keep, cut = [], [], 0
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
            # the start of a row as collect writes it (json.dumps of an object): anything else is not a cut row
            if line.lstrip().startswith('{"') or line.strip() == "{":
                cut += 1
                continue
        if not isinstance(row, dict):
            raise InvalidInputError(
                f"{path}:{i}: not a row of measurements (collect writes one JSON object per line and appends to "
                f"the rows already there); this file holds something else ({line.strip()[:40]!r}): choose "
                "another output")
        rows.append(row)
        keep.append(line)
    if cut:
        _rewrite(path, keep)
        warnings.warn(f"{path}: removed {cut} line(s) an interrupted run cut off; their rows are measured again",
                      stacklevel=3)
    return rows


def _done_keys(paths: Iterable[Path]) -> set[str]:
    return {k for p in paths for k in map(key_of_row, resumed_rows(p)) if k}


def check_resume(paths: dict[str, Path], device_name: str | None, threads: int | None, ops: bool) -> None:
    """Refuse to resume an output measured with other settings: rows of another device, of another CPU
    thread count (a CPU row's latency depends on it), or, with ``ops``, rows measured without operator
    profiles (they would stay without, and the run would say nothing). ``device_name``: the name rows of
    this run record (``None``: not checked); ``threads``: this run's torch threads (CPU rows only)."""
    rows = [r for k in ("vision", "llm") if k in paths for r in resumed_rows(paths[k])]
    if not rows:
        return
    where = paths["vision"] if any("spec" in r for r in rows) or "llm" not in paths else paths["llm"]
    devices = sorted({str(r["device"]) for r in rows if r.get("device")})
    if device_name is not None and devices and devices != [device_name]:
        raise InvalidInputError(
            f"{where} holds rows measured on {', '.join(devices)}; this run measures {device_name}: one output "
            "holds one device's rows (choose another output)")
    seen = sorted({int(r["threads"]) for r in rows if isinstance(r.get("threads"), int)})
    if threads is not None and seen and seen != [threads]:
        raise InvalidInputError(
            f"{where} holds rows measured with {', '.join(map(str, seen))} CPU thread(s); this run uses {threads}: "
            f"a CPU row's latency depends on it (pass --threads {seen[0]}, or choose another output)")
    if ops:
        profiled = set()
        if paths["ops"].exists():
            for line in paths["ops"].read_text().splitlines():
                try:
                    profiled.add(json.loads(line).get("key"))
                except (json.JSONDecodeError, AttributeError):
                    continue
        # an out-of-memory row has no step to profile, and a row whose ``ops`` summary says it was skipped
        # (decode steps, transformer training steps) was measured with --ops and has no operator rows
        bare = [k for r in rows if (k := key_of_row(r)) and k not in profiled and not r.get("oom")
                and not (isinstance(r.get("ops"), dict) and "skipped" in r["ops"])]
        if bare:
            raise InvalidInputError(
                f"{where} holds {len(bare)} row(s) measured without operator profiles (none in {paths['ops']}); "
                "resuming it with --ops would leave them without: choose another output, or resume without --ops")


class _Writer:
    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths
        self.files: dict[str, Any] = {}

    def _open(self, kind: str):
        f = self.files.get(kind)
        if f is None:
            p = self.paths[kind]
            p.parent.mkdir(parents=True, exist_ok=True)
            # a previous run cut mid-line: start on a fresh line
            torn = p.exists() and p.stat().st_size > 0 and not p.read_bytes().endswith(b"\n")
            f = self.files[kind] = p.open("a")
            if torn:
                f.write("\n")
        return f

    def write_text(self, kind: str, text: str) -> None:
        f = self._open(kind)
        f.write(text)
        f.flush()
        os.fsync(f.fileno())

    def write(self, kind: str, row: dict) -> None:
        self.write_text(kind, json.dumps(row) + "\n")

    def write_many(self, kind: str, rows: list[dict]) -> None:
        """All of ``rows`` in one write (the operator rows of one run)."""
        self.write_text(kind, "".join(json.dumps(r) + "\n" for r in rows))

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def ops_path(output: str | os.PathLike) -> Path:
    """Where ``collect(..., ops=True)`` writes operator rows: ``ops.jsonl`` beside ``output``."""
    return Path(output).with_name("ops.jsonl")


def _op_row(item: WorkItem, row: dict, op: dict) -> dict:
    """An operator row with the fields that name its run (``key`` joins it to the model row)."""
    head = {"key": item.key(), "model": item.spec.get("name") or item.spec.get("model"),
            "family": item.spec.get("family", item.spec.get("model_type")), "mode": item.mode,
            "dtype": item.dtype, "batch": item.batch}
    if item.seq is not None:
        head["seq"] = item.seq
    if item.target_seq is not None:
        head["target_seq"] = item.target_seq
    head["device"] = row.get("device")
    return {**head, **op}


def _model_keys_beside(path: Path) -> set[str]:
    """The keys of the model rows in every JSONL file beside ``path`` (the outputs of one folder share its
    ``ops.jsonl``); lines that are not rows are passed over."""
    keys: set[str] = set()
    for p in path.parent.glob("*.jsonl"):
        if p == path or not p.is_file():
            continue
        try:
            lines = p.read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            k = key_of_row(r) if isinstance(r, dict) else None
            if k:
                keys.add(k)
    return keys


def _drop_orphan_ops(path: Path, done: set[str]) -> None:
    """Remove operator rows whose model row was never written (a run cut between the two): rows whose key is
    neither in ``done`` nor a model row of another output in the same folder."""
    if not path.exists():
        return
    done = set(done) | _model_keys_beside(path)
    keep, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            k = json.loads(line).get("key")
        except (json.JSONDecodeError, AttributeError):
            dropped += 1
            continue
        if k in done:
            keep.append(line)
        else:
            dropped += 1
    if dropped:
        _rewrite(path, keep)


def _rewrite(path: Path, lines: list[str]) -> None:
    """Replace ``path`` by ``lines`` in one step (a file beside it, renamed over it), keeping its permissions."""
    import stat
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w") as f:
        f.write("".join(x + "\n" for x in lines))
    os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
    os.replace(tmp, path)

