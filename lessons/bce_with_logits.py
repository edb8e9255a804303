"""Lesson 5 — BCEWithLogitsLoss vs Sigmoid + BCELoss, as the logit grows.

The composed form first rounds p = sigmoid(x) to the dtype. Near 1 the dtype's spacing is eps/2, so for
x beyond ~ln(2/eps) (17 in float32, 8 in float16, 6 in bfloat16) p rounds to exactly 1. With target 0 the
loss -ln(1 - p) is then -ln 0 = inf, which BCELoss clamps to 100: the true loss (about x) is lost, and so is
the gradient, sigma'(x) = p (1 - p) = 0 — a confidently wrong prediction gets no correction. Near 0 floats
are dense, so the mirror case (target 1, x -> -inf) survives until p underflows (|x| ~ 17 in float16, ~88-104
in float32), but BCELoss's backward divides by max(p (1 - p), 1e-12), so its gradient goes wrong past
|x| = ln(1e12) = 27.6 even in float64. BCEWithLogitsLoss computes (1 - y) x - log_sigmoid(x) from the logit:
no rounding to 1, no clamp, within a few eps in every dtype.

Truth: float64 math on the dtype-rounded logit (so only the loss's own error is measured). Torch: each form in
the dtype. Reference: its float64 losses fed the dtype-rounded sigmoid (composed) or the rounded logit — what
an exact BCELoss can do with the probability the network handed it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import reference
from lessons.output import columns_of, new_figure, save_figure, write_csv

DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
MAGNITUDES = np.logspace(0.0, np.log10(200.0), 61)  # |x| from 1 to 200
# name -> (sign of the logit, target): both are confidently wrong predictions.
CASES: dict[str, tuple[float, float]] = {"p->1 (y=0, x=+|x|)": (1.0, 0.0), "p->0 (y=1, x=-|x|)": (-1.0, 1.0)}
SIDES = ("torch", "reference")
FORMS = ("sigmoid+BCELoss", "BCEWithLogitsLoss")
THRESHOLD = 0.1  # "badly wrong": relative error above 10%


def eps(dtype: str) -> float:
    return float(torch.finfo(DTYPES[dtype]).eps)


def round_to(values: np.ndarray, dtype: str) -> np.ndarray:
    """values rounded to dtype (nearest-even, as torch casts), returned as float64."""
    return torch.from_numpy(np.asarray(values, dtype=np.float64)).to(DTYPES[dtype]).double().numpy()


def truth(x: np.ndarray, y: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact-in-float64 loss and d loss / dx of BCE(sigmoid(x), y): softplus in its stable form, with no
    reference or torch code, so it can judge both."""
    loss = np.maximum(x, 0.0) - x * y + np.log1p(np.exp(-np.abs(x)))
    sig = np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))
    return loss, sig - y


def _torch(form: str, x: np.ndarray, y: float, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    x_t = torch.tensor(x, dtype=DTYPES[dtype], requires_grad=True)
    y_t = torch.full_like(x_t, y).detach()
    if form == "sigmoid+BCELoss":
        loss = F.binary_cross_entropy(torch.sigmoid(x_t), y_t, reduction="none")
    else:
        loss = F.binary_cross_entropy_with_logits(x_t, y_t, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), x_t)
    return loss.detach().double().numpy(), grad.double().numpy()


