"""Cross-entropy loss (torch.nn.functional.cross_entropy): forward, backward and double backward.

Why it learns fast: with p = softmax(z) and a target distribution q, CE = -sum_c q_c log p_c, and

    dCE/dz_j = -sum_c q_c (delta_cj - p_j) = p_j * sum_c q_c - q_j = p_j - q_j   (when q sums to 1).

The sigma'(z) factor that makes sigmoid + MSE saturate (a confident wrong output has sigma' ~ 0, so almost no
gradient) cancels against the 1/p of the log: the gradient is the plain error p - q, large exactly when wrong.
With class weights w the same algebra gives p_j * sum_c w_c q_c - w_j q_j.

At second order only softmax's Jacobian diag(p) - p p^T is left (the targets are constants): the Hessian of a
row is s (diag(p) - p p^T), s the row's total target weight times grad_output.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from ._blocks import map_blocks, without
from ._checks import (
    check_ignore_index,
    check_label_smoothing,
    check_reduction,
    class_targets,
    floating,
    grad_grad_input_array,
)
from ._reduce import reduce_backward, reduce_grad_output, reduce_loss, reduce_scale
from .activations import log_softmax, minus_max_at, softmax
from .nll_loss import add_at_target, class_dim_of, pick, put_at_target, target_weights

# The formulas below work on blocks of rows with the classes along axis 1: (n, C) or (n, C, d1, ..., dk);
# a 1-D input (C,) is handled as one row, (1, C). The public functions check the arguments on the whole
# arrays, then map the formula over row blocks (see _blocks.py): no input-sized float64 temporary is made.


def _class_view(weight: np.ndarray, ndim: int) -> np.ndarray:
    """The (C,) weight shaped to broadcast along axis 1 of an ndim-D block."""
    return weight.reshape((1, weight.size) + (1,) * (ndim - 2))


def _loss_shape(x: np.ndarray) -> tuple[int, ...]:
    """The per-element loss's shape: the input's without the class dim."""
    return x.shape[1:] if x.ndim == 1 else x.shape[:1] + x.shape[2:]


def _rows(a: np.ndarray, input_ndim: int) -> np.ndarray:
    """An input, target or per-element array of a 1-D input as one row (a view); others as they are."""
    return a[np.newaxis] if input_ndim == 1 else a


def _check_rank(x: np.ndarray) -> None:
    # torch takes log_softmax over dim 1 of a 0-d input before any nll check: IndexError, not nll's ValueError
    if x.ndim == 0:
        raise IndexError("input: expected 1 or more dimensions (got 0); there is no class dimension")


def _probability_target(x, target, weight, ignore_index, label_smoothing):
    """Checks of the probability-target path (target.shape == input.shape); returns (target, weight, eps)."""
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
    return q, w, check_label_smoothing(label_smoothing)


def _smoothed(q: np.ndarray, eps: float) -> np.ndarray:
    """A block of probability targets in float64, label-smoothed: ``q (1 - eps) + eps / C``."""
    q = q.astype(np.float64)
    # no classes: nothing to smooth (torch adds its eps / C = inf to no element; the loss is the unsmoothed -0.0)
    return q * (1.0 - eps) + eps / q.shape[1] if eps > 0 and q.shape[1] else q


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
    if np.shape(target) == x.shape:
        q, w, eps = _probability_target(x, target, weight, ignore_index, label_smoothing)
        xs, qs = _rows(x, x.ndim), _rows(q, x.ndim)
        loss = np.empty(xs.shape[:1] + xs.shape[2:])

        def probability_block(i):
            loss[without(i, 1)] = _probability_loss(xs[i], qs[i], w, eps)

        with np.errstate(invalid="ignore"):  # a row with +inf: inf - inf = NaN, as in torch
            map_blocks(probability_block, xs.shape, whole_axis=1)
        # torch: sum / (numel / C), and NaN when the input is empty (also for C = 0)
        return reduce_loss(loss.reshape(_loss_shape(x)), reduction, loss.size if x.size else 0)

    t, keep, w, eps = _index_target(x, target, weight, ignore_index, reduction, label_smoothing)
    if eps > 0 and not x.shape[class_dim_of(x.ndim)]:
        # no classes: torch scales the smoothing term (a sum over no classes, 0) by eps / C = inf, and inf * 0 is
        # NaN in every element and in every reduction, even a 'sum' of no elements
        return np.full(t.shape if reduction == "none" else (), np.nan)
    w_t = target_weights(w, t, keep)
    xs, ts, keeps, w_ts = (_rows(a, x.ndim) for a in (x, t, keep, w_t))
    loss = np.empty(ts.shape)

    def index_block(i):
        j = without(i, 1)
        loss[j] = _index_loss(xs[i], ts[j], keeps[j], w_ts[j], w, eps)

    with np.errstate(invalid="ignore"):
        map_blocks(index_block, xs.shape, whole_axis=1)
    return _reduce_index_loss(loss.reshape(t.shape), reduction, w_t)


def _reduce_index_loss(loss: np.ndarray, reduction: str, w_t: np.ndarray) -> np.ndarray:
    total_weight = w_t.sum()
    if reduction == "mean" and not total_weight:
        # torch divides the NLL part by the total weight on its own: 0 / 0 = NaN, whatever the smoothing adds
        return np.asarray(np.nan)
    return reduce_loss(loss, reduction, total_weight)


def _probability_loss(x, q, w, eps):
    """``-sum_c w_c q_c log p_c`` for each element of a block (q smoothed)."""
    wq = _smoothed(q, eps)
    if w is not None:
        wq *= _class_view(w, x.ndim)
    return -(wq * log_softmax(x, 1)).sum(axis=1)


def _index_loss(x, t, keep, w_t, w, eps):
    """``-w_y log p_y`` per element of a block (0 where ignored); smoothed: (1 - eps) nll + eps/C smooth."""
    # -log p_y = log sum_c exp(z_c) - z_y with z = x - max(x): the row's log-sum-exp, no need to normalise
    # every entry (and no cancellation: z_y is taken before the sum, not subtracted from a large logsumexp)
    z, at_max = minus_max_at(x, 1)
    z_y, wz = _before_exp(z, t, keep, w, eps)
    sums = _row_sums(np.exp(z, out=z), t, keep, at_max)  # z is spent here
    return _from_log_sum(_log_sum(sums), z_y, wz, keep, w_t, w, eps, x.shape[1])


class _RowSums(NamedTuple):
    e_y: np.ndarray  # exp(x_y - max(x)), 0 where the target is ignored
    others: np.ndarray  # sum_{j != y} e_j: 1 - p_y = others / s
    beside_max: np.ndarray  # sum_{j != max} e_j = s - 1: 1 - p_max = beside_max / s
    y_is_max: np.ndarray


def _row_sums(e, t, keep, at_max) -> _RowSums:
    """The sums of e = exp(x - max(x)) over each row of a block that the loss and its gradient need; e's target
    entry is zeroed (in place).

    Each sum leaves out its term near 1 instead of subtracting it afterwards, so that what is small keeps its
    digits: 1 - p_y of a confident right answer, 1 - p_max, and log sum_j e_j = log1p(beside_max), as small as
    e^-700 in a confident row, where it is the whole loss (or the smoothing term's part of the max's class) and
    log(1 + tiny) would round to 0.
    """
    if at_max is None:  # no classes (every target is ignored)
        zeros = np.zeros(e.shape[:1] + e.shape[2:])
        return _RowSums(zeros, zeros, zeros - 1.0, zeros.astype(bool))
    y_is_max = keep & (t == np.squeeze(at_max, 1))
    # the max's term -1: exactly 0 (NaN in a row with +inf or only -inf, which stays NaN)
    np.put_along_axis(e, at_max, np.take_along_axis(e, at_max, axis=1) - 1.0, axis=1)
    d_y = np.where(keep, pick(e, t, keep, 1), 0.0)  # e_y, or 0 where the target is the max
    add_at_target(e, t, keep, -d_y, 1)
    rest = e.sum(axis=1)  # sum_{j not in {y, max}} e_j
    not_max = np.where(y_is_max, 0.0, 1.0)
    # the max's term back, except where it is the target's, which stays 0
    np.put_along_axis(e, at_max, np.take_along_axis(e, at_max, axis=1) + np.expand_dims(not_max, 1), axis=1)
    return _RowSums(d_y + (1.0 - not_max), rest + not_max, rest + d_y, y_is_max)


def _log_sum(sums: _RowSums) -> np.ndarray:
    """log sum_j e_j (-inf without classes)."""
    with np.errstate(divide="ignore"):
        return np.log1p(sums.beside_max)


def _before_exp(z, t, keep, w, eps):
    """What the loss needs from z = x - max(x) itself: (z_y, sum_c w_c z_c or None without smoothing)."""
    # smooth_n = -sum_c w_c log p_{n,c} = W log_sum - sum_c w_c z_c: the CE against the uniform distribution
    # times C (W = sum_c w_c); with weights >= 0 both parts are >= 0, so nothing cancels
    wz = (z if w is None else z * _class_view(w, z.ndim)).sum(axis=1) if eps > 0 else None
    return pick(z, t, keep, 1), wz


def _from_log_sum(log_sum, z_y, wz, keep, w_t, w, eps, n_classes):
    """The per-element loss from the row's log sum_c exp(z_c): w_y (log_sum - z_y), smoothed if eps > 0."""
    loss = np.where(keep, w_t * (log_sum - z_y), 0.0)
    if eps > 0:
        w_sum = float(n_classes) if w is None else w.sum()
        smooth = w_sum * log_sum - wz
        loss = (1.0 - eps) * loss + eps / n_classes * np.where(keep, smooth, 0.0)
    return loss


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
    if np.shape(target) == x.shape:
        q, w, eps = _probability_target(x, target, weight, ignore_index, label_smoothing)
        loss_shape = _loss_shape(x)
        g = reduce_backward(grad_output, reduction, loss_shape, int(np.prod(loss_shape)) if x.size else 0)
        xs, qs = _rows(x, x.ndim), _rows(q, x.ndim)
        gs = _rows(np.broadcast_to(g, loss_shape), x.ndim)
        grad_input, grad_target = np.empty(xs.shape), np.empty(xs.shape)

        def probability_block(i):
            grad_input[i], grad_target[i] = _probability_backward(gs[without(i, 1)], xs[i], qs[i], w, eps)

        with np.errstate(invalid="ignore"):  # inf * 0 = NaN, as in torch
            map_blocks(probability_block, xs.shape, whole_axis=1)
        return grad_input.reshape(x.shape), grad_target.reshape(x.shape)

    t, keep, w, eps = _index_target(
        x, target, weight, ignore_index, reduction, label_smoothing, backward=True
    )
    w_t = target_weights(w, t, keep)
    g = reduce_backward(grad_output, reduction, t.shape, w_t.sum())
    if not x.shape[class_dim_of(x.ndim)]:
        return np.zeros(x.shape), None  # no classes: an empty gradient (and no eps / C to take)
    xs, ts, keeps, w_ts, gs = (_rows(a, x.ndim) for a in (x, t, keep, w_t, np.broadcast_to(g, t.shape)))
    grad = np.empty(xs.shape)

    def index_block(i):
        j = without(i, 1)
        _index_backward(gs[j], xs[i], ts[j], keeps[j], w, w_ts[j], eps, out=grad[i])

    with np.errstate(invalid="ignore"):
        map_blocks(index_block, xs.shape, whole_axis=1)
    return grad.reshape(x.shape), None


