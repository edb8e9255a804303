"""One comparison of one stage -> a Verdict.

The expected array is float64 math on the dtype-rounded inputs, so what is measured is torch's own error in the
dtype. Errors are in units of the dtype's epsilon, relative to the scale of the compared array (its largest
finite |expected|): gradients of a mean loss are O(1/N), so a fixed absolute tolerance would pass anything.
NaN and +-inf positions must agree exactly; an expected value outside the dtype's finite range is expected to be
+-inf in torch.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import numpy as np

from parity_tests.harness.dtypes import eps, max_finite, smallest_subnormal, ulp
from parity_tests.harness.threads import THREADS


@dataclass
class Verdict:
    stage: str
    dtype: str
    tolerance: float  # in eps of the dtype, relative to `scale`
    ok: bool
    error: float  # worst |actual - expected| / (eps * scale), inf where the NaN/inf patterns differ
    # the same over the positions where both are finite (a truth beyond the dtype's range included, at its value)
    finite_error: float
    max_abs_error: float
    max_rel_error: float  # worst elementwise |actual - expected| / |expected| over nonzero finite entries
    worst_index: tuple[int, ...] | None
    expected: float | None  # both values at worst_index
    actual: float | None
    ulps: float | None  # the worst error in ulps of the dtype at the expected value
    mismatches: int  # elements over tolerance, NaN/inf pattern differences included
    total: int
    nan_mismatches: int
    inf_mismatches: int
    spurious_nonfinite: int  # positions where torch has a NaN/inf that the truth has not
    missing_nan: int  # positions where the truth is NaN (a mean over nothing) and torch is finite
    scale: float
    problem: str | None = None  # a structural failure: missing stage, wrong shape, an exception
    names: tuple[str, str] = ("truth", "torch")  # the expected side, the actual side
    # positions where the truth is beyond the dtype's range (expected +-inf there) and torch is finite; their error
    # against the truth's own value is in finite_error
    missing_inf: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line: the worst error, where, both values (named by `names`), and the counts."""
        if self.problem:
            return f"{self.stage}: {self.problem}"
        at = f" at {list(self.worst_index)}" if self.worst_index is not None else ""
        ulps = f"{self.ulps:.3g}" if self.ulps is not None else "-"
        expected, actual = self.names
        parts = [
            f"{self.stage}: {actual} off by {self.error:.3g} eps (tolerance {self.tolerance:g} eps of {self.dtype}, "
            f"scale {self.scale:.3g}){at}: {expected} {self.expected!r}, {actual} {self.actual!r}",
            f"abs {self.max_abs_error:.3g}, rel {self.max_rel_error:.3g}, {ulps} ulps; "
            f"{self.mismatches}/{self.total} mismatched",
        ]
        if self.nan_mismatches or self.inf_mismatches:
            parts.append(
                f"NaN pattern differs at {self.nan_mismatches}, inf at {self.inf_mismatches} positions"
            )
        return "; ".join(parts)


def failed(
    stage: str,
    dtype: str,
    tolerance: float,
    problem: str,
    total: int = 0,
    names: tuple[str, str] = ("truth", "torch"),
) -> Verdict:
    """A verdict that fails without a comparison: `problem` says why."""
    nan = float("nan")
    return Verdict(
        stage,
        dtype,
        tolerance,
        False,
        float("inf"),
        nan,
        nan,
        nan,
        None,
        None,
        None,
        None,
        total,
        total,
        0,
        0,
        0,
        0,
        nan,
        problem,
        names,
    )


def compare(
    stage: str,
    expected: np.ndarray | None,
    actual: np.ndarray | None,
    dtype: str,
    tolerance: float,
    term_scale: float = 0.0,
    names: tuple[str, str] = ("truth", "torch"),
    terms: np.ndarray | None = None,
) -> Verdict:
    """Judge `actual` (converted to float64) against `expected` (float64), the two sides named by `names`. The scale
    is the largest finite |expected|, or `term_scale` (the magnitude of the terms that the computation combines) if
    larger. `terms`, an array of `expected`'s shape: judge each element at the larger of the scale and its own
    terms' magnitude (a formula known to cancel there)."""
    if expected is None and actual is None:
        raise ValueError(f"stage {stage!r} exists on neither side")
    if expected is None or actual is None:
        missing = names[0] if expected is None else names[1]
        return failed(stage, dtype, tolerance, f"{missing} returned no {stage}", names=names)
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if expected.shape != actual.shape:
        problem = f"shape {actual.shape} from {names[1]}, {expected.shape} from {names[0]}"
        return failed(stage, dtype, tolerance, problem, expected.size, names)
    if terms is not None:
        terms = np.broadcast_to(np.asarray(terms, dtype=np.float64), expected.shape)
    if expected.size > CHUNK:
        verdict = _compare_in_chunks(stage, expected, actual, dtype, tolerance, term_scale, terms)
    else:
        verdict = _compare(stage, expected, actual, dtype, tolerance, term_scale, terms)
    verdict.names = names
    return verdict


