"""Forward and gradient parity: torch against the implementation under test, for every case of the grid; on a
device other than cpu, also torch there against torch on cpu."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from parity_tests.harness import devices
from parity_tests.harness.cases import Case, build
from parity_tests.harness.check import check
from parity_tests.harness.report import failure_message, write_record


def test_parity(case: Case, impl: ModuleType, request: pytest.FixtureRequest) -> None:
    config = request.config
    too_big = devices.unfit(case)
    if too_big:
        pytest.skip(f"does not fit: {too_big}")
    try:
        result = check(build(case), impl)
    finally:
        devices.release(case)
    config.parity_report.add(result)
    if result.failures:
        record = write_record(result, config.getoption("--impl"), Path(config.getoption("--report-dir")))
        pytest.fail(failure_message(result, record), pytrace=False)
    reproduced = sorted({s.deviation.id for s in result.stages if s.status == "deviation"})
    if reproduced:
        pytest.xfail(f"registered torch deviation: {', '.join(reproduced)}")
