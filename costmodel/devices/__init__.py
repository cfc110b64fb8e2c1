"""Device database: the hardware figures (peaks, bandwidth, memory, power, MIG)
the cost predictors read, kept as data in ``devices.json``.

>>> from costmodel.devices import get_device
>>> h100 = get_device("h100")              # case/punctuation-insensitive aliases
>>> h100.peak_flops("bf16")                # dense tensor-core FLOP/s
989400000000000.0
>>> get_device("h200", measured=True).source   # figures measured on a real H200
'measured'

Importing this package loads only the standard library; the JSON file is read
on first use.
"""

from __future__ import annotations

from .._errors import UnknownDeviceError
from . import _db
from ._db import (
    DTYPE_KEYS,
    HARDWARE_FEATURE_NAMES,
    Device,
    DeviceDatabaseError,
    MigProfile,
    PeakTflops,
    get_device,
    list_devices,
    normalize_device_name,
)
from ._measured import load_measured_profile, measured_profile

from ._cuda import ARCHITECTURES, cuda_device, device_from_cuda_properties
from ._mig import (base_device, find_profile, instance_sm_count, mig_parent, slice_device, slice_profile,
                   split_mig_name)

__all__ = [*_db.__all__, "UnknownDeviceError", "ARCHITECTURES", "base_device", "cuda_device",
           "device_from_cuda_properties", "find_profile", "instance_sm_count", "mig_parent", "slice_device",
           "slice_profile", "split_mig_name"]


def resolves_by_name(name: str) -> bool:
    """Whether ``name`` alone resolves to a device (a database name or alias, a MIG slice). A GPU the
    database does not list does not: its rows and predictors know it by the ``hardware.json`` that derives
    it from its CUDA properties."""
    try:
        get_device(name)
    except UnknownDeviceError:
        return False
    return True


def is_measured_device(device: Device, measured_names) -> bool:
    """Whether ``device`` is among ``measured_names`` (device strings of training rows, any spelling).

    Learned predictors use it to flag estimates for devices they never saw measurements of."""
    names = set()
    for d in measured_names or ():
        try:
            names.add(get_device(d).name)
        except Exception:  # noqa: BLE001 - a device string this library does not know
            names.add(d)
    return device.name in names


def _canonical(name) -> str:
    try:
        return get_device(name).name
    except Exception:  # noqa: BLE001 - a device string this library does not know
        return str(name)


def extrapolation_note(device, trained_devices, predictor: str) -> str:
    """The assumption of an estimate for a device without measured rows: which device the learned
    predictor's labels come from, and that its correction is carried over through hardware features."""
    dev = device.name if isinstance(device, Device) else _canonical(device)
    labels = ", ".join(dict.fromkeys(_canonical(d) for d in trained_devices or ())) or "other devices"
    return (f"no measured rows for {dev}: the {predictor} predictor's labels come from {labels}; "
            "its correction is extrapolated to this device through hardware features")


def cuda_core_conv_note(device, trained_devices, graph, *, as_gemm: bool = False) -> str | None:
    """The assumption of a learned estimate whose fp32 convolutions run on CUDA cores on ``device`` (a GPU
    without TF32: Volta, Turing) while every device its rows come from ran them as TF32 on tensor cores,
    else ``None``; only where dense convolutions are more than a tenth of the graph's FLOPs. No such row
    taught the efficiency of that path (cuDNN's direct, implicit-GEMM and Winograd kernels on CUDA cores);
    against published V100 and T4 latencies the learned predictors are slow there
    (``benchmarks/public_references.py``). ``as_gemm``: the predictor costs them as the fp32 (CUDA-core)
    matmuls its rows did measure (the timeline; ``costmodel.predictors.cuda_core_conv_reading``), and the note says so."""
    dev = device if isinstance(device, Device) else get_device(device)
    if graph is None or dev.peak_tflops.get("tf32") is not None or not trained_devices:
        return None
    if graph.meta.get("dtype", "fp32") != "fp32" or graph.meta.get("autocast"):
        return None
    try:
        if any(get_device(d).peak_tflops.get("tf32") is None for d in trained_devices):
            return None
    except Exception:  # noqa: BLE001 - a training device this library does not know: say nothing
        return None
    dense = sum(n.flops for n in graph.nodes if n.kind == "conv" and int(n.attrs.get("groups", 1) or 1) == 1)
    if dense <= 0.1 * graph.flops:  # a patch embedding's convolution is not what such a model's time is
        return None
    trained = ", ".join(dict.fromkeys(_canonical(d) for d in trained_devices))
    if as_gemm:
        return (f"fp32 convolutions run on {dev.name}'s CUDA cores (it has no TF32), a path no training row "
                f"measured ({trained} ran them as TF32 on tensor cores): costed as the CUDA-core fp32 matmuls "
                "its rows did measure; against published V100 and T4 ResNet latencies the timeline is about "
                "1.2x (T4) to 1.4x (V100) slow on that path (docs/limits.md)")
    return (f"fp32 convolutions run on {dev.name}'s CUDA cores (it has no TF32), a path no training row measured: "
            f"{trained} ran them as TF32 on tensor cores; against published V100 and T4 ResNet latencies the "
            "learned predictors are about 1.3x (T4) to 1.5x (V100) slow on that path (docs/limits.md)")


__all__ += ["cuda_core_conv_note", "extrapolation_note", "is_measured_device"]
