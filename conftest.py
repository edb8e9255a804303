"""What this repository's own tests need beyond the suite's plugin (parity_tests/plugin.py, which an installed
suite registers through its pytest11 entry point; a checkout that is not installed loads it from here)."""

import pytest

# pytester: the meta-tests run whole sessions of the suite in-process, not as subprocesses (no second torch import).
pytest_plugins = ["pytester", "parity_tests.plugin"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "heavy: a meta-test of several seconds (a session of its own in new processes): runs first"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Run the heavy meta-tests first: at the end of the run they left one xdist worker busy while the other sat idle.
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)
