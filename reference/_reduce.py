"""Reductions of a per-element loss, and their backward (how grad_output spreads over the elements).

torch's denominators for 'mean':
  * default (BCE, BCEWithLogits): the number of elements;
  * class-index targets (nll_loss, cross_entropy): the sum of ``weight[target]`` over non-ignored targets
    (their count without a weight);
  * probability targets (cross_entropy): numel / C, whatever the weights.
A mean over nothing (no elements, every target ignored, weights summing to 0) is 0/0 = NaN, as in torch.
"""

from __future__ import annotations

import numpy as np

from ._checks import grad_output_array


def _div(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    # x/0 is +-inf and 0/0 is NaN, as in torch: no warning, no exception
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.divide(num, den, dtype=np.float64))


def reduce_loss(loss: np.ndarray, reduction: str, denominator: float | None = None) -> np.ndarray:
    """'none' -> loss; 'sum' -> sum (0 when empty); 'mean' -> sum / denominator (default: loss.size)."""
    if reduction == "none":
        return loss
    total = np.asarray(loss.sum(), dtype=np.float64)
    if reduction == "sum":
        return total
    return _div(total, loss.size if denominator is None else denominator)


def reduce_backward(
    grad_output: np.ndarray | float,
    reduction: str,
    shape: tuple[int, ...],
    denominator: float | None = None,
) -> np.ndarray:
    """d(reduced)/d(loss_n) * grad_output: an array broadcastable to ``shape`` (0-d for mean/sum).

    'none' -> grad_output itself (shape checked), 'sum' -> g, 'mean' -> g / denominator.
    """
    g = grad_output_array(grad_output, shape if reduction == "none" else ())
    if reduction == "mean":
        return _div(g, int(np.prod(shape)) if denominator is None else denominator)
    return g
