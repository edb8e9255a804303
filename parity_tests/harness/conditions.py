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
from parity_tests.harness.dtypes import eps, max_finite
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
    weight = np.abs(
        data.arrays.get("weight", np.ones(x.shape[dim]))
    )  # of one sign: negative ones overflow too
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


def zero_gradient_divides_zero_by_zero(data: CaseData) -> bool:
    """Class-index targets whose backward is 0 whatever grad_output (its derivative in grad_output is 0), where
    torch's derivative of it divides 0 by 0: a 'mean' over no kept target (every one ignored, or none at all), or
    label smoothing's eps / C over no class."""
    if not _index_target(data):
        return False
    x = data.arrays["input"]
    if x.shape[_class_dim(x)] == 0 and data.keywords.get("label_smoothing", 0.0) > 0:
        return True
    nothing_kept = not (data.arrays["target"] != data.keywords.get("ignore_index", -100)).any()
    return data.keywords.get("reduction", "mean") == "mean" and nothing_kept


def probability_squared_near_edges(data: CaseData) -> bool:
    """A BCE probability where (x (1 - x))^2, the double backward's denominator, is below float16's smallest normal
    number: x (1 - x) below 2^-7 (0 and 1 included)."""
    x = data.arrays["input"]
    return bool(x.size and (x * (1.0 - x)).min() < FLOAT16_SMALLEST_NORMAL**0.5)


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
        probability_squared_near_edges,
        subnormal_probability,
        unbatched_mean_over_nothing,
        zero_gradient_divides_zero_by_zero,
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
    if reduction != "mean":
        return total
    with np.errstate(divide="ignore", invalid="ignore"):  # a mean over nothing: NaN or inf, as the stage has
        return float(np.divide(total, n))


def bce_with_logits_terms(data: CaseData, stage: str) -> np.ndarray | float:
    """torch's binary_cross_entropy_with_logits, as of torch 2.3: loss (1 - y) x - (1 + (p - 1) y) log sigma(x);
    input gradient (p y + 1 - y) sigma(x) - p y; target gradient log sigma(-x) - p log sigma(x): each a difference
    of the two terms whose magnitudes this returns (times |w|, and grad_output for the gradients). grad_grad_output
    is the input gradient's formula at a unit grad_output times grad_grad_input, reduced like the loss. grad2_input
    is (p y + 1 - y) sigma'(x) times g w v, sigma' taken as (1 - sigma) sigma: 1 - sigma is a difference of 1 and
    sigma, so the terms are sigma (1 + sigma); and where torch's sigma underflows to 0 (below), the value itself."""
    x, y = data.arrays["input"], data.arrays["target"]
    w, p = np.abs(_broadcast(data, "weight")), _broadcast(data, "pos_weight")
    with np.errstate(all="ignore"):
        log_sig, log_sig_neg = -np.logaddexp(0.0, -x), -np.logaddexp(0.0, x)
        sig = np.exp(log_sig)
        if stage == "loss":
            terms = np.abs((1 - y) * x) + np.abs((1 + (p - 1) * y) * log_sig)
        elif stage in ("grad_input", "grad_grad_output"):
            terms = np.abs((p * y + 1 - y) * sig) + np.abs(p * y)
        elif stage == "grad2_input":
            terms = np.abs(p * y + 1 - y) * sig * (1 + sig)
            # sigma = 1 / (1 + exp(-x)) is 0 where exp(-x) overflows (x below -log of the largest float32, in
            # which the reduced dtypes compute, or float64), while the true curvature is a subnormal number there:
            # all of it is lost (judged at the value itself)
            lowest = -np.log(max_finite("float64" if data.case.dtype == "float64" else "float32"))
            lost = np.abs(p * y + 1 - y) * sig * np.exp(log_sig_neg) / eps(data.case.dtype)
            terms = np.where(x < lowest, terms + lost, terms)
        else:
            terms = np.abs(log_sig_neg) + np.abs(p * log_sig)
    if (
        stage == "grad_grad_output"
    ):  # d/dg of g w (...): the unit gradient's terms times |v|, reduced like the loss
        return _reduced(w * terms * np.abs(data.arrays["grad_grad_input"]), data, grad=False)
    if stage == "grad2_input":
        terms = terms * np.abs(data.arrays["grad_grad_input"])
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
    weight = np.abs(
        data.arrays.get("weight", np.ones(n_classes))
    )  # magnitudes: the fuzz draws negative weights
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
        terms = (1 - smoothing) * np.abs(w_t) * picked
        if smoothing and n_classes:
            terms = terms + np.where(kept, smoothing / n_classes * (per_class * view).sum(dim), 0.0)
        denominator = abs(float(w_t.sum()))
    else:
        q = np.abs(data.arrays["target"]) * (1 - smoothing) + (smoothing / n_classes if n_classes else 0.0)
        terms = (q * view * per_class).sum(dim)
        denominator = float(terms.size)
    return _reduced(terms, data, grad=False, denominator=denominator)


