"""The networks of the learned graph predictors, as ``torch.nn.Module`` classes.

Imported only when a network is built (it loads torch and torch_geometric).
Attribute names are those the shipped ``*.safetensors`` files store, so the
state-dict keys of a saved artifact map onto these classes unchanged.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

with warnings.catch_warnings():  # torch_geometric's import-time deprecation noise
    warnings.simplefilter("ignore")
    import torch_geometric.nn as gnn
    from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool


class DIPPMNet(nn.Module):
    r"""DIPPM's regressor (thesis ch. 4), and its GNN baselines by ``conv``.

    For a graph with node features :math:`x_v` and static features :math:`s`::

        h_v^0     = ReLU(W_e x_v)
        h_v^{l+1} = h_v^l + Dropout(ReLU(LayerNorm(Conv_l(h^l, E))_v))      l = 0..L-1
        r         = [mean_v h_v^L ; max_v h_v^L]      (pool "meanmax"; "sum": sum_v h_v^L)
        y         = MLP_head([r ; MLP_s(s)])

    ``Conv`` is GraphSAGE, GCN, GAT (4 heads) or GIN; with ``conv="none"``
    the graph part is dropped and ``y = MLP_head(MLP_s(s))``.  ``y`` holds one
    standardized log target per output.
    """

    def __init__(self, cfg, node_dim: int, static_dim: int, n_out: int) -> None:
        super().__init__()
        h = cfg.hidden
        self.conv, self.hidden, self.layers, self.pool_kind, self.n_out = cfg.conv, h, cfg.layers, cfg.pool, n_out
        self.use_graph = cfg.conv != "none"
        if self.use_graph:
            self.embed = nn.Sequential(nn.Linear(node_dim, h), nn.ReLU())
            self.convs = nn.ModuleList(self._conv(cfg.conv, h) for _ in range(cfg.layers))
            self.norms = nn.ModuleList(nn.LayerNorm(h) for _ in range(cfg.layers))
        self.static = nn.Sequential(nn.Linear(static_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        head_in = h + ((2 if cfg.pool == "meanmax" else 1) * h if self.use_graph else 0)
        self.head = nn.Sequential(
            nn.Linear(head_in, h), nn.ReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(h, h // 2), nn.ReLU(), nn.Linear(h // 2, n_out),
        )
        self.dropout = cfg.dropout

    @staticmethod
    def _conv(kind: str, h: int) -> nn.Module:
        if kind == "sage":
            return gnn.SAGEConv(h, h)
        if kind == "gcn":
            return gnn.GCNConv(h, h)
        if kind == "gat":
            return gnn.GATConv(h, h // 4, heads=4)
        return gnn.GINConv(nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h)))

    def forward(self, x, edge_index, batch, static):
        s = self.static(static)
        if not self.use_graph:
            return self.head(s)
        hdn = self.embed(x)
        for conv, norm in zip(self.convs, self.norms):
            hdn = hdn + torch.relu(norm(conv(hdn, edge_index)))  # residual message passing
            hdn = nn.functional.dropout(hdn, self.dropout, self.training)
        if self.pool_kind == "sum":
            pooled = global_add_pool(hdn, batch)
        else:
            pooled = torch.cat([global_mean_pool(hdn, batch), global_max_pool(hdn, batch)], dim=1)
        return self.head(torch.cat([pooled, s], dim=1))

    def __repr__(self) -> str:
        return (f"DIPPMNet(conv={self.conv!r}, hidden={self.hidden}, layers={self.layers}, pool={self.pool_kind!r}, "
                f"outputs={self.n_out})")


class GAEEncoder(nn.Module):
    r"""TraPPM's graph-autoencoder encoder (thesis ch. 5): stacked GraphSAGE layers::

        z^0 = x,   z^{l+1} = Dropout(ReLU(BatchNorm(SAGE_l(z^l, E))))   (no norm/activation after the last)

    Pretraining scores an edge ``(u, v)`` by ``sigmoid(z_u . z_v)`` (link
    prediction); the predictor reads the frozen mean of ``z`` over the nodes.
    """

    def __init__(self, node_dim: int, hidden: int, out: int, layers: int, dropout: float) -> None:
        super().__init__()
        dims = [node_dim] + [hidden] * (layers - 1) + [out]
        self.convs = nn.ModuleList(gnn.SAGEConv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) for b in dims[1:-1])
        self.dims, self.dropout = dims, dropout

    def forward(self, x, edge_index):
        for i, conv in enumerate(self.convs):
            x = conv(x, edge_index)
            if i < len(self.convs) - 1:
                x = torch.relu(self.norms[i](x))
                x = nn.functional.dropout(x, self.dropout, self.training)
        return x

    def __repr__(self) -> str:
        return f"GAEEncoder(dims={self.dims}, dropout={self.dropout})"


class GINEncoder(nn.Module):
    r"""GraphMAE's encoder: GIN layers (Xu et al., 2019)::

        h_v^{l+1} = MLP_l((1 + eps) h_v^l + sum_{u in N(v)} h_u^l)     MLP_l = Linear-BatchNorm-ReLU-Linear
        between layers: ReLU(BatchNorm(.));   pool(graph) = mean_v h_v^L
    """

    def __init__(self, node_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        dims = [node_dim] + [hidden] * layers
        self.convs = nn.ModuleList(
            gnn.GINConv(nn.Sequential(nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(), nn.Linear(b, b)))
            for a, b in zip(dims[:-1], dims[1:])
        )
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(layers - 1))
        self.dims = dims

    def forward(self, x, edge_index):
        for i, conv in enumerate(self.convs):
            x = conv(x, edge_index)
            if i < len(self.convs) - 1:
                x = torch.relu(self.norms[i](x))
        return x

    def pool(self, x, edge_index, batch):
        return global_mean_pool(self(x, edge_index), batch)

    def __repr__(self) -> str:
        return f"GINEncoder(dims={self.dims})"


class GraphMAENet(nn.Module):
    r"""GraphMAE (Hou et al., 2022): masked node-feature reconstruction around a :class:`GINEncoder`.

    A share ``mask_rate`` of the nodes ``M`` is masked: most get a learned
    mask token, ``replace_rate`` of them another node's features.  Then::

        h      = W_{e->d} GIN(x~)            (the re-mask projection)
        h_v    = 0 for v in M                (the decoder must rebuild masked nodes from neighbours)
        x^     = GINConv_dec(h)
        loss   = mean_{v in M} (1 - cos(x^_v, x_v)) ** gamma     (scaled cosine error)
    """

    def __init__(self, node_dim: int, hidden: int, layers: int, *, mask_rate: float, replace_rate: float,
                 gamma: float) -> None:
        super().__init__()
        self.encoder = GINEncoder(node_dim, hidden, layers)
        self.mask_token = nn.Parameter(torch.zeros(1, node_dim))
        self.enc_to_dec = nn.Linear(hidden, hidden, bias=False)
        self.decoder = gnn.GINConv(nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, node_dim)))
        self.mask_rate, self.replace_rate, self.gamma = mask_rate, replace_rate, gamma

    def loss(self, x, edge_index, generator=None):
        from ._graphmae import sce_loss

        n = x.shape[0]
        k = max(1, int(round(self.mask_rate * n)))
        perm = torch.randperm(n, generator=generator)
        mask = perm[:k]
        xin = x.clone()
        n_noise = int(round(self.replace_rate * k))
        token = mask[n_noise:]
        if n_noise:  # substitution: masked, but showing some other node's features
            src = torch.randint(0, n, (n_noise,), generator=generator)
            xin[mask[:n_noise]] = x[src]
        xin[token] = self.mask_token.to(x.dtype).expand(len(token), -1)
        h = self.enc_to_dec(self.encoder(xin, edge_index))
        h = h.clone()
        h[mask] = 0.0  # re-mask: the decoder must rebuild masked nodes from their neighbours
        rec = self.decoder(h, edge_index)
        return sce_loss(rec[mask], x[mask], self.gamma)

    def __repr__(self) -> str:
        return (f"GraphMAENet(encoder={self.encoder!r}, mask_rate={self.mask_rate}, "
                f"replace_rate={self.replace_rate}, gamma={self.gamma})")


class GNNLLMNet(nn.Module):
    r"""The GNN+LLM regressor: a pretrained GIN's graph embedding read by a language model (or not).

    With ``backbone="lm"``, the pooled GIN embedding becomes one token of the
    LM's input, between ``<graph>`` and ``</graph>``, followed by the prompt::

        g = MLP_proj(mean_v GIN(x)_v)                          (projected to the LM's width H)
        t = LM([<graph>, g, </graph>, prompt])_last            (hidden state of the last prompt token)
        y = MLP_head([t ; s])                                  (s: static features, if used)

    Otherwise (``backbone="none"`` or ``"sentence"``) the prompt is a vector
    ``text`` (its numbers, or a sentence embedding) and
    ``y = MLP_head([LayerNorm(mean_v GIN(x)_v) ; text ; s])``.  With
    ``residual`` the head's last layer starts at zero (the analytic estimate).
    """

    def __init__(self, cfg, gin, n_out: int, *, lm=None, tok=None, text_dim: int = 0, static_dim: int = 0) -> None:
        super().__init__()
        self.gin = gin
        g = cfg.gnn_hidden if gin is None else gin.convs[-1].nn[-1].out_features
        hh = cfg.head_hidden
        s = static_dim if cfg.use_static else 0
        self.backbone, self.use_static, self.tok, self.n_out = cfg.backbone, cfg.use_static, tok, n_out
        if cfg.backbone == "lm":
            self.lm = lm
            H = lm.get_input_embeddings().embedding_dim
            self.proj = nn.Sequential(nn.Linear(g, H), nn.GELU(), nn.Linear(H, H))
            self.head = nn.Sequential(nn.Linear(H + s, hh), nn.ReLU(), nn.Linear(hh, n_out))
        else:
            self.gnorm = nn.LayerNorm(g)  # the GIN's sum aggregation grows with graph size
            self.head = nn.Sequential(nn.Linear(g + text_dim + s, hh), nn.ReLU(), nn.Linear(hh, hh), nn.ReLU(),
                                      nn.Linear(hh, n_out))
        if cfg.residual:  # training starts from the analytic estimate (times the mean correction)
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)

    def graph_tokens(self, b):
        return self.proj(self.gin.pool(b.x, b.edge_index, b.batch))

    def lm_forward(self, b, prompts: list[list[int]], answers: list[list[int]] | None = None):
        """LM over ``<graph> g </graph> prompt [answer]``; returns (output, index of last prompt token)."""
        tok = self.tok
        gtok = self.graph_tokens(b)
        B = gtok.shape[0]
        seqs = [[tok.open_id, tok.pad_id, tok.close_id] + p + (answers[i] if answers else [])
                for i, p in enumerate(prompts)]
        T = max(map(len, seqs))
        dev = gtok.device
        ids = torch.full((B, T), tok.pad_id, dtype=torch.long)
        att = torch.zeros((B, T), dtype=torch.long)
        labels = torch.full((B, T), -100, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.as_tensor(s)
            att[i, :len(s)] = 1
            if answers:
                a0 = 3 + len(prompts[i])
                labels[i, a0:len(s)] = ids[i, a0:len(s)]
        ids, att, labels = ids.to(dev), att.to(dev), labels.to(dev)
        emb = self.lm.get_input_embeddings()(ids)
        emb = torch.cat([emb[:, :1], gtok.unsqueeze(1).to(emb.dtype), emb[:, 2:]], dim=1)
        out = self.lm(inputs_embeds=emb, attention_mask=att, labels=labels if answers else None,
                      output_hidden_states=answers is None)
        last = torch.as_tensor([3 + len(p) - 1 for p in prompts], device=dev)
        return out, last

    def forward(self, b, prompts=None, text=None, static=None):
        if self.backbone == "lm":
            out, last = self.lm_forward(b, prompts)
            parts = [out.hidden_states[-1][torch.arange(len(prompts), device=last.device), last].float()]
        else:
            parts = [self.gnorm(self.gin.pool(b.x, b.edge_index, b.batch)), text]
        if self.use_static:
            parts.append(static)
        return self.head(torch.cat(parts, dim=1))

    def __repr__(self) -> str:
        return (f"GNNLLMNet(backbone={self.backbone!r}, gin={self.gin!r}, static={self.use_static}, "
                f"outputs={self.n_out})")
