"""Negative log-likelihood loss (torch.nn.functional.nll_loss): forward, backward and double backward.

Also the gather/scatter helpers that cross_entropy shares (it is nll_loss of log_softmax).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._checks import check_ignore_index, check_reduction, class_targets, floating, grad_grad_input_array
from ._reduce import reduce_backward, reduce_grad_output, reduce_loss, reduce_scale


def class_dim_of(ndim: int) -> int:
    """torch's class dimension: 0 for a 1-D input (C,), else 1 for (N, C, d1, ..., dk)."""
    return 0 if ndim == 1 else 1


def _target_index(target: np.ndarray, keep: np.ndarray, class_dim: int) -> tuple[np.ndarray, ...]:
    """Fancy index of ``a[n, target[n, d...], d...]`` for every element (class 0 where ignored)."""
    grids = np.indices(target.shape, sparse=True)  # open grids: no full-size index arrays
    return (*grids[:class_dim], np.where(keep, target, 0), *grids[class_dim:])


def pick(a: np.ndarray, target: np.ndarray, keep: np.ndarray, class_dim: int) -> np.ndarray:
    """``a[n, target[n], d...]`` for every element (class 0's entry where ignored), shape of target."""
    if a.shape[class_dim] == 0:  # no classes: every target is ignored (any other one was rejected)
        return np.zeros(target.shape)
    return a[_target_index(target, keep, class_dim)]


def add_at_target(
    a: np.ndarray, target: np.ndarray, keep: np.ndarray, values: np.ndarray, class_dim: int
) -> None:
    """In place: ``a[n, target[n], d...] += values[n, d...]`` where the target is kept (else values are 0)."""
    if a.shape[class_dim] == 0:
        return
    a[_target_index(target, keep, class_dim)] += values


def put_at_target(
    a: np.ndarray, target: np.ndarray, keep: np.ndarray, values: np.ndarray, class_dim: int
) -> None:
    """In place: ``a[n, target[n], d...] = values[n, d...]`` where the target is kept."""
    if a.shape[class_dim] == 0:
        return
    index = _target_index(target, keep, class_dim)
    a[index] = np.where(keep, values, a[index])


