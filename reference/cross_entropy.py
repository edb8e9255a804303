"""Cross-entropy loss (torch.nn.functional.cross_entropy): forward and backward.

Why it learns fast: with p = softmax(z) and a target distribution q, CE = -sum_c q_c log p_c, and

    dCE/dz_j = -sum_c q_c (delta_cj - p_j) = p_j * sum_c q_c - q_j = p_j - q_j   (when q sums to 1).

The sigma'(z) factor that makes sigmoid + MSE saturate (a confident wrong output has sigma' ~ 0, so almost no
gradient) cancels against the 1/p of the log: the gradient is the plain error p - q, large exactly when wrong.
With class weights w the same algebra gives p_j * sum_c w_c q_c - w_j q_j.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._checks import (
    check_ignore_index,
    check_label_smoothing,
    check_reduction,
    class_targets,
    floating,
)
from ._reduce import reduce_backward, reduce_loss
from .activations import log_softmax
from .nll_loss import add_at_target, class_dim_of, pick, target_weights


def _class_view(weight: np.ndarray, ndim: int, class_dim: int) -> np.ndarray:
    """The (C,) weight shaped to broadcast along the class dimension of an ndim-D input."""
    shape = [1] * ndim
    shape[class_dim] = weight.size
    return weight.reshape(shape)


def _check_rank(x: np.ndarray) -> None:
    # torch takes log_softmax over dim 1 of a 0-d input before any nll check: IndexError, not nll's ValueError
    if x.ndim == 0:
        raise IndexError("input: expected 1 or more dimensions (got 0); there is no class dimension")


def _probability_target(x, target, weight, ignore_index, label_smoothing):
    """Checks of the probability-target path (target.shape == input.shape); returns (q, weight, eps)."""
    q = np.asarray(target)
    if q.dtype.kind != "f":
        raise RuntimeError(
            f"target: class probabilities (target.shape == input.shape) must be floating, got {q.dtype}"
        )
    if ignore_index >= 0:
        raise RuntimeError(
            f"ignore_index: not supported with probability targets (got {ignore_index}); it must be negative"
        )
    _check_rank(x)
    n_classes = x.shape[class_dim_of(x.ndim)]
    w = None
    if weight is not None:
        w = np.asarray(weight)
        if w.ndim != 1 or w.size != n_classes:
            raise RuntimeError(f"weight: expected a 1-D tensor of {n_classes} elements, got shape {w.shape}")
        w = w.astype(np.float64)
    eps = check_label_smoothing(label_smoothing)
    q = q.astype(np.float64)
    if eps > 0:
        q = q * (1.0 - eps) + eps / n_classes
    return q, w, eps


def _index_target(x, target, weight, ignore_index, reduction, label_smoothing, backward=False):
    """Checks of the class-index path; returns (t, keep, weight, eps)."""
    _check_rank(x)
    eps = check_label_smoothing(label_smoothing)
    t, keep, w = class_targets(
        x, target, weight, ignore_index, reduction=reduction, weight_1d=eps > 0, backward=backward
    )
    if eps > 0:
        # two torch quirks of the label-smoothing path, mirrored so that error parity holds:
        if x.ndim == 1 and np.ndim(target) == 1:
            raise RuntimeError(
                "target: a (1,) target of a 1-D input fails with label_smoothing > 0 (use a 0-d target)"
            )
        if w is not None and reduction == "mean" and np.asarray(target).dtype == np.uint8 and keep.any():
            raise RuntimeError(
                "target: uint8 class indices with weight, label_smoothing > 0 and 'mean' (torch: int64)"
            )
    return t, keep, w, eps


def cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> np.ndarray:
    r"""Cross-entropy of logits: :math:`\ell_n = -\sum_c w_c q_{n,c} \log \mathrm{softmax}(x_n)_c`.

    ``input``: logits (C,), (N, C) or (N, C, d1, ..., dk), classes along dim 0 for a 1-D input, else dim 1.
    ``target``, as torch decides:

    * same shape as the input -> class probabilities q (floating; ``ignore_index`` must be negative). With
      label smoothing eps, ``q <- q (1 - eps) + eps / C``. 'mean' divides by numel / C (N d1 ... dk) whatever
      the weights; 'none' has the input's shape without the class dim.
    * otherwise class indices, = ``nll_loss(log_softmax(x), y, weight, ignore_index, reduction)``. With label
      smoothing: ``(1 - eps) * nll + eps / C * smooth``, where ``smooth_n = -sum_c w_c log p_{n,c}`` (0 where
      ignored) is reduced like nll, i.e. 'mean' divides by the sum of ``w[y_n]`` over kept elements.

    ``label_smoothing`` > 1 is rejected; like torch, a negative (or NaN) value is treated as 0. A mean over
    nothing is NaN. log_softmax is max-subtracted (see ``activations.log_softmax``).

    Two equal logits, target 0: -log(1/2) = log 2.

    >>> bool(np.isclose(cross_entropy(np.zeros((1, 2)), np.array([0])), np.log(2.0)))
    True
    """
    reduction = check_reduction(reduction)
    x = floating("input", input)
    ignore_index = check_ignore_index(ignore_index)
    class_dim = class_dim_of(x.ndim)
    if np.shape(target) == x.shape:
        q, w, _ = _probability_target(x, target, weight, ignore_index, label_smoothing)
        wq = q if w is None else q * _class_view(w, x.ndim, class_dim)
        loss = -(wq * log_softmax(x, class_dim)).sum(axis=class_dim)
        # torch: sum / (numel / C), and NaN when the input is empty (also for C = 0)
        return reduce_loss(loss, reduction, loss.size if x.size else 0)

    t, keep, w, eps = _index_target(x, target, weight, ignore_index, reduction, label_smoothing)
    logp = log_softmax(x, class_dim)
    w_t = target_weights(w, t, keep)
    loss = np.where(keep, -w_t * pick(logp, t, keep, class_dim), 0.0)
    if eps > 0:
        # smooth_n = -sum_c w_c log p_{n,c}: the CE against the uniform distribution, times C
        smooth = -(logp if w is None else logp * _class_view(w, x.ndim, class_dim)).sum(axis=class_dim)
        n_classes = x.shape[class_dim]
        loss = (1.0 - eps) * loss + (eps / n_classes if n_classes else 0.0) * np.where(keep, smooth, 0.0)
    return reduce_loss(loss, reduction, w_t.sum())


def cross_entropy_backward(
    grad_output: ArrayLike | float,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> tuple[np.ndarray, np.ndarray | None]:
    r"""VJP of :func:`cross_entropy`: ``(grad_input, grad_target)``.

    Probability targets: ``d/dx_j = g * (p_j * sum_c w_c q_c - w_j q_j)`` and, wrt the unsmoothed target,
    ``d/dy_c = -g * (1 - eps) * w_c * log p_c``. Class indices (grad_target is None): with
    a = (1 - eps) w_y g and b = eps / C * g (both 0 where ignored),
    ``d/dx_j = a (p_j - [j = y]) + b (p_j * sum_c w_c - w_j)``.
    g is grad_output, divided by the mean's denominator for 'mean'.

    >>> cross_entropy_backward(1.0, np.zeros((1, 2)), np.array([0]))[0].tolist()  # p - onehot
    [[-0.5, 0.5]]
    """
    reduction = check_reduction(reduction)
    x = floating("input", input)
    ignore_index = check_ignore_index(ignore_index)
    class_dim = class_dim_of(x.ndim)
    if np.shape(target) == x.shape:
        q, w, eps = _probability_target(x, target, weight, ignore_index, label_smoothing)
        loss_shape = x.shape[:class_dim] + x.shape[class_dim + 1 :]
        g = reduce_backward(grad_output, reduction, loss_shape, int(np.prod(loss_shape)) if x.size else 0)
        with np.errstate(invalid="ignore"):  # inf * 0 = NaN, as in torch
            return _probability_backward(g, x, q, w, eps, class_dim)

    t, keep, w, eps = _index_target(
        x, target, weight, ignore_index, reduction, label_smoothing, backward=True
    )
    w_t = target_weights(w, t, keep)
    g = reduce_backward(grad_output, reduction, t.shape, w_t.sum())
    with np.errstate(invalid="ignore"):
        return _index_backward(g, x, t, keep, w, w_t, eps, class_dim), None


def _probability_backward(g, x, q, w, eps, class_dim):
    g = np.expand_dims(g, class_dim) if g.ndim else g
    logp = log_softmax(x, class_dim)
    w_c = 1.0 if w is None else _class_view(w, x.ndim, class_dim)
    wq = q * w_c
    # d/dx_j = p_j * sum_c w_c q_c - w_j q_j
    grad_input = np.exp(logp) * wq.sum(axis=class_dim, keepdims=True)
    grad_input -= wq
    grad_input *= g
    # d/dy_c = -(1 - eps) w_c log p_c: the target enters the loss only through q = (1 - eps) y + eps / C
    grad_target = logp
    grad_target *= -(1.0 - eps) * g * w_c
    return grad_input, grad_target


def _index_backward(g, x, t, keep, w, w_t, eps, class_dim):
    n_classes = x.shape[class_dim]
    a = np.where(keep, (1.0 - eps) * w_t * g, 0.0)  # coefficient of the nll term
    b = np.where(keep, (eps / n_classes) * g, 0.0) if eps > 0 else None  # coefficient of the smoothing term
    grad = np.exp(log_softmax(x, class_dim))  # p
    # At the target, p_y - 1 cancels when p_y ~ 1 (a confident right answer): use -(sum of the other p_j).
    p_y = pick(grad, t, keep, class_dim)
    add_at_target(grad, t, keep, -np.where(keep, p_y, 0.0), class_dim)  # p with p_y zeroed
    others = grad.sum(axis=class_dim)
    # d/dx_j = a (p_j - [j = y]) + b (p_j * sum_c w_c - w_j); the target's entry is added back last
    at_target = -a * others
    if b is None:
        grad *= np.expand_dims(a, class_dim)
    else:
        w_sum = float(n_classes) if w is None else w.sum()
        grad *= np.expand_dims(a + b * w_sum, class_dim)
        grad -= np.expand_dims(b, class_dim) * (1.0 if w is None else _class_view(w, x.ndim, class_dim))
        at_target = at_target + b * w_sum * p_y
    add_at_target(grad, t, keep, np.where(keep, at_target, 0.0), class_dim)
    return grad
