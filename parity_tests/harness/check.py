"""One case end to end: inputs, both sides, a Verdict per stage under its tolerance and known deviation."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from parity_tests.harness.cases import CaseData
from parity_tests.harness.compare import Verdict, compare
from parity_tests.harness.runner import STAGES, run_impl, run_torch
from parity_tests.harness.tables import Deviation, Tolerance, deviation_for, tolerance_for


@dataclass
class StageResult:
    verdict: Verdict
    tolerance: Tolerance
    deviation: Deviation | None  # a registered torch deviation selecting this stage: it is expected to fail

    @property
    def status(self) -> str:
        """pass, fail (unexpected), deviation (a registered one, reproduced) or fixed (registered, not seen)."""
        if self.deviation is None:
            return "pass" if self.verdict.ok else "fail"
        return "fixed" if self.verdict.ok else "deviation"


@dataclass
class CaseResult:
    data: CaseData
    stages: list[StageResult]

    @property
    def case(self):
        return self.data.case

    @property
    def failures(self) -> list[StageResult]:
        """The stages that fail the test: unexpected mismatches, and registered deviations that did not show."""
        return [s for s in self.stages if s.status in ("fail", "fixed")]


def check(data: CaseData, impl: ModuleType) -> CaseResult:
    case = data.case
    actual = run_torch(data)
    try:
        expected = run_impl(data, impl)
        problem = None
    except Exception as exc:  # the implementation failed on an input torch accepts: every stage fails
        expected = dict.fromkeys(STAGES)
        problem = f"the implementation raised {type(exc).__name__}: {exc}"
    stages = []
    for stage in STAGES:
        if actual[stage] is None and expected[stage] is None and problem is None:
            continue
        if problem is not None and actual[stage] is None:
            continue
        tolerance = tolerance_for(case, stage)
        verdict = compare(stage, expected[stage], actual[stage], case.dtype, tolerance.eps)
        if problem is not None:
            verdict.problem = problem
        stages.append(StageResult(verdict, tolerance, deviation_for(case, stage)))
    return CaseResult(data, stages)
