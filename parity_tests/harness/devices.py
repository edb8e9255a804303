"""Which devices exist here. cpu always; cuda and mps when this torch build has them and a device is present."""

from __future__ import annotations

import math
import os

import torch

from parity_tests.harness.cases import Case
from parity_tests.harness.dtypes import TORCH_DTYPES

KNOWN = ("cpu", "cuda", "mps")


def available() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def name(device: str) -> str:
    """A human name for the device, for reports."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    if device == "cpu":
        import platform

        return platform.processor() or platform.machine()
    return device


def select(requested: list[str] | None) -> tuple[list[str], list[str]]:
    """(devices to run, requested devices that are absent here)."""
    here = available()
    if not requested:
        return here, []
    unknown = [d for d in requested if d not in KNOWN]
    if unknown:
        raise ValueError(f"--device: unknown device {unknown[0]!r}; expected one of {', '.join(KNOWN)}")
    return [d for d in requested if d in here], [d for d in requested if d not in here]


def free_bytes(device: str) -> int | None:
    """Memory a case may still take on `device` (for cpu: this host's available memory); None if unknown."""
    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        # What torch's caching allocator holds without using it is free for this process too.
        return free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
    if device == "mps":
        return torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory()
    return host_free_bytes()


def host_free_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None


# What one case holds at its peak, per element of its input, for the device-scale shapes of the gpu profile.
# Host: each float input array in float64 (the case) and in the dtype (the implementation's copy), each
# gradient three times in float64 (the implementation's, torch's on the device, torch's on cpu for the
# cross-device check), torch's cpu tensors and the sampling's float64 temporaries. Device: torch's inputs,
# gradients and saved intermediates (log_softmax, the upcast in reduced precision) in the dtype.
_HOST_BYTES_PER_ARRAY, _HOST_BYTES_PER_GRADIENT, _HOST_BYTES_FIXED = 12, 24, 24
_DEVICE_ARRAYS_FIXED = 4
_HEADROOM = 1 << 30


def unfit(case: Case) -> str | None:
    """Why a case does not fit in the free memory of its device or of this host, or None where it fits (or
    where the free amount is unknown)."""
    numel = math.prod(case.shape)
    if numel < 1 << 24:  # the grid's cases: megabytes
        return None
    o = case.opts
    binary = o["target"] in ("soft", "binary")
    full_arrays = 1 + (o["target"] != "index") + (o.get("weight") == "elementwise")
    full_arrays += binary and o["reduction"] == "none"  # grad_output
    gradients = 1 + case.spec.target_is_differentiable(o)
    host = numel * (
        _HOST_BYTES_PER_ARRAY * full_arrays + _HOST_BYTES_PER_GRADIENT * gradients + _HOST_BYTES_FIXED
    )
    on_device = numel * TORCH_DTYPES[case.dtype].itemsize * (full_arrays + gradients + _DEVICE_ARRAYS_FIXED)
    needs = [(case.device, on_device, free_bytes(case.device))] if case.device != "cpu" else []
    needs.append(("this host", host + (on_device if case.device == "cpu" else 0), host_free_bytes()))
    for where, need, free in needs:
        if free is not None and need + _HEADROOM > free:
            return f"needs about {need / 2**30:.1f} GiB on {where}, {free / 2**30:.1f} GiB free"
    return None


def release(case: Case) -> None:
    """After a device-scale case, give torch's cached device memory back, for the other workers' cases."""
    if case.device == "cuda" and math.prod(case.shape) >= 1 << 24:
        torch.cuda.empty_cache()
