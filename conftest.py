"""Command-line options of the parity suite, the implementation under test, the case grid and the report."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest
import torch
from hypothesis import HealthCheck, Phase, settings

from parity_tests.harness import devices
from parity_tests.harness.cases import PROFILES, grid, grid_items
from parity_tests.harness.dtypes import TORCH_DTYPES
from parity_tests.harness.report import ReportPlugin, run_header

# The meta-tests run whole sessions of the suite in-process (pytester), not as subprocesses: no second torch
# import, 0.1 s instead of 6.
pytest_plugins = ["pytester"]


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
    group.addoption(
        "--profile",
        default="quick",
        choices=[*PROFILES, "fuzz"],
        help="which case grid; fuzz: the Hypothesis search of test_fuzz.py at full strength (and the quick grid)",
    )
    group.addoption("--max-examples", type=int, default=None, help="fuzz: examples per loss and device")
    group.addoption(
        "--derandomize", action="store_true", help="fuzz: a fixed search, replayed identically (no database)"
    )
    group.addoption("--fuzz-seconds", type=float, default=None, help="fuzz: stop generating after this long")
    group.addoption("--report-dir", default="reports", help="where records and the summary are written")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # The cases are small: torch's intra-op threads cost far more than they give (8-22 ms against 0.1-0.2 ms
    # for one 8x5 forward and backward), and pytest-xdist already spreads cases over the cores. The default is
    # kept for the benchmarks, which time torch as a user runs it.
    config.torch_default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run, absent = devices.select(config.getoption("--device"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.parity_devices = run
    plugin = ReportPlugin(config)
    plugin.header = run_header(config, run, absent)
    if config.getoption("--profile") == "fuzz":
        plugin.header["fuzz"] = _fuzz_header(config)
    plugin.absent = absent
    config.parity_report = plugin
    config.pluginmanager.register(plugin, "parity-report")
    if not hasattr(config, "workerinput"):
        plugin.clear()
        if not config.option.xmlpath:
            config.option.xmlpath = str(Path(config.getoption("--report-dir")) / "junit.xml")


# test_fuzz.py's Hypothesis settings. The fuzz profile searches (10,000 examples per loss and device unless
# --max-examples says otherwise) and keeps found failures in the database under .hypothesis/ for the next run;
# every other profile runs a small derandomized slice, so that the gate stays fast and deterministic.
settings.register_profile(
    "loss-parity-fuzz",
    max_examples=10_000,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # no explain phase: its notes go to an exception the search catches (the record says what failed), and it
    # re-ran a shrunk failure some 200 times (7 of the planted-fault meta-test's 12 s)
    phases=[phase for phase in Phase if phase is not Phase.explain],
)
settings.register_profile(
    "loss-parity-gate",
    settings.get_profile("loss-parity-fuzz"),
    max_examples=25,
    derandomize=True,
    database=None,
)


@pytest.fixture(scope="session")
def fuzz_settings(pytestconfig: pytest.Config) -> settings:
    """The Hypothesis settings of test_fuzz.py, from --profile, --max-examples and --derandomize."""
    fuzzing = pytestconfig.getoption("--profile") == "fuzz"
    chosen = settings.get_profile("loss-parity-fuzz" if fuzzing else "loss-parity-gate")
    if pytestconfig.getoption("--max-examples") is not None:
        chosen = settings(chosen, max_examples=pytestconfig.getoption("--max-examples"))
    if pytestconfig.getoption("--derandomize"):
        chosen = settings(chosen, derandomize=True, database=None)
    return chosen


def _fuzz_header(config: pytest.Config) -> str:
    fuzzing = config.getoption("--profile") == "fuzz"
    examples = config.getoption("--max-examples") or (10_000 if fuzzing else 25)
    derandomized = config.getoption("--derandomize") or not fuzzing
    seconds = config.getoption("--fuzz-seconds")
    return (
        f"{examples} examples per loss and device"
        + (", derandomized" if derandomized else ", database .hypothesis/")
        + (f", at most {seconds:g} s of generation each" if seconds else "")
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"loss-parity: {k}: {v}" for k, v in config.parity_report.header.items()]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cases" in metafunc.fixturenames:
        config = metafunc.config
        profile = config.getoption("--profile")
        profile = profile if profile in PROFILES else "quick"  # fuzz: the quick grid beside the search
        cases = grid(profile, config.parity_devices, config.getoption("--dtype"))
        items = grid_items(cases, over_shapes=profile != "gpu")
        metafunc.parametrize("cases", list(items.values()), ids=list(items))


@pytest.fixture(scope="session")
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The implementation under test (`--impl`, default: the NumPy reference)."""
    return importlib.import_module(request.config.getoption("--impl"))
