"""The parity suite: torch against an implementation under test, case by case."""
