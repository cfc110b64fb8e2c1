"""Peak memory from the allocation trace and the caching-allocator replay, measured.

    python benchmarks/memory.py [--kind vision|transformer|all] [--limit N] [--skip-learned] [--third-host]
    python benchmarks/memory.py --speed | --cpu-check

Every packaged H200 row (vision: inference and training, fp32 and fp16;
transformers: encoder forward, prefill, decode) and the rows measured later on
a second H200 host (``benchmarks/data/h200_extend``, architectures no
predictor trained on). For each row the step is traced on fake tensors and
replayed through the caching-allocator model; the device's two overheads (the
library workspace and the context, medians) are fitted leave-one-family-out:
on the rows of every other family (every other ``model_type`` for
transformers), never on the row's own.

Prints, per group of rows:

1. ``memory_mb`` against NVML (what a MIG slice must hold): MAPE, max error,
   Acc(2 %), next to the graph walk (the row's CostGraph alone, its liveness
   walk through the same allocator and overheads: what an ONNX file or a
   Relax module gets), the analytic predictor and the shipped learned
   predictors. The learned predictors were trained on the packaged rows, so
   their numbers on those rows are in-sample (marked ``*``); on the second
   host's new architectures nobody trained on the rows;
2. the replay's own layers against PyTorch's counters:
   ``max_memory_allocated`` and ``max_memory_reserved``; then the replay's
   rows worse than 8 % in ``memory_mb``, its MAPE per family and its five
   worst rows;
3. the MIG pick from the replayed memory: does the slice hold the measured
   memory, and is it the smallest that does;
4. time per estimate (trace + replay, then the cached trace's replay);
5. ``--speed`` (alone, in a fresh process: after the tables the fake-tensor
   caches are warm) resnet50's training step at batch 32 and a 7 B decoder's
   prefill and decode, traced from scratch;
6. ``--cpu-check`` (alone) the allocation trace against a real allocator:
   small models' steps traced for the CPU and run for real on this CPU under
   ``torch.profiler`` (:mod:`costmodel.analysis.allocheck`), one thread;
   resnet18's training step also with frozen parameters (a linear probe, the
   last stage and the classifier).

Transformer rows are replayed with the config their model was built from
(:func:`costmodel.measure.run_config`: the recorded config, plus the
registry's fields the recording dropped, such as DeBERTa-v3's
``pos_att_type``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _stats(pairs: list[tuple[float, float]]) -> tuple[float, float, float]:
    errs = [100.0 * (p - y) / y for p, y in pairs if y and y == y and p == p]
    if not errs:
        return float("nan"), float("nan"), float("nan")
    return (statistics.mean(abs(e) for e in errs), max(abs(e) for e in errs),
            100.0 * sum(abs(e) <= 2.0 for e in errs) / len(errs))


def _group(row: dict) -> str:
    from costmodel.analysis.memreplay import row_group

    return row_group(row)


def _family(row: dict) -> str:
    return row["model_type"] if "model_type" in row else row["spec"].get("family", "unknown")


def _replay(row: dict, ov):
    from costmodel.analysis.memreplay import replay_memory

    if "model_type" in row:
        from costmodel.measure import run_config

        if row["mode"] == "training":  # a fine-tuning step, measured with its optimizer
            return replay_memory(run_config(row), "h200", batch=row["batch"], seq=row["seq"], mode="training",
                                 optimizer=row.get("optimizer", "adamw"), dtype=row["dtype"], overheads=ov,
                                 target_seq=row.get("target_seq"), ssm_kernels=row.get("ssm_kernels", "reference"))
        return replay_memory(run_config(row), "h200", batch=row["batch"], seq=row["seq"], phase=row["mode"],
                             dtype=row["dtype"], overheads=ov, target_seq=row.get("target_seq"),
                             ssm_kernels=row.get("ssm_kernels", "reference"))
    mode = "training" if row["mode"] == "train" else "inference"
    return replay_memory(row["spec"], "h200", batch=row["batch"], mode=mode, dtype=row["dtype"], overheads=ov)


def _learned(rows: list[dict], folder: str, names: list[str], graphs: dict | None = None) -> dict[str, list[float]]:
    """Memory of each row from the shipped predictors (NaN where a predictor has no answer); ``graphs``
    (when given) receives each row's CostGraph by row index."""
    from costmodel import estimate_llm
    from costmodel.datasets import PerfDataset
    from costmodel.predictors import get_predictor

    out: dict[str, list[float]] = {n: [float("nan")] * len(rows) for n in names}
    ds = PerfDataset.load(HERE / "data" if folder != "h200" else None, device=folder, kinds=("vision", "llm"))
    index = {json.dumps(r.raw, sort_keys=True): i for i, r in enumerate(ds.rows)}
    preds = {n: get_predictor(n) for n in names if n != "llm-xgb"}
    for j, row in enumerate(rows):
        i = index.get(json.dumps(row, sort_keys=True))
        if i is None:
            continue
        r = ds.rows[i]
        if r.kind == "llm":
            if "llm-xgb" in out:
                try:
                    cfg = dict(r.spec["config"], model_type=r.spec["model_type"])
                    e = estimate_llm(cfg, batch=r.batch, seq=r.seq, mode=r.phase, dtype=r.dtype, device="h200",
                                     predictor="llm-xgb", target_seq=r.spec.get("target_seq"))
                    out["llm-xgb"][j] = e.memory_mb
                except Exception:  # a config the transformer predictor does not take
                    pass
            if r.phase == "decode":
                continue
        g = ds.graph(i)
        if graphs is not None:
            graphs[j] = g
        for n, p in preds.items():
            try:
                out[n][j] = p.predict(g, "h200", mode=r.mode).memory_mb
            except Exception:
                pass
    return out


