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


def slice_prediction_into(est: Estimate, pred, graph, dev, *, mode: str, optimizer: str) -> Estimate:
    """``details["mig"]``'s latency, energy and power on the picked MIG slice, by the predictor that made
    ``est`` asked about the slice as a device of its own (:func:`costmodel.devices.slice_device`): its SMs,
    its share of the bandwidth and L2; the host lane stays the machine's."""
    info = est.details.get("mig")
    if not info or not est.mig_profile:
        return est
    from ..devices import slice_device

    part = pred.predict(graph, slice_device(dev, est.mig_profile), mode=mode, optimizer=optimizer)
    info.update(latency_ms=part.latency_ms, energy_j=part.energy_j, power_w=part.power_w,
                slice_predictor=pred.name)
    return est
