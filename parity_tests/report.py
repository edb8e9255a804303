"""Render a run's summary again, or the summary of a run that never finished:
`python -m parity_tests.report RUN_DIR` (a folder under `<report-dir>/runs/`).

A finished run is rendered from its run.json and result lines. A run whose process died or was stopped (a CI time
limit, a crash, a kill) left no run.json: its summary says INCOMPLETE (FAIL if items had failed), names the case
each process was running from its journal, and shows everything its result lines hold.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from parity_tests.harness import render

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    run_dir = Path(args[0])
    if (
        not (run_dir / "rows").is_dir()
        and not (run_dir / "journal").is_dir()
        and not (run_dir / "run.json").exists()
    ):
        print(
            f"loss-parity: {run_dir} is not a run's folder (no rows/, journal/ or run.json)", file=sys.stderr
        )
        return 2
    done = run_dir / "run.json"
    info = json.loads(done.read_text()) if done.exists() else render.dead_run_info(run_dir)
    path = render.write(run_dir, info)
    print(f"loss-parity: {info['outcome']}: {info['reason']}")
    print(f"loss-parity: summary in {path}")
    return 0 if info["outcome"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