def _reference(form: str, x: np.ndarray, y: float, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    target, ones = np.full_like(x, y), np.ones_like(x)
    if form == "sigmoid+BCELoss":
        p = round_to(reference.sigmoid(x), dtype)  # the probability as the dtype holds it
        loss = reference.binary_cross_entropy(p, target, reduction="none")
        grad_p, _ = reference.binary_cross_entropy_backward(ones, p, target, reduction="none")
        with np.errstate(invalid="ignore"):  # inf * 0 -> nan is the answer where it happens
            return loss, grad_p * p * (1.0 - p)  # sigmoid' from its output, as autograd does
    loss = reference.binary_cross_entropy_with_logits(x, target, reduction="none")
    grad, _ = reference.binary_cross_entropy_with_logits_backward(ones, x, target, reduction="none")
    return loss, grad


def relative_error(value: np.ndarray, true: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.abs(value - true) / np.abs(true)  # nan/inf results stay nan/inf


def measure(case: str, dtype: str) -> dict[str, np.ndarray]:
    """One case in one dtype over MAGNITUDES: the truth and each side x form's loss, gradient and errors."""
    sign, y = CASES[case]
    x = round_to(sign * MAGNITUDES, dtype)
    true_loss, true_grad = truth(x, y)
    result = {"x": x, "truth_loss": true_loss, "truth_grad": true_grad}
    for side, compute in (("torch", _torch), ("reference", _reference)):
        for form in FORMS:
            loss, grad = compute(form, x, y, dtype)
            key = f"{side} {form}"
            result[f"{key} loss"], result[f"{key} grad"] = loss, grad
            result[f"{key} loss_err"] = relative_error(loss, true_loss)
            result[f"{key} grad_err"] = relative_error(grad, true_grad)
    return result


def measure_all() -> dict[tuple[str, str], dict[str, np.ndarray]]:
    return {(case, dtype): measure(case, dtype) for case in CASES for dtype in DTYPES}


def first_bad_magnitude(errors: np.ndarray, threshold: float = THRESHOLD) -> float | None:
    """Smallest |x| on the grid whose relative error exceeds threshold (nan and inf count as bad)."""
    bad = ~(errors <= threshold)
    return float(MAGNITUDES[np.argmax(bad)]) if bad.any() else None


def worst_in_eps(errors: np.ndarray, dtype: str) -> float:
    return float(np.max(errors) / eps(dtype))


def summarise(results: dict[tuple[str, str], dict[str, np.ndarray]], dtype: str) -> dict[Any, Any]:
    """For one dtype: (side, "loss" | "grad", case) -> first |x| where sigmoid+BCELoss is >10% off, and the
    worst error of torch's BCEWithLogitsLoss (loss or gradient, either case) in eps of the dtype."""
    summary: dict[Any, Any] = {
        (side, stage, case): first_bad_magnitude(results[case, dtype][f"{side} sigmoid+BCELoss {stage}_err"])
        for side in SIDES
        for stage in ("loss", "grad")
        for case in CASES
    }
    summary["with_logits_worst_eps"] = max(
        worst_in_eps(results[case, dtype][f"torch BCEWithLogitsLoss {stage}_err"], dtype)
        for case in CASES
        for stage in ("loss", "grad")
    )
    return summary


def _rows(results: dict[tuple[str, str], dict[str, np.ndarray]]) -> dict[str, list[Any]]:
    """One row per (case, dtype, side, form, |x|)."""
    return columns_of(
        {
            "case": case,
            "dtype": dtype,
            "side": side,
            "form": form,
            "abs_x": abs(r["x"][i]),
            "x": r["x"][i],
            "truth_loss": r["truth_loss"][i],
            "loss": r[f"{side} {form} loss"][i],
            "loss_rel_err": r[f"{side} {form} loss_err"][i],
            "truth_grad": r["truth_grad"][i],
            "grad": r[f"{side} {form} grad"][i],
            "grad_rel_err": r[f"{side} {form} grad_err"][i],
        }
        for (case, dtype), r in results.items()
        for side in SIDES
        for form in FORMS
        for i in range(MAGNITUDES.size)
    )


def plot(results: dict[tuple[str, str], dict[str, np.ndarray]], stage: str, path: Path) -> Path:
    floor, ceiling = 1e-18, 1e2  # exact results (error 0) are drawn at the floor, nan and inf at the ceiling
    fig, axes = new_figure(2, len(DTYPES), figsize=(18, 8), sharex=True, sharey=True)
    styles = {
        (FORMS[0], 0): ("-", "tab:red"),
        (FORMS[0], 1): ("-", "tab:blue"),
        (FORMS[1], 0): ("--", "tab:orange"),
        (FORMS[1], 1): ("--", "tab:green"),
    }
    for row, side in enumerate(SIDES):
        for col, dtype in enumerate(DTYPES):
            ax = axes[row][col]
            for form in FORMS:
                for i, case in enumerate(CASES):
                    err = results[case, dtype][f"{side} {form} {stage}_err"]
                    err = np.clip(np.nan_to_num(err, nan=ceiling, posinf=ceiling), floor, ceiling)
                    style, color = styles[form, i]
                    # The two with-logits curves coincide (softplus(|x|) both ways): the first is drawn wider.
                    width = 3.0 if (form, i) == (FORMS[1], 0) else 1.5
                    ax.loglog(MAGNITUDES, err, style, color=color, lw=width, label=f"{form}, {case}")
            ax.axhline(eps(dtype), color="gray", lw=0.8, ls=":", label="eps of the dtype")
            ax.axhline(THRESHOLD, color="black", lw=0.8, ls=":", label="10%")
            ax.set(title=f"{side}, {dtype}", xlabel="|x| (logit magnitude)", ylim=(floor / 3, ceiling * 3))
            if col == 0:
                what = "loss" if stage == "loss" else "gradient d loss/dx"
                ax.set_ylabel(f"relative error of the {what}\n(0 drawn at 1e-18, nan/inf at 1e2)")
    axes[0][0].legend(fontsize=7)
    return save_figure(fig, path)


def run(out_dir: Path, plots: bool = True) -> dict[str, Any]:
    out = Path(out_dir) / "5_bce_with_logits"
    results = measure_all()
    files = [write_csv(out / "error_vs_logit.csv", _rows(results))]
    if plots:
        files.append(plot(results, "loss", out / "loss_error_vs_logit.png"))
        files.append(plot(results, "grad", out / "grad_error_vs_logit.png"))

    table = {dtype: summarise(results, dtype) for dtype in DTYPES}
    case_a, case_b = CASES
    notes = [
        f"{dtype:>8}: sigmoid+BCELoss loss >10% off from |x| = {_fmt(t['torch', 'loss', case_a])} (p->1) and "
        f"{_fmt(t['torch', 'loss', case_b])} (p->0), its gradient from {_fmt(t['torch', 'grad', case_a])} / "
        f"{_fmt(t['torch', 'grad', case_b])}; BCEWithLogitsLoss's worst "
        f"error {t['with_logits_worst_eps']:.2g} eps"
        for dtype, t in table.items()
    ]
    a32 = results[case_a, "float32"]
    notes += [
        f"float32, |x| = 200, y = 0: truth {a32['truth_loss'][-1]:g} (gradient {a32['truth_grad'][-1]:g}); "
        f"sigmoid+BCELoss {a32['torch sigmoid+BCELoss loss'][-1]:g} (gradient "
        f"{a32['torch sigmoid+BCELoss grad'][-1]:g}): sigmoid rounded to 1, -ln(1 - 1) = inf clamped to 100, "
        f"sigma' = 0; float16's gradient there is "
        f"{results[case_a, 'float16']['torch sigmoid+BCELoss grad'][-1]:g} (inf * 0)",
        "the composed gradient with p->0 is wrong from |x| = ln(1e12) = 27.6 at the latest, float64 "
        "included: BCELoss's backward divides by max(p (1 - p), 1e-12); and a loss clamped at 100 is wrong "
        "for any |x| > 100",
        "the reference's float64 BCELoss fed the same rounded sigmoid breaks at "
        + ", ".join(
            f"{dtype} {_fmt(t['reference', 'loss', case_a])} / {_fmt(t['reference', 'loss', case_b])}"
            for dtype, t in table.items()
        )
        + ": the damage is done when p is rounded; torch's float32 sigmoid breaks sooner, as it is 1 from "
        "x = 16.6 (correctly rounded: 17.3) and 0 below x = -88.7 (where exp(-x) overflows)",
    ]
    return {
        "title": "5. BCEWithLogitsLoss vs Sigmoid + BCELoss",
        "notes": notes,
        "files": [str(f) for f in files],
        "table": table,
    }


def _fmt(magnitude: float | None) -> str:
    return "never" if magnitude is None else f"{magnitude:.3g}"
