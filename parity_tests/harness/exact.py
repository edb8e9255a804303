"""The four losses and their gradients in arbitrary precision: the truth that the reference is proven against.

Each function takes the reference's backward signature, ``(grad_output, input, target, **options)`` with
float64 arrays (their values convert to mpmath exactly), and returns an :class:`Exact`: the loss, grad_input and
grad_target (None where torch does not differentiate the target) as float64 arrays rounded to nearest from
values known to at least ``DIGITS`` significant digits, and those values as mpf.

The formulas are the textbook ones, written without the reference's algebra: ``p_c = exp(x_c) / sum_j exp(x_j)``
with no max subtracted, ``log p_c = x_c - log sum_j exp(x_j)``, ``sigma(x) = 1 / (1 + exp(-x))`` and
``log(1 - sigma(x))`` as written, each derivative term by term. Their cancellations (``p_y - 1`` of a
confident row, ``1 - sigma(700)``, the two terms of a target outside [0, 1]) are what the reference has to
avoid; here they are paid for with precision. Every formula runs in interval arithmetic (``mpmath.iv``), whose
results enclose the true value, at 256, 512, 1024, ... bits until every enclosure is narrower than
``10**-DIGITS`` of its value, or, for a true zero, than float64's smallest subnormal: a cancellation shows as a
wide enclosure and buys more bits, so a result is proven rather than merely stable between two precisions.

torch's conventions, which the reference mirrors (docs/torch-semantics.md):

* BCE clamps each log at -100 in the forward; its backward is ``(x - y) / max(x (1 - x), 1e-12)`` with torch's
  float32 1e-12 (the textbook ``-y/x + (1 - y)/(1 - x)`` where the floor does not act) and its target gradient
  ``-(log x - log(1 - x))`` is unclamped: +-inf at x in {0, 1} (NaN where grad_output * weight is 0).
* 'mean' divides by the sum of ``w[y]`` over the kept targets (their count without weights) for class indices,
  by numel / C for probability targets, by numel for the binary losses. A mean over nothing is NaN, and so is
  every gradient entry that depends on its denominator (a kept target's; an ignored one's is 0).
* ``ignore_index`` (also inside [0, C)) drops a target from the loss, the gradient and the mean.
* Label smoothing eps replaces the target distribution by ``(1 - eps) q + eps / C`` (q one-hot for class
  indices); class weights multiply class c's term of ``-sum_c w_c q_c log p_c``; BCE's weight multiplies each
  element; pos_weight multiplies the positive term, ``-(p y log sigma(x) + (1 - y) log(1 - sigma(x)))``.
* Unbatched inputs (C,) with a 0-d target, K-dim inputs (N, C, d1, ..., dk) with classes along dim 1.

mpmath is slow (pure Python here: ~25 us per 256-bit exp, more for wider ones): keep the arrays small.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from mpmath import iv, libmp, mp

DIGITS = 50  # significant digits every returned value is known to
START_BITS = 256  # enough for the element formulas' DIGITS + 5 digits when nothing cancels
MAX_BITS = 1 << 15
LOG_CLAMP = -100  # BCE's forward: max(log x, -100)
GRAD_FLOOR = float(np.float32(1e-12))  # BCE's backward: max(x (1 - x), 1e-12), the float32 constant
_TINY_EXPONENT = -1100  # a true zero is enclosed within 2**-1100: far below float64's smallest, 2**-1074
NAN = float("nan")  # the value of a mean over nothing (not an interval)

Value = Any  # an mpmath interval, the int 0 (a structural zero: no formula, stays 0 whatever multiplies it), or NAN


class Undecided(ArithmeticError):
    """A comparison (BCE's clamp or floor) that the enclosures cannot decide at this precision."""


@contextlib.contextmanager
def _bits(bits: int) -> Iterator[None]:
    saved = iv.prec
    iv.prec = bits
    try:
        yield
    finally:
        iv.prec = saved


def _ends(v: Any) -> tuple[Any, Any]:
    return mp.make_mpf(v._mpi_[0]), mp.make_mpf(v._mpi_[1])


def _bits_for(digits: int) -> int:
    return math.ceil(digits * math.log2(10)) + 1


def _known(v: Value, digits: int) -> bool:
    """Whether ``v`` is pinned down: an exact point (infinities included), a structural zero or NaN, an
    enclosure narrower than 10**-digits of its value, or one around 0 narrower than float64 can tell.
    (On the raw (sign, mantissa, exponent, bitcount) tuples: |x| < 2**(exponent + bitcount) <= 2 |x|.)"""
    if not isinstance(v, iv.mpf):
        return True
    lo, hi = v._mpi_
    if lo == hi:
        return True
    if not (lo[1] or lo == libmp.fzero) or not (hi[1] or hi == libmp.fzero):
        return False  # an infinite or NaN end
    width = libmp.mpf_sub(hi, lo, 32, libmp.round_up)
    magnitude = width[2] + width[3]
    if lo[1] and hi[1] and lo[0] == hi[0]:  # away from 0
        return magnitude <= min(lo[2] + lo[3], hi[2] + hi[3]) - 1 - _bits_for(digits)
    return magnitude <= _TINY_EXPONENT


def _converge(element: Callable[[], list[Value]], digits: int) -> list[Value]:
    """``element()``'s values, evaluated at more and more bits until every one is known to ``digits``."""
    bits = START_BITS
    while bits <= MAX_BITS:
        with _bits(bits):
            try:
                values = element()
            except Undecided:
                values = None
        if values is not None and all(_known(v, digits) for v in values):
            return values
        bits *= 2
    raise ArithmeticError(f"no enclosure to {digits} digits within {MAX_BITS} bits")


_cache: dict[tuple, list[Value]] = {}


def _solve(
    keys: Sequence[tuple], elements: Sequence[Callable[[], list[Value]] | None], finish: Callable
) -> dict[str, np.ndarray | None]:
    """Converge every element (a row's or an element's local values; None: a structural zero, e.g. an ignored
    target), then ``finish`` them (reduction, grad_output) into object arrays of values; if the finish cancels
    beyond DIGITS, the elements are refined further. Elements are cached by key: the three reductions of one
    input share them."""
    digits = DIGITS
    while digits <= 16 * DIGITS:
        parts = []
        for key, element in zip(keys, elements, strict=True):
            if element is None:
                parts.append(None)
                continue
            cache_key = (*key, digits)
            if cache_key not in _cache:
                _cache[cache_key] = _converge(element, digits + 5)
            parts.append(_cache[cache_key])
        with _bits(4 * START_BITS + 4 * digits):
            out = finish(parts)
        if all(_known(v, digits) for a in out.values() if a is not None for v in a.flat):
            return out
        digits *= 2
    raise ArithmeticError("the reduction cancels beyond reach")


def _scaled(c: Value, d: Value) -> Value:
    """``c * d`` where c is grad_output's factor (NAN for a mean over nothing) and d a local derivative: a
    structural zero stays 0, an infinite d times 0 is NaN (as in IEEE arithmetic, and in torch)."""
    if isinstance(d, int):
        return d
    if not isinstance(c, iv.mpf) or not isinstance(d, iv.mpf):
        return NAN
    lo, hi = d._mpi_
    if lo == hi and lo in (libmp.finf, libmp.fninf):
        if c._mpi_ == (libmp.fzero, libmp.fzero):
            return NAN
        return d if c > 0 else -d  # c is grad_output times a weight, exact and nonzero here
    return c * d


@dataclass(frozen=True)
class Exact:
    loss: np.ndarray
    grad_input: np.ndarray
    grad_target: np.ndarray | None
    mp: dict[str, np.ndarray | None]  # the same stages as object arrays of mpf (midpoints of the enclosures)
    residual: dict[str, np.ndarray | None]  # exact - float64 value, rounded to float64 (0 where not finite)

    def error(self, stage: str, values: np.ndarray) -> np.ndarray:
        """``|values - exact|`` elementwise, in float64: ``(values - rounded) - residual``, where the first
        difference is exact for nearby values (Sterbenz) and the residual is below half an ulp of the value."""
        rounded = getattr(self, stage)
        with np.errstate(invalid="ignore"):
            return np.abs((np.asarray(values, dtype=np.float64) - rounded) - self.residual[stage])


def _float_of(raw: tuple) -> float:
    """The float64 nearest to a raw mpf (subnormals rounded once, on their own grid)."""
    if raw[1] and raw[2] + raw[3] <= -1022:
        scaled = libmp.mpf_shift(raw, 1074)
        return math.ldexp(int(libmp.to_int(scaled, libmp.round_nearest)), -1074)
    return libmp.to_float(raw, rnd=libmp.round_nearest)


def _rounded(v: Value) -> tuple[Any, float, float]:
    """(the midpoint as mpf, the float64 nearest to it, the residual midpoint - float64)."""
    if isinstance(v, int):
        return mp.mpf(0), 0.0, 0.0
    if not isinstance(v, iv.mpf):
        return mp.mpf("nan"), NAN, 0.0
    lo, hi = v._mpi_
    mid = lo if lo == hi else libmp.mpf_shift(libmp.mpf_add(lo, hi), -1)  # exact
    f = _float_of(mid)
    if not math.isfinite(f):
        return mp.make_mpf(mid), f, 0.0
    return mp.make_mpf(mid), f, _float_of(libmp.mpf_sub(mid, libmp.from_float(f), 64))


def _result(out: dict[str, np.ndarray | None]) -> Exact:
    mids, floats, residuals = {}, {}, {}
    for stage, a in out.items():
        if a is None:
            mids[stage] = floats[stage] = residuals[stage] = None
            continue
        parts = [_rounded(v) for v in a.flat]
        mids[stage] = _objects([m for m, _, _ in parts], a.shape)
        floats[stage] = np.array([f for _, f, _ in parts], dtype=np.float64).reshape(a.shape)
        residuals[stage] = np.array([r for _, _, r in parts], dtype=np.float64).reshape(a.shape)
    return Exact(floats["loss"], floats["grad_input"], floats["grad_target"], mids, residuals)


def _objects(values: list, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(shape)


def _reduce(losses: list[Value], reduction: str, denominator: Value | int) -> np.ndarray | Value:
    """'none': the per-element losses; 'sum': their sum; 'mean': the sum over the denominator (NAN if 0)."""
    total = iv.fsum([v for v in losses if isinstance(v, iv.mpf)]) if losses else iv.mpf(0)
    if reduction == "sum":
        return total
    if _nothing(denominator):
        return NAN
    return total / denominator


def _nothing(denominator: Value | int) -> bool:
    """Whether a mean's denominator (a sum of weights >= 0, or a count) is 0."""
    return _ends(iv.mpf(denominator))[1] == 0


def _grad_factors(grad_output: Any, reduction: str, denominator: Value | int, n: int) -> list[Value]:
    """Each element's factor of grad_output: g_n ('none'), g ('sum'), g / denominator ('mean'; NAN if 0)."""
    g = np.asarray(grad_output, dtype=np.float64)
    if reduction == "none":
        return [iv.mpf(v) for v in g.reshape(-1)] if n else []
    if reduction == "sum":
        return [iv.mpf(float(g))] * n
    if _nothing(denominator):
        return [NAN] * n
    return [iv.mpf(float(g)) / denominator] * n


# ----------------------------------------------------------------------------------------------------------
# Class losses (nll_loss, cross_entropy): one element per row, i.e. per position of the loss, classes last.
# ----------------------------------------------------------------------------------------------------------


def _rows(a: np.ndarray) -> np.ndarray:
    """(R, C): the input (or a probability target) with the class dim last and the other dims flattened."""
    return a[np.newaxis] if a.ndim == 1 else np.moveaxis(a, 1, -1).reshape(-1, a.shape[1])


def _unrows(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if len(shape) == 1:
        return a.reshape(shape)
    moved = (shape[0], *shape[2:], shape[1])
    return np.moveaxis(a.reshape(moved), -1, 1)


def _smoothing(label_smoothing: float) -> float:
    return label_smoothing if label_smoothing > 0 else 0.0  # torch: a negative (or NaN) value means none


def _class_finish(
    x: np.ndarray,
    loss_shape: tuple[int, ...],
    grad_output: Any,
    reduction: str,
    denominator: Callable[[], Value | int],
    with_target_grad: bool,
) -> Callable[[list], dict[str, np.ndarray | None]]:
    n_rows, n_classes = int(np.prod(loss_shape, dtype=np.int64)), x.shape[0 if x.ndim == 1 else 1]

    def finish(parts: list[list[Value] | None]) -> dict[str, np.ndarray | None]:
        den = denominator()
        losses = [0 if p is None else p[0] for p in parts]
        factors = _grad_factors(grad_output, reduction, den, n_rows)
        grad_in, grad_tg = [], []
        for part, factor in zip(parts, factors, strict=True):
            if part is None:
                grad_in.extend([0] * n_classes)
                grad_tg.extend([0] * n_classes)
                continue
            grad_in.extend(_scaled(factor, d) for d in part[1 : 1 + n_classes])
            if with_target_grad:
                grad_tg.extend(_scaled(factor, d) for d in part[1 + n_classes :])
        loss = (
            _objects(losses, loss_shape)
            if reduction == "none"
            else _objects([_reduce(losses, reduction, den)], ())
        )
        return {
            "loss": loss,
            "grad_input": _unrows(_objects(grad_in, (n_rows, n_classes)), x.shape),
            "grad_target": _unrows(_objects(grad_tg, (n_rows, n_classes)), x.shape)
            if with_target_grad
            else None,
        }

    return finish


def _index_denominator(w_rows: list[float]) -> Callable[[], Value | int]:
    """sum of w[y_n] over the kept targets (their count without weights): exact in interval arithmetic."""
    return lambda: iv.fsum([iv.mpf(v) for v in w_rows]) if w_rows else 0


def nll_loss(
    grad_output: Any,
    input: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Exact:
    """``l_n = -w[y_n] x[n, y_n]`` (0 where ignored); ``dl_n/dx[n, c] = -w[y_n] [c = y_n]``."""
    x = np.asarray(input, dtype=np.float64)
    t = np.asarray(target).reshape(-1)
    rows, n_classes = _rows(x), x.shape[0 if x.ndim == 1 else 1]
    w = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64)

    def element(row: np.ndarray, y: int) -> Callable[[], list[Value]]:
        def values() -> list[Value]:
            w_y = iv.mpf(w[y])
            d: list[Value] = [0] * n_classes  # the loss does not depend on the other classes
            d[y] = -w_y
            return [-w_y * iv.mpf(row[y]), *d]

        return values

    kept = [int(y) != ignore_index for y in t]
    elements = [element(r, int(y)) if k else None for r, y, k in zip(rows, t, kept, strict=True)]
    keys = [("nll", r.tobytes(), int(y), w.tobytes()) for r, y in zip(rows, t, strict=True)]
    den = _index_denominator([w[int(y)] for y, k in zip(t, kept, strict=True) if k])
    loss_shape = np.shape(target)
    return _result(_solve(keys, elements, _class_finish(x, loss_shape, grad_output, reduction, den, False)))


def cross_entropy(
    grad_output: Any,
    input: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Exact:
    """``l_n = -sum_c w_c q_c log p_c`` with ``p = softmax(x_n)``; ``dl_n/dx_j = p_j sum_c w_c q_c - w_j q_j``
    and, for probability targets, ``dl_n/dy_c = -(1 - eps) w_c log p_c``. q is the target distribution,
    label-smoothed: ``(1 - eps) q + eps / C``, with q one-hot for class indices."""
    x = np.asarray(input, dtype=np.float64)
    target = np.asarray(target)
    eps = _smoothing(label_smoothing)
    rows, n_classes = _rows(x), x.shape[0 if x.ndim == 1 else 1]
    w = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64)
    probabilities = target.shape == x.shape

    def element(row: np.ndarray, q_row: np.ndarray | None, y: int | None) -> Callable[[], list[Value]]:
        def values() -> list[Value]:
            xs = [iv.mpf(v) for v in row]
            exps = [iv.exp(v) for v in xs]
            total = iv.fsum(exps)
            log_total = iv.log(total)
            e = iv.mpf(eps)
            smooth = e / n_classes
            # q as {class: q_c} over its nonzero entries (a class index without smoothing: one entry)
            if q_row is None:
                q = {c: smooth for c in range(n_classes)} if eps else {}
                q[y] = (1 - e) + smooth
            else:
                q = {c: (1 - e) * iv.mpf(v) + smooth for c, v in enumerate(q_row) if v or eps}
            wq = {c: iv.mpf(w[c]) * qc for c, qc in q.items()}
            loss = -iv.fsum([a * (xs[c] - log_total) for c, a in wq.items()])
            sum_wq = iv.fsum(list(wq.values()))
            grad_x = [
                (ex / total) * sum_wq - wq[j] if j in wq else (ex / total) * sum_wq
                for j, ex in enumerate(exps)
            ]
            if q_row is None:
                return [loss, *grad_x]
            grad_q = [-(1 - e) * iv.mpf(wc) * (v - log_total) for wc, v in zip(w, xs, strict=True)]
            return [loss, *grad_x, *grad_q]

        return values

    loss_shape = x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()
    if probabilities:
        q_rows = _rows(target.astype(np.float64))
        elements = [element(r, q, None) for r, q in zip(rows, q_rows, strict=True)]
        keys = [
            ("ce-p", r.tobytes(), q.tobytes(), w.tobytes(), eps) for r, q in zip(rows, q_rows, strict=True)
        ]
        n_rows = len(rows) if x.size else 0
        finish = _class_finish(x, loss_shape, grad_output, reduction, lambda: n_rows, True)
        return _result(_solve(keys, elements, finish))
    t = target.reshape(-1)
    kept = [int(y) != ignore_index for y in t]
    elements = [element(r, None, int(y)) if k else None for r, y, k in zip(rows, t, kept, strict=True)]
    keys = [("ce-i", r.tobytes(), int(y), w.tobytes(), eps) for r, y in zip(rows, t, strict=True)]
    den = _index_denominator([w[int(y)] for y, k in zip(t, kept, strict=True) if k])
    finish = _class_finish(x, target.shape, grad_output, reduction, den, False)
    return _result(_solve(keys, elements, finish))


# ----------------------------------------------------------------------------------------------------------
# Binary losses: one element per element; the weight multiplies from outside, pos_weight is inside the formula.
# ----------------------------------------------------------------------------------------------------------


def _binary_finish(
    shape: tuple[int, ...], w: np.ndarray, grad_output: Any, reduction: str
) -> Callable[[list], dict[str, np.ndarray | None]]:
    n = int(np.prod(shape, dtype=np.int64))

    def finish(parts: list[list[Value]]) -> dict[str, np.ndarray | None]:
        weights = [iv.mpf(v) for v in w.reshape(-1)]
        losses = [wn * p[0] for wn, p in zip(weights, parts, strict=True)]
        factors = [
            _scaled(f, wn) for f, wn in zip(_grad_factors(grad_output, reduction, n, n), weights, strict=True)
        ]
        grad_in = [_scaled(f, p[1]) for f, p in zip(factors, parts, strict=True)]
        grad_tg = [_scaled(f, p[2]) for f, p in zip(factors, parts, strict=True)]
        loss = (
            _objects(losses, shape) if reduction == "none" else _objects([_reduce(losses, reduction, n)], ())
        )
        return {"loss": loss, "grad_input": _objects(grad_in, shape), "grad_target": _objects(grad_tg, shape)}

    return finish


def _clamped_log(v: Any, exactly_zero: bool) -> Any:
    """BCE's max(log v, -100); log 0 = -inf clamps to -100."""
    if exactly_zero:
        return iv.mpf(LOG_CLAMP)
    log_v = iv.log(v)
    above = log_v > LOG_CLAMP
    if above is None:
        raise Undecided
    return log_v if above else iv.mpf(LOG_CLAMP)


def binary_cross_entropy(
    grad_output: Any,
    input: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    reduction: str = "mean",
) -> Exact:
    """``l = -w (y max(log x, -100) + (1 - y) max(log(1 - x), -100))``; ``dl/dx = w (-y/x + (1 - y)/(1 - x))``,
    or ``w (x - y) / 1e-12`` where ``x (1 - x) < 1e-12``; ``dl/dy = -w (log x - log(1 - x))``."""
    x = np.asarray(input, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    w = np.broadcast_to(np.ones(()) if weight is None else np.asarray(weight, dtype=np.float64), x.shape)

    def element(xv: float, yv: float) -> Callable[[], list[Value]]:
        def values() -> list[Value]:
            a, b = iv.mpf(xv), iv.mpf(yv)
            loss = -(b * _clamped_log(a, xv == 0) + (1 - b) * _clamped_log(1 - a, xv == 1))
            product = a * (1 - a)
            floored = product < GRAD_FLOOR
            if floored is None:
                raise Undecided
            grad_x = (a - b) / GRAD_FLOOR if floored else -b / a + (1 - b) / (1 - a)
            if xv in (0.0, 1.0):  # -(log x - log(1 - x)) at the ends
                grad_y = iv.mpf("inf") if xv == 0 else iv.mpf("-inf")
            else:
                grad_y = -(iv.log(a) - iv.log(1 - a))
            return [loss, grad_x, grad_y]

        return values

    flat_x, flat_y = x.reshape(-1), y.reshape(-1)
    elements = [element(float(a), float(b)) for a, b in zip(flat_x, flat_y, strict=True)]
    keys = [("bce", float(a), float(b)) for a, b in zip(flat_x, flat_y, strict=True)]
    return _result(_solve(keys, elements, _binary_finish(x.shape, w, grad_output, reduction)))


def binary_cross_entropy_with_logits(
    grad_output: Any,
    input: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    reduction: str = "mean",
    pos_weight: np.ndarray | None = None,
) -> Exact:
    """``l = -w (p y log s + (1 - y) log(1 - s))`` with ``s = sigma(x) = 1 / (1 + exp(-x))``;
    ``dl/dx = -w (p y (1 - s) - (1 - y) s)``; ``dl/dy = -w (p log s - log(1 - s))``."""
    x = np.asarray(input, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    w = np.broadcast_to(np.ones(()) if weight is None else np.asarray(weight, dtype=np.float64), x.shape)
    p = np.broadcast_to(
        np.ones(()) if pos_weight is None else np.asarray(pos_weight, dtype=np.float64), x.shape
    )

    def element(xv: float, yv: float, pv: float) -> Callable[[], list[Value]]:
        def values() -> list[Value]:
            a, b, c = iv.mpf(xv), iv.mpf(yv), iv.mpf(pv)
            s = 1 / (1 + iv.exp(-a))
            log_s, log_not_s = iv.log(s), iv.log(1 - s)
            loss = -(c * b * log_s + (1 - b) * log_not_s)
            grad_x = -(c * b * (1 - s) - (1 - b) * s)
            grad_y = -(c * log_s - log_not_s)
            return [loss, grad_x, grad_y]

        return values

    triples = list(zip(x.reshape(-1).tolist(), y.reshape(-1).tolist(), p.reshape(-1).tolist(), strict=True))
    elements = [element(*abc) for abc in triples]
    keys = [("bcel", *abc) for abc in triples]
    return _result(_solve(keys, elements, _binary_finish(x.shape, w, grad_output, reduction)))
