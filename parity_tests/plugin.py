"""The pytest plugin of the parity suite: its options, the candidate under test, the case grid and the run.

Registered through the `pytest11` entry point, so it loads in every pytest run of an environment that has the suite
installed: it stays inert (options only, no torch import) unless `--impl` is given. This repository gives
`--impl=reference` in its own pytest configuration.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

PROFILES = ("quick", "full", "gpu", "fuzz")
# The default time limit of one test item per profile (pytest-timeout; `--timeout` overrides it): about ten times
# the slowest item of the profile on 2 cores, so that only a hang reaches it.
TIMEOUTS = {"quick": 120, "full": 600, "gpu": 1800, "fuzz": 7200}
DTYPES = ("float64", "float32", "float16", "bfloat16")
# The suite's own test modules: what needs --impl.
SUITE_MODULES = (
    "test_parity",
    "test_errors",
    "test_fuzz",
    "test_determinism",
    "test_invalid_inputs",
    "test_deviations",
)
# Checks of torch alone (its determinism, what its device kernels do with invalid inputs): they run with the
# reference, not against a candidate.
TORCH_ONLY_MODULES = ("test_determinism", "test_invalid_inputs", "test_deviations")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("loss-parity")
    group.addoption(
        "--impl",
        default=None,
        help="the candidate under test: a dotted module (`reference`, or `loss_parity.reference` installed, "
        "is the suite's own NumPy reference: torch judged against the truth alone)",
    )
    group.addoption("--loss", action="append", default=None, help="only this loss (repeatable)")
    group.addoption("--device", action="append", default=None, help="only this device (repeatable)")
    group.addoption(
        "--dtype", action="append", default=None, choices=DTYPES, help="only this dtype (repeatable)"
    )
    group.addoption(
        "--profile",
        default="quick",
        choices=PROFILES,
        help="which case grid; fuzz: the Hypothesis search of test_fuzz.py at full strength (and the quick grid)",
    )
    group.addoption(
        "--require-all",
        action="store_true",
        help="what the candidate does not implement fails (by default it is counted apart, never a failure)",
    )
    group.addoption("--max-examples", type=int, default=None, help="fuzz: examples per loss and device")
    group.addoption(
        "--derandomize", action="store_true", help="fuzz: a fixed search, replayed identically (no database)"
    )
    group.addoption("--fuzz-seconds", type=float, default=None, help="fuzz: stop generating after this long")
    group.addoption(
        "--report-dir",
        default="reports",
        help="the folder that receives each run's own folder runs/<run-id>/ (summary, records, junit.xml)",
    )


def _runs_nothing(config: pytest.Config) -> bool:
    """--help, --version, --markers, --fixtures, --collect-only: no case runs, nothing is written."""
    o = config.option
    return any(
        getattr(o, name, False)
        for name in ("help", "version", "markers", "showfixtures", "show_fixtures_per_test", "collectonly")
    )


def _writable_folder(path: Path) -> str | None:
    """Why `path` cannot take a run's folder, or None."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return f"{existing} is not a folder" if existing is not None else "no part of it exists"
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".loss-parity-probe-"):
            pass
    except OSError as exc:
        return f"{existing} is not writable ({exc.strerror or exc})"
    return None


