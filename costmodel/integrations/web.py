"""A web page for transformer cost estimates (``costmodel web``; extra ``web``).

Pick a model from the registry or upload a Hugging Face ``config.json``, set
batch, sequence, device, dtype, mode, grid region and GPU price; the page
shows throughput, memory against the device and its MIG slices, energy,
carbon and cost, and how throughput and memory grow with the batch size.

The page is a Gradio app; the work is done by :func:`estimate_view`, which
returns plain data and matplotlib figures and is usable without a browser.
"""

from __future__ import annotations

import math
from typing import Any

_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from .._errors import CostModelError

        raise CostModelError("the web page's figures need matplotlib: pip install 'costmodel[web]'") from None
    return plt


def memory_figure(est, device):
    """Predicted memory as a bar against the device's memory and its MIG slice sizes."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 2.2))
    cap = device.capacity_mb / 1024
    mem = est.memory_mb / 1024
    ax.barh([0], [cap], color="#e8e8e8", height=0.5, label=f"{device.name}: {cap:.0f} GiB")
    ax.barh([0], [mem], color="#d62728" if mem > cap else "#1f77b4", height=0.5,
            label=f"predicted: {mem:.1f} GiB")
    iv = getattr(est, "memory_mb_interval", None)
    if iv:  # the 90 % interval; the MIG slice is picked to hold its upper end
        lo, hi = iv[0] / 1024, iv[1] / 1024
        ax.errorbar([mem], [0], xerr=[[max(mem - lo, 0.0)], [max(hi - mem, 0.0)]], fmt="none", ecolor="black",
                    capsize=4, lw=1, label=f"90 % interval: up to {hi:.1f} GiB")
    by_mem: dict[float, list[str]] = {}
    for p in device.mig_profiles:  # profiles of equal memory share one line
        by_mem.setdefault(p.capacity_mb / 1024, []).append(p.name)  # what the instance holds
    for x, names in sorted(by_mem.items()):
        picked = est.mig_profile in names
        ax.axvline(x, color="#2ca02c" if picked else "#999999", lw=1.5 if picked else 0.8, ls="-" if picked else ":")
        ax.text(x, 0.32, " / ".join(names), rotation=90, fontsize=7, va="bottom", ha="right")
    ax.set_xlim(0, max(cap, mem, (iv[1] / 1024) if iv else 0.0) * 1.05)
    ax.set_yticks([])
    ax.set_xlabel("memory (GiB)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def sweep(model, *, seq: int, device, mode: str | None, dtype: str, predictor="llm-xgb") -> list[dict]:
    """Throughput and memory over batch sizes (one batched prediction; by default with the XGBoost, which
    needs no graph per batch size)."""
    from ..features import llm_workload
    from ..predictors import get_llm_predictor

    p = get_llm_predictor(predictor)
    ws = [llm_workload(model, batch=b, seq=seq, mode=mode, dtype=dtype) for b in _BATCHES]
    vals = p.predict_many(ws, device)
    return [{"batch": b, "throughput_samples_s": b / (lat / 1e3), "memory_mb": mem}
            for b, (lat, mem, _) in zip(_BATCHES, vals)]


def sweep_figure(points: list[dict], device, why_none: str | None = None):
    """Throughput and memory over batch sizes; ``why_none``: no sweep, and the reason, drawn in its place."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    if not points:
        ax.axis("off")
        ax.text(0.5, 0.5, why_none or "no batch sweep", ha="center", va="center", wrap=True, fontsize=9)
        return fig
    b = [p["batch"] for p in points]
    ax.plot(b, [p["throughput_samples_s"] for p in points], "o-", color="#1f77b4")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("throughput (samples/s)", color="#1f77b4")
    ax2 = ax.twinx()
    ax2.plot(b, [p["memory_mb"] / 1024 for p in points], "s--", color="#ff7f0e")
    ax2.axhline(device.capacity_mb / 1024, color="#d62728", lw=0.8)
    ax2.set_ylabel("memory (GiB); red: device", color="#ff7f0e")
    fig.tight_layout()
    return fig


