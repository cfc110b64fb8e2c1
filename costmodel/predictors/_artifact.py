"""Reading saved artifacts defensively: every file is checked as it is loaded.

A predictor artifact is a folder of JSON files (configs, normalization,
XGBoost models) and safetensors files (network weights).  Whatever is wrong
with one of them (a missing or unreadable file, a field of the wrong type or
out of range, a list of the wrong length, a weight whose shape does not match
the network the config describes, bytes that changed after saving) raises
:class:`~costmodel.ArtifactError` naming the file and the problem, at load
time, instead of a raw exception then or a wrong number later.

* :func:`check` validates a parsed JSON value against a small declarative
  schema (:class:`Num`, :class:`Int`, :class:`Str`, :class:`Bool`,
  :class:`ListOf`, :class:`Fields`, :class:`Opt`); :func:`load_config`
  builds a config dataclass from a checked section.
* :func:`read_json` / :func:`read_text` read a file or explain why not.
* :func:`load_weights` compares a safetensors file's tensor names, shapes and
  dtypes with a module's ``state_dict`` before loading it, and refuses
  non-finite weights.
* Checksums: the JSON file that describes an artifact records the SHA-256
  of every data file it owns (``"checksums": {"weights.safetensors":
  "<hex>"}``, written by :func:`checksums` when saving); :func:`verify_checksums`
  refuses a file whose bytes changed.  The document records its own checksum
  too (``"config_sha256"``, :func:`seal`: the SHA-256 of its other fields as
  canonical JSON), so a changed number in it, or a deleted ``checksums``, is
  refused as well.  Artifacts written before checksums were recorded have
  neither and are checked structurally only.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import fields as dc_fields
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .._errors import ArtifactError, CostModelError
from .._validate import is_int

CHECKSUMS = "checksums"
CONFIG_SHA = "config_sha256"
HEX16 = r"[0-9a-f]{16}"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_VERSION = r"\d+(\.\d+)*([.+-]?[0-9A-Za-z.+-]*)?"


class _Bad(Exception):
    """One failed check: where in the document (``at``) and what is wrong."""

    def __init__(self, at: str, msg: str) -> None:
        super().__init__(msg)
        self.at, self.msg = at, msg


def _show(v: Any) -> str:
    try:
        s = json.dumps(v, allow_nan=False)
    except (TypeError, ValueError):
        s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _join(at: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{at}[{key}]"
    return f"{at}.{key}" if at else key


# ------------------------------------------------------------------ rules
class Rule:
    def check(self, v: Any, at: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class Num(Rule):
    """A finite number (ints accepted) in ``[lo, hi]``; ``lo_open``/``hi_open`` exclude the bound."""

    def __init__(self, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                 hi_open: bool = False) -> None:
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open

    def _kind(self, v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def what(self) -> str:
        return "a number"

    def check(self, v, at):
        if not self._kind(v):
            raise _Bad(at, f"must be {self.what()}, got {_show(v)}")
        if not math.isfinite(v):
            raise _Bad(at, f"must be finite, got {_show(v)}")
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            raise _Bad(at, f"must be {'>' if self.lo_open else '>='} {self.lo}, got {_show(v)}")
        if self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)):
            raise _Bad(at, f"must be {'<' if self.hi_open else '<='} {self.hi}, got {_show(v)}")


class Int(Num):
    """An integer (not a bool) in ``[lo, hi]``."""

    def _kind(self, v) -> bool:
        return is_int(v)

    def what(self) -> str:
        return "an integer"


class Bool(Rule):
    def check(self, v, at):
        if not isinstance(v, bool):
            raise _Bad(at, f"must be true or false, got {_show(v)}")


class Str(Rule):
    """A non-empty string, optionally one of ``choices`` or matching ``pattern`` in full."""

    def __init__(self, choices: Iterable[str] | None = None, *, pattern: str | None = None) -> None:
        self.choices = tuple(choices) if choices is not None else None
        self.pattern = re.compile(pattern) if pattern else None

    def check(self, v, at):
        if not isinstance(v, str) or not v:
            raise _Bad(at, f"must be a non-empty string, got {_show(v)}")
        if self.choices is not None and v not in self.choices:
            raise _Bad(at, f"must be one of {list(self.choices)}, got {_show(v)}")
        if self.pattern is not None and not self.pattern.fullmatch(v):
            raise _Bad(at, f"is not a valid value: {_show(v)}")


class Opt(Rule):
    """``None`` or what ``rule`` accepts."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule

    def check(self, v, at):
        if v is not None:
            self.rule.check(v, at)


