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
        """pass; deviation (a mismatch that a registered deviation explains); or fail."""
        if self.verdict.ok:
            return "pass"
        return "deviation" if self.deviation and self.deviation.explains(self.verdict) else "fail"


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
        if actual[stage] is None and expected[stage] is None:  # a stage neither side has
            continue
        tolerance = tolerance_for(case, stage)
        term_scale = case.spec.term_scales.get(stage)
        verdict = compare(
            stage,
            expected[stage],
            actual[stage],
            case.dtype,
            tolerance.eps,
            term_scale(data.arrays, data.keywords) if term_scale else 0.0,
        )
        if problem is not None:
            verdict.problem = problem
        stages.append(StageResult(verdict, tolerance, deviation_for(case, stage, verdict)))
    return CaseResult(data, stages)
