"""Lesson 3 — from likelihood to negative log-likelihood, with the deck's bag of five balls.

Five draws from a bag: 2 red, 3 blue (empirical p = (0.4, 0.6)). A model q = (q_red, q_blue) gives the draws
the likelihood L = prod_i q_i^(N p_i) = q_red^2 q_blue^3. Taking -ln turns the product into the sum the NLL
loss computes, NLL = -sum over draws of ln q[draw], so L = exp(-NLL), and maximising L is minimising NLL.
Divided by N, NLL is the cross-entropy -sum_i p_i ln q_i; its minimum is at q = p, the empirical frequency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import reference
from lessons.output import new_figure, save_figure, write_csv

RED, BLUE = 0, 1
DRAWS = np.array([RED, RED, BLUE, BLUE, BLUE])
EMPIRICAL = np.array([2 / 5, 3 / 5])
# The deck's two models and the likelihoods it prints for them.
MODELS = {"deck 'malo' (0.8, 0.2)": (0.8, 0.2), "deck 'bueno' (0.5, 0.5)": (0.5, 0.5)}
DECK_LIKELIHOODS = {"deck 'malo' (0.8, 0.2)": 0.023, "deck 'bueno' (0.5, 0.5)": 0.031}
GRID = np.arange(1, 1000) / 1000  # q_red = 0.001 .. 0.999; 0.4 is on it exactly


def nll(q_red: float | np.ndarray, draws: np.ndarray = DRAWS) -> np.ndarray:
    """Summed NLL of the draws under q = (q_red, 1 - q_red), by the reference's nll_loss; vectorised over
    q_red: the models are a batch of shape (models, classes, draws) with the draws as the extra dimension."""
    q_red = np.atleast_1d(np.asarray(q_red, dtype=np.float64))
    log_q = np.log(np.stack([q_red, 1.0 - q_red], axis=1))  # (models, 2)
    log_q = np.repeat(log_q[:, :, None], draws.size, axis=2)  # (models, 2, draws)
    targets = np.broadcast_to(draws, (q_red.size, draws.size))
    return reference.nll_loss(log_q, targets, reduction="none").sum(axis=1)


def likelihood(q_red: float | np.ndarray) -> np.ndarray:
    return np.exp(-nll(q_red))


def sweep() -> dict[str, np.ndarray]:
    nlls = nll(GRID)
    return {"q_red": GRID, "nll": nlls, "nll_per_draw": nlls / DRAWS.size, "likelihood": np.exp(-nlls)}


def plot(table: dict[str, np.ndarray], path: Path) -> Path:
    fig, axes = new_figure(1, 2, figsize=(11, 4.2))
    for ax, key, title in (
        (axes[0][0], "likelihood", "likelihood q_red² q_blue³"),
        (axes[0][1], "nll", "NLL = -ln likelihood (sum over the 5 draws)"),
    ):
        ax.plot(table["q_red"], table[key])
        for name, (q_red, _) in MODELS.items():
            value = float(likelihood(q_red)[0] if key == "likelihood" else nll(q_red)[0])
            ax.plot(q_red, value, "o", label=f"{name}: {value:.5g}")
        best = int(np.argmax(table["likelihood"]))
        ax.axvline(table["q_red"][best], ls=":", color="gray", label=f"best q_red = {table['q_red'][best]}")
        ax.set(title=title, xlabel="q_red")
        ax.legend(loc="upper right")
    axes[0][1].set_ylim(0, 15)
    return save_figure(fig, path)


def run(out_dir: Path, plots: bool = True) -> dict[str, Any]:
    out = Path(out_dir) / "3_likelihood_to_nll"
    table = sweep()
    files = [write_csv(out / "nll_vs_q_red.csv", table)]
    if plots:
        files.append(plot(table, out / "likelihood_and_nll.png"))
    models = {
        name: {"nll": float(nll(q_red)[0]), "likelihood": float(likelihood(q_red)[0])}
        for name, (q_red, _) in MODELS.items()
    }
    argmin = float(table["q_red"][np.argmin(table["nll"])])
    malo, bueno = models["deck 'malo' (0.8, 0.2)"], models["deck 'bueno' (0.5, 0.5)"]
    notes = [
        f"q = (0.8, 0.2): NLL {malo['nll']:.4f}, likelihood 0.8^2 * 0.2^3 = {malo['likelihood']:.5f}; "
        "the deck writes (4/5)^2 (1/3)^3 = 0.023: it used 1/3 for q_blue = 1/5 (and 0.64/27 = 0.0237)",
        f"q = (0.5, 0.5): NLL {bueno['nll']:.4f}, likelihood 0.5^5 = {bueno['likelihood']:.5f} "
        f"(deck 0.031: right); the 0.5 model is {bueno['likelihood'] / malo['likelihood']:.1f}x more likely, "
        "not 1.3x",
        f"over q_red in (0, 1) the NLL is smallest at q_red = {argmin} = the empirical 2/5; there NLL/N = "
        f"{float(table['nll_per_draw'].min()):.4f} = entropy of p, and the likelihood is "
        f"{float(table['likelihood'].max()):.5f}",
    ]
    return {
        "title": "3. Likelihood to negative log-likelihood",
        "notes": notes,
        "files": [str(f) for f in files],
        "models": models,
        "argmin_q_red": argmin,
    }
