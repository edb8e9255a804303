"""What this repository's own tests need beyond the suite's plugin (parity_tests/plugin.py, which an installed
suite registers through its pytest11 entry point; a checkout that is not installed loads it from here)."""

# pytester: the meta-tests run whole sessions of the suite in-process, not as subprocesses (no second torch import).
pytest_plugins = ["pytester", "parity_tests.plugin"]
