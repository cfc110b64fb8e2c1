"""A graph network over the timeline's residuals (section 2d of ``benchmarks/timeline.py``).

The timeline predicts each operator and composes them; what it gets wrong on a whole model is
``r = log(measured / timeline)``. Section 2c asks a small XGBoost model to learn ``r`` from summaries of
the graph; this asks a graph network, which sees every operator, where it sits in the graph and what the
timeline predicted for it:

* nodes: the CostGraph's nodes (views included, flagged, without cost). An operator's features are its
  category, dtype, log FLOPs, bytes, intensity and output size, kernel area, stride and grouping, and the
  times the fitted timeline gives it (``operator_times``): forward device time, the device time of its
  backward kernels (training) and its host cost;
* edges: the graph's data edges, read in both directions with separate weights (producers and consumers);
* three message-passing layers (mean over in- and out-neighbours), then the mean and the max over the nodes,
  joined with the workload-level summaries of section 2c, into a small MLP that outputs ``r``.

The network is plain PyTorch (sparse adjacency, no graph library). It is trained exactly as 2c's
XGBoost is: for a held-out family, on the other families' held-out residuals; for the later
architectures, on all of them. The per-operator times of a row come from the timeline that predicted it
(its fold's fit for a packaged row, the fit on every row for a later architecture).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class NodeGraph:
    """One row's graph as arrays: node features and directed edges (source, target)."""

    x: np.ndarray  # (nodes, F)
    src: np.ndarray
    dst: np.ndarray


def node_graph(pred, graph, row) -> NodeGraph:
    """The node features of ``graph`` under the fitted timeline ``pred`` for the workload of ``row``:
    the operator's category, size and shape figures, and the times ``pred.operator_times`` gives it
    (forward device time, its backward kernels' device time, its host cost; log10 of 1 + µs)."""
    from costmodel.ir import CATEGORIES, category

    n = len(graph.nodes)
    times = np.zeros((n, 3))
    for t in pred.operator_times(graph, row.device, mode=row.mode):
        if t["node"] >= 0:
            fwd = t["phase"] == "forward"
            times[t["node"], 0 if fwd else 1] += t["device_ms"] * 1e3
            if fwd and t["host_ms"] is not None:
                times[t["node"], 2] += t["host_ms"] * 1e3
    lg = np.log10
    x = np.zeros((n, len(CATEGORIES) + 9), np.float32)
    for i, nd in enumerate(graph.nodes):
        x[i, CATEGORIES.index(category(nd.kind))] = 1.0
        nbytes = nd.bytes_read + nd.bytes_written
        out = float(np.prod(nd.out_shapes[0])) if nd.out_shapes and nd.out_shapes[0] else 0.0
        k = nd.attrs.get("kernel") or [1]
        x[i, len(CATEGORIES):] = [float(nd.is_view), float("fp16" in nd.out_dtypes),
                                  lg(1 + nd.flops), lg(1 + nbytes), lg(1 + nd.flops / nbytes) if nbytes else 0.0,
                                  lg(1 + out), lg(float(np.prod(k[-2:]))), float((nd.attrs.get("groups") or 1) > 1),
                                  float(max(nd.attrs.get("stride") or [1]))]
    x = np.concatenate([x, np.log10(1.0 + times).astype(np.float32)], 1)
    e = np.asarray(graph.edges, np.int64).reshape(-1, 2)
    return NodeGraph(x, e[:, 0], e[:, 1])


