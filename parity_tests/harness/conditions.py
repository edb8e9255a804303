"""The conditions that make torch deviate, computed from a case's inputs and options (deviations.toml names them).

A deviation is selected by what causes it (a float16 running sum past 65504, label smoothing over many classes, a
formula that cancels), not by the grid's shapes: the same torch error is then explained wherever it shows, in the
grid, in the fuzz and on a user's own shapes.

Two kinds of function:

* CONDITIONS: case data -> bool, whether the cause is present.
* TERMS: (case data, stage) -> the magnitude of the terms torch's formula combines for that stage, elementwise
  (the stage's shape) or reduced like the stage. Where torch's formula is a difference of such terms and a better
  one exists (the reference uses it), torch's error is eps times the terms, not eps times the result: a `terms`
  deviation explains exactly that much (each element judged at its own terms), and nothing more.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from parity_tests.harness.cases import CaseData
from parity_tests.harness.dtypes import max_finite
from parity_tests.harness.oracle import truth

FLOAT16_SMALLEST_NORMAL = 2.0**-14


def _class_dim(x: np.ndarray) -> int:
    return 0 if x.ndim == 1 else 1


def _kept_weights(data: CaseData) -> np.ndarray:
    """w[y] over the class-index targets, 0 where ignored (the terms of the 'mean' denominator)."""
    x, t = data.arrays["input"], data.arrays["target"]
    kept = t != data.keywords.get("ignore_index", -100)
    weight = data.arrays.get("weight", np.ones(x.shape[_class_dim(x)]))
    return np.where(kept, weight[np.where(kept, t, 0)], 0.0) if weight.size else np.zeros(t.shape)


def _index_target(data: CaseData) -> bool:
    return data.arrays["target"].dtype.kind in "iu"


def float16_total_weight_overflows(data: CaseData) -> bool:
    """The 'mean' denominator (the summed weight of the kept targets) is beyond float16's range."""
    return _index_target(data) and float(_kept_weights(data).sum()) > max_finite("float16")


def float16_loss_sum_overflows(data: CaseData) -> bool:
    """The per-target losses add up beyond float16's range (a float16 running sum overflows)."""
    arrays = data.arrays
    extras = {k: arrays[k] for k in ("weight",) if k in arrays}
    keywords = {**data.keywords, "reduction": "none"}
    with np.errstate(all="ignore"):
        losses = getattr(truth, data.case.loss)(arrays["input"], arrays["target"], **extras, **keywords)
    return float(np.nansum(np.abs(losses))) > max_finite("float16")


def float16_smoothing_sum_overflows(data: CaseData) -> bool:
    """cross_entropy's label-smoothing term sum_c w_c |log p_c| exceeds float16's range for some element, or summed
    over the elements for 'mean' and 'sum'."""
    if data.keywords.get("label_smoothing", 0.0) <= 0:
        return False
    x = data.arrays["input"]
    dim = _class_dim(x)
    weight = data.arrays.get("weight", np.ones(x.shape[dim]))
    with np.errstate(all="ignore"):
        smooth = (np.abs(truth.log_softmax(x, dim)) * weight.reshape((-1,) + (1,) * (x.ndim - dim - 1))).sum(
            dim
        )
    if _index_target(data):
        smooth = np.where(data.arrays["target"] != data.keywords.get("ignore_index", -100), smooth, 0.0)
    top = max_finite("float16")
    reduced = data.keywords.get("reduction", "mean") != "none"
    return bool(np.nanmax(smooth, initial=0.0) > top or (reduced and np.nansum(smooth) > top))


def gradient_sums_over_classes(data: CaseData) -> bool:
    """cross_entropy's input gradient p_j sum_c w_c q_c - w_j q_j sums over the classes: label smoothing or
    probability targets."""
    return data.keywords.get("label_smoothing", 0.0) > 0 or not _index_target(data)


def ignored_row_without_a_softmax(data: CaseData) -> bool:
    """A class-index target that is ignored, in a row whose softmax is undefined (all -inf, or holding +inf or
    NaN): the loss does not depend on that row, so its gradient is 0."""
    x = data.arrays["input"]
    if not _index_target(data) or not x.size or not x.shape[_class_dim(x)]:
        return False
    dim = _class_dim(x)
    ignored = data.arrays["target"] == data.keywords.get("ignore_index", -100)
    with np.errstate(invalid="ignore"):
        undefined = ~np.isfinite(x.max(axis=dim)) | np.isnan(x).any(axis=dim)
    return bool((ignored & undefined).any())