class ListOf(Rule):
    """A list whose items pass ``item``; ``length`` fixes its length, ``unique`` forbids repeats."""

    def __init__(self, item: Rule, *, length: int | None = None, min_len: int = 0, unique: bool = False) -> None:
        self.item, self.length, self.min_len, self.unique = item, length, min_len, unique

    def check(self, v, at):
        if not isinstance(v, list):
            raise _Bad(at, f"must be a list, got {_show(v)}")
        if self.length is not None and len(v) != self.length:
            raise _Bad(at, f"must have {self.length} entries, has {len(v)}")
        if len(v) < self.min_len:
            raise _Bad(at, f"must have at least {self.min_len} entries, has {len(v)}")
        for i, x in enumerate(v):
            self.item.check(x, _join(at, i))
        if self.unique and len({json.dumps(x, sort_keys=True) for x in v}) != len(v):
            raise _Bad(at, "must not repeat an entry")


class Fields(Rule):
    """An object with the given fields.

    Every field is required except those named in ``optional`` (fields a
    later version added, or informational ones).  ``extra`` allows other
    keys (of any value); without it an unknown key is an error.
    """

    def __init__(self, spec: Mapping[str, Rule], *, optional: Iterable[str] = (), extra: bool = False) -> None:
        self.spec, self.optional, self.extra = dict(spec), frozenset(optional), extra

    def check(self, v, at):
        if not isinstance(v, dict):
            raise _Bad(at, f"must be an object, got {_show(v)}")
        for k, rule in self.spec.items():
            if k in v:
                rule.check(v[k], _join(at, k))
            elif k not in self.optional:
                raise _Bad(_join(at, k), "is missing")
        if not self.extra:
            unknown = sorted(set(v) - set(self.spec))
            if unknown:
                raise _Bad(_join(at, unknown[0]), "is not a known field")


class Where(Rule):
    """``rule``, then ``test(value)`` must hold (``msg`` says what it means)."""

    def __init__(self, rule: Rule, test: Callable[[Any], bool], msg: str) -> None:
        self.rule, self.test, self.msg = rule, test, msg

    def check(self, v, at):
        self.rule.check(v, at)
        if not self.test(v):
            raise _Bad(at, self.msg)


def check(value: Any, rule: Rule, file: Path | str, at: str = "") -> Any:
    """``value`` if it passes ``rule``; else :class:`ArtifactError` naming ``file`` and the field."""
    try:
        rule.check(value, at)
    except _Bad as e:
        where = f"field {e.at!r}" if e.at else "the document"
        raise ArtifactError(f"{file}: {where} {e.msg}") from None
    return value


def fail(file: Path | str, msg: str) -> ArtifactError:
    return ArtifactError(f"{file}: {msg}")


#: fields every training run records (``meta`` in config.json); the others are informational
META = Fields({
    "trained_rows": Int(0),
    "data_hash": Str(pattern=HEX16),
    "devices": ListOf(Str(), unique=True),
    "library_version": Str(pattern=_VERSION),
    "train_seconds": Num(0),
    "stage2_seconds": Num(0),
    "stage3_seconds": Num(0),
    "loss": ListOf(Num()),
    "summary_loss": ListOf(Num()),
    "pretrained_encoder": Bool(),
    "adapted_from": Str(),
    "adapted_shots": Int(1),
    "adapted_seed": Int(),
    "fine_tuned_from": Fields({}, extra=True),
    "dtypes": ListOf(Str(), unique=True),
}, optional=("dtypes", "train_seconds", "stage2_seconds", "stage3_seconds", "loss", "summary_loss",
             "pretrained_encoder", "adapted_from", "adapted_shots", "adapted_seed", "fine_tuned_from"), extra=True)


