"""Unmeasured architectures through the ONNX and TVM Relax frontends, checked against the PyTorch frontend.

    python benchmarks/frontend_coverage.py [--frontends onnx,relax] [--quick] [--jobs N] [--json FILE]

The compiler hooks see a model as an ONNX file or a Relax module, not as the ``nn.Module`` the default
estimate traces. This script takes every torchvision classification model and the timm architectures of
``benchmarks/coverage.py`` (designs no packaged row measured) at batch 1 and their native resolution,
exports each (``torch.onnx.export(dynamo=True, optimize=False)``; ``torch.export`` then TVM's
``from_exported_program``), costs the result and compares it with the PyTorch frontend's graph of the
same model with constants folded (what an ONNX runtime or TVM's ``FoldConstant`` leaves):

* **exporter failed**: ``torch.onnx``, ``torch.export`` or TVM could not convert the model (not this
  library's gap; listed with its message);
* **costmodel failed**: the exported model loaded but this library could not cost it (a gap to fix);
* **FLOPs within 1 %**, **op kinds identical** (the histogram of work-carrying op kinds), **params
  identical**; and the median and largest difference of the default predictor's latency from the
  PyTorch graph's (the frontends differ by design where a runtime runs a transpose as a copy or fuses a
  hand-written attention, see docs/results.md "Cross-frontend agreement").

Prints one table per frontend and source, then every failure and every model whose FLOPs differ by more
than 1 %.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

from coverage import TIMM, run_jobs

FRONTENDS = ("onnx", "relax")


def _build(src: str, name: str):
    import torch

    if src == "torchvision":
        import torchvision

        from costmodel.frontends.zoo import tv_native_resolution

        model, res = torchvision.models.get_model(name).eval(), tv_native_resolution(name) or 224
    else:
        import timm

        model = timm.create_model(name, pretrained=False).eval()
        res = int(model.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
    return model, (torch.randn(1, 3, res, res),)


def _kinds(g) -> dict[str, int]:
    from costmodel.ir import category

    return {k: c for k, c in g.op_counts().items() if category(k) not in ("layout", "noop")}


def _convert(fe: str, model, args, tmp: str):
    """The exported form of ``model`` for frontend ``fe`` (exporter's work, not costed here)."""
    import torch

    if fe == "onnx":
        path = os.path.join(tmp, "model.onnx")
        torch.onnx.export(model, args, path, dynamo=True, optimize=False, verbose=False)
        return path
    from tvm.relax.frontend.torch import from_exported_program

    with torch.no_grad():
        ep = torch.export.export(model, args)
    return from_exported_program(ep, keep_params_as_input=True)


def _graph(fe: str, exported):
    from costmodel.frontends import from_onnx, from_relax

    return from_onnx(exported) if fe == "onnx" else from_relax(exported)


def _run(job: tuple[str, str, tuple[str, ...]]) -> list[dict]:
    import torch

    from costmodel.frontends import from_torch
    from costmodel.predictors import get_predictor

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    src, name, frontends = job
    pred = get_predictor(None)
    rows = []
    try:
        model, args = _build(src, name)
        ref = from_torch(model, args).fold_constants()
        ref_ms = pred.predict(ref, "h200").latency_ms
    except Exception as ex:  # noqa: BLE001 - reported, as coverage.py's torch failures are
        return [{"source": src, "model": name, "frontend": fe, "stage": "torch",
                 "error": f"{type(ex).__name__}: {str(ex)[:300]}"} for fe in frontends]
    for fe in frontends:
        row = {"source": src, "model": name, "frontend": fe}
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                exported = _convert(fe, model, args, tmp)
            except Exception as ex:  # noqa: BLE001
                row.update(stage="exporter", error=f"{type(ex).__name__}: {str(ex).splitlines()[0][:300]}")
                rows.append(row)
                continue
            try:
                g = _graph(fe, exported)
                ms = pred.predict(g, "h200").latency_ms
            except Exception as ex:  # noqa: BLE001
                row.update(stage="costmodel", error=f"{type(ex).__name__}: {str(ex)[:300]}")
                rows.append(row)
                continue
        kt, kg = _kinds(ref), _kinds(g)
        row.update(flops_rel=g.flops / ref.flops - 1 if ref.flops else 0.0, kinds_same=kt == kg,
                   kinds_diff={k: [kt.get(k, 0), kg.get(k, 0)] for k in sorted(set(kt) | set(kg))
                               if kt.get(k, 0) != kg.get(k, 0)},
                   params=g.params, params_ref=ref.params, latency_rel=ms / ref_ms - 1, s=time.perf_counter() - t0)
        rows.append(row)
    return rows


def _table(rows: list[dict]) -> str:
    lines = ["| frontend | source | models | exporter failed | costmodel failed | costed | FLOPs within 1 % "
             "| op kinds identical | params identical | latency vs PyTorch graph, median / largest |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for fe in dict.fromkeys(r["frontend"] for r in rows):
        for src in dict.fromkeys(r["source"] for r in rows):
            rs = [r for r in rows if r["frontend"] == fe and r["source"] == src]
            ok = [r for r in rs if "error" not in r]
            lat = [abs(r["latency_rel"]) * 100 for r in ok]
            spread = f"{statistics.median(lat):.1f} % / {max(lat):.0f} %" if lat else "-"
            lines.append(
                f"| {fe} | {src} | {len(rs)} | {sum(r.get('stage') == 'exporter' for r in rs)} "
                f"| {sum(r.get('stage') in ('costmodel', 'torch') for r in rs)} | {len(ok)} "
                f"| {sum(abs(r['flops_rel']) <= 0.01 for r in ok)} | {sum(r['kinds_same'] for r in ok)} "
                f"| {sum(r['params'] == r['params_ref'] for r in ok)} | {spread} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frontends", default="onnx,relax", help=f"comma-separated, among {', '.join(FRONTENDS)}")
    ap.add_argument("--quick", action="store_true", help="a handful of models of each source")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (one thread each)")
    ap.add_argument("--json", help="write every row here")
    args = ap.parse_args(argv)
    fes = tuple(f.strip() for f in args.frontends.split(",") if f.strip())
    bad = [f for f in fes if f not in FRONTENDS]
    if bad or not fes:
        ap.error(f"--frontends: unknown {bad or args.frontends!r}; valid: {', '.join(FRONTENDS)}")
    if args.jobs < 1:
        ap.error(f"--jobs must be at least 1, got {args.jobs}")
    import torchvision

    tv = torchvision.models.list_models(module=torchvision.models)
    timm = list(TIMM)
    if args.quick:
        tv, timm = tv[:3], timm[:3]
    jobs = [("torchvision", n, fes) for n in tv] + [("timm", n, fes) for n in timm]
    t0 = time.time()
    rows = run_jobs(_run, jobs, args.jobs)
    print(f"{len(jobs)} models through {', '.join(fes)} in {time.time() - t0:.0f} s ({args.jobs} worker(s))\n")
    print(_table(rows))
    failed = [r for r in rows if "error" in r]
    if failed:
        print("\nNot costed:")
        for r in failed:
            print(f"- {r['frontend']} {r['model']} ({r['stage']}): {r['error']}")
    off = [r for r in rows if "error" not in r and abs(r["flops_rel"]) > 0.01]
    if off:
        print("\nFLOPs more than 1 % from the PyTorch graph's:")
        for r in off:
            print(f"- {r['frontend']} {r['model']}: {r['flops_rel'] * 100:+.1f} %, kinds {r['kinds_diff']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
