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
from parity_tests.harness.selectors import matches, specificity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HERE = Path(__file__).parent


@cache
def _load(name: str, key: str) -> list[dict[str, Any]]:
    with open(HERE / name, "rb") as f:
        return tomllib.load(f).get(key, [])


@dataclass(frozen=True)
class Tolerance:
    eps: float  # in units of the dtype's epsilon, relative to the compared array's scale
    source: str  # which entry: its id
    evidence: str


def tolerance_for(case: Case, stage: str) -> Tolerance:
    candidates = [e for e in _load("tolerances.toml", "tolerance") if matches(e, case, stage, torch.__version__)]
    if not candidates:
        raise LookupError(f"no tolerance entry covers {case.id} {stage}")
    best = max(candidates, key=specificity)
    return Tolerance(float(best["eps"]), best["id"], best["evidence"])


@dataclass(frozen=True)
class Deviation:
    id: str
    what_torch_does: str
    true_value: str
    evidence: str
    entry: dict[str, Any]


def deviations() -> list[Deviation]:
    return [
        Deviation(e["id"], e["what_torch_does"], e["true_value"], e["evidence"], e)
        for e in _load("deviations.toml", "deviation")
    ]


def deviation_for(case: Case, stage: str) -> Deviation | None:
    """The registered deviation that selects this case and stage, if any."""
    found = [d for d in deviations() if matches(d.entry, case, stage, torch.__version__)]
    return max(found, key=lambda d: specificity(d.entry)) if found else None
