"""MIG slice selection from a memory estimate (thesis eq. 4.2, generalized).

The thesis maps predicted memory onto four fixed A100 profiles.  Here any
device's profile table (from the device database) is used: the pick is the
smallest profile whose memory holds the estimate plus a safety margin, which
learned predictors take from their prediction interval.
"""

from __future__ import annotations

from .devices import get_device


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
