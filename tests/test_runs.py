"""Meta-tests of the run layer (harness/run.py, record.py, incidents.py, render.py, repro.py): a run deletes nothing,
keeps its own folder, states its outcome in agreement with the exit code and JUnit, bounds every test in time,
leaves evidence when it dies, and replays records faithfully or says why not.

Each runs a small session of the suite (pytester, in-process where the process survives, a subprocess where it
must die), selected with -k and --loss to a few items.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from parity_tests import repro
from parity_tests.harness import candidate as candidates
from parity_tests.harness import render
from parity_tests.harness.run import Run
from tests.sessions import ROOT, candidate_module, first_line, only_run, suite

ITEM = "nll_loss-index-ii-100-mean-float32-cpu-s0"  # 7 small cases


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_help_and_collect_only_leave_the_report_folder_as_it_was(pytester, tmp_path):
    reports = tmp_path / "reports"
    old = reports / "runs" / "20260101-000000-abcdef"
    (old / "failures").mkdir(parents=True)
    (old / "failures" / "case.json").write_text("{}")
    (old / "summary.md").write_text("FAIL: an earlier run\n")
    before = snapshot(reports)
    assert suite(pytester, reports, "--help").ret == 0
    assert suite(pytester, reports, "--collect-only", "-q", "-k", ITEM).ret == 0
    assert snapshot(reports) == before


def test_each_run_keeps_its_own_folder_and_says_where_its_summary_is(pytester, tmp_path, monkeypatch):
    reports = tmp_path / "reports"
    name = candidate_module(
        tmp_path,
        monkeypatch,
        "off_candidate",
        "def nll_loss(*a, **k):\n    return reference.nll_loss(*a, **k) * 1.01\n",
    )
    failing = suite(pytester, reports, "--impl", name, "-k", ITEM)
    passing = suite(pytester, reports, "-k", ITEM)
    assert (failing.ret, passing.ret) == (1, 0)
    runs = sorted((reports / "runs").iterdir(), key=lambda p: (p / "run.json").stat().st_mtime_ns)
    assert len(runs) == 2
    first, second = runs
    assert first_line(first / "summary.md").startswith("FAIL: ")
    assert first_line(second / "summary.md").startswith("PASS: ")
    assert list((first / "failures").glob("*.json"))  # the second run deleted nothing of the first
    assert f"loss-parity: summary in {first / 'summary.md'}" in failing.stdout.str()
    assert f"loss-parity: summary in {second / 'summary.md'}" in passing.stdout.str()
    assert (reports / "latest").resolve() == second.resolve()
    # the summary, the exit code and JUnit agree
    for run_dir, result in ((first, failing), (second, passing)):
        suite_xml = ET.parse(run_dir / "junit.xml").getroot()
        suite_xml = suite_xml if suite_xml.tag == "testsuite" else suite_xml[0]
        failed_in_junit = int(suite_xml.get("failures")) + int(suite_xml.get("errors"))
        info = json.loads((run_dir / "run.json").read_text())
        assert failed_in_junit == info["items"]["failed"] + info["items"]["error"]
        assert (info["outcome"] == "PASS") == (result.ret == 0) == (failed_in_junit == 0)


def test_a_subset_of_the_reference_run_passes(pytester, tmp_path):
    # no deviation alarm for what a subset leaves out: strictness lives in each deviation's evidence cases
    assert suite(pytester, tmp_path / "a", "--dtype", "float16", "--loss", "nll_loss", "-k", "large").ret == 0
    item = "cross_entropy-index-ii-100-ls0.1-mean-float16-cpu-s0"
    assert (
        suite(pytester, tmp_path / "b", "--loss", "cross_entropy", "--dtype", "float16", "-k", item).ret == 0
    )


def test_loss_selects_losses_exactly(pytester, tmp_path):
    result = suite(pytester, tmp_path, "--loss", "cross_entropy", "--collect-only", "-q")
    ids = [line for line in result.stdout.lines if "::" in line]
    assert ids
    assert all("[cross_entropy-" in line for line in ids)
    assert suite(pytester, tmp_path, "--loss", "cross_entropyy", "--collect-only").ret == 4


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--impl", "no_such_module_anywhere"), "--impl no_such_module_anywhere: cannot be imported"),
        (("--impl", "json"), "--impl json: defines none of the losses"),
        (("--report-dir=/proc/self/loss-parity",), "is not writable"),
    ],
)
def test_a_candidate_or_report_folder_that_cannot_work_is_one_usage_error(pytester, tmp_path, args, said):
    result = pytester.runpytest_inprocess(
        str(ROOT / "parity_tests" / "test_parity.py"),
        "-p",
        "no:cacheprovider",
        f"--rootdir={ROOT}",
        "-c",
        str(ROOT / "pyproject.toml"),
        *((f"--report-dir={tmp_path}",) if not any(a.startswith("--report-dir") for a in args) else ()),
        *args,
    )
    assert result.ret == 4
    errors = [line for line in result.stderr.lines if line.startswith("ERROR")]
    assert len(errors) == 1, result.stderr.str()
    assert said in errors[0]


def test_a_report_dir_that_is_a_file_is_a_usage_error(pytester, tmp_path):
    (tmp_path / "file").write_text("")
    result = suite(pytester, tmp_path / "file")
    assert result.ret == 4
    assert "is not a folder" in result.stderr.str()


def test_a_hang_fails_with_its_case_named_a_record_and_no_second_wait(
    pytester, tmp_path, monkeypatch, capsys
):
    from parity_tests.harness.cases import build, grid
    from parity_tests.harness.check import check

    check(
        build(next(grid("quick", ["cpu"], ["float32"], ["nll_loss"])))
    )  # torch's lazy imports, before the clock
    name = candidate_module(
        tmp_path,
        monkeypatch,
        "hanging_candidate",
        "import time\n\ndef nll_loss_backward(*a, **k):\n    time.sleep(60)\n",
    )
    reports = tmp_path / "reports"
    result = suite(
        pytester,
        reports,
        "--impl",
        name,
        "--timeout",
        "2",
        "-k",
        f"{ITEM} or nll_loss-index-ii-100-sum-float32",
    )
    output = result.stdout.str()
    assert result.ret == 1
    assert (
        "timed out after 2.0 s: the candidate's nll_loss_backward did not return on case nll_loss-" in output
    )
    assert (
        "nll_loss_backward not called: it hung on nll_loss-" in output
    )  # the second item does not wait again
    run_dir = only_run(reports)
    (record,) = [
        json.loads(p.read_text()) for p in (run_dir / "failures").glob("*.json") if "timeout" in p.read_text()
    ]
    assert record["outcome"] == "timeout"
    assert first_line(run_dir / "summary.md").startswith("FAIL: 2 failed")
    # what hung was that run's candidate's: a later run in this process calls its own candidate's functions
    assert not candidates.hung
    # its replay hangs again: past the replay's own limit, "still hangs" (not the candidate's error), exit 1
    (path,) = [p for p in (run_dir / "failures").glob("*.json") if "timeout" in p.read_text()]
    capsys.readouterr()
    assert repro.main([str(path), "--timeout", "1"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "still hangs: no result after 1 s"


def _subprocess_run(tmp_path: Path, impl: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(ROOT / "parity_tests" / "test_parity.py"),
            "-p",
            "no:cacheprovider",
            "-q",
            f"--report-dir={tmp_path / 'reports'}",
            f"--rootdir={ROOT}",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--impl",
            impl,
            *args,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.heavy
@pytest.mark.parametrize("death", ["os._exit(3)", "os.kill(os.getpid(), signal.SIGTERM)"])
def test_a_serial_run_that_dies_leaves_an_incomplete_summary_naming_the_case(tmp_path, death):
    (tmp_path / "dying_candidate.py").write_text(
        "import os, signal\nfrom reference import *  # noqa: F403\nimport reference\n\n"
        f"def nll_loss(input, target, **k):\n    if input.shape == (3, 423):\n        {death}\n"
        "    return reference.nll_loss(input, target, **k)\n"
    )
    result = _subprocess_run(tmp_path, "dying_candidate", "-k", ITEM)
    assert result.returncode != 0
    run_dir = only_run(tmp_path / "reports")
    summary = first_line(run_dir / "summary.md")
    assert summary.startswith("INCOMPLETE: ")
    assert "nll_loss-index-ii-100-mean-3x423-float32-cpu-s0" in summary
    rendered = subprocess.run(
        [sys.executable, "-m", "parity_tests.report", str(run_dir)], cwd=ROOT, capture_output=True, text=True
    )
    assert rendered.returncode == 1
    summary = first_line(run_dir / "summary.md")
    assert summary.startswith("INCOMPLETE: the run did not finish")
    assert "nll_loss-index-ii-100-mean-3x423-float32-cpu-s0" in summary


@pytest.mark.heavy
def test_a_crashed_worker_is_a_failure_with_a_record_of_its_case(tmp_path, capsys):
    (tmp_path / "crashing_candidate.py").write_text(
        "import os\nfrom reference import *  # noqa: F403\nimport reference\n\n"
        "def nll_loss(input, target, **k):\n    if input.shape == (3, 423):\n        os._exit(3)\n"
        "    return reference.nll_loss(input, target, **k)\n"
    )
    result = _subprocess_run(tmp_path, "crashing_candidate", "-n", "1", "-k", ITEM)
    assert result.returncode == 1, result.stdout[-3000:]
    run_dir = only_run(tmp_path / "reports")
    assert first_line(run_dir / "summary.md").startswith("FAIL: 1 crashed")
    (record,) = [json.loads(p.read_text()) for p in (run_dir / "failures").glob("*.json")]
    assert record["outcome"] == "crash"
    assert record["case_id"] == "nll_loss-index-ii-100-mean-3x423-float32-cpu-s0"
    assert "the process died while running case nll_loss-index-ii-100-mean-3x423" in result.stdout
    # its replay runs in a process of its own: the same crash is "still failing", exit status 1
    (path,) = (run_dir / "failures").glob("*.json")
    assert repro.main([str(path)]) == 1
    assert "still crashes: the replay's process died (exit status 3)" in capsys.readouterr().out


def test_an_interrupt_is_incomplete(pytester, tmp_path, monkeypatch):
    name = candidate_module(
        tmp_path,
        monkeypatch,
        "interrupting_candidate",
        "def nll_loss(*a, **k):\n    raise KeyboardInterrupt\n",
    )
    result = suite(pytester, tmp_path / "reports", "--impl", name, "-k", ITEM, no_reraise_ctrlc=True)
    assert result.ret == 2
    assert first_line(only_run(tmp_path / "reports") / "summary.md").startswith("INCOMPLETE: ")


def _record(tmp_path: Path, monkeypatch, pytester) -> Path:
    name = candidate_module(
        tmp_path,
        monkeypatch,
        "record_candidate",
        "def nll_loss(*a, **k):\n    return reference.nll_loss(*a, **k) * 1.01\n",
    )
    suite(pytester, tmp_path / "reports", "--impl", name, "-k", ITEM)
    return sorted((only_run(tmp_path / "reports") / "failures").glob("*.json"))[0]


def test_a_replay_exits_0_1_or_2_and_says_what_is_wrong_with_a_bad_record(
    pytester, tmp_path, monkeypatch, capsys
):
    path = _record(tmp_path, monkeypatch, pytester)
    assert repro.main([str(path)]) == 1  # the record's candidate, found through the record's path
    assert repro.main([str(path), "--impl", "reference"]) == 0
    record = json.loads(path.read_text())
    npz = path.parent / record["inputs_file"]
    bad = {
        "missing": lambda: path.with_name("nothing.json"),
        "corrupt": lambda: _write(path.with_name("corrupt.json"), "{not json"),
        "relabelled": lambda: _write(
            path.with_name("relabel.json"), json.dumps({**record, "dtype": "float16"})
        ),
        "edited": lambda: _write(
            path.with_name("edited.json"),
            json.dumps({**record, "keywords": {**record["keywords"], "reduction": "sum"}}),
        ),
        "unknown loss": lambda: _write(
            path.with_name("unknown.json"), json.dumps({**record, "loss": "hinge"})
        ),
        "npz corrupt": lambda: (
            _write(npz.with_name("broken.npz"), "PK\x03\x04junk"),
            _write(path.with_name("broken.json"), json.dumps({**record, "inputs_file": "broken.npz"})),
        )[1],
    }
    for why, make in bad.items():
        capsys.readouterr()
        assert repro.main([str(make())]) == 2, why
        err = capsys.readouterr().err
        assert err.count("\n") == 1, why
        assert err.startswith("loss-parity: bad record:"), why
    # an npz swapped for another case's: the checksums say so
    other = [p for p in npz.parent.glob("*.npz") if p not in (npz, npz.with_name("broken.npz"))]
    assert other, "the planted candidate fails more than one case"
    other[0].replace(npz)
    assert repro.main([str(path)]) == 2


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_summary_puts_numeric_failures_first_and_writes_html(tmp_path):
    run = Run(type("C", (), {})(), tmp_path, {"candidate": "`x`"}, None)
    run.start()
    numeric = {
        "stage": "loss",
        "status": "fail",
        "wrong": "candidate",
        "torch": "pass",
        "torch_error": 1.0,
        "candidate": "fail",
        "candidate_error": 12.1,
        "tolerance": 8.0,
        "k": 2,
        "deviation": None,
        "unsupported": None,
        "cause": "over tolerance",
        "torch_detail": {
            "error": 1.0,
            "index": [0],
            "expected": 1.0,
            "actual": 1.0,
            "problem": None,
            "scale": 1,
        },
        "candidate_detail": {
            "error": 12.1,
            "index": [3],
            "expected": 0.5,
            "actual": 0.5000001,
            "problem": None,
            "scale": 1,
        },
    }
    raised = {
        **numeric,
        "stage": "grad_input",
        "cause": "grad_input raised ZeroDivisionError",
        "candidate_detail": {"problem": "nll_loss_backward raised ZeroDivisionError: x"},
    }
    declined = {
        **numeric,
        "status": "unsupported",
        "wrong": None,
        "candidate": "unsupported",
        "unsupported": "nope",
    }
    for i, stages in enumerate(([numeric], [raised], [declined])):
        run.add_row(
            "parity",
            {
                "case_id": f"c{i}",
                "item": "i",
                "loss": "nll_loss",
                "dtype": "float32",
                "device": "cpu",
                "features": ["reduction: mean"],
                "outcome": "failed" if i < 2 else "unsupported",
                "stages": stages,
                "replay": "python -m parity_tests.repro c.json",
            },
        )
    run.add_row(
        "errors",
        {
            "loss": "nll_loss",
            "id": "x",
            "stage": "forward",
            "torch": "ValueError",
            "outcome": "differ",
            "message": "m",
        },
    )
    run.close()
    run.items = {"a": "failed"}
    run.collected = 1
    run.finish(1)
    text = (run.dir / "summary.md").read_text()
    order = [
        text.index(h)
        for h in (
            "## Numeric failures",
            "## Exceptions",
            "## Not implemented",
            "## Error parity",
            "docs/tolerances.md",
        )
    ]
    assert order == sorted(order)
    assert "candidate 12.1 eps, torch 1 eps (tolerance 8 eps)" in text
    page = (run.dir / "summary.html").read_text()
    for shown in ("python -m parity_tests.repro c.json", "class='outcome FAIL'", "0.5000001"):
        assert shown in page
    assert render.read_rows(run.dir)["errors"]
    # the docs' links lead to the checkout's docs from where the summary lies, in both pages
    for written in (text, page):
        links = re.findall(r"\]\(([^)#]+)[^)]*\)|href='([^'#]+)", written)
        targets = [md or h for md, h in links if (md or h).endswith(".md")]
        assert len(targets) == len(render.DOCS)
        assert all((run.dir / t).resolve().is_file() for t in targets), targets