def device_choices() -> list[str]:
    """The web page's devices: every NVIDIA GPU of the database, then each MIG slice of those that have them."""
    from ..devices import list_devices, slice_device

    gpus = [d for d in list_devices() if d.vendor == "NVIDIA"]
    return [d.name for d in gpus] + [slice_device(d, p).name for d in gpus for p in d.mig_profiles]


def _whole(what: str, v: Any, lo: int = 1) -> int:
    """A number field's value as an ``int``: a whole number >= ``lo`` (an int, an integral float or its text);
    anything else (an emptied field arrives as ``None``, text over the API) is a named error."""
    from .._errors import InvalidInputError

    try:
        f = None if v is None or isinstance(v, bool) else float(v)
    except (TypeError, ValueError):
        f = None
    if f is None or not f.is_integer() or f < lo:
        raise InvalidInputError(f"{what} must be a whole number >= {lo}, got {v!r}")
    return int(f)


def _price(v: Any) -> float | None:
    """The price field in USD per GPU-hour: ``None`` where it is empty or 0 (the price table's)."""
    from .._errors import InvalidInputError

    try:
        f = None if isinstance(v, bool) else 0.0 if v in (None, "") else float(v)
    except (TypeError, ValueError):
        f = None
    if f is None or not math.isfinite(f) or f < 0:
        raise InvalidInputError(f"GPU price must be a number of USD per hour >= 0 (0: the price table's), got {v!r}")
    return f or None


