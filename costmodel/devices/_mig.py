"""A MIG slice as a device of its own.

A GPU instance of a MIG profile is a smaller GPU: its own SMs, its share of the
memory slices (and with them of the DRAM bandwidth and the L2 cache), its own
memory.  :func:`slice_device` builds that device from the whole GPU's entry and
the profile, so every predictor can be asked about a slice as about any GPU, and
:func:`get_device` resolves the names a slice goes by:

* what CUDA and NVML call a GPU instance: ``"NVIDIA H200 MIG 1g.18gb"``,
  ``"NVIDIA A100-SXM4-80GB MIG 3g.40gb"``;
* a device name with a profile: ``"h200 1g.18gb"``, ``"h200:1g.18gb"``,
  ``"h200/1g.18gb"``.

A profile a driver renamed (``3g.39gb`` for ``3g.40gb`` on some A100 drivers)
resolves to the profile with the same compute slices and the nearest memory,
within a tenth.  The ``+me`` variants (media extensions) are the plain profile.

What a slice's figures are made of, in the order :func:`slice_device` applies them:

* its SMs: the profile's listed ``sm_count`` (``nvidia-smi mig -lgip``), else the
  whole-GPU instance's SMs times the profile's compute fraction; every compute
  rate scales by its SMs over the whole GPU's (same clocks);
* DRAM bandwidth and L2 cache: the profile's memory fraction (the MIG User
  Guide gives each profile that share of the L2 and the memory controllers);
* memory: the instance memory listed for the profile, else the name's GB;
* power: the slice's SM share of the board's idle power and power range. NVML
  reads power per board, not per GPU instance, so no row can check it.
"""

from __future__ import annotations

import dataclasses
import functools
import re

from .._errors import InvalidInputError

#: a slice's name: a GPU, then (optionally ``MIG``) a profile such as ``1g.18gb``, perhaps a compute instance
#: of one (``1c.3g.40gb``), perhaps with a variant's suffix (``+me``, ``+me.all``, ``+gfx``, ``-me``)
MIG_NAME_RE = re.compile(r"^(?P<gpu>.+?)(?:[\s:/_-]+mig)?[\s:/_-]+(?P<profile>(?:\d+c\.)?\d+g\.\d+gb)"
                         r"(?:[+-][a-z.]+)?\s*$", re.IGNORECASE)
#: a profile's name: the compute instance's slices (``1c.``, optional), the GPU instance's profile, a suffix
_PROFILE_RE = re.compile(r"^(?:(?P<ci>\d+)c\.)?(?P<gi>(?P<g>\d+)g\.(?P<gb>\d+)gb)(?:[+-][a-z.]+)?$")
#: what a slice device's name puts between the GPU's name and the profile's
SLICE_SEP = " MIG "


def split_mig_name(name: str) -> tuple[str, str] | None:
    """``(gpu, profile)`` of a slice's name (``"NVIDIA H200 MIG 1g.18gb"`` -> ``("NVIDIA H200", "1g.18gb")``),
    or ``None`` for a name that carries no MIG profile."""
    m = MIG_NAME_RE.match(name.strip()) if isinstance(name, str) else None
    if m is None:
        return None
    return m.group("gpu").strip(), m.group("profile").lower()


def find_profile(dev, name: str):
    """The MIG profile of ``dev`` called ``name``: exactly, or (a name a driver changed) the profile
    with the same compute slices and the nearest memory within a tenth. Raises
    :class:`InvalidInputError` naming the device's profiles."""
    if not dev.mig_profiles:
        from ._db import list_devices

        raise InvalidInputError(f"{dev.name} has no MIG profiles (got {name!r}); the GPUs with MIG: "
                                + ", ".join(d.name for d in list_devices() if d.mig_profiles))
    m = _PROFILE_RE.match(name.strip().lower())
    key = m.group("gi") if m else name.strip().lower()
    for p in dev.mig_profiles:
        if p.name.lower() == key:
            return p
    if m:
        slices, gb = int(m.group("g")), float(m.group("gb"))
        same = [p for p in dev.mig_profiles if p.name.lower().startswith(f"{slices}g.")
                and abs(p.memory_gb - gb) <= 0.1 * p.memory_gb]
        if same:
            return min(same, key=lambda p: abs(p.memory_gb - gb))
    raise InvalidInputError(f"{dev.name} has no MIG profile {name!r}; its profiles are "
                            f"{', '.join(p.name for p in dev.mig_profiles)}")


