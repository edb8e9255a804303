"""The two data files of the suite: tolerances.toml (the tolerance policy with its evidence) and deviations.toml
(known torch deviations with their proof)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from parity_tests.harness.cases import Case
from parity_tests.harness.compare import Verdict
from parity_tests.harness.selectors import SELECTOR_FIELDS, matches, specificity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HERE = Path(__file__).parent


# The fields each table's entries may have. An unknown field (a typo) would silently select more than meant.
FIELDS = {
    "tolerance": {"id", "eps", "evidence"} | SELECTOR_FIELDS,
    "deviation": {
        "id",
        "what_torch_does",
        "true_value",
        "evidence",
        "nonfinite",
        "finite_for_nan",
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
    return entries


@dataclass(frozen=True)
class Tolerance:
    eps: float  # in units of the dtype's epsilon, relative to the compared array's scale
    source: str  # which entry: its id
    evidence: str


def tolerance_for(case: Case, stage: str) -> Tolerance:
    candidates = [
        e for e in _load("tolerances.toml", "tolerance") if matches(e, case, stage, torch.__version__)
    ]
    if not candidates:
        raise LookupError(f"no tolerance entry covers {case.id} {stage}")
    best = max(candidates, key=specificity)
    return Tolerance(float(best["eps"]), best["id"], best["evidence"])


@dataclass(frozen=True)
class Deviation:
    """A known torch deviation. It explains a mismatch of a selected stage when torch's finite error stays within
    `max_eps` (if given), the compared array's scale within `max_scale` (if given: a deviation of tiny results
    only), and every NaN/inf difference is a NaN/inf of torch's that the truth has not (allowed only with
    `nonfinite = true`) or a finite value of torch's where the truth is NaN (allowed only with
    `finite_for_nan = true`). It is strict per run: a deviation that selects cases of a run but
    explains none of them fails the run (torch may have been fixed)."""

    id: str
    what_torch_does: str
    true_value: str
    evidence: str
    entry: dict[str, Any]

    def explains(self, verdict: Verdict) -> bool:
        differences = verdict.nan_mismatches + verdict.inf_mismatches
        if verdict.problem or differences > verdict.spurious_nonfinite + verdict.missing_nan:
            return False
        if verdict.spurious_nonfinite and not self.entry.get("nonfinite", False):
            return False
        if verdict.missing_nan and not self.entry.get("finite_for_nan", False):
            return False
        if verdict.scale > self.entry.get("max_scale", float("inf")):
            return False
        return verdict.finite_error <= self.entry.get("max_eps", float("inf"))


@cache
def deviations() -> list[Deviation]:
    return [
        Deviation(e["id"], e["what_torch_does"], e["true_value"], e["evidence"], e)
        for e in _load("deviations.toml", "deviation")
    ]


def deviation_for(case: Case, stage: str, verdict: Verdict | None = None) -> Deviation | None:
    """The registered deviation that selects this case and stage, if any: the most specific one, or given the
    stage's verdict, the most specific one that explains it (two mechanisms may select the same stage)."""
    found = [d for d in deviations() if matches(d.entry, case, stage, torch.__version__)]
    explaining = [d for d in found if verdict is not None and d.explains(verdict)]
    return max(explaining or found, key=lambda d: specificity(d.entry)) if found else None
