"""The ``costmodel`` command line (also ``python -m costmodel``).

Every failure ends in exactly one ``costmodel: error: ...`` line on stderr and
exit code 2: bad arguments (argparse's own errors included, without the usage
block), bad input (:class:`~costmodel.CostModelError`), unreadable or
unwritable user paths (``OSError``, naming the path), and unexpected failures
(``costmodel: error: internal error: ...``).  Warnings raised while a command
runs are printed once it succeeds and dropped when it fails, so the error line
stands alone.  Nothing prints a traceback unless ``COSTMODEL_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

from ._errors import CostModelError

_MODE_ALIASES = {"inference": "inference", "infer": "inference", "training": "training", "train": "training"}

PREDICT_EXAMPLES = """examples:
  costmodel predict torchvision:resnet50 --batch 8 --device h200
  costmodel predict timm:poolformer_s12 --batch 32 --device a100 --dtype fp16 --json
  costmodel predict model.onnx --batch 1 --input 3,224,224 --device h100
  costmodel predict torchvision:vit_b_16 --batch 32 --device h100 --mode training --optimizer adam
"""
LLM_EXAMPLES = """examples:
  costmodel llm llama-2-7b --batch 32 --seq 512 --device h200 --dtype fp16 --mode prefill
  costmodel llm bert-base --batch 64 --seq 128 --device a100-80gb --json
  costmodel llm mistral-7b --batch 8 --seq 2048 --mode decode --region eu-north-1 --price 3.5
  costmodel llm ./my-checkpoint --batch 1 --seq 4096      # a folder holding config.json
  costmodel llm --list
"""
GRAPH_EXAMPLES = """examples:
  costmodel graph torchvision:resnet50
  costmodel graph model.onnx --batch 4 --input 3,224,224 --json
"""
OUTPUT_NOTE = """
By default the artifact goes to $COSTMODEL_HOME/artifacts/NAME (COSTMODEL_HOME
defaults to $XDG_DATA_HOME/costmodel, i.e. ~/.local/share/costmodel); -o picks
another folder.  The installed package is never written unless --to-package
is given (for maintainers who regenerate the shipped artifacts from a source
checkout).
"""
TRAIN_EXAMPLES = """examples:
  costmodel train                               # DIPPM on all packaged H200 rows -> $COSTMODEL_HOME/artifacts/dippm
  costmodel train --to-package                  # maintainers: rebuild the shipped artifact in the source tree
  costmodel train --predictor xgb-static -o /tmp/xgb
  costmodel train --data /path/to/measurements --device h200 --epochs 100 --seed 1 -o my_dippm
  costmodel train --predictor trappm            # encoder: yours from `costmodel pretrain`, else the shipped one
  costmodel train --predictor llm-xgb           # transformer rows -> the model behind `costmodel llm`
  costmodel train --predictor gnn-llm           # GraphMAE GIN + small random-weight LM (stages 2-3)
  costmodel train --predictor gnn-llm --lm /models/Qwen2.5-0.5B --lora-r 16 -o gnnllm-qwen
"""
PRETRAIN_EXAMPLES = """examples:
  costmodel pretrain                            # 3000 unlabeled graphs, 30 epochs -> $COSTMODEL_HOME/artifacts/gae
  costmodel pretrain --to-package               # maintainers: rebuild the shipped encoder in the source tree
  costmodel pretrain --corpus 500 --epochs 5 -o /tmp/gae
  costmodel pretrain --method graphmae          # masked-feature GIN encoder for gnn-llm (stage 1)
"""
CALIBRATE_EXAMPLES = """examples:
  costmodel calibrate                           # -> $COSTMODEL_HOME/host.json
  costmodel calibrate -o host.json --budget 4   # a quicker, noisier profile
  costmodel calibrate --device cpu --json       # the CPU path even where CUDA is present
"""

DEVICES_EXAMPLES = """examples:
  costmodel devices
  costmodel devices --json
"""

BENCH_EXAMPLES = """examples:
  costmodel bench torch.matmul --shapes 1024x1024,1024x1024
  costmodel bench torch.nn.functional.conv2d --shapes 8x64x56x56,64x64x3x3 --kwargs '{"padding": 1}' -o conv.png
  costmodel bench torch.add --shapes 16777216,16777216 --profile cpu.json
  costmodel bench torch.matmul --shapes 8192x8192,8192x8192 --dtype bf16 --device cuda --json
"""
COST_EXAMPLES = """examples:
  costmodel cost torchvision:resnet50 --device h100 --steps 200000 --batch 256
  costmodel cost torchvision:vit_b_16 --device a100-80gb --steps 50000 --batch 64 --dtype bf16 --provider aws gcp
  costmodel cost torchvision:resnet18 --device l4 --mode inference --samples 10000000 --batch 32 --region us-east-1
  costmodel cost torchvision:resnet50 --device h100 --steps 1000 --batch 64 --whole-instance --json
"""
BENCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "fp64": "float64"}


class UsageError(Exception):
    """A command-line argument error (printed as one ``costmodel: error:`` line, exit code 2)."""


class _Parser(argparse.ArgumentParser):
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


def user_data_dir() -> Path:
    """Where commands write by default: ``$COSTMODEL_HOME``, else ``$XDG_DATA_HOME/costmodel``,
    else ``~/.local/share/costmodel``.  The installed package is never written at run time."""
    root = os.environ.get("COSTMODEL_HOME")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(xdg) / "costmodel"


def _artifact_out(a, name: str) -> Path:
    """The artifact folder of ``train``/``pretrain``: ``-o``, the package (``--to-package``) or the user's."""
    if a.output and a.to_package:
        from ._errors import InvalidInputError

        raise InvalidInputError("give either -o/--output or --to-package, not both")
    if a.output:
        return Path(a.output)
    if a.to_package:
        from .predictors._gnn import _ARTIFACTS

        return _ARTIFACTS / name
    return user_data_dir() / "artifacts" / name


def _pretrained(name: str, marker: str) -> Path:
    """A pretrained encoder folder: the user's (``costmodel pretrain``) if there is one, else the shipped one."""
    from .predictors._gnn import _ARTIFACTS

    mine = user_data_dir() / "artifacts" / name
    return mine if (mine / marker).exists() else _ARTIFACTS / name


def _shape(s: str) -> tuple[int, ...]:
    """``3,224,224`` (or ``3x224x224``) -> ``(3, 224, 224)``: positive integers, none left out."""
    parts = [p.strip() for p in s.lower().replace("x", ",").split(",")]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas (e.g. 3,224,224), got {s!r}")
    return dims


