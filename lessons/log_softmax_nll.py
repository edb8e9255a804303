"""Lesson 4 — CrossEntropyLoss = LogSoftmax + NLLLoss, and what NLLLoss does with the wrong input.

NLLLoss only picks -x[n, y_n]: it trusts its input to be log-probabilities. CrossEntropyLoss is
nll_loss(log_softmax(scores)), so it takes raw scores. Fed anything else NLLLoss still returns a number:
- raw scores: the "loss" is minus the true-class score, negative whenever that score is positive and unbounded
  below (add 10 to every score: same predictions, loss 10 lower); its gradient is -1/N on the true score
  whatever the prediction, so training just inflates that score.
- probabilities: the "loss" is -q_true, always in [-1, 0]; its gradient through softmax is
  -q_true (1 - q_true) on the true score, which vanishes when the prediction is badly wrong (q_true -> 0):
  MSE's slowdown again.
And CrossEntropyLoss fed probabilities (a softmax layer before it) squeezes every loss into
[ln(e + C - 1) - 1, ln(e + C - 1)] ([0.551, 1.551] for C = 3): never near 0 even for a perfect prediction,
and with a weak gradient.
All numbers by the reference, checked against torch (float64) side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import reference
from lessons.output import columns_of, new_figure, save_figure, write_csv

# The deck's scores for all three samples; only the label differs: right (gato), wrong, very wrong.
SCORES = np.tile([1.3, 0.2, -2.1], (3, 1))
TARGETS = np.array([0, 1, 2])
SHIFT = 10.0  # added to every score: softmax, and so every correct loss, cannot tell


def _softmax_vjp(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Gradient through p = softmax(s): dp/ds^T g = p * (g - sum_j g_j p_j)."""
    return p * (g - (g * p).sum(axis=-1, keepdims=True))


def _log_softmax_vjp(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Gradient through log_softmax(s): g - softmax(s) * sum_j g_j."""
    return g - p * g.sum(axis=-1, keepdims=True)


# usage -> (the reference loss, what it is fed)
_PARTS: dict[str, tuple[str, str]] = {
    "CrossEntropyLoss(scores)": ("cross_entropy", "scores"),
    "NLLLoss(LogSoftmax(scores))": ("nll_loss", "log_softmax"),
    "NLLLoss(scores)": ("nll_loss", "scores"),
    "NLLLoss(Softmax(scores))": ("nll_loss", "softmax"),
    "CrossEntropyLoss(Softmax(scores))": ("cross_entropy", "softmax"),
}


def reference_usage(name: str, scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One usage by the reference: (per-sample losses, gradient of their mean wrt the scores)."""
    loss_name, fed = _PARTS[name]
    p = reference.softmax(scores)
    x = {"scores": scores, "log_softmax": reference.log_softmax(scores), "softmax": p}[fed]
    n = len(targets)
    losses = getattr(reference, loss_name)(x, targets, reduction="none")
    # The mean's 1/N as grad_output, then the chain rule back through what the loss was fed.
    grad, _ = getattr(reference, f"{loss_name}_backward")(np.full(n, 1 / n), x, targets, reduction="none")
    if fed == "log_softmax":
        grad = _log_softmax_vjp(p, grad)
    elif fed == "softmax":
        grad = _softmax_vjp(p, grad)
    return losses, grad


_TORCH_USAGES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "CrossEntropyLoss(scores)": lambda s, t: F.cross_entropy(s, t, reduction="none"),
    "NLLLoss(LogSoftmax(scores))": lambda s, t: F.nll_loss(F.log_softmax(s, 1), t, reduction="none"),
    "NLLLoss(scores)": lambda s, t: F.nll_loss(s, t, reduction="none"),
    "NLLLoss(Softmax(scores))": lambda s, t: F.nll_loss(F.softmax(s, 1), t, reduction="none"),
    "CrossEntropyLoss(Softmax(scores))": lambda s, t: F.cross_entropy(F.softmax(s, 1), t, reduction="none"),
}
USAGES = tuple(_TORCH_USAGES)
CORRECT = USAGES[:2]


def evaluate(scores: np.ndarray = SCORES, targets: np.ndarray = TARGETS) -> dict[str, dict[str, np.ndarray]]:
    """Per usage: per-sample losses, their mean, and the gradient of the mean wrt the scores; reference and
    torch (float64)."""
    results = {}
    for name in USAGES:
        losses, grad = reference_usage(name, scores, targets)
        s = torch.tensor(scores, requires_grad=True)
        torch_losses = _TORCH_USAGES[name](s, torch.tensor(targets))
        (torch_grad,) = torch.autograd.grad(torch_losses.mean(), s)
        torch_losses = torch_losses.detach()
        results[name] = {
            "losses": losses,
            "mean": float(losses.mean()),
            "grad": grad,
            "torch_losses": torch_losses.numpy(),
            "torch_mean": float(torch_losses.mean()),
            "torch_grad": torch_grad.numpy(),
        }
    return results


