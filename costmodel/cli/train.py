"""``costmodel train``, ``pretrain`` and ``adapt``: parse the flags, call :mod:`costmodel.training`."""

from __future__ import annotations

import json
from pathlib import Path

from ._args import add_artifact_args, add_command, add_epochs_seed_args, positive_int

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
ADAPT_EXAMPLES = """examples:
  costmodel adapt --device cpu --data costmodel/data/cpu/vision.jsonl --shots 32
  costmodel adapt --device h100 --data rows/ --shots 16 --predictor trappm -o trappm-h100
  costmodel adapt --device rows/hardware.json --data rows/ --shots 16   # a GPU the database does not list
"""


def register_train(sub) -> None:
    t = add_command(sub, "train", _cmd_train, help="train a learned predictor on measured data",
                    description="Train a learned predictor (seeded, reproducible) and save it as an artifact "
                                "(config JSON + weights, no pickle).",
                    epilog=TRAIN_EXAMPLES + OUTPUT_NOTE)
    t.add_argument("--predictor", default="dippm", choices=("dippm", "trappm", "xgb-static", "llm-xgb", "gnn-llm", "timeline",
                                                  "timeline-llm"),
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
    t.add_argument("--lora-r", type=positive_int, default=8, help="gnn-llm: LoRA rank (default 8)")
    t.add_argument("--summary-epochs", type=int, default=None,
                   help="gnn-llm: graph-to-text epochs of stage 2 (default 3; 0 skips it)")
    t.add_argument("--op-weight", type=float, default=None, metavar="W",
                   help="timeline: weight of the kernels profiled per operator (DATA/DEVICE/ops) in the fit "
                        "(default 0: whole-model rows only; see docs/predictors.md)")
    t.add_argument("--data", default=None, help="measurement folder holding DEVICE/vision.jsonl (default: packaged data)")
    t.add_argument("--device", default="h200", help="sub-folder of --data to train on (default h200)")
    add_epochs_seed_args(t, epochs_default=None, epochs_help="training epochs (GNN predictors)",
                         seed_help="random seed (default 0)")
    add_artifact_args(t, output_help="artifact folder (default: $COSTMODEL_HOME/artifacts/PREDICTOR, see below)",
                      package_help="write the shipped artifact inside the installed package (maintainers)")


def register_pretrain(sub) -> None:
    p = add_command(sub, "pretrain", _cmd_pretrain,
                    help="pretrain a graph encoder (TraPPM autoencoder or GraphMAE) on unlabeled graphs",
                    description="Sample architecture variants from torchvision/timm constructors, build their "
                                "graphs on the meta device (cached, resumable) and pretrain a graph encoder: "
                                "the graph autoencoder whose frozen encoder TraPPM uses (--method gae), or the "
                                "masked-feature GIN that gnn-llm starts from (--method graphmae).",
                    epilog=PRETRAIN_EXAMPLES + OUTPUT_NOTE)
    p.add_argument("--method", default="gae", choices=("gae", "graphmae"),
                   help="gae: edge-reconstruction autoencoder (TraPPM, default); graphmae: masked node features "
                        "(gnn-llm)")
    p.add_argument("--corpus", type=positive_int, default=3000, help="unlabeled graphs to sample (default 3000)")
    add_epochs_seed_args(p, epochs_default=None,
                         epochs_help="pretraining epochs (default 30 for gae, 20 for graphmae)",
                         seed_help="random seed for sampling and training (default 0)")
    p.add_argument("--workers", type=positive_int, default=2, help="graph-building processes (default 2)")
    add_artifact_args(p,
                      output_help="encoder folder (default: $COSTMODEL_HOME/artifacts/gae or .../graphmae, see below)",
                      package_help="write the shipped encoder inside the installed package (maintainers)")


def register_adapt(sub) -> None:
    ad = add_command(sub, "adapt", _cmd_adapt,
                     help="fine-tune a trained predictor on a few rows measured on a new device",
                     description="Few-shot adaptation: start from a trained graph predictor (its weights and "
                                 "feature normalization), fine-tune it on SHOTS rows measured on a new device, "
                                 "report latency error before and after on the rows left out, and save an "
                                 "artifact that `costmodel predict --predictor DIR` loads.",
                     epilog=ADAPT_EXAMPLES)
    ad.add_argument("--device", required=True,
                    help="the new device's database name (see `costmodel devices`), or for a GPU the database "
                         "does not list, the hardware.json `costmodel collect` wrote beside its rows")
    ad.add_argument("--data", required=True, help="measured rows: a .jsonl file or a folder with vision.jsonl")
    ad.add_argument("--shots", type=positive_int, default=32, help="rows to train on (default 32)")
    ad.add_argument("--predictor", default="dippm", help="dippm (default), trappm, or an artifact folder")
    add_epochs_seed_args(ad, epochs_default=60, epochs_help="fine-tuning epochs (default 60)",
                         seed_help="which rows are drawn (default 0)")
    ad.add_argument("-o", "--output", default=None, help="artifact folder (default adapted-PREDICTOR-DEVICE, the device's name)")
    ad.add_argument("--json", action="store_true", help="print the report as JSON")


#: the flags of `costmodel train` that only some predictors read: (flag, attribute, default, those predictors)
PREDICTOR_FLAGS = (("--lm", "lm", None, ("gnn-llm",)), ("--backbone", "backbone", "lm", ("gnn-llm",)),
                   ("--lora-r", "lora_r", 8, ("gnn-llm",)), ("--summary-epochs", "summary_epochs", None, ("gnn-llm",)),
                   ("--encoder", "encoder", None, ("trappm", "gnn-llm")),
                   ("--epochs", "epochs", None, ("dippm", "trappm", "gnn-llm", "timeline", "timeline-llm")))


def _check_predictor_flags(a) -> None:
    """Refuse a flag the chosen predictor would ignore, naming the predictors that read it."""
    from .._errors import InvalidInputError

    for flag, attr, default, readers in PREDICTOR_FLAGS:
        if getattr(a, attr) != default and a.predictor not in readers:
            raise InvalidInputError(f"{flag} only applies to --predictor {' or '.join(readers)}, not {a.predictor!r}")


def _cmd_train(a) -> int:
    from ..training import train

    _check_predictor_flags(a)
    res = train(a.predictor, data=a.data, device=a.device, epochs=a.epochs, seed=a.seed, output=a.output,
                to_package=a.to_package, encoder=a.encoder, lm=a.lm, backbone=a.backbone, lora_r=a.lora_r,
                summary_epochs=a.summary_epochs, op_weight=a.op_weight)
    out, secs = res.artifact, res.seconds
    if a.predictor == "timeline":
        print(f"saved {out}  ({secs:.1f} s; use it with --predictor {out})")
    elif a.predictor == "timeline-llm":
        print(f"saved {out}  ({secs:.1f} s; use it with costmodel llm --predictor {out})")
    elif a.predictor == "llm-xgb":
        print(f"saved {out}  ({secs:.1f} s, data hash {res.model.meta.get('data_hash')}; "
              f"use it with costmodel llm --predictor {out})")
    else:
        print(f"saved {out}  ({secs:.1f} s, data hash {res.model.meta.get('data_hash')}; "
              f"use it with --predictor {out})")
    return 0


def _cmd_pretrain(a) -> int:
    from ..training import pretrain

    res = pretrain(a.method, corpus=a.corpus, epochs=a.epochs, seed=a.seed, workers=a.workers, output=a.output,
                   to_package=a.to_package)
    out, secs, ev = res.artifact, res.seconds, res.evaluation
    if a.method == "graphmae":
        print(f"saved {out}  ({secs:.1f} s; held-out masked-feature SCE {ev['sce']:.4f}, "
              f"untrained {ev['sce_untrained']:.4f})")
    else:
        print(f"saved {out}  ({secs:.1f} s; held-out edge AUC {ev['auc']:.3f}, BCE {ev['bce']:.4f})")
    return 0


def _cmd_adapt(a) -> int:
    from ..training import adapt, load_rows
    from ..training.artifacts import output_folder

    if a.output:
        output_folder(a.output)  # a file there is refused before the fit
    rows = load_rows(a.data, device=a.device)
    res = adapt(a.predictor, rows, shots=a.shots, epochs=a.epochs, seed=a.seed, progress=not a.json)
    if a.output:
        out = Path(a.output)
    else:  # a device given as its hardware.json is named by the GPU the file describes
        from ..devices import get_device

        slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in get_device(a.device).name).strip("-")
        out = Path(f"adapted-{res.predictor.name}-{slug.lower()}")
    res.predictor.save(out)
    if a.json:
        print(json.dumps(dict(res.to_dict(), artifact=str(out))))
    else:
        print(res.table())
        print(f"saved {out}  (costmodel predict MODEL --device {a.device} --predictor {out})")
    return 0
