"""Collects the benchmark rows, pairs torch with the reference and prints/writes the comparison table."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from reference import _blocks

from .cases import CASES, ONE_CALL, STAGES


@dataclass
class Row:
    min_s: float
    median_s: float
    rounds: int
    peak: int


_ROWS: dict[tuple[str, str, str], Row] = {}  # (case id, stage, impl) -> Row
_LOAD: list[tuple[float, float, float]] = []


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(config.torch_default_threads)  # the suite's root conftest set 1 for its small cases


def pytest_sessionstart(session: pytest.Session) -> None:
    _LOAD.append(os.getloadavg())


@pytest.fixture
def record_bench():
    def record(case, stage, impl, benchmark, peak: int) -> None:
        stats = benchmark.stats.stats
        _ROWS[(case.id, stage, impl)] = Row(stats.min, stats.median, stats.rounds, peak)

    return record


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f}"


def _load(load: tuple[float, ...] | None) -> str:
    return "-" if load is None else ", ".join(f"{v:.2f}" for v in load)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def render(load_before, load_after) -> str:
    head = [
        "# Benchmarks: the reference against torch",
        "",
        f"- machine: {_cpu_model()}, {os.cpu_count()} cpus; python {platform.python_version()}, "
        f"numpy {np.__version__}, torch {torch.__version__}",
        f"- threads: torch {torch.get_num_threads()}, reference {_blocks.THREADS} "
        f"(blocks of {_blocks.BLOCK_ELEMENTS} elements)",
        f"- load average (1, 5, 15 min): {_load(load_before)} before, {_load(load_after)} after",
        "- times: min (median) over the rounds, ms; ratio = reference min / torch min",
        "- peak, MB: the most memory held at once during one call, above the start, inputs excluded, output"
        " included (torch: profiler memory events; reference: tracemalloc; see benchmarks/memory.py)",
        "",
        "| loss | shape | stage | torch ms | reference ms | ratio | torch peak MB | reference peak MB |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    lines = []
    for case in CASES:
        for stage in STAGES:
            t = _ROWS.get((case.id, "fwd+bwd" if stage == ONE_CALL else stage, "torch"))
            r = _ROWS.get((case.id, stage, "reference"))
            if r is None and (t is None or stage == ONE_CALL):
                continue
            ratio = f"{r.min_s / t.min_s:.2f}" if t and r else "-"
            shape = "x".join(map(str, case.shape))

            def ms(row: Row | None) -> str:
                return "-" if row is None else f"{row.min_s * 1e3:,.1f} ({row.median_s * 1e3:,.1f})"

            lines.append(
                f"| {case.loss} | {shape} | {stage} | {ms(t)} | {ms(r)} | {ratio} | {_mb(t and t.peak)} | "
                f"{_mb(r and r.peak)} |"
            )
    return "\n".join(head + lines) + "\n"


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if not _ROWS:
        return
    text = render(_LOAD[0] if _LOAD else None, os.getloadavg())
    out = Path(config.getoption("--report-dir")) / "bench.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    terminalreporter.write_sep("-", "reference / torch")
    for line in text.splitlines():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"written to {out}")