def cross_entropy_double_backward_terms(data: CaseData, stage: str) -> np.ndarray | float:
    """torch's double backward of cross_entropy goes through log_softmax's: per element, with p = softmax(x),
    v = grad_grad_input and the backward s p - u (s, u as in the reference's docstring, per unit grad_output),
    grad2_input = g' s (p v - p <p, v>), grad_grad_output = scale (s <p, v> - <u, v>) reduced like the loss, and
    grad2_target = g' (1 - eps) w (<p, v> - v): differences of terms of size |v|. Each result is small where v is
    nearly constant over the classes p weighs, above all in a confident row (p_m ~ 1, results about (1 - p_m) |v|),
    and keeps only the digits those terms leave; the reference subtracts the pivot v_m (m the row's argmax) first,
    exactly, and keeps them all. Moreover torch takes p_c as exp(log_softmax(x)_c): the log-probability's rounding
    (eps |log p_c|, and up to C eps from its log of a sum of C exponentials, summed one by one along a strided class
    dimension) is a relative error of p_c, which shows where the results are as tiny as 1 - p_m or as the unlikely
    classes' p_c (the reference's softmax has no log), and p_c is 0 where exp underflows while the true value is a
    subnormal number. With P = p (1 + C + |log p|) (p / eps where it underflows), the terms, elementwise:
    g' s P (|v| + <P, |v|>); scale (s <P, |v|> + <|u|, |v|>); g' (1 - eps) w (<P, |v|> + |v|)."""
    x, v = data.arrays["input"], data.arrays["grad_grad_input"]
    dim = _class_dim(x)
    n_classes = x.shape[dim] if x.ndim else 0
    if not x.size:
        return np.zeros(x.shape) if stage != "grad_grad_output" else 0.0
    view = (-1,) + (1,) * (x.ndim - dim - 1)
    weight = np.abs(data.arrays.get("weight", np.ones(n_classes))).reshape(view)
    smoothing = max(data.keywords.get("label_smoothing", 0.0), 0.0)
    reduction = data.keywords.get("reduction", "mean")
    with np.errstate(all="ignore"):
        p = truth.softmax(x, dim)
        # where exp underflows (p below the smallest normal number of float32, in which the reduced dtypes
        # compute, or of float64) torch's p is 0 and the value is lost: the terms are the value itself
        normal = np.finfo(np.float64 if data.case.dtype == "float64" else np.float32).tiny
        lost = np.where(p < normal, p / eps(data.case.dtype), 0.0)
        # P: p with its exponent's rounding (|log p| and the log-sum's C) and underflow
        p = np.where(p > 0, p * (1 + n_classes + np.abs(truth.log_softmax(x, dim))), 0.0) + lost
        p_v = np.expand_dims((p * np.abs(v)).sum(axis=dim), dim)  # <P, |v|>
        if _index_target(data):
            t = data.arrays["target"]
            kept = np.expand_dims(t != data.keywords.get("ignore_index", -100), dim)
            onehot = np.arange(n_classes).reshape(view) == np.expand_dims(t, dim)
            u = kept * weight * ((1 - smoothing) * onehot + smoothing / n_classes)
            denominator = float(np.abs(_kept_weights(data)).sum())
        else:
            u = weight * (np.abs(data.arrays["target"]) * (1 - smoothing) + smoothing / n_classes)
            denominator = x.size / n_classes
        s = u.sum(axis=dim, keepdims=True)
        scale = np.divide(1.0, denominator) if reduction == "mean" else 1.0
        g = np.abs(data.arrays["grad_output"]) * scale
        g = np.expand_dims(g, dim) if np.ndim(g) else g
        if stage == "grad2_input":
            terms = g * s * p * (np.abs(v) + p_v)
        elif stage == "grad2_target":
            terms = g * (1 - smoothing) * weight * (p_v + np.abs(v))
        else:
            terms = scale * (s * p_v + u * np.abs(v)).sum(axis=dim, keepdims=True)
            terms = terms.squeeze(dim)
            return terms if reduction == "none" else float(np.nansum(terms))
    return terms