def _probability_backward(g, x, q, w, eps):
    """``(grad_input, grad_target)`` of one block; g has the block's loss shape."""
    g = np.expand_dims(g, 1)
    w_c = 1.0 if w is None else _class_view(w, x.ndim)
    wq = _smoothed(q, eps) * w_c
    # d/dx_j = p_j * sum_c w_c q_c - w_j q_j. At the row's largest p_j and largest w_j q_j, a confident row and a
    # near one-hot target make that a difference of ~1's that keeps none of the tiny result's digits; there it is
    # p_j * sum_{c != j} w_c q_c - w_j q_j * (1 - p_j), both sums leaving out their term near 1
    e, at_max = minus_max_at(x, 1)
    np.exp(e, out=e)
    at_top = None if at_max is None else np.argmax(wq, axis=1, keepdims=True)
    beside_max, s = _beside(e, at_max)  # sum_{k != max} e_k (e_max = 1), s
    beside_top, total = _beside(wq, at_top)
    grad_input = e / s
    grad_input *= total
    grad_input -= wq
    if at_max is not None:
        for at in (at_max, at_top):
            p_j, wq_j = np.take_along_axis(e, at, axis=1) / s, np.take_along_axis(wq, at, axis=1)
            others_wq = np.where(at == at_top, beside_top, total - wq_j)
            not_p_j = np.where(at == at_max, beside_max / s, 1.0 - p_j)
            np.put_along_axis(grad_input, at, p_j * others_wq - wq_j * not_p_j, axis=1)
    grad_input *= g
    # d/dy_c = -(1 - eps) w_c log p_c: the target enters the loss only through q = (1 - eps) y + eps / C
    grad_target = log_softmax(x, 1)
    grad_target *= -(1.0 - eps) * g * w_c
    return grad_input, grad_target


