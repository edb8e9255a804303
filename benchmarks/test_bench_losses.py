"""Forward, backward and forward+backward of each loss, torch (float32, cpu) against the reference.

Each test times one (case, stage, implementation) with pytest-benchmark, then measures the call's peak memory
once, untimed; conftest.py pairs the rows and prints the reference/torch table.
"""

from __future__ import annotations

import pytest

from .cases import CASES, IMPLS, STAGES, has_stage, inputs, reference_stages, torch_stages
from .memory import peak_torch, peak_traced

_DATA: dict[str, dict] = {}  # the inputs of the case in use: generating 4096 x 32000 takes a while


def _data(case) -> dict:
    if case.id not in _DATA:
        _DATA.clear()
        _DATA[case.id] = inputs(case)
    return _DATA[case.id]


@pytest.mark.parametrize(
    ("bench_case", "stage", "impl"),
    [
        pytest.param(case, stage, impl, id=f"{case.id}-{stage}-{impl}")
        for case in CASES
        for stage in STAGES
        for impl in IMPLS
        if has_stage(case, stage, impl)
    ],
)
def test_loss(benchmark, record_bench, bench_case, stage, impl) -> None:
    data = _data(bench_case)
    stages = (torch_stages if impl == "torch" else reference_stages)(bench_case, data)
    call = stages[stage]
    benchmark.group = f"{bench_case.id} {stage}"
    if isinstance(call, tuple):  # torch's backward: a fresh graph per round, built untimed
        build, run = call
        benchmark.pedantic(run, setup=lambda: (build(), {}), rounds=bench_case.rounds, warmup_rounds=1)

        def call() -> object:  # for the memory: the forward's saved tensors are alive during the backward
            return run(*build())

    else:
        benchmark.pedantic(call, rounds=bench_case.rounds, warmup_rounds=1)
    peak = peak_torch(call) if impl == "torch" else peak_traced(call)
    benchmark.extra_info["peak_bytes"] = peak
    record_bench(bench_case, stage, impl, benchmark, peak)
