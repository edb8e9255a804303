"""Binary cross-entropy on probabilities (torch.nn.functional.binary_cross_entropy): forward, backward and
double backward."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._blocks import map_backward, map_reduce
from ._checks import (
    check_broadcast,
    check_reduction,
    check_same_shape,
    check_unit_interval,
    floating,
    grad_grad_input_array,
)
from ._reduce import reduce_backward, reduce_grad_output, reduce_scale

# torch's conventions: the forward clamps each log at -100 (so x = 0, y = 1 costs 100, not inf); the backward
# floors x (1 - x) at EPSILON instead and does not clamp (x = 0, y = 1 gives -1/EPSILON ~ -1e12). torch's
# EPSILON is the float32 constant 1e-12f (9.9999998e-13), so float64 inputs see that value, not 1e-12.
LOG_CLAMP = -100.0
GRAD_EPS = float(np.float32(1e-12))


def _checked(input, target, weight):
    """torch's checks in torch's order; returns arrays (x, y, w), w None or broadcastable to x.

    x and y keep their dtype: the formulas convert them to float64 one block at a time.
    """
    x, y = np.asarray(input), np.asarray(target)
    check_same_shape(x, y)
    w = None if weight is None else np.asarray(weight)
    if w is not None:
        check_broadcast("weight", w, x.shape)
    if y.dtype != x.dtype:
        raise RuntimeError(f"target: dtype {y.dtype} differs from the input's {x.dtype}; they must match")
    floating("input", x)
    check_unit_interval("input", x)
    check_unit_interval("target", y)
    return x, y, (None if w is None else w.astype(np.float64))


def _loss(x: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """The elementwise loss of one block (the formula of :func:`binary_cross_entropy`)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    with np.errstate(divide="ignore"):  # log(0) = -inf, then clamped
        loss = -(y * np.maximum(np.log(x), LOG_CLAMP) + (1.0 - y) * np.maximum(np.log1p(-x), LOG_CLAMP))
    if w is not None:
        loss *= w
    return loss


def _backward(g: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray | None):
    """``(grad_input, grad_target)`` of one block (derived in :func:`binary_cross_entropy_backward`)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    if w is not None:
        g = g * w
    grad_input = g * (x - y) / np.maximum(x * (1.0 - x), GRAD_EPS)
    with np.errstate(invalid="ignore"):  # a zero weight times the inf at x in {0, 1}: NaN, as in torch
        return grad_input, -g * _logit(x)


def _logit(x: np.ndarray) -> np.ndarray:
    """``log x - log(1 - x)``, -inf and inf at 0 and 1. Near x = 1/2 the two logs are nearly equal and their
    difference keeps few of their digits; there (1/4 <= x <= 3/4) it is ``log1p((2x - 1) / (1 - x))``, whose
    2x - 1 is exact: every element to a few ulps."""
    with np.errstate(divide="ignore"):
        near_half = (x >= 0.25) & (x <= 0.75)
        return np.where(near_half, np.log1p((2.0 * x - 1.0) / (1.0 - x)), np.log(x) - np.log1p(-x))


def _double_backward(g: np.ndarray, x: np.ndarray, y: np.ndarray, v: np.ndarray, w: np.ndarray | None):
    """``(terms of grad_grad_output, grad2_input, grad2_target)`` of one block (derived in the docstring of
    :func:`binary_cross_entropy_double_backward`); the terms are still to be times the reduction's scale."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    if w is not None:
        v = v * w
    product = x * (1.0 - x)
    floored = product <= GRAD_EPS  # where the backward divides by the constant GRAD_EPS
    denominator = np.where(floored, GRAD_EPS, product)
    terms = v * (x - y) / denominator  # the backward's own slope, times v
    with np.errstate(divide="ignore", invalid="ignore"):  # the unfloored branch where it is not taken
        # d/dx (x - y) / (x (1 - x)) = ((x - y)^2 + y (1 - y)) / (x (1 - x))^2: two terms >= 0, no cancellation
        slope = np.where(floored, 1.0 / GRAD_EPS, ((x - y) ** 2 + y * (1.0 - y)) / product**2)
    gv = g * v
    return terms, gv * slope, -gv / denominator