def probability_near_edges(data: CaseData) -> bool:
    """A BCE probability where x (1 - x) is below float16's smallest normal number (0 and 1 included)."""
    x = data.arrays["input"]
    return bool(x.size and (x * (1.0 - x)).min() < FLOAT16_SMALLEST_NORMAL)


def subnormal_probability(data: CaseData) -> bool:
    """A BCE probability in the dtype's subnormal range."""
    import torch

    from parity_tests.harness.dtypes import TORCH_DTYPES

    x = data.arrays["input"]
    tiny = torch.finfo(TORCH_DTYPES[data.case.dtype]).tiny
    return bool(((x > 0) & (x < tiny)).any())


def unbatched_mean_over_nothing(data: CaseData) -> bool:
    """A 1-D input whose one target is ignored (or weighs 0): a 'mean' over nothing."""
    return data.arrays["input"].ndim == 1 and _index_target(data) and not _kept_weights(data).any()


# float32's exp overflows past ln(max) and leaves its normal range below ln(tiny)
_EXP_OVERFLOWS, _EXP_UNDERFLOWS = (
    float(np.log(np.finfo(np.float32).max)),
    float(np.log(np.finfo(np.float32).tiny)),
)


def _vector_lanes() -> int:
    """float lanes of torch's CPU kernels here: 16 with AVX-512 dispatch, 8 with AVX2 or the scalar build."""
    import torch

    return 16 if torch.backends.cpu.get_cpu_capability().upper().startswith("AVX512") else 8