@pytest.hookimpl(tryfirst=True)  # before pytest-timeout and junitxml read their settings
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "parity: a case of the parity suite (runs the candidate, writes records)"
    )
    config.addinivalue_line("markers", "slow: large cases, only in the full profile")
    config.loss_parity = None
    if config.getoption("--impl") is None:
        return  # inert: the plugin loads in every pytest run of an environment that has the suite installed
    import torch

    from parity_tests.harness import candidate as candidates
    from parity_tests.harness import devices
    from parity_tests.harness.run import Run, command_line
    from parity_tests.harness.specs import SPECS

    # The cases are small: torch's intra-op threads cost far more than they give (8-22 ms against 0.1-0.2 ms for
    # one 8x5 forward and backward), and pytest-xdist already spreads cases over the cores. The default is kept
    # for the benchmarks, which time torch as a user runs it.
    config.torch_default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    unknown = [loss for loss in config.getoption("--loss") or () if loss not in SPECS]
    if unknown:
        raise pytest.UsageError(f"--loss {unknown[0]}: unknown loss; expected one of {', '.join(SPECS)}")
    try:
        run_devices, absent = devices.select(config.getoption("--device"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.parity_devices = run_devices
    report_dir = Path(config.getoption("--report-dir"))
    nothing = _runs_nothing(config)
    worker = hasattr(config, "workerinput")
    if not nothing and not worker:
        problem = _writable_folder(report_dir)
        if problem:
            raise pytest.UsageError(f"--report-dir={report_dir}: {problem}")
    name = config.getoption("--impl")
    try:
        candidate = candidates.load(name)
    except candidates.CandidateError as exc:
        raise pytest.UsageError(str(exc)) from None
    candidates.hung.clear()
    header = {
        "candidate": f"`{candidate.name}` ({candidate.kind} kind)"
        + (
            ": the reference itself, so torch is judged against the truth alone" if candidate.is_truth else ""
        ),
        "profile": config.getoption("--profile"),
        "devices": ", ".join(run_devices) + (f" (absent here: {', '.join(absent)})" if absent else ""),
        "versions": _versions(),
        "command": command_line(),
    }
    for option in ("loss", "dtype"):
        if config.getoption(f"--{option}"):
            header[f"{option}es" if option == "loss" else f"{option}s"] = ", ".join(
                config.getoption(f"--{option}")
            )
    if config.getoption("--profile") == "fuzz" or config.getoption("--max-examples"):
        header["fuzz"] = _fuzz_header(config)
    profile = config.getoption("--profile")
    if (
        config.getoption("timeout", None) is None
        and not os.environ.get("PYTEST_TIMEOUT")
        and not _ini(config, "timeout")
    ):
        config.option.timeout = TIMEOUTS[profile]
        header["time limit"] = f"{TIMEOUTS[profile]} s per test item (profile {profile}; --timeout overrides)"
    elif config.getoption("timeout", None) is not None:
        header["time limit"] = f"{config.getoption('timeout')} s per test item"
    run = Run(config, report_dir, header, candidate)
    run.absent = absent
    config.loss_parity = run
    config.parity_candidate = candidate
    config.pluginmanager.register(run, "loss-parity-run")
    if not nothing and not worker and not config.option.xmlpath:
        config.option.xmlpath = str(run.dir / "junit.xml")


def _ini(config: pytest.Config, name: str) -> Any:
    try:
        return config.getini(name)
    except ValueError:  # pytest-timeout not installed
        return None


def _versions() -> str:
    import platform

    import numpy as np
    import torch

    return f"torch {torch.__version__}, numpy {np.__version__}, python {platform.python_version()}"


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


def pytest_unconfigure(config: pytest.Config) -> None:
    # The calls that hung belong to this run's candidate: a later session in the same process (pytester's
    # in-process runs) must not refuse its own candidate's calls of the same name. (Not imported here if the run
    # never loaded it: it imports torch.)
    loaded = sys.modules.get("parity_tests.harness.candidate")
    if loaded is not None:
        loaded.hung.clear()


def pytest_report_header(config: pytest.Config) -> list[str]:
    run = config.loss_parity
    if run is None:
        return []
    return [f"loss-parity: {k}: {v}" for k, v in run.header.items()] + [f"loss-parity: run folder {run.dir}"]


def _module(item: pytest.Item) -> str:
    return getattr(getattr(item, "module", None), "__name__", "").rsplit(".", 1)[-1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    suite = [
        i for i in items if _module(i) in SUITE_MODULES and i.module.__name__.startswith("parity_tests.")
    ]
    run = config.loss_parity
    if run is None:
        if suite:
            raise pytest.UsageError(
                "loss-parity: the parity suite needs --impl MODULE (your implementation; "
                "--impl loss_parity.reference runs the suite's own reference)"
            )
        return
    if not run.candidate.is_truth:  # checks of torch alone do not concern a candidate
        dropped = [i for i in items if _module(i) in TORCH_ONLY_MODULES]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [i for i in items if _module(i) not in TORCH_ONLY_MODULES]


def selected_losses(config: pytest.Config) -> list[str]:
    from parity_tests.harness.specs import SPECS

    wanted = config.getoption("--loss")
    return [loss for loss in SPECS if not wanted or loss in wanted]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    config = metafunc.config
    if config.loss_parity is None:
        return
    if "cases" in metafunc.fixturenames:
        from parity_tests.harness.cases import PROFILES as GRID_PROFILES
        from parity_tests.harness.cases import grid, grid_items

        profile = config.getoption("--profile")
        profile = profile if profile in GRID_PROFILES else "quick"  # fuzz: the quick grid beside the search
        cases = grid(profile, config.parity_devices, config.getoption("--dtype"), selected_losses(config))
        items = grid_items(cases, over_shapes=profile != "gpu")
        metafunc.parametrize("cases", list(items.values()), ids=list(items))


@pytest.fixture(scope="session")
def candidate(pytestconfig: pytest.Config):
    """The candidate under test (`--impl`), loaded and checked at start-up."""
    return pytestconfig.parity_candidate


@pytest.fixture(scope="session")
def impl(candidate):
    """The candidate's module."""
    return candidate.module


@pytest.fixture(scope="session")
def parity_run(pytestconfig: pytest.Config):
    """This run: its folder, result lines and journal (harness/run.py)."""
    return pytestconfig.loss_parity


@pytest.fixture(scope="session")
def fuzz_settings(pytestconfig: pytest.Config):
    """The Hypothesis settings of test_fuzz.py, from --profile, --max-examples and --derandomize."""
    from parity_tests.harness.fuzz import settings_for

    return settings_for(
        pytestconfig.getoption("--profile") == "fuzz",
        pytestconfig.getoption("--max-examples"),
        pytestconfig.getoption("--derandomize"),
    )
