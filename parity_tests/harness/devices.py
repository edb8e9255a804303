"""Which devices exist here. cpu always; cuda and mps when this torch build has them and a device is present."""

from __future__ import annotations

import torch

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
