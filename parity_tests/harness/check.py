"""One case, three parties: the truth, torch and the candidate, each stage judged under its tolerance.

*Truth* is the NumPy float64 reference on the case's rounded inputs, always computed. *torch* is judged against
the truth; a registered deviation (deviations.toml) may excuse torch, and only torch. The *candidate* (`--impl`)
is judged against the truth too, and passes a stage when

1. its error is within the dtype's tolerance, or
2. torch is within its tolerance there and the candidate's error is at most K times torch's own (two correct
   implementations that round differently), or
3. it equals torch's value within the tolerance (parity with torch; said so where torch deviates from the truth).

Where the candidate is the reference itself (the default), the truth is the candidate and only torch is judged.
A stage the candidate does not implement is *unsupported*: never a failure unless `--require-all` says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parity_tests.harness import candidate as candidates
from parity_tests.harness.candidate import Candidate, Outcome
from parity_tests.harness.cases import CaseData
from parity_tests.harness.compare import Verdict, compare, failed
from parity_tests.harness.oracle import truth
from parity_tests.harness.runner import run_torch, run_truth
from parity_tests.harness.stages import STAGES
from parity_tests.harness.tables import (
    Deviation,
    Tolerance,
    candidate_factor,
    deviation_for,
    evidence_of,
    tolerance_for,
)


@dataclass
class StageResult:
    stage: str
    tolerance: Tolerance
    torch: Verdict  # torch against the truth
    # a registered torch deviation: the one that explains torch's mismatch, or else one that selects the stage
    deviation: Deviation | None = None
    explained: bool = False  # whether `deviation` explains torch's mismatch here
    # A cross-device stage whose `deviation` is one side's registered deviation from the truth: it explains any
    # disagreement between the devices.
    cross_device: bool = False
    candidate: Verdict | None = None  # the candidate against the truth; None where the candidate is the truth
    against_torch: Verdict | None = None  # the candidate against torch, at the truth's scale
    unsupported: str | None = None  # why the candidate has no value for this stage
    factor: float = 0.0  # K of rule 2 (tolerances.toml)
    # Why torch has no value for this stage (it cannot differentiate twice here): torch is not judged on it.
    torch_unavailable: str | None = None

    @property
    def verdict(self) -> Verdict:
        """The verdict that decides this stage: the candidate's where it fails, else torch's."""
        if self.candidate is not None and self.candidate_status == "fail" and self.torch_status != "fail":
            return self.candidate
        return self.torch

    @property
    def torch_status(self) -> str:
        """pass; deviation (a mismatch that a registered deviation explains); unavailable (torch has no value for
        this stage: not judged); or fail."""
        if self.torch_unavailable is not None:
            return "unavailable"
        if self.torch.ok:
            return "pass"
        if self.deviation and (self.cross_device or self.explained):
            return "deviation"
        return "fail"

    @property
    def candidate_status(self) -> str:
        """truth (the candidate is the reference); unsupported; pass; within-k; parity; or fail."""
        if self.unsupported is not None:
            return "unsupported"
        c = self.candidate
        if c is None:
            return "truth"
        if c.ok:
            return "pass"
        if c.problem:
            return "fail"
        t = self.torch
        if (
            self.torch_status == "pass"
            and not (c.nan_mismatches or c.inf_mismatches)
            and c.finite_error <= self.factor * t.finite_error
        ):
            return "within-k"
        if self.against_torch is not None and self.against_torch.ok:
            return "parity"
        return "fail"

    @property
    def status(self) -> str:
        """The stage's outcome: fail (either side is wrong), unsupported, unavailable (torch has no value and the
        candidate is the truth: nothing judged), deviation (torch, registered), pass."""
        if self.torch_status == "fail" or self.candidate_status == "fail":
            return "fail"
        if self.candidate_status == "unsupported":
            return "unsupported"
        if self.torch_status == "unavailable" and self.candidate_status == "truth":
            return "unavailable"  # nothing was judged
        return "deviation" if self.torch_status == "deviation" else "pass"

    @property
    def wrong(self) -> str | None:
        """Which side is wrong: torch, candidate, both, or None."""
        torch_wrong, candidate_wrong = self.torch_status == "fail", self.candidate_status == "fail"
        if torch_wrong and candidate_wrong:
            return "both"
        return "torch" if torch_wrong else "candidate" if candidate_wrong else None


@dataclass
class CaseResult:
    data: CaseData
    stages: list[StageResult]
    candidate: Candidate
    # Registered deviations that name this case as evidence and no longer explain any of its stages: torch may have
    # been fixed there.
    lost_evidence: list[Deviation] = field(default_factory=list)

    @property
    def case(self):
        return self.data.case

    @property
    def failures(self) -> list[StageResult]:
        """The stages that fail: a wrong candidate, or a torch mismatch that no registered deviation explains."""
        return [s for s in self.stages if s.status == "fail"]

    @property
    def failed(self) -> bool:
        return bool(self.failures or self.lost_evidence)

    @property
    def outcome(self) -> str:
        """failed, unsupported (nothing failed; the candidate lacks a stage), deviation, or passed."""
        statuses = {s.status for s in self.stages}
        if self.failed:
            return "failed"
        return next((s for s in ("unsupported", "deviation") if s in statuses), "passed")


BASELINE = "cpu"  # the device every other device is compared with


def versus(stage: str) -> str:
    """The name of a cross-device stage: torch on the case's device against torch on the baseline."""
    return f"{stage} vs {BASELINE}"


