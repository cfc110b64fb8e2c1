"""Prediction speed of the shipped learned predictors (TraPPM, the default, and DIPPM).

    python benchmarks/predict_speed.py [--graphs 256] [--predictors trappm,dippm]

* single-graph predict time for resnet50, featurization included (PyTorch
  module on the meta device -> CostGraph -> features -> GNN), both capture
  methods;
* ``predict_many`` throughput on small CNN graphs (ResNet variants of random
  depth and width, the kind of batch a NAS loop scores), featurization of the
  graphs excluded and included.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import warnings


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graphs", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--predictors", default="trappm,dippm")
    a = ap.parse_args()
    for name in a.predictors.split(","):
        print(f"\n== {name}")
        run(a, name.strip())


def run(a, name):
    warnings.simplefilter("ignore")
    import torch
    import torchvision
    from torchvision.models import resnet

    from costmodel.frontends import from_torch
    from costmodel.predictors import get_predictor

    pred = get_predictor(name)
    with torch.device("meta"):
        r50 = torchvision.models.resnet50().eval()
    print(f"\n{'what':<46}{'median':>12}{'min':>10}")
    for method in ("export", "trace"):
        def one(m=method):
            g = from_torch(r50, input_shape=(3, 224, 224), batch=8, method=m)
            return pred.predict(g, "h200")

        one()
        ts = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            one()
            ts.append(time.perf_counter() - t)
        print(f"{'resnet50 single predict, ' + method + ' (ms)':<46}{statistics.median(ts) * 1e3:>12.1f}{min(ts) * 1e3:>10.1f}")

    rng = random.Random(0)
    t = time.perf_counter()
    graphs = []
    for _ in range(a.graphs):
        layers = [rng.randint(1, 3) for _ in range(4)]
        width = rng.choice([16, 32, 48, 64])
        with torch.device("meta"):
            m = resnet.ResNet(resnet.Bottleneck, layers, width_per_group=width).eval()
        graphs.append(from_torch(m, input_shape=(3, 64, 64), batch=rng.choice([1, 8, 32]), method="trace"))
    t_feat = time.perf_counter() - t
    pred.predict_many(graphs[:8], "h200")
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        pred.predict_many(graphs, "h200")
        ts.append(time.perf_counter() - t)
    med = statistics.median(ts)
    print(f"{'predict_many, %d small CNN graphs (graphs/s)' % a.graphs:<46}{a.graphs / med:>12.1f}{a.graphs / max(ts):>10.1f}")
    print(f"{'  ... featurization from nn.Module included':<46}{a.graphs / (med + t_feat):>12.1f}")
    print(f"{'  mean nodes per graph':<46}{statistics.mean(g.num_nodes for g in graphs):>12.1f}")


if __name__ == "__main__":
    main()