def _sum_of_others(a):
    """``sum_{c != j} a_c`` for every j of a >= 0 (classes along axis 1): ``total - a_j``, accurate where a_j is
    at most half the total, that is everywhere but at the row's largest entry, where the others are summed on
    their own (they may be e^-700 of it)."""
    at = np.argmax(a, axis=1, keepdims=True) if a.shape[1] else None
    beside, total = _beside(a.copy(), at)
    out = total - a
    if at is not None:
        np.put_along_axis(out, at, beside, axis=1)
    return out


def _beside(a, at):
    """``(sum_{c != at} a_c, sum_c a_c)`` of each row (dims kept): the first summed with a_at left out, not
    subtracted from the second (a's entry is zeroed for the sum and put back)."""
    if at is None:
        total = a.sum(axis=1, keepdims=True)
        return total, total
    a_at = np.take_along_axis(a, at, axis=1)
    np.put_along_axis(a, at, 0.0, axis=1)
    beside = a.sum(axis=1, keepdims=True)
    np.put_along_axis(a, at, a_at, axis=1)
    return beside, beside + a_at


def _index_backward(g, x, t, keep, w, w_t, eps, out=None, loss=None):
    """The gradient of one block, written into ``out`` (a view of the whole gradient) if given.

    With ``loss`` (a view of the per-element loss), the block's loss is written there too, from the same e.
    """
    n_classes = x.shape[1]
    a = np.where(keep, (1.0 - eps) * w_t * g, 0.0)  # coefficient of the nll term
    b = np.where(keep, (eps / n_classes) * g, 0.0) if eps > 0 else None  # coefficient of the smoothing term
    # p = e / s with e = exp(x - max(x)), s = sum_c e_c; the 1/s is folded into the one scaling pass below
    grad, at_max = minus_max_at(x, 1, out)
    if loss is not None:
        z_y, wz = _before_exp(grad, t, keep, w, eps)
    # At the target, p_y - 1 cancels when p_y ~ 1 (a confident right answer): use -(sum of the other p_j).
    sums = _row_sums(np.exp(grad, out=grad), t, keep, at_max)  # grad: e with e_y zeroed
    s = sums.others + sums.e_y
    if loss is not None:
        loss[...] = _from_log_sum(_log_sum(sums), z_y, wz, keep, w_t, w, eps, n_classes)
    # d/dx_j = a (p_j - [j = y]) + b (p_j * sum_c w_c - w_j); the target's entry is set last
    if b is None:
        grad *= np.expand_dims(a / s, 1)
        add_at_target(grad, t, keep, np.where(keep, -a * (sums.others / s), 0.0), 1)  # a (p_y - 1)
        return _zero_ignored(grad, keep)
    w_sum = float(n_classes) if w is None else w.sum()
    grad *= np.expand_dims((a + b * w_sum) / s, 1)
    grad -= np.expand_dims(b, 1) * (1.0 if w is None else _class_view(w, x.ndim))
    # The smoothing term b (W p_j - w_j) (W = sum_c w_c) cancels, beyond its zero, where p_j ~ 1 and the other
    # classes weigh ~0: there (p_j >= 1/2, only the max) it is b (sum_{c != j} w_c - W (1 - p_j)).
    put_at_target(grad, t, keep, -a * (sums.others / s) + b * (w_sum * (sums.e_y / s) - w_t), 1)
    if at_max is not None:
        w_others = np.full(n_classes, n_classes - 1.0) if w is None else _sum_of_others(w[np.newaxis])[0]
        not_p_max = sums.beside_max / s
        top = np.where(sums.y_is_max, -a * not_p_max, a / s) + b * (
            w_others[np.squeeze(at_max, 1)] - w_sum * not_p_max
        )
        plain = np.squeeze(np.take_along_axis(grad, at_max, axis=1), 1)
        np.put_along_axis(grad, at_max, np.expand_dims(np.where(not_p_max <= 0.5, top, plain), 1), axis=1)
    return _zero_ignored(grad, keep)


