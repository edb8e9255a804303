"""Failing-case records, the per-run summary, and the pytest plugin that gathers them.

Each failing case writes `<report-dir>/failures/<case-id>.json` and `.npz` (the exact inputs). Every parity case
appends one line to its worker's own `<report-dir>/.results/<worker>.jsonl` (workers never share a file); the
controlling process merges those into `summary.md` at the end of the run.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from parity_tests.harness import devices
from parity_tests.harness.cases import CaseData
from parity_tests.harness.check import CaseResult, StageResult


def versions(device: str) -> dict[str, str]:
    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device_name": devices.name(device),
    }


def repro_command(record: Path) -> str:
    return f"python -m parity_tests.repro {shlex.quote(str(record))}"


def cause(stage: StageResult) -> str:
    v = stage.verdict
    if v.problem:
        return v.problem.split(":")[0]
    if v.nan_mismatches:
        return "NaN pattern differs"
    if v.inf_mismatches:
        return "inf pattern differs"
    return "over tolerance"


MAX_NPZ_BYTES = 256 << 20


def write_record(result: CaseResult, impl: str, report_dir: Path) -> Path:
    """The JSON record and the npz of inputs of a failing case; returns the JSON's path."""
    case = result.case
    failures = result.failures
    first = failures[0]
    folder = report_dir / "failures"
    folder.mkdir(parents=True, exist_ok=True)
    json_path, npz_path = folder / f"{case.id}.json", folder / f"{case.id}.npz"
    # A device-scale case's inputs are GBs: the record names its case instead, whose seed rebuilds them exactly.
    stored = sum(a.nbytes for a in result.data.arrays.values()) <= MAX_NPZ_BYTES
    if stored:
        np.savez(npz_path, **result.data.arrays)
    v = first.verdict
    record = {
        "case_id": case.id,
        **case.to_json(),
        "stage": v.stage,
        "cause": cause(first),
        "max_abs_error": v.max_abs_error,
        "max_rel_error": v.max_rel_error,
        "error_eps": v.error,
        "ulps": v.ulps,
        "worst_index": v.worst_index,
        "expected": v.expected,
        "actual": v.actual,
        "mismatches": v.mismatches,
        "total": v.total,
        "nan_mismatches": v.nan_mismatches,
        "inf_mismatches": v.inf_mismatches,
        "scale": v.scale,
        "problem": v.problem,
        "tolerance": {
            "eps": v.tolerance,
            "source": first.tolerance.source,
            "evidence": first.tolerance.evidence,
        },
        "deviation": first.deviation.id if first.deviation else None,
        "stages": [{**s.verdict.to_json(), "status": s.status} for s in result.stages],
        "keywords": result.data.keywords,
        "impl": impl,
        "versions": versions(case.device),
        "inputs_file": npz_path.name if stored else None,
        "repro": repro_command(json_path),
    }
    json_path.write_text(json.dumps(record, indent=2, default=_jsonable) + "\n")
    return json_path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in a record")


def load_record(path: Path) -> tuple[dict[str, Any], CaseData]:
    """A record and the exact inputs it was written with (from its npz, or rebuilt from its case's seed where the
    inputs were too large to store)."""
    from parity_tests.harness.cases import Case, build

    record = json.loads(path.read_text())
    case = Case.from_json(record)
    if record["inputs_file"] is None:
        return record, build(case)
    with np.load(path.parent / record["inputs_file"]) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return record, CaseData(case, arrays, record["keywords"])


def failure_message(result: CaseResult, record: Path) -> str:
    case = result.case
    lines = [
        f"{case.loss} {case.opts} shape={list(case.shape)} regime={case.regime} "
        f"dtype={case.dtype} device={case.device}"
    ]
    for stage in result.failures:
        lines.append("  " + stage.verdict.describe() + f" [tolerance from {stage.tolerance.source}]")
        if stage.deviation:
            lines.append(
                f"  (registered deviation {stage.deviation.id} selects this stage but does not explain "
                "this mismatch)"
            )
    lines.append(f"  replay: {repro_command(record)}")
    return "\n".join(lines)


def summary_row(result: CaseResult, explained_only: bool = False) -> dict[str, Any]:
    """One case's line for the summary. `explained_only`: name a deviation only where it explains the stage (a
    fuzz search reports a few chosen cases, not every case a deviation selects, so a deviation that selects a
    stage of those without explaining it says nothing about whether torch still deviates)."""
    case = result.case
    return {
        "case_id": case.id,
        "loss": case.loss,
        "dtype": case.dtype,
        "device": case.device,
        "stages": [
            {
                "stage": s.verdict.stage,
                "status": s.status,
                "error": s.verdict.error,
                "tolerance": s.verdict.tolerance,
                "cause": cause(s) if s.status != "pass" else None,
                "deviation": s.deviation.id
                if s.deviation and (s.status == "deviation" or not explained_only)
                else None,
            }
            for s in result.stages
        ],
    }


