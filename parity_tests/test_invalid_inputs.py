"""What each device does with inputs that its kernels check inside the kernel (harness/invalid.py): an error at
the call, a device-side assert, or a silent result, against the outcome recorded for the device. Off cpu each
input runs in a subprocess of its own, so that an assert cannot break the CUDA context of this run."""

from __future__ import annotations

import pytest

from parity_tests.harness.invalid import INVALID, outcome, outcome_in_subprocess
from parity_tests.plugin import selected_losses


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    config = metafunc.config
    if "invalid_device" in metafunc.fixturenames and config.loss_parity is not None:
        metafunc.parametrize("invalid_device", config.parity_devices)
        losses = selected_losses(config)
        metafunc.parametrize("name", [n for n, invalid in INVALID.items() if invalid.loss in losses])


@pytest.mark.parity
def test_invalid_input(name: str, invalid_device: str, parity_run) -> None:
    device, invalid = invalid_device, INVALID[name]
    observed = outcome(name, device) if device == "cpu" else outcome_in_subprocess(name, device)
    expected = invalid.outcomes.get(device)
    parity_run.add_row(
        "invalid",
        {
            "name": name,
            "loss": invalid.loss,
            "what": invalid.what,
            "device": device,
            "expected": expected,
            **observed,
        },
    )
    if expected is None:
        pytest.skip(f"no outcome recorded for {device}; torch here: {observed}")
    assert observed["outcome"] == expected, (
        f"{invalid.loss} with {invalid.what} on {device}: torch gave {observed}, recorded outcome {expected!r} "
        "(harness/invalid.py)"
    )