def _read(folder: Path, prefix: str = "") -> list[dict]:
    from costmodel.datasets import read_jsonl

    rows = [row for name in (f"{prefix}vision.jsonl", f"{prefix}llm.jsonl") if (folder / name).exists()
            for _, row in read_jsonl(folder / name)]
    return [r for r in rows if r.get("nvml_used_mb") is not None and r.get("peak_reserved_mb") is not None]


def _graph_walk(row: dict, graph, ov) -> float:
    """``memory_mb`` from the graph alone: its liveness walk through the caching allocator (what an ONNX
    file or a Relax module gets with the timeline or analytic predictor)."""
    from costmodel.analysis.memreplay import replay_memory

    mode = "training" if row["mode"] == "train" else "inference"
    return replay_memory(graph, "h200", batch=row["batch"], mode=mode, dtype=row["dtype"], overheads=ov,
                         kind="transformer" if "model_type" in row else "vision").memory_mb


def _slack_records(packaged: list[dict], progress: bool = False) -> tuple[float, list[dict]]:
    """The training allowance over the packaged vision training rows, and each row's measured and
    replayed (no allowance) reserved peaks."""
    from costmodel.analysis import memreplay

    ov = memreplay.fit_overheads(packaged, "h200", "packaged rows")
    out = memreplay.fit_train_slack([r for r in packaged if "spec" in r], "h200", overheads=ov, progress=progress)
    memreplay._CACHE.clear()  # section 4 times traces from scratch
    return out


def _fold_slack(recs: list[dict], family: str) -> float:
    """The training allowance fitted without ``family``'s rows (the median ratio of the others, at least 0)."""
    ratios = [r["peak_reserved_mb"] / r["replayed_reserved_mb"] - 1 for r in recs
              if r["spec"].get("family") != family]
    return max(0.0, statistics.median(ratios)) if ratios else 0.0


