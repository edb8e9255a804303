"""Replay one failing case from its record:
`python -m parity_tests.repro RECORD.json [--impl MODULE] [--impl-path DIR]`.

The inputs come from the record's npz (checked against the checksums the record keeps), not from the grid, so the
replay is exact even if the grid changes. The case is judged as the run judged it: truth, torch and candidate.

Exit status: 0 the case passes now; 1 it still fails (or still hangs past --timeout, or still kills its process);
2 the record cannot be replayed (missing, corrupt, relabelled, of an unknown loss, or its candidate cannot be
imported), said in one line. A case that crashed its run is replayed in a process of its own, so that a crash again
is an exit status of 1 like any other failure.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parity_tests.repro", description=__doc__.splitlines()[0])
    parser.add_argument("record", type=Path, help="a failures/<case-id>.json record")
    parser.add_argument("--impl", help="the candidate to replay against (default: the record's)")
    parser.add_argument("--impl-path", help="a folder to import the candidate from (default: the record's)")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds before a hanging case counts as failing"
    )
    parser.add_argument("--in-this-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from parity_tests.harness import candidate as candidates
    from parity_tests.harness.check import check
    from parity_tests.harness.messages import stage_lines
    from parity_tests.harness.record import BadRecord, load_record

    try:
        record, data = load_record(args.record)
    except BadRecord as exc:
        print(f"loss-parity: bad record: {exc}", file=sys.stderr)
        return 2
    recorded = record.get("candidate") or {}
    name = args.impl or recorded.get("name") or "reference"
    path = args.impl_path or (recorded.get("path") if not args.impl else None)
    if path and path not in sys.path:
        sys.path.insert(0, path)
    try:
        candidate = candidates.load(name)
    except candidates.CandidateError as exc:
        print(f"loss-parity: {exc}", file=sys.stderr)
        return 2
    if record.get("outcome") == "crash" and not args.in_this_process:
        replay = [sys.executable, "-m", "parity_tests.repro", str(args.record), "--impl", name]
        replay += [
            *(["--impl-path", path] if path else []),
            "--timeout",
            str(args.timeout),
            "--in-this-process",
        ]
        return _in_a_child(replay)
    case = data.case
    print(f"{case.id}  [candidate {candidate.name}, {candidate.kind} kind]")
    print(f"{case.loss} {case.opts} shape={list(case.shape)} dtype={case.dtype} device={case.device}")
    if record.get("outcome") in ("timeout", "crash"):
        print(f"recorded: {record['outcome']}: {record.get('problem')}")
    if hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, _hung)
        signal.setitimer(signal.ITIMER_REAL, args.timeout)
    try:
        result = check(data, candidate)
    except _StillHangs:
        print(f"still hangs: no result after {args.timeout:g} s")
        return 1
    finally:
        if hasattr(signal, "SIGALRM"):
            signal.setitimer(signal.ITIMER_REAL, 0)
    for stage in result.stages:
        print(
            f"  {stage.status:11} {stage.stage}: torch {stage.torch_status}, candidate {stage.candidate_status}"
        )
        if stage.status == "fail":
            print("\n".join("  " + line for line in stage_lines(stage)[1:]))
        elif stage.torch_status == "deviation":
            print(
                f"              registered deviation {stage.deviation.id}: {stage.deviation.what_torch_does}"
            )
    for deviation in result.lost_evidence:
        print(
            f"  registered deviation {deviation.id} names this case as evidence; torch no longer deviates here"
        )
    print("still failing" if result.failed else "passes now")  # the verdicts of VERDICTS
    return 1 if result.failed else 0


VERDICTS = {"passes now": 0, "still failing": 1}


def _in_a_child(replay: list[str]) -> int:
    """Run the replay in a process of its own: its exit status where it reached a verdict, else 1 (it died)."""
    child = subprocess.run(replay, stdout=subprocess.PIPE, text=True)
    sys.stdout.write(child.stdout)
    lines = child.stdout.rstrip().splitlines()
    last = lines[-1] if lines else ""
    if VERDICTS.get(last) == child.returncode or (last.startswith("still hangs") and child.returncode == 1):
        return child.returncode
    how = f"signal {-child.returncode}" if child.returncode < 0 else f"exit status {child.returncode}"
    print(f"still crashes: the replay's process died ({how}) before the case's verdict")
    return 1


class _StillHangs(BaseException):
    """The replay's time limit. Not an Exception: the harness takes those for the candidate's own errors."""


def _hung(signum, frame):
    raise _StillHangs


if __name__ == "__main__":
    sys.exit(main())