def _batch(items: list[NodeGraph]):
    """Block-diagonal sparse mean-aggregation matrices (in- and out-neighbours), the stacked node
    features and each node's graph index."""
    import torch

    sizes = [len(g.x) for g in items]
    off = np.concatenate([[0], np.cumsum(sizes)])
    x = torch.as_tensor(np.concatenate([g.x for g in items]))
    src = np.concatenate([g.src + o for g, o in zip(items, off[:-1])])
    dst = np.concatenate([g.dst + o for g, o in zip(items, off[:-1])])
    n = int(off[-1])

    def mean_adj(rows, cols):
        deg = np.bincount(rows, minlength=n).astype(np.float32)
        w = 1.0 / np.maximum(deg[rows], 1.0)
        coo = torch.sparse_coo_tensor(np.stack([rows, cols]), w.astype(np.float32), (n, n),
                                      check_invariants=False)
        return coo.coalesce().to_sparse_csr()

    graph_of = torch.as_tensor(np.repeat(np.arange(len(items)), sizes))
    return x, mean_adj(dst, src), mean_adj(src, dst), graph_of, len(items)


class _Net:
    """Three message-passing layers (one linear map of a node's state and the means over its producers and
    its consumers), mean and max readout, an MLP with the workload summaries; two outputs (the latency and
    the energy residual)."""

    def __init__(self, f_node: int, f_graph: int, hidden: int = 16, seed: int = 0):
        import torch

        torch.manual_seed(seed)
        nn = torch.nn
        self.layers = nn.ModuleList([nn.Linear(3 * f, hidden) for f in (f_node, hidden, hidden)])
        self.head = nn.Sequential(nn.Linear(2 * hidden + f_graph, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, 2))
        self.params = list(self.layers.parameters()) + list(self.head.parameters())

    def __call__(self, batch, u):
        import torch

        x, a_in, a_out, graph_of, n_graphs = batch
        h = x
        for layer in self.layers:
            h = torch.relu(layer(torch.cat([h, a_in @ h, a_out @ h], 1)))
        idx = graph_of.unsqueeze(1).expand(-1, h.shape[1])
        count = torch.bincount(graph_of, minlength=n_graphs).clamp(min=1).unsqueeze(1).float()
        mean = torch.zeros(n_graphs, h.shape[1]).index_add_(0, graph_of, h) / count
        mx = torch.full((n_graphs, h.shape[1]), -1e9).scatter_reduce(0, idx, h, "amax")
        return self.head(torch.cat([mean, mx, u], 1))