def target_weights(weight: np.ndarray | None, target: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``weight[target]`` (1 without a weight), 0 where ignored: the terms of the weighted mean's divisor."""
    if weight is None:
        return keep.astype(np.float64)
    if weight.size == 0:
        return np.zeros(target.shape)
    return np.where(keep, weight[np.where(keep, target, 0)], 0.0)


def nll_loss(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> np.ndarray:
    r"""Negative log-likelihood of the target class: :math:`\ell_n = -w_{y_n} x_{n, y_n}`.

    ``input`` holds log-probabilities, (C,), (N, C) or (N, C, d1, ..., dk); ``target`` class indices (int64,
    or uint8 for inputs of rank <= 2), shape (), (N,) or (N, d1, ..., dk). Elements whose target equals
    ``ignore_index`` (which may lie inside [0, C)) contribute 0 and are left out of the mean. 'mean' divides
    by the sum of ``weight[y_n]`` over the kept elements (their count without a weight), as torch does: a mean
    over nothing (all ignored, or empty) is NaN. 'none' returns the target's shape (0-d for a 1-D input).

    Two rows with probabilities (1/2, 1/2) and (1/4, 3/4), targets 0 and 1: -log(1/2) - log(3/4) = log(8/3).

    >>> logp = np.log(np.array([[0.5, 0.5], [0.25, 0.75]]))
    >>> bool(np.isclose(nll_loss(logp, np.array([0, 1]), reduction="sum"), np.log(8 / 3)))
    True
    """
    reduction = check_reduction(reduction)
    x = floating("input", input)
    ignore_index = check_ignore_index(ignore_index)
    t, keep, w = class_targets(x, target, weight, ignore_index, reduction=reduction)
    w_t = target_weights(w, t, keep)
    # ignored elements are skipped (0), not multiplied by 0: their input may be inf
    loss = np.where(keep, -w_t * pick(x, t, keep, class_dim_of(x.ndim)), 0.0)
    return reduce_loss(loss, reduction, w_t.sum())


def nll_loss_backward(
    grad_output: ArrayLike | float,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> tuple[np.ndarray, None]:
    r"""VJP of :func:`nll_loss`: :math:`\partial \ell_n / \partial x_{n,c} = -w_{y_n} [c = y_n]`.

    The loss is linear in the input, so the gradient is a scattered copy of ``-w[y] * g`` (g divided by the
    mean's denominator for 'mean'), 0 at every other class and on ignored elements. The target is not
    differentiable: grad_target is None.

    >>> nll_loss_backward(1.0, np.zeros((2, 2)), np.array([0, 1]))[0].tolist()
    [[-0.5, 0.0], [0.0, -0.5]]
    """
    reduction = check_reduction(reduction)
    x = floating("input", input)
    ignore_index = check_ignore_index(ignore_index)
    t, keep, w = class_targets(x, target, weight, ignore_index, reduction=reduction, backward=True)
    w_t = target_weights(w, t, keep)
    g = reduce_backward(grad_output, reduction, t.shape, w_t.sum())
    grad = np.zeros(x.shape)
    with np.errstate(invalid="ignore"):  # 0 * inf (a zero weight over a zero denominator) = NaN, as in torch
        add_at_target(grad, t, keep, np.where(keep, -w_t * g, 0.0), class_dim_of(x.ndim))
    return grad, None


def nll_loss_double_backward(
    grad_grad_input: ArrayLike,
    grad_output: ArrayLike | float,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> tuple[np.ndarray, np.ndarray, None]:
    r"""Double backward of :func:`nll_loss`: ``(grad_grad_output, grad2_input, None)``.

    The derivatives of phi = <grad_input, v>, v = grad_grad_input, with grad_input as
    :func:`nll_loss_backward` computes it: ``-w[y_n] g'_n`` at [n, y_n] of each kept element, g'_n = g_n, or g / D
    for 'mean'. So phi = -sum_n w[y_n] g'_n v[n, y_n] (kept n):

    * d phi / d g = -w[y_n] v[n, y_n] per element, reduced like the loss (summed; / D for 'mean'): the loss of v;
      a mean over no kept element is 0 (the backward is 0 whatever g), a zero weight over D = 0 is NaN (as is the
      backward there);
    * d phi / d input = 0: the backward does not depend on the input (the loss is linear in it);
    * the target is not differentiable: None.

    Targets 0 and 1, mean: the loss of v, -(v[0, 0] + v[1, 1]) / 2 = -(1 + 4) / 2.

    >>> v = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> ggo, grad2, _ = nll_loss_double_backward(v, 1.0, np.zeros((2, 2)), np.array([0, 1]))
    >>> ggo.tolist(), grad2.tolist()
    (-2.5, [[0.0, 0.0], [0.0, 0.0]])
    """
    reduction = check_reduction(reduction)
    x = floating("input", input)
    ignore_index = check_ignore_index(ignore_index)
    t, keep, w = class_targets(x, target, weight, ignore_index, reduction=reduction, backward=True)
    w_t = target_weights(w, t, keep)
    reduce_backward(grad_output, reduction, t.shape, w_t.sum())  # grad_output's checks, as in the backward
    v = grad_grad_input_array(grad_grad_input, x.shape)
    scale = reduce_scale(reduction, t.shape, w_t.sum())
    with np.errstate(invalid="ignore"):  # a zero weight over D = 0: 0 * inf = NaN, as in the backward
        # d phi / d g'_n = -w[y_n] v[n, y_n], times d g'_n / d g = scale
        terms = np.where(keep, -w_t * scale * pick(v, t, keep, class_dim_of(x.ndim)), 0.0)
    return reduce_grad_output(terms, reduction), np.zeros(x.shape), None
