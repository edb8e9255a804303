"""Forward and gradient parity: the truth, torch and the candidate on every case of the grid (on a device other than
cpu, also torch there against torch on cpu).

One test item runs the cases of one loss, option combination, regime, dtype and device over their shapes
(``harness.cases.grid_items``); each case is checked, reported and recorded on its own.
"""

from __future__ import annotations

import pytest

from parity_tests.harness import candidate as candidates
from parity_tests.harness import devices
from parity_tests.harness.candidate import Candidate
from parity_tests.harness.cases import Case, build
from parity_tests.harness.check import check
from parity_tests.harness.incidents import record_timeout
from parity_tests.harness.messages import failure_message
from parity_tests.harness.record import replay_command, write_record
from parity_tests.harness.rows import parity_row

pytestmark = pytest.mark.parity


def test_parity(
    cases: tuple[Case, ...], candidate: Candidate, parity_run, request: pytest.FixtureRequest
) -> None:
    item = request.node.nodeid
    failures: list[str] = []
    unfit: list[str] = []
    unsupported: list[str] = []
    reproduced: set[str] = set()
    declined = 0  # cases the candidate implements no stage of
    for case in cases:
        too_big = devices.unfit(case)
        if too_big:
            unfit.append(f"{case.id}: {too_big}")
            continue
        data = build(case)
        try:
            with parity_run.case(data, item):
                result = check(data, candidate)
        except pytest.fail.Exception as exc:
            if not str(exc).startswith("Timeout"):
                raise
            # pytest-timeout interrupted the case: name it, record it, and do not call what hung again
            call = candidates.mark_hung(case.id)
            seconds = request.config.getoption("timeout", "?")
            message = f"{exc}\n{record_timeout(parity_run, data, candidate, item, call, seconds)}"
            raise pytest.fail.Exception(message, pytrace=False) from None
        finally:
            devices.release(case)
        record = replay = None
        if result.failed:
            path = write_record(result, parity_run.failures_dir)
            record, replay = str(path), replay_command(path, candidate)
            failures.append(failure_message(result, replay))
        parity_run.add_row("parity", parity_row(result, item, record, replay))
        reproduced |= {s.deviation.id for s in result.stages if s.torch_status == "deviation"}
        unsupported += [f"{case.id} {s.stage}: {s.unsupported}" for s in result.stages if s.unsupported]
        declined += all(s.unsupported or s.cross_device for s in result.stages) and not result.failed
    not_run = "".join(f"\ndoes not fit: {line}" for line in unfit)
    if unsupported and request.config.getoption("--require-all"):
        failures.append(
            "not implemented by the candidate (--require-all):\n  " + "\n  ".join(unsupported[:20])
        )
    if failures:
        pytest.fail("\n".join(failures) + not_run, pytrace=False)
    if unfit:  # a case sized beyond this machine (the gpu profile's, one per item)
        pytest.skip(f"{len(cases) - len(unfit)} of {len(cases)} cases run{not_run}")
    if declined == len(cases):
        pytest.skip(f"not implemented by the candidate: {unsupported[0]}")
    if reproduced:
        # pytrace=False: no traceback for pytest to format (milliseconds an item, over hundreds of items)
        reason = f"registered torch deviation: {', '.join(sorted(reproduced))}"
        raise pytest.xfail.Exception(reason, pytrace=False)
