"""Property-based parity: Hypothesis searches each loss's whole input space for a case where torch or the candidate
under test is wrong against the truth, and shrinks it to a minimal one.

`--profile fuzz` (`make fuzz`) searches at full strength; other profiles run a small derandomized slice. A failure
takes the grid's path: a record and npz under `<report-dir>/failures/`, a replay command, a row in the summary.
Registered deviations do not fail the search; the first case each one explained is added to the summary.
"""

from __future__ import annotations

import time

import hypothesis
import pytest
from hypothesis.database import DirectoryBasedExampleDatabase

from parity_tests.harness.candidate import Candidate
from parity_tests.harness.fuzz import database_folder, search
from parity_tests.harness.messages import failure_message
from parity_tests.harness.record import replay_command, write_record
from parity_tests.harness.rows import parity_row
from parity_tests.harness.specs import SPECS
from parity_tests.plugin import selected_losses

# The drawn special values (-inf logits, exact 0 and 1, empty dimensions, logits near the dtype's range) make NaN
# and inf on purpose, on both sides; the comparison checks every NaN and inf position, so NumPy's warnings about
# them are only noise here.
pytestmark = pytest.mark.filterwarnings(
    "ignore:invalid value encountered:RuntimeWarning",
    "ignore:divide by zero encountered:RuntimeWarning",
    "ignore:overflow encountered:RuntimeWarning",
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    config = metafunc.config
    if "fuzz_device" in metafunc.fixturenames and config.loss_parity is not None:
        metafunc.parametrize("fuzz_device", config.parity_devices)
        metafunc.parametrize("loss", selected_losses(config))


@pytest.mark.parity
def test_fuzz(
    loss: str,
    fuzz_device: str,
    candidate: Candidate,
    parity_run,
    fuzz_settings: hypothesis.settings,
    pytestconfig: pytest.Config,
    request: pytest.FixtureRequest,
) -> None:
    config = pytestconfig
    wanted = config.getoption("--dtype")
    dtypes = [d for d in SPECS[loss].dtypes.get(fuzz_device, ()) if not wanted or d in wanted]
    if not dtypes:
        pytest.skip(f"no dtype of {loss} selected on {fuzz_device}")
    if not candidate.defines(loss):
        pytest.skip(f"not implemented by the candidate: {candidate.name} defines no {loss}")
    settings = fuzz_settings
    if settings.database is not None:  # one database per test: a found failure is replayed by this test only
        folder = database_folder(loss, fuzz_device)
        settings = hypothesis.settings(settings, database=DirectoryBasedExampleDatabase(str(folder)))
    item = request.node.nodeid
    start = time.monotonic()
    found = search(
        loss,
        fuzz_device,
        dtypes,
        candidate,
        settings,
        config.getoption("--fuzz-seconds"),
        watch=lambda data: parity_run.case(data, item, snapshot=True),
    )
    parity_run.add_row(
        "fuzz",
        {
            "loss": loss,
            "device": fuzz_device,
            "dtypes": dtypes,
            "examples": found.examples,
            "seconds": round(time.monotonic() - start, 1),
            "max_examples": settings.max_examples,
            "derandomize": settings.derandomize,
            "deviations": {d: result.case.id for d, result in found.deviations.items()},
            "failure": found.failure.case.id if found.failure else None,
        },
    )
    for result in found.deviations.values():
        parity_run.add_row("parity", parity_row(result, item))
    if found.failure:
        path = write_record(found.failure, parity_run.failures_dir)
        replay = replay_command(path, candidate)
        parity_run.add_row("parity", parity_row(found.failure, item, str(path), replay))
        pytest.fail(failure_message(found.failure, replay), pytrace=False)