class Scalar(Rule):
    """A string, a bool or a finite number."""

    def check(self, v, at):
        if isinstance(v, (bool, str)) or (isinstance(v, (int, float)) and math.isfinite(v)):
            return
        raise _Bad(at, f"must be a plain value, got {_show(v)}")


#: XGBoost hyperparameters as the predictors store them (used to refit; unknown keys hold plain values)
XGB_PARAMS = Fields({
    "n_estimators": Int(1), "max_depth": Int(0), "learning_rate": Num(0, lo_open=True),
    "subsample": Num(0, 1, lo_open=True), "colsample_bytree": Num(0, 1, lo_open=True),
    "min_child_weight": Num(0), "reg_lambda": Num(0), "reg_alpha": Num(0), "gamma": Num(0),
}, optional=("n_estimators", "max_depth", "learning_rate", "subsample", "colsample_bytree", "min_child_weight",
             "reg_lambda", "reg_alpha", "gamma"), extra=True)


def xgb_params(v: Any, file: Path | str, at: str = "params") -> dict:
    check(v, XGB_PARAMS, file, at)
    for k, x in v.items():
        check(x, Scalar(), file, _join(at, k))
    return dict(v)


def load_config(cls, d: Any, rules: Mapping[str, Rule], file: Path | str, at: str = "config",
                optional: Iterable[str] = ()):
    """The dataclass ``cls`` from the checked object ``d``.

    ``rules`` must name every field of ``cls``; fields in ``optional`` may be
    absent (a later version added them) and then take their defaults.  A
    value the dataclass itself refuses is reported the same way.
    """
    names = {f.name for f in dc_fields(cls)}
    if set(rules) != names:  # pragma: no cover - a developer error, caught by the tests
        raise AssertionError(f"rules for {cls.__name__} do not cover its fields: {sorted(names ^ set(rules))}")
    check(d, Fields(rules, optional=optional), file, at)
    try:
        return cls(**d)
    except (CostModelError, TypeError, ValueError) as e:
        raise fail(file, f"{at}: {e}") from None


# ------------------------------------------------------------------ files
def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise fail(path, "is missing") from None
    except OSError as e:
        raise fail(path, f"cannot be read ({e.strerror or e})") from None


def read_text(path: Path) -> str:
    try:
        return read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail(path, f"is not UTF-8 text (byte {e.start}): the file is damaged") from None


