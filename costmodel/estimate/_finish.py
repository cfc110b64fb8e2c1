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
    * ``power_w`` and ``energy_j`` held between the device's idle power and its power limit
      (:func:`bound_power`; the assumptions say when a bound applied);
    * ``fits_device``: ``memory_mb`` within what the device holds (``Device.capacity_mb``: the memory
      its board reports where the database gives it, else the nominal);
    * ``predictor_version``: ``version`` and the library that trained the
      model (``meta["library_version"]``, else this one);
    * with ``meta`` (a learned predictor): ``details["trained_devices"]``,
      ``extrapolated_device`` (also in ``details``) when none of them is
      ``dev``, and then the assumption that says so.
    """
    meta_ = meta or {}
    bound_power(est, dev)
    mig = recommend_mig(dev, est.memory_mb, margin_mb=margin_mb)
    est.mig_profile = mig.name if mig else None
    if graph is not None:
        est.details["mig"] = mig_details(graph, dev, mig, est.mode)
    est.predictor_version = f"{version} (costmodel {meta_.get('library_version', __version__)})"
    lat = est.latency_ms
    est.throughput_samples_s = (est.batch / (lat / 1e3)) if est.batch and lat > 0 else None
    est.fits_device = est.memory_mb <= dev.capacity_mb
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


def held_power(dev, power_w: float, predictor: str) -> tuple[float, str | None]:
    """``power_w`` held between ``dev``'s idle power and its power limit, and the assumption that says so
    (``None`` when it was within both): a board cannot average more than its enforced limit, nor draw less
    than idle while it runs a workload. A learned predictor's power is a regression and can pass either
    bound, most of all on a device it has no rows for; so can its labels, where NVML's energy counter, which
    steps every tens of milliseconds, was read over a short window."""
    lo_w, hi_w = dev.idle_power_w, dev.tdp_w
    if not (power_w == power_w and hi_w > 0):
        return power_w, None
    bound = hi_w if power_w > hi_w * (1 + 1e-9) else lo_w if power_w < lo_w * (1 - 1e-9) else None
    if bound is None:
        return power_w, None
    which = "power limit" if bound == hi_w else "idle power"
    return bound, (f"power held at {dev.name}'s {which} of {bound:.4g} W (the {predictor} prediction was "
                   f"{power_w:.4g} W); energy is that power x latency")


def bound_power(est: Estimate, dev) -> Estimate:
    """:func:`held_power` applied to ``est`` (in place; returned): ``energy_j`` follows as power x latency and
    the energy interval is clipped to the same bounds over the latency interval. A transformer's estimate
    (it has ``energy_j_per_call``) was held where it was composed, before its carbon and cost."""
    if est.energy_j_per_call is not None or not est.latency_ms > 0:
        return est
    power, note = held_power(dev, est.power_w, est.predictor)
    if note is not None:
        est.power_w, est.energy_j = power, power * est.latency_ms / 1e3
        est.assumptions = [*est.assumptions, note]
    if est.energy_j_interval is not None and dev.tdp_w > 0:
        # an interval's ends too: no energy above the limit over the longest latency, or below idle over the
        # shortest (a learned energy interval's upper end passed the limit when its power did not)
        lat_lo, lat_hi = est.latency_ms_interval or (est.latency_ms, est.latency_ms)
        e_lo, e_hi = est.energy_j_interval
        est.energy_j_interval = (min(max(e_lo, dev.idle_power_w * lat_lo / 1e3), est.energy_j),
                                 max(min(e_hi, dev.tdp_w * lat_hi / 1e3), est.energy_j))
    return est


def slice_fields(dev, profile) -> dict:
    """What ``details["mig"]`` says of a MIG profile of ``dev``: its name, what its GPU instance holds (and its
    name's nominal MiB), its SMs and its compute fraction."""
    return {"profile": profile.name, "memory_mb": profile.capacity_mb, "nominal_memory_mb": profile.memory_mb,
            "sm_count": instance_sm_count(dev, profile), "compute_fraction": profile.compute_fraction}


def mig_details(graph, dev, profile, mode) -> dict | None:
    """Compute share and predicted slow-down of the recommended MIG slice."""
    if profile is None:
        return None
    return {**slice_fields(dev, profile), "latency_penalty": mig_latency_penalty(graph, dev, profile, mode=mode)}


def check_slo(latency_slo_ms) -> float | None:
    """``latency_slo_ms`` checked: ``None`` or a finite number of milliseconds > 0."""
    from .._validate import positive_number

    return None if latency_slo_ms is None else positive_number(latency_slo_ms, "latency_slo_ms")


def no_faster_than_whole(part: Estimate, whole_latency_ms: float, whole: str) -> Estimate:
    """``part``, an estimate on a MIG slice, with its latency held at its whole GPU's (``whole_latency_ms`` on
    ``whole``) where the predictor put the slice faster (a learned predictor reading the slice's smaller
    hardware features out of what it learned): a slice has a share of the GPU's SMs and bandwidth and the
    same host, so it runs no faster. Energy follows at the predicted power for the longer time."""
    own = part.latency_ms
    if not own < whole_latency_ms:
        return part
    r = whole_latency_ms / own
    part.latency_ms = whole_latency_ms
    part.energy_j *= r
    if part.energy_j_per_call is not None:
        part.energy_j_per_call *= r
    for k in ("latency_ms_interval", "energy_j_interval"):
        v = getattr(part, k)
        if v is not None:
            setattr(part, k, (v[0] * r, v[1] * r))
    for k in ("throughput_samples_s", "tokens_s"):
        if getattr(part, k) is not None:
            setattr(part, k, getattr(part, k) / r)
    part.assumptions = [*part.assumptions, f"latency held at the whole {whole}'s {whole_latency_ms:.4g} ms (the "
                                           f"{part.predictor} predictor put the slice at {own:.4g} ms): a MIG slice "
                                           "runs no faster than its GPU"]
    return part


def slice_prediction_into(est: Estimate, dev, predict_on, *, predictor: str,
                          latency_slo_ms: float | None = None) -> Estimate:
    """The picked MIG slice asked about as a device of its own (:func:`costmodel.devices.slice_device`: its
    SMs, its share of the bandwidth and L2; the host lane stays the machine's) by ``predict_on(device)``:
    ``details["mig"]`` gets its latency, energy and power (and ``tokens_s`` for a transformer).

    With ``latency_slo_ms``, the pick is the first slice, from the memory pick upward (smallest first),
    whose latency is within the target; ``details["mig"]`` adds ``latency_slo_ms``, ``slo_met``,
    ``memory_pick`` and every slice ``tried``. Where none meets it, ``mig_profile`` is ``None``,
    ``details["mig"]`` names the fastest slice, and the assumptions say so."""
    from ..devices import slice_device

    if not est.mig_profile:
        if latency_slo_ms is not None:
            why = (f"{dev.name} has no MIG profiles" if not dev.mig_profiles
                   else "no MIG slice of the device holds the memory")
            est.assumptions = [*est.assumptions, f"latency target {latency_slo_ms:g} ms: {why}, so it picks no slice"]
        return est
    order = sorted(dev.mig_profiles, key=lambda q: (q.capacity_mb, q.compute_fraction))
    start = next(i for i, q in enumerate(order) if q.name == est.mig_profile)
    tried = []
    for prof in order[start:] if latency_slo_ms is not None else order[start:start + 1]:
        tried.append((prof, no_faster_than_whole(predict_on(slice_device(dev, prof)), est.latency_ms, dev.name)))
        if latency_slo_ms is None or tried[-1][1].latency_ms <= latency_slo_ms:
            break
    met = latency_slo_ms is None or tried[-1][1].latency_ms <= latency_slo_ms
    prof, part = tried[-1] if met else min(tried, key=lambda t: t[1].latency_ms)
    same = prof.name == est.mig_profile and est.details.get("mig")  # keep what the memory pick's details hold
    info = {**(same or {}), **slice_fields(dev, prof), "latency_ms": part.latency_ms, "energy_j": part.energy_j,
            "power_w": part.power_w, "slice_predictor": predictor}
    if getattr(part, "tokens_s", None) is not None:
        info["tokens_s"] = part.tokens_s
    if latency_slo_ms is not None:
        info.update(latency_slo_ms=latency_slo_ms, slo_met=met, memory_pick=est.mig_profile,
                    tried={q.name: t.latency_ms for q, t in tried})
        if not met:
            est.assumptions = [*est.assumptions, f"MIG slice: none that holds the memory answers within "
                                                  f"{latency_slo_ms:g} ms; the fastest, {prof.name}, takes "
                                                  f"{part.latency_ms:.4g} ms"]
    est.details["mig"] = info
    est.mig_profile = prof.name if met else None
    return est
