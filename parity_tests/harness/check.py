"""One case end to end: inputs, both sides, a Verdict per stage under its tolerance and known deviation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from parity_tests.harness.cases import CaseData
from parity_tests.harness.compare import Verdict, compare
from parity_tests.harness.runner import STAGES, run_impl, run_torch
from parity_tests.harness.tables import Deviation, Tolerance, deviation_for, tolerance_for


@dataclass
class StageResult:
    verdict: Verdict
    tolerance: Tolerance
    deviation: Deviation | None  # a registered torch deviation selecting this stage: it is expected to fail
    # A cross-device stage whose `deviation` is one side's registered deviation from the truth: it explains any
    # disagreement between the devices.
    cross_device: bool = False

    @property
    def status(self) -> str:
        """pass; deviation (a mismatch that a registered deviation explains); or fail."""
        if self.verdict.ok:
            return "pass"
        if self.deviation and (self.cross_device or self.deviation.explains(self.verdict)):
            return "deviation"
        return "fail"


@dataclass
class CaseResult:
    data: CaseData
    stages: list[StageResult]

    @property
    def case(self):
        return self.data.case

    @property
    def failures(self) -> list[StageResult]:
        """The stages that fail the test: mismatches that no registered deviation explains."""
        return [s for s in self.stages if s.status == "fail"]


BASELINE = "cpu"  # the device every other device is compared with


def versus(stage: str) -> str:
    """The name of a cross-device stage: torch on the case's device against torch on the baseline."""
    return f"{stage} vs {BASELINE}"


def check(data: CaseData, impl: ModuleType) -> CaseResult:
    """Each stage of torch on the case's device against the implementation; on a device other than the baseline,
    also each stage of torch there against torch on the baseline (`versus`), under its own tolerance."""
    case = data.case
    actual = run_torch(data)
    try:
        expected = run_impl(data, impl)
        problem = None
    except Exception as exc:  # the implementation failed on an input torch accepts: every stage fails
        expected = dict.fromkeys(STAGES)
        problem = f"the implementation raised {type(exc).__name__}: {exc}"
    term_scales = {stage: scale(data.arrays, data.keywords) for stage, scale in case.spec.term_scales.items()}
    stages = [
        _parity(data, stage, expected[stage], actual[stage], problem, term_scales.get(stage, 0.0))
        for stage in STAGES
    ]
    stages = [s for s in stages if s is not None]
    if case.device != BASELINE:
        baseline = run_torch(data, BASELINE)
        on_baseline = dataclasses.replace(data, case=dataclasses.replace(case, device=BASELINE))
        for here in list(stages):
            stage = here.verdict.stage
            there = _parity(
                on_baseline, stage, expected[stage], baseline[stage], problem, term_scales.get(stage, 0.0)
            )
            stages.append(_consistency(data, here, there, baseline[stage], actual[stage]))
    return CaseResult(data, stages)


def _parity(
    data: CaseData, stage: str, expected, actual, problem: str | None, term_scale: float
) -> StageResult | None:
    if actual is None and expected is None:  # a stage neither side has
        return None
    case = data.case
    tolerance = tolerance_for(case, stage)
    verdict = compare(stage, expected, actual, case.dtype, tolerance.eps, term_scale)
    if problem is not None:
        verdict.problem = problem
    return StageResult(verdict, tolerance, deviation_for(case, stage, verdict))


def _consistency(data: CaseData, here: StageResult, there: StageResult, baseline, actual) -> StageResult:
    """torch on the device against torch on the baseline, judged at the scale of the truth (the parity
    verdict's). A disagreement is a registered deviation's where one side deviates from the truth in that
    registered way and the other side deviates in a registered way too or is right, or where a deviation
    registered for the cross-device stage itself explains it; otherwise a disagreement beyond the tolerance
    fails."""
    case, stage = data.case, versus(here.verdict.stage)
    tolerance = tolerance_for(case, stage)
    scale = here.verdict.scale if np.isfinite(here.verdict.scale) else 0.0
    verdict = compare(stage, baseline, actual, case.dtype, tolerance.eps, scale)
    sides = (here, there)
    if (
        not verdict.ok
        and all(s.status != "fail" for s in sides)
        and any(s.status == "deviation" for s in sides)
    ):
        side = next(s for s in sides if s.status == "deviation")
        return StageResult(verdict, tolerance, side.deviation, cross_device=True)
    return StageResult(verdict, tolerance, deviation_for(case, stage, verdict))