# torch's BCE double backward (FunctionsManual.cpp) offsets its denominators by the double 1e-12.
BCE_DOUBLE_BACKWARD_OFFSET = 1e-12


def bce_double_backward_terms(data: CaseData, stage: str) -> np.ndarray | float:
    """Not a cancellation: torch's double backward of binary_cross_entropy is another formula than the derivative
    of its backward g w (x - y) / max(x (1 - x), EPS). It divides grad2_input's (x - y)^2 + y (1 - y) by
    (x + 1e-12)^2 (1 - x + 1e-12)^2 and grad_grad_output's w v (x - y) by (x + 1e-12)(1 - x + 1e-12), and floors
    grad2_target's x (1 - x) at the double 1e-12 (the backward's floor is float32's); and its numerator
    x^2 - 2xy + y is a difference of terms where x is near y. This returns, elementwise (grad_grad_output reduced
    like the loss), |torch's formula - the truth| / eps(dtype), both in float64, plus the numerator's terms: each
    element judged at it is judged at the error of torch's formula itself (eps times the returned magnitude), and
    the entry explains torch's value exactly as far as that formula is off, nothing more."""
    arrays = data.arrays
    x, y, v = arrays["input"], arrays["target"], arrays["grad_grad_input"]
    extras = {k: arrays[k] for k in ("weight",) if k in arrays}
    w = _broadcast(data, "weight")
    reduction = data.keywords.get("reduction", "mean")
    n = x.size if reduction == "mean" and x.size else 1  # the mean's numel
    d = BCE_DOUBLE_BACKWARD_OFFSET
    double_backward = truth.binary_cross_entropy_double_backward
    cancels = 0.0
    with np.errstate(all="ignore"):
        if (
            stage == "grad_grad_output"
        ):  # per element (the truth's at a unit grad_output), before the reduction
            model = w * v * (x - y) / ((x + d) * (1 - x + d)) / n
            found = double_backward(v, np.ones(x.shape), x, y, **extras, reduction="none")[0] / n
        else:
            g = arrays["grad_output"] / n
            if stage == "grad2_input":
                denominator = (x + d) ** 2 * (1 - x + d) ** 2
                model = g * w * v * (x * x - 2 * x * y + y) / denominator
                # its numerator x^2 - 2xy + y cancels where x is near a target of 0 or 1 (the reference adds
                # (x - y)^2 and y (1 - y), of one sign): torch's rounding there is eps times these terms
                cancels = np.abs(g * w * v) * (x * x + np.abs(2 * x * y) + np.abs(y)) / denominator
            else:
                model = -g * w * v / np.maximum(x * (1 - x), d)
            index = 1 if stage == "grad2_input" else 2
            found = double_backward(v, arrays["grad_output"], x, y, **extras, reduction=reduction)[index]
        difference = np.abs(model - found) / eps(data.case.dtype) + cancels
    difference = np.where(np.isfinite(difference), difference, 0.0)
    if stage == "grad_grad_output" and reduction != "none":
        return float(difference.sum())
    return difference


TERMS: dict[str, Callable[[CaseData, str], np.ndarray | float]] = {
    f.__name__: f
    for f in (
        bce_with_logits_terms,
        cross_entropy_log_softmax_terms,
        cross_entropy_double_backward_terms,
        bce_double_backward_terms,
    )
}