def mig_slice(gpu: str, profile: str, *, measured: bool = False):
    """The slice ``profile`` of the GPU ``gpu`` names; where ``gpu`` fits several devices (``"a100"``),
    the first of them that has the profile (``"a100 1g.5gb"`` is the 40 GB card's)."""
    from ._db import _VENDOR_PREFIXES, _devices_fitting, get_device, normalize_device_name

    parent = get_device(gpu, measured=measured)
    try:
        return slice_device(parent, profile)
    except InvalidInputError:
        key = normalize_device_name(gpu)
        for prefix in ("", *_VENDOR_PREFIXES):
            if key.startswith(prefix):
                for other in _devices_fitting(key[len(prefix):]):
                    dev = get_device(other, measured=measured)
                    if dev.mig_profiles:
                        try:
                            return slice_device(dev, profile)
                        except InvalidInputError:
                            continue
        raise


def instance_sm_count(dev, profile) -> int:
    """The SMs of ``profile``'s GPU instance: listed, else the whole-GPU instance's (listed for the
    profile of all seven compute slices, else the device's) times the compute fraction."""
    if profile.sm_count:
        return int(profile.sm_count)
    full = next((p.sm_count for p in dev.mig_profiles if p.compute_fraction >= 1 and p.sm_count), None)
    full = full or dev.sm_count or 0
    return max(1, int(round(full * profile.compute_fraction))) if full else 0


@functools.lru_cache(maxsize=256)
def _slice(dev, profile):
    sms = instance_sm_count(dev, profile)
    f_c = sms / dev.sm_count if dev.sm_count and sms else profile.compute_fraction
    f_m = profile.memory_fraction
    peaks = {k: (v * f_c if v else v) for k, v in dev.peak_tflops.as_dict().items()}
    where = "listed" if profile.sm_count else "in proportion to its compute slices"
    mem = ("the board's reported memory (no listing; the name's GB is more)" if profile.capacity_capped
           else "its listed instance memory" if profile.capacity_listed else "its name's GB (no listing)")
    source = (f"MIG slice {profile.name} of {dev.name}: {sms} SMs ({where}), compute rates x{f_c:.3f} (its SMs over "
              f"{dev.sm_count}), DRAM bandwidth and L2 x{f_m:g} (its memory slices), memory {mem}, power as its SM "
              "share of the board's")
    out = dev.with_overrides(
        name=f"{dev.name}{SLICE_SEP}{profile.name}",
        aliases=[],
        peak_tflops=peaks,
        vector_tflops_fp32=dev.vector_tflops_fp32 * f_c,
        memory_bandwidth_gbps=dev.memory_bandwidth_gbps * f_m,
        memory_gb=profile.capacity_mb / 1024,
        reported_memory_mib=None,
        sm_count=sms or None,
        l2_cache_mb=dev.l2_cache_mb * f_m if dev.l2_cache_mb else dev.l2_cache_mb,
        tdp_w=dev.tdp_w * f_c,
        idle_power_w=dev.idle_power_w * f_c,
        mig_profiles=[],
        sources=[*dev.sources, source],
    )
    note = (f"a MIG slice ({profile.name} of {dev.name}): {sms} SMs, {f_m:g} of the bandwidth and L2, "
            f"{profile.capacity_mb:,.0f} MiB; power is its share of the board's (no row measured a slice)")
    return dataclasses.replace(out, assumptions=(note,))