# Elements compared at once: the comparison's temporaries of a device-scale array (a billion logits) stay
# within a few hundred MB instead of many copies of the array; the chunks go to every core (NumPy and torch
# release the GIL in their kernels).
CHUNK = 1 << 22


def _compare_in_chunks(
    stage: str,
    expected: np.ndarray,
    actual: np.ndarray,
    dtype: str,
    tolerance: float,
    term_scale: float,
    terms: np.ndarray | None,
) -> Verdict:
    """`_compare` over consecutive chunks of the flattened arrays, at the scale of the whole array."""
    flat_expected, flat_actual = expected.reshape(-1), actual.reshape(-1)
    flat_terms = None if terms is None else terms.reshape(-1)
    starts = range(0, expected.size, CHUNK)
    with ThreadPoolExecutor(THREADS) as pool:
        maxima = pool.map(lambda i: _in_range_max(flat_expected[i : i + CHUNK], dtype), starts)
        scale = max(term_scale, *maxima)
        verdicts = pool.map(
            lambda i: _compare(
                stage,
                flat_expected[i : i + CHUNK],
                flat_actual[i : i + CHUNK],
                dtype,
                tolerance,
                scale,
                None if flat_terms is None else flat_terms[i : i + CHUNK],
            ),
            starts,
        )
        parts = list(zip(starts, verdicts, strict=True))
    # The worst chunk: one with a NaN/inf difference first, then the largest error.
    start, worst = max(
        parts, key=lambda p: (p[1].nan_mismatches + p[1].inf_mismatches > 0, p[1].finite_error)
    )
    merged = dataclasses.replace(
        worst,
        ok=all(v.ok for _, v in parts),
        error=max(v.error for _, v in parts),
        finite_error=max(v.finite_error for _, v in parts),
        max_abs_error=max(v.max_abs_error for _, v in parts),
        max_rel_error=max(v.max_rel_error for _, v in parts),
        worst_index=tuple(int(i) for i in np.unravel_index(start + worst.worst_index[0], expected.shape)),
        total=expected.size,
    )
    for count in (
        "mismatches",
        "nan_mismatches",
        "inf_mismatches",
        "spurious_nonfinite",
        "missing_nan",
        "missing_inf",
    ):
        setattr(merged, count, sum(getattr(v, count) for _, v in parts))
    return merged


@cache
def _threshold(dtype: str) -> float:
    """The magnitude from which a float64 value rounds to +-inf in the dtype: halfway past its largest finite value
    (rounding to nearest even goes up there). float64 has none within float64."""
    if dtype == "float64":
        return float("inf")
    top = max_finite(dtype)
    return top + 2.0 ** np.floor(np.log2(top)) * eps(dtype) / 2


def _overflow(expected: np.ndarray, dtype: str) -> np.ndarray:
    """Where a finite true value is beyond the dtype's range (it is +-inf there)."""
    return np.abs(expected) >= _threshold(dtype)  # NaN compares False, inf is never "finite": see the callers


def _in_range_max(expected: np.ndarray, dtype: str) -> float:
    """The largest finite |expected| that the dtype can represent (a true value beyond its range is +-inf)."""
    magnitude = np.abs(expected)
    return float(magnitude[np.isfinite(magnitude) & (magnitude < _threshold(dtype))].max(initial=0.0))


