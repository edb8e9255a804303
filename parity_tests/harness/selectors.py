"""Matching table entries (tolerances, deviations) to cases: a field left out matches everything, a list
matches any of its values."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from parity_tests.harness.cases import Case

# What a case is, not which grid shape it has: a deviation selects by its cause (conditions.py), so that the same
# torch error is explained on any shape that has it.
SELECTOR_FIELDS = {"loss", "stage", "dtype", "device", "classes", "options", "torch"}


def _is(value: Any, wanted: Any) -> bool:
    return value in wanted if isinstance(wanted, list) else value == wanted


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("+")[0].split(".")[:3] if part.isdigit())


@cache
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
    """Whether a table entry selects this case and stage. Fields: loss, stage, dtype, device, classes ([lowest,
    highest] class count of the input), options (a table of option values), torch (a version range)."""
    fields = {"loss": case.loss, "stage": stage, "dtype": case.dtype, "device": case.device}
    if any(key in entry and not _is(value, entry[key]) for key, value in fields.items()):
        return False
    if "classes" in entry:
        classes = class_count(case)
        if classes is None or not entry["classes"][0] <= classes <= entry["classes"][1]:
            return False
    opts = case.opts
    if any(not _is(opts.get(name), wanted) for name, wanted in entry.get("options", {}).items()):
        return False
    return "torch" not in entry or torch_version_in(torch_version, entry["torch"])


def class_count(case: Case) -> int | None:
    """The class count of a class-index/probability loss (dim 0 of a 1-D input, else dim 1); None otherwise."""
    if "ignore_index" not in case.spec.options or not case.shape:
        return None
    return case.shape[0 if len(case.shape) == 1 else 1]


def specificity(entry: Mapping[str, Any]) -> int:
    """How many fields an entry pins down: the most specific matching entry wins."""
    fields = ("loss", "stage", "dtype", "device", "classes", "torch", "condition", "terms")
    return sum(k in entry for k in fields) + len(entry.get("options", {}))
