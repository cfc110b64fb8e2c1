"""Train a learned predictor on measured rows and save it as an artifact (``costmodel train``)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .artifacts import TrainResult, artifact_dir, pretrained_dir

#: what :func:`train` can train
PREDICTORS = ("dippm", "trappm", "xgb-static", "llm-xgb", "gnn-llm", "timeline", "timeline-llm")


def train(predictor: str = "dippm", *, data=None, device: str = "h200", epochs: int | None = None, seed: int = 0,
          output=None, to_package: bool = False, encoder=None, lm: str | None = None, backbone: str = "lm",
          lora_r: int = 8, summary_epochs: int | None = None, op_weight: float | None = None) -> TrainResult:
    """Train ``predictor`` (seeded) on the rows of ``device`` in ``data`` (default: the packaged data) and save it.

    The artifact goes to ``output``, the package (``to_package``, maintainers) or
    ``$COSTMODEL_HOME/artifacts/PREDICTOR``.  ``encoder`` is the pretrained
    encoder folder of ``trappm`` and ``gnn-llm`` (default: the user's, else the
    shipped one); ``lm``, ``backbone``, ``lora_r`` and ``summary_epochs``
    configure ``gnn-llm``; ``op_weight`` the ``timeline``'s per-operator GPU labels
    (:attr:`~costmodel.predictors.TimelineConfig.op_weight`, read from ``<data>/<device>/ops``).
    Progress goes to stderr.
    """
    if predictor not in PREDICTORS:
        from .._errors import InvalidInputError

        raise InvalidInputError(f"unknown predictor {predictor!r} to train; choose from {', '.join(PREDICTORS)}")
    artifact_dir(predictor, output=output, to_package=to_package)  # a bad output fails before the work
    if op_weight is not None and predictor != "timeline":
        from .._errors import InvalidInputError

        raise InvalidInputError(f"op_weight applies to the timeline predictor only, not {predictor!r}")
    if predictor == "llm-xgb":
        return _train_llm(data, device, seed, output, to_package)
    if predictor == "timeline":
        return _train_timeline(data, device, epochs, seed, output, to_package, op_weight)
    if predictor == "timeline-llm":
        return _train_timeline_llm(data, device, epochs, seed, output, to_package)
    from dataclasses import replace

    from ..datasets import PerfDataset
    from ..predictors import DIPPMPredictor, GNNConfig, XGBStaticPredictor

    ds = PerfDataset.load(data, device=device)
    fit_kw = {}
    ep = {"epochs": epochs} if epochs else {}
    if predictor == "dippm":
        pred = DIPPMPredictor(replace(GNNConfig(conv="sage"), seed=seed, **ep))
    elif predictor == "trappm":
        from .._errors import ModelLoadError
        from ..predictors import GraphAutoencoder, TraPPMPredictor, trappm_config

        enc = Path(encoder) if encoder else pretrained_dir("gae", "gae.json", shipped="trappm")
        if not (enc / "gae.json").exists():
            raise ModelLoadError(f"no pretrained encoder in {enc}; run `costmodel pretrain` first or pass --encoder")
        pred = TraPPMPredictor(trappm_config(seed=seed, **ep), GraphAutoencoder.load(enc))
    elif predictor == "gnn-llm":
        pred, fit_kw["encoder"] = _gnnllm_for_training(encoder, lm, backbone, lora_r, summary_epochs, seed, ep)
    else:
        pred = XGBStaticPredictor(seed=seed)
    out = artifact_dir(predictor, output=output, to_package=to_package)
    print(f"training {predictor} on {len(ds)} rows ({len(ds.families())} families) from {device}", file=sys.stderr)
    t0 = time.perf_counter()
    graphs = ds.graphs(progress=True)  # featurize (cached) with a progress bar
    cached = {i: pred.features(g, r.device, r.mode) for i, (g, r) in enumerate(zip(graphs, ds))}
    # conformal intervals from a held-out 20 %, then refit on all
    pred.fit_calibrated(ds, progress=True, cached=cached, **fit_kw)
    pred.save(out)
    return TrainResult(out, time.perf_counter() - t0, pred)


def _train_timeline(data, device: str, epochs: int | None, seed: int, output, to_package: bool,
                    op_weight: float | None = None) -> TrainResult:
    from .._errors import ModelLoadError
    from ..datasets import PerfDataset
    from ..predictors import TimelineConfig, TimelinePredictor
    from ..predictors import packaged_op_runs

    ds = PerfDataset.load(data, device=device)
    ds = ds.subset([i for i, r in enumerate(ds.rows) if r.kind == "vision"])
    cfg = TimelineConfig(seed=seed, **({"epochs": epochs} if epochs else {}),
                         **({"op_weight": op_weight} if op_weight is not None else {}))
    runs = None
    if cfg.op_weight > 0:  # the runs profiled per operator on this device: <data>/<device>/ops
        runs = packaged_op_runs(data, device=device, progress=True)
    out = artifact_dir("timeline", output=output, to_package=to_package)
    print(f"training timeline on {len(ds)} vision rows ({len(ds.families())} families) from {device}",
          file=sys.stderr)
    t0 = time.perf_counter()
    idx = [i for i, r in enumerate(ds.rows) if r.graph_supported]
    graphs, rows = [ds.graph(i) for i in idx], [ds.rows[i] for i in idx]
    pred = TimelinePredictor(cfg).fit_graphs(graphs, rows, progress=True, op_runs=runs)
    # intervals from leave-one-family-out fits: they have to hold on families no fit saw
    pred.fit_intervals(graphs, rows, [r.family for r in rows], progress=True, op_runs=runs)
    try:
        pred.fit_cpu_ops(data, progress=True)
        info = pred.cpu.trained_on
        print(f"CPU operator model: {info['operators']} operator rows of {info['runs']} runs "
              f"({len(info['families'])} families)", file=sys.stderr)
    except ModelLoadError as e:
        print(f"no CPU operator model: {e}", file=sys.stderr)
    pred.save(out)
    return TrainResult(out, time.perf_counter() - t0, pred)


def _train_timeline_llm(data, device: str, epochs: int | None, seed: int, output, to_package: bool) -> TrainResult:
    """The timeline ``costmodel llm`` uses: fitted on every row with a graph, vision and transformer
    (forward, prefill, and decode steps with their KV-cache graphs, which fit the decode loop's host cost).
    No intervals: held-out vision families say nothing of transformers, and the transformer models are
    too few to hold out for calibrated ones."""
    from .._errors import InvalidInputError
    from ..datasets import PerfDataset
    from ..predictors import TimelineConfig, TimelinePredictor

    ds = PerfDataset.load(data, device=device, kinds=("vision", "llm"))
    idx = [i for i, r in enumerate(ds.rows) if r.has_graph]
    n_llm = sum(ds.rows[i].kind == "llm" for i in idx)
    if not n_llm:
        raise InvalidInputError(f"no transformer rows for {device!r} in {data or 'the packaged data'}: "
                                "timeline-llm is fitted on vision and transformer rows")
    cfg = TimelineConfig(seed=seed, **({"epochs": epochs} if epochs else {}))
    out = artifact_dir("timeline-llm", output=output, to_package=to_package)
    print(f"training timeline-llm on {len(idx) - n_llm} vision and {n_llm} transformer rows from {device}",
          file=sys.stderr)
    t0 = time.perf_counter()
    graphs, rows = [ds.graph(i) for i in idx], [ds.rows[i] for i in idx]
    pred = TimelinePredictor(cfg).fit_graphs(graphs, rows, progress=True)
    pred.save(out)
    return TrainResult(out, time.perf_counter() - t0, pred)


def _gnnllm_for_training(encoder, lm, backbone: str, lora_r: int, summary_epochs, seed: int, epochs: dict):
    """The untrained gnn-llm predictor and its stage-1 GraphMAE encoder (``None``: a random GIN)."""
    from .._errors import ModelLoadError
    from ..predictors import GNNLLMConfig, GNNLLMPredictor
    from ..predictors import GraphMAE

    enc_dir = Path(encoder) if encoder else pretrained_dir("graphmae", "graphmae.json")
    if encoder and not (enc_dir / "graphmae.json").exists():
        raise ModelLoadError(f"no GraphMAE encoder in {enc_dir}; run `costmodel pretrain --method graphmae`")
    mae = GraphMAE.load(enc_dir) if (enc_dir / "graphmae.json").exists() else None
    if mae is None:
        print(f"no GraphMAE encoder in {enc_dir}: the GIN starts from random weights "
              "(`costmodel pretrain --method graphmae` builds one)", file=sys.stderr)
    gin = {"gnn_hidden": mae.config.hidden, "gnn_layers": mae.config.layers} if mae else {}
    stage2 = {} if summary_epochs is None else {"summary_epochs": summary_epochs}
    cfg = GNNLLMConfig(backbone=backbone, lm=lm, lora_r=lora_r, seed=seed, **gin, **stage2, **epochs)
    return GNNLLMPredictor(cfg), mae


def _train_llm(data, device: str, seed: int, output, to_package: bool) -> TrainResult:
    from ..datasets import PerfDataset
    from ..predictors import XGBLLMPredictor
    from ..predictors import artifact_dir as shipped_dir

    ds = PerfDataset.load(data, device=device, kinds=("llm",))
    grid = Path(__file__).resolve().parents[1] / "llm" / "grid_search.json"
    params = json.loads(grid.read_text())["chosen"] if grid.exists() else None
    if to_package and not output:
        out = shipped_dir("llm-xgb")
    else:
        out = artifact_dir("llm-xgb", output=output, to_package=to_package)
    print(f"training llm-xgb on {len(ds)} transformer rows from {device}", file=sys.stderr)
    t0 = time.perf_counter()
    pred = XGBLLMPredictor(params, seed=seed).fit(ds)
    pred.save(out, extra={"grid_search": "costmodel/llm/grid_search.json" if params else None})
    return TrainResult(out, time.perf_counter() - t0, pred)
