"""Unlabeled graph corpus for self-supervised pretraining (TraPPM phase 1).

Measured rows are scarce (hundreds); architectures are not.  This module
samples thousands of architecture *variants* from the torchvision and timm
constructors -- depths, widths, groups, block types, patch sizes,
resolutions, batch sizes, inference and training graphs -- builds their
CostGraphs on the meta device (nothing is allocated, nothing is run) and keeps
only what self-supervised learning needs: the node matrix and the edges.

Specs use the measured data's format (``src``: ``tv``, ``tv_resnet``,
``tv_vit``, ``timm``; ``kw`` constructor arguments; ``res``), so any corpus
entry can later be measured with ``costmodel collect``.

The corpus is built in shards of :data:`SHARD` graphs, each cached as an
``.npz`` (float16 node features) under the costmodel cache directory and keyed
by the specs, the feature schema and the frontend version: an interrupted
build resumes, and a rebuild with the same seed is free.  Graphs whose
constructor or trace fails are skipped and reported, never fatal.

Unlabeled graphs of every family are used, including families the
leave-one-family-out protocol holds out: no label of a held-out family is
seen, which is what semi-supervised learning is allowed to do (the held-out
*measurements* stay unseen).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .._errors import InvalidInputError
from .._validate import positive_int

SHARD = 100

# -------------------------------------------------------------- samplers
_TV_NAMES = {
    "efficientnet": [f"efficientnet_b{i}" for i in range(8)] + ["efficientnet_v2_s", "efficientnet_v2_m"],
    "regnet": ["regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf",
               "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf"],
    "densenet": ["densenet121", "densenet161", "densenet169", "densenet201"],
    "vgg": ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"],
    "mnasnet": ["mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3"],
    "misc": ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
             "squeezenet1_0", "squeezenet1_1", "googlenet", "alexnet", "resnext50_32x4d", "wide_resnet50_2",
             "convnext_tiny", "convnext_small", "maxvit_t", "swin_t", "swin_v2_t"],
}
_TIMM_NAMES = {
    "poolformer": ["poolformer_s12", "poolformer_s24", "poolformer_s36", "poolformer_m36", "poolformer_m48"],
    "visformer": ["visformer_tiny", "visformer_small"],
    "timm_misc": ["deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224", "mixer_s16_224",
                  "mixer_b16_224", "resmlp_12_224", "resmlp_24_224", "cait_xxs24_224", "coat_lite_tiny",
                  "pit_ti_224", "pit_s_224", "levit_128s", "mobilevit_xs", "mobilevit_s", "ghostnet_100",
                  "rexnet_100", "tinynet_a", "lcnet_100", "hardcorenas_a", "fbnetc_100"],
}


def _resnet(rng: random.Random) -> dict:
    if rng.random() < 0.4:
        block, kw = "BasicBlock", {}
        layers = [rng.randint(1, 4) for _ in range(4)]
    else:
        block = "Bottleneck"
        layers = [rng.randint(1, 4), rng.randint(1, 8), rng.randint(2, 24), rng.randint(1, 4)]
        groups, width = rng.choice([(1, 64), (1, 32), (1, 96), (1, 128), (32, 4), (32, 8), (64, 4), (8, 16)])
        kw = {"groups": groups, "width_per_group": width} if (groups, width) != (1, 64) else {}
    return {"family": "resnet", "src": "tv_resnet", "block": block, "layers": layers, "kw": kw,
            "res": rng.choice([128, 160, 192, 224, 256])}


def _vit(rng: random.Random) -> dict:
    patch = rng.choice([14, 16, 32])
    heads = rng.choice([3, 4, 6, 8, 12, 16])
    hidden = heads * rng.choice([32, 64])
    kw = {"patch_size": patch, "num_layers": rng.randint(2, 16), "num_heads": heads, "hidden_dim": hidden,
          "mlp_dim": hidden * rng.choice([2, 3, 4])}
    res = patch * rng.choice([k for k in range(4, 25) if 96 <= patch * k <= 384])
    return {"family": "vit", "src": "tv_vit", "kw": kw, "res": res}


def _mobilenet(rng: random.Random) -> dict:
    name = rng.choice(["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
    width = rng.choice([0.35, 0.5, 0.75, 1.0, 1.25, 1.4] if name == "mobilenet_v2" else [0.5, 0.75, 1.0, 1.25])
    return {"family": "mobilenet", "src": "tv", "name": name, "kw": {"width_mult": width},
            "res": rng.choice([128, 160, 192, 224, 256])}


def _convnext(rng: random.Random) -> dict:
    base = rng.choice([32, 48, 64, 96, 128])
    depths = [rng.randint(1, 3), rng.randint(1, 3), rng.randint(2, 12), rng.randint(1, 3)]
    return {"family": "convnext", "src": "timm", "name": "convnext_tiny",
            "kw": {"depths": depths, "dims": [base, base * 2, base * 4, base * 8]},
            "res": rng.choice([128, 160, 192, 224, 256])}


def _swin(rng: random.Random) -> dict:
    embed = rng.choice([48, 64, 96, 128])
    h0 = embed // 32 if embed % 32 == 0 else embed // 16
    depths = [2, 2, rng.choice([2, 4, 6, 10, 18]), 2]
    return {"family": "swin", "src": "timm", "name": "swin_tiny_patch4_window7_224",
            "kw": {"embed_dim": embed, "depths": depths, "num_heads": [h0, 2 * h0, 4 * h0, 8 * h0]}, "res": 224}


def _named(family: str, src: str, names: Sequence[str]):
    def sample(rng: random.Random) -> dict:
        res = 224 if src == "timm" or family in ("misc",) else rng.choice([160, 192, 224, 256])
        return {"family": family, "src": src, "name": rng.choice(list(names)), "res": res}

    return sample


SAMPLERS = {
    "resnet": _resnet,
    "vit": _vit,
    "mobilenet": _mobilenet,
    "convnext": _convnext,
    "swin": _swin,
    **{f: _named(f, "tv", n) for f, n in _TV_NAMES.items()},
    **{f: _named(f, "timm", n) for f, n in _TIMM_NAMES.items()},
}
#: families of the corpus (the parametric ones are drawn more often: they have the most variants)
FAMILIES = tuple(SAMPLERS)
_WEIGHTS = {"resnet": 4, "vit": 3, "mobilenet": 2, "convnext": 2, "swin": 2}


@dataclass(frozen=True)
class CorpusItem:
    spec: dict
    batch: int
    mode: str


def sample_corpus_specs(n: int, *, seed: int = 0, families: Iterable[str] | None = None) -> list[CorpusItem]:
    """``n`` seeded (spec, batch, mode) draws over the families."""
    positive_int(n, "n (the number of graphs)")
    fams = list(families) if families is not None else list(FAMILIES)
    bad = [f for f in fams if f not in SAMPLERS]
    if bad or not fams:
        raise InvalidInputError(f"unknown corpus families {bad}; choose from {list(FAMILIES)}")
    rng = random.Random(seed)
    weights = [_WEIGHTS.get(f, 1) for f in fams]
    out = []
    for _ in range(n):
        fam = rng.choices(fams, weights)[0]
        spec = SAMPLERS[fam](rng)
        out.append(CorpusItem(spec, rng.choice([1, 8, 32]), "training" if rng.random() < 0.3 else "inference"))
    return out


# --------------------------------------------------------------- building
def _build_one(item: CorpusItem):
    """(x float16, edge_index int32, num_nodes) of one corpus item, or the error text."""
    import warnings

    from ..features import node_arrays
    from ..frontends import zoo_graph

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = zoo_graph(item.spec, batch=item.batch, mode=item.mode, method="trace", cache=False)
        x, ei = node_arrays(g)
        return x.astype(np.float16), ei.astype(np.int32)
    except Exception as e:  # noqa: BLE001 - a variant a constructor rejects is skipped, not fatal
        return f"{type(e).__name__}: {str(e)[:200]}"


def _worker_init():
    import torch

    torch.set_num_threads(1)


def _shard_key(items: Sequence[CorpusItem]) -> str:
    from ..features import FEATURE_SCHEMA_VERSION, NODE_FEATURE_NAMES
    from ..frontends import FRONTEND_VERSION

    blob = json.dumps([[i.spec, i.batch, i.mode] for i in items], sort_keys=True)
    blob += f"|{FEATURE_SCHEMA_VERSION}|{FRONTEND_VERSION}|{','.join(NODE_FEATURE_NAMES)}"
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


@dataclass
class GraphCorpus:
    """Node matrices and edges of unlabeled graphs (``x[i]``: (N, F) float32, ``edge_index[i]``: (2, E))."""

    x: list[np.ndarray] = field(default_factory=list)
    edge_index: list[np.ndarray] = field(default_factory=list)
    items: list[CorpusItem] = field(default_factory=list)
    #: (spec, error) of variants that could not be built
    failed: list[tuple[dict, str]] = field(default_factory=list)
    build_seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.x)

    def families(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for it in self.items:
            out[it.spec.get("family", "?")] = out.get(it.spec.get("family", "?"), 0) + 1
        return dict(sorted(out.items()))

    def num_nodes(self) -> np.ndarray:
        return np.asarray([a.shape[0] for a in self.x])

    def split(self, holdout: float = 0.1, seed: int = 0) -> tuple[list[int], list[int]]:
        """Seeded (train, held-out) index lists, e.g. to measure link-prediction AUC."""
        idx = list(range(len(self)))
        random.Random(seed).shuffle(idx)
        k = max(1, round(len(idx) * holdout)) if len(idx) > 1 else 0
        return idx[k:], idx[:k]

    @classmethod
    def from_graphs(cls, graphs: Iterable) -> "GraphCorpus":
        """A corpus from CostGraphs the caller already has (e.g. their own model zoo)."""
        from ..features import node_arrays

        c = cls()
        for g in graphs:
            x, ei = node_arrays(g)
            c.x.append(x)
            c.edge_index.append(ei)
            c.items.append(CorpusItem(dict(g.meta.get("spec") or {"name": g.name}), int(g.meta.get("batch") or 1),
                                      str(g.meta.get("mode", "inference"))))
        return c

    @classmethod
    def build(cls, n: int = 3000, *, seed: int = 0, families: Iterable[str] | None = None, cache: bool = True,
              workers: int = 2, progress: bool = True, budget_s: float | None = None) -> "GraphCorpus":
        """Sample ``n`` variants and build their graphs (cached per shard; resumable).

        ``workers`` > 1 builds graphs in worker processes.  ``budget_s`` stops
        after the shard that crosses the time budget (what is built is kept
        and cached; calling again continues).
        """
        from ..frontends import cache_dir

        items = sample_corpus_specs(n, seed=seed, families=families)
        shards = [items[k:k + SHARD] for k in range(0, len(items), SHARD)]
        root = cache_dir() / "corpus"
        corpus = cls()
        t0 = time.perf_counter()
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(items), desc="building corpus", unit="graph")
        pool = None
        try:
            for shard in shards:
                path = root / f"{_shard_key(shard)}.npz"
                loaded = _load_shard(path, shard) if cache and path.exists() else None
                if loaded is None:
                    if budget_s is not None and time.perf_counter() - t0 > budget_s:
                        break
                    if workers > 1 and pool is None:
                        import multiprocessing as mp

                        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
                        pool = ctx.Pool(workers, initializer=_worker_init)
                    results = []
                    it = pool.imap(_build_one, shard) if pool is not None else map(_build_one, shard)
                    for r in it:
                        results.append(r)
                        if bar is not None:
                            bar.update(1)
                    loaded = _pack(shard, results)
                    if cache:
                        _save_shard(path, *loaded)
                elif bar is not None:
                    bar.update(len(shard))
                xs, eis, ok_items, failed = loaded
                corpus.x += xs
                corpus.edge_index += eis
                corpus.items += ok_items
                corpus.failed += failed
        finally:
            if pool is not None:
                pool.close()
                pool.join()
            if bar is not None:
                bar.close()
        corpus.build_seconds = time.perf_counter() - t0
        return corpus


def _pack(shard, results):
    xs, eis, ok, failed = [], [], [], []
    for item, r in zip(shard, results):
        if isinstance(r, str):
            failed.append((item.spec, r))
            continue
        x, ei = r
        xs.append(x.astype(np.float32))
        eis.append(ei.astype(np.int64))
        ok.append(item)
    return xs, eis, ok, failed


def _save_shard(path: Path, xs, eis, ok, failed) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    n_nodes = np.asarray([x.shape[0] for x in xs], np.int64)
    n_edges = np.asarray([e.shape[1] for e in eis], np.int64)
    meta = json.dumps({"items": [[i.spec, i.batch, i.mode] for i in ok], "failed": failed})
    # a temporary file of this writer's own, then an atomic replace: concurrent writers of one shard
    # never write into each other's file
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
            np.savez_compressed(
                fh,
                x=np.concatenate(xs).astype(np.float16) if xs else np.zeros((0, 0), np.float16),
                edge_index=np.concatenate(eis, axis=1).astype(np.int32) if eis else np.zeros((2, 0), np.int32),
                n_nodes=n_nodes, n_edges=n_edges, meta=np.frombuffer(meta.encode(), np.uint8),
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_shard(path: Path, shard):
    try:
        z = np.load(path, allow_pickle=False)
        meta = json.loads(z["meta"].tobytes().decode())
        n_nodes, n_edges = z["n_nodes"], z["n_edges"]
        x_all, e_all = z["x"].astype(np.float32), z["edge_index"].astype(np.int64)
    except Exception:  # noqa: BLE001 - a corrupt shard is rebuilt
        return None
    xs, eis = [], []
    no = eo = 0
    for a, b in zip(n_nodes, n_edges):
        xs.append(x_all[no:no + a])
        eis.append(e_all[:, eo:eo + b])
        no += a
        eo += b
    ok = [CorpusItem(s, b, m) for s, b, m in meta["items"]]
    failed = [tuple(f) for f in meta["failed"]]
    return xs, eis, ok, failed
