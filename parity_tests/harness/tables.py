"""The two data files of the suite: tolerances.toml (the tolerance policy with its evidence) and deviations.toml
(known torch deviations with their proof)."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from parity_tests.harness.cases import Case, CaseData
from parity_tests.harness.compare import Verdict, compare
from parity_tests.harness.conditions import CONDITIONS, TERMS
from parity_tests.harness.selectors import (
    SELECTOR_FIELDS,
    class_count,
    matches,
    specificity,
    torch_version_in,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HERE = Path(__file__).parent


# The fields each table's entries may have. An unknown field (a typo) would silently select more than meant.
FIELDS = {
    "tolerance": {"id", "eps", "evidence"} | SELECTOR_FIELDS,
    "factor": {"id", "k", "evidence"} | SELECTOR_FIELDS,
    "deviation": {
        "id",
        "what_torch_does",
        "true_value",
        "evidence",
        "evidence_cases",
        "reproduction",
        "condition",
        "terms",
        "nonfinite",
        "finite_for_nan",
        "finite_for_inf",
        "max_eps",
        "max_scale",
    }
    | SELECTOR_FIELDS,
}


@cache
def _load(name: str, key: str) -> list[dict[str, Any]]:
    with open(HERE / name, "rb") as f:
        entries = tomllib.load(f).get(key, [])
    for entry in entries:
        unknown = set(entry) - FIELDS[key]
        if unknown or "id" not in entry or "evidence" not in entry:
            raise ValueError(
                f"{name}: entry {entry.get('id')!r} has unknown fields {sorted(unknown)} or lacks "
                "an id or evidence"
            )
        for field, known in (("condition", CONDITIONS), ("terms", TERMS)):
            if field in entry and entry[field] not in known:
                raise ValueError(f"{name}: entry {entry['id']!r}: unknown {field} {entry[field]!r}")
    return entries


@dataclass(frozen=True)
class Tolerance:
    eps: float  # in units of the dtype's epsilon, relative to the compared array's scale
    source: str  # which entry: its id
    evidence: str


def tolerance_for(case: Case, stage: str) -> Tolerance:
    return _tolerance(_selected_by(case), stage)


def _selected_by(case: Case) -> Case:
    """The case as table entries see it (no seed, no regime, the shape only through its class count, as
    selectors.matches reads it): cases alike in that share one lookup."""
    classes = class_count(case)
    return dataclasses.replace(case, shape=() if classes is None else (classes,), regime="", seed=0)


@cache
def _narrowed(key: str, loss: str, stage: str, dtype: str) -> list[dict[str, Any]]:
    """The entries of tolerances.toml's `key` table that can select this loss, stage and dtype (matches() decides)."""
    fields = {"loss": loss, "stage": stage, "dtype": dtype}
    return [
        e
        for e in _load("tolerances.toml", key)
        if all(
            name not in e or value in (e[name] if isinstance(e[name], list) else [e[name]])
            for name, value in fields.items()
        )
    ]


@cache
def _tolerance(case: Case, stage: str) -> Tolerance:
    candidates = [
        e
        for e in _narrowed("tolerance", case.loss, stage, case.dtype)
        if matches(e, case, stage, torch.__version__)
    ]
    if not candidates:
        raise LookupError(f"no tolerance entry covers {case.loss} {stage} {case.dtype} {case.device}")
    best = max(candidates, key=specificity)
    return Tolerance(float(best["eps"]), best["id"], best["evidence"])


def candidate_factor(case: Case, stage: str) -> float:
    """K: how many times torch's own error a candidate's error may be, where torch is within its tolerance."""
    return _factor(_selected_by(case), stage)


@cache
def _factor(case: Case, stage: str) -> float:
    found = [
        e
        for e in _narrowed("factor", case.loss, stage, case.dtype)
        if matches(e, case, stage, torch.__version__)
    ]
    return float(max(found, key=specificity)["k"]) if found else 1.0