def fit_predict(train: list[NodeGraph], u_train: np.ndarray, r_train: np.ndarray, groups: np.ndarray,
                test: list[NodeGraph], u_test: np.ndarray, *, epochs: int = 200, seed: int = 0) -> np.ndarray:
    """Train the network on (graphs, summaries, residuals: (rows, 2), NaN where a target is missing) and
    return its residuals for ``test`` (rows, 2).

    Early stopping inside the training rows: a fifth of their ``groups`` (families), drawn with ``seed``,
    is held back; the network is trained on the rest and the weights of the epoch with the lowest loss on
    the held-back groups are kept (none of the test rows is looked at)."""
    import torch

    rng = np.random.default_rng(seed)
    names = sorted(set(groups))
    held = set(rng.choice(names, size=max(1, len(names) // 5), replace=False).tolist())
    val = np.asarray([g in held for g in groups])
    fit_rows, val_rows = np.flatnonzero(~val), np.flatnonzero(val)
    xs = np.concatenate([train[i].x for i in fit_rows])
    mu, sd = xs.mean(0), xs.std(0) + 1e-3
    um, us = u_train[fit_rows].mean(0), u_train[fit_rows].std(0) + 1e-3
    # a row outside the training rows' range is clipped into it, as the timeline's own networks do
    lo, hi = (xs.min(0) - mu) / sd, (xs.max(0) - mu) / sd
    ulo, uhi = (u_train[fit_rows].min(0) - um) / us, (u_train[fit_rows].max(0) - um) / us

    def prepare(items, u):
        b = _batch([NodeGraph(np.clip((g.x - mu) / sd, lo, hi).astype(np.float32), g.src, g.dst) for g in items])
        return b, torch.as_tensor(np.clip((u - um) / us, ulo, uhi).astype(np.float32))

    def target(idx):
        r = r_train[idx]
        return torch.as_tensor(np.isfinite(r)), torch.as_tensor(np.nan_to_num(r).astype(np.float32))

    (tr, u_tr), (va, u_va) = prepare([train[i] for i in fit_rows], u_train[fit_rows]), \
        prepare([train[i] for i in val_rows], u_train[val_rows])
    (k_tr, y_tr), (k_va, y_va) = target(fit_rows), target(val_rows)
    net = _Net(xs.shape[1], u_train.shape[1], seed=seed)
    opt = torch.optim.Adam(net.params, lr=3e-3, weight_decay=1e-3)

    def loss(b, u, known, y):
        return torch.sum(torch.where(known, net(b, u) - y, 0.0) ** 2) / known.sum().clamp(min=1)

    best, best_state = float("inf"), None
    for _ in range(epochs):
        opt.zero_grad()
        loss(tr, u_tr, k_tr, y_tr).backward()
        opt.step()
        with torch.no_grad():
            v = float(loss(va, u_va, k_va, y_va))
        if v < best:
            best, best_state = v, [p.detach().clone() for p in net.params]
    with torch.no_grad():
        for p, q in zip(net.params, best_state or []):  # no finite validation loss: the last epoch's weights
            p.copy_(q)
        te, u_te = prepare(test, u_test)
        return net(te, u_te).numpy().astype(np.float64)


_TARGETS = ("latency_ms", "energy_j")


def _targets(rows, ests):
    """Measured (NaN where missing) and predicted latency and energy, (rows, 2) each."""
    y = np.asarray([[getattr(r, t) for t in _TARGETS] for r in rows], np.float64)
    p = np.asarray([[getattr(e, t) for t in _TARGETS] for e in ests], np.float64)
    return np.where(np.isfinite(y) & (y > 0), y, np.nan), p


def residual_table(rows_held, ests_held, nodes_held, u_held, rows_new, ests_new, nodes_new, u_new,
                   epochs: int = 200):
    """Leave-one-family-out and later-architecture residual corrections; returns
    ``{(target, split): (measured, timeline, corrected, half)}`` for latency and energy."""
    fam = np.asarray([r.family for r in rows_held])
    y, p = _targets(rows_held, ests_held)
    r = np.log(y / p)
    corr = np.zeros_like(r)
    for f in sorted(set(fam)):
        tr, te = np.flatnonzero(fam != f), np.flatnonzero(fam == f)
        corr[te] = fit_predict([nodes_held[i] for i in tr], u_held[tr], r[tr], fam[tr],
                               [nodes_held[i] for i in te], u_held[te], epochs=epochs)
    yn, pn = _targets(rows_new, ests_new)
    cn = fit_predict(nodes_held, u_held, r, fam, nodes_new, u_new, epochs=epochs)
    out = {}
    for k, target in enumerate(_TARGETS):
        for split, (yy, pp, cc) in (("held-out families", (y, p, corr)), ("later architectures", (yn, pn, cn))):
            ok = np.isfinite(yy[:, k])
            out[(target, split)] = (yy[ok, k], pp[ok, k], pp[ok, k] * np.exp(cc[ok, k]),
                                    pp[ok, k] * np.exp(cc[ok, k] / 2))
    return out


def print_table(table, metrics) -> None:
    print(f"{'':<40}{'rows':>6}{'timeline':>10}{'+ GNN':>8}{'+ half':>8}   (MAPE %)")
    for (target, split), (y, p, c, h) in table.items():
        name = f"{target.split('_')[0]}, {split}"
        print(f"{name:<40}{len(y):>6}{metrics(y, p)['mape']:>10.1f}{metrics(y, c)['mape']:>8.1f}"
              f"{metrics(y, h)['mape']:>8.1f}")


__all__ = ["NodeGraph", "node_graph", "fit_predict", "residual_table", "print_table"]