def _zero_ignored(grad: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """An ignored element's gradient is 0 whatever its logits, since its loss does not depend on them (the formula's
    0 times p would be NaN in a row whose softmax is undefined: all -inf, or holding +inf or NaN)."""
    if not keep.all():
        np.copyto(grad, 0.0, where=~np.expand_dims(keep, 1))
    return grad


def cross_entropy_forward_backward(
    grad_output: ArrayLike | float,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(loss, grad_input, grad_target)``: :func:`cross_entropy` and :func:`cross_entropy_backward` in one call.

    A training step needs both, and both need e = exp(x - max(x)): the forward its row sums, the backward
    p = e / s. Float64 ``exp`` is the reference's dominant cost (NumPy's is scalar without AVX-512), so for
    class indices this exponentiates once where the two calls do it twice. Loss and gradient equal the two
    calls' bitwise (the same operations). Errors are the forward's, then the backward's, as for the two calls.
    Probability targets, an input without classes and a 0-d input take the two calls.

    >>> [a.tolist() for a in cross_entropy_forward_backward(1.0, np.zeros((1, 2)), np.array([0]))[:2]]
    [0.6931471805599453, [[-0.5, 0.5]]]
    """
    options = dict(
        weight=weight, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing
    )
    reduction = check_reduction(reduction)
    x = floating("input", input)
    ignore_index = check_ignore_index(ignore_index)
    if np.shape(target) == x.shape or x.ndim == 0 or not x.shape[class_dim_of(x.ndim)]:
        loss = cross_entropy(input, target, **options)
        return (loss, *cross_entropy_backward(grad_output, input, target, **options))
    t, keep, w, eps = _index_target(x, target, weight, ignore_index, reduction, label_smoothing)
    _index_target(x, target, weight, ignore_index, reduction, label_smoothing, backward=True)
    w_t = target_weights(w, t, keep)
    g = reduce_backward(grad_output, reduction, t.shape, w_t.sum())
    xs, ts, keeps, w_ts, gs = (_rows(a, x.ndim) for a in (x, t, keep, w_t, np.broadcast_to(g, t.shape)))
    grad, loss = np.empty(xs.shape), np.empty(ts.shape)

    def index_block(i):
        j = without(i, 1)
        _index_backward(gs[j], xs[i], ts[j], keeps[j], w, w_ts[j], eps, out=grad[i], loss=loss[j])

    with np.errstate(invalid="ignore"):
        map_blocks(index_block, xs.shape, whole_axis=1)
    return _reduce_index_loss(loss.reshape(t.shape), reduction, w_t), grad.reshape(x.shape), None


def cross_entropy_double_backward(
    grad_grad_input: ArrayLike,
    grad_output: ArrayLike | float,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    r"""Double backward of :func:`cross_entropy`: ``(grad_grad_output, grad2_input, grad2_target)``.

    The derivatives of phi = <grad_input, v>, v = grad_grad_input, with grad_input as
    :func:`cross_entropy_backward` computes it. Per element that is ``s p - u``, p = softmax(x), with a scalar s
    and a vector u that do not depend on x (g' is grad_output, / D for 'mean'):

    * probability targets: s = g' S and u = g' wq, where wq = w * ((1 - eps) q + eps / C) and S = sum_c wq_c;
    * class indices: s = a + b W and u = a e_y + b w, where a = (1 - eps) w_y g', b = eps / C g' (both 0 where
      ignored) and W = sum_c w_c.

    softmax's Jacobian is diag(p) - p p^T, so

        d phi / d x   = s (diag(p) - p p^T) v = s p * (v - <p, v>)
        d phi / d g'  = <s p - u, v> / g'
                      = S <p, v> - <wq, v>                                    (probabilities)
                      = (1 - eps) w_y (<p, v> - v_y) + eps / C (W <p, v> - <w, v>)  (indices)
        d phi / d q_c = g' (1 - eps) w_c (<p, v> - v_c)                           (probabilities)

    and d phi / d g is d phi / d g' reduced like the loss (summed; / D for 'mean'; a zero weight over D = 0 is
    NaN, as in the backward). The class-index target is not differentiable (None). Every ``<p, v> - v_c`` is
    computed as ``<p, d> - d_c`` with d = v - v_m, m the row's argmax: in a confident row (p_m ~ 1) the sum
    <p, d> has no term of size v_m to cancel against, so its small result keeps its digits.

    Two equal logits, target 0, v = (1, 0): p = (1/2, 1/2), <p, v> = 1/2, so d phi / d x = p * (v - 1/2) and
    d phi / d g = <p, v> - v_0 = -1/2.

    >>> v, x, y = np.array([[1.0, 0.0]]), np.zeros((1, 2)), np.array([0])
    >>> ggo, grad2, _ = cross_entropy_double_backward(v, 1.0, x, y)
    >>> ggo.tolist(), grad2.tolist()
    (-0.5, [[0.25, -0.25]])
    """
    reduction = check_reduction(reduction)
    x = floating("input", input)
    ignore_index = check_ignore_index(ignore_index)
    if np.shape(target) == x.shape:
        q, w, eps = _probability_target(x, target, weight, ignore_index, label_smoothing)
        loss_shape = _loss_shape(x)
        denominator = int(np.prod(loss_shape)) if x.size else 0
        g = reduce_backward(grad_output, reduction, loss_shape, denominator)
        v = grad_grad_input_array(grad_grad_input, x.shape)
        if not x.size:  # the backward is empty whatever g and x: every derivative of phi is 0
            return reduce_grad_output(np.zeros(loss_shape), reduction), np.zeros(x.shape), np.zeros(x.shape)
        scale = reduce_scale(reduction, loss_shape, denominator)
        xs, qs, vs = (_rows(a, x.ndim) for a in (x, q, v))
        gs = _rows(np.broadcast_to(g, loss_shape), x.ndim)
        terms = np.empty(xs.shape[:1] + xs.shape[2:])
        grad2_input, grad2_target = np.empty(xs.shape), np.empty(xs.shape)

        def probability_block(i):
            j = without(i, 1)
            terms[j], grad2_input[i], grad2_target[i] = _probability_double_backward(
                gs[j], scale, xs[i], qs[i], vs[i], w, eps
            )

        with np.errstate(invalid="ignore"):  # inf * 0 = NaN, as in the backward
            map_blocks(probability_block, xs.shape, whole_axis=1)
        return (
            reduce_grad_output(terms.reshape(loss_shape), reduction),
            grad2_input.reshape(x.shape),
            grad2_target.reshape(x.shape),
        )

    t, keep, w, eps = _index_target(
        x, target, weight, ignore_index, reduction, label_smoothing, backward=True
    )
    w_t = target_weights(w, t, keep)
    g = reduce_backward(grad_output, reduction, t.shape, w_t.sum())
    v = grad_grad_input_array(grad_grad_input, x.shape)
    if not x.shape[class_dim_of(x.ndim)]:  # no classes: the backward is empty, whatever g
        return reduce_grad_output(np.zeros(t.shape), reduction), np.zeros(x.shape), None
    scale = reduce_scale(reduction, t.shape, w_t.sum())
    xs, vs, ts, keeps, w_ts, gs = (
        _rows(a, x.ndim) for a in (x, v, t, keep, w_t, np.broadcast_to(g, t.shape))
    )
    terms, grad2_input = np.empty(ts.shape), np.empty(xs.shape)

    def index_block(i):
        j = without(i, 1)
        terms[j] = _index_double_backward(
            gs[j], scale, xs[i], vs[i], ts[j], keeps[j], w, w_ts[j], eps, out=grad2_input[i]
        )

    with np.errstate(invalid="ignore"):
        map_blocks(index_block, xs.shape, whole_axis=1)
    return reduce_grad_output(terms.reshape(t.shape), reduction), grad2_input.reshape(x.shape), None


def _minus_pivot(v, x):
    """``v - v_m`` along axis 1, m = argmax_c x_c: the class of the largest p (p_m ~ 1 in a confident row)."""
    m = np.expand_dims(np.argmax(x, axis=1), 1)
    return v - np.take_along_axis(v, m, axis=1)


def _probability_double_backward(g, scale, x, q, v, w, eps):
    """``(terms of grad_grad_output, grad2_input, grad2_target)`` of one block; g has the block's loss shape."""
    g = np.expand_dims(g, 1)
    p = softmax(x, 1)
    w_c = 1.0 if w is None else _class_view(w, x.ndim)
    wq = _smoothed(q, eps) * w_c
    wq_sum = wq.sum(axis=1, keepdims=True)  # S
    d = _minus_pivot(v, x)
    pd = (p * d).sum(axis=1, keepdims=True)  # <p, v> - v_m
    # d phi / d g' = S <p, v> - <wq, v> = S <p, d> - <wq, d>
    terms = scale * (wq_sum * pd - (wq * d).sum(axis=1, keepdims=True))
    d -= pd  # v - <p, v>
    # d phi / d x = g' S p * (v - <p, v>);  d phi / d q = -g' (1 - eps) w * (v - <p, v>)
    grad2_input = p * d * (g * wq_sum)
    grad2_target = d * (-(1.0 - eps) * g * w_c)
    return terms[:, 0], grad2_input, grad2_target


def _index_double_backward(g, scale, x, v, t, keep, w, w_t, eps, out):
    """grad2_input of one block, written into ``out`` (a view of the whole); returns the block's terms of
    grad_grad_output. g has the block's loss shape."""
    n_classes = x.shape[1]
    # the backward's coefficients of its nll and smoothing terms (0 where ignored), as in _index_backward
    a = np.where(keep, (1.0 - eps) * w_t * g, 0.0)
    b = np.where(keep, (eps / n_classes) * g, 0.0) if eps > 0 else None
    p = softmax(x, 1, out=out)
    d = _minus_pivot(v, x)
    pd = (p * d).sum(axis=1)  # <p, v> - v_m
    # d phi / d g' per element, times d g' / d g = scale
    terms = (1.0 - eps) * w_t * scale * (pd - pick(d, t, keep, 1))  # (1 - eps) w_y (<p, v> - v_y)
    s = a
    if b is not None:
        w_sum = float(n_classes) if w is None else w.sum()
        wd = (d if w is None else d * _class_view(w, d.ndim)).sum(axis=1)  # <w, v> - W v_m
        terms += (eps / n_classes) * scale * (w_sum * pd - wd)  # eps / C (W <p, v> - <w, v>)
        s = a + b * w_sum
    # d phi / d x = s p * (v - <p, v>), v - <p, v> = d - <p, d>
    d -= np.expand_dims(pd, 1)
    out *= d
    out *= np.expand_dims(s, 1)
    _zero_ignored(out, keep)
    # an ignored element's gradient is 0 whatever g (its a and b are), so is its term
    return np.where(keep, terms, 0.0)