def check(data: CaseData, candidate: Any = truth) -> CaseResult:
    """The truth, torch on the case's device and the candidate on the same rounded inputs, each stage judged; on a
    device other than the baseline, also each stage of torch there against torch on the baseline (`versus`)."""
    case = data.case
    candidate = candidates.wrap(candidate)
    expected = run_truth(data)
    actual = run_torch(data)
    given = None if candidate.is_truth else candidates.run(candidate, data, expected)
    term_scales = {
        stage: scale(data.arrays, data.keywords, expected) for stage, scale in case.spec.term_scales.items()
    }
    unavailable = getattr(actual, "unavailable", {})
    stages = [
        _judge(
            data,
            stage,
            expected[stage],
            actual[stage],
            given and given[stage],
            term_scales.get(stage, 0.0),
            unavailable.get(stage),
        )
        for stage in STAGES
        if expected[stage] is not None or actual[stage] is not None
    ]
    if case.device != BASELINE:
        baseline = run_torch(data, BASELINE)
        on_baseline = dataclasses.replace(data, case=dataclasses.replace(case, device=BASELINE))
        for here in list(stages):
            stage = here.stage
            if here.torch_unavailable or baseline[stage] is None:
                continue  # torch has no value on one of the devices: nothing to compare
            there = _judge(
                on_baseline, stage, expected[stage], baseline[stage], None, term_scales.get(stage, 0.0)
            )
            stages.append(_consistency(data, here, there, baseline[stage], actual[stage]))
    result = CaseResult(data, stages, candidate)
    result.lost_evidence = [
        d
        for d in evidence_of(case.id)
        if not any(s.torch_status == "deviation" and s.deviation.id == d.id for s in stages)
    ]
    return result


def _judge(
    data: CaseData,
    stage: str,
    expected: np.ndarray | None,
    actual: np.ndarray | None,
    given: Outcome | None,
    term_scale: float,
    torch_unavailable: str | None = None,
) -> StageResult:
    case = data.case
    tolerance = tolerance_for(case, stage)
    if torch_unavailable is not None:
        verdict = failed(stage, case.dtype, tolerance.eps, torch_unavailable)
        deviation, explained = None, False
    else:
        verdict = compare(
            stage, expected, actual, case.dtype, tolerance.eps, term_scale, names=("truth", "torch")
        )
        deviation, explained = deviation_for(data, stage, verdict, expected, actual)
    result = StageResult(
        stage,
        tolerance,
        verdict,
        deviation,
        explained,
        factor=candidate_factor(case, stage),
        torch_unavailable=torch_unavailable,
    )
    if given is None:  # the candidate is the truth
        return result
    if given.unsupported is not None:
        result.unsupported = given.unsupported
        return result
    if given.problem is not None:
        result.candidate = failed(
            stage, case.dtype, tolerance.eps, given.problem, names=("truth", "candidate")
        )
        return result
    result.candidate = compare(
        stage, expected, given.value, case.dtype, tolerance.eps, term_scale, names=("truth", "candidate")
    )
    if not result.candidate.ok and actual is not None:
        # parity with torch: torch's value as the expected one, at the truth's scale
        scale = result.torch.scale if np.isfinite(result.torch.scale) else 0.0
        result.against_torch = compare(
            stage,
            actual,
            given.value,
            case.dtype,
            tolerance.eps,
            max(scale, term_scale),
            names=("torch", "candidate"),
        )
    return result


def _consistency(data: CaseData, here: StageResult, there: StageResult, baseline, actual) -> StageResult:
    """torch on the device against torch on the baseline, judged at the scale of the truth (the parity
    verdict's). A disagreement is a registered deviation's where one side deviates from the truth in that
    registered way and the other side deviates in a registered way too or is right, or where a deviation
    registered for the cross-device stage itself explains it; otherwise a disagreement beyond the tolerance
    fails."""
    case, stage = data.case, versus(here.stage)
    tolerance = tolerance_for(case, stage)
    scale = here.torch.scale if np.isfinite(here.torch.scale) else 0.0
    verdict = compare(
        stage, baseline, actual, case.dtype, tolerance.eps, scale, names=(BASELINE, case.device)
    )
    sides = (here, there)
    if (
        not verdict.ok
        and all(s.torch_status != "fail" for s in sides)
        and any(s.torch_status == "deviation" for s in sides)
    ):
        side = next(s for s in sides if s.torch_status == "deviation")
        return StageResult(stage, tolerance, verdict, side.deviation, True, cross_device=True)
    return StageResult(stage, tolerance, verdict, *deviation_for(data, stage, verdict, baseline, actual))