def _compare(
    stage: str,
    expected: np.ndarray,
    actual: np.ndarray,
    dtype: str,
    tolerance: float,
    term_scale: float,
    terms: np.ndarray | None = None,
) -> Verdict:
    # What torch can represent: a true value beyond the dtype's range is +-inf there.
    finite_expected = np.isfinite(expected)
    overflow = finite_expected & _overflow(expected, dtype)
    scale = max(_in_range_max(expected, dtype), term_scale)
    # The dtype cannot tell apart values closer than its smallest subnormal: a result below that underflows.
    unit = max(eps(dtype) * scale, smallest_subnormal(dtype))
    if terms is not None:
        unit = np.maximum(unit, eps(dtype) * np.where(np.isfinite(terms), terms, 0.0))
    # Within the tolerance of the overflow threshold both a finite value and the signed inf are right. (float64's
    # threshold lies beyond float64 itself: nothing there is borderline.)
    threshold = _threshold(dtype)
    window = tolerance * eps(dtype) * threshold  # the tolerance at the magnitude of the threshold itself
    either = None
    if np.isfinite(threshold) and (np.abs(expected[finite_expected]) >= threshold - window).any():
        near = finite_expected & (np.abs(threshold - np.abs(expected)) <= window)
        finite_actual = np.where(np.isfinite(actual), actual, 0.0)
        either = near & (
            (np.isinf(actual) & (np.sign(actual) == np.sign(expected)))
            | (np.isfinite(actual) & (np.abs(finite_actual - expected) <= window))
        )
        # Beyond the range, a side that returns a wider dtype than the case's (a kernel's float32 loss of a float16
        # case) may hold the true value: right within the tolerance at the value's own magnitude.
        either |= (
            overflow
            & np.isfinite(actual)
            & (np.abs(finite_actual - expected) <= tolerance * eps(dtype) * np.abs(expected))
        )
    # A finite value where the truth is beyond the range: a mismatch, whose error against the truth's own value
    # says how far off it is (a registered deviation may explain such values within its max_eps).
    beyond = overflow & np.isfinite(actual)
    if either is not None:
        beyond &= ~either
    with np.errstate(over="ignore"):
        beyond_error = np.abs(np.where(beyond, actual, 0.0) - np.where(beyond, expected, 0.0)) / unit
    if overflow.any():
        expected = np.where(overflow, np.copysign(np.inf, expected), expected)
    if either is not None:
        expected = np.where(either, actual, expected)
    nan_diff = np.isnan(expected) != np.isnan(actual)
    inf_diff = (np.isinf(expected) | np.isinf(actual)) & (expected != actual) & ~nan_diff
    finite = np.isfinite(expected) & np.isfinite(actual)
    abs_err = np.abs(np.where(finite, actual, 0.0) - np.where(finite, expected, 0.0))
    # An error beyond float64 at the scale of a subnormal unit is inf eps, as it is.
    with np.errstate(over="ignore"):
        scaled = abs_err / unit
    over = (scaled > tolerance) | nan_diff | inf_diff
    error = float("inf") if (nan_diff.any() or inf_diff.any()) else float(scaled.max(initial=0.0))

    worst = None
    if over.any():
        worst = np.unravel_index(
            int(np.argmax(np.where(nan_diff | inf_diff, np.inf, scaled))), expected.shape
        )
    elif expected.size:
        worst = np.unravel_index(int(np.argmax(scaled)), expected.shape)
    nonzero = finite & (expected != 0)
    with np.errstate(over="ignore"):  # a huge error beside a tiny true value: an inf relative error, as it is
        rel = np.where(nonzero, abs_err / np.where(nonzero, np.abs(expected), 1.0), 0.0)
    at = (lambda a: float(a[worst])) if worst is not None else (lambda a: None)
    return Verdict(
        stage=stage,
        dtype=dtype,
        tolerance=tolerance,
        ok=not over.any(),
        error=error,
        finite_error=float(max(scaled.max(initial=0.0), beyond_error.max(initial=0.0))),
        max_abs_error=float(abs_err.max(initial=0.0)),
        max_rel_error=float(rel.max(initial=0.0)),
        worst_index=tuple(int(i) for i in worst) if worst is not None else None,
        expected=at(expected),
        actual=at(actual),
        ulps=float(abs_err[worst] / ulp(expected[worst], dtype))
        if worst is not None and finite[worst]
        else None,
        mismatches=int(over.sum()),
        total=int(expected.size),
        nan_mismatches=int(nan_diff.sum()),
        inf_mismatches=int(inf_diff.sum()),
        spurious_nonfinite=int((~np.isfinite(actual) & (nan_diff | inf_diff)).sum()),
        missing_nan=int((np.isnan(expected) & np.isfinite(actual)).sum()),
        scale=scale,
        missing_inf=int(beyond.sum()),
    )