def _section(title: str, rows: list[dict], fit_rows: list[dict], learned: dict[str, list[float]],
             in_sample: bool, mig: bool, graphs: dict | None = None, slack: list[dict] | None = None,
             calibration: list[dict] | None = None) -> list[dict]:
    """One set of rows scored; returns their residual records (``group``, ``family``, ``log_ratio``), which
    calibrate the memory intervals. ``calibration``: the records the intervals of section 3 come from
    (``in_sample``: the rows' own, each fold without its family)."""
    from dataclasses import replace

    from costmodel.analysis.memreplay import fit_overheads

    print(f"\n{title}: {len(rows)} rows")
    by_fam: dict[str, list[dict]] = defaultdict(list)
    for r in fit_rows:
        by_fam[_family(r)].append(r)
    cache: dict[str, object] = {}
    res = []
    walk = [float("nan")] * len(rows)
    t_first, t_again = defaultdict(list), defaultdict(list)
    for k, row in enumerate(rows):
        fam = _family(row)
        if fam not in cache:  # overheads without this family's rows
            cache[fam] = replace(fit_overheads([r for f, rs in by_fam.items() if f != fam for r in rs], "h200",
                                               f"h200 rows without {fam}"),
                                 train_slack=_fold_slack(slack or [], fam))
        t0 = time.perf_counter()
        try:
            out = _replay(row, cache[fam])
        except Exception as e:  # reported, never dropped
            print(f"   {_group(row)} {row.get('model') or row['spec'].get('name')}: {type(e).__name__}: {e}")
            res.append(None)
            continue
        t_first[_group(row)].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _replay(row, cache[fam])
        t_again[_group(row)].append(time.perf_counter() - t0)
        res.append(out)
        if graphs and k in graphs:
            walk[k] = _graph_walk(row, graphs[k], cache[fam])
        if (k + 1) % 50 == 0:
            print(f"   ... {k + 1}/{len(rows)}", file=sys.stderr, flush=True)
    groups = sorted({_group(r) for r in rows})
    star = "*" if in_sample else ""
    names = list(learned)
    if graphs:
        learned = {"graph walk": walk, **learned}
        names = list(learned)
    head = f"{'':<26}{'rows':>5}{'replay MAPE':>12}{'max':>7}{'Acc2':>6}"
    # the graph walk's overheads are fitted like the replay's (without the row's family): never in-sample
    head += "".join(f"{n + (star if n != 'graph walk' else ''):>12}" for n in names)
    print("\n1. memory_mb vs NVML (MAPE %; max |error| %; Acc(2 %) share of rows)")
    print(head)
    for grp in groups + ["all"]:
        idx = [i for i, r in enumerate(rows) if (grp == "all" or _group(r) == grp) and res[i] is not None]
        if not idx:
            continue
        m, mx, acc = _stats([(res[i].memory_mb, rows[i]["nvml_used_mb"]) for i in idx])
        line = f"{grp:<26}{len(idx):>5}{m:>12.2f}{mx:>7.1f}{acc:>6.0f}"
        for n in names:
            lm, _, _ = _stats([(learned[n][i], rows[i]["nvml_used_mb"]) for i in idx if learned[n][i] == learned[n][i]])
            line += f"{lm:>12.2f}" if lm == lm else f"{'-':>12}"
        print(line)
    print("\n2. the replay against PyTorch's counters (MAPE %, max %)")
    print(f"{'':<26}{'allocated':>10}{'max':>7}{'reserved':>10}{'max':>7}")
    for grp in groups + ["all"]:
        idx = [i for i, r in enumerate(rows) if (grp == "all" or _group(r) == grp) and res[i] is not None]
        if not idx:
            continue
        a, amx, _ = _stats([(res[i].allocated_mb, rows[i]["peak_alloc_mb"]) for i in idx])
        v, vmx, _ = _stats([(res[i].reserved_mb, rows[i]["peak_reserved_mb"]) for i in idx])
        print(f"{grp:<26}{a:>10.2f}{amx:>7.1f}{v:>10.2f}{vmx:>7.1f}")
    errs = sorted((abs(res[i].memory_mb / rows[i]["nvml_used_mb"] - 1), i) for i in range(len(rows))
                  if res[i] is not None)
    worst = errs[-5:]
    over = [i for e, i in errs if e > 0.08]
    print(f"   rows worse than 8 %: {len(over)} of {len(errs)}"
          + (" (" + ", ".join(sorted({_family(rows[i]) for i in over})) + ")" if over else ""))
    fam_err: dict[str, list[float]] = defaultdict(list)
    for e, i in errs:
        fam_err[_family(rows[i])].append(100 * e)
    print("   MAPE % per family (max): " + ", ".join(
        f"{f} {statistics.mean(v):.2f} ({max(v):.1f})" for f, v in sorted(fam_err.items())))
    print("   worst rows: " + "; ".join(
        f"{rows[i].get('model') or rows[i]['spec'].get('name')} {rows[i]['mode']} {rows[i]['dtype']} "
        f"b{rows[i]['batch']} {100 * (res[i].memory_mb / rows[i]['nvml_used_mb'] - 1):+.1f} %" for _, i in worst))
    mem = {"replay": [r.memory_mb if r is not None else None for r in res],
           "liveness-fallback": [w if w == w else None for w in walk]}
    records = {p: [{"group": _group(r), "family": _family(r), "log_ratio": math.log(r["nvml_used_mb"] / m[i])}
                   for i, r in enumerate(rows) if m[i] is not None] for p, m in mem.items()}
    if mig:
        for path, label in (("replay", "the replayed memory"), ("liveness-fallback", "the graph walk")):
            if path == "replay" or records[path]:
                cal = records[path] if in_sample else (calibration or {}).get(path)
                _mig_lines(rows, mem[path], cal, cross=in_sample, label=label)
    print("\n4. time per estimate, median ms (trace + replay; replay of the cached trace)")
    for grp in groups:
        if t_first[grp]:
            print(f"{grp:<26}{1e3 * statistics.median(t_first[grp]):>10.0f}{1e3 * statistics.median(t_again[grp]):>10.1f}")
    return records


