"""The one finishing step of every predictor's estimate.

A predictor decides latency, memory, energy and power; what follows from
them is derived here, the same way for all of them: the MIG slice (with its
slow-down when the graph is at hand), the throughput, whether the workload
fits the device, the version string, and for a learned predictor the devices
its labels come from and whether this device is one of them.
"""

from __future__ import annotations

from .. import __version__
from ._types import Estimate
from ..devices import instance_sm_count
from .mig import mig_latency_penalty, recommend_mig


def finish_estimate(est: Estimate, dev, *, version: str, meta: dict | None = None, margin_mb: float = 0.0,
                    graph=None) -> Estimate:
    """Fill the derived fields of ``est`` (in place; returned) for the device ``dev``.

    * ``mig_profile``: the smallest MIG slice holding ``memory_mb + margin_mb``
      (a learned predictor's margin reaches its interval's upper memory
      bound); with ``graph``, ``details["mig"]`` also gets the slice's
      compute share and predicted slow-down;
    * ``throughput_samples_s``: ``batch`` per latency;
    * ``fits_device``: ``memory_mb`` within the device's memory;
    * ``predictor_version``: ``version`` and the library that trained the
      model (``meta["library_version"]``, else this one);
    * with ``meta`` (a learned predictor): ``details["trained_devices"]``,
      ``extrapolated_device`` (also in ``details``) when none of them is
      ``dev``, and then the assumption that says so.
    """
    meta_ = meta or {}
    mig = recommend_mig(dev, est.memory_mb, margin_mb=margin_mb)
    est.mig_profile = mig.name if mig else None
    if graph is not None:
        est.details["mig"] = mig_details(graph, dev, mig, est.mode)
    est.predictor_version = f"{version} (costmodel {meta_.get('library_version', __version__)})"
    lat = est.latency_ms
    est.throughput_samples_s = (est.batch / (lat / 1e3)) if est.batch and lat > 0 else None
    est.fits_device = est.memory_mb <= dev.memory_mb
    if meta is not None:
        from ..devices import is_measured_device

        trained = meta.get("devices")
        flag = bool(trained) and not is_measured_device(dev, trained)
        est.details["trained_devices"] = trained
        est.details["extrapolated_device"] = flag
        est.extrapolated_device = flag
        if flag:
            from ..devices import cuda_core_conv_note

            conv = cuda_core_conv_note(dev, trained, graph)
            est.assumptions = list(dict.fromkeys([*est.assumptions, est.extrapolation_note(), *([conv] if conv else [])]))
    return est


def mig_details(graph, dev, profile, mode) -> dict | None:
    """Compute share and predicted slow-down of the recommended MIG slice."""
    if profile is None:
        return None
    return {
        "profile": profile.name,
        "memory_mb": profile.capacity_mb,
        "nominal_memory_mb": profile.memory_mb,
        "sm_count": instance_sm_count(dev, profile),
        "compute_fraction": profile.compute_fraction,
        "latency_penalty": mig_latency_penalty(graph, dev, profile, mode=mode),
    }


def slice_prediction_into(est: Estimate, pred, graph, dev, *, mode: str, optimizer: str,
                          latency_slo_ms: float | None = None) -> Estimate:
    """``details["mig"]``'s latency, energy and power on the picked MIG slice, by the predictor that made
    ``est`` asked about the slice as a device of its own (:func:`costmodel.devices.slice_device`): its SMs,
    its share of the bandwidth and L2; the host lane stays the machine's. With ``latency_slo_ms``, the pick
    is the smallest slice that holds the memory and answers within it (:func:`slo_pick_into`)."""
    if latency_slo_ms is not None:
        return slo_pick_into(est, dev, lambda d: pred.predict(graph, d, mode=mode, optimizer=optimizer),
                             latency_slo_ms, predictor=pred.name)
    info = est.details.get("mig")
    if not info or not est.mig_profile:
        return est
    from ..devices import slice_device

    part = pred.predict(graph, slice_device(dev, est.mig_profile), mode=mode, optimizer=optimizer)
    info.update(latency_ms=part.latency_ms, energy_j=part.energy_j, power_w=part.power_w,
                slice_predictor=pred.name)
    return est


def check_slo(latency_slo_ms) -> float | None:
    """``latency_slo_ms`` checked: ``None`` or a positive number of milliseconds."""
    if latency_slo_ms is None:
        return None
    if isinstance(latency_slo_ms, bool) or not isinstance(latency_slo_ms, (int, float)) or not latency_slo_ms > 0:
        from .._errors import InvalidInputError

        raise InvalidInputError(f"latency_slo_ms must be a positive number of milliseconds, got {latency_slo_ms!r}")
    return float(latency_slo_ms)


def slo_pick_into(est: Estimate, dev, predict_on, latency_slo_ms: float, *, predictor: str) -> Estimate:
    """The MIG pick under a latency target: among the slices that hold the memory (the memory pick and every
    larger one, smallest first), the first whose latency (``predict_on(slice device)``) is within
    ``latency_slo_ms``. ``details["mig"]`` gets that slice's figures and ``latency_slo_ms`` with ``slo_met``;
    where none meets it, ``mig_profile`` is ``None``, ``details["mig"]`` names the fastest slice and its
    latency, and the assumptions say so."""
    from ..devices import slice_device

    if not est.mig_profile:
        why = (f"{dev.name} has no MIG profiles" if not dev.mig_profiles
               else "no MIG slice of the device holds the memory")
        est.assumptions = [*est.assumptions, f"latency target {latency_slo_ms:g} ms: {why}, so it picks no slice"]
        return est
    order = sorted(dev.mig_profiles, key=lambda q: (q.capacity_mb, q.compute_fraction))
    start = next(i for i, q in enumerate(order) if q.name == est.mig_profile)
    tried = []
    for prof in order[start:]:
        part = predict_on(slice_device(dev, prof))
        tried.append((prof, part))
        if part.latency_ms <= latency_slo_ms:
            break
    prof, part = tried[-1] if tried[-1][1].latency_ms <= latency_slo_ms else min(tried, key=lambda t: t[1].latency_ms)
    met = part.latency_ms <= latency_slo_ms
    info = {"profile": prof.name, "memory_mb": prof.capacity_mb, "nominal_memory_mb": prof.memory_mb,
            "sm_count": instance_sm_count(dev, prof), "compute_fraction": prof.compute_fraction,
            "latency_ms": part.latency_ms, "energy_j": part.energy_j, "power_w": part.power_w,
            "slice_predictor": predictor, "latency_slo_ms": latency_slo_ms, "slo_met": met,
            "memory_pick": est.mig_profile, "tried": {q.name: t.latency_ms for q, t in tried}}
    if getattr(part, "tokens_s", None) is not None:
        info["tokens_s"] = part.tokens_s
    est.details["mig"] = info
    if met:
        est.mig_profile = prof.name
    else:
        est.mig_profile = None
        est.assumptions = [*est.assumptions, f"MIG slice: none that holds the memory answers within "
                                              f"{latency_slo_ms:g} ms; the fastest, {prof.name}, takes "
                                              f"{part.latency_ms:.4g} ms"]
    return est
