"""``costmodel cost``: predicted time and cloud dollars of a job, per provider."""

from __future__ import annotations

import argparse

from ._args import mode_arg, positive_int, shape_arg

COST_EXAMPLES = """examples:
  costmodel cost torchvision:resnet50 --device h100 --steps 200000 --batch 256
  costmodel cost torchvision:vit_b_16 --device a100-80gb --steps 50000 --batch 64 --dtype bf16 --provider aws gcp
  costmodel cost torchvision:resnet18 --device l4 --mode inference --samples 10000000 --batch 32 --region us-east-1
  costmodel cost torchvision:resnet50 --device h100 --steps 1000 --batch 64 --whole-instance --json
"""

def register_cost(sub) -> None:
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
    k.add_argument("--mode", type=mode_arg, default="training", help="training (default) or inference")
    work = k.add_mutually_exclusive_group(required=True)
    work.add_argument("--steps", type=positive_int, default=None,
                      help="training steps (or inference calls) of one batch each")
    work.add_argument("--samples", type=positive_int, default=None,
                      help="samples to process: ceil(samples / batch) steps")
    k.add_argument("--batch", "-b", type=positive_int, default=1, help="batch size (default 1)")
    k.add_argument("--input", "-i", dest="input_shape", metavar="C,H,W", type=shape_arg, help="input shape without batch")
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


def _cmd_cost(a) -> int:
    from ..economics import job_cost
    from ..frontends import parse_shape

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

