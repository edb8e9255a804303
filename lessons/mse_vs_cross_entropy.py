"""Lesson 1 — why not MSE: the single sigmoid neuron of the course deck (Nielsen, NNDL chapter 3).

One input x = 1, desired output y = 0, a = sigma(w x + b), plain gradient descent with learning rate 0.15 for
300 epochs, from the good start (w, b) = (0.6, 0.9) and the bad start (2.0, 2.0).

    quadratic cost  C = (y - a)^2 / 2          dC/dw = (a - y) sigma'(z) x
    cross-entropy   C = -[y ln a + (1-y) ln(1-a)]   dC/dw = (sigma(z) - y) x

From the bad start a = sigma(4) = 0.982 sits on the flat tail of the sigmoid: sigma'(4) = 0.018, so the MSE
gradient is ~55x smaller than the cross-entropy one and the neuron barely learns for ~150 epochs although it
is badly wrong. In the cross-entropy gradient sigma' cancels: the bigger the error, the faster it learns.
The cross-entropy cost and its gradient come from the reference; the MSE gradient is written out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

import reference
from lessons.output import new_figure, save_figure, write_csv

CostName = Literal["mse", "cross_entropy"]

X = 1.0
Y = 0.0
LEARNING_RATE = 0.15
EPOCHS = 300
STARTS: dict[str, tuple[float, float]] = {"good": (0.6, 0.9), "bad": (2.0, 2.0)}
COSTS: tuple[CostName, ...] = ("mse", "cross_entropy")
COLUMNS = ("epoch", "cost", "w", "b", "z", "output", "dC_dw", "dC_db")

# What the deck prints for the good start with MSE "after 300 epochs".
DECK_FINAL_MSE_GOOD = {"w": -1.11, "b": -0.81, "output": 0.13}
# The deck's first-epoch cost: C = (0 - 0.82)^2 / 2 = 0.0162.
DECK_FIRST_COST = 0.0162


def sigmoid_prime(z: float) -> float:
    s = float(reference.sigmoid(np.array(z)))
    return s * (1.0 - s)


def cost_and_dc_dz(cost: CostName, z: float, y: float = Y) -> tuple[float, float]:
    """The cost of output sigma(z) and its derivative with respect to z."""
    if cost == "mse":
        a = float(reference.sigmoid(np.array(z)))
        return (y - a) ** 2 / 2, (a - y) * sigmoid_prime(z)  # sigma'(z) stays in: the slowdown
    z_arr, y_arr = np.array([z]), np.array([y])
    # With logits: the stable form, and its backward is sigma(z) - y with no sigma' (it cancelled).
    c = reference.binary_cross_entropy_with_logits(z_arr, y_arr)
    grad_z, _ = reference.binary_cross_entropy_with_logits_backward(np.array(1.0), z_arr, y_arr)
    return float(c), float(grad_z[0])


def train(
    cost: CostName,
    start: tuple[float, float],
    epochs: int = EPOCHS,
    learning_rate: float = LEARNING_RATE,
    x: float = X,
    y: float = Y,
) -> dict[str, np.ndarray]:
    """Gradient descent on one neuron. Row e is the state after e updates (e = 0..epochs: epochs + 1 rows),
    with the cost and the gradient at that state."""
    w, b = start
    rows: dict[str, list[float]] = {name: [] for name in COLUMNS}
    for epoch in range(epochs + 1):
        z = w * x + b
        c, dc_dz = cost_and_dc_dz(cost, z, y)
        dc_dw, dc_db = dc_dz * x, dc_dz  # chain rule through z = w x + b
        a = float(reference.sigmoid(np.array(z)))
        for name, value in zip(COLUMNS, (epoch, c, w, b, z, a, dc_dw, dc_db), strict=True):
            rows[name].append(value)
        w, b = w - learning_rate * dc_dw, b - learning_rate * dc_db
    return {name: np.asarray(values) for name, values in rows.items()}


def epochs_to_halve(costs: np.ndarray) -> int | None:
    """First epoch at which the cost is at most half its starting value (None if never)."""
    hits = np.flatnonzero(costs <= costs[0] / 2)
    return int(hits[0]) if hits.size else None


def run_all() -> dict[tuple[CostName, str], dict[str, np.ndarray]]:
    return {(cost, start): train(cost, STARTS[start]) for cost in COSTS for start in STARTS}


def plot(runs: dict[tuple[CostName, str], dict[str, np.ndarray]], path: Path) -> Path:
    fig, axes = new_figure(1, 3, figsize=(15, 4.2))
    titles = {"mse": "quadratic cost (y - a)²/2", "cross_entropy": "binary cross-entropy"}
    styles = {"good": "-", "bad": "--"}
    for col, cost in enumerate(COSTS):
        ax = axes[0][col]
        for start in STARTS:
            run = runs[cost, start]
            ax.plot(run["epoch"], run["cost"], styles[start], label=f"{start} start (w, b) = {STARTS[start]}")
        ax.set(title=titles[cost], xlabel="epoch", ylabel="cost")
        ax.legend()
    ax = axes[0][2]
    for (cost, start), run in runs.items():
        ax.semilogy(run["epoch"], np.abs(run["dC_dw"]), styles[start], label=f"{cost}, {start} start")
    ax.set(title="|dC/dw|: sigma'(z) makes the MSE step tiny", xlabel="epoch", ylabel="|dC/dw|")
    ax.legend()
    return save_figure(fig, path)


def run(out_dir: Path, plots: bool = True) -> dict[str, Any]:
    out = Path(out_dir) / "1_why_not_mse"
    runs = run_all()
    files = [write_csv(out / f"{cost}_{start}_start.csv", run) for (cost, start), run in runs.items()]
    if plots:
        files.append(plot(runs, out / "cost_vs_epoch.png"))

    mse_bad, ce_bad, mse_good = runs["mse", "bad"], runs["cross_entropy", "bad"], runs["mse", "good"]
    z_bad = sum(STARTS["bad"])
    first_cost = float(mse_good["cost"][0])
    first_cost_rounded = (Y - round(float(mse_good["output"][0]), 2)) ** 2 / 2
    # The deck's w = -1.11, b = -0.81, output 0.13 is where MSE from the good start is after ~190 epochs.
    deck_epoch = int(np.argmin(np.abs(mse_good["w"] - DECK_FINAL_MSE_GOOD["w"])))
    finals = {
        f"{cost}_{start}": {k: float(runs[cost, start][k][-1]) for k in ("cost", "w", "b", "output")}
        for cost, start in runs
    }
    notes = [
        f"bad start z = {z_bad}: a = {mse_bad['output'][0]:.4f}, sigma'(z) = {sigmoid_prime(z_bad):.4f}; "
        f"first dC/dw: MSE (a - y) sigma'(z) x = {mse_bad['dC_dw'][0]:.4f}, "
        f"cross-entropy (sigma(z) - y) x = {ce_bad['dC_dw'][0]:.4f} "
        f"({ce_bad['dC_dw'][0] / mse_bad['dC_dw'][0]:.0f}x larger)",
        f"bad start, cost after 100 epochs: MSE {mse_bad['cost'][0]:.4f} -> {mse_bad['cost'][100]:.4f} "
        f"(-{1 - mse_bad['cost'][100] / mse_bad['cost'][0]:.1%}), "
        f"cross-entropy {ce_bad['cost'][0]:.4f} -> {ce_bad['cost'][100]:.4f}; epochs to halve the cost: "
        f"MSE {epochs_to_halve(mse_bad['cost'])}, cross-entropy {epochs_to_halve(ce_bad['cost'])}",
        "after 300 epochs, output a: " + ", ".join(f"{name} {v['output']:.4f}" for name, v in finals.items()),
        f"deck check: first-epoch C = (0 - 0.82)^2/2 is {first_cost_rounded:.4f} "
        f"({first_cost:.4f} unrounded), not {DECK_FIRST_COST} (that is (1 - 0.82)^2/2, i.e. y = 1)",
        f"deck check: its '300 epochs' MSE result w = -1.11, b = -0.81, output 0.13 is epoch {deck_epoch}; "
        f"epoch 300 gives w = {finals['mse_good']['w']:.2f}, b = {finals['mse_good']['b']:.2f}, "
        f"output {finals['mse_good']['output']:.2f}",
    ]
    return {
        "title": "1. Why not MSE: learning slowdown of a saturated sigmoid",
        "notes": notes,
        "files": [str(f) for f in files],
        "finals": finals,
        "first_cost": first_cost,
        "deck_epoch": deck_epoch,
        "epochs_to_halve": {f"{c}_{s}": epochs_to_halve(r["cost"]) for (c, s), r in runs.items()},
    }