def log_softmax_borrows_a_lanes_max(data: CaseData) -> bool:
    """torch < 2.8's float16/bfloat16 CPU log_softmax along a dimension that is not the last one stores each vector
    block's first half's running maximum for its second half too (pytorch/pytorch#156379): a position j in the second
    half subtracts the maximum of position j - F, harmless unless exp then overflows or underflows in float32. True
    where some such position's own maximum minus the borrowed one is past those limits."""
    x = data.arrays["input"]
    if x.ndim < 3 or x.size == 0:
        return False
    lanes = _vector_lanes()
    block = 2 * lanes
    classes = x.shape[1]
    rows = x.reshape(x.shape[0], classes, -1)
    inner = rows.shape[2]
    # the kernel walks the inner dimension in chunks of whole blocks; a chunk's tail shorter than a block is scalar
    chunk = min(max(128 * 1024 // max(classes, 1) // 2, block) // block * block, inner)
    positions = [
        begin + o
        for begin in range(0, inner, chunk)
        for o in range(min(chunk, inner - begin) // block * block)
        if o % block >= lanes
    ]
    if not positions:
        return False
    with np.errstate(invalid="ignore"):
        top = rows.max(axis=1)
        borrowed = top[:, positions] - top[:, [p - lanes for p in positions]]
    return bool(((borrowed > _EXP_OVERFLOWS) | (borrowed < _EXP_UNDERFLOWS)).any())


CONDITIONS: dict[str, Callable[[CaseData], bool]] = {
    f.__name__: f
    for f in (
        float16_total_weight_overflows,
        float16_loss_sum_overflows,
        log_softmax_borrows_a_lanes_max,
        float16_smoothing_sum_overflows,
        gradient_sums_over_classes,
        ignored_row_without_a_softmax,
        probability_near_edges,
        subnormal_probability,
        unbatched_mean_over_nothing,
    )
}


# --- terms -----------------------------------------------------------------------------------------------------


def _broadcast(data: CaseData, name: str) -> np.ndarray:
    return np.broadcast_to(data.arrays.get(name, np.ones(())), data.arrays["input"].shape)


def _reduced(
    terms: np.ndarray, data: CaseData, grad: bool, denominator: float | None = None
) -> np.ndarray | float:
    """Elementwise terms of a per-element loss, as the stage has them: for a gradient times |grad_output| (and
    divided by the 'mean' denominator), for a reduced loss summed like the loss."""
    reduction = data.keywords.get("reduction", "mean")
    n = terms.size if denominator is None else denominator
    if grad:
        g = np.abs(data.arrays["grad_output"])
        g = g if reduction == "none" else g / (n if reduction == "mean" else 1.0)
        return terms * (
            np.expand_dims(g, _class_dim(data.arrays["input"])) if terms.ndim > np.ndim(g) > 0 else g
        )
    if reduction == "none":
        return terms
    total = float(np.nansum(terms))
    return total / n if reduction == "mean" else total


def bce_with_logits_terms(data: CaseData, stage: str) -> np.ndarray | float:
    """torch's binary_cross_entropy_with_logits, as of torch 2.3: loss (1 - y) x - (1 + (p - 1) y) log sigma(x);
    input gradient (p y + 1 - y) sigma(x) - p y; target gradient log sigma(-x) - p log sigma(x): each a difference
    of the two terms whose magnitudes this returns (times |w|, and grad_output for the gradients)."""
    x, y = data.arrays["input"], data.arrays["target"]
    w, p = np.abs(_broadcast(data, "weight")), _broadcast(data, "pos_weight")
    with np.errstate(all="ignore"):
        log_sig, log_sig_neg = -np.logaddexp(0.0, -x), -np.logaddexp(0.0, x)
        if stage == "loss":
            terms = np.abs((1 - y) * x) + np.abs((1 + (p - 1) * y) * log_sig)
        elif stage == "grad_input":
            sig = np.exp(log_sig)
            terms = np.abs((p * y + 1 - y) * sig) + np.abs(p * y)
        else:
            terms = np.abs(log_sig_neg) + np.abs(p * log_sig)
    return _reduced(w * terms, data, grad=stage != "loss")


def cross_entropy_log_softmax_terms(data: CaseData, stage: str) -> np.ndarray | float:
    """torch's log_softmax takes -log p_c as log(sum_c' exp(z_c')) - z_c with z = x - max x: the log of a sum of at
    least 1 carries an absolute error of about eps, and z_c is as large as the logits' spread: per class the terms
    are |z_c| + log sum + 1. The loss weighs them as it weighs -log p (w_y for the target, eps/C over every class
    with smoothing, w_c q_c with probability targets), reduced like the loss; the target's gradient
    -(1 - eps) w_c log p_c g (probability targets) weighs them elementwise."""
    x = data.arrays["input"]
    dim = _class_dim(x)
    n_classes = x.shape[dim]
    weight = data.arrays.get("weight", np.ones(n_classes))
    view = weight.reshape((-1,) + (1,) * (x.ndim - dim - 1))
    with np.errstate(all="ignore"):
        z = x - x.max(axis=dim, keepdims=True) if x.size and n_classes else x
        log_sum = np.log(np.exp(z).sum(axis=dim, keepdims=True))
    per_class = np.abs(z) + log_sum + 1.0
    smoothing = max(data.keywords.get("label_smoothing", 0.0), 0.0)
    if stage == "grad_target":  # probability targets only: the target is differentiable there alone
        g = np.abs(data.arrays["grad_output"])
        reduction = data.keywords.get("reduction", "mean")
        g = (
            np.expand_dims(g, dim)
            if reduction == "none"
            else g / (x.size / n_classes if reduction == "mean" else 1)
        )
        return (1 - smoothing) * np.abs(view) * per_class * g
    if _index_target(data):
        t = data.arrays["target"]
        kept = t != data.keywords.get("ignore_index", -100)
        picked = np.take_along_axis(per_class, np.expand_dims(np.where(kept, t, 0), dim), dim).squeeze(dim)
        w_t = _kept_weights(data)
        terms = (1 - smoothing) * w_t * picked
        if smoothing and n_classes:
            terms = terms + np.where(kept, smoothing / n_classes * (per_class * view).sum(dim), 0.0)
        denominator = float(w_t.sum())
    else:
        q = np.abs(data.arrays["target"]) * (1 - smoothing) + (smoothing / n_classes if n_classes else 0.0)
        terms = (q * view * per_class).sum(dim)
        denominator = float(terms.size)
    return _reduced(terms, data, grad=False, denominator=denominator)


TERMS: dict[str, Callable[[CaseData, str], np.ndarray | float]] = {
    f.__name__: f for f in (bce_with_logits_terms, cross_entropy_log_softmax_terms)
}
