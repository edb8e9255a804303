"""Binary cross-entropy on logits (F.binary_cross_entropy_with_logits): forward and backward."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._blocks import map_backward, map_reduce
from ._checks import check_broadcast, check_reduction, check_same_shape, floating
from ._reduce import reduce_backward
from .activations import log_sigmoid_pair, sigmoid_pair


def _checked(input, target, weight, pos_weight):
    """torch's checks in torch's order; returns (x, y, w, p), w and p float64, None or broadcastable to x.

    x and y keep their dtype: the formulas convert them to float64 one block at a time.
    """
    x, y = np.asarray(input), np.asarray(target)
    check_same_shape(x, y)
    floating("input", x)
    if y.dtype.kind != "f":
        raise RuntimeError(f"target: dtype {y.dtype} is not supported; expected a floating dtype")
    extra = []
    for name, value in (("weight", weight), ("pos_weight", pos_weight)):
        if value is not None:
            value = np.asarray(value)
            check_broadcast(name, value, x.shape)
            value = value.astype(np.float64)
        extra.append(value)
    return x, y, *extra


def _loss(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, p: np.ndarray | None) -> np.ndarray:
    """The elementwise loss of one block (the formula of :func:`binary_cross_entropy_with_logits`)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    py = y if p is None else p * y
    log_sig, log_sig_neg = log_sigmoid_pair(x)  # log sigma(x), log sigma(-x) = log(1 - sigma(x))
    loss = -(py * log_sig + (1.0 - y) * log_sig_neg)
    if w is not None:
        loss *= w
    return loss


def _backward(g: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray | None, p: np.ndarray | None):
    """``(grad_input, grad_target)`` of one block (derived in the docstring of the public backward)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    if w is not None:
        g = g * w
    py = y if p is None else p * y
    sig, sig_neg = sigmoid_pair(x)  # sigma(x), sigma(-x)
    grad_input = g * ((1.0 - y) * sig - py * sig_neg)
    if p is None:
        grad_target = -g * x
    else:
        log_sig, log_sig_neg = log_sigmoid_pair(x)
        grad_target = g * (log_sig_neg - p * log_sig)
    return grad_input, grad_target


def binary_cross_entropy_with_logits(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
    pos_weight: ArrayLike | None = None,
) -> np.ndarray:
    r""":math:`\ell = -w\,[p\,y \log\sigma(x) + (1 - y) \log\sigma(-x)]`, elementwise.

    ``input`` x: logits; ``target`` y: same shape, floating (not range-checked: y = 5 is accepted, as in
    torch). ``weight`` and ``pos_weight`` (p, the weight of the positive term) broadcast against the input
    from the right (pos_weight of shape (C, 1, 1) for an (N, C, H, W) input) and may not enlarge its shape.
    Both logs are ``log_sigmoid`` (no overflow at |x| = 1000, no log(0)): equal to torch's
    ``(1 - y) x - (1 + (p - 1) y) log_sigmoid(x)`` but without its cancellation where the loss is small.
    'mean' divides by numel; empty -> NaN.

    At x = 0 both terms are log 2.

    >>> loss = binary_cross_entropy_with_logits(np.zeros(3), np.array([0.0, 0.5, 1.0]))
    >>> bool(np.isclose(loss, np.log(2.0)))
    True
    """
    reduction = check_reduction(reduction)
    x, y, w, p = _checked(input, target, weight, pos_weight)
    return map_reduce(_loss, reduction, x, y, w, p)


def binary_cross_entropy_with_logits_backward(
    grad_output: ArrayLike | float,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
    pos_weight: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""VJP of :func:`binary_cross_entropy_with_logits`: ``(grad_input, grad_target)``.

    d/dx log sigma(x) = sigma(-x) and d/dx log sigma(-x) = -sigma(x),
    so d/dx = (1 - y) sigma(x) - p y sigma(-x)
    (= sigma(x) - y without pos_weight: the sigma' of the logistic cancels, as for softmax + CE). Written with
    sigma(-x) instead of torch's ``(p y + 1 - y) sigma(x) - p y`` to avoid 1 - sigma(x) cancelling for x >> 0.
    d/dy = log sigma(-x) - p log sigma(x) (= -x without pos_weight). Both times w and grad_output (/ numel).

    >>> [a.tolist() for a in binary_cross_entropy_with_logits_backward(1.0, np.array([0.0]), np.array([1.0]))]
    [[-0.5], [-0.0]]
    """
    reduction = check_reduction(reduction)
    x, y, w, p = _checked(input, target, weight, pos_weight)
    g = reduce_backward(grad_output, reduction, x.shape)
    return map_backward(_backward, g, x, y, w, p)