def read_json(path: Path, *, obj: bool = True) -> Any:
    """Parsed JSON of ``path`` (an object unless ``obj=False``), or ArtifactError."""
    text = read_text(path)
    if not text.strip():
        raise fail(path, "is empty")
    try:
        v = json.loads(text)
    except json.JSONDecodeError as e:
        raise fail(path, f"is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if obj and not isinstance(v, dict):
        raise fail(path, f"must hold a JSON object, holds {type(v).__name__}")
    return v


def digest(path: Path) -> str:
    return hashlib.sha256(read_bytes(path)).hexdigest()


def checksums(folder: Path, names: Iterable[str]) -> dict[str, str]:
    """``{name: sha256}`` of files of ``folder`` (what savers write under ``"checksums"``)."""
    return {n: digest(Path(folder) / n) for n in names}


def doc_digest(d: dict) -> str:
    """The SHA-256 of a JSON document's fields other than its own checksum, as canonical JSON (sorted keys,
    no spaces): what :func:`seal` records and :func:`verify_checksums` compares."""
    body = {k: v for k, v in d.items() if k != CONFIG_SHA}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal(d: dict) -> dict:
    """``d`` with its own checksum (``config_sha256``) as the last field; savers write this."""
    return {**{k: v for k, v in d.items() if k != CONFIG_SHA}, CONFIG_SHA: doc_digest(d)}


def verify_checksums(d: dict, file: Path, names: Iterable[str]) -> None:
    """Check the document's own checksum, then the files ``d[CHECKSUMS]`` lists next to ``file``; it must
    cover every name in ``names``.

    ``file`` is the JSON document holding ``d``; a document without checksums
    (written before they were recorded) passes.
    """
    if CONFIG_SHA in d:
        want = check(d[CONFIG_SHA], Str(pattern=_HEX64.pattern), file, CONFIG_SHA)
        if doc_digest(d) != want:
            raise fail(file, f"does not match its own checksum ({CONFIG_SHA}): a value in it was changed or is "
                             "damaged")
    if CHECKSUMS not in d:
        return
    names = list(names)
    table = check(d[CHECKSUMS], Fields({n: Str(pattern=_HEX64.pattern) for n in names}, extra=True), file,
                  CHECKSUMS)
    for n, want in table.items():
        check(want, Str(pattern=_HEX64.pattern), file, _join(CHECKSUMS, n))
        if "/" in n or "\\" in n or n.startswith("."):
            raise fail(file, f"{CHECKSUMS} names {n!r}, which is not a file of this folder")
        target = file.parent / n
        if digest(target) != want:
            raise fail(target, f"does not match the checksum {file.name} recorded for it: "
                               "the file changed or is damaged")


# ---------------------------------------------------------------- weights
def read_safetensors(path: Path) -> dict:
    """Tensors of a safetensors file, or ArtifactError (missing, truncated, damaged header)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    data = read_bytes(path)
    if not data:
        raise fail(path, "is empty")
    try:
        return load(data)
    except (SafetensorError, ValueError, RuntimeError, OverflowError) as e:
        raise fail(path, f"is not a readable safetensors file ({str(e).splitlines()[0]})") from None


def load_weights(module, path: Path, *, keep: Callable[[str], bool] | None = None, what: str = "the network",
                 state: dict | None = None) -> None:
    """Load ``path`` into ``module`` after comparing names, shapes and dtypes with its ``state_dict``.

    ``keep`` selects the module's keys the file holds (the others keep their
    current values); a key the file lacks is accepted only if it shares its
    storage with one it has (tied weights, stored once).  Non-finite
    floating-point weights are refused.
    """
    import torch

    got = read_safetensors(path) if state is None else state
    want = {k: v for k, v in module.state_dict().items() if keep is None or keep(k)}
    unexpected = sorted(set(got) - set(want))
    if unexpected:
        raise fail(path, f"holds {len(unexpected)} tensor(s) {what} does not have, e.g. {unexpected[0]!r}: "
                         "it was saved for another configuration")
    present_ptrs = {want[k].data_ptr() for k in got}
    missing = sorted(k for k in set(want) - set(got) if want[k].data_ptr() not in present_ptrs)
    if missing:
        raise fail(path, f"lacks {len(missing)} tensor(s) of {what}, e.g. {missing[0]!r}")
    for k, t in got.items():
        w = want[k]
        if tuple(t.shape) != tuple(w.shape):
            raise fail(path, f"tensor {k!r} has shape {list(t.shape)}, but the configured network needs "
                             f"{list(w.shape)}: the weights do not match the config")
        if t.dtype != w.dtype:
            raise fail(path, f"tensor {k!r} is {t.dtype}, expected {w.dtype}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise fail(path, f"tensor {k!r} holds non-finite values")
    res = module.load_state_dict(got, strict=False)
    if res.unexpected_keys:  # pragma: no cover - excluded above
        raise fail(path, f"unexpected tensors {res.unexpected_keys[:3]}")


def record_checksums(file: Path, names: Iterable[str]) -> None:
    """Write the checksums of ``names`` (files next to ``file``) into the JSON document ``file``.

    Savers record them as they write an artifact; this also adds them to an
    artifact written before checksums were recorded.
    """
    file = Path(file)
    d = read_json(file)
    d[CHECKSUMS] = checksums(file.parent, names)
    file.write_text(json.dumps(seal(d), indent=1))
