"""Cases that never finished: a time limit that interrupted one, a process that died running one.

Each leaves a record like a failing case's (outcome "timeout" or "crash", no verdicts) and an incident row for the
summary. The case a dead process was running is the last one its journal shows starting and not ending; its inputs
are rebuilt from the case (grid cases are seeded) or read from the journal's snapshot (fuzz cases).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from parity_tests.harness.candidate import Candidate
from parity_tests.harness.cases import Case, CaseData, build
from parity_tests.harness.record import replay_command, write_incident


def journal_fields(data: CaseData, item: str, snapshot: Path | None) -> dict[str, Any]:
    """What a journal's start line keeps of a case, so that a crash record can be written from it alone."""
    fields: dict[str, Any] = {"item": item, "spec": data.case.to_json(), "keywords": data.keywords}
    if snapshot is not None:  # inputs not rebuilt from the case's seed (the fuzz's): saved before anyone runs
        np.savez(snapshot, **data.arrays)
        fields["inputs"] = str(snapshot)
    return fields


def last_started(journal: Path) -> dict[str, Any] | None:
    """The journal's last case that started and did not end."""
    if not journal.exists():
        return None
    open_cases: dict[str, dict[str, Any]] = {}
    for line in journal.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by the crash
            continue
        if entry.get("event") == "start":
            open_cases[entry["case"]] = entry
        else:
            open_cases.pop(entry.get("case"), None)
    return list(open_cases.values())[-1] if open_cases else None


def _data(entry: dict[str, Any]) -> CaseData:
    case = Case.from_json(entry["spec"])
    if "inputs" in entry:
        with np.load(entry["inputs"]) as stored:
            return CaseData(case, {k: stored[k] for k in stored.files}, entry["keywords"])
    return build(case)


def record_crash(run, worker: str | None, item: str) -> str | None:
    """After a worker died running `item`: the record of the case it was running; returns lines for the report."""
    entry = last_started(run.dir / "journal" / f"{worker}.jsonl") if worker else None
    if entry is None:
        run.add_row(
            "incident", {"outcome": "crash", "item": item, "case_id": None, "message": "no case was running"}
        )
        return None
    message = f"the process died while running case {entry['case']} (worker {worker})"
    return _write(run, _data(entry), item, "crash", message)


def record_timeout(
    run, data: CaseData, candidate: Candidate, item: str, call: str | None, seconds: Any
) -> str:
    """After a time limit interrupted a case: its record; returns lines for the failure message."""
    party = f"the candidate's {call}" if call else "torch or the truth"
    message = f"timed out after {seconds} s: {party} did not return on case {data.case.id}"
    return _write(run, data, item, "timeout", message, candidate)


def _write(
    run, data: CaseData, item: str, outcome: str, message: str, candidate: Candidate | None = None
) -> str:
    candidate = candidate or run.candidate
    path = write_incident(data, candidate, run.failures_dir, outcome, message)
    replay = replay_command(path, candidate)
    run.add_row(
        "incident",
        {
            "outcome": outcome,
            "item": item,
            "case_id": data.case.id,
            "loss": data.case.loss,
            "message": message,
            "record": str(path),
            "replay": replay,
        },
    )
    return f"{message}\n  record: {path}\n  replay: {replay}"
