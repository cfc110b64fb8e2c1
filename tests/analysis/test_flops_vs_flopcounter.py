"""Our per-op FLOP formulas against torch.utils.flop_counter on real zoo models."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from costmodel.frontends import zoo_graph
from costmodel.frontends.zoo import build_zoo_model

MODELS = [
    "torchvision:resnet18",
    "torchvision:resnet50",
    "torchvision:mobilenet_v2",
    "torchvision:mobilenet_v3_small",
    "torchvision:efficientnet_b0",
    "torchvision:densenet121",
    "torchvision:vgg11",
    "torchvision:squeezenet1_1",
    "torchvision:shufflenet_v2_x1_0",
    "torchvision:regnet_y_400mf",
    "torchvision:googlenet",
    "torchvision:vit_b_16",
    "torchvision:swin_t",
    "torchvision:convnext_tiny",
    "timm:poolformer_s12",
    "timm:deit_tiny_patch16_224",
    "timm:mixer_b16_224",
]


def reference_flops(ref, batch):
    zm = build_zoo_model(ref)
    x = torch.empty((batch, *zm.input_shape), device="meta")
    fc = FlopCounterMode(display=False)
    with fc, torch.no_grad():
        zm.module(x)
    return fc.get_total_flops()


@pytest.mark.parametrize("ref", MODELS)
def test_total_flops_within_2_percent(ref):
    g = zoo_graph(ref, batch=2)
    ref_flops = reference_flops(ref, 2)
    assert ref_flops > 0
    assert g.tensor_flops == pytest.approx(ref_flops, rel=0.02)
    # everything else (norms, activations, pooling) adds, never removes
    assert g.flops >= g.tensor_flops
