"""The parser of every command and ``main``: one ``costmodel: error:`` line for every failure."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Sequence

from .._errors import CostModelError
from . import cost, devices, llm, measure, predict, train, web
from ._args import Parser, UsageError

#: the commands in the order ``costmodel --help`` lists them
COMMANDS = (
    predict.register_predict,
    predict.register_graph,
    train.register_train,
    train.register_pretrain,
    measure.register_collect,
    llm.register_llm,
    predict.register_annotate,
    web.register_web,
    measure.register_roofline,
    measure.register_bench,
    cost.register_cost,
    train.register_adapt,
    measure.register_calibrate,
    devices.register_devices,
)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = Parser(
        prog="costmodel",
        description="Predict what a deep-learning model costs (latency, memory, energy, MIG slice) before running it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'costmodel COMMAND --help' for the options and examples of each command.",
    )
    parser.add_argument("--version", action="version", version=f"costmodel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in COMMANDS:
        register(sub)
    return parser


# ---------------------------------------------------------------------- main
def _short_warning(message, category, filename, lineno, file=None, line=None):
    print(f"costmodel: warning: {message}", file=sys.stderr)


#: longest error line printed; the rest is cut (COSTMODEL_DEBUG=1 shows all)
MAX_ERROR_CHARS = 1500


def one_line(text) -> str:
    """``text`` on one line (line breaks folded), cut at :data:`MAX_ERROR_CHARS`."""
    line = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    if len(line) > MAX_ERROR_CHARS:
        cut = len(line) - MAX_ERROR_CHARS
        line = f"{line[:MAX_ERROR_CHARS]}... ({cut} more characters; COSTMODEL_DEBUG=1 shows all)"
    return line


def _error(message) -> int:
    print(f"costmodel: error: {one_line(message) or 'failed'}", file=sys.stderr)
    return 2


def _os_error(e: OSError) -> str:
    """``PATH: reason`` for a failed read or write of a user path."""
    what = e.strerror or str(e) or type(e).__name__
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {what}" if paths else f"{type(e).__name__}: {what}"


def main(argv: Sequence[str] | None = None) -> int:
    debug = bool(os.environ.get("COSTMODEL_DEBUG"))
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        return _error(e)
    with warnings.catch_warnings(record=not debug and args.command != "web") as caught:
        if not debug:
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            if caught is None:
                warnings.showwarning = _short_warning
        try:
            code = args.func(args)
        except KeyboardInterrupt:
            print("costmodel: interrupted", file=sys.stderr)
            return 130
        except Exception as e:  # noqa: BLE001 - one line, never a traceback (unless COSTMODEL_DEBUG)
            if debug:
                import traceback

                traceback.print_exc()
            if isinstance(e, (CostModelError, UsageError)):
                return _error(e)
            if isinstance(e, OSError):
                return _error(_os_error(e))
            return _error(f"internal error: {type(e).__name__}: {e} (set COSTMODEL_DEBUG=1 for the traceback)")
    # warnings are shown once the command succeeded; a failure prints its error line alone
    seen = set()
    for w in caught or ():
        msg = one_line(w.message)
        if msg not in seen:
            seen.add(msg)
            _short_warning(msg, w.category, w.filename, w.lineno)
    return code

