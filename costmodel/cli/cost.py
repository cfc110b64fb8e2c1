"""``costmodel cost``: predicted time and cloud dollars of a job, per provider."""

from __future__ import annotations

from ._args import (
    MODEL_HELP,
    add_autocast_arg,
    add_carbon_args,
    add_command,
    add_mode_arg,
    add_predictor_args,
    add_shape_args,
    non_negative_float,
    positive_int,
)

COST_EXAMPLES = """examples:
  costmodel cost torchvision:resnet50 --device h100 --steps 200000 --batch 256
  costmodel cost torchvision:vit_b_16 --device a100-80gb --steps 50000 --batch 64 --dtype bf16 --provider aws gcp
  costmodel cost torchvision:resnet50 --device h100 --steps 100000 --batch 256 --autocast bf16
  costmodel cost torchvision:resnet18 --device l4 --mode inference --samples 10000000 --batch 32 --region us-east-1
  costmodel cost torchvision:resnet50 --device h100 --steps 1000 --batch 64 --whole-instance --json
"""

def register_cost(sub) -> None:
    k = add_command(sub, "cost", _cmd_cost,
                    help="predicted time and cloud dollars of a training or inference job, per provider",
                    description="Predict the time of one training step (or inference call) on one GPU, "
                                "multiply by the number of steps, and price it on every instance of the "
                                "price table carrying the device, cheapest first. By default a job on a "
                                "multi-GPU instance pays the per-GPU share of its price; --whole-instance "
                                "charges the whole instance.",
                    epilog=COST_EXAMPLES)
    k.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    k.add_argument("--device", "-d", required=True, help="device name, e.g. h100, a100-40gb, l4 (see 'costmodel devices')")
    add_mode_arg(k, "training")
    work = k.add_mutually_exclusive_group(required=True)
    work.add_argument("--steps", type=positive_int, default=None,
                      help="training steps (or inference calls) of one batch each")
    work.add_argument("--samples", type=positive_int, default=None,
                      help="samples to process: ceil(samples / batch) steps")
    add_shape_args(k)
    add_autocast_arg(k)
    add_predictor_args(k)
    k.add_argument("--host", default=None, metavar="FILE",
                   help="host profile from `costmodel calibrate` (used by --predictor timeline)")
    k.add_argument("--cuda-graphs", action="store_true",
                   help="cost each step replayed from one captured CUDA graph instead of eager dispatch")
    k.add_argument("--provider", nargs="+", default=None, metavar="NAME",
                   help="keep these providers only (aws, gcp, azure)")
    k.add_argument("--instance", default=None, metavar="NAME",
                   help="that priced instance only (it must carry the device)")
    k.add_argument("--price", type=non_negative_float, default=None, metavar="USD_PER_GPU_HOUR",
                   help="price the job at this rate per GPU-hour (per slice-hour for a MIG slice) instead of the "
                        "price table: a GPU the table does not list, or a negotiated rate")
    k.add_argument("--whole-instance", action="store_true",
                   help="charge the whole instance, not the per-GPU share of a multi-GPU instance")
    add_carbon_args(k, region_default=None,
                    region_help="grid region for the carbon of the energy (e.g. us-east-1, france)",
                    intensity_help="grid carbon intensity (g CO2e per kWh) instead of a region's")
    k.add_argument("--json", action="store_true", help="print JSON")


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
                   carbon_intensity_g_per_kwh=a.carbon_intensity, input_shape=shape, autocast=a.autocast,
                   price_per_gpu_hour_usd=a.price, instance=a.instance, pue=a.pue, host=a.host,
                   cuda_graphs=a.cuda_graphs)
    print(rep.to_json() if a.json else rep.table())
    if a.json and rep.memory_warning:
        import sys

        print(f"warning: {rep.memory_warning}", file=sys.stderr)
    return 0

