"""Cloud cost of a whole job: predicted time x on-demand price, per provider.

>>> from costmodel.economics import training_cost
>>> rep = training_cost("torchvision:resnet50", device="h100", steps=200_000, batch=256)
>>> rep.step_latency_ms, rep.hours, rep.rows[0]["provider"], rep.rows[0]["usd"]
>>> print(rep.table())

The step time is :func:`costmodel.estimate`'s latency of one training step
(one optimizer step on one batch) or one inference call, on ONE GPU of the
device.  Then, for every instance of the price table
(``costmodel/data/gpu_prices.json``, see :mod:`costmodel.economics.pricing`) that
carries the device:

* ``hours = steps x step latency / 3600`` (wall-clock hours of the job on one GPU);
* ``usd = hours x charged rate``, where the charged rate is, by default, the
  PER-GPU SHARE of the instance price (``usd_per_hour / gpus_per_instance``):
  a single-GPU job on an 8-GPU instance pays one eighth, as if the other GPUs
  were rented out to other work (the GPU-hour price most comparisons quote).
  ``whole_instance=True`` charges the whole instance instead, what a job pays
  when it rents a multi-GPU instance alone and leaves the other GPUs idle.

Rows come back cheapest first.  Prices are dated on-demand LIST prices
(``as_of``, ``source``, ``verified`` in every row); pass ``providers`` to keep
some providers only.  Energy is the predicted energy per step times the steps
(the GPU only: no host, no cooling), in kWh; ``pue`` (the data centre's
power usage effectiveness, default 1: the GPU alone) scales it to the
energy the facility draws for it (``facility_energy_kwh``); with ``region``
(or ``carbon_intensity_g_per_kwh``) the grid CO2e of that facility energy
is added (:mod:`costmodel.economics.carbon`).  Multi-GPU scaling is not modelled: the hours are
those of one GPU.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .._errors import InvalidInputError
from .._validate import non_negative_number, positive_int, true_or_false
from .carbon import J_PER_KWH, carbon_g, check_pue, region_info
from .pricing import _find_instance, _provider, instances, mig_slice_share

__all__ = ["CostReport", "inference_cost", "job_cost", "priced_devices", "training_cost"]

_ROW_KEYS = ("provider", "instance", "region", "gpu", "gpus_per_instance", "usd_per_hour", "usd_per_gpu_hour",
             "charged_usd_per_hour", "hours", "usd", "as_of", "verified", "source")


@dataclass(frozen=True)
class CostReport:
    """What a job costs on each priced instance of a device.  Units are in the field names.

    ``rows`` are dicts with ``provider``, ``instance``, ``region``, ``gpu``,
    ``gpus_per_instance``, ``usd_per_hour`` (the instance),
    ``usd_per_gpu_hour``, ``charged_usd_per_hour`` (the per-GPU share, or the
    instance price with ``whole_instance``), ``hours``, ``usd``, ``as_of``,
    ``verified`` and ``source``, cheapest first.  ``carbon_kg`` is ``None``
    unless a region or intensity was given; ``carbon_region`` is ``None`` where
    a given intensity replaced the region's.
    """

    model: str
    device: str
    mode: str
    batch: int
    dtype: str
    steps: int
    samples: int
    predictor: str
    step_latency_ms: float
    hours: float
    energy_kwh: float
    whole_instance: bool
    rows: tuple[dict[str, Any], ...]
    carbon_region: str | None = None
    carbon_intensity_g_per_kwh: float | None = None
    carbon_kg: float | None = None
    estimate: dict[str, Any] = field(default_factory=dict, repr=False)
    autocast: str | None = None
    memory_mb: float | None = None
    capacity_mb: float | None = None
    fits_device: bool = True
    pue: float = 1.0
    facility_energy_kwh: float | None = None

    @property
    def memory_warning(self) -> str | None:
        """What the table and the CLI say when one step does not fit the device (``None`` when it does)."""
        if self.fits_device or self.memory_mb is None:
            return None
        return (f"one {'step' if self.mode == 'training' else 'call'} needs {self.memory_mb:,.0f} MB, more than the "
                f"{self.capacity_mb:,.0f} MB {self.device} holds: the job as given runs out of memory, and these "
                "prices are for a run that cannot happen (try a smaller batch, a lower dtype or a larger device)")

    @property
    def cheapest(self) -> dict[str, Any]:
        """The cheapest row."""
        return self.rows[0]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["rows"] = [dict(r) for r in self.rows]
        d["memory_warning"] = self.memory_warning
        return d

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def table(self) -> str:
        """What ``costmodel cost`` prints: the prediction, then one line per instance, cheapest first."""
        unit = "step" if self.mode == "training" else "call"
        head = [
            ("model", self.model),
            ("device", self.device),
            ("workload", f"{self.mode}, batch {self.batch}, {self.dtype}"
                         + (f", autocast {self.autocast}" if self.autocast else "") + f", {self.steps:,} {unit}s "
                         f"({self.samples:,} samples)"),
            ("predictor", self.predictor),
            (f"{unit} time", f"{self.step_latency_ms:.4g} ms"),
            ("total time", f"{self.hours:.4g} h on one {'MIG slice' if ' MIG ' in self.device else 'GPU'}"),
            ("energy", f"{self.energy_kwh:.4g} kWh (GPU only)"
                       + (f"; {self.facility_energy_kwh:.4g} kWh drawn at PUE {self.pue:g}" if self.pue != 1.0 else "")),
        ]
        if self.memory_mb is not None:
            head.append(("memory", f"{self.memory_mb:,.0f} of {self.capacity_mb:,.0f} MB"
                                   + ("" if self.fits_device else " (DOES NOT FIT)")))
        if self.carbon_kg is not None:
            where = self.carbon_region or "given intensity"
            pue = f", PUE {self.pue:g}" if self.pue != 1.0 else ""
            head.append(("carbon", f"{self.carbon_kg:.4g} kg CO2e ({where}, {self.carbon_intensity_g_per_kwh:g} g/kWh{pue})"))
        w = max(len(k) for k, _ in head)
        lines = [f"{k:<{w}}  {v}" for k, v in head]
        charge = "whole instance" if self.whole_instance else "per-GPU share of the instance"
        sl = mig_slice_share(self.device) if not self.whole_instance else None
        if sl is not None:
            charge = (f"the MIG slice's share of a GPU, {sl[2]:.3g} (the larger of its compute and memory "
                      "fractions), of the per-GPU share of the instance")
        # a slice's rows are priced at its share of a GPU (usd_per_gpu_hour of the slice device)
        rate = "$/slice-h" if mig_slice_share(self.device) is not None else "$/GPU-h"
        prices = "on-demand list prices"
        if self.rows and self.rows[0]["provider"] == "given":  # price_per_gpu_hour_usd replaced the table
            per = "slice-hour" if rate == "$/slice-h" else "GPU-hour"
            charge, prices = f"the given price per {per}", "no price table"
        lines += ["", f"cost, cheapest first (charged: {charge}; {prices}):"]
        hdr = (f"{'provider':<9}{'instance':<40}{'region':<13}{'GPUs':>5}{rate:>10}{'$/h charged':>12}"
               f"{'USD':>12}  {'as of':<8}verified")
        lines += [hdr, "-" * len(hdr)]
        for r in self.rows:
            lines.append(
                f"{r['provider']:<9}{r['instance']:<40}{r['region']:<13}{r['gpus_per_instance']:>5}"
                f"{r['usd_per_gpu_hour']:>10.3f}{r['charged_usd_per_hour']:>12.3f}{_usd(r['usd']):>12}  "
                f"{r['as_of']:<8}{'yes' if r['verified'] else 'no'}"
            )
        if self.memory_warning:
            lines += ["", f"warning: {self.memory_warning}"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _usd(v: float) -> str:
    return f"{v:,.2f}" if v >= 0.01 else f"{v:.2g}"


def priced_devices() -> list[str]:
    """Device-database names that have at least one priced instance."""
    from ..devices import list_devices

    return [d.name for d in list_devices() if instances(d)]


def _providers(providers: Any) -> list[str] | None:
    if providers is None:
        return None
    if isinstance(providers, str):
        providers = [p for p in providers.replace(",", " ").split() if p]
    if not isinstance(providers, (list, tuple, set, frozenset)) or not providers:
        raise InvalidInputError(f"expected providers to be None, a provider name or a list of them, got {providers!r}")
    return list(dict.fromkeys(_provider(p) for p in providers))


def _price_rows(dev, providers: list[str] | None, instance: str | None = None,
                price: float | None = None) -> list[dict[str, Any]]:
    if price is not None:
        if providers is not None or instance is not None:
            raise InvalidInputError("a given price replaces the price table: drop the providers and the instance")
        usd = non_negative_number(price, "price_per_gpu_hour_usd")
        return [{"provider": "given", "instance": "-", "region": "-", "gpu": dev.name, "gpus_per_instance": 1,
                 "usd_per_hour": usd, "usd_per_gpu_hour": usd, "as_of": "-", "verified": False,
                 "source": "price_per_gpu_hour_usd"}]
    rows = [r for r in instances(dev) if providers is None or r["provider"] in providers]
    if instance is not None:
        row = _find_instance(instance)  # an unknown name lists the known ones
        rows = [r for r in rows if r["instance"] == row["instance"]]
        if not rows:
            raise InvalidInputError(f"instance {row['instance']!r} has {row['gpu']} GPUs"
                                    f"{' at ' + row['provider'] if providers else ''}, not {dev.name}")
    if not rows:
        priced = priced_devices()
        if providers is not None and instances(dev):
            have = sorted({r["provider"] for r in instances(dev)})
            raise InvalidInputError(
                f"no priced instance of {dev.name} at {', '.join(providers)}; providers with one: {', '.join(have)}"
            )
        raise InvalidInputError(
            f"no priced instance has device {dev.name!r}; devices with prices: {', '.join(priced)} "
            "(see costmodel/data/gpu_prices.json)"
        )
    return rows


def job_cost(model, *, device, batch: int, mode: str = "training", steps: int | None = None,
             samples: int | None = None, dtype: str | None = None, optimizer: str = "adam", predictor=None,
             providers=None, whole_instance: bool = False, region: str | None = None,
             carbon_intensity_g_per_kwh: float | None = None, input_shape=None,
             autocast: str | None = None, price_per_gpu_hour_usd: float | None = None,
             instance: str | None = None, pue: float = 1.0, host=None, cuda_graphs: bool = False) -> CostReport:
    """Cost of ``steps`` training steps (or inference calls) of ``model`` at ``batch`` on each priced instance.

    Give exactly one of ``steps`` and ``samples`` (``steps = ceil(samples / batch)``).
    Other arguments as in :func:`costmodel.estimate` (``host``: a host profile from ``costmodel calibrate``;
    ``cuda_graphs``: the step replayed from one captured CUDA graph), plus ``providers``
    (``"aws"``, ``["gcp", "azure"]``...), ``whole_instance`` (charge the
    whole instance, not the per-GPU share), and ``region`` /
    ``carbon_intensity_g_per_kwh`` for the CO2e of the energy, ``pue`` the data centre's power usage
    effectiveness (>= 1; the carbon is that of the GPU's energy times it). ``instance``: that priced instance only
    (it must carry ``device``); ``price_per_gpu_hour_usd``: one row at that price (dollars per hour of
    the device, or of the MIG slice when ``device`` is one) instead of the table, for a GPU the table
    does not price or a negotiated rate.

    Raises:
        InvalidInputError: bad counts, an unknown provider or region, or a
            device without a priced instance (the message lists the devices
            that have one).
        UnknownDeviceError: the device is not in the device database.
    """
    from ..estimate import estimate
    from ..devices import get_device
    from ..frontends import check_batch

    check_batch(batch)
    if (steps is None) == (samples is None):
        raise InvalidInputError(f"give exactly one of steps and samples, got steps={steps!r}, samples={samples!r}")
    if steps is not None:
        steps = positive_int(steps, "steps")
        samples = steps * batch
    else:
        samples = positive_int(samples, "samples")
        steps = math.ceil(samples / batch)
    true_or_false(whole_instance, "whole_instance")
    pue = check_pue(pue)
    dev = get_device(device)
    rows = _price_rows(dev, _providers(providers), instance, price_per_gpu_hour_usd)  # fail before the prediction
    carbon_region = None if region is None else region_info(region)["region"]
    if carbon_intensity_g_per_kwh is not None:
        carbon_g(0.0, intensity_g_per_kwh=carbon_intensity_g_per_kwh)  # validates it
        carbon_region = None  # the given intensity replaces the region's: the report names no region for it

    est = estimate(model, batch=batch, input_shape=input_shape, device=dev, mode=mode, dtype=dtype,
                   optimizer=optimizer, predictor=predictor, autocast=autocast, host=host, cuda_graphs=cuda_graphs)
    step_s = est.latency_ms / 1e3
    hours = steps * step_s / 3600.0
    energy_j = steps * est.energy_j
    out = []
    for r in rows:
        charged = r["usd_per_hour"] if whole_instance else r["usd_per_gpu_hour"]
        row = {k: r.get(k) for k in _ROW_KEYS if k in r}
        row.update(charged_usd_per_hour=charged, hours=hours, usd=hours * charged, verified=bool(r.get("verified")))
        out.append({k: row[k] for k in _ROW_KEYS})
    out.sort(key=lambda r: (r["usd"], r["provider"], r["instance"]))

    intensity = carbon_kg = None
    if carbon_region is not None or carbon_intensity_g_per_kwh is not None:
        grams = carbon_g(energy_j * pue, region=carbon_region or "world",
                         intensity_g_per_kwh=carbon_intensity_g_per_kwh)
        carbon_kg = grams / 1e3
        intensity = (float(carbon_intensity_g_per_kwh) if carbon_intensity_g_per_kwh is not None
                     else float(region_info(carbon_region)["g_co2e_per_kwh"]))
    return CostReport(
        model=est.model or str(model),
        device=dev.name,
        mode=est.mode,
        batch=batch,
        dtype=est.dtype,
        steps=steps,
        samples=samples,
        predictor=f"{est.predictor} {est.predictor_version}",
        step_latency_ms=est.latency_ms,
        hours=hours,
        energy_kwh=energy_j / J_PER_KWH,
        whole_instance=whole_instance,
        rows=tuple(out),
        carbon_region=carbon_region,
        carbon_intensity_g_per_kwh=intensity,
        carbon_kg=carbon_kg,
        estimate=est.to_dict(),
        autocast=autocast,
        memory_mb=est.memory_mb,
        capacity_mb=dev.capacity_mb,
        fits_device=bool(est.fits_device),
        pue=pue,
        facility_energy_kwh=energy_j * pue / J_PER_KWH,
    )


def training_cost(model, *, device, steps: int, batch: int, mode: str = "training", dtype: str | None = None,
                  optimizer: str = "adam", predictor=None, providers=None, whole_instance: bool = False,
                  region: str | None = None, carbon_intensity_g_per_kwh: float | None = None,
                  input_shape=None, autocast: str | None = None, price_per_gpu_hour_usd: float | None = None,
                  instance: str | None = None, pue: float = 1.0, host=None, cuda_graphs: bool = False) -> CostReport:
    """Cost of ``steps`` training steps at ``batch`` on each priced instance of ``device``; see :func:`job_cost`."""
    return job_cost(model, device=device, batch=batch, mode=mode, steps=steps, dtype=dtype, optimizer=optimizer,
                    predictor=predictor, providers=providers, whole_instance=whole_instance, region=region,
                    carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh, input_shape=input_shape,
                    autocast=autocast, price_per_gpu_hour_usd=price_per_gpu_hour_usd, instance=instance, pue=pue,
                    host=host, cuda_graphs=cuda_graphs)


def inference_cost(model, *, device, samples: int, batch: int, dtype: str | None = None, predictor=None,
                   providers=None, whole_instance: bool = False, region: str | None = None,
                   carbon_intensity_g_per_kwh: float | None = None, input_shape=None,
                   autocast: str | None = None, price_per_gpu_hour_usd: float | None = None,
                   instance: str | None = None, pue: float = 1.0, host=None, cuda_graphs: bool = False) -> CostReport:
    """Cost of serving ``samples`` samples in calls of ``batch`` (``ceil(samples / batch)`` calls); see :func:`job_cost`."""
    return job_cost(model, device=device, batch=batch, mode="inference", samples=samples, dtype=dtype,
                    predictor=predictor, providers=providers, whole_instance=whole_instance, region=region,
                    carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh, input_shape=input_shape,
                    autocast=autocast, price_per_gpu_hour_usd=price_per_gpu_hour_usd, instance=instance, pue=pue,
                    host=host, cuda_graphs=cuda_graphs)
