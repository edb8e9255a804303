"""The machinery of the parity suite (no test functions live here)."""
