"""``costmodel predict``, ``graph`` and ``annotate``: estimate one workload, show its graph, store estimates."""

from __future__ import annotations

import json

from .._errors import InvalidInputError
from ._args import (Working, add_command, add_max_batch_args, add_mode_arg, add_onnx_inputs_arg, add_predictor_args,
                    add_slo_arg, add_workload_args, check_max_batch_args, fit_line, max_batch_answers, max_batch_details,
                    onnx_inputs, plot_fits, positive_int, shape_arg)

PREDICT_EXAMPLES = """examples:
  costmodel predict torchvision:resnet50 --batch 8 --device h200
  costmodel predict timm:poolformer_s12 --batch 32 --device a100 --dtype fp16 --json
  costmodel predict model.onnx --batch 1 --input 3,224,224 --device h100
  costmodel predict torchvision:vit_b_16 --batch 32 --device h100 --mode training --optimizer adam
  costmodel predict torchvision:resnet50 --batch 64 --device h200 --mode training --autocast bf16
  costmodel predict torchvision:resnet50 --batch 1 --device h200 --cuda-graphs   # replayed from a CUDA graph
  costmodel predict torchvision:resnet50 --batch 64 --device h200 --mode training --max-batch --mig 1g.18gb
"""
GRAPH_EXAMPLES = """examples:
  costmodel graph torchvision:resnet50
  costmodel graph model.onnx --batch 4 --input 3,224,224 --json
"""
ANNOTATE_EXAMPLES = """examples:
  costmodel annotate model.onnx --device h100 --batch 8
  costmodel annotate model.onnx --device a100-40gb -o annotated.onnx
  costmodel annotate model.onnx --show
"""


def register_predict(sub) -> None:
    p = add_command(sub, "predict", _cmd_predict, help="estimate latency, memory, energy and MIG slice",
                    description="Estimate what one inference call or one training step costs on a device.",
                    epilog=PREDICT_EXAMPLES)
    add_workload_args(p, batch_required=True)
    p.add_argument("--device", "-d", required=True, help="device name, e.g. h200, h100, a100-40gb (see 'costmodel devices')")
    add_predictor_args(p)
    p.add_argument("--host", default=None, metavar="FILE",
                   help="host profile from `costmodel calibrate` (used by --predictor timeline)")
    add_max_batch_args(p, "samples")
    add_slo_arg(p)
    p.add_argument("--cuda-graphs", action="store_true",
                   help="cost the step replayed from one captured CUDA graph (torch.compile mode='reduce-overhead') "
                        "instead of eager dispatch: the timeline's device lane without a host cost per operator")


def register_graph(sub) -> None:
    g = add_command(sub, "graph", _cmd_graph, help="featurize a model and summarize its graph",
                    description="Build the CostGraph of a model and print its summary and per-op-kind table.",
                    epilog=GRAPH_EXAMPLES)
    add_workload_args(g, batch_required=False)


def register_annotate(sub) -> None:
    n = add_command(sub, "annotate", _cmd_annotate,
                    help="write cost estimates into an ONNX file's metadata, or show them",
                    description="Estimate an ONNX model and store the estimate in its metadata_props "
                                "(costmodel.* keys; one set per device), or print the stored estimates.",
                    epilog=ANNOTATE_EXAMPLES)
    n.add_argument("path", metavar="MODEL.onnx")
    n.add_argument("--show", action="store_true", help="print the stored estimates and exit")
    n.add_argument("--device", default="h200", help="device name (default h200)")
    n.add_argument("--batch", type=positive_int, default=None, help="batch (default: the file's static batch)")
    n.add_argument("--input", dest="input_shape", default=None, type=shape_arg,
                   help="per-sample input shape, e.g. 3,224,224")
    add_onnx_inputs_arg(n)
    add_mode_arg(n)
    n.add_argument("--dtype", default=None, choices=("fp32", "fp16", "bf16"),
                   help="cost the model converted to this dtype (default: the dtype its graph records)")
    n.add_argument("--predictor", default=None, help="predictor name or artifact folder")
    n.add_argument("--host", default=None, metavar="FILE",
                   help="host profile from `costmodel calibrate` (used by --predictor timeline)")
    n.add_argument("-o", "--output", default=None,
                   help="write an annotated copy here instead of in place; in another folder, the model's "
                        "external-data weight files are copied next to it (never overwriting a different file)")
    n.add_argument("--json", action="store_true", help="print JSON")


def _check_method(a) -> None:
    """``--method`` picks how a PyTorch model is captured; an ONNX file has no such choice."""
    from ..frontends import looks_like_onnx_path

    if a.method is not None and looks_like_onnx_path(a.model):
        raise InvalidInputError(
            f"--method {a.method} applies to PyTorch models (zoo names, JSON specs); {a.model!r} is read "
            "by the ONNX frontend: drop --method"
        )


