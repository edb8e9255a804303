"""The suite's power, measured: per dtype and stage, the smallest relative error it catches.

`python -m parity_tests.harness.sensitivity [--profile quick]` runs every case once, then plants a uniform relative
error of k eps (k = 1, 2, 3, ...) into the truth's result of each stage and finds the smallest k that the comparison
with torch flags. torch must pass every case it is compared on (no false failure).
Printed as a Markdown table: the k that every case catches (the guarantee) and the median case's k.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from parity_tests.harness.cases import Case, build, grid
from parity_tests.harness.compare import compare
from parity_tests.harness.dtypes import eps, round_to
from parity_tests.harness.runner import run_torch, run_truth
from parity_tests.harness.stages import STAGES
from parity_tests.harness.tables import deviation_for, tolerance_for

LADDER = range(1, 65)


def smallest_caught(case, stage, expected, actual, scale_of) -> int | None:
    tolerance = tolerance_for(case, stage).eps
    for k in LADDER:
        planted = expected * (1 + k * eps(case.dtype))
        if not compare(stage, planted, actual, case.dtype, tolerance, scale_of).ok:
            return k
    return None


def measure(
    profile: str, cases: Iterable[Case] | None = None
) -> tuple[dict[tuple[str, str], list[tuple[int, str]]], int]:
    """(dtype, stage) -> (smallest k caught, case id) per case, and the count of false failures, over the profile's
    cases on cpu (or the `cases` given)."""
    found: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    false_failures = 0
    for case in grid(profile, ["cpu"]) if cases is None else cases:
        data = build(case)
        actual, expected = run_torch(data), run_truth(data)
        for stage in STAGES:
            if expected[stage] is None or actual[stage] is None:  # no such stage, or torch has no value there
                continue
            term = case.spec.term_scales.get(stage)
            scale_of = term(data.arrays, data.keywords, expected) if term else 0.0
            values = expected[stage][np.isfinite(round_to(expected[stage], case.dtype))]
            if not np.any(values):  # zeros, NaN, inf only: a relative error is invisible by definition
                continue
            tolerance = tolerance_for(case, stage).eps
            verdict = compare(stage, expected[stage], actual[stage], case.dtype, tolerance, scale_of)
            if not verdict.ok:
                if deviation_for(data, stage, verdict, expected[stage], actual[stage])[1]:
                    continue  # a registered torch deviation: its errors are not the suite's power
                false_failures += 1
                continue
            k = smallest_caught(case, stage, expected[stage], actual[stage], scale_of)
            found[(case.dtype, stage)].append((k if k is not None else LADDER[-1] + 1, case.id))
    return found, false_failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    args = parser.parse_args()
    found, false_failures = measure(args.profile)
    print(f"profile {args.profile}: {false_failures} false failures\n")
    print(
        "| dtype | stage | stages measured | caught in every case from | median case from | least sensitive case |"
    )
    print("|---|---|---|---|---|---|")
    for (dtype, stage), found_ks in sorted(found.items()):
        ks = [k for k, _ in found_ks]
        hardest = max(found_ks)
        print(
            f"| {dtype} | {stage} | {len(ks)} | {hardest[0]} eps | {int(np.median(ks))} eps | `{hardest[1]}` |"
        )


if __name__ == "__main__":
    main()
