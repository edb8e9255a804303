"""Result lines: what a run keeps of each case for its summary (one JSON line per case, harness/run.py)."""

from __future__ import annotations

from typing import Any

from parity_tests.harness.cases import Case
from parity_tests.harness.check import CaseResult, StageResult
from parity_tests.harness.record import cause


def features(case: Case) -> list[str]:
    """The options and input forms a case exercises, for the coverage table: what a candidate may not support."""
    o = case.opts
    found = [f"target: {o['target']}"]
    for name in ("weight", "pos_weight"):
        if o.get(name):
            found.append(name if o[name] == "class" else f"{name}: {o[name]}")
    if o.get("target") == "index" and o.get("ignore_index", -100) != -100:
        found.append(f"ignore_index: {o['ignore_index']}")
    if o.get("label_smoothing"):
        found.append("label_smoothing")
    found.append(f"reduction: {o['reduction']}")
    rank = len(case.shape)
    class_loss = "ignore_index" in case.spec.options
    if (class_loss and rank == 1) or (not class_loss and rank == 0):
        found.append("unbatched")
    if class_loss and rank >= 3:
        found.append("K-dim")
    if 0 in case.shape:
        found.append("empty")
    found.append(f"dtype: {case.dtype}")
    return found


def _side(verdict) -> dict[str, Any] | None:
    if verdict is None:
        return None
    return {
        "error": verdict.error,
        "index": verdict.worst_index,
        "expected": verdict.expected,
        "actual": verdict.actual,
        "problem": verdict.problem,
        "scale": verdict.scale,
    }


def stage_row(s: StageResult, detailed: bool) -> dict[str, Any]:
    row = {
        "stage": s.stage,
        "status": s.status,
        "wrong": s.wrong,
        "torch": s.torch_status,
        "torch_error": s.torch.error if not s.torch.problem else None,
        "candidate": s.candidate_status,
        "candidate_error": s.candidate.error if s.candidate is not None and not s.candidate.problem else None,
        "tolerance": s.tolerance.eps,
        "k": s.factor,
        "deviation": s.deviation.id if s.deviation and s.explained else None,
        "unsupported": s.unsupported,
        "torch_unavailable": s.torch_unavailable,
        "cause": cause(s) if s.status == "fail" else None,
    }
    if detailed:
        row.update(
            torch_detail=_side(s.torch),
            candidate_detail=_side(s.candidate),
            against_torch=_side(s.against_torch),
            source=s.tolerance.source,
        )
    return row


def parity_row(
    result: CaseResult, item: str, record: str | None = None, replay: str | None = None
) -> dict[str, Any]:
    """One case's line. Failing stages carry their values, index and tolerance (the HTML report shows them)."""
    case = result.case
    row: dict[str, Any] = {
        "case_id": case.id,
        "item": item,
        "loss": case.loss,
        "dtype": case.dtype,
        "device": case.device,
        "features": features(case),
        "outcome": result.outcome,
        "stages": [stage_row(s, detailed=s.status == "fail") for s in result.stages],
    }
    if result.lost_evidence:
        row["lost_evidence"] = [d.id for d in result.lost_evidence]
    if record:
        row.update(record=record, replay=replay)
    return row
