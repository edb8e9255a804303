"""torch's losses through tinygrad, with the suite's functional API (``--impl examples.tinygrad_losses``).

The math is tinygrad's own Tensor methods: ``log_softmax`` then ``nll_loss`` (cross_entropy with class indices, as
torch defines it; nll_loss has weight and ignore_index), ``sparse_categorical_crossentropy`` (label smoothing with
ignore_index), ``cross_entropy`` (probability targets), ``binary_crossentropy`` and ``binary_crossentropy_logits``
(with ``pos_weight``). Gradients come from tinygrad's autograd (``Tensor.gradient`` with grad_output as the
cotangent). Bookkeeping tinygrad leaves to its user is done here: elementwise and class weights (and the
reduction that follows them), the batch dimension nll_loss needs for a 1-D input, the class axis moved last for
``sparse_categorical_crossentropy``. tinygrad has no class weight with label smoothing: that raises
NotImplementedError. Arguments are not checked beyond what tinygrad checks itself.

Everything runs on tinygrad's CPU device (its kernels are compiled with clang) in the input's dtype. A bfloat16
case arrives as float32 (NumPy has no bfloat16) and is computed in float32.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tinygrad import Tensor

DEVICE = "CPU"


def _tensor(value: np.ndarray | None) -> Tensor | None:
    if value is None:
        return None
    value = np.asarray(value)
    # tinygrad makes a 0-d array a constant, not a buffer (its gradient came back shaped (1,)): one element,
    # reshaped
    return Tensor(np.ascontiguousarray(value.reshape(-1)), device=DEVICE).reshape(value.shape)


def _out(value: Tensor | None) -> np.ndarray | None:
    return None if value is None else np.array(value.numpy(), dtype=np.float64)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    """For losses whose weight tinygrad does not take: reduced here after weighting, as torch does."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"reduction: {reduction!r} is not a valid value for reduction")


def _nll_loss(x: Tensor, t: Tensor, weight: Tensor | None, ignore_index: int, reduction: str) -> Tensor:
    if x.ndim != 1:
        return x.nll_loss(t, weight, ignore_index, reduction)
    # tinygrad gathers along dim 1: a 1-D input (C,) with its 0-d target becomes a batch of one
    loss = x.unsqueeze(0).nll_loss(t.reshape(1), weight, ignore_index, reduction)
    return loss.reshape(()) if reduction == "none" else loss


def _cross_entropy(
    x: Tensor, t: Tensor, weight: Tensor | None, ignore_index: int, reduction: str, label_smoothing: float
) -> Tensor:
    axis = 0 if x.ndim == 1 else 1
    if t.shape == x.shape:  # torch's rule: a target shaped like the input holds probabilities
        if ignore_index >= 0:
            raise NotImplementedError("ignore_index with probability targets: tinygrad has no ignore_index")
        if weight is not None:
            if label_smoothing != 0:
                raise NotImplementedError(
                    "weight with label_smoothing: tinygrad's cross_entropy has no weight"
                )
            # torch weights each class's term, -sum_c w_c y_c log p_c: the weight goes on the target
            t = t * weight.reshape((-1,) + (1,) * (x.ndim - axis - 1))
        return x.cross_entropy(t, reduction, label_smoothing)
    if label_smoothing == 0:  # torch's definition: nll_loss of log_softmax
        return _nll_loss(x.log_softmax(axis), t, weight, ignore_index, reduction)
    if weight is not None:
        raise NotImplementedError(
            "weight with label_smoothing: tinygrad's sparse_categorical_crossentropy has no weight"
        )
    # sparse_categorical_crossentropy wants the classes on the last axis
    last = x if x.ndim <= 2 else x.permute(0, *range(2, x.ndim), 1)
    return last.sparse_categorical_crossentropy(t, ignore_index, label_smoothing, reduction)


def _binary_cross_entropy(x: Tensor, t: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
    if weight is None:
        return x.binary_crossentropy(t, reduction)
    return _reduce(x.binary_crossentropy(t, "none") * weight, reduction)


def _binary_cross_entropy_with_logits(
    x: Tensor, t: Tensor, weight: Tensor | None, reduction: str, pos_weight: Tensor | None
) -> Tensor:
    if weight is None:
        return x.binary_crossentropy_logits(t, reduction, pos_weight)
    return _reduce(x.binary_crossentropy_logits(t, "none", pos_weight) * weight, reduction)


def _backward(
    fn: Callable[[Tensor, Tensor], Tensor],
    grad_output: np.ndarray,
    input: np.ndarray,
    target: np.ndarray,
    differentiable_target: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    x, t = _tensor(input), _tensor(target)
    loss = fn(x, t)
    cotangent = _tensor(np.asarray(grad_output, dtype=np.asarray(input).dtype))
    grads = (
        loss.gradient(x, t, gradient=cotangent)
        if differentiable_target
        else loss.gradient(x, gradient=cotangent)
    )
    return _out(grads[0]), _out(grads[1]) if differentiable_target else None


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    return _out(
        _cross_entropy(
            _tensor(input), _tensor(target), _tensor(weight), ignore_index, reduction, label_smoothing
        )
    )


def cross_entropy_backward(
    grad_output, input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
):
    w = _tensor(weight)
    return _backward(
        lambda x, t: _cross_entropy(x, t, w, ignore_index, reduction, label_smoothing),
        grad_output,
        input,
        target,
        differentiable_target=np.shape(target) == np.shape(input),  # probabilities only
    )


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    return _out(_nll_loss(_tensor(input), _tensor(target), _tensor(weight), ignore_index, reduction))


def nll_loss_backward(grad_output, input, target, weight=None, ignore_index=-100, reduction="mean"):
    w = _tensor(weight)
    return _backward(
        lambda x, t: _nll_loss(x, t, w, ignore_index, reduction),
        grad_output,
        input,
        target,
        differentiable_target=False,
    )


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    return _out(_binary_cross_entropy(_tensor(input), _tensor(target), _tensor(weight), reduction))


def binary_cross_entropy_backward(grad_output, input, target, weight=None, reduction="mean"):
    w = _tensor(weight)
    return _backward(
        lambda x, t: _binary_cross_entropy(x, t, w, reduction),
        grad_output,
        input,
        target,
        differentiable_target=True,
    )


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    return _out(
        _binary_cross_entropy_with_logits(
            _tensor(input), _tensor(target), _tensor(weight), reduction, _tensor(pos_weight)
        )
    )


def binary_cross_entropy_with_logits_backward(
    grad_output, input, target, weight=None, reduction="mean", pos_weight=None
):
    w, pw = _tensor(weight), _tensor(pos_weight)
    return _backward(
        lambda x, t: _binary_cross_entropy_with_logits(x, t, w, reduction, pw),
        grad_output,
        input,
        target,
        differentiable_target=True,
    )
