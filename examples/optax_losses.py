"""torch's losses through JAX and optax, with the suite's functional API (``--impl examples.optax_losses``).

The math is optax's: ``softmax_cross_entropy_with_integer_labels`` (class indices, ``where`` for ignore_index),
``smooth_labels`` and ``softmax_cross_entropy`` (label smoothing, probability targets) and
``sigmoid_binary_cross_entropy``; gradients are ``jax.vjp`` of the same function. What optax leaves to its user
is done here as bookkeeping: class weights, the reductions and torch's 'mean' denominator. optax has no loss on
log-probabilities (nll_loss), none on probabilities (binary_cross_entropy) and no ``pos_weight``: those raise
NotImplementedError. Arguments are not checked beyond what JAX and optax check themselves.

Each case runs in its input's dtype (float64 with x64 enabled). A bfloat16 case arrives as float32 (NumPy has no
bfloat16) and is computed in float32.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

jax.config.update("jax_enable_x64", True)

Array = jax.Array


def _out(value: Array | None) -> np.ndarray | None:
    # a copy: np.asarray of a jax.Array is read-only, and torch.from_numpy warns on one
    return None if value is None else np.array(value, dtype=np.float64)


def _reduce(loss: Array, reduction: str, weights: Array | None = None) -> Array:
    """'mean' divides by the sum of `weights` (torch's denominator for class indices), or by the count."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        if weights is None:
            return loss.mean()
        # as jnp.mean does: 16-bit floats are summed in float32, where the sum cannot overflow before the mean
        acc = jnp.promote_types(loss.dtype, jnp.float32)
        return (loss.sum(dtype=acc) / weights.sum(dtype=acc)).astype(loss.dtype)
    raise ValueError(f"reduction: {reduction!r} is not a valid value for reduction")


def _per_class(weight: Array, ndim: int, axis: int) -> Array:
    """A (C,) weight shaped to broadcast along the class axis of an input of rank `ndim`."""
    return weight.reshape((-1,) + (1,) * (ndim - axis - 1))


def _cross_entropy(
    x: Array, t: Array, weight: Array | None, ignore_index: int, reduction: str, label_smoothing: float
) -> Array:
    axis = 0 if x.ndim == 1 else 1
    if t.shape == x.shape:  # torch's rule: a target shaped like the input holds probabilities
        if ignore_index >= 0:
            raise NotImplementedError("ignore_index with probability targets: optax has no ignore_index")
        if label_smoothing != 0:
            t = optax.losses.smooth_labels(t, label_smoothing, axis=axis)
        if weight is not None:  # torch weights each class's term: -sum_c w_c q_c log p_c
            t = t * _per_class(weight, x.ndim, axis)
        return _reduce(optax.losses.softmax_cross_entropy(x, t, axis=axis), reduction)
    keep = t != ignore_index
    if label_smoothing == 0:
        loss = optax.losses.softmax_cross_entropy_with_integer_labels(x, t, axis=axis, where=keep)
    else:
        q = optax.losses.smooth_labels(
            jax.nn.one_hot(t, x.shape[axis], dtype=x.dtype, axis=axis), label_smoothing, axis=axis
        )
        if weight is not None:  # w_c q_c = (1 - eps) w_y [c = y] + eps/C w_c: torch's weighted smoothing
            q = q * _per_class(weight, x.ndim, axis)
        loss = optax.losses.softmax_cross_entropy(x, q, axis=axis, where=keep)
    if weight is None:
        return _reduce(loss, reduction, keep)
    w_target = jnp.where(keep, weight[jnp.where(keep, t, 0)], 0)
    if label_smoothing == 0:
        loss = loss * w_target
    # torch's 'mean' divides by the weight of the kept targets, with or without smoothing
    return _reduce(loss, reduction, w_target)


def _binary_cross_entropy_with_logits(
    x: Array, t: Array, weight: Array | None, reduction: str, pos_weight: Array | None
) -> Array:
    if pos_weight is not None:
        raise NotImplementedError(
            "pos_weight: optax's sigmoid_binary_cross_entropy has no positive-class weight"
        )
    loss = optax.losses.sigmoid_binary_cross_entropy(x, t)
    return _reduce(loss if weight is None else loss * weight, reduction)


def _vjp(
    fn: Callable[..., Array], grad_output: np.ndarray, input: np.ndarray, target: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(d input, d target) of `fn` for the cotangent `grad_output`; target None: not differentiated."""
    primals = (jnp.asarray(input),) if target is None else (jnp.asarray(input), jnp.asarray(target))
    out, pullback = jax.vjp(fn, *primals)
    grads = pullback(jnp.asarray(grad_output, dtype=out.dtype))
    return _out(grads[0]), _out(grads[1]) if target is not None else None


def _optional(value: np.ndarray | None) -> Array | None:
    return None if value is None else jnp.asarray(value)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    return _out(
        _cross_entropy(
            jnp.asarray(input),
            jnp.asarray(target),
            _optional(weight),
            ignore_index,
            reduction,
            label_smoothing,
        )
    )


def cross_entropy_backward(
    grad_output, input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
):
    w = _optional(weight)
    if np.shape(target) == np.shape(input):  # probabilities: torch differentiates the target too
        return _vjp(
            lambda x, t: _cross_entropy(x, t, w, ignore_index, reduction, label_smoothing),
            grad_output,
            input,
            target,
        )
    t = jnp.asarray(target)
    return _vjp(
        lambda x: _cross_entropy(x, t, w, ignore_index, reduction, label_smoothing), grad_output, input, None
    )


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    raise NotImplementedError("nll_loss: optax has no negative log-likelihood loss on log-probabilities")


def nll_loss_backward(grad_output, input, target, weight=None, ignore_index=-100, reduction="mean"):
    raise NotImplementedError("nll_loss: optax has no negative log-likelihood loss on log-probabilities")


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    raise NotImplementedError("binary_cross_entropy: optax has no binary cross-entropy on probabilities")


def binary_cross_entropy_backward(grad_output, input, target, weight=None, reduction="mean"):
    raise NotImplementedError("binary_cross_entropy: optax has no binary cross-entropy on probabilities")


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    return _out(
        _binary_cross_entropy_with_logits(
            jnp.asarray(input), jnp.asarray(target), _optional(weight), reduction, _optional(pos_weight)
        )
    )


def binary_cross_entropy_with_logits_backward(
    grad_output, input, target, weight=None, reduction="mean", pos_weight=None
):
    w, pw = _optional(weight), _optional(pos_weight)

    def fn(x: Array, t: Array) -> Array:
        return _binary_cross_entropy_with_logits(x, t, w, reduction, pw)

    return _vjp(fn, grad_output, input, target)
