"""Neural-architecture search under a latency and memory budget, scored by the cost model.

    python benchmarks/nas.py [--device h100] [--budget-ms 2.0] [--budget-mb 4000] [--population 64]
                             [--generations 4] [--batch 32] [--predictor trappm]

An evolutionary search over ResNet variants (block type, stage depths,
width per group, groups) and MobileNetV2 width multipliers, at a chosen
batch and resolution.  Every generation is built on the meta device, traced
into CostGraphs and scored in one ``predict_many`` call; candidates over
the latency or memory budget are discarded; the rest compete on a capacity
proxy (parameters and FLOPs: this script measures the cost side of NAS, not
accuracy).  It prints the Pareto front of predicted latency vs capacity and
how many candidates per second the predictor scores, with and without
building the graphs.
"""

from __future__ import annotations

import argparse
import random
import time
import warnings


def sample(rng: random.Random) -> dict:
    if rng.random() < 0.3:
        return {"family": "mobilenet", "src": "tv", "name": "mobilenet_v2",
                "kw": {"width_mult": rng.choice([0.35, 0.5, 0.75, 1.0, 1.25, 1.4])}}
    block = rng.choice(["BasicBlock", "Bottleneck"])
    kw = {} if block == "BasicBlock" else dict(zip(("groups", "width_per_group"),
                                                   rng.choice([(1, 64), (1, 32), (32, 4), (1, 96)])))
    return {"family": "resnet", "src": "tv_resnet", "block": block,
            "layers": [rng.randint(1, 4), rng.randint(1, 6), rng.randint(1, 8), rng.randint(1, 3)], "kw": kw}


def mutate(spec: dict, rng: random.Random) -> dict:
    s = {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v) for k, v in spec.items()}
    if s["src"] == "tv":
        s["kw"]["width_mult"] = rng.choice([0.35, 0.5, 0.75, 1.0, 1.25, 1.4])
    else:
        i = rng.randrange(4)
        s["layers"][i] = max(1, s["layers"][i] + rng.choice([-1, 1]))
    return s


def pareto(points):
    """Points (latency, -capacity, item) not dominated by any other."""
    front = []
    for p in sorted(points, key=lambda t: (t[0], t[1])):
        if not front or p[1] < front[-1][1]:
            front.append(p)
    return front


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="h100")
    ap.add_argument("--budget-ms", type=float, default=15.0)
    ap.add_argument("--budget-mb", type=float, default=6000.0)
    ap.add_argument("--population", type=int, default=64)
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--res", type=int, default=224)
    ap.add_argument("--predictor", default=None, help="default: the library's default predictor")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    from costmodel.frontends import zoo_graph
    from costmodel.predictors import get_predictor

    pred = get_predictor(a.predictor)
    rng = random.Random(a.seed)
    population = [sample(rng) for _ in range(a.population)]
    scored, seen = [], set()
    t_build = t_pred = 0.0
    n_scored = 0
    for gen in range(a.generations):
        fresh = []
        for s in population:
            key = repr(sorted(s.items()))
            if key not in seen:
                seen.add(key)
                fresh.append(dict(s, res=a.res))
        t = time.perf_counter()
        graphs = [zoo_graph(s, batch=a.batch, method="trace", cache=False) for s in fresh]
        t_build += time.perf_counter() - t
        t = time.perf_counter()
        ests = pred.predict_many(graphs, a.device)
        t_pred += time.perf_counter() - t
        n_scored += len(graphs)
        ok = 0
        for s, g, e in zip(fresh, graphs, ests):
            within = e.latency_ms <= a.budget_ms and e.memory_mb <= a.budget_mb
            ok += within
            if within:
                scored.append((e.latency_ms, e.memory_mb, float(g.params), g.flops, s))
        best = sorted(scored, key=lambda t: -t[3])[: max(4, a.population // 4)]
        print(f"generation {gen}: {len(fresh)} new candidates, {ok} within budget, "
              f"best capacity so far {best[0][3] / 1e9 if best else 0:.1f} GFLOPs per batch")
        parents = [b[4] for b in best] or [sample(rng) for _ in range(4)]
        population = [mutate(rng.choice(parents), rng) for _ in range(a.population // 2)]
        population += [sample(rng) for _ in range(a.population - len(population))]

    front = pareto([(lat, -flops, (mem, params, s)) for lat, mem, params, flops, s in scored])
    print(f"\nPareto front on {pred.name}, {a.device}, batch {a.batch}, {a.res}px "
          f"(budget {a.budget_ms} ms, {a.budget_mb:.0f} MB): predicted latency vs GFLOPs")
    print(f"  {'latency ms':>10}{'memory MB':>11}{'GFLOPs':>9}{'params M':>10}  architecture")
    for lat, negf, (mem, params, s) in front:
        arch = (f"mobilenet_v2 x{s['kw']['width_mult']}" if s["src"] == "tv"
                else f"resnet {s['block']} {s['layers']} {s['kw'] or ''}")
        print(f"  {lat:>10.2f}{mem:>11.0f}{-negf / 1e9:>9.1f}{params / 1e6:>10.1f}  {arch}")
    print(f"\nscored {n_scored} candidates: {n_scored / t_pred:.0f} per second by predict_many on built graphs, "
          f"{n_scored / (t_pred + t_build):.1f} per second including building and tracing them")


if __name__ == "__main__":
    main()
