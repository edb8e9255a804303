"""Replay one failing case from its record: `python -m parity_tests.repro RECORD.json [--impl MODULE]`.

The inputs come from the record's npz, not from the grid, so the replay is exact even if the grid changes.
Exit status: 1 if the mismatch is still there, 0 if the case now passes.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from parity_tests.harness.check import check
from parity_tests.harness.report import load_record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parity_tests.repro", description=__doc__.splitlines()[0])
    parser.add_argument("record", type=Path, help="a failures/<case-id>.json record")
    parser.add_argument("--impl", help="the implementation to replay against (default: the record's)")
    args = parser.parse_args(argv)
    record, data = load_record(args.record)
    impl_name = args.impl or record["impl"]
    result = check(data, importlib.import_module(impl_name))
    case = data.case
    print(f"{case.id}  [impl {impl_name}]")
    print(f"{case.loss} {case.opts} shape={list(case.shape)} dtype={case.dtype} device={case.device}")
    for stage in result.stages:
        print(f"  {stage.status:9} {stage.verdict.describe()} [tolerance from {stage.tolerance.source}]")
        if stage.deviation:
            print(f"            registered deviation {stage.deviation.id}: {stage.deviation.what_torch_does}")
    still = bool(result.failures) or any(s.status == "deviation" for s in result.stages)
    print("still failing" if still else "passes now")
    return 1 if still else 0


if __name__ == "__main__":
    sys.exit(main())
