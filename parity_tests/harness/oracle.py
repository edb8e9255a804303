"""The truth: the NumPy float64 reference, under whichever name it has here.

An installed suite ships it as `loss_parity.reference` (a user's project may well have a module of its own named
`reference`); a checkout of the repository has it at the root, as `reference`.
"""

from __future__ import annotations

try:
    from loss_parity import reference as truth
except ModuleNotFoundError as exc:  # a checkout: the root is on sys.path
    if exc.name not in ("loss_parity", "loss_parity.reference"):
        raise
    import reference as truth

__all__ = ["truth"]