def _mig_lines(rows: list[dict], res: list, calibration: list[dict] | None, *, cross: bool, label: str) -> None:
    """Section 3: the MIG pick from a path's memory (``res``: MiB per row, ``None`` where it has none), and
    from its interval's upper end with the interval's coverage. ``calibration``: the residual records the
    intervals come from; ``cross``: they are these rows' own, so each row's interval leaves its own
    family's records out."""
    from costmodel import get_device, recommend_mig
    from costmodel.analysis.memreplay import bounds_for, fit_intervals, row_group

    fits: dict[str, dict] = {}
    tally = {"point": [0, 0], "upper": [0, 0]}
    # fit decisions against every distinct slice size and the whole device (what --max-batch answers at
    # the measured batches): predicted to fit but measured over (a run that fails), and the reverse
    limits = sorted({p.capacity_mb for p in get_device("h200").mig_profiles} | {get_device("h200").memory_mb})
    wrong = {"point": [0, 0], "upper": [0, 0]}
    covered = n = 0
    for i, r in enumerate(rows):
        if res[i] is None:
            continue
        n += 1
        best = recommend_mig("h200", r["nvml_used_mb"])
        lo = hi = 0.0
        if calibration:
            fam = _family(r) if cross else ""
            if fam not in fits:
                fits[fam] = fit_intervals([c for c in calibration if c["family"] != fam])
            lo, hi, _, _ = bounds_for(fits[fam], row_group(r))
            covered += lo <= math.log(r["nvml_used_mb"] / res[i]) <= hi
        for name, mem in (("point", res[i]), ("upper", res[i] * math.exp(hi))):
            pick = recommend_mig("h200", mem)
            tally[name][0] += pick is not None and pick.capacity_mb >= r["nvml_used_mb"] or (pick is None and best is None)
            tally[name][1] += (pick.name if pick else None) == (best.name if best else None)
            for cap in limits:
                wrong[name][0] += mem <= cap < r["nvml_used_mb"]
                wrong[name][1] += r["nvml_used_mb"] <= cap < mem
    print(f"\n3. MIG pick from {label}: holds the measured memory in {100 * tally['point'][0] / n:.1f} % "
          f"of rows, is the smallest that does in {100 * tally['point'][1] / n:.1f} %")
    if calibration:
        print(f"   from the upper end of its 90 % interval: holds {100 * tally['upper'][0] / n:.1f} %, smallest "
              f"{100 * tally['upper'][1] / n:.1f} %; the interval holds the measured memory in {100 * covered / n:.1f} % "
              f"of rows ({'each fold without its own family' if cross else 'calibrated on the packaged rows'})")
    pairs = n * len(limits)
    print(f"   fit decisions against the {len(limits)} memory sizes of the H200's slices and the whole device "
          f"({pairs} row x size pairs): fits by the point but over when measured {wrong['point'][0]}, refused by "
          f"the point but fits {wrong['point'][1]}"
          + (f"; by the upper end {wrong['upper'][0]} and {wrong['upper'][1]}" if calibration else ""))


