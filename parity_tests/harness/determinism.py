"""Bitwise determinism of torch on a device: the same call on the same inputs, repeated, must give the same bits.

Where torch documents the path as nondeterministic (under `torch.use_deterministic_algorithms(True,
warn_only=True)` it warns that the operation "does not have a deterministic implementation"), a difference is
reported, not failed: torch says so itself. A difference on a path torch does not flag fails.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from parity_tests.harness.cases import PROFILES, Case, CaseData, grid
from parity_tests.harness.runner import run_torch
from parity_tests.harness.threads import THREADS

REPEATS = 5
# Shapes large enough for a device's kernels to split a reduction over many blocks (where atomic additions make
# the order of a sum vary). The quick profile keeps the first, in float32 only; cpu keeps the first in every
# profile (its kernels split work into chunks fixed by the thread count, which stays fixed within a run).
SHAPES = ((2, 21, 16, 16), (8, 21, 128, 128), (4096, 1000))


@dataclass
class Determinism:
    case_id: str
    device: str
    differing: list[str] = field(default_factory=list)  # stages whose bits changed between repeats
    documented: str | None = None  # torch's own warning that the path is nondeterministic

    @property
    def ok(self) -> bool:
        return not self.differing or self.documented is not None


def cases(
    profile: str, devices: list[str], dtypes: list[str] | None = None, losses: list[str] | None = None
) -> Iterator[Case]:
    """Every option combination of each loss in its ordinary regime, on SHAPES."""
    if profile not in PROFILES:
        profile = "quick"
    quick = profile == "quick"
    if quick:  # float32 only
        if dtypes and "float32" not in dtypes:
            return
        dtypes = ["float32"]
    for case in grid("full", devices, dtypes, losses):
        # One grid case per option combination, dtype and device stands for it.
        if case.seed == 0 and case.regime == case.spec.regimes[0] and case.shape == (8, 5):
            for shape in SHAPES[:1] if quick or case.device == "cpu" else SHAPES:
                yield Case(case.loss, case.options, shape, case.regime, case.dtype, case.device)


def check_determinism(data: CaseData, repeats: int = REPEATS) -> Determinism:
    threads = torch.get_num_threads()
    if data.case.device == "cpu":
        torch.set_num_threads(THREADS)  # single-threaded, cpu kernels would be deterministic trivially
    try:
        first = run_torch(data)
        result = Determinism(data.case.id, data.case.device)
        for _ in range(repeats - 1):
            again = run_torch(data)
            result.differing += [
                stage
                for stage, array in first.items()
                if array is not None and stage not in result.differing and not same_bits(array, again[stage])
            ]
        result.documented = documented_nondeterminism(data)
    finally:
        torch.set_num_threads(threads)
    return result


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise equality (the float64 arrays hold the dtype's values exactly: equal bits there, equal bits here)."""
    return a.shape == b.shape and np.array_equal(a.view(np.uint64), b.view(np.uint64))


def documented_nondeterminism(data: CaseData) -> str | None:
    """torch's warning that this call has no deterministic implementation, or None."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run_torch(data)
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    flagged = [str(w.message) for w in caught if "deterministic implementation" in str(w.message)]
    return flagged[0] if flagged else None
