"""Binary cross-entropy on logits (F.binary_cross_entropy_with_logits): forward, backward and double backward."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._blocks import map_backward, map_reduce
from ._checks import check_broadcast, check_reduction, check_same_shape, floating, grad_grad_input_array
from ._reduce import reduce_backward, reduce_grad_output, reduce_scale
from .activations import sigmoid_pair


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


def _log_weight(y: np.ndarray, p: np.ndarray | None) -> np.ndarray | float:
    """``p y + 1 - y``, the factor of log sigma(x) in torch's formula: as written for y in [0, 1] (two terms >= 0);
    outside, where p y and 1 - y have opposite signs, as ``1 + (p - 1) y`` if p - 1 is exact (p in [1/2, 2]),
    which keeps p ~ 1 with a large |y| from cancelling."""
    if p is None:
        return 1.0
    with np.errstate(invalid="ignore"):  # NaN compares False
        regrouped = ((y < 0.0) | (y > 1.0)) & (p >= 0.5) & (p <= 2.0)
    return np.where(regrouped, 1.0 + (p - 1.0) * y, p * y + (1.0 - y))


def _loss(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, p: np.ndarray | None) -> np.ndarray:
    """The elementwise loss of one block (the formula of :func:`binary_cross_entropy_with_logits`).

    With L = log(1 + e^-|x|) (so log sigma(x) = -(max(-x, 0) + L), log sigma(-x) = -(max(x, 0) + L)) the loss
    -(p y log sigma(x) + (1 - y) log sigma(-x)) is ``(p y + 1 - y) L + |x| (1 - y if x >= 0 else p y)``: two
    terms >= 0 for targets in [0, 1]. For targets outside [0, 1] (accepted by torch) the two logs' terms have
    opposite signs and would cancel, e.g. y = -10.6, x ~ 0: 7.3 - 8.0 = 0.69; this form keeps them apart.
    """
    x, y = x.astype(np.float64), y.astype(np.float64)
    log1p_exp = np.log1p(np.exp(-np.abs(x)))
    coefficient = np.where(x >= 0, 1.0 - y, y if p is None else p * y)  # of |x|
    with np.errstate(invalid="ignore"):  # |x| = inf times a zero coefficient is NaN, as in torch
        loss = _log_weight(y, p) * log1p_exp + np.abs(x) * coefficient
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
        # log sigma(-x) - p log sigma(x) = (p - 1) L - x (x >= 0) or (p - 1) L - p x (x < 0), L = log(1 + e^-|x|):
        # no difference of the two logs, which cancel for x ~ 0 and p ~ 1
        log1p_exp = np.log1p(np.exp(-np.abs(x)))
        grad_target = g * ((p - 1.0) * log1p_exp - x * np.where(x >= 0, 1.0, p))
    return grad_input, grad_target


def _double_backward(g, x, y, v, w, p):
    """``(terms of grad_grad_output, grad2_input, grad2_target)`` of one block (derived in the docstring of
    :func:`binary_cross_entropy_with_logits_double_backward`); the terms are still to be times the reduction's
    scale."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    if w is not None:
        v = v * w
    py = y if p is None else p * y
    sig, sig_neg = sigmoid_pair(x)  # sigma(x), sigma(-x): sigma'(x) = sigma(x) sigma(-x), no 1 - sigma(x)
    terms = v * ((1.0 - y) * sig - py * sig_neg)  # the backward's own factor, times v
    gv = g * v
    grad2_input = gv * _log_weight(y, p) * sig * sig_neg  # (p y + 1 - y) sigma'(x)
    grad2_target = -gv if p is None else -gv * (sig + p * sig_neg)  # two terms of one sign for p >= 0
    return terms, grad2_input, grad2_target


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
    Computed from ``log(1 + e^-|x|)`` (no overflow at |x| = 1000, no log(0)) as a sum of two terms of one sign for
    targets in [0, 1] (see ``_loss``): equal to torch's ``(1 - y) x - (1 + (p - 1) y) log_sigmoid(x)`` but without
    its cancellation where the loss is small, nor the two logs' where the target is outside [0, 1].
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
    d/dy = log sigma(-x) - p log sigma(x) (= -x without pos_weight), computed without the difference of the two
    logs (see ``_backward``). Both times w and grad_output (/ numel).

    >>> [a.tolist() for a in binary_cross_entropy_with_logits_backward(1.0, np.array([0.0]), np.array([1.0]))]
    [[-0.5], [-0.0]]
    """
    reduction = check_reduction(reduction)
    x, y, w, p = _checked(input, target, weight, pos_weight)
    g = reduce_backward(grad_output, reduction, x.shape)
    return map_backward(_backward, g, x, y, w, p)


def binary_cross_entropy_with_logits_double_backward(
    grad_grad_input: ArrayLike,
    grad_output: ArrayLike | float,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
    pos_weight: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Double backward of :func:`binary_cross_entropy_with_logits`: ``(grad_grad_output, grad2_input,
    grad2_target)``.

    The derivatives of phi = sum g' w v ((1 - y) sigma(x) - p y sigma(-x)) (v = grad_grad_input, g' =
    grad_output, / numel for 'mean'), i.e. of <grad_input, v> with grad_input as
    :func:`binary_cross_entropy_with_logits_backward` computes it. With sigma'(x) = sigma(x) sigma(-x):

    * d phi / d g' = w v ((1 - y) sigma(x) - p y sigma(-x)), summed for 'mean' and 'sum' (/ numel for 'mean');
    * d phi / d x = g' w v (p y + 1 - y) sigma(x) sigma(-x) (= g' w v sigma'(x) without pos_weight): the
      logistic's curvature, whatever the target's side;
    * d phi / d y = -g' w v (sigma(x) + p sigma(-x)) (= -g' w v without pos_weight).

    sigma(x) sigma(-x) is taken from both sigmoids, not as sigma (1 - sigma), which loses every digit for
    x >> 0; ``p y + 1 - y`` is regrouped as in the forward for targets outside [0, 1].

    At x = 0 both sigmoids are 1/2: with y = 1, the factor is -1/2, the curvature 1/4 and d/dy -1.

    >>> x, y = np.zeros(1), np.ones(1)
    >>> [a.tolist() for a in binary_cross_entropy_with_logits_double_backward(np.ones(1), 1.0, x, y)]
    [-0.5, [0.25], [-1.0]]
    """
    reduction = check_reduction(reduction)
    x, y, w, p = _checked(input, target, weight, pos_weight)
    g = reduce_backward(grad_output, reduction, x.shape)
    v = grad_grad_input_array(grad_grad_input, x.shape)
    terms, grad2_input, grad2_target = map_backward(_double_backward, g, x, y, v, w, p, outputs=3)
    terms *= reduce_scale(reduction, x.shape)
    return reduce_grad_output(terms, reduction), grad2_input, grad2_target
