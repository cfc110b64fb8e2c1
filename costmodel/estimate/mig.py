"""MIG slice selection from a memory estimate (thesis eq. 4.2, generalized).

The thesis maps predicted memory onto four fixed A100 profiles, by the
memory in their names.  Here any device's profile table (from the device
database) is used, and a slice's memory is what its GPU instance holds
(``MigProfile.capacity_mb``: ``nvidia-smi mig -lgip``'s listing where one is
published; an H200 ``1g.18gb`` instance holds 16.00 GiB, not 18): the pick is
the smallest profile that holds the estimate plus a safety margin, which
learned predictors take from their prediction interval.
"""

from __future__ import annotations

from ..devices import get_device, slice_device  # noqa: F401 - slice_device: re-exported here


def recommend_mig(device, memory_mb: float, *, margin_mb: float = 0.0):
    """Smallest MIG profile of ``device`` holding ``memory_mb + margin_mb``.

    Returns the profile object (with ``name``, ``capacity_mb``,
    ``compute_fraction``) or ``None`` when the device has no MIG support or
    no profile is large enough.
    """
    from .._validate import non_negative_number

    dev = get_device(device)
    need = non_negative_number(memory_mb, "memory_mb") + max(0.0, non_negative_number(margin_mb, "margin_mb"))
    for prof in sorted(dev.mig_profiles, key=lambda p: (p.capacity_mb, p.compute_fraction)):
        if prof.capacity_mb >= need:
            return prof
    return None


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