def sweep(true_scores: np.ndarray) -> dict[str, np.ndarray]:
    """One sample, target 0, scores [s, 0.2, -2.1]: each usage's loss and d loss / d s as s varies."""
    table: dict[str, np.ndarray] = {"true_score": true_scores}
    scores = np.tile(SCORES[0], (true_scores.size, 1))
    scores[:, 0] = true_scores
    table["q_true"] = reference.softmax(scores)[:, 0]
    targets = np.zeros(true_scores.size, dtype=np.int64)
    for name in USAGES:
        # Rows are independent samples: d(mean)/ds * N is each sample's own gradient.
        losses, grad = reference_usage(name, scores, targets)
        table[f"{name} loss"], table[f"{name} grad"] = losses, grad[:, 0] * true_scores.size
    return table


def plot(table: dict[str, np.ndarray], path: Path) -> Path:
    fig, axes = new_figure(1, 2, figsize=(12, 4.5))
    for name in USAGES:
        style = "-" if name in CORRECT else "--"
        axes[0][0].plot(table["true_score"], table[f"{name} loss"], style, label=name)
        axes[0][1].plot(table["true_score"], table[f"{name} grad"], style, label=name)
    axes[0][0].axhline(0, color="gray", lw=0.5)
    axes[0][0].set(title="loss of one sample, scores [s, 0.2, -2.1], target 0", xlabel="true-class score s")
    axes[0][1].set(title="d loss / d s (the correct pair overlaps)", xlabel="true-class score s")
    axes[0][0].legend(fontsize=8)
    return save_figure(fig, path)


def run(out_dir: Path, plots: bool = True) -> dict[str, Any]:
    out = Path(out_dir) / "4_log_softmax_nll"
    results = evaluate()
    shifted = evaluate(SCORES + SHIFT)
    n = len(TARGETS)
    q_true = reference.softmax(SCORES)[np.arange(n), TARGETS]
    rows = columns_of(
        {
            "usage": name,
            "shift": shift,
            "sample": i,
            "target": t,
            "q_true": q_true[i],
            "loss": r["losses"][i],
            "torch_loss": r["torch_losses"][i],
            "grad_true_score": r["grad"][i, t],
            "torch_grad_true_score": r["torch_grad"][i, t],
        }
        for shift, res in ((0.0, results), (SHIFT, shifted))
        for name, r in res.items()
        for i, t in enumerate(TARGETS)
    )
    table = sweep(np.linspace(-6.0, 6.0, 121))
    files = [write_csv(out / "usages.csv", rows), write_csv(out / "true_score_sweep.csv", table)]
    if plots:
        files.append(plot(table, out / "nll_misuse.png"))

    ce, raw = results["CrossEntropyLoss(scores)"], results["NLLLoss(scores)"]
    prob, ce_prob = results["NLLLoss(Softmax(scores))"], results["CrossEntropyLoss(Softmax(scores))"]
    identity_error = max(
        float(np.abs(results[CORRECT[0]][k] - results[CORRECT[1]][k]).max()) for k in ("losses", "grad")
    )
    torch_error = max(
        float(np.abs(r[k] - r[f"torch_{k}"]).max()) for r in results.values() for k in ("losses", "grad")
    )

    def fmt(a: np.ndarray) -> str:
        return np.array2string(np.asarray(a), precision=4, suppress_small=True)

    notes = [
        f"scores [1.3, 0.2, -2.1] with targets gato/perro/ave (q_true {fmt(q_true)}): CrossEntropyLoss "
        f"{fmt(ce['losses'])}, mean {ce['mean']:.4f}; NLLLoss(LogSoftmax) differs by {identity_error:.1e}",
        f"NLLLoss(scores) = -score: {fmt(raw['losses'])}, mean {raw['mean']:.4f} (a negative 'loss' for the "
        f"right prediction); shift all scores by +{SHIFT:g}: {shifted['NLLLoss(scores)']['mean']:.4f} while "
        f"CrossEntropyLoss stays {shifted['CrossEntropyLoss(scores)']['mean']:.4f}",
        f"NLLLoss(Softmax) = -q_true: {fmt(prob['losses'])}, mean {prob['mean']:.4f} (one score row's "
        f"q_true add up to 1); gradient on the true score {fmt(prob['grad'][np.arange(n), TARGETS])} vs "
        f"correct {fmt(ce['grad'][np.arange(n), TARGETS])}: "
        f"{ce['grad'][2, 2] / prob['grad'][2, 2]:.0f}x weaker for the worst sample",
        f"CrossEntropyLoss(Softmax) (softmax twice): {fmt(ce_prob['losses'])}, mean {ce_prob['mean']:.4f}",
        f"reference vs torch (float64), all usages, losses and gradients: max difference {torch_error:.1e}",
    ]
    return {
        "title": "4. CrossEntropyLoss = LogSoftmax + NLLLoss, and NLLLoss misused",
        "notes": notes,
        "files": [str(f) for f in files],
        "means": {name: r["mean"] for name, r in results.items()},
        "identity_error": identity_error,
        "torch_error": torch_error,
    }