def _speed() -> None:
    """The two speed targets: resnet50's training step at batch 32, and a 7 B decoder's prefill and
    decode, each traced from scratch (no cached trace) and replayed."""
    from costmodel.analysis import memreplay
    from costmodel.analysis.memreplay import replay_memory

    replay_memory("torchvision:resnet18", "h200", batch=1)  # imports and first-call set-up, not timed
    t0 = time.perf_counter()
    import transformers  # noqa: F401 - the decoders' one-time import, timed on its own line

    imported_s = time.perf_counter() - t0
    print("\n5. speed, trace + replay from scratch (seconds)")
    print(f"{'import transformers (once, before a first transformer)':<58}{imported_s:>8.2f}")
    cases = [("torchvision:resnet50", dict(batch=32, mode="training"), "resnet50 training step, batch 32"),
             ("llama-2-7b", dict(batch=8, seq=512, phase="prefill", dtype="fp16"), "llama-2-7b prefill, 8 x 512"),
             ("llama-2-7b", dict(batch=8, seq=512, phase="decode", dtype="fp16"),
              "llama-2-7b decode, 8 x 512 cache (prefill + 8 steps, twice)")]
    for model, kw, label in cases:
        memreplay._CACHE.clear()
        t0 = time.perf_counter()
        out = replay_memory(model, "h200", **kw)
        print(f"{label:<58}{time.perf_counter() - t0:>8.2f}   ({out.memory_mb:,.0f} MB)")


def _hf_cpu(name: str, **override):
    """A registry transformer, scaled down by ``override``, built with random fp32 weights on the CPU."""
    import torch
    import transformers

    from costmodel.llm import resolve_llm

    spec = resolve_llm(name)
    kw = {k: v for k, v in {**spec.config, **override}.items() if k != "model_type"}
    cfg = transformers.AutoConfig.for_model(spec.model_type, **kw)
    cfg.use_cache = False
    auto = transformers.AutoModelForCausalLM if spec.causal else transformers.AutoModel
    torch.manual_seed(0)
    return auto.from_config(cfg).eval(), spec.causal


def _hf_type_cpu(model_type: str, causal: bool, **config):
    """A transformers model of ``model_type`` built as the cost model builds it, with random fp32 weights on
    the CPU."""
    import torch
    import transformers

    from costmodel.frontends.hf import model_class

    cfg = transformers.AutoConfig.for_model(model_type, use_cache=False, **config)
    torch.manual_seed(0)
    return model_class(cfg, causal).from_config(cfg).eval()


def _cpu_check_architectures(line) -> None:
    """The CPU allocator check of architectures beyond dense decoders (``line`` prints and records a row)."""
    import torch

    from costmodel.analysis.allocheck import check_decoder, check_module

    # architectures beyond dense decoders: an encoder-decoder, sliding-window attention, a convolution layer
    # beside attention, a selective scan (transformers' reference code): a call and a fine-tuning step
    tok = dict(pad_token_id=0, bos_token_id=0, eos_token_id=0)
    for name, mt, causal, cfg, step_seq in (
            ("t5 (2+2 layers, 256 wide)", "t5", False, dict(d_model=256, d_ff=1024, num_layers=2,
                                                             num_decoder_layers=2, num_heads=4, d_kv=64), 128),
            ("gemma2 (2 layers, window 64)", "gemma2", True, dict(hidden_size=256, intermediate_size=512,
                                                                  num_hidden_layers=2, num_attention_heads=4,
                                                                  num_key_value_heads=2, head_dim=64,
                                                                  sliding_window=64), 128),
            ("lfm2 (convolution + attention)", "lfm2", True, dict(hidden_size=256, intermediate_size=512,
                                                                  num_hidden_layers=2, num_attention_heads=4,
                                                                  num_key_value_heads=2,
                                                                  layer_types=["conv", "full_attention"]), 128),
            ("mamba (2 layers, 256 wide)", "mamba", True, dict(hidden_size=256, num_hidden_layers=2,
                                                               state_size=16), 64)):
        m = _hf_type_cpu(mt, causal, **cfg, **tok, vocab_size=1000)
        c = check_decoder(m, batch=2, seq=128, causal=causal)
        line(name, "prefill" if causal else "forward", "2x128", c)
        ids = torch.zeros((2, step_seq), dtype=torch.long)
        if causal:
            m.loss_type = "ForCausalLM"
        c = check_module(m, {"input_ids": ids, "labels": ids, **({} if causal else {"decoder_input_ids": ids})},
                         training=True, optimizer="adamw")
        line(name, "fine-tune", f"2x{step_seq}", c)
    # encoder-decoders whose target is shorter or longer than the source (128 tokens)
    for name, mt, cfg in (
            ("t5 (2+2 layers, 256 wide)", "t5", dict(d_model=256, d_ff=1024, num_layers=2, num_decoder_layers=2,
                                                     num_heads=4, d_kv=64)),
            ("bart (2+2 layers, 256 wide)", "bart", dict(d_model=256, encoder_layers=2, decoder_layers=2,
                                                         encoder_attention_heads=4, decoder_attention_heads=4,
                                                         encoder_ffn_dim=1024, decoder_ffn_dim=1024,
                                                         decoder_start_token_id=0))):
        m = _hf_type_cpu(mt, False, **cfg, **tok, vocab_size=1000)
        for target in (32, 384):
            c = check_decoder(m, batch=2, seq=128, target_seq=target)
            line(name, "forward", f"2x128, target {target}", c)
            ids, tgt = torch.zeros((2, 128), dtype=torch.long), torch.zeros((2, target), dtype=torch.long)
            c = check_module(m, {"input_ids": ids, "labels": tgt, "decoder_input_ids": tgt}, training=True,
                             optimizer="adamw")
            line(name, "fine-tune", f"2x128, target {target}", c)


