"""What a failing parity test says about each failing case: what went wrong, which side is wrong, both errors
side by side, and the replay command."""

from __future__ import annotations

from parity_tests.harness.check import CaseResult, StageResult

_SIDES = {
    "candidate": "the candidate is wrong",
    "torch": "torch is wrong (no registered deviation explains it)",
    "both": "both the candidate and torch are wrong",
}


def _errors(s: StageResult) -> str:
    """'candidate 12.1 eps, torch 3.0 eps (tolerance 8 eps of float32, k 2)'."""
    parts = []
    if s.candidate is not None and not s.candidate.problem:
        parts.append(f"candidate {s.candidate.error:.3g} eps")
    if not s.torch.problem:
        parts.append(f"torch {s.torch.error:.3g} eps")
    k = f", k {s.factor:g}" if s.candidate is not None else ""
    return f"{', '.join(parts)} (tolerance {s.tolerance.eps:g} eps of {s.torch.dtype}{k}, from {s.tolerance.source})"


def stage_lines(s: StageResult) -> list[str]:
    lines = [f"  {s.stage}: {_SIDES.get(s.wrong or '', s.status)}: {_errors(s)}"]
    if s.candidate_status == "fail":
        lines.append("    " + s.candidate.describe().replace("\n", "\n    "))
        if s.against_torch is not None and not s.against_torch.problem:
            lines.append(f"    against torch's own value: {s.against_torch.error:.3g} eps")
    if s.torch_status == "fail":
        lines.append("    " + s.torch.describe())
        if s.deviation:
            lines.append(
                f"    (registered deviation {s.deviation.id} selects this stage but does not explain this mismatch)"
            )
    return lines


def failure_message(result: CaseResult, replay: str) -> str:
    case = result.case
    lines = [
        f"{case.loss} {case.opts} shape={list(case.shape)} regime={case.regime} "
        f"dtype={case.dtype} device={case.device}"
    ]
    for stage in result.failures:
        lines += stage_lines(stage)
    for deviation in result.lost_evidence:
        lines.append(
            f"  registered deviation {deviation.id} names this case as evidence, but torch no longer deviates here: "
            "if torch was fixed, narrow or remove it in deviations.toml"
        )
    lines.append(f"  replay: {replay}")
    return "\n".join(lines)
