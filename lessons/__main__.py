"""`python -m lessons --out DIR`: run every lesson, write its CSVs and plots under DIR, print a summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lessons import lesson_modules
from lessons.output import have_matplotlib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lessons", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("reports/lessons"), help="output folder")
    parser.add_argument("--no-plots", action="store_true", help="write the CSVs only")
    args = parser.parse_args(argv)

    plots = not args.no_plots
    if plots and not have_matplotlib():
        print("matplotlib is not installed: CSVs only (pip install -e '.[lessons]' for the plots)")
        plots = False
    n_files = 0
    for module in lesson_modules():
        summary = module.run(args.out, plots=plots)
        print(f"\n{summary['title']}")
        for note in summary["notes"]:
            print(f"  - {note}")
        n_files += len(summary["files"])
    print(f"\n{n_files} files written under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
