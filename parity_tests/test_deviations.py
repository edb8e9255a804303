"""The registered torch deviations still hold: each one's evidence (grid cases by id, and the reproductions written
out in deviations.toml) still shows torch deviating in the way the entry explains. Where it no longer does, torch may
have been fixed there: narrow or remove the entry. Only evidence this run selects (device, dtype, loss) and the
installed torch's version range covers is checked."""

from __future__ import annotations

import pytest

from parity_tests.harness.check import check
from parity_tests.harness.evidence import Evidence, evidence
from parity_tests.plugin import selected_losses


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    config = metafunc.config
    if "proof" in metafunc.fixturenames and config.loss_parity is not None:
        found = list(evidence(config.parity_devices, config.getoption("--dtype"), selected_losses(config)))
        metafunc.parametrize("proof", found, ids=[e.label for e in found])


@pytest.mark.parity
def test_registered_deviation_still_holds(proof: Evidence, parity_run) -> None:
    data = proof.data()
    result = check(data)
    explained = [
        s.stage
        for s in result.stages
        if s.torch_status == "deviation" and s.deviation.id == proof.deviation.id
    ]
    parity_run.add_row(
        "evidence",
        {
            "deviation": proof.deviation.id,
            "case_id": proof.label,
            "explained": explained,
            "device": proof.device,
        },
    )
    assert explained, (
        f"registered deviation {proof.deviation.id}: torch no longer deviates on {proof.label} "
        f"({', '.join(f'{s.stage}: torch {s.torch_status}' for s in result.stages)}); if torch was fixed, narrow or "
        "remove the entry in deviations.toml"
    )
