"""Command-line options of the parity suite and the implementation under test."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("loss-parity")
    group.addoption("--impl", default="reference", help="dotted module of the implementation under test")
    group.addoption("--device", action="append", default=None, help="only these devices (repeatable)")
    group.addoption("--dtype", action="append", default=None, help="only these dtypes (repeatable)")
    group.addoption("--profile", default="quick", choices=["quick", "full"], help="which case grid")
    group.addoption("--report-dir", default="reports", help="where records and the summary are written")


@pytest.fixture(scope="session")
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The implementation under test (`--impl`, default: the NumPy reference)."""
    return importlib.import_module(request.config.getoption("--impl"))