def _mode(s: str) -> str:
    try:
        return _MODE_ALIASES[s.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"invalid mode {s!r}; choose from inference, training") from None


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s}")
    return v


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _add_workload_args(p: argparse.ArgumentParser, *, batch_required: bool) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="an .onnx file, a zoo name (torchvision:resnet50, timm:poolformer_s12) or a JSON spec")
    p.add_argument("--batch", "-b", type=_positive_int, default=None, required=batch_required,
                   help="batch size (> 0)" + ("" if batch_required else "; default: the model's own, else 1"))
    p.add_argument("--input", "-i", dest="input_shape", metavar="C,H,W", type=_shape,
                   help="input shape without batch, e.g. 3,224,224 (needed for dynamic ONNX dims)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"), help="tensor dtype (default fp32)")
    p.add_argument("--mode", type=_mode, default="inference", help="inference (default) or training")
    p.add_argument("--method", default=None, choices=("export", "trace"),
                   help="PyTorch graph capture: torch.export (default) or a dispatch trace (faster); "
                        "PyTorch models only (not .onnx files)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="costmodel",
        description="Predict what a deep-learning model costs (latency, memory, energy, MIG slice) before running it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'costmodel COMMAND --help' for the options and examples of each command.",
    )
    parser.add_argument("--version", action="version", version=f"costmodel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("predict", help="estimate latency, memory, energy and MIG slice",
                       description="Estimate what one inference call or one training step costs on a device.",
                       epilog=PREDICT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_workload_args(p, batch_required=True)
    p.add_argument("--device", "-d", required=True, help="device name, e.g. h200, h100, a100-40gb (see 'costmodel devices')")
    p.add_argument("--optimizer", default="adam", help="training optimizer: sgd, sgd_momentum, adam, adamw (default adam)")
    p.add_argument("--predictor", default=None,
                   help="predictor name or trained artifact folder (default: the library's best available)")
    p.add_argument("--host", default=None, metavar="FILE",
                   help="host profile from `costmodel calibrate` (used by --predictor timeline)")
    p.set_defaults(func=_cmd_predict)

    g = sub.add_parser("graph", help="featurize a model and summarize its graph",
                       description="Build the CostGraph of a model and print its summary and per-op-kind table.",
                       epilog=GRAPH_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_workload_args(g, batch_required=False)
    g.set_defaults(func=_cmd_graph)

    t = sub.add_parser("train", help="train a learned predictor on measured data",
                       description="Train a learned predictor (seeded, reproducible) and save it as an artifact "
                                   "(config JSON + weights, no pickle).",
                       epilog=TRAIN_EXAMPLES + OUTPUT_NOTE, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--predictor", default="dippm", choices=("dippm", "trappm", "xgb-static", "llm-xgb", "gnn-llm", "timeline"),
                   help="what to train (default dippm)")
    t.add_argument("--encoder", default=None,
                   help="pretrained encoder folder: the graph autoencoder for trappm, the GraphMAE GIN for gnn-llm "
                        "(default: the one `costmodel pretrain` wrote to $COSTMODEL_HOME/artifacts, else the "
                        "shipped one)")
    t.add_argument("--lm", default=None, metavar="PATH",
                   help="gnn-llm: local directory of a Hugging Face causal LM and its tokenizer "
                        "(default: a small GPT-2 built with random weights)")
    t.add_argument("--backbone", default="lm", choices=("lm", "none", "sentence"),
                   help="gnn-llm: graph token + LM (default), or the GIN+MLP / GIN+MiniLM baselines")
    t.add_argument("--lora-r", type=_positive_int, default=8, help="gnn-llm: LoRA rank (default 8)")
    t.add_argument("--summary-epochs", type=int, default=None,
                   help="gnn-llm: graph-to-text epochs of stage 2 (default 3; 0 skips it)")
    t.add_argument("--data", default=None, help="measurement folder holding DEVICE/vision.jsonl (default: packaged data)")
    t.add_argument("--device", default="h200", help="sub-folder of --data to train on (default h200)")
    t.add_argument("--epochs", type=_positive_int, default=None, help="training epochs (GNN predictors)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument("-o", "--output", default=None,
                   help="artifact folder (default: $COSTMODEL_HOME/artifacts/PREDICTOR, see below)")
    t.add_argument("--to-package", action="store_true",
                   help="write the shipped artifact inside the installed package (maintainers)")
    t.set_defaults(func=_cmd_train)

    p = sub.add_parser("pretrain", help="pretrain a graph encoder (TraPPM autoencoder or GraphMAE) on unlabeled graphs",
                       description="Sample architecture variants from torchvision/timm constructors, build their "
                                   "graphs on the meta device (cached, resumable) and pretrain a graph encoder: "
                                   "the graph autoencoder whose frozen encoder TraPPM uses (--method gae), or the "
                                   "masked-feature GIN that gnn-llm starts from (--method graphmae).",
                       epilog=PRETRAIN_EXAMPLES + OUTPUT_NOTE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="gae", choices=("gae", "graphmae"),
                   help="gae: edge-reconstruction autoencoder (TraPPM, default); graphmae: masked node features "
                        "(gnn-llm)")
    p.add_argument("--corpus", type=_positive_int, default=3000, help="unlabeled graphs to sample (default 3000)")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="pretraining epochs (default 30 for gae, 20 for graphmae)")
    p.add_argument("--seed", type=int, default=0, help="random seed for sampling and training (default 0)")
    p.add_argument("--workers", type=_positive_int, default=2, help="graph-building processes (default 2)")
    p.add_argument("-o", "--output", default=None,
                   help="encoder folder (default: $COSTMODEL_HOME/artifacts/gae or .../graphmae, see below)")
    p.add_argument("--to-package", action="store_true",
                   help="write the shipped encoder inside the installed package (maintainers)")
    p.set_defaults(func=_cmd_pretrain)

    c = sub.add_parser("collect", help="measure workloads on this machine (CPU or CUDA GPU) with the data protocol",
                       description="Measure latency, memory and energy with the protocol of the packaged data "
                                   "(warm-up, calibrated timed window, CUDA events and NVML on NVIDIA GPUs; "
                                   "wall clock, RSS and RAPL energy on CPUs). Rows are appended to OUTPUT as they "
                                   "are measured; rows already there are skipped, so an interrupted run resumes. "
                                   "Out-of-memory is recorded as a row with \"oom\": true. hardware.json is "
                                   "written beside OUTPUT on first use. Transformer rows go to a sibling file "
                                   "(vision*.jsonl -> llm*.jsonl, else NAME_llm.jsonl).",
                       epilog="examples:\n"
                              "  costmodel collect costmodel/data/specs/cpu_vision.json -o cpu/vision.jsonl --budget 600\n"
                              "  costmodel collect costmodel/data/specs/h200_extend.json --device cuda "
                              "-o out/vision_extend.jsonl --budget 300\n"
                              "  costmodel collect specs.json --batch 1 4 -o rows.jsonl     # a JSON list of specs\n"
                              "  costmodel collect work.json --device cuda --ray auto -o rows.jsonl\n"
                              "  costmodel collect costmodel/data/specs/cpu_ops.json --ops --threads 1 -o cpu/vision_ops.jsonl\n",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("specs", metavar="SPECS",
                   help="work file: JSON {\"vision\": [...], \"llm\": [...]} (see costmodel/data/specs/), "
                        "or a JSON list / JSONL of vision specs measured at --batch")
    c.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    c.add_argument("--batch", type=_positive_int, nargs="+", default=None,
                   help="batch sizes for a plain list of specs (default 1)")
    c.add_argument("-o", "--output", required=True, help="JSONL file to append rows to")
    c.add_argument("--budget", type=float, default=None, metavar="S",
                   help="stop cleanly (between rows) after S seconds")
    c.add_argument("--cooldown", type=float, default=0.5, metavar="S", help="pause between rows (default 0.5 s)")
    c.add_argument("--limit", type=_positive_int, default=None, metavar="N", help="measure at most N rows")
    c.add_argument("--ops", action="store_true",
                   help="also profile every workload per operator (torch.profiler) and write the operator rows, "
                        "mapped onto the CostGraph's nodes, to ops.jsonl beside OUTPUT")
    c.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="torch CPU threads (CPU only; default: torch's own choice)")
    c.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run on a Ray cluster: auto, ray://HOST:10001, or local (start one here); one task per "
                        "model spec, pinned to one GPU with --device cuda (needs the 'ray' extra)")
    c.set_defaults(func=_cmd_collect)

    m = sub.add_parser("llm", help="throughput, memory, energy, carbon and cost of a transformer workload",
                       description="Predict a transformer workload with the XGBoost model trained on the measured "
                                   "data. MODEL is a registry name (see --list), a folder holding a Hugging Face "
                                   "config.json, or a config.json file.",
                       epilog=LLM_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("model", metavar="MODEL", nargs="?", help="registry name or local config folder")
    m.add_argument("--list", action="store_true", help="list the built-in architectures and exit")
    m.add_argument("--batch", type=_positive_int, default=None, help="sequences per call (required)")
    m.add_argument("--seq", type=_positive_int, default=None,
                   help="tokens per sequence; for --mode decode the KV-cache length (required)")
    m.add_argument("--device", default="h200", help="device name (default h200; see `costmodel devices`)")
    m.add_argument("--dtype", default="fp16", choices=("fp32", "fp16", "bf16", "int8", "int4"),
                   help="weights/activations dtype (default fp16)")
    m.add_argument("--mode", default=None, choices=("forward", "prefill", "decode"),
                   help="forward (encoders), prefill or one-token decode (decoders); default by model")
    m.add_argument("--region", default="world", help="grid region for carbon (default world)")
    m.add_argument("--carbon-intensity", type=float, default=None, metavar="G_PER_KWH",
                   help="override the region's carbon intensity (g CO2e per kWh)")
    m.add_argument("--price", type=float, default=None, metavar="USD_PER_GPU_HOUR",
                   help="GPU price per hour (default: the cheapest listed instance of the device)")
    m.add_argument("--provider", default=None, help="cloud provider for the price table (aws, gcp, azure)")
    m.add_argument("--instance", default=None, help="cloud instance type for the price table")
    m.add_argument("--json", action="store_true", help="print JSON")
    m.set_defaults(func=_cmd_llm)

    n = sub.add_parser("annotate", help="write cost estimates into an ONNX file's metadata, or show them",
                       description="Estimate an ONNX model and store the estimate in its metadata_props "
                                   "(costmodel.* keys; one set per device), or print the stored estimates.",
                       epilog="examples:\n  costmodel annotate model.onnx --device h100 --batch 8\n"
                              "  costmodel annotate model.onnx --device a100-40gb -o annotated.onnx\n"
                              "  costmodel annotate model.onnx --show\n",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    n.add_argument("path", metavar="MODEL.onnx")
    n.add_argument("--show", action="store_true", help="print the stored estimates and exit")
    n.add_argument("--device", default="h200", help="device name (default h200)")
    n.add_argument("--batch", type=_positive_int, default=None, help="batch (default: the file's static batch)")
    n.add_argument("--input", dest="input_shape", default=None, type=_shape,
                   help="per-sample input shape, e.g. 3,224,224")
    n.add_argument("--mode", default="inference", choices=("inference", "training"))
    n.add_argument("--predictor", default=None, help="predictor name or artifact folder")
    n.add_argument("-o", "--output", default=None,
                   help="write an annotated copy here instead of in place; in another folder, the model's "
                        "external-data weight files are copied next to it (never overwriting a different file)")
    n.add_argument("--json", action="store_true", help="print JSON")
    n.set_defaults(func=_cmd_annotate)

    w = sub.add_parser("web", help="serve the transformer cost web page (needs the 'web' extra)",
                       description="Serve a page where a model name or config.json, batch, sequence, device, dtype "
                                   "and mode give throughput, memory (against the device and its MIG slices), "
                                   "energy, carbon and cost, with a batch-size sweep.",
                       epilog="examples:\n  costmodel web\n  costmodel web --host 0.0.0.0 --port 8080\n",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    w.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    w.add_argument("--port", type=_positive_int, default=7860, help="port (default 7860)")
    w.set_defaults(func=_cmd_web)

    r = sub.add_parser("roofline", help="draw a model's operators against a device's roofline, or the machine's",
                       description="Place every operator of MODEL (arithmetic intensity vs predicted FLOP/s) "
                                   "against the device's compute and memory ceilings, ringing the operators "
                                   "that take most predicted time; or, with --machine, draw the ceilings "
                                   "measured on this machine by the C++ harness.",
                       epilog="examples:\n  costmodel roofline torchvision:resnet50 --device h100 --batch 32 -o r50.png\n"
                              "  costmodel roofline model.onnx --device a100-80gb --dtype fp16 -o model.svg\n"
                              "  costmodel roofline --machine -o cpu.png             # measures this CPU (~1 min)\n"
                              "  costmodel roofline --machine --profile cpu.json -o cpu.png\n"
                              "  costmodel roofline torchvision:resnet50 --device cpu --profile cpu.json -o r50.png\n"
                              "  costmodel roofline torchvision:resnet50 --device h200 --predictor timeline -o r50.png\n",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("model", metavar="MODEL", nargs="?", default=None,
                   help="an .onnx file, a zoo name (torchvision:resnet50) or a JSON spec; omit with --machine")
    r.add_argument("--device", default="h100", help="device name (default h100)")
    r.add_argument("--batch", "-b", type=_positive_int, default=1, help="batch size (default 1)")
    r.add_argument("--input", "-i", dest="input_shape", metavar="C,H,W", type=_shape, help="input shape without batch")
    r.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    r.add_argument("--mode", type=_mode, default="inference", help="inference (default) or training")
    r.add_argument("--top", type=int, default=8, help="ring and label this many slowest operators (default 8)")
    r.add_argument("--predictor", default="analytic", choices=("analytic", "timeline"),
                   help="whose per-operator times place the points: the analytic roofline (default) or the "
                        "timeline predictor's learned efficiency")
    r.add_argument("--machine", action="store_true", help="draw this machine's measured ceilings")
    r.add_argument("--measure-device", default="cpu", choices=("cpu", "cuda"),
                   help="with --machine and no --profile: what to measure (default cpu)")
    r.add_argument("--profile", default=None, help="a saved measured profile (JSON from costmodel.roofline.measure)")
    r.add_argument("--save-profile", default=None, help="with --machine: also save the measured profile here")
    r.add_argument("-o", "--output", default="roofline.png", help="chart file, .png/.svg/.pdf (default roofline.png)")
    r.set_defaults(func=_cmd_roofline)

    b = sub.add_parser("bench", help="time a torch op on this machine and place it on the roofline",
                       description="Time a torch operator on random tensors of the given shapes (warm-up, "
                                   "calibrated samples of >= 1 ms, median; CUDA events on a GPU), count its FLOPs "
                                   "(FlopCounterMode, plus one per output element of pointwise ops) and bytes "
                                   "(inputs read + outputs written: a lower bound), and report the achieved "
                                   "GFLOP/s, GB/s and fraction of the attainable roofline ceiling.",
                       epilog=BENCH_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("op", metavar="OP", help="dotted name of a callable under torch, e.g. torch.nn.functional.conv2d")
    b.add_argument("--shapes", "-s", required=True, metavar="SHAPES",
                   help="comma-separated tensor shapes, dims joined by 'x': 8x64x56x56,64x64x3x3")
    b.add_argument("--dtype", default="fp32", choices=tuple(BENCH_DTYPES), help="tensor dtype (default fp32)")
    b.add_argument("--device", default="cpu", help="where the tensors live: cpu (default), cuda or cuda:N")
    b.add_argument("--kwargs", default=None, metavar="JSON", help='keyword arguments as a JSON object: \'{"padding": 1}\'')
    b.add_argument("--flops", type=float, default=None, help="FLOPs of one call (default: counted)")
    b.add_argument("--bytes", type=float, default=None, help="bytes moved by one call (default: counted lower bound)")
    b.add_argument("--warmup", type=int, default=3, help="untimed warm-up calls (default 3)")
    b.add_argument("--repeats", type=_positive_int, default=10, help="minimum timed samples (default 10)")
    b.add_argument("--min-time", type=float, default=0.1, metavar="S",
                   help="keep sampling until the samples add up to S seconds (default 0.1)")
    b.add_argument("--ceilings", default=None, metavar="DEVICE",
                   help="device-database entry whose ceilings to use (default: the GPU's own entry, or cpu)")
    b.add_argument("--profile", default=None,
                   help="a saved measured profile (JSON from costmodel.roofline.measure) for the ceilings")
    b.add_argument("-o", "--output", default=None, help="also draw the point on its roofline: .png/.svg/.pdf")
    b.add_argument("--json", action="store_true", help="print JSON")
    b.set_defaults(func=_cmd_bench)

    k = sub.add_parser("cost", help="predicted time and cloud dollars of a training or inference job, per provider",
                       description="Predict the time of one training step (or inference call) on one GPU, "
                                   "multiply by the number of steps, and price it on every instance of the "
                                   "price table carrying the device, cheapest first. By default a job on a "
                                   "multi-GPU instance pays the per-GPU share of its price; --whole-instance "
                                   "charges the whole instance.",
                       epilog=COST_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    k.add_argument("model", metavar="MODEL",
                   help="an .onnx file, a zoo name (torchvision:resnet50, timm:poolformer_s12) or a JSON spec")
    k.add_argument("--device", "-d", required=True, help="device name, e.g. h100, a100-40gb, l4 (see 'costmodel devices')")
    k.add_argument("--mode", type=_mode, default="training", help="training (default) or inference")
    work = k.add_mutually_exclusive_group(required=True)
    work.add_argument("--steps", type=_positive_int, default=None,
                      help="training steps (or inference calls) of one batch each")
    work.add_argument("--samples", type=_positive_int, default=None,
                      help="samples to process: ceil(samples / batch) steps")
    k.add_argument("--batch", "-b", type=_positive_int, default=1, help="batch size (default 1)")
    k.add_argument("--input", "-i", dest="input_shape", metavar="C,H,W", type=_shape, help="input shape without batch")
    k.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"), help="tensor dtype (default fp32)")
    k.add_argument("--optimizer", default="adam", help="training optimizer: sgd, sgd_momentum, adam, adamw (default adam)")
    k.add_argument("--predictor", default=None,
                   help="predictor name or trained artifact folder (default: the library's best available)")
    k.add_argument("--provider", nargs="+", default=None, metavar="NAME",
                   help="keep these providers only (aws, gcp, azure)")
    k.add_argument("--whole-instance", action="store_true",
                   help="charge the whole instance, not the per-GPU share of a multi-GPU instance")
    k.add_argument("--region", default=None, help="grid region for the carbon of the energy (e.g. us-east-1, france)")
    k.add_argument("--carbon-intensity", type=float, default=None, metavar="G_PER_KWH",
                   help="grid carbon intensity (g CO2e per kWh) instead of a region's")
    k.add_argument("--json", action="store_true", help="print JSON")
    k.set_defaults(func=_cmd_cost)

    ad = sub.add_parser("adapt", help="fine-tune a trained predictor on a few rows measured on a new device",
                        description="Few-shot adaptation: start from a trained graph predictor (its weights and "
                                    "feature normalization), fine-tune it on SHOTS rows measured on a new device, "
                                    "report latency error before and after on the rows left out, and save an "
                                    "artifact that `costmodel predict --predictor DIR` loads.",
                        epilog="examples:\n  costmodel adapt --device cpu --data costmodel/data/cpu/vision.jsonl --shots 32\n"
                               "  costmodel adapt --device h100 --data rows/ --shots 16 --predictor trappm -o trappm-h100\n",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ad.add_argument("--device", required=True, help="the new device's database name (see `costmodel devices`)")
    ad.add_argument("--data", required=True, help="measured rows: a .jsonl file or a folder with vision.jsonl")
    ad.add_argument("--shots", type=_positive_int, default=32, help="rows to train on (default 32)")
    ad.add_argument("--predictor", default="dippm", help="dippm (default), trappm, or an artifact folder")
    ad.add_argument("--epochs", type=_positive_int, default=60, help="fine-tuning epochs (default 60)")
    ad.add_argument("--seed", type=int, default=0, help="which rows are drawn (default 0)")
    ad.add_argument("-o", "--output", default=None, help="artifact folder (default adapted-PREDICTOR-DEVICE)")
    ad.add_argument("--json", action="store_true", help="print the report as JSON")
    ad.set_defaults(func=_cmd_adapt)

    ca = sub.add_parser("calibrate", help="measure this host's per-operator dispatch cost (host profile JSON)",
                        description="Measure what PyTorch eager costs this machine's CPU per operator (per operator "
                                    "class, plus nn.Module call overhead; with CUDA also the smallest kernel's device "
                                    "time and a synchronisation) in at most 10 seconds, and save it as a host profile.",
                        epilog=CALIBRATE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ca.add_argument("-o", "--output", default=None,
                    help="where to save the profile (default $COSTMODEL_HOME/host.json)")
    ca.add_argument("--budget", type=_positive_float, default=6.0,
                    help="seconds of measuring, at most 10 (default 6)")
    ca.add_argument("--device", choices=("cpu", "cuda"), default=None,
                    help="measure the CPU path or the CUDA path (default: CUDA when available)")
    ca.add_argument("--json", action="store_true", help="print the profile as JSON")
    ca.set_defaults(func=_cmd_calibrate)

    d = sub.add_parser("devices", help="list the device database",
                       description="List every known device with its peaks, bandwidth, memory and MIG profiles.",
                       epilog=DEVICES_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--json", action="store_true", help="print JSON")
    d.set_defaults(func=_cmd_devices)
    return parser


# ------------------------------------------------------------------ commands
def _check_method(a) -> None:
    """``--method`` picks how a PyTorch model is captured; an ONNX file has no such choice."""
    from ._errors import InvalidInputError
    from .frontends import _looks_like_onnx_path

    if a.method is not None and _looks_like_onnx_path(a.model):
        raise InvalidInputError(
            f"--method {a.method} applies to PyTorch models (zoo names, JSON specs); {a.model!r} is read "
            "by the ONNX frontend: drop --method"
        )


def _cmd_predict(a) -> int:
    from ._estimate import estimate

    _check_method(a)
    model, predictor = a.model, a.predictor
    if a.method is not None:
        # capture the graph the requested way, then estimate that graph
        from .devices import get_device
        from .frontends import to_graph
        from .predictors import get_predictor

        get_device(a.device)  # bad names fail before the (slow) capture
        get_predictor(a.predictor)
        model = to_graph(a.model, batch=a.batch, input_shape=a.input_shape, dtype=a.dtype, mode=a.mode,
                         method=a.method)
    est = estimate(
        model,
        batch=a.batch,
        input_shape=a.input_shape,
        device=a.device,
        mode=a.mode,
        dtype=a.dtype,
        optimizer=a.optimizer,
        predictor=predictor,
        host=a.host,
    )
    if a.json:
        print(est.to_json())
    else:
        print(est.table())
    return 0


def _cmd_graph(a) -> int:
    from .frontends import to_graph

    _check_method(a)
    g = to_graph(a.model, batch=a.batch, input_shape=a.input_shape, dtype=a.dtype, mode=a.mode,
                 method=a.method or "export")
    s = g.summary()
    if a.json:
        print(json.dumps(s))
        return 0
    print(f"model        {s['name']}  ({s['frontend']} frontend, {g.meta.get('capture', s['frontend'])})")
    print(f"workload     {s['mode']}, batch {s['batch']}, input {s['input_shape']}, {s['dtype']}")
    print(f"nodes        {s['nodes']}  (kernels {s['kernels']}, depth {s['depth']})")
    print(f"edges        {s['edges']}")
    print(f"GFLOPs       {s['flops'] / 1e9:.4g}   (GMACs {s['macs'] / 1e9:.4g})")
    print(f"params       {s['params'] / 1e6:.4g} M  (weights {s['weights_mb']:.4g} MB)")
    print()
    total = s["flops"] or 1.0
    print(f"{'op kind':<14}{'count':>7}{'GFLOPs':>12}{'share':>8}")
    for k, v in sorted(s["op_kinds"].items(), key=lambda kv: (-kv[1]["flops"], -kv[1]["count"])):
        print(f"{k:<14}{v['count']:>7}{v['flops'] / 1e9:>12.4g}{100 * v['flops'] / total:>7.1f}%")
    return 0


def _cmd_train(a) -> int:
    import time
    from dataclasses import replace
    from pathlib import Path

    from .datasets import PerfDataset
    from .predictors._gnn import DIPPMPredictor, GNNConfig
    from .predictors._xgb import XGBStaticPredictor

    if a.predictor == "llm-xgb":
        return _train_llm(a)
    if a.predictor == "timeline":
        return _train_timeline(a)
    gnnllm_only = [f for f, v, d in (("--lm", a.lm, None), ("--backbone", a.backbone, "lm"),
                                      ("--lora-r", a.lora_r, 8), ("--summary-epochs", a.summary_epochs, None))
                   if v != d]
    if gnnllm_only and a.predictor != "gnn-llm":
        from ._errors import InvalidInputError

        raise InvalidInputError(f"{', '.join(gnnllm_only)} only apply to --predictor gnn-llm")
    ds = PerfDataset.load(a.data, device=a.device)
    fit_kw = {}
    epochs = {"epochs": a.epochs} if a.epochs else {}
    if a.predictor == "dippm":
        pred = DIPPMPredictor(replace(GNNConfig(conv="sage"), seed=a.seed, **epochs))
    elif a.predictor == "trappm":
        from ._errors import ModelLoadError
        from .predictors._gae import GraphAutoencoder
        from .predictors._trappm import TraPPMPredictor, trappm_config

        enc = Path(a.encoder) if a.encoder else _pretrained("gae", "gae.json")
        if not (enc / "gae.json").exists():
            raise ModelLoadError(f"no pretrained encoder in {enc}; run `costmodel pretrain` first or pass --encoder")
        pred = TraPPMPredictor(trappm_config(seed=a.seed, **epochs), GraphAutoencoder.load(enc))
    elif a.predictor == "gnn-llm":
        pred, fit_kw["encoder"] = _gnnllm_for_training(a, epochs)
    else:
        pred = XGBStaticPredictor(seed=a.seed)
    out = _artifact_out(a, a.predictor)
    print(f"training {a.predictor} on {len(ds)} rows ({len(ds.families())} families) from {a.device}", file=sys.stderr)
    t0 = time.perf_counter()
    graphs = ds.graphs(progress=True)  # featurize (cached) with a progress bar
    cached = {i: pred.features(g, r.device, r.mode) for i, (g, r) in enumerate(zip(graphs, ds))}
    # conformal intervals from a held-out 20 %, then refit on all
    pred.fit_calibrated(ds, progress=True, cached=cached, **fit_kw)
    pred.save(out)
    print(f"saved {out}  ({time.perf_counter() - t0:.1f} s, data hash {pred.meta.get('data_hash')}; "
          f"use it with --predictor {out})")
    return 0


def _train_timeline(a) -> int:
    import time

    from .datasets import PerfDataset
    from .predictors._timeline import TimelineConfig, TimelinePredictor

    ds = PerfDataset.load(a.data, device=a.device)
    ds = ds.subset([i for i, r in enumerate(ds.rows) if r.kind == "vision"])
    cfg = TimelineConfig(seed=a.seed, **({"epochs": a.epochs} if a.epochs else {}))
    out = _artifact_out(a, "timeline")
    print(f"training timeline on {len(ds)} vision rows ({len(ds.families())} families) from {a.device}",
          file=sys.stderr)
    t0 = time.perf_counter()
    pred = TimelinePredictor(cfg).fit(ds, progress=True)
    from ._errors import ModelLoadError

    try:
        pred.fit_cpu_ops(a.data, progress=True)
        info = pred.cpu.trained_on
        print(f"CPU operator model: {info['operators']} operator rows of {info['runs']} runs "
              f"({len(info['families'])} families)", file=sys.stderr)
    except ModelLoadError as e:
        print(f"no CPU operator model: {e}", file=sys.stderr)
    pred.save(out)
    print(f"saved {out}  ({time.perf_counter() - t0:.1f} s; use it with --predictor {out})")
    return 0


def _gnnllm_for_training(a, epochs: dict):
    """The untrained gnn-llm predictor and its stage-1 GraphMAE encoder (``None``: a random GIN)."""
    from pathlib import Path

    from ._errors import ModelLoadError
    from .predictors._gnnllm import GNNLLMConfig, GNNLLMPredictor
    from .predictors._graphmae import GraphMAE

    enc_dir = Path(a.encoder) if a.encoder else _pretrained("graphmae", "graphmae.json")
    if a.encoder and not (enc_dir / "graphmae.json").exists():
        raise ModelLoadError(f"no GraphMAE encoder in {enc_dir}; run `costmodel pretrain --method graphmae`")
    encoder = GraphMAE.load(enc_dir) if (enc_dir / "graphmae.json").exists() else None
    if encoder is None:
        print(f"no GraphMAE encoder in {enc_dir}: the GIN starts from random weights "
              "(`costmodel pretrain --method graphmae` builds one)", file=sys.stderr)
    gin = {"gnn_hidden": encoder.config.hidden, "gnn_layers": encoder.config.layers} if encoder else {}
    stage2 = {} if a.summary_epochs is None else {"summary_epochs": a.summary_epochs}
    cfg = GNNLLMConfig(backbone=a.backbone, lm=a.lm, lora_r=a.lora_r, seed=a.seed, **gin, **stage2, **epochs)
    return GNNLLMPredictor(cfg), encoder


def _train_llm(a) -> int:
    import time
    from pathlib import Path

    from .datasets import PerfDataset
    from .llm._predictor import XGBLLMPredictor

    ds = PerfDataset.load(a.data, device=a.device, kinds=("llm",))
    grid = Path(__file__).resolve().parent / "llm" / "grid_search.json"
    params = json.loads(grid.read_text())["chosen"] if grid.exists() else None
    if a.to_package and not a.output:
        from .llm._predictor import _ARTIFACT

        out = _ARTIFACT
    else:
        out = _artifact_out(a, "llm-xgb")
    print(f"training llm-xgb on {len(ds)} transformer rows from {a.device}", file=sys.stderr)
    t0 = time.perf_counter()
    pred = XGBLLMPredictor(params, seed=a.seed).fit(ds)
    pred.save(out, extra={"grid_search": "costmodel/llm/grid_search.json" if params else None})
    print(f"saved {out}  ({time.perf_counter() - t0:.1f} s, data hash {pred.meta.get('data_hash')})")
    return 0


def _cmd_pretrain(a) -> int:
    import time
    from pathlib import Path

    from .datasets import GraphCorpus
    from .predictors._gae import GAEConfig, GraphAutoencoder

    out = _artifact_out(a, "graphmae" if a.method == "graphmae" else "gae")  # a bad -o fails before the work
    t0 = time.perf_counter()
    corpus = GraphCorpus.build(a.corpus, seed=a.seed, workers=a.workers)
    print(f"corpus: {len(corpus)} graphs ({len(corpus.failed)} variants could not be built)", file=sys.stderr)
    train, held = corpus.split(0.1, seed=a.seed)
    if a.method == "graphmae":
        return _pretrain_graphmae(a, corpus, train, held, t0, out)
    cfg = GAEConfig(seed=a.seed, **({"epochs": a.epochs} if a.epochs else {}))
    gae = GraphAutoencoder(cfg).fit(corpus, train)
    ev = gae.evaluate(corpus, held)
    gae.history.update(heldout_bce=round(ev["bce"], 5), heldout_auc=round(ev["auc"], 4), corpus=a.corpus,
                       corpus_seed=a.seed)
    gae.save(out)
    print(f"saved {out}  ({time.perf_counter() - t0:.1f} s; held-out edge AUC {ev['auc']:.3f}, BCE {ev['bce']:.4f})")
    return 0


def _pretrain_graphmae(a, corpus, train, held, t0: float, out: Path) -> int:
    import time

    from .predictors._graphmae import GraphMAE, GraphMAEConfig

    mae = GraphMAE(GraphMAEConfig(seed=a.seed, **({"epochs": a.epochs} if a.epochs else {}))).fit(corpus, train)
    ev = mae.evaluate(corpus, held)
    mae.history.update(heldout_sce=round(ev["sce"], 5), heldout_sce_untrained=round(ev["sce_untrained"], 5),
                       corpus=a.corpus, corpus_seed=a.seed)
    mae.save(out)
    print(f"saved {out}  ({time.perf_counter() - t0:.1f} s; held-out masked-feature SCE {ev['sce']:.4f}, "
          f"untrained {ev['sce_untrained']:.4f})")
    return 0


def _cmd_collect(a) -> int:
    from ._errors import InvalidInputError
    from .collect import collect, load_work, normalize_device, output_paths

    device = normalize_device(a.device)
    for flag, v, ok in (("--budget", a.budget, a.budget is None or a.budget > 0),
                        ("--cooldown", a.cooldown, a.cooldown >= 0)):
        if not ok:
            raise InvalidInputError(f"{flag} must be {'> 0' if flag == '--budget' else '>= 0'} seconds, got {v:g}")
    if a.ray is not None and not a.ray.strip():
        raise InvalidInputError("--ray needs an address: auto, ray://HOST:10001 or local")
    items = load_work(a.specs, batches=a.batch)
    stats: dict = {}
    n = collect(items, output=a.output, device=device, budget_s=a.budget, cooldown_s=a.cooldown, limit=a.limit,
                ray_address=a.ray, stats=stats, ops=a.ops, threads=a.threads)
    paths = output_paths(a.output)
    if a.ops:
        from .collect import ops_path

        paths["ops"] = ops_path(a.output)
    where = ", ".join(str(p) for p in paths.values() if p.exists()) or a.output
    extra = [f"{stats['skipped']} already there"]
    if stats.get("oom"):
        extra.append(f"{stats['oom']} out of memory")
    if stats.get("failed"):
        extra.append(f"{len(stats['failed'])} failed")
    if stats.get("left"):
        extra.append(f"{stats['left']} left for a later run")
    print(f"wrote {n} rows to {where} ({', '.join(extra)})")
    if stats.get("failed") and n == 0:
        label, err = next(iter(stats["failed"].items()))
        raise CostModelError(f"no row could be measured: {len(stats['failed'])} failed (first: {label}: {err})")
    return 0


def _cmd_llm(a) -> int:
    from ._errors import InvalidInputError

    if a.list:
        from .llm import list_llms, resolve_llm

        for n in list_llms():
            s = resolve_llm(n)
            print(f"{n:<28}{s.model_type:<14}{'decoder' if s.causal else 'encoder'}")
        return 0
    if not a.model:
        raise InvalidInputError("name a MODEL (a registry name, see `costmodel llm --list`, or a config folder)")
    missing = [f for f in ("batch", "seq") if getattr(a, f) is None]
    if missing:
        raise InvalidInputError(f"--{' and --'.join(missing)} required (e.g. --batch 8 --seq 512)")
    from .llm import estimate_llm

    est = estimate_llm(a.model, batch=a.batch, seq=a.seq, device=a.device, mode=a.mode, dtype=a.dtype,
                       region=a.region, carbon_intensity_g_per_kwh=a.carbon_intensity,
                       price_per_gpu_hour_usd=a.price, provider=a.provider, instance=a.instance)
    print(est.to_json() if a.json else est.table())
    return 0


def _cmd_annotate(a) -> int:
    from .onnx import annotate, read_annotations

    if a.show:
        ann = read_annotations(a.path)
        if a.json:
            print(json.dumps(ann, indent=1))
        elif not ann:
            print(f"{a.path}: no costmodel estimates stored")
        for dev, d in ([] if a.json else ann.items()):
            print(f"{dev}: {d['latency_ms']:.4g} ms, {d['memory_mb']:.5g} MB, {d['energy_j']:.4g} J, "
                  f"MIG {d['mig_profile'] or '-'} (batch {d['batch']}, {d['mode']}, {d['predictor']})")
        return 0
    from .frontends._common import parse_shape

    shape = parse_shape(a.input_shape) if a.input_shape else None
    est = annotate(a.path, device=a.device, batch=a.batch, input_shape=shape, mode=a.mode, predictor=a.predictor,
                   output=a.output)
    print(est.to_json() if a.json else f"annotated {a.output or a.path}\n{est.table()}")
    return 0


def _cmd_web(a) -> int:
    from .web import launch

    launch(a.host, a.port)
    return 0


def _cmd_roofline(a) -> int:
    from ._errors import InvalidInputError
    from .roofline_chart import _check_output, machine_chart, pyplot, roofline_chart

    pyplot("roofline charts")  # a missing extra or a bad file name fails before any work
    _check_output(a.output)
    profile = None
    if a.profile:
        from .roofline import MachineProfile

        profile = MachineProfile.load(a.profile)
    if a.machine:
        if a.model:
            raise InvalidInputError(f"--machine draws the machine alone; drop the model argument {a.model!r}")
        if profile is None:
            from .roofline import measure

            profile = measure(device=a.measure_device, progress=True)
            if a.save_profile:
                profile.save(a.save_profile)
                print(f"saved the measured profile to {a.save_profile}")
        base = "cpu" if profile.kind == "cpu" else a.device
        machine_chart(base, machine=profile, output=a.output)
        print(profile.summary())
        print(f"wrote {a.output}")
        return 0
    if not a.model:
        raise InvalidInputError("give a MODEL to place on the roofline, or --machine for the machine alone")
    roofline_chart(a.model, a.device, batch=a.batch, mode=a.mode, dtype=a.dtype, input_shape=a.input_shape,
                   machine=profile, top=a.top, output=a.output, predictor=a.predictor)
    print(f"wrote {a.output}")
    return 0


def _parse_shapes(text: str) -> list[tuple[int, ...]]:
    """``"8x64x56x56,64x64x3x3"`` -> ``[(8, 64, 56, 56), (64, 64, 3, 3)]``."""
    from ._errors import InvalidInputError

    shapes = []
    for piece in text.split(","):
        dims = piece.strip().lower().split("x")
        try:
            shape = tuple(int(d) for d in dims)
        except ValueError:
            shape = ()
        if not shape or any(d <= 0 for d in shape):
            raise InvalidInputError(
                f"--shapes: expected comma-separated shapes of positive integers joined by 'x' "
                f"(e.g. 8x64x56x56,64x64x3x3), got {piece.strip()!r} in {text!r}"
            )
        shapes.append(shape)
    return shapes


def resolve_torch_op(path: str):
    """The callable named by a dotted path under ``torch`` (``"torch.nn.functional.conv2d"``).

    Only attributes of torch's own modules and classes are followed: a path
    that leaves the torch package (``torch.os.system``), names a private
    dunder attribute, or does not name a callable is refused.
    """
    import importlib
    import re
    import types

    from ._errors import InvalidInputError

    if not isinstance(path, str) or not re.fullmatch(r"torch(\.[A-Za-z_][A-Za-z0-9_]*)+", path.strip()):
        raise InvalidInputError(
            f"OP must be a dotted name under torch, such as torch.matmul, torch.add or "
            f"torch.nn.functional.conv2d, got {path!r}"
        )
    parts = path.strip().split(".")
    if any(p.startswith("__") for p in parts):
        raise InvalidInputError(f"OP must not name a dunder attribute, got {path!r}")

    def owned(obj) -> bool:
        if isinstance(obj, types.ModuleType):
            return obj.__name__ == "torch" or obj.__name__.startswith("torch.")
        mod = getattr(obj, "__module__", None)
        if isinstance(mod, str):
            return mod == "torch" or mod.startswith("torch.")
        return isinstance(obj, (types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType))

    obj = importlib.import_module("torch")
    for i in range(1, len(parts)):
        where = ".".join(parts[: i + 1])
        try:
            nxt = getattr(obj, parts[i])
        except AttributeError:
            nxt = None
            if isinstance(obj, types.ModuleType):
                try:
                    nxt = importlib.import_module(where)
                except ImportError:
                    nxt = None
        if nxt is None:
            raise InvalidInputError(f"OP {path!r}: torch has no {where!r}")
        if not owned(nxt):
            raise InvalidInputError(f"OP {path!r}: {where!r} is not part of torch; only torch callables can be benched")
        obj = nxt
    if not callable(obj) or isinstance(obj, types.ModuleType):
        raise InvalidInputError(f"OP {path!r} is not a callable (a function, op or module class)")
    return obj


def _cmd_bench(a) -> int:
    from dataclasses import replace

    from . import bench as run_bench  # the function (costmodel.bench)
    from ._errors import InvalidInputError

    fn = resolve_torch_op(a.op)
    shapes = _parse_shapes(a.shapes)
    if a.output:
        from .roofline_chart import _check_output, pyplot

        pyplot("bench charts (-o)")  # before the timing, not after it
        _check_output(a.output)
    kwargs = {}
    if a.kwargs:
        try:
            kwargs = json.loads(a.kwargs)
        except json.JSONDecodeError as e:
            raise InvalidInputError(
                f"--kwargs: expected a JSON object such as '{{\"padding\": 1}}', got {a.kwargs!r} ({e})"
            ) from None
        if not isinstance(kwargs, dict):
            raise InvalidInputError(f"--kwargs: expected a JSON object, got {type(kwargs).__name__}")
    if a.warmup < 0:
        raise InvalidInputError(f"--warmup must be >= 0, got {a.warmup}")
    import torch

    dev = a.device.strip().lower()
    if dev != "cpu" and not (dev == "cuda" or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise InvalidInputError(f"--device must be cpu, cuda or cuda:N, got {a.device!r}")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError(f"--device {a.device}: no CUDA device is usable here (use --device cpu)")
    dtype = getattr(torch, BENCH_DTYPES[a.dtype])
    gen = torch.Generator().manual_seed(0)
    tensors = [torch.randn(s, generator=gen, dtype=torch.float32).to(device=dev, dtype=dtype) for s in shapes]
    r = run_bench(fn, *tensors, flops=a.flops, bytes=a.bytes, device=a.ceilings, warmup=a.warmup,
                  repeats=a.repeats, min_time_s=a.min_time, profile=a.profile, **kwargs)
    r = replace(r, name=a.op)
    if a.output:
        r.chart(a.output)
    if a.json:
        print(r.to_json())
    else:
        print(r.table())
        if a.output:
            print(f"wrote {a.output}")
    return 0


def _cmd_cost(a) -> int:
    from .cost import job_cost
    from .frontends._common import parse_shape

    shape = parse_shape(a.input_shape) if a.input_shape else None
    providers = None
    if a.provider:
        providers = [p for item in a.provider for p in item.replace(",", " ").split() if p]
    rep = job_cost(a.model, device=a.device, batch=a.batch, mode=a.mode, steps=a.steps, samples=a.samples,
                   dtype=a.dtype, optimizer=a.optimizer, predictor=a.predictor, providers=providers,
                   whole_instance=a.whole_instance, region=a.region,
                   carbon_intensity_g_per_kwh=a.carbon_intensity, input_shape=shape)
    print(rep.to_json() if a.json else rep.table())
    return 0

def _cmd_adapt(a) -> int:
    from pathlib import Path

    from .adapt import adapt, load_rows

    rows = load_rows(a.data, device=a.device)
    res = adapt(a.predictor, rows, shots=a.shots, epochs=a.epochs, seed=a.seed, progress=not a.json)
    out = Path(a.output) if a.output else Path(f"adapted-{res.predictor.name}-{a.device}")
    res.predictor.save(out)
    if a.json:
        print(json.dumps(dict(res.to_dict(), artifact=str(out))))
    else:
        print(res.table())
        print(f"saved {out}  (costmodel predict MODEL --device {a.device} --predictor {out})")
    return 0


def _cmd_calibrate(a) -> int:
    from ._errors import InvalidInputError
    from .host import calibrate

    if a.budget > 10:
        raise InvalidInputError(f"--budget must be at most 10 seconds, got {a.budget:g}")
    out = Path(a.output) if a.output else user_data_dir() / "host.json"
    if out.exists() and out.is_dir():
        raise InvalidInputError(f"-o {out} is a directory; give a file name such as {out / 'host.json'}")
    prof = calibrate(budget_s=a.budget, device=a.device, progress=not a.json and sys.stderr.isatty())
    prof.save(out)
    if a.json:
        print(json.dumps(prof.to_dict()))
        return 0
    print(f"host {prof.host.get('hostname')} ({prof.host.get('cpu')}, torch {prof.host.get('torch')}), "
          f"{'CPU execution' if prof.synchronous else 'CUDA ' + str(prof.host.get('device'))}")
    print(f"{'operator class':<16}{'dispatch us':>12}")
    for k, v in prof.dispatch_us.items():
        print(f"{k:<16}{v:>12.2f}")
    print(f"{'module call':<16}{prof.module_call_us:>12.2f}")
    if prof.kernel_us is not None:
        print(f"{'kernel (device)':<16}{prof.kernel_us:>12.2f}\n{'synchronize':<16}{prof.sync_us:>12.2f}")
    for n in prof.notes:
        print(f"note: {n}")
    print(f"saved {out}")
    return 0


def _cmd_devices(a) -> int:
    from .devices import list_devices

    devs = list_devices()
    if a.json:
        print(json.dumps([d.to_dict() for d in devs]))
        return 0
    hdr = f"{'device':<18}{'fp32':>7}{'tf32':>7}{'fp16':>7}{'bf16':>7}{'HBM GB/s':>10}{'mem GB':>8}{'SMs':>5}{'TDP W':>7}  MIG profiles"
    print(hdr)
    print("-" * len(hdr))

    def tf(v):
        return f"{v:.4g}" if v else "-"

    for d in devs:
        pk = d.peak_tflops
        mig = ", ".join(p.name for p in d.mig_profiles) or "-"
        print(
            f"{d.name:<18}{tf(pk.get('fp32')):>7}{tf(pk.get('tf32')):>7}{tf(pk.get('fp16')):>7}{tf(pk.get('bf16')):>7}"
            f"{d.memory_bandwidth_gbps:>10.4g}{d.memory_gb:>8.4g}{d.sm_count or 0:>5}{d.tdp_w:>7.4g}  {mig}"
        )
    print("\npeaks in dense TFLOP/s (tensor cores where the dtype has them)")
    return 0


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
