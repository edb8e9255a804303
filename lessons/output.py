"""Writing a lesson's results: CSV tables (always) and PNG figures (when matplotlib is installed).

matplotlib is the optional `lessons` extra, so it is imported only inside `new_figure`: the lessons' numbers,
their CSVs and the tests never need it.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def have_matplotlib() -> bool:
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):  # ValueError: blocked with sys.modules["matplotlib"] = None
        return False


def _cell(value: Any) -> str:
    """Floats in their shortest round-trip form, so a kept loss value reads back bit for bit."""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return repr(value) if math.isfinite(value) else str(value)  # "nan", "inf", "-inf"
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def write_csv(path: Path, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> Path:
    """Write equal-length columns as a CSV with a header row; returns the path."""
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns of unequal length: {lengths}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in zip(*columns.values(), strict=True):
            writer.writerow(_cell(v) for v in row)
    return path


def columns_of(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Rows (dicts with the same keys, in order) as columns, for `write_csv`."""
    columns: dict[str, list[Any]] = {}
    for row in rows:
        for name, value in row.items():
            columns.setdefault(name, []).append(value)
    return columns


def read_csv(path: Path) -> dict[str, list[str]]:
    """The columns of a CSV written by `write_csv`, as strings (for tests and for a quick look)."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    return {name: [row[i] for row in body] for i, name in enumerate(header)}


def new_figure(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    """A (figure, axes) pair drawn off-screen; imports matplotlib on first use."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed or wanted
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, squeeze=False, **kwargs)


def save_figure(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
