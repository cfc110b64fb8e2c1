"""What every command shares: the one-line-error parser and the argument types."""

from __future__ import annotations

import argparse

from .. import _validate
from .._errors import InvalidInputError
from .._validate import positive_ints

#: what :func:`parse_dims` calls the dimensions in its message
DIMS = "comma-separated dimensions (e.g. 3,224,224)"
MODE_ALIASES = {"inference": "inference", "infer": "inference", "training": "training", "train": "training"}


class UsageError(Exception):
    """A command-line argument error (printed as one ``costmodel: error:`` line, exit code 2)."""


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` whose errors are one line (no usage block) and never exit the interpreter."""

    def error(self, message: str, sub: str | None = None):  # noqa: D401 - argparse's hook
        sub = sub or (self.prog.split(" ", 1)[1] if " " in self.prog else None)
        hint = f" (see 'costmodel {sub} --help')" if sub else " (see 'costmodel --help')"
        raise UsageError(f"{sub + ': ' if sub else ''}{message}{hint}")

    def parse_args(self, args=None, namespace=None):
        ns, extra = self.parse_known_args(args, namespace)
        if extra:  # named with the subcommand they were given to
            self.error(f"unrecognized arguments: {' '.join(extra)}", getattr(ns, "command", None))
        return ns


def _typed(check, *args, **kw):
    """``check(*args, **kw)`` of :mod:`costmodel._validate`, its error turned into argparse's."""
    try:
        return check(*args, **kw)
    except InvalidInputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _number(parse, s: str):
    """``parse(s)``, or ``s`` itself when it does not parse (the check then names it as given)."""
    try:
        return parse(s)
    except ValueError:
        return s


def parse_dims(text: str, what: str = DIMS) -> tuple[int, ...]:
    """``"3,224,224"`` or ``"3x224x224"`` -> ``(3, 224, 224)``: positive integers, none left out.

    Raises:
        InvalidInputError: a dimension that is not a positive integer (the message names it).
    """
    parts = [p.strip() for p in text.lower().replace("x", ",").split(",")]
    return tuple(positive_ints([_number(int, p) for p in parts], what, given=text))


def shape_arg(s: str) -> tuple[int, ...]:
    """``3,224,224`` (or ``3x224x224``) -> ``(3, 224, 224)``: positive integers, none left out."""
    return _typed(parse_dims, s)


def mode_arg(s: str) -> str:
    try:
        return MODE_ALIASES[s.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"invalid mode {s!r}; choose from inference, training") from None


def positive_float(s: str) -> float:
    return _typed(_validate.positive_number, _number(float, s), "")


def non_negative_float(s: str) -> float:
    return _typed(_validate.non_negative_number, _number(float, s), "")


def positive_int(s: str) -> int:
    return _typed(_validate.positive_int, _number(int, s), "")


# ------------------------------------------------------------- shared argument groups
#: what a MODEL argument may be
MODEL_HELP = ("an .onnx file, a zoo name (torchvision:resnet50, timm:poolformer_s12) or a JSON spec, inline "
              "('{\"src\": \"tv\", \"name\": \"resnet50\", \"res\": 160}') or in a .json file")
#: a saved profile of the C++ harness
PROFILE_HELP = "a saved measured profile (JSON from costmodel.measure.harness.measure)"


def add_command(sub, name: str, func, *, help: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """The parser of one command: its description and examples printed as written, ``func`` run for it."""
    p = sub.add_parser(name, help=help, description=description, epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=func)
    return p


def add_shape_args(p: argparse.ArgumentParser, *, batch_default: int | None = 1, batch_required: bool = False,
                   batch_help: str = "batch size (default 1)", input_help: str = "input shape without batch",
                   dtype_help: str | None = "the model converted to this dtype (default: its own; fp32 for a zoo "
                                            "name or spec, the dtype an ONNX file records)") -> None:
    """``--batch/-b``, ``--input/-i`` (C,H,W) and ``--dtype`` of a vision workload."""
    p.add_argument("--batch", "-b", type=positive_int, default=batch_default, required=batch_required,
                   help=batch_help)
    p.add_argument("--input", "-i", dest="input_shape", metavar="C,H,W", type=shape_arg, help=input_help)
    p.add_argument("--dtype", default=None, choices=("fp32", "fp16", "bf16"), help=dtype_help)


def add_autocast_arg(p: argparse.ArgumentParser) -> None:
    """``--autocast``: mixed precision, the fp32 model under ``torch.autocast``."""
    from ..ir import AUTOCAST_DTYPES

    p.add_argument("--autocast", default=None, choices=AUTOCAST_DTYPES,
                   help="mixed precision: the fp32 model under torch.autocast to this dtype (GEMMs and "
                        "convolutions in it, autocast's casts and fp32 operators included; keep --dtype fp32)")


def add_mode_arg(p: argparse.ArgumentParser, default: str = "inference") -> None:
    """``--mode``: inference or training (any alias of :data:`MODE_ALIASES`)."""
    other = "training" if default == "inference" else "inference"
    p.add_argument("--mode", type=mode_arg, default=default, help=f"{default} (default) or {other}")


def add_predictor_args(p: argparse.ArgumentParser) -> None:
    """``--optimizer`` (of a training step) and ``--predictor``."""
    p.add_argument("--optimizer", default="adam",
                   help="training optimizer: sgd, sgd_momentum, adam, adamw (default adam)")
    p.add_argument("--predictor", default=None,
                   help="predictor name or trained artifact folder (default: the library's best available)")


def add_carbon_args(p: argparse.ArgumentParser, *, region_default: str | None, region_help: str,
                    intensity_help: str) -> None:
    """``--region``, ``--carbon-intensity`` (g CO2e per kWh, instead of the region's) and ``--pue``."""
    p.add_argument("--region", default=region_default, help=region_help)
    p.add_argument("--carbon-intensity", type=non_negative_float, default=None, metavar="G_PER_KWH",
                   help=intensity_help)
    p.add_argument("--pue", type=float, default=1.0, metavar="PUE",
                   help="the data centre's power usage effectiveness, >= 1: the carbon is the GPU energy's times "
                        "it (default 1: the GPU alone; large cloud data centres report about 1.1)")


def add_epochs_seed_args(p: argparse.ArgumentParser, *, epochs_default: int | None, epochs_help: str,
                         seed_help: str) -> None:
    """``--epochs`` (> 0) and ``--seed`` (default 0) of a training command."""
    p.add_argument("--epochs", type=positive_int, default=epochs_default, help=epochs_help)
    p.add_argument("--seed", type=int, default=0, help=seed_help)


def add_artifact_args(p: argparse.ArgumentParser, *, output_help: str, package_help: str) -> None:
    """``-o/--output`` (an artifact folder) and ``--to-package`` (write the shipped one, for maintainers)."""
    p.add_argument("-o", "--output", default=None, help=output_help)
    p.add_argument("--to-package", action="store_true", help=package_help)


def named_shape_arg(s: str) -> tuple[str, tuple[int, ...]]:
    """``input_ids=8,128`` -> ``("input_ids", (8, 128))``: an ONNX input's name and full shape."""
    name, eq, dims = s.rpartition("=")
    if not eq or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=SHAPE with the full shape incl. batch, e.g. "
                                         f"input_ids=8,128; got {s!r}")
    return name, shape_arg(dims)


def add_onnx_inputs_arg(p: argparse.ArgumentParser) -> None:
    """``--onnx-input NAME=SHAPE`` (repeated): the full shapes of an ONNX model's several inputs."""
    p.add_argument("--onnx-input", dest="onnx_inputs", action="append", default=None, metavar="NAME=SHAPE",
                   type=named_shape_arg,
                   help="an input of an ONNX model with several inputs and its full shape incl. batch, e.g. "
                        "input_ids=8,128 (once per input with dynamic dimensions; --input is for one input)")


def onnx_inputs(a: argparse.Namespace) -> dict[str, tuple[int, ...]] | None:
    """The ``--onnx-input`` values as ``{input name: shape}`` (``None``: none given)."""
    given = getattr(a, "onnx_inputs", None)
    if not given:
        return None
    model = getattr(a, "model", None)
    if model is not None:
        from ..frontends import looks_like_onnx_path

        if not looks_like_onnx_path(model):
            raise InvalidInputError(f"--onnx-input names the inputs of an ONNX file; {model!r} is not one: use "
                                    "--input for its input shape")
    return dict(given)


def add_workload_args(p: argparse.ArgumentParser, *, batch_required: bool) -> None:
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    add_shape_args(p, batch_default=None, batch_required=batch_required,
                   batch_help="batch size (> 0)" + ("" if batch_required else "; default: the model's own, else 1"),
                   input_help="input shape without batch, e.g. 3,224,224 (needed for dynamic ONNX dims)")
    add_onnx_inputs_arg(p)
    add_mode_arg(p)
    p.add_argument("--method", default=None, choices=("export", "trace"),
                   help="PyTorch graph capture: torch.export (default) or a dispatch trace (faster); "
                        "PyTorch models only (not .onnx files)")
    add_autocast_arg(p)
    p.add_argument("--trainable", default=None, metavar="WHICH",
                   help="the parameters a training step updates (zoo models and specs): all (default), head "
                        "(the last layer with parameters: a linear probe) or comma-separated name prefixes "
                        "(layer4,fc); the others are frozen")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


class Working:
    """``with Working("estimating llama-2-7b"):`` shows ``estimating llama-2-7b... 12 s`` on standard error,
    counting the seconds, while the block runs longer than ``after_s``; the line is erased when the block
    ends. Only on a terminal (never in a pipe, a log or ``--json`` output); otherwise it does nothing."""

    def __init__(self, what: str, *, after_s: float = 2.0, stream=None, enabled: bool | None = None):
        import sys

        self.what, self.after_s = what, after_s
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)()) if enabled is None else enabled
        self._stop = None
        self._thread = None
        self.shown = False

    def _run(self) -> None:
        import time

        start = time.monotonic()
        if self._stop.wait(self.after_s):
            return
        while True:
            self.stream.write(f"\r{self.what}... {time.monotonic() - start:.0f} s")
            self.stream.flush()
            self.shown = True
            if self._stop.wait(1.0):
                return

    def __enter__(self) -> "Working":
        import threading

        if self.enabled:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            if self.shown:
                self.stream.write("\r\033[K")
                self.stream.flush()


def add_slo_arg(p) -> None:
    """``--latency-slo-ms``: the MIG pick under a latency target."""
    p.add_argument("--latency-slo-ms", type=positive_float, default=None, metavar="MS",
                   help="a latency target: pick the smallest MIG slice that holds the memory and answers within MS "
                        "milliseconds (each slice asked about as a device of its own); with --max-batch, also the "
                        "largest batch within it")


def add_max_batch_args(p, unit: str) -> None:
    """``--max-batch`` and the memory it fits: ``--memory-mb`` or ``--mig`` (default the whole device)."""
    p.add_argument("--max-batch", action="store_true",
                   help=f"also find the largest batch ({unit}) whose replayed memory fits the device, a MIG slice "
                        "(--mig) or --memory-mb, and the largest whose 90 %% interval's upper end fits: a few "
                        "allocation traces")
    p.add_argument("--memory-mb", type=positive_float, default=None, metavar="MB",
                   help="with --max-batch: the memory to fit in (what is free; default the device's)")
    p.add_argument("--mig", default=None, metavar="PROFILE",
                   help="with --max-batch: fit one MIG slice of the device, e.g. 1g.18gb, or 'all' for a line per "
                        "slice (see 'costmodel devices')")
    p.add_argument("--plot", default=None, metavar="FILE",
                   help="with --max-batch: draw memory against batch, the limits and the answers (.png, .svg, .pdf; "
                        "needs matplotlib)")


def check_max_batch_args(a) -> None:
    """``--memory-mb`` and ``--mig`` are limits of ``--max-batch``, one at a time."""
    given = [f for f, v in (("--memory-mb", a.memory_mb), ("--mig", a.mig)) if v is not None]
    if given and not a.max_batch:
        raise InvalidInputError(f"{given[0]} is the limit of --max-batch; add --max-batch")
    if len(given) > 1:
        raise InvalidInputError("give --memory-mb or --mig, not both")
    if given and not (a.mig is not None and a.mig.strip().lower() == "all"):  # the limit fails before the estimate
        from ..devices import get_device
        from ..estimate import fit_limit_mb

        fit_limit_mb(get_device(a.device), a.memory_mb, a.mig)
    if a.plot is not None:
        if not a.max_batch:
            raise InvalidInputError("--plot draws the answer of --max-batch; add --max-batch")
        from ..measure.charts import check_output

        check_output(a.plot)  # a bad suffix fails before the search


def max_batch_answers(a, search) -> list[dict]:
    """``search(memory_mb=..., mig=...)`` for the limit ``a`` names, as a list: one answer, or one per MIG
    profile of the device, smallest first, for ``--mig all``."""
    out = search(memory_mb=a.memory_mb, mig=a.mig)
    return out if isinstance(out, list) else [out]


def plot_fits(a, fits: list[dict], what: str, unit: str) -> None:
    """``--plot FILE``: the answers drawn (:func:`costmodel.measure.charts.fit_chart`)."""
    if a.plot is None or not fits:
        return
    from ..measure.charts import fit_chart

    fit_chart(fits, output=a.plot, title=f"{what} on {a.device}: largest batch that fits", unit=unit)
    if not a.json:
        print(f"chart        {a.plot}")


def max_batch_details(fits: list[dict]) -> dict | list[dict]:
    """What ``details["max_batch"]`` holds: the answer, or a list of them for ``--mig all``."""
    clean = [{k: v for k, v in f.items() if k != "traced"} for f in fits]
    return clean[0] if len(clean) == 1 else clean


def fit_line(fit: dict, one: str, unit: str = "") -> str:
    """The ``--max-batch`` answer as lines of the table (``one``: one batch element, "one sample";
    ``unit``: after the count, " sequences of 512 tokens")."""
    if not fit["batch"]:
        return f"max batch    0: {one} needs {fit['next_memory_mb']:,.0f} MB of {fit['limit_mb']:,.0f} ({fit['limit']})"
    line = f"max batch    {fit['batch']}{unit} ({fit['memory_mb']:,.0f} MB of {fit['limit_mb']:,.0f}, {fit['limit']})"
    if fit["next_memory_mb"]:
        line += f"; {fit['batch'] + 1} would need {fit['next_memory_mb']:,.0f} MB"
    elif fit.get("capped"):
        line += "; the search stops there (larger batches may fit too)"
    if fit.get("coverage"):
        pct = f"{100 * fit['coverage']:.0f} %"
        if fit["upper_batch"]:
            line += (f"\n             {fit['upper_batch']} by its {pct} interval's upper end "
                     f"({fit['upper_memory_mb']:,.0f} MB)")
        else:
            line += f"\n             0 by its {pct} interval's upper end"
    what = "sequences" if "sequence" in one else "samples"
    if fit.get("latency_ms"):
        line += (f"\n             at batch {fit['latency_batch']}: {fit['latency_ms']:.4g} ms, "
                 f"{fit['throughput_samples_s']:,.0f} {what}/s on {fit['latency_device']}")
    if fit.get("latency_slo_ms") is not None:
        line += (f"\n             within {fit['latency_slo_ms']:g} ms: batch {fit['slo_batch']}, "
                 f"{fit['slo_latency_ms']:.4g} ms, {fit['slo_throughput_samples_s']:,.0f} {what}/s" if fit["slo_batch"]
                 else f"\n             within {fit['latency_slo_ms']:g} ms: none (one already takes longer)")
    return line
