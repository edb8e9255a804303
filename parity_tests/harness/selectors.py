"""Matching table entries (tolerances, deviations) to cases: a field left out matches everything, a list
matches any of its values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from parity_tests.harness.cases import Case


SELECTOR_FIELDS = {"loss", "stage", "dtype", "device", "regime", "shape", "options", "torch"}


def _is(value: Any, wanted: Any) -> bool:
    return value in wanted if isinstance(wanted, list) else value == wanted


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("+")[0].split(".")[:3] if part.isdigit())


def torch_version_in(version: str, spec: str) -> bool:
    """`spec` like ">=2.4,<2.14": comma-separated comparisons of release numbers."""
    ops = {">=": tuple.__ge__, "<=": tuple.__le__, ">": tuple.__gt__, "<": tuple.__lt__, "==": tuple.__eq__}
    have = _version_tuple(version)
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        op = next(o for o in (">=", "<=", "==", ">", "<") if clause.startswith(o))
        if not ops[op](have, _version_tuple(clause[len(op) :])):
            return False
    return True


def matches(entry: Mapping[str, Any], case: Case, stage: str, torch_version: str) -> bool:
    """Whether a table entry selects this case and stage. Fields: loss, stage, dtype, device, regime, shape,
    options (a table of option values), torch (a version range)."""
    fields = {
        "loss": case.loss,
        "stage": stage,
        "dtype": case.dtype,
        "device": case.device,
        "regime": case.regime,
    }
    if any(key in entry and not _is(value, entry[key]) for key, value in fields.items()):
        return False
    if "shape" in entry and list(case.shape) not in entry["shape"]:
        return False
    opts = case.opts
    if any(not _is(opts.get(name), wanted) for name, wanted in entry.get("options", {}).items()):
        return False
    return "torch" not in entry or torch_version_in(torch_version, entry["torch"])


def specificity(entry: Mapping[str, Any]) -> int:
    """How many fields an entry pins down: the most specific matching entry wins."""
    return sum(k in entry for k in ("loss", "stage", "dtype", "device", "regime", "shape", "torch")) + len(
        entry.get("options", {})
    )