def _cell(text: Any) -> str:
    """``text`` as one cell of the page's Markdown table: its pipes, line breaks and markup characters escaped,
    so a model or folder name shows as written and cannot add cells or HTML."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def estimate_view(model: str | None, config_file: Any, batch: int, seq: int, device: str, dtype: str, mode: str,
                  region: str, price: float | None, predictor: str = "timeline", target_seq: int | None = None,
                  ssm_kernels: str = "reference") -> tuple[str, Any, Any]:
    """Markdown summary, memory figure and batch-sweep figure for one request: the summary from
    ``predictor`` (``estimate_llm``'s), the sweep over batch sizes from the XGBoost (one graph per batch
    size would take the timeline minutes). ``target_seq`` (0 or ``None``: as many as ``seq``) and
    ``ssm_kernels`` as for ``estimate_llm``; the XGBoost has neither, nor features for attention-free
    models, so those requests get no sweep, and the page says why."""
    from .._errors import InvalidInputError
    from ..devices import get_device
    from ..llm import estimate_llm, resolve_llm

    batch, seq = _whole("batch", batch), _whole("sequence length", seq)
    target_seq = _whole("target tokens", 0 if target_seq in (None, "") else target_seq, lo=0)
    price = _price(price)
    src = getattr(config_file, "name", config_file) if config_file else None
    spec = resolve_llm(src if src else (model or ""))
    mode = None if mode in (None, "", "auto") else mode
    dev = get_device(device)
    extra = {"target_seq": target_seq} if target_seq else {}
    if ssm_kernels and ssm_kernels != "reference":
        extra["ssm_kernels"] = ssm_kernels
    est = estimate_llm(spec, batch=batch, seq=seq, device=dev, mode=mode, dtype=dtype, region=region,
                       price_per_gpu_hour_usd=price, predictor=predictor or "timeline", **extra)
    cost = ("-" if est.cost_per_1k_samples_usd is None else
            f"${est.cost_per_1k_samples_usd:.4g} per 1k samples, ${est.cost_per_1m_tokens_usd:.4g} per 1M tokens "
            f"(${est.price_per_gpu_hour_usd:.4g}/{est.price_unit})")
    rows = [
        ("model", f"{est.model} ({est.params / 1e6:.4g} M parameters)"),
        ("workload", f"{est.mode}, batch {est.batch}, seq {est.seq}"
                     + (f" (source), target {est.details['target_seq']}" if est.details.get("target_seq") else "")
                     + f", {est.dtype} on {est.device}"
                     + (" (extrapolated: no measurements of this device)" if est.extrapolated_device else "")),
        ("throughput", f"{est.throughput_samples_s:,.4g} samples/s, {est.tokens_s:,.4g} tokens/s"),
        ("latency", f"{est.latency_ms:.4g} ms per call"),
        ("memory", f"{est.memory_mb / 1024:.2f} GiB" + ("" if est.fits_device else " (does not fit)")),
        ("MIG slice", est.mig_summary()),
        ("energy", f"{est.energy_j:.4g} J per sample"),
        ("carbon", f"{est.carbon_g:.4g} g CO2e per sample ({est.region})"),
        ("cost", cost),
        ("predictor", f"{est.predictor} (batch sweep below: llm-xgb)"),
    ] + [("assumes", a) for a in est.assumptions]
    why = None
    if extra:
        why = "no batch sweep: its llm-xgb has no target length or fused scans"
        pts: list[dict] = []
    else:
        try:
            pts = sweep(spec, seq=seq, device=dev, mode=est.mode, dtype=dtype)
        except InvalidInputError as e:  # an architecture the XGBoost's features do not describe
            why, pts = f"no batch sweep: {e}", []
    if why:
        rows.append(("batch sweep", why))
    md = "| | |\n|---|---|\n" + "\n".join(f"| **{k}** | {_cell(v)} |" for k, v in rows)
    return md, memory_figure(est, dev), sweep_figure(pts, dev, why)


def build_app():
    """The Gradio ``Blocks`` app (not launched)."""
    try:
        import gradio as gr
    except ImportError:
        from .._errors import InvalidInputError

        raise InvalidInputError("the web page needs gradio and matplotlib: pip install 'costmodel[web]'") from None
    from .._errors import CostModelError
    from ..ir import LLM_DTYPES
    from ..llm import list_llms

    def run(*args):
        try:
            return estimate_view(*args)
        except CostModelError as e:
            raise gr.Error(str(e)) from None

    with gr.Blocks(title="costmodel: what will this transformer cost?") as app:
        gr.Markdown("# costmodel\nThroughput, memory, energy, carbon and cloud cost of a transformer workload, "
                    "predicted from its config (no GPU, no weights).")
        with gr.Row():
            with gr.Column():
                model = gr.Dropdown(list_llms(), value="llama-2-7b", label="model", allow_custom_value=True)
                cfg = gr.File(label="or upload a config.json", file_types=[".json"])
                with gr.Row():
                    batch = gr.Number(8, label="batch", precision=0, minimum=1)
                    seq = gr.Number(512, label="sequence length (decode: KV-cache length)", precision=0, minimum=1)
                with gr.Row():
                    device = gr.Dropdown(device_choices(), value="H200-SXM5-141GB", allow_custom_value=True,
                                         label="device (a GPU, or one of its MIG slices)")
                    dtype = gr.Dropdown(list(LLM_DTYPES), value="fp16", label="dtype")
                    mode = gr.Dropdown(["auto", "forward", "prefill", "decode"], value="auto", label="mode")
                with gr.Row():
                    region = gr.Textbox("world", label="grid region")
                    price = gr.Number(0, label="GPU price, USD/hour (0: the price table)", minimum=0)
                predictor = gr.Dropdown(["timeline", "llm-xgb"], value="timeline",
                                        label="predictor (timeline: more accurate, seconds per new workload; "
                                              "llm-xgb: instant)")
                with gr.Row():
                    target = gr.Number(0, label="target tokens (encoder-decoders; 0: as many as the sequence)",
                                       precision=0, minimum=0)
                    kernels = gr.Dropdown(["reference", "fused"], value="reference",
                                          label="Mamba scans (fused: mamba_ssm's kernels)")
                go = gr.Button("estimate", variant="primary")
            with gr.Column():
                out = gr.Markdown()
                mem_plot = gr.Plot(label="memory vs device and MIG slices")
        sweep_plot = gr.Plot(label="throughput and memory over batch size (llm-xgb)")
        inputs = [model, cfg, batch, seq, device, dtype, mode, region, price, predictor, target, kernels]
        go.click(run, inputs, [out, mem_plot, sweep_plot], api_name="estimate")
        app.load(run, inputs, [out, mem_plot, sweep_plot])
    return app


def launch(host: str = "127.0.0.1", port: int = 7860, **kw):
    """Serve the page (blocking unless ``prevent_thread_lock=True``)."""
    return build_app().launch(server_name=host, server_port=port, **kw)