class ReportPlugin:
    """Gathers parity results per worker and writes the run's summary on the controlling process."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.dir = Path(config.getoption("--report-dir"))
        self.worker = getattr(config, "workerinput", {}).get("workerid")
        self.rows_file = self.dir / ".results" / f"{self.worker or 'main'}.jsonl"
        self.header: dict[str, Any] = {}
        self.unreproduced: list[str] = []
        self.absent: list[str] = []  # requested devices that this machine does not have
        self._rows = None  # this process's result-line file, opened at the first row

    def clear(self) -> None:
        """Forget the previous run's records (controller only, before any worker starts)."""
        for sub in ("failures", ".results"):
            folder = self.dir / sub
            if folder.is_dir():
                for f in folder.iterdir():
                    f.unlink()

    def add(self, result: CaseResult, explained_only: bool = False) -> None:
        self.add_row("parity", summary_row(result, explained_only))

    def add_row(self, kind: str, row: dict[str, Any]) -> None:
        """One result line for the summary: kind "parity" (a case), "determinism" or "invalid". Written at
        once (line-buffered), so that a run stopped at a time limit still leaves its results."""
        if self._rows is None:
            self.rows_file.parent.mkdir(parents=True, exist_ok=True)
            self._rows = open(self.rows_file, "a", buffering=1)  # kept open for the session
        self._rows.write(json.dumps({"kind": kind, **row}, default=_jsonable) + "\n")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self._rows is not None:
            self._rows.close()
            self._rows = None
        if self.worker is not None:
            return
        if session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and self.absent:
            session.exitstatus = pytest.ExitCode.OK  # an absent device collects nothing: not an error
        rows = read_rows(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.unreproduced = unreproduced(rows["parity"])
        if self.unreproduced:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        markdown = render_all(rows, self.header)
        (self.dir / "summary.md").write_text(markdown)
        step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if step_summary:
            with open(step_summary, "a") as f:
                f.write(markdown)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.worker is None and self.dir.joinpath("summary.md").exists():
            terminalreporter.write_line(f"loss-parity: summary in {self.dir / 'summary.md'}")
        if self.worker is None and self.absent:
            terminalreporter.write_line(
                f"loss-parity: not on this machine, nothing collected: {', '.join(self.absent)}"
            )
        for d in self.unreproduced:
            terminalreporter.write_line(
                f"loss-parity: registered deviation {d} selected cases of this run but explained none: if torch "
                "is fixed there, narrow or remove it in deviations.toml",
                red=True,
            )


def read_rows(report_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The result lines of a run, by kind."""
    rows = defaultdict(list)
    for path in sorted((report_dir / ".results").glob("*.jsonl")):
        for line in filter(None, path.read_text().splitlines()):
            row = json.loads(line)
            rows[row.pop("kind")].append(row)
    return rows


def render_all(rows: dict[str, list[dict[str, Any]]], header: dict[str, Any]) -> str:
    return (
        render_summary(rows["parity"], header)
        + render_determinism(rows["determinism"])
        + render_invalid(rows["invalid"])
    )


def render_summary(rows: list[dict[str, Any]], header: dict[str, Any]) -> str:
    counts = defaultdict(int)
    worst: dict[tuple[str, str, str, str], tuple[float, float]] = {}  # (loss, stage, dtype, device) ->
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    deviations: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # id -> [stages selected, reproduced]
    for row in rows:
        statuses = [s["status"] for s in row["stages"]]
        outcome = "failed" if "fail" in statuses else "deviation" if "deviation" in statuses else "passed"
        counts[outcome] += 1
        for s in row["stages"]:
            if s["status"] == "fail":
                groups[(row["loss"], s["cause"])].append(f"{row['case_id']} ({s['stage']})")
            if s["deviation"]:
                deviations[s["deviation"]][0] += 1
                deviations[s["deviation"]][1] += s["status"] == "deviation"
                continue
            key = (row["loss"], s["stage"], row["dtype"], row["device"])
            headroom = s["error"] / s["tolerance"] if s["tolerance"] else float(s["error"] > 0)
            if key not in worst or headroom > worst[key][0]:
                worst[key] = (headroom, s["error"])
    out = ["# Parity summary", ""]
    out += [f"- {k}: {v}" for k, v in header.items()]
    out += [
        f"- cases: {len(rows)}; passed {counts['passed']}, failed {counts['failed']}, "
        f"expected deviations {counts['deviation']}",
        "",
    ]
    out += ["## Failures by loss and cause", ""]
    if not groups:
        out.append("None.")
    for (loss, why), ids in sorted(groups.items()):
        out.append(f"### {loss}: {why} ({len(ids)})")
        out += [f"- `{i}`" for i in ids[:20]]
        if len(ids) > 20:
            out.append(f"- ... and {len(ids) - 20} more (records under `failures/`)")
        out.append("")
    out += [
        "",
        "## Parity matrix",
        "",
        "Worst error / tolerance over the cases of each loss and stage (headroom: above 1 fails); the worst "
        "error in eps of the dtype in brackets. Stages that a registered deviation selects are left out here. "
        "`<stage> vs cpu`: torch on the device against torch on cpu, in eps at the scale of the truth.",
        "",
    ]
    dtypes = sorted({k[2] for k in worst}, key=["float64", "float32", "float16", "bfloat16"].index)
    cols = [(dt, dev) for dev in sorted({k[3] for k in worst}) for dt in dtypes]
    out.append("| loss | stage | " + " | ".join(f"{dt} {dev}" for dt, dev in cols) + " |")
    out.append("|---|---|" + "---|" * len(cols))
    for loss, stage in sorted({k[:2] for k in worst}):
        cells = []
        for dt, dev in cols:
            h = worst.get((loss, stage, dt, dev))
            cells.append("-" if h is None else f"{h[0]:.2f} ({h[1]:.2g})")
        out.append(f"| {loss} | {stage} | " + " | ".join(cells) + " |")
    out += [
        "",
        "## Registered deviations",
        "",
        "Stages each deviation selected in this run, and how many it explained (torch deviated there). A "
        "deviation that explains none fails the run: torch may have been fixed.",
        "",
    ]
    out += [
        f"- `{d}`: reproduced in {n[1]} of {n[0]} selected stages" + ("" if n[1] else " **NOT REPRODUCED**")
        for d, n in sorted(deviations.items())
    ] or ["None selected."]
    return "\n".join(out) + "\n"


def render_determinism(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    out = [
        "",
        "## Determinism",
        "",
        "The same call repeated on the same inputs, compared bitwise. A path torch documents as nondeterministic "
        "(it warns under `torch.use_deterministic_algorithms`) is reported; a difference elsewhere fails.",
        "",
        "| device | cases | bitwise identical | differing, documented by torch | differing, undocumented | "
        "flagged by torch, identical here |",
        "|---|---|---|---|---|---|",
    ]
    for device in sorted({r["device"] for r in rows}):
        mine = [r for r in rows if r["device"] == device]
        counts = [
            len(mine),
            sum(not r["differing"] for r in mine),
            sum(bool(r["differing"]) and bool(r["documented"]) for r in mine),
            sum(bool(r["differing"]) and not r["documented"] for r in mine),
            sum(not r["differing"] and bool(r["documented"]) for r in mine),
        ]
        out.append(f"| {device} | " + " | ".join(map(str, counts)) + " |")
    flagged = sorted({(r["device"], r["loss"], r["documented"]) for r in rows if r["documented"]})
    differing = [r for r in rows if r["differing"]]
    if flagged:
        out += ["", "Paths torch flags as nondeterministic:", ""]
        out += [f"- {device}, {loss}: {message.splitlines()[0]}" for device, loss, message in flagged]
    if differing:
        out += ["", "Cases whose bits changed between repeats:", ""]
        out += [
            f"- `{r['case_id']}`: {', '.join(r['differing'])}"
            + ("" if r["documented"] else " **(not documented by torch)**")
            for r in differing[:40]
        ]
        if len(differing) > 40:
            out.append(f"- ... and {len(differing) - 40} more")
    return "\n".join(out) + "\n"


def render_invalid(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    out = [
        "",
        "## Invalid inputs per device",
        "",
        "What torch does with inputs that its kernels check (`harness/invalid.py`): `error:<class>` at the call, "
        "`assert` (a device-side assert, run in a subprocess), `silent` (a result).",
        "",
        "| input | loss | device | recorded | observed | message |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["name"], r["device"])):
        mark = "" if r["outcome"] == r["expected"] else " **differs**"
        message = r.get("message", "").replace("|", "/")[:100]
        out.append(
            f"| {r['name']} | {r['loss']} | {r['device']} | {r['expected']} | {r['outcome']}{mark} | {message} |"
        )
    return "\n".join(out) + "\n"


def unreproduced(rows: list[dict[str, Any]]) -> list[str]:
    """Deviations that selected stages in this run but explained none of them."""
    seen: dict[str, bool] = {}
    for row in rows:
        for s in row["stages"]:
            if s["deviation"]:
                seen[s["deviation"]] = seen.get(s["deviation"], False) or s["status"] == "deviation"
    return sorted(d for d, reproduced in seen.items() if not reproduced)


def run_header(config: pytest.Config, run: list[str], absent: list[str]) -> dict[str, Any]:
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "implementation": config.getoption("--impl"),
        "profile": config.getoption("--profile"),
        "devices": ", ".join(run) + (f" (absent here: {', '.join(absent)})" if absent else ""),
        "versions": f"torch {torch.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}",
    }


if __name__ == "__main__":
    # python -m parity_tests.harness.report REPORT_DIR: the summary of a run that was stopped before its end
    # (a time limit), from the result lines its workers had written.
    report_dir = Path(sys.argv[1])
    header = {"note": "written after the run from its result lines: the run was stopped before its end"}
    (report_dir / "summary.md").write_text(render_all(read_rows(report_dir), header))
    print(f"loss-parity: summary in {report_dir / 'summary.md'}")
