"""Reductions of a per-element loss, their backward (how grad_output spreads over the elements) and what a
double backward needs of them (how the elements' terms gather into grad_grad_output).

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


def reduce_scale(reduction: str, shape: tuple[int, ...], denominator: float | None = None) -> np.ndarray:
    """d(reduced) / d(loss_n), the same for every element: 1 for 'none' and 'sum', 1 / denominator for 'mean'.

    A double backward's grad_grad_output is the sum over the elements of this times d phi / d g'_n (g' the
    grad_output as :func:`reduce_backward` spreads it); each term is scaled before the sum, so that a mean over
    no elements gives 0 (an empty sum) and a zero term over a zero denominator gives NaN, as in the backward.
    """
    if reduction == "mean":
        return _div(1.0, int(np.prod(shape)) if denominator is None else denominator)
    return np.asarray(1.0)


def reduce_grad_output(terms: np.ndarray, reduction: str) -> np.ndarray:
    """grad_grad_output from its per-element terms (already times :func:`reduce_scale`): the terms themselves for
    'none', their sum for 'mean' and 'sum' (0-d, 0 when there are none)."""
    return terms if reduction == "none" else np.asarray(terms.sum(), dtype=np.float64)
