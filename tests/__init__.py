"""The repository's own tests: the oracle's self-checks (no torch) and the harness's meta-tests. Not shipped: an
installed suite runs only the checks of a candidate (parity_tests/)."""