def slice_device(device, profile):
    """``device`` as one GPU instance of ``profile`` sees it (a :class:`~costmodel.devices.Device`).

    ``profile`` is a :class:`~costmodel.devices.MigProfile` of the device or its name. A compute
    instance's name (``"1c.3g.40gb"``: one of the three compute slices of a ``3g.40gb`` GPU instance)
    gives that share of the GPU instance's SMs; the memory, bandwidth and L2 are the GPU instance's,
    which its compute instances share (costed as if this one ran alone)."""
    from ._db import get_device

    dev = get_device(device)
    if SLICE_SEP in dev.name:
        raise InvalidInputError(f"{dev.name} is already a MIG slice; ask for a profile of the whole GPU "
                                f"({mig_parent(dev).name})")
    ci = None
    if isinstance(profile, str):
        m = _PROFILE_RE.match(profile.strip().lower())
        ci = int(m.group("ci")) if m and m.group("ci") else None
    prof = find_profile(dev, profile) if isinstance(profile, str) else profile
    if prof not in dev.mig_profiles:
        raise InvalidInputError(f"{prof.name!r} is not a MIG profile of {dev.name}; its profiles are "
                                f"{', '.join(p.name for p in dev.mig_profiles) or 'none'}")
    out = _slice(dataclasses.replace(dev, assumptions=()), prof)
    g = int(prof.name.split("g.")[0])
    if ci is not None:
        if not 1 <= ci <= g:
            raise InvalidInputError(f"a compute instance of {prof.name} has 1 to {g} of its compute slices; "
                                    f"got {ci}c.{prof.name}")
        if ci < g:
            out = _compute_instance(out, prof, ci, g)
    return dataclasses.replace(out, assumptions=(*dev.assumptions, *out.assumptions)) if dev.assumptions else out


def _compute_instance(gi, prof, ci: int, g: int):
    """The GPU instance ``gi`` (a slice device) narrowed to ``ci`` of its ``g`` compute slices."""
    f = ci / g
    sms = max(1, int(round((gi.sm_count or 0) * f))) if gi.sm_count else None
    out = gi.with_overrides(
        name=f"{gi.name.split(SLICE_SEP)[0]}{SLICE_SEP}{ci}c.{prof.name}",
        peak_tflops={k: (v * f if v else v) for k, v in gi.peak_tflops.as_dict().items()},
        vector_tflops_fp32=gi.vector_tflops_fp32 * f, sm_count=sms, tdp_w=gi.tdp_w * f,
        idle_power_w=gi.idle_power_w * f,
        sources=[*gi.sources, f"compute instance {ci}c of {prof.name}: {ci} of its {g} compute slices' SMs"])
    note = (f"a MIG compute instance ({ci}c.{prof.name}): {sms} SMs; the GPU instance's memory, bandwidth and L2, "
            "which its other compute instances share, costed as if this one ran alone")
    return dataclasses.replace(out, assumptions=(*gi.assumptions, note))


def mig_parent(device):
    """The whole GPU a slice device (from :func:`slice_device`) belongs to, or ``None`` for a whole device."""
    from ._db import get_device

    name = device.name if hasattr(device, "name") else str(device)
    if SLICE_SEP not in name:
        return None
    return get_device(name.split(SLICE_SEP)[0])


def slice_profile(device):
    """``(whole GPU, its MIG profile)`` of a slice device (a compute instance: its GPU instance's profile),
    or ``None`` for a whole device."""
    gpu = mig_parent(device)
    if gpu is None:
        return None
    m = _PROFILE_RE.match(device.name.split(SLICE_SEP)[1].lower())
    return gpu, find_profile(gpu, m.group("gi"))


def base_device(device):
    """The whole GPU of a slice device, else ``device`` itself: where its fitted data live."""
    return mig_parent(device) or device
