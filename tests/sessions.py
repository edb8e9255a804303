"""Small sessions of the suite for the meta-tests: pytester in-process, against the checkout's parity_tests."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def suite(pytester: pytest.Pytester, reports: Path, *args: str, modules=("test_parity.py",), **kwargs):
    """A session of the suite; one loss and dtype unless `args` say otherwise (a small grid collects fast)."""
    if "--loss" not in args:
        args = ("--loss", "nll_loss", *args)
    if "--dtype" not in args:
        args = ("--dtype", "float32", *args)
    return pytester.runpytest_inprocess(
        *(str(ROOT / "parity_tests" / m) for m in modules),
        "-p",
        "no:cacheprovider",
        f"--report-dir={reports}",
        f"--rootdir={ROOT}",
        "-c",
        str(ROOT / "pyproject.toml"),
        *args,
        **kwargs,
    )


def candidate_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> str:
    """A candidate module `name` in tmp_path: the reference's API, with `body` appended."""
    (tmp_path / f"{name}.py").write_text("from reference import *  # noqa: F403\nimport reference\n" + body)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def only_run(reports: Path) -> Path:
    (run_dir,) = (reports / "runs").iterdir()
    return run_dir


def first_line(path: Path) -> str:
    return path.read_text().splitlines()[0]