def binary_cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
) -> np.ndarray:
    r""":math:`\ell = -w\,[y \max(\log x, -100) + (1 - y) \max(\log(1 - x), -100)]`, elementwise.

    ``input`` x: probabilities in [0, 1]; ``target`` y: same shape and dtype, in [0, 1] (both checked, NaN
    rejected, as torch does on CPU). ``weight`` broadcasts to the input's shape (it may not enlarge it). The
    log clamp at -100 is torch's documented convention (finite loss at x in {0, 1}); ``log(1 - x)`` is
    computed as ``log1p(-x)``. 'mean' divides by numel (weights are not in the denominator); empty -> NaN.

    At x = 1/2 the loss is log 2 whatever y; x = 0 with y = 1 gives the clamp, 100.

    >>> binary_cross_entropy(np.array([0.5, 0.0]), np.array([1.0, 1.0]), reduction="none").round(6).tolist()
    [0.693147, 100.0]
    """
    reduction = check_reduction(reduction)
    x, y, w = _checked(input, target, weight)
    return map_reduce(_loss, reduction, x, y, w)


def binary_cross_entropy_backward(
    grad_output: ArrayLike | float,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
) -> tuple[np.ndarray, np.ndarray]:
    r"""VJP of :func:`binary_cross_entropy`: ``(grad_input, grad_target)``.

    d/dx [-(y log x + (1 - y) log(1 - x))] = -y/x + (1 - y)/(1 - x) = (x - y) / (x (1 - x)); torch floors the
    denominator at float32(1e-12) and ignores the forward's clamp. d/dy = -(log x - log(1 - x))
    = -logit(x), unclamped (+-inf at x in {0, 1}). Both times w and grad_output (/ numel for 'mean').

    >>> [a.tolist() for a in binary_cross_entropy_backward(1.0, np.array([0.5]), np.array([1.0]))]
    [[-2.0], [-0.0]]
    """
    reduction = check_reduction(reduction)
    x, y, w = _checked(input, target, weight)
    g = reduce_backward(grad_output, reduction, x.shape)
    return map_backward(_backward, g, x, y, w)


def binary_cross_entropy_double_backward(
    grad_grad_input: ArrayLike,
    grad_output: ArrayLike | float,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Double backward of :func:`binary_cross_entropy`: ``(grad_grad_output, grad2_input, grad2_target)``.

    The derivatives of phi = sum g' w v (x - y) / max(x (1 - x), EPS) (v = grad_grad_input, g' = grad_output,
    / numel for 'mean'), i.e. of <grad_input, v> with grad_input as :func:`binary_cross_entropy_backward`
    computes it, its float32(1e-12) floor EPS included:

    * d phi / d g' = w v (x - y) / max(x (1 - x), EPS), summed for 'mean' and 'sum' (/ numel for 'mean');
    * d phi / d x = g' w v ((x - y)^2 + y (1 - y)) / (x (1 - x))^2 where x (1 - x) > EPS, from
      d/dx (x - y) / (x (1 - x)) = (x (1 - x) - (x - y)(1 - 2x)) / (x (1 - x))^2 = (x^2 - 2xy + y) / (x (1 - x))^2;
      g' w v / EPS where the floor holds (a constant denominator; at x (1 - x) = EPS the floor's side is taken);
    * d phi / d y = -g' w v / max(x (1 - x), EPS).

    At x = 1/2, y = 1: the slope (x - y) / (x (1 - x)) is -2, its derivative (1/4 + 0) / (1/16) = 4, and
    d/dy = -1 / (1/4) = -4.

    >>> x, y = np.array([0.5]), np.array([1.0])
    >>> [a.tolist() for a in binary_cross_entropy_double_backward(np.ones(1), 1.0, x, y)]
    [-2.0, [4.0], [-4.0]]
    """
    reduction = check_reduction(reduction)
    x, y, w = _checked(input, target, weight)
    g = reduce_backward(grad_output, reduction, x.shape)
    v = grad_grad_input_array(grad_grad_input, x.shape)
    terms, grad2_input, grad2_target = map_backward(_double_backward, g, x, y, v, w, outputs=3)
    terms *= reduce_scale(reduction, x.shape)
    return reduce_grad_output(terms, reduction), grad2_input, grad2_target
