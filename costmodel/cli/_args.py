"""What every command shares: the one-line-error parser and the argument types."""

from __future__ import annotations

import argparse

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


def shape_arg(s: str) -> tuple[int, ...]:
    """``3,224,224`` (or ``3x224x224``) -> ``(3, 224, 224)``: positive integers, none left out."""
    parts = [p.strip() for p in s.lower().replace("x", ",").split(",")]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas (e.g. 3,224,224), got {s!r}")
    return dims


def mode_arg(s: str) -> str:
    try:
        return MODE_ALIASES[s.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"invalid mode {s!r}; choose from inference, training") from None


def positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s}")
    return v


def positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def add_workload_args(p: argparse.ArgumentParser, *, batch_required: bool) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="an .onnx file, a zoo name (torchvision:resnet50, timm:poolformer_s12) or a JSON spec")
    p.add_argument("--batch", "-b", type=positive_int, default=None, required=batch_required,
                   help="batch size (> 0)" + ("" if batch_required else "; default: the model's own, else 1"))
    p.add_argument("--input", "-i", dest="input_shape", metavar="C,H,W", type=shape_arg,
                   help="input shape without batch, e.g. 3,224,224 (needed for dynamic ONNX dims)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"), help="tensor dtype (default fp32)")
    p.add_argument("--mode", type=mode_arg, default="inference", help="inference (default) or training")
    p.add_argument("--method", default=None, choices=("export", "trace"),
                   help="PyTorch graph capture: torch.export (default) or a dispatch trace (faster); "
                        "PyTorch models only (not .onnx files)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
