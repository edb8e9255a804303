"""Command-line options of the parity suite, the implementation under test, the case grid and the report."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

from parity_tests.harness import devices
from parity_tests.harness.cases import PROFILES, grid
from parity_tests.harness.dtypes import TORCH_DTYPES
from parity_tests.harness.report import ReportPlugin, run_header


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("loss-parity")
    group.addoption("--impl", default="reference", help="dotted module of the implementation under test")
    group.addoption("--device", action="append", default=None, help="only this device (repeatable)")
    group.addoption(
        "--dtype",
        action="append",
        default=None,
        choices=list(TORCH_DTYPES),
        help="only this dtype (repeatable)",
    )
    group.addoption("--profile", default="quick", choices=list(PROFILES), help="which case grid")
    group.addoption("--report-dir", default="reports", help="where records and the summary are written")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    try:
        run, absent = devices.select(config.getoption("--device"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.parity_devices = run
    plugin = ReportPlugin(config)
    plugin.header = run_header(config, run, absent)
    config.parity_report = plugin
    config.pluginmanager.register(plugin, "parity-report")
    if not hasattr(config, "workerinput"):
        plugin.clear()
        if not config.option.xmlpath:
            config.option.xmlpath = str(Path(config.getoption("--report-dir")) / "junit.xml")


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"loss-parity: {k}: {v}" for k, v in config.parity_report.header.items()]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        config = metafunc.config
        cases = list(grid(config.getoption("--profile"), config.parity_devices, config.getoption("--dtype")))
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])


@pytest.fixture(scope="session")
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The implementation under test (`--impl`, default: the NumPy reference)."""
    return importlib.import_module(request.config.getoption("--impl"))
