"""gnn-llm stage 3: a regression head on the LM's last hidden state vs generating the number as text.

    PYTHONPATH=. python benchmarks/gnn_llm_text.py [--seeds 2] [--epochs 20]

Both variants see the same graph token, prompt, LoRA adapters and training
rows (seeded random 70/30 splits of the H200 vision rows), and both predict
the log-ratio of measured latency to the analytic estimate:

* head: ``GNNLLMPredictor`` as shipped (Huber loss on the standardized
  log-ratio, regression head over the last hidden state and DIPPM's static
  features);
* text: the same network trained with next-token loss to write the
  log-ratio as text (``"-0.53"``, two decimals, digit by digit, then
  end-of-sequence) after the prompt, and decoded greedily; an unparsable
  answer counts as 0 (the analytic estimate) and is reported.

The LM is the built-in 2-layer GPT-2 with random weights, so neither
variant gets language knowledge; the comparison is of the two output forms
under the same budget, not of what a pretrained LM would reach.
"""

from __future__ import annotations

import argparse
import math
import random
import time
import warnings

import numpy as np


def _split(n: int, seed: int) -> tuple[list[int], list[int]]:
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    cut = int(round(0.7 * n))
    return idx[:cut], idx[cut:]


def _answer(r: float) -> str:
    return f"{r:+.2f}"


def _train_text(pred, items, ratios, *, epochs: int, lr: float, batch: int, seed: int) -> float:
    import torch

    net, tok = pred.net, pred.tok
    for p in net.gin.parameters():
        p.requires_grad_(True)
    params = [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("head")]
    opt = torch.optim.AdamW(params, lr=lr)
    gen = random.Random(seed)
    order = list(range(len(items)))
    net.train()
    t0 = time.perf_counter()
    for _ in range(epochs):
        gen.shuffle(order)
        for s in range(0, len(order), batch):
            sel = [items[i] for i in order[s:s + batch]]
            b = pred._graph_batch(sel)
            prompts = pred._text_inputs([e for _, e in sel])
            answers = [tok.encode(_answer(ratios[i])) + [tok.eos_id] for i in order[s:s + batch]]
            out, _ = net.lm_forward(b, prompts, answers)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
    return time.perf_counter() - t0


def _decode(pred, items, *, max_tokens: int = 8) -> tuple[np.ndarray, int]:
    import torch

    net, tok = pred.net, pred.tok
    net.eval()
    b = pred._graph_batch(items)
    prompts = pred._text_inputs([e for _, e in items])
    answers: list[list[int]] = [[] for _ in items]
    done = [False] * len(items)
    with torch.no_grad():
        for _ in range(max_tokens):
            out, _ = net.lm_forward(b, prompts, [a if a else [] for a in answers])
            for i, p in enumerate(prompts):
                if done[i]:
                    continue
                pos = 3 + len(p) + len(answers[i]) - 1
                nxt = int(out.logits[i, pos].argmax())
                if nxt == tok.eos_id:
                    done[i] = True
                else:
                    answers[i].append(nxt)
            if all(done):
                break
    vals, bad = [], 0
    for a in answers:
        text = "".join(tok.raw.id_to_token(t) for t in a)
        try:
            v = float(text)
            if not math.isfinite(v):
                raise ValueError(text)
        except ValueError:
            v, bad = 0.0, bad + 1
        vals.append(v)
    return np.asarray(vals), bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=20)
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    from costmodel.datasets import PerfDataset
    from costmodel.training import acc_within, mape
    from costmodel.predictors import GNNLLMConfig, GNNLLMPredictor

    ds = PerfDataset.load()
    base = GNNLLMPredictor(GNNLLMConfig(gnn_hidden=64, summary_epochs=0, epochs=a.epochs))
    t = time.perf_counter()
    cache = {i: base.features(ds.graph(i), ds[i].device, ds[i].mode) for i in range(len(ds))}
    print(f"H200 vision rows {len(ds)}, featurized in {time.perf_counter() - t:.0f} s; "
          f"{a.epochs} epochs for each variant, {a.seeds} seeds\n")
    y = np.asarray([r.latency_ms for r in ds])
    res = {"head": [], "text": []}
    bad_total = n_total = 0
    secs = {"head": [], "text": []}
    for seed in range(a.seeds):
        tr, te = _split(len(ds), seed)
        cfg = GNNLLMConfig(gnn_hidden=64, summary_epochs=0, epochs=a.epochs, seed=seed)
        t = time.perf_counter()
        head = GNNLLMPredictor(cfg).fit(ds, tr, progress=False, cached=cache)
        secs["head"].append(time.perf_counter() - t)
        p = head._predict_features([cache[i] for i in te])[:, 0]
        res["head"].append((mape(y[te], p), acc_within(y[te], p, 0.10)))

        text = GNNLLMPredictor(GNNLLMConfig(gnn_hidden=64, summary_epochs=0, epochs=0, seed=seed))
        text.fit(ds, tr, progress=False, cached=cache)  # builds the same network, no regression training
        analytic = {i: cache[i][1].latency_ms for i in range(len(ds))}
        ratios = {k: math.log(y[i] / analytic[i]) for k, i in enumerate(tr)}
        secs["text"].append(_train_text(text, [cache[i] for i in tr], ratios, epochs=a.epochs, lr=cfg.lr,
                                        batch=cfg.batch_size, seed=seed))
        r, bad = _decode(text, [cache[i] for i in te])
        p = np.asarray([analytic[i] for i in te]) * np.exp(r)
        bad_total, n_total = bad_total + bad, n_total + len(te)
        res["text"].append((mape(y[te], p), acc_within(y[te], p, 0.10)))
    print(f"{'stage-3 output':<26}{'MAPE %':>9}{'Acc(10%) %':>12}{'train s':>9}")
    for name, label in (("head", "regression head"), ("text", "number generated as text")):
        m = np.mean(res[name], axis=0)
        print(f"{label:<26}{m[0]:>9.1f}{m[1]:>12.1f}{np.mean(secs[name]):>9.0f}")
    print(f"\nunparsable text answers: {bad_total} of {n_total} (scored as the analytic estimate)")


if __name__ == "__main__":
    main()
