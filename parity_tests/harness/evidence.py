"""Where each registered torch deviation must still show: its evidence.

A deviation in deviations.toml names `evidence_cases` (grid cases of any profile, by the id the suite prints) and
may write out `reproduction`s (small inputs, the minimal cases a fuzz search shrank to). test_deviations.py runs
them all where their device and dtype are selected and the installed torch is in the deviation's version range; a
grid run that includes an evidence case checks it too (check.py). Where torch no longer deviates, the run fails:
torch may have been fixed, and the registry must say so.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch

from parity_tests.harness.cases import PROFILES, Case, CaseData, build, grid, output_shape
from parity_tests.harness.devices import KNOWN
from parity_tests.harness.dtypes import round_to
from parity_tests.harness.selectors import torch_version_in
from parity_tests.harness.specs import SPECS
from parity_tests.harness.tables import Deviation, deviations

REGIME = "reproduction"


@dataclass(frozen=True)
class Evidence:
    deviation: Deviation
    label: str  # the grid case's id, or "<deviation>-reproduction-<n>"
    loss: str
    dtype: str
    device: str
    entry: Any  # a grid case id (str) or a reproduction table

    def data(self) -> CaseData:
        if isinstance(self.entry, str):
            return build(grid_case(self.entry))
        return reproduction(self.loss, self.entry)


@cache
def _grid_index(profile: str, device: str) -> dict[str, Case]:
    return {c.id: c for c in grid(profile, [device])}


def _device_of(case_id: str) -> str | None:
    return case_id.rsplit("-", 2)[-2] if case_id.count("-") >= 2 else None


def grid_case(case_id: str) -> Case:
    """The grid case (of any profile and device) with this id; KeyError if none has it."""
    # Only the grids of the id's device (an id ends with -<device>-s<seed>), the smallest first and each built when
    # needed: one index of every profile and device took seconds of each worker's collection.
    device = _device_of(case_id)
    for profile in PROFILES:
        found = _grid_index(profile, device).get(case_id) if device in KNOWN else None
        if found is not None:
            return found
    raise KeyError(f"no grid case has the id {case_id!r}")


def _options(loss: str, arrays: Mapping[str, np.ndarray], keywords: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's option axes that describe these inputs (as the grid would name them)."""
    x, target = arrays["input"], arrays["target"]
    binary = "ignore_index" not in SPECS[loss].options
    options: dict[str, Any] = {"reduction": keywords.get("reduction", "mean")}
    if binary:
        options["target"] = "binary" if np.isin(target, (0.0, 1.0)).all() else "soft"
        for name in SPECS[loss].options:
            if name in ("weight", "pos_weight"):
                given = arrays.get(name)
                options[name] = (
                    None if given is None else "elementwise" if given.shape == x.shape else "broadcast"
                )
    else:
        options["target"] = "index" if target.dtype.kind in "iu" else "prob"
        options["weight"] = "class" if "weight" in arrays else None
        options["ignore_index"] = keywords.get("ignore_index", -100)
        if "label_smoothing" in SPECS[loss].options:
            options["label_smoothing"] = max(keywords.get("label_smoothing", 0.0), 0.0)
    return options


def reproduction(loss: str, entry: Mapping[str, Any]) -> CaseData:
    """A reproduction's inputs as a case: arrays written out, rounded to its dtype (grad_output and grad_grad_input:
    ones unless given)."""
    dtype, keywords = entry["dtype"], dict(entry.get("keywords", {}))
    arrays: dict[str, np.ndarray] = {}
    for name in ("input", "target", "weight", "pos_weight", "grad_output", "grad_grad_input"):
        if name in entry:
            given = entry[name]
            # written out, or { shape = [...], fill = v } for a large constant array
            value = (
                np.full(given["shape"], given["fill"]) if isinstance(given, Mapping) else np.asarray(given)
            )
            arrays[name] = (
                value.astype(np.int64)
                if value.dtype.kind in "iu"
                else round_to(value.astype(np.float64), dtype)
            )
    case = Case(
        loss,
        tuple(sorted(_options(loss, arrays, keywords).items())),
        arrays["input"].shape,
        REGIME,
        dtype,
        entry.get("device", "cpu"),
    )
    if "grad_output" not in arrays:
        arrays["grad_output"] = np.ones(output_shape(case, arrays))
    if "grad_grad_input" not in arrays:
        arrays["grad_grad_input"] = np.ones(arrays["input"].shape)
    seed = 0
    for name in sorted(arrays):
        seed = zlib.crc32(
            np.ascontiguousarray(arrays[name]).tobytes() + str(arrays[name].shape).encode(), seed
        )
    return CaseData(
        Case(case.loss, case.options, case.shape, REGIME, dtype, case.device, seed), arrays, keywords
    )


def evidence(
    devices: list[str], dtypes: list[str] | None = None, losses: list[str] | None = None
) -> Iterator[Evidence]:
    """Every deviation's evidence that this run can check: on these devices, dtypes and losses, and only where the
    installed torch is in the deviation's version range."""
    for d in deviations():
        if "torch" in d.entry and not torch_version_in(torch.__version__, d.entry["torch"]):
            continue
        found = [
            Evidence(d, case_id, c.loss, c.dtype, c.device, case_id)
            for case_id in d.entry.get("evidence_cases", [])
            if _device_of(case_id) in devices
            for c in (grid_case(case_id),)
        ]
        losses_of = d.entry["loss"] if isinstance(d.entry.get("loss"), list) else [d.entry.get("loss")]
        for i, entry in enumerate(d.entry.get("reproduction", []), 1):
            loss = entry.get("loss", losses_of[0])
            found.append(
                Evidence(
                    d, f"{d.id}-reproduction-{i}", loss, entry["dtype"], entry.get("device", "cpu"), entry
                )
            )
        for e in found:
            if (
                e.device in devices
                and (not dtypes or e.dtype in dtypes)
                and (losses is None or e.loss in losses)
            ):
                yield e