@dataclass(frozen=True)
class Deviation:
    """A known torch deviation, selected by the loss, stage, dtype, device, options, torch version and class count
    it names and by its `condition` (conditions.py), computed from the case's inputs.

    It explains a mismatch of a selected stage when every NaN/inf difference is a NaN/inf of torch's that the truth
    has not (allowed only with `nonfinite = true`), a finite value of torch's where the truth is NaN (only with
    `finite_for_nan = true`) or where the truth is beyond the dtype's range (only with `finite_for_inf = true`, its
    error against the truth's value counted in the finite error), and torch's finite error stays within `max_eps`
    (if given) and the compared array's scale within `max_scale` (if given: a deviation of tiny results only). A
    `terms` deviation judges each element at the magnitude of the terms torch's formula combines (conditions.TERMS)
    instead of the result's scale, with `max_eps` (default: the stage's tolerance) as the tolerance: it explains
    torch's formula and nothing else.

    Strictness lives in `evidence_cases`: grid cases where torch must still deviate. A run that includes one where
    this deviation explains none of its stages fails (torch may have been fixed there)."""

    id: str
    what_torch_does: str
    true_value: str
    evidence: str
    entry: dict[str, Any]

    def selects(self, data: CaseData, stage: str) -> bool:
        if not matches(self.entry, data.case, stage, torch.__version__):
            return False
        condition = self.entry.get("condition")
        return condition is None or CONDITIONS[condition](data)

    def explains(self, verdict: Verdict, judged_at_terms: Verdict | None = None) -> bool:
        """Whether this deviation explains torch's mismatch `verdict` (for a `terms` deviation: as judged at the
        terms, `judged_at_terms`)."""
        if verdict.problem:
            return False
        v = judged_at_terms or verdict
        differences = v.nan_mismatches + v.inf_mismatches
        if differences > v.spurious_nonfinite + v.missing_nan + v.missing_inf:
            return False
        if v.spurious_nonfinite and not self.entry.get("nonfinite", False):
            return False
        if v.missing_nan and not self.entry.get("finite_for_nan", False):
            return False
        if v.missing_inf and not self.entry.get("finite_for_inf", False):
            return False
        if verdict.scale > self.entry.get("max_scale", float("inf")):
            return False
        limit = v.tolerance if judged_at_terms is not None else self.entry.get("max_eps", float("inf"))
        return v.finite_error <= limit


@cache
def deviations() -> list[Deviation]:
    return [
        Deviation(e["id"], e["what_torch_does"], e["true_value"], e["evidence"], e)
        for e in _load("deviations.toml", "deviation")
    ]


@cache
def _evidence() -> dict[str, list[Deviation]]:
    found: dict[str, list[Deviation]] = {}
    for d in deviations():
        for case_id in d.entry.get("evidence_cases", []):
            found.setdefault(case_id, []).append(d)
    return found


def evidence_of(case_id: str, torch_version: str = torch.__version__) -> list[Deviation]:
    """The deviations that name this case as evidence and whose torch range holds this torch: torch must still
    deviate there."""
    return [
        d
        for d in _evidence().get(case_id, [])
        if "torch" not in d.entry or torch_version_in(torch_version, d.entry["torch"])
    ]


def deviation_for(
    data: CaseData, stage: str, verdict: Verdict, expected: np.ndarray | None, actual: np.ndarray | None
) -> tuple[Deviation | None, bool]:
    """(the registered deviation for this stage's mismatch, whether it explains it). The most specific selecting
    deviation that explains the mismatch, else the most specific selecting one (reported as selecting without
    explaining), else None. A stage that passes needs none."""
    if verdict.ok:
        return None, False
    found = sorted((d for d in deviations() if d.selects(data, stage)), key=lambda d: -specificity(d.entry))
    for d in found:
        if "terms" not in d.entry:
            if d.explains(verdict):
                return d, True
            continue
        at_terms = _at_terms(d, data, stage, verdict, expected, actual)
        if at_terms is not None and d.explains(verdict, at_terms):
            return d, True
    return (found[0], False) if found else (None, False)


# A `terms` deviation applies where the terms exceed the result's scale at least this many times: elsewhere torch's
# formula has nothing to cancel, and its error is judged at the result's scale like any other.
TERMS_RATIO = 2.0


def _at_terms(
    d: Deviation,
    data: CaseData,
    stage: str,
    verdict: Verdict,
    expected: np.ndarray | None,
    actual: np.ndarray | None,
) -> Verdict | None:
    """torch's verdict with each element judged at the terms its formula combines; None where the terms do not
    exceed the result (nothing cancels) or a side is missing."""
    if expected is None or actual is None:
        return None
    terms = TERMS[d.entry["terms"]](data, stage)
    if not np.nanmax(terms, initial=0.0) > TERMS_RATIO * verdict.scale:
        return None
    tolerance = d.entry.get("max_eps", verdict.tolerance)
    return compare(stage, expected, actual, data.case.dtype, tolerance, verdict.scale, verdict.names, terms)