def _cpu_check() -> None:
    """Traced peak (``target="cpu"``) against the CPU allocator's own events, over small models."""
    import torch
    import torchvision

    from costmodel.analysis.allocheck import check_decoder, check_module

    torch.set_num_threads(1)
    torch.manual_seed(0)
    print("\n6. the allocation trace against the CPU allocator: the step's peak above weights, buffers and inputs "
          "(MB = 1e6 bytes)")
    print("   real: torch.profiler's allocation events; w/o temp.: the same without blocks freed before the "
          "operator that allocated them returned")
    head = (f"{'model':<40}{'mode':<11}{'batch':>9}{'traced':>9}{'real':>9}{'error %':>9}"
            f"{'w/o temp.':>11}{'error %':>9}{'s':>6}")
    print(head)
    vision = [
        ("resnet18", lambda: torchvision.models.resnet18(), 4),
        ("mobilenet_v3_small", lambda: torchvision.models.mobilenet_v3_small(), 4),
        ("efficientnet_b0", lambda: torchvision.models.efficientnet_b0(), 2),
        ("vit (4 layers, 128 wide, torchvision)",
         lambda: torchvision.models.VisionTransformer(image_size=224, patch_size=16, num_layers=4, num_heads=4,
                                                      hidden_dim=128, mlp_dim=512), 4),
    ]
    try:
        import timm

        vision.append(("deit_tiny_patch16_224 (timm)", lambda: timm.create_model("deit_tiny_patch16_224"), 2))
    except ImportError:
        pass
    t_all = time.perf_counter()
    errs, errs_res, diff_res = [], [], []

    def line(name, mode, batch, c):
        errs.append(abs(c.error))
        errs_res.append(abs(c.results_error))
        diff_res.append(abs(c.traced_bytes - c.real_results_bytes))
        print(f"{name:<40}{mode:<11}{batch:>9}{c.traced_mb:>9.2f}{c.real_mb:>9.2f}{100 * c.error:>+9.2f}"
              f"{c.real_results_mb:>11.2f}{100 * c.results_error:>+9.2f}{c.trace_seconds + c.real_seconds:>6.1f}")
    for name, build, batch in vision:
        m = build()
        x = torch.empty((batch, 3, 224, 224), device="meta")
        for training in (False, True):
            c = check_module(m, x, training=training, optimizer="adam")
            line(name, "training" if training else "inference", batch, c)
    # frozen parameters (a linear probe, a partial fine-tune): no gradient, optimizer state or saved
    # activation for the frozen layers, in the trace as in the real step
    from costmodel.frontends import freeze

    for label, trainable in (("head", "head"), ("layer4, fc", ["layer4", "fc"])):
        m = freeze(torchvision.models.resnet18(), trainable)
        c = check_module(m, torch.empty((4, 3, 224, 224), device="meta"), training=True, optimizer="adam")
        line(f"resnet18, trainable: {label}", "training", 4, c)
    small = dict(num_hidden_layers=2, vocab_size=1000)
    transformers_ = [
        ("bert-base-uncased (2 layers)", "bert-base-uncased", small),
        ("gpt2 (2 layers)", "gpt2", dict(n_layer=2, vocab_size=1000, bos_token_id=0, eos_token_id=0)),
        ("deberta-v3-small (2 layers)", "deberta-v3-small", small),
        ("deberta-v3-small, no pos_att_type", "deberta-v3-small", dict(small, pos_att_type=None)),
    ]
    for name, ref, override in transformers_:
        m, causal = _hf_cpu(ref, **override)
        for batch, seq in ((2, 128), (4, 512)):
            c = check_decoder(m, batch=batch, seq=seq, causal=causal)
            line(name, "prefill" if causal else "forward", f"{batch}x{seq}", c)
    # fine-tuning steps of decoders: their own causal-LM loss, backward, AdamW (fp32 weights; and under
    # bf16 autocast, the usual mixed-precision recipe)
    for name, ref, override in (("gpt2 (2 layers)", "gpt2", dict(n_layer=2, vocab_size=1000, bos_token_id=0,
                                                                 eos_token_id=0)),
                                ("llama-2-7b (2 layers, 512 wide)", "llama-2-7b",
                                 dict(num_hidden_layers=2, hidden_size=512, intermediate_size=1376,
                                      num_attention_heads=8, num_key_value_heads=8, vocab_size=1000)),
                                ("qwen2-0.5b (2 layers)", "qwen2-0.5b", dict(small, bos_token_id=0, eos_token_id=0))):
        m, _ = _hf_cpu(ref, **override)
        m.loss_type = "ForCausalLM"
        for amp in (None, "bf16"):
            ids = torch.zeros((4, 512), dtype=torch.long)
            c = check_module(m, {"input_ids": ids, "labels": ids}, training=True, optimizer="adamw", autocast=amp)
            line(name + (", bf16 amp" if amp else ""), "fine-tune", "4x512", c)
    _cpu_check_architectures(line)
    print(f"   mean |error| {100 * statistics.mean(errs):.2f} % (max {100 * max(errs):.2f} %); without the kernels' "
          f"temporaries {100 * statistics.mean(errs_res):.3f} % (max {100 * max(errs_res):.3f} %, "
          f"{max(diff_res)} bytes); {time.perf_counter() - t_all:.0f} s")


