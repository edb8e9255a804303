"""Stable activations on float64 arrays: softmax, log_softmax, sigmoid, log_sigmoid."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def minus_max(x: ArrayLike, dim: int, out: np.ndarray | None = None) -> np.ndarray:
    """``x - max(x)`` along ``dim`` in float64, into ``out`` if given (an empty class dim: a float64 copy).

    The max is taken in the input's own dtype (exact, and no float64 copy of a float32 input is made); the
    subtraction converts to float64 as it goes.
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    if x.shape[dim] == 0:
        return x.astype(np.float64) if out is None else out
    return np.subtract(x, np.max(x, axis=dim, keepdims=True), out=out, dtype=np.float64)


def minus_max_at(
    x: ArrayLike, dim: int, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(x - max(x), argmax(x))`` along ``dim``, the argmax with ``dim`` kept (None when the dim is empty).

    The max is taken at the argmax (the same cost as ``np.max``, the first NaN in a row that has one), so that
    a caller can leave the max's term out of a sum.
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    if x.shape[dim] == 0:
        return minus_max(x, dim, out), None
    at_max = np.argmax(x, axis=dim, keepdims=True)
    return np.subtract(x, np.take_along_axis(x, at_max, axis=dim), out=out, dtype=np.float64), at_max


def log_softmax(x: ArrayLike, dim: int = -1) -> np.ndarray:
    """``log_softmax(x)_i = x_i - max(x) - log(sum_j exp(x_j - max(x)))`` along ``dim``.

    Subtracting the max makes every exponent <= 0, so ``exp`` cannot overflow and the largest term is exactly
    1 (the log-sum is then in [0, log C]). The log-sum is ``log1p`` of the other terms' sum: in a confident row
    it is as small as e^-700, the max's log-probability is minus it, and log(1 + tiny) would round to 0. Like
    torch, a row that holds +inf or only -inf gives NaN.

    >>> log_softmax(np.array([0.0, 0.0])).tolist() == [-np.log(2.0)] * 2
    True
    >>> float(log_softmax(np.array([40.0, 0.0]))[0])  # -log1p(e^-40)
    -4.248354255291589e-18
    """
    out, at_max = minus_max_at(x, dim)
    e = np.exp(out)
    if at_max is not None:  # the max's term, exactly 1 (NaN in a NaN row), left out of the sum: e - 1
        np.put_along_axis(e, at_max, np.take_along_axis(e, at_max, axis=dim) - 1.0, axis=dim)
    out -= np.log1p(np.sum(e, axis=dim, keepdims=True))
    return out


def softmax(x: ArrayLike, dim: int = -1, out: np.ndarray | None = None) -> np.ndarray:
    """``softmax(x)_i = exp(x_i - max(x)) / sum_j exp(x_j - max(x))`` along ``dim`` (max-subtracted).

    ``out``: a float64 array of x's shape to write the result into (a block of a loss's gradient).

    >>> softmax(np.array([0.0, np.log(3.0)])).round(12).tolist()
    [0.25, 0.75]
    """
    out = minus_max(x, dim, out)
    np.exp(out, out=out)
    out /= np.sum(out, axis=dim, keepdims=True)
    return out


def sigmoid(x: ArrayLike) -> np.ndarray:
    """``sigmoid(x) = 1 / (1 + exp(-x))``, evaluated as ``e / (1 + e)`` with ``e = exp(-|x|)`` for x < 0.

    ``exp(-|x|)`` is in (0, 1], so neither branch overflows, and for very negative x the result keeps its full
    relative precision (``exp(x)`` rather than ``1 - something close to 1``).

    >>> sigmoid(np.array([0.0, -800.0, 800.0])).tolist()
    [0.5, 0.0, 1.0]
    """
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


def log_sigmoid(x: ArrayLike) -> np.ndarray:
    """``log_sigmoid(x) = log(sigmoid(x)) = -log(1 + exp(-x)) = -(max(-x, 0) + log1p(exp(-|x|)))``.

    That is ``-logaddexp(0, -x)``, written out: no overflow for x << 0 (gives ~x) and no ``log(1 - tiny)``
    rounding to 0 for x >> 0 (gives ~-exp(-x)). ``log(1 - sigmoid(x))`` is ``log_sigmoid(-x)``.

    >>> bool(log_sigmoid(np.array(0.0)) == -np.log(2.0))
    True
    """
    return log_sigmoid_pair(x)[0]


def sigmoid_pair(x: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(sigmoid(x), sigmoid(-x))``, the two probabilities of a binary outcome, from one ``exp(-|x|)``.

    Each is what :func:`sigmoid` gives: ``sigmoid(-x)`` is not ``1 - sigmoid(x)``, which cancels for x >> 0.
    """
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    denominator = 1.0 + e
    return np.where(x >= 0, 1.0, e) / denominator, np.where(x <= 0, 1.0, e) / denominator


def log_sigmoid_pair(x: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(log_sigmoid(x), log_sigmoid(-x))``, sharing ``log1p(exp(-|x|))`` (the costly part) between them."""
    x = np.asarray(x, dtype=np.float64)
    log1p_exp = np.log1p(np.exp(-np.abs(x)))
    return -(np.maximum(-x, 0.0) + log1p_exp), -(np.maximum(x, 0.0) + log1p_exp)
