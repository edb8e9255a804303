"""Lesson 2 — softmax and categorical cross-entropy, with the course deck's numbers.

Softmax turns scores into probabilities: softmax([1.3, 0.2, -2.1]) = [0.731, 0.244, 0.024]. With one-hot
labels the categorical cross-entropy -sum_i p_i ln q_i keeps one term, -ln q_true. The deck's batch of three
(gato, perro, ave) has true-class probabilities 0.39, 0.17, 0.41; the batch loss is their mean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import reference
from lessons.output import new_figure, save_figure, write_csv

LOGITS = np.array([1.3, 0.2, -2.1])
DECK_EXP_SUM = 5.013155
DECK_SOFTMAX = np.array([0.731, 0.243, 0.024])  # the deck truncates to three decimals

LABELS = ("gato", "perro", "ave")
TARGETS = np.array([0, 1, 2])
# Only the gato row is given in full (0.39, 0.28, 0.33); for perro and ave the deck gives the true-class
# probability only. The other two entries are filled in equally: with a one-hot target they cannot change
# the loss, which the lesson shows by computing it from the full rows.
PROBABILITIES = np.array(
    [
        [0.39, 0.28, 0.33],
        [0.415, 0.17, 0.415],
        [0.295, 0.295, 0.41],
    ]
)
DECK_LOSSES = np.array([0.9416, 1.7719, 0.8915])
DECK_BATCH_LOSS = 1.2


def softmax_example() -> dict[str, Any]:
    exps = np.exp(LOGITS)
    return {"exp": exps, "exp_sum": float(exps.sum()), "softmax": reference.softmax(LOGITS)}


def batch_losses() -> dict[str, Any]:
    """Per-sample and mean cross-entropy of the deck's batch, through the reference's NLL of ln q."""
    log_q = np.log(PROBABILITIES)
    per_sample = reference.nll_loss(log_q, TARGETS, reduction="none")
    return {
        "p_true": PROBABILITIES[np.arange(3), TARGETS],
        "losses": per_sample,
        "batch_loss": float(reference.nll_loss(log_q, TARGETS, reduction="mean")),
        # The same loss from scores: ln q are valid logits of q (each row sums to 1), so cross_entropy agrees.
        "batch_loss_from_logits": float(reference.cross_entropy(log_q, TARGETS)),
    }


def plot(batch: dict[str, Any], path: Path) -> Path:
    fig, axes = new_figure(1, 2, figsize=(11, 4.2))
    ax = axes[0][0]
    probs = reference.softmax(LOGITS)
    ax.bar([f"z = {z}" for z in LOGITS], probs)
    for i, p in enumerate(probs):
        ax.annotate(f"{p:.4f}", (i, p), ha="center", va="bottom")
    ax.set(title="softmax([1.3, 0.2, -2.1])", ylabel="probability")
    ax = axes[0][1]
    q = np.linspace(0.01, 1.0, 200)
    ax.plot(q, -np.log(q), label="-ln q_true")
    offsets = ((-85, -6), (6, 4), (8, -12))  # gato and ave sit close together
    for label, p, loss, offset in zip(LABELS, batch["p_true"], batch["losses"], offsets, strict=True):
        ax.plot(p, loss, "o")
        ax.annotate(f"{label}: {loss:.4f}", (p, loss), textcoords="offset points", xytext=offset)
    ax.axhline(batch["batch_loss"], ls=":", color="gray", label=f"batch mean {batch['batch_loss']:.4f}")
    ax.set(title="cross-entropy with a one-hot target", xlabel="q_true", ylabel="loss")
    ax.legend()
    return save_figure(fig, path)


def run(out_dir: Path, plots: bool = True) -> dict[str, Any]:
    out = Path(out_dir) / "2_softmax_cross_entropy"
    soft = softmax_example()
    batch = batch_losses()
    files = [
        write_csv(
            out / "softmax.csv",
            {"logit": LOGITS, "exp": soft["exp"], "softmax": soft["softmax"], "deck": DECK_SOFTMAX},
        ),
        write_csv(
            out / "batch.csv",
            {
                "sample": LABELS,
                "target": TARGETS,
                "q_true": batch["p_true"],
                "loss": batch["losses"],
                "deck_loss": DECK_LOSSES,
            },
        ),
    ]
    if plots:
        files.append(plot(batch, out / "softmax_and_batch_loss.png"))
    correctly_rounded = np.round(batch["losses"], 4)
    notes = [
        f"softmax([1.3, 0.2, -2.1]) = {np.array2string(soft['softmax'], precision=4)}, "
        f"exp sum {soft['exp_sum']:.6f} (deck {DECK_EXP_SUM}); the deck's truncated "
        f"0.731 + 0.243 + 0.024 adds to {DECK_SOFTMAX.sum():.3f}, not 1",
        "batch losses -ln q_true: "
        + ", ".join(f"{n} {v:.5f}" for n, v in zip(LABELS, batch["losses"], strict=True))
        + f" (deck {', '.join(map(str, DECK_LOSSES))}: 1.7719 and 0.8915 are truncated, "
        f"correctly rounded {correctly_rounded[1]:.4f} and {correctly_rounded[2]:.4f})",
        f"batch loss = mean = {batch['batch_loss']:.4f}; the deck's 1.2 is that value rounded "
        f"(cross_entropy from ln q gives the same {batch['batch_loss_from_logits']:.4f})",
    ]
    return {
        "title": "2. Softmax and categorical cross-entropy",
        "notes": notes,
        "files": [str(f) for f in files],
        "softmax": soft["softmax"].tolist(),
        "exp_sum": soft["exp_sum"],
        "losses": batch["losses"].tolist(),
        "batch_loss": batch["batch_loss"],
    }
