"""The course deck "Cross Entropy vs NLLLoss" as executable lessons: `python -m lessons --out DIR`.

Each lesson module has a `run(out_dir, plots=True) -> dict` that writes its CSVs (and PNGs, with matplotlib)
and returns a summary: "title", "notes" (lines to print), "files", and the lesson's key numbers. The
pure functions beside `run` are what the tests check.
"""

from __future__ import annotations

from types import ModuleType


def lesson_modules() -> list[ModuleType]:
    """The lessons in course order (imported on demand: lessons 4 and 5 import torch)."""
    from lessons import (
        bce_with_logits,
        likelihood_to_nll,
        log_softmax_nll,
        mse_vs_cross_entropy,
        softmax_cross_entropy,
    )

    return [mse_vs_cross_entropy, softmax_cross_entropy, likelihood_to_nll, log_softmax_nll, bce_with_logits]
