"""The :class:`Estimate` record every predictor answers with, and its transformer form :class:`LLMEstimate`.

One type holds what a workload costs, whichever model predicted it: the
graph predictors fill the graph fields (``flops``, ``params``, the interval
fields), the transformer predictor also the sequence, token, energy-per-call,
carbon and cloud-cost fields.  :class:`LLMEstimate` is the same record
serialized and printed the way ``costmodel llm`` always has.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Estimate:
    """What a workload costs.  Units are in the field names.

    ``*_interval`` fields are ``(low, high)`` prediction intervals where the
    predictor can give them, else ``None``.  ``mig_profile`` is the smallest
    MIG slice of ``device`` whose memory holds ``memory_mb`` (``None`` when
    the device has no MIG or nothing fits).

    ``assumptions`` names, one line each, every fallback the estimate rests
    on: a dtype costed at another dtype's peak, operators outside the op
    vocabulary, a model featurized by another capture than asked for, a
    device name that fits several devices, a device without measured rows
    (the learned correction is extrapolated), a predictor answering for
    another.  Empty when nothing was assumed.

    The fields after ``assumptions`` are those of a transformer workload
    (:func:`~costmodel.estimate_llm`): ``seq`` tokens per sequence,
    ``tokens_s``, ``energy_j_per_call`` (``energy_j`` is then per sample),
    carbon and cloud cost; ``extrapolated_device`` says the device has no
    measured rows behind a learned prediction (graph estimates also report it
    in ``details``).
    """

    latency_ms: float
    memory_mb: float
    energy_j: float
    power_w: float
    mig_profile: str | None
    predictor: str
    predictor_version: str
    device: str
    model: str | None = None
    batch: int | None = None
    mode: str = "inference"
    dtype: str = "fp32"
    flops: float | None = None
    params: int | None = None
    throughput_samples_s: float | None = None
    latency_ms_interval: tuple[float, float] | None = None
    memory_mb_interval: tuple[float, float] | None = None
    energy_j_interval: tuple[float, float] | None = None
    fits_device: bool = True
    details: dict[str, Any] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)
    seq: int | None = None
    tokens_s: float | None = None
    energy_j_per_call: float | None = None
    carbon_g: float | None = None
    region: str | None = None
    carbon_intensity_g_per_kwh: float | None = None
    cost_per_1k_samples_usd: float | None = None
    cost_per_1m_tokens_usd: float | None = None
    price_per_gpu_hour_usd: float | None = None
    extrapolated_device: bool = False
    allocated_mb: float | None = None  # the caching allocator's allocated peak (memory from the replay)
    reserved_mb: float | None = None  # its reserved peak; memory_mb adds the CUDA context

    #: the fields :meth:`to_dict` writes, in order
    _FIELDS = ("latency_ms", "memory_mb", "allocated_mb", "reserved_mb", "energy_j", "power_w", "mig_profile", "predictor", "predictor_version",
               "device", "model", "batch", "mode", "dtype", "flops", "params", "throughput_samples_s",
               "latency_ms_interval", "memory_mb_interval", "energy_j_interval", "fits_device", "details",
               "assumptions")

    def __post_init__(self) -> None:
        # an own list (``dataclasses.replace`` would share it), in order, without repeats; a learned
        # predictor's flag for a device without measured rows is named here, whichever predictor set it
        notes = list(self.assumptions or ())
        if self.extrapolated_device or self.details.get("extrapolated_device"):
            notes.append(self.extrapolation_note())
        self.assumptions = list(dict.fromkeys(str(a) for a in notes))

    def extrapolation_note(self) -> str:
        """The assumption of a learned prediction for a device without measured rows."""
        from ..devices import extrapolation_note

        return extrapolation_note(self.device, self.details.get("trained_devices"), self.predictor)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # the allocator's peaks are there when memory came from a replay (else the keys are left out)
        out = {k: d[k] for k in self._FIELDS if not (k in ("allocated_mb", "reserved_mb") and d[k] is None)}
        for k in ("latency_ms_interval", "memory_mb_interval", "energy_j_interval"):
            if out.get(k) is not None:
                out[k] = list(out[k])
        return out

    def _replayed(self) -> str:
        if self.allocated_mb is None or self.reserved_mb is None:
            return ""
        return f"  (allocated {self.allocated_mb:.5g}, reserved {self.reserved_mb:.5g})"

    def mig_summary(self) -> str:
        """The pick, what its GPU instance holds and, where it was predicted, the latency there."""
        if " MIG " in (self.device or ""):
            return f"the device is the slice {self.device.split(' MIG ')[1]}"
        if not self.mig_profile:
            info = self.details.get("mig") or {}
            if info.get("slo_met") is False:
                return (f"none within {info['latency_slo_ms']:g} ms (the fastest that holds the memory, "
                        f"{info['profile']}, takes {info['latency_ms']:.4g} ms)")
            return "none fits / no MIG"
        info = self.details.get("mig") or {}
        parts = [f"{info['memory_mb'] / 1024:.2f} GiB"] if info.get("memory_mb") else []
        if info.get("sm_count"):
            parts.append(f"{info['sm_count']} SMs")
        if info.get("latency_ms") is not None:
            parts.append(f"{info['latency_ms']:.4g} ms there")
        if info.get("slo_met"):
            parts.append(f"the smallest within {info['latency_slo_ms']:g} ms")
        return self.mig_profile + (f" ({', '.join(parts)})" if parts else "")

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def table(self) -> str:
        """A readable multi-line table (what ``costmodel predict`` prints)."""

        def iv(name):
            v = getattr(self, name + "_interval")
            return f"  [{v[0]:.4g}, {v[1]:.4g}]" if v else ""

        rows = [
            ("model", self.model or "?"),
            ("device", self.device),
            ("workload", f"{self.mode}, batch {self.batch}, {self.dtype}"
                         + (f", input {'x'.join(map(str, self.details['input_shape']))}"
                            if self.details.get("input_shape") else "")
                         + (f", autocast {self.details['autocast']}" if self.details.get("autocast") else "")),
            ("predictor", f"{self.predictor} {self.predictor_version}"
                          + (f", artifact {self.details['artifact']}" if self.details.get("artifact") else "")),
            ("latency", f"{self.latency_ms:.4g} ms{iv('latency_ms')}"),
            ("throughput", f"{self.throughput_samples_s:.4g} samples/s" if self.throughput_samples_s else "-"),
            ("memory", f"{self.memory_mb:.5g} MB{iv('memory_mb')}" + self._replayed()
             + ("" if self.fits_device else "  (exceeds device memory)")),
            ("energy", f"{self.energy_j:.4g} J{iv('energy_j')}"),
            ("power", f"{self.power_w:.4g} W"),
            ("MIG profile", self.mig_summary()),
        ]
        if self.flops is not None:
            rows.insert(3, ("GFLOPs", f"{self.flops / 1e9:.4g}"))
        if self.params is not None:
            frozen = self.details.get("frozen_params")
            rows.insert(4, ("params", f"{self.params / 1e6:.4g} M"
                            + (f"  ({frozen / 1e6:.4g} M frozen)" if frozen else "")))
        return _rows(rows + [("assumes", a) for a in self.assumptions])

    def __str__(self) -> str:
        return self.table()


class LLMEstimate(Estimate):
    """What one call of a transformer workload costs: an :class:`Estimate` with the transformer fields.

    ``energy_j`` and ``carbon_g`` are per sample (one sequence); ``latency_ms``
    and ``energy_j_per_call`` are per call of the whole batch.  :meth:`to_dict`
    writes the transformer fields, with ``predictor`` the name and version in
    one string and ``extrapolated_device`` at the top level.
    """

    _FIELDS = ("model", "device", "batch", "seq", "mode", "dtype", "latency_ms", "latency_ms_interval",
               "throughput_samples_s", "tokens_s", "memory_mb", "allocated_mb", "reserved_mb", "power_w", "energy_j",
               "energy_j_interval", "energy_j_per_call", "carbon_g", "region",
               "carbon_intensity_g_per_kwh", "cost_per_1k_samples_usd", "cost_per_1m_tokens_usd",
               "price_per_gpu_hour_usd", "mig_profile", "fits_device", "predictor", "extrapolated_device", "params",
               "flops", "details", "assumptions")

    @property
    def price_unit(self) -> str:
        """What ``price_per_gpu_hour_usd`` is charged per: an hour of the GPU, or of the MIG slice that the
        device is (a slice's share of its GPU's price)."""
        return "slice-hour" if " MIG " in (self.device or "") else "GPU-hour"

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["predictor"] = f"{self.predictor} {self.predictor_version}"
        out["details"].pop("extrapolated_device", None)  # a field of its own here
        return out

    def table(self) -> str:
        cost = "- (no listed cloud instance carries this GPU: pass --price, $ per GPU-hour)"
        if self.cost_per_1k_samples_usd is not None:
            cost = (f"${self.cost_per_1k_samples_usd:.4g} per 1k samples, ${self.cost_per_1m_tokens_usd:.4g} per 1M "
                    f"tokens (at ${self.price_per_gpu_hour_usd:.4g}/{self.price_unit})")
        rows = [
            ("model", f"{self.model} ({self.params / 1e6:.4g} M params, {self.flops / 1e9:.4g} GFLOPs per call)"),
            ("device", self.device + ("  (no measurements of this device: extrapolated)" if self.extrapolated_device
                                      else "")),
            ("workload", f"{self.mode}, batch {self.batch}, seq {self.seq}"
                         + (f" (source), target {tgt}" if (tgt := self.details.get("target_seq")) else "")
                         + f", {self.dtype}"),
            ("predictor", f"{self.predictor} {self.predictor_version}"
                          + (f", artifact {self.details['artifact']}" if self.details.get("artifact") else "")),
            ("latency", f"{self.latency_ms:.4g} ms per call" + (
                "" if self.latency_ms_interval is None else
                f"  [{self.latency_ms_interval[0]:.4g}, {self.latency_ms_interval[1]:.4g}]")),
            ("throughput", f"{self.throughput_samples_s:.4g} samples/s, {self.tokens_s:.4g} tokens/s"),
            ("memory", f"{self.memory_mb:.5g} MB" + self._replayed()
             + ("" if self.fits_device else "  (exceeds device memory)")),
            ("MIG profile", self.mig_summary()),
            ("power", f"{self.power_w:.4g} W"),
            ("energy", f"{self.energy_j:.4g} J per sample ({self.energy_j_per_call:.4g} J per call)"),
            ("carbon", f"{self.carbon_g:.4g} g CO2e per sample ({self.region}, "
                       f"{self.carbon_intensity_g_per_kwh:.4g} g/kWh"
                       + (f", PUE {self.details['pue']:g}" if self.details.get("pue") else "") + ")"),
            ("cloud cost", cost),
        ]
        if self.mode == "training":
            rows.insert(3, ("step", self._step()))
        if self.mode == "decode" and self.details.get("cache_mb") is not None:
            held = (f"{tgt} generated and {self.seq} source tokens" if (tgt := self.details.get("target_seq"))
                    else f"{self.seq} tokens")
            rows.insert(3, ("cache", f"{self.details['cache_mb']:.5g} MB read per step (keys, values and any "
                                     f"layer states of {held} per sequence)"))
        return _rows(rows + [("assumes", a) for a in self.assumptions])

    def _step(self) -> str:
        """A training step's recipe: optimizer, mixed precision, LoRA adapters, activation checkpointing."""
        d = self.details
        parts = [d.get("optimizer", "adamw")]
        if d.get("autocast"):
            parts.append(f"{d['autocast']} autocast over fp32 weights")
        lora = d.get("lora")
        if lora:
            where = ",".join(lora["targets"]) if lora.get("targets") else "peft's default modules"
            parts.append(f"LoRA r{lora['r']} on {where} ({lora['trainable_params'] / 1e6:.4g} M trainable)")
        ck = d.get("checkpointing")
        if ck:
            parts.append(f"activation checkpointing of {ck['blocks']} layers (+{ck['ms']:.4g} ms recomputed)")
        return ", ".join(parts)


def _rows(rows: list[tuple[str, str]]) -> str:
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def with_notes(est: Estimate, notes) -> Estimate:
    """``est`` with ``notes`` put first among its assumptions (``est`` itself when there are none)."""
    notes = [n for n in notes if n]
    if notes:
        est.assumptions = list(dict.fromkeys([*notes, *est.assumptions]))
    return est