#: how the shipped memory fit was made
FITTED_BY = "python benchmarks/memory.py --fit-slack (training allowance), --fit-intervals (intervals)"


def _write_slack(packaged: list[dict]) -> None:
    """Fit the shipped training allowance (``--fit-slack``) and write it with the rows it was fitted on."""
    from costmodel.analysis.memreplay import MEMORY_FIT, load_memory_fit, write_memory_fit
    from costmodel.datasets import default_root

    slack, recs = _slack_records(packaged, progress=True)
    path = default_root() / "h200" / MEMORY_FIT
    old = load_memory_fit(path) if path.exists() else {}  # the intervals stay as fitted
    path = write_memory_fit(path, slack, recs, device="NVIDIA H200", intervals=old.get("intervals"),
                            walk_intervals=old.get("walk_intervals"), fitted_by=FITTED_BY)
    print(f"training allowance {100 * slack:.2f} % over {len(recs)} rows -> {path}")


def _write_intervals(records: dict[str, list[dict]]) -> None:
    """Write the memory intervals' calibrations (``--fit-intervals``): the packaged rows' residuals, each
    taken with the overheads fitted without its own family, of the replay and of the graph walk, into the
    shipped ``memory_fit.json`` (its training allowance and rows kept)."""
    from costmodel.analysis.memreplay import MEMORY_FIT, fit_intervals, load_memory_fit, write_memory_fit
    from costmodel.datasets import default_root

    path = default_root() / "h200" / MEMORY_FIT
    fit = load_memory_fit(path)
    cal = {k: fit_intervals(v) for k, v in records.items()}
    write_memory_fit(path, fit["train_reserved_slack"], fit["rows"], device=fit["device"], fitted_by=FITTED_BY,
                     intervals=cal["replay"], walk_intervals=cal["liveness-fallback"])
    for k, c in cal.items():
        print(f"{k} intervals ({100 * c['coverage']:.0f} %) from {len(records[k])} held-out residuals -> {path}")
        for g, b in c["groups"].items():
            print(f"   {g:<24} {b['rows']:>4} rows  {100 * math.expm1(b['lo']):+6.2f} % .. "
                  f"{100 * math.expm1(b['hi']):+6.2f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=("vision", "transformer", "all"), default="all")
    ap.add_argument("--limit", type=int, default=None, help="only the first N rows of each set (a quick look)")
    ap.add_argument("--skip-learned", action="store_true",
                    help="the replay and the graph walk only, without the learned predictors' columns")
    ap.add_argument("--speed", action="store_true", help="only the speed section (5), in this fresh process")
    ap.add_argument("--third-host", action="store_true",
                    help="also the rows a third H200 host measured while profiling per operator "
                         "(costmodel/data/h200/ops and benchmarks/data/h200_ops; replay only)")
    ap.add_argument("--fit-slack", action="store_true",
                    help="only fit the training allowance on the packaged training rows and write it to "
                         "costmodel/data/h200/memory_fit.json (the shipped value)")
    ap.add_argument("--fit-intervals", action="store_true",
                    help="only replay and walk the packaged rows (overheads fitted leave-one-family-out) and write "
                         "the two memory paths' interval calibrations, their residuals, to "
                         "costmodel/data/h200/memory_fit.json")
    ap.add_argument("--cpu-check", action="store_true",
                    help="only the trace against the CPU allocator (6): small models run for real on this CPU")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    if a.speed:
        _speed()
        return
    if a.cpu_check:
        _cpu_check()
        return
    from costmodel.datasets import default_root

    def keep(rows):
        rows = [r for r in rows if a.kind == "all" or ("model_type" in r) == (a.kind == "transformer")]
        return rows[: a.limit] if a.limit else rows

    packaged = _read(default_root() / "h200")
    if a.fit_slack:
        _write_slack(packaged)
        return
    recs = _slack_records(keep(packaged))[1] if a.kind != "transformer" else []
    if recs:
        print(f"training allowance (median measured / replayed reserved - 1 over {len(recs)} packaged training rows; "
              f"each fold below refits it without its family): {100 * _fold_slack(recs, ''):.2f} %")
    extend = _read(HERE / "data" / "h200_extend")
    seen = {json.dumps(r["spec"], sort_keys=True) for r in packaged if "spec" in r}
    new_arch = [r for r in extend if "spec" in r and json.dumps(r["spec"], sort_keys=True) not in seen]
    new_arch += [r for r in extend if "model_type" in r]
    names = [] if a.skip_learned else ["analytic", "trappm", "dippm", "xgb-static", "llm-xgb"]
    rows = keep(packaged)
    graphs: dict = {}
    # the graphs give the graph walk's column (and --fit-intervals the walk's intervals)
    learned = _learned(rows, "h200", names, graphs)
    own = _section("H200, packaged rows, overheads fitted leave-one-family-out", rows, packaged, learned, True, True,
                   graphs, recs)
    if a.fit_intervals:
        if a.kind != "all" or a.limit:
            ap.error("--fit-intervals calibrates on every packaged row: drop --kind and --limit")
        _write_intervals(own)
        return
    # the other hosts' intervals: calibrated on every packaged row, as the shipped ones are
    from costmodel.analysis.memreplay import memory_intervals

    cal = own if a.kind == "all" and not a.limit else {
        p: (memory_intervals("h200", p) or {}).get("residuals") for p in ("replay", "liveness-fallback")}
    rows = keep(new_arch)
    if rows:
        graphs = {}
        learned = _learned(rows, "h200_extend", names, graphs)
        _section("H200, second host, architectures no predictor trained on (overheads from the packaged rows)",
                 rows, packaged, learned, False, True, graphs, recs, cal)
    if a.third_host:  # the same workloads measured again by another process history and host
        third = keep(_read(default_root() / "h200" / "ops", "ops_"))
        _section("H200, third host, packaged architectures (overheads from the packaged rows)", third, packaged, {},
                 False, True, {}, recs, cal)
        third = keep([r for r in _read(HERE / "data" / "h200_ops", "ops_")
                      if json.dumps(r["spec"], sort_keys=True) not in seen])
        _section("H200, third host, architectures no predictor trained on (overheads from the packaged rows)",
                 third, packaged, {}, False, True, {}, recs, cal)


if __name__ == "__main__":
    main()
