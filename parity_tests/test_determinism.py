"""Bitwise determinism of torch on each device (harness/determinism.py): a call repeated on the same inputs must
give the same bits, unless torch itself documents the path as nondeterministic (then it is reported)."""

from __future__ import annotations

import pytest

from parity_tests.harness import determinism
from parity_tests.harness.cases import Case, build
from parity_tests.plugin import selected_losses


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    config = metafunc.config
    if "repeat_case" in metafunc.fixturenames and config.loss_parity is not None:
        cases = list(
            determinism.cases(
                config.getoption("--profile"),
                config.parity_devices,
                config.getoption("--dtype"),
                selected_losses(config),
            )
        )
        metafunc.parametrize("repeat_case", cases, ids=[c.id for c in cases])


@pytest.mark.parity
def test_determinism(repeat_case: Case, parity_run) -> None:
    result = determinism.check_determinism(build(repeat_case))
    parity_run.add_row(
        "determinism",
        {
            "case_id": result.case_id,
            "loss": repeat_case.loss,
            "dtype": repeat_case.dtype,
            "device": result.device,
            "differing": result.differing,
            "documented": result.documented,
        },
    )
    assert result.ok, (
        f"{repeat_case.id}: {', '.join(result.differing)} changed between {determinism.REPEATS} identical calls, "
        "and torch does not document this path as nondeterministic"
    )
