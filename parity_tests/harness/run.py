"""The run: one pytest session of the suite, with a folder of its own, a journal, and an outcome from pytest's own
reports.

Layout, under `--report-dir` (default `reports/`)::

    runs/<run-id>/summary.md     the outcome on its first line (PASS, FAIL or INCOMPLETE, with the reason)
    runs/<run-id>/summary.html   the same, self-contained, with the parity matrix in colour
    runs/<run-id>/junit.xml      (unless --junitxml says otherwise)
    runs/<run-id>/failures/      one record (.json + .npz) per failing case
    runs/<run-id>/rows/          one result line per case, a file per process
    runs/<run-id>/journal/       per process: each case as it starts and ends (the evidence of a crash)
    runs/<run-id>/items.jsonl    each test item's final outcome, as pytest reported it
    runs/<run-id>/run.json       the run's identity, header and outcome, written at its end
    latest -> runs/<run-id>      the newest finished run

A run writes only inside its own folder, so runs sharing a report folder never touch each other's files, and a
command that runs nothing (--help, --collect-only) creates nothing. The folder is made when the test loop starts.
Until the run ends, summary.md says INCOMPLETE and names what is running (serially: the case), so that a process
that dies leaves a true summary behind; `python -m parity_tests.report RUN_DIR` renders what such a run left.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from parity_tests.harness import render

WORKER_INPUT_KEY = "loss_parity_run_dir"


def new_run_id() -> str:
    """Sortable and unique without a lock: the start time and a random suffix."""
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def runs_folder(report_dir: Path) -> Path:
    return report_dir / "runs"


class Run:
    """The pytest plugin of one run: its folder, result lines, journal, and (on the controlling process) the
    tally of pytest's reports, the crash records and the summary."""

    def __init__(
        self, config: pytest.Config, report_dir: Path, header: dict[str, Any], candidate: Any
    ) -> None:
        self.config = config
        self.report_dir = report_dir
        workerinput = getattr(config, "workerinput", None)
        self.worker: str | None = workerinput.get("workerid") if workerinput else None
        given = workerinput.get(WORKER_INPUT_KEY) if workerinput else None
        self.dir = Path(given) if given else runs_folder(report_dir) / new_run_id()
        self.header = header
        self.candidate = candidate
        self.absent: list[str] = []  # requested devices that this machine does not have
        self.started = False
        self._files: dict[str, Any] = {}
        # the controlling process's tally of pytest's reports
        self.items: dict[str, str] = {}  # nodeid -> final outcome
        self.collected: int | None = None
        self.collection_errors: list[str] = []
        self.interrupted: str | None = None
        self.running: dict[str, str] = {}  # worker -> the item it runs (for the interim summary)
        self._interim_at = 0.0

    @property
    def controller(self) -> bool:
        return self.worker is None

    @property
    def process(self) -> str:
        return self.worker or "main"

    # --- the folder and its files -----------------------------------------------------------------------------

    def start(self) -> None:
        """Make the run's folder (the controller) and write the interim summary."""
        if self.started:
            return
        self.started = True
        if self.controller:
            self.dir.mkdir(parents=True, exist_ok=False)
            self._interim()

    def _file(self, name: str):
        if name not in self._files:
            path = self.dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            self._files[name] = open(
                path, "a", buffering=1
            )  # line-buffered: a killed run keeps what it wrote
        return self._files[name]

    def add_row(self, kind: str, row: dict[str, Any]) -> None:
        """One result line for the summary: kind parity, errors, determinism, invalid, fuzz, incident."""
        self._file(f"rows/{self.process}.jsonl").write(
            json.dumps({"kind": kind, **row}, default=_jsonable) + "\n"
        )

    def journal(self, event: str, case_id: str, **fields: Any) -> None:
        """A case starting or ending in this process: the last start without an end is what a crash interrupted."""
        line = {"event": event, "case": case_id, **fields}
        self._file(f"journal/{self.process}.jsonl").write(json.dumps(line, default=_jsonable) + "\n")
        if event == "start" and self.controller:
            self.running = {self.process: f"{case_id} (in {fields.get('item')})"}
            self._interim()

    @contextlib.contextmanager
    def case(self, data, item: str, snapshot: bool = False):
        """Journal a case around its run: its start (with what a crash record needs: the case, and with `snapshot`
        its inputs, for cases that are not rebuilt from a seed) and its end."""
        from parity_tests.harness.incidents import journal_fields

        self.start()
        path = self.dir / "journal" / f"{self.process}-inputs.npz" if snapshot else None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.journal("start", data.case.id, **journal_fields(data, item, path))
        yield
        self.journal("end", data.case.id)

    @property
    def failures_dir(self) -> Path:
        return self.dir / "failures"

    def _interim(self) -> None:
        """summary.md while the run goes on: INCOMPLETE, and what is running (it stays if the process dies)."""
        running = "; ".join(f"{who}: {what}" for who, what in sorted(self.running.items())) or "nothing yet"
        text = (
            "INCOMPLETE: the run has not finished, or its process died before writing this summary; "
            f"running: {running}\n\n"
            f"Render what it left: `python -m parity_tests.report {self.dir}`\n"
        )
        (self.dir / "summary.md").write_text(text)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    # --- pytest hooks -------------------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):
        if not session.config.option.collectonly:
            self.start()
        return (yield)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(
        self, node
    ) -> None:  # xdist, controller: the workers write into this run's folder
        node.workerinput[WORKER_INPUT_KEY] = str(self.dir)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self.controller and not hasattr(self.config, "workerinput"):
            self.collected = len(session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids: list[str]) -> None:
        self.collected = len(ids)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if self.controller and report.failed:
            self.collection_errors.append(report.nodeid or "(the session)")

    def pytest_keyboard_interrupt(self, excinfo) -> None:
        self.interrupted = str(excinfo.value) or type(excinfo.value).__name__

    def pytest_runtest_logstart(self, nodeid: str, location) -> None:
        # under pytest-xdist, the controller's interim summary names an item in progress, once a second at most
        if self.controller and self.started and self.config.pluginmanager.has_plugin("dsession"):
            now = time.monotonic()
            if now - self._interim_at >= 1.0:
                self._interim_at = now
                self.running = {"items": nodeid}
                self._interim()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not self.controller:
            return
        outcome = _item_outcome(report)
        if outcome is None:
            return
        if report.when == "???":  # xdist: a worker died while running this item
            outcome = "crashed"
            self._crash_record(report)
        if self.items.get(report.nodeid) in ("failed", "error", "crashed"):
            return  # a teardown report after a failed call does not undo the failure
        self.items[report.nodeid] = outcome
        self._file("items.jsonl").write(json.dumps({"item": report.nodeid, "outcome": outcome}) + "\n")

    def _crash_record(self, report: pytest.TestReport) -> None:
        """The case the dead worker was running, from its journal: a record and an incident row."""
        from parity_tests.harness.incidents import record_crash

        worker = getattr(getattr(report, "node", None), "gateway", None)
        worker_id = getattr(worker, "id", None)
        found = record_crash(self, worker_id, report.nodeid)
        if found:
            report.longrepr = f"{report.longrepr}\n{found}"

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session):
        result = yield
        self.close()
        if not self.controller or not self.started:
            return result
        if session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and self.absent:
            session.exitstatus = pytest.ExitCode.OK  # an absent device collects nothing: not an error
        self.finish(int(session.exitstatus), session.shouldstop or session.shouldfail or None)
        return result

    # --- the end --------------------------------------------------------------------------------------------------

    def finish(self, exitstatus: int, stopped: str | bool | None = None) -> None:
        outcome, reason = self.outcome(exitstatus, stopped)
        info = {
            "run_id": self.dir.name,
            "outcome": outcome,
            "reason": reason,
            "exitstatus": exitstatus,
            "items": self.tally(),
            "header": self.header,
            "finished": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC",
        }
        (self.dir / "run.json").write_text(json.dumps(info, indent=2, default=_jsonable) + "\n")
        written = render.write(self.dir, info)
        _point_latest(self.report_dir, self.dir)
        manager = getattr(self.config, "pluginmanager", None)
        terminal = manager.get_plugin("terminalreporter") if manager else None
        if terminal is not None:
            line = f"loss-parity: {outcome}: {reason}"
            terminal.write_line(line, red=outcome != "PASS", green=outcome == "PASS", bold=True)
            terminal.write_line(f"loss-parity: summary in {written}")
            for device in self.absent:
                terminal.write_line(f"loss-parity: not on this machine, nothing collected: {device}")

    def tally(self) -> dict[str, Any]:
        counts = Counter(self.items.values())
        return {
            "collected": self.collected,
            "reported": len(self.items),
            **{
                k: counts.get(k, 0)
                for k in ("passed", "failed", "error", "crashed", "skipped", "xfailed", "xpassed")
            },
            "collection_errors": len(self.collection_errors),
        }

    def outcome(self, exitstatus: int, stopped: str | bool | None = None) -> tuple[str, str]:
        """(PASS, FAIL or INCOMPLETE; the reason), from pytest's own reports and exit status: PASS only for exit 0
        with every collected item reported and none failed."""
        t = self.tally()
        missing = (t["collected"] or 0) - t["reported"]
        failed = t["failed"] + t["error"] + t["crashed"]
        notes = []
        if missing > 0:
            notes.append(f"{missing} of {t['collected']} test items did not run")
        if self.interrupted:
            notes.append(f"interrupted ({self.interrupted})")
        elif isinstance(stopped, str) and stopped:
            notes.append(f"stopped: {stopped}")
        if failed:
            parts = [
                f"{t[k]} {label}"
                for k, label in (("failed", "failed"), ("error", "errors"), ("crashed", "crashed"))
                if t[k]
            ]
            return "FAIL", f"{', '.join(parts)} of {t['collected'] or t['reported']} test items" + "".join(
                f"; {n}" for n in notes
            ) + f" (exit {exitstatus})"
        if exitstatus == pytest.ExitCode.USAGE_ERROR:
            return "INCOMPLETE", "usage error"
        if self.collection_errors:
            return (
                "INCOMPLETE",
                f"{len(self.collection_errors)} errors during collection: "
                f"{', '.join(self.collection_errors[:3])} (exit {exitstatus})",
            )
        if exitstatus == pytest.ExitCode.INTERRUPTED or self.interrupted:
            return "INCOMPLETE", "; ".join(notes or ["interrupted"]) + f" (exit {exitstatus})"
        if exitstatus == pytest.ExitCode.INTERNAL_ERROR:
            return "INCOMPLETE", f"internal error (exit {exitstatus})"
        if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            return "INCOMPLETE", "no test item was collected (exit 5)"
        if exitstatus != pytest.ExitCode.OK or missing > 0:
            return "INCOMPLETE", "; ".join(
                notes or [f"pytest exited with {exitstatus}"]
            ) + f" (exit {exitstatus})"
        absent = f"{', '.join(self.absent)} {'is' if len(self.absent) == 1 else 'are'} not on this machine"
        if self.absent and not (t["passed"] or t["xfailed"]):
            return "PASS", f"nothing to run: {absent}"
        return "PASS", (
            f"{t['reported']} test items: {t['passed']} passed, {t['xfailed']} xfailed (registered torch "
            f"deviations), {t['skipped']} skipped" + (f"; {absent}" if self.absent else "")
        )


def _item_outcome(report: pytest.TestReport) -> str | None:
    """The item's outcome as this report decides it (None: not decided by this report)."""
    if report.when == "???":
        return "crashed"
    if report.failed:
        return "failed" if report.when == "call" else "error"
    if report.skipped:
        return "xfailed" if hasattr(report, "wasxfail") else "skipped"
    if report.when == "call":
        return "xpassed" if hasattr(report, "wasxfail") else "passed"
    return None


def _point_latest(report_dir: Path, run_dir: Path) -> None:
    """`<report-dir>/latest` -> the run just finished (a symlink; where links are not allowed, a text file)."""
    link = report_dir / "latest"
    temporary = report_dir / f".latest-{uuid.uuid4().hex[:8]}"
    target = os.path.relpath(run_dir, report_dir)
    try:
        os.symlink(target, temporary, target_is_directory=True)
        os.replace(temporary, link)
    except OSError:
        temporary.unlink(missing_ok=True)
        if link.is_symlink() or not link.exists() or link.is_file():
            link.unlink(missing_ok=True)
            link.write_text(target + "\n")


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | set):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a result line")


def command_line() -> str:
    return " ".join(["python -m pytest", *sys.argv[1:]])
