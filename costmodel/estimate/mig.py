"""MIG slice selection from a memory estimate (thesis eq. 4.2, generalized).

The thesis maps predicted memory onto four fixed A100 profiles.  Here any
device's profile table (from the device database) is used: the pick is the
smallest profile whose memory holds the estimate plus a safety margin, which
learned predictors take from their prediction interval.
"""

from __future__ import annotations

from ..devices import get_device


def recommend_mig(device, memory_mb: float, *, margin_mb: float = 0.0):
    """Smallest MIG profile of ``device`` holding ``memory_mb + margin_mb``.

    Returns the profile object (with ``name``, ``memory_mb``,
    ``compute_fraction``) or ``None`` when the device has no MIG support or
    no profile is large enough.
    """
    dev = get_device(device)
    need = float(memory_mb) + max(0.0, float(margin_mb))
    for prof in sorted(dev.mig_profiles, key=lambda p: (p.memory_mb, p.compute_fraction)):
        if prof.memory_mb >= need:
            return prof
    return None


def slice_device(device, profile):
    """The device as one MIG slice sees it: peaks scaled by the slice's compute
    fraction, bandwidth by its memory fraction (memory slices own their share
    of the HBM channels), memory set to the slice's."""
    dev = get_device(device)
    f_c, f_m = profile.compute_fraction, profile.memory_fraction
    peaks = {k: (v * f_c if v else v) for k, v in dev.peak_tflops.as_dict().items()}
    return dev.with_overrides(
        name=f"{dev.name}/{profile.name}",
        peak_tflops=peaks,
        vector_tflops_fp32=dev.vector_tflops_fp32 * f_c,
        memory_bandwidth_gbps=dev.memory_bandwidth_gbps * f_m,
        memory_gb=profile.memory_gb,
        sm_count=int(round((dev.sm_count or 0) * f_c)) or None,
        mig_profiles=[],
    )


def mig_latency_penalty(graph, device, profile, *, mode: str | None = None) -> float:
    """How much slower ``graph`` runs on ``profile`` than on the whole GPU.

    The ratio of analytic roofline latencies on the slice and on the full
    device: compute-bound work slows by the compute fraction, memory-bound
    work by the memory fraction, host-bound work (small batches) not at all.
    """
    from ..analysis import roofline

    full = roofline(graph, get_device(device), mode=mode).latency_s
    part = roofline(graph, slice_device(device, profile), mode=mode).latency_s
    return part / full if full > 0 else 1.0