def _with_trainable(a) -> None:
    """``--trainable`` folded into the model's spec (a zoo name or a JSON spec; not an ONNX file)."""
    if a.trainable is None:
        return
    from ..frontends import TRAINABLE_CHOICES, looks_like_onnx_path
    from ..frontends.zoo import parse_model_ref

    if looks_like_onnx_path(a.model):
        raise InvalidInputError(f"--trainable applies to PyTorch models (zoo names, JSON specs); {a.model!r} is "
                                "an ONNX file, whose parameters carry no requires_grad: drop --trainable")
    if getattr(a, "mode", "training") != "training":
        raise InvalidInputError(f"--trainable chooses what a training step updates; --mode {a.mode} updates nothing: "
                                "add --mode training or drop --trainable")
    value = a.trainable.strip()
    spec = parse_model_ref(a.model)
    spec["trainable"] = value if value in TRAINABLE_CHOICES else [p.strip() for p in value.split(",") if p.strip()]
    a.model = spec


def _cmd_predict(a) -> int:
    from ..estimate import estimate

    _check_method(a)
    check_max_batch_args(a)
    _with_trainable(a)
    if a.max_batch and onnx_inputs(a):
        raise InvalidInputError("--max-batch tries other batches; --onnx-input fixes each input's full shape, batch "
                                "included: drop one of them")
    model, predictor = a.model, a.predictor
    with Working(f"estimating {a.model}", enabled=None if not a.json else False):
        est = estimate(
            model,
            batch=a.batch,
            input_shape=a.input_shape,
            inputs=onnx_inputs(a),
            device=a.device,
            mode=a.mode,
            dtype=a.dtype,
            optimizer=a.optimizer,
            predictor=predictor,
            host=a.host,
            autocast=a.autocast,
            latency_slo_ms=a.latency_slo_ms,
            cuda_graphs=a.cuda_graphs,
            method=a.method or "export",  # the graph's capture; memory from the module's own trace either way
        )
    fits = []
    if a.max_batch:
        from ..estimate import largest_batch

        with Working("finding the largest batch that fits (an allocation trace per batch tried)",
                     enabled=None if not a.json else False):
            fits = max_batch_answers(a, lambda **limit: largest_batch(
                a.model, device=a.device, mode=a.mode, dtype=a.dtype, optimizer=a.optimizer,
                input_shape=a.input_shape, autocast=a.autocast, latency_slo_ms=a.latency_slo_ms,
                predictor=predictor, host=a.host, cuda_graphs=a.cuda_graphs, method=a.method or "export", **limit))
        est.details["max_batch"] = max_batch_details(fits)
    if a.json:
        print(est.to_json())
    else:
        print(est.table())
        for fit in fits:
            print(fit_line(fit, "one sample"))
    plot_fits(a, fits, f"{a.model if isinstance(a.model, str) else a.model.get('name', 'model')} {a.mode}",
              "samples")
    return 0


def _cmd_graph(a) -> int:
    from ..frontends import to_graph

    _check_method(a)
    _with_trainable(a)
    g = to_graph(a.model, batch=a.batch, input_shape=a.input_shape, inputs=onnx_inputs(a), dtype=a.dtype,
                 mode=a.mode, method=a.method or "export", autocast=a.autocast)
    s = g.summary()
    if a.json:
        print(json.dumps(s))
        return 0
    print(f"model        {s['name']}  ({s['frontend']} frontend, {g.meta.get('capture', s['frontend'])})")
    amp = f", autocast {g.meta['autocast']}" if g.meta.get("autocast") else ""
    print(f"workload     {s['mode']}, batch {s['batch']}, input {s['input_shape']}, {s['dtype']}{amp}")
    print(f"nodes        {s['nodes']}  (kernels {s['kernels']}, depth {s['depth']})")
    print(f"edges        {s['edges']}")
    fwd = ", the forward pass: a training step adds the backward's, about twice as many" if s["mode"] == "training" else ""
    print(f"GFLOPs       {s['flops'] / 1e9:.4g}   (GMACs {s['macs'] / 1e9:.4g}{fwd})")
    print(f"params       {s['params'] / 1e6:.4g} M  (weights {s['weights_mb']:.4g} MB)")
    print()
    total = s["flops"] or 1.0
    print(f"{'op kind':<14}{'count':>7}{'GFLOPs':>12}{'share':>8}")
    for k, v in sorted(s["op_kinds"].items(), key=lambda kv: (-kv[1]["flops"], -kv[1]["count"])):
        print(f"{k:<14}{v['count']:>7}{v['flops'] / 1e9:>12.4g}{100 * v['flops'] / total:>7.1f}%")
    return 0




def _cmd_annotate(a) -> int:
    from ..frontends import parse_shape
    from ..integrations.onnx_hook import annotate, read_annotations

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
    shape = parse_shape(a.input_shape) if a.input_shape else None
    est = annotate(a.path, device=a.device, batch=a.batch, input_shape=shape, mode=a.mode, dtype=a.dtype,
                   predictor=a.predictor, output=a.output, host=a.host, inputs=onnx_inputs(a))
    print(est.to_json() if a.json else f"annotated {a.output or a.path}\n{est.table()}")
    return 0


