"""The truth, proven: the reference's error against arbitrary precision (harness/exact.py) on hard inputs.

The parity suite measures torch against the reference, so the reference's own error has to be known and small.
Each family below is a kind of input where a float64 formula goes wrong if it is not careful (saturated softmax,
losses of 1e-300, cancellation, extreme and zero weights), and each loss and stage has a bound, as data, that
the reference must stay within in every family and reduction. Two units:

- elementwise ulps, ``|ref - exact| / ulp(exact)`` where exact != 0: every element on its own, the tiny ones
  too. Enforced where the family claims it (``Family.elementwise``): a stage that is a difference of terms (a
  gradient near its zero, p - q) cannot be accurate to its own ulps in float64, whatever the formula.
- the suite's unit, ``max |ref - exact| / (eps * scale)`` with scale = max |exact| of the array: each error is
  judged beside the array's largest element, so a tiny element next to large ones may be wrong in every digit
  and still count ~0 eps. It is the unit of the parity tolerances (docs/tolerances.md).

``python -m tests.test_truth`` prints the table of docs/tolerances.md: worst errors, where, the bounds.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pytest
from mpmath import iv, mp

import reference
from parity_tests.harness import exact

EPS = float(np.finfo(np.float64).eps)
REDUCTIONS = ("none", "mean", "sum")
LOSS, GRAD_IN, GRAD_TG = "loss", "grad_input", "grad_target"
STAGES = (LOSS, GRAD_IN, GRAD_TG)

Inputs = tuple[np.ndarray, np.ndarray, dict[str, Any]]  # input, target, options


class Bound(NamedTuple):
    ulps: float  # elementwise, in the families that claim the stage
    eps: float  # of the array's scale, in every family


# The reference's documented accuracy: (loss, stage) -> Bound. Each comment gives the measured worst (over every
# family and reduction below, ulps over the families that claim them) and where. The bounds leave ~1.5x over
# it, at least 2, and stay under 4: a formula rounded 4 eps off throughout fails them.
BOUNDS = {
    # 1.9 ulps, 1.2 eps (prob-near-one-hot, mean)
    ("cross_entropy", "loss"): Bound(3.0, 2.0),
    # 2.1 ulps (smoothing-zero-weights, mean), 0.8 eps (prob-near-one-hot, sum)
    ("cross_entropy", "grad_input"): Bound(3.0, 2.0),
    # 2.0 ulps (prob-large-smoothed, none), 0.7 eps (prob-near-one-hot, mean)
    ("cross_entropy", "grad_target"): Bound(3.0, 2.0),
    # 0.5 ulps (log-probs, none: one rounding), 0.4 eps (log-probs, sum)
    ("nll_loss", "loss"): Bound(2.0, 2.0),
    # 0.9 ulps, 0.5 eps (log-probs, mean)
    ("nll_loss", "grad_input"): Bound(2.0, 2.0),
    # 1.2 ulps, 0.6 eps (targets-near-input, none)
    ("binary_cross_entropy", "loss"): Bound(2.0, 2.0),
    # 2.2 ulps (edges, sum), 1.0 eps (targets-near-input, mean)
    ("binary_cross_entropy", "grad_input"): Bound(3.0, 2.0),
    # 2.0 ulps (targets-near-input, none), 1.2 eps (targets-near-input, sum)
    ("binary_cross_entropy", "grad_target"): Bound(3.0, 2.0),
    # 1.9 ulps, 1.3 eps (soft-targets, sum)
    ("binary_cross_entropy_with_logits", "loss"): Bound(3.0, 2.0),
    # 1.8 ulps (pos-weight-extreme, mean), 0.9 eps (pos-weight-extreme, sum)
    ("binary_cross_entropy_with_logits", "grad_input"): Bound(3.0, 2.0),
    # 1.2 ulps (pos-weight-extreme, sum), 1.0 eps (soft-targets, none)
    ("binary_cross_entropy_with_logits", "grad_target"): Bound(2.0, 2.0),
}


@dataclass(frozen=True)
class Family:
    name: str
    loss: str
    make: Callable[[np.random.Generator], Inputs]
    elementwise: frozenset[str] = field(default_factory=frozenset)  # stages claimed to a few ulps per element
    reductions: tuple[str, ...] = REDUCTIONS

    @property
    def id(self) -> str:
        return f"{self.loss}-{self.name}"


def _confident_rows(
    margins: list[float], n_classes: int, offset: float, rng: np.random.Generator
) -> np.ndarray:
    """Rows whose class 0 (logit ``offset``) beats every other class by ``margin`` or more: p_0 ~ 1 - e^-margin.
    The others lie within a factor 2 of the max, so x - max(x) is exact (Sterbenz)."""
    x = offset - rng.uniform(0.0, 3.0, (len(margins), n_classes)) - np.array(margins)[:, None]
    x[:, 0] = offset
    return x


# ----------------------------------------------------------------------------------------------------------
# The families. Where the reference shifts logits by their max, x_j - max(x) rounds unless the two are within a
# factor 2 (or the max is 0); p_j = exp(x_j - max) then carries |x_j - max| eps / 2 of relative error, the
# condition of exp (57 ulps in k-dim), which is at most 0.18 eps of the row's largest p_j. So cross_entropy's
# grad_input is claimed elementwise only where the shift is exact, and only without smoothing (with it, every
# entry is a difference of terms, zero where p = q).
# ----------------------------------------------------------------------------------------------------------


def _ce_large_logits(rng):
    # |x| ~ 1e3..1e4 spread so that softmax saturates (p one-hot to double precision), and one row large but close
    x = rng.uniform(-1e4, 1e4, (6, 8))
    x[1] = 1e3 + rng.normal(0.0, 2.0, 8)
    y = rng.integers(0, 8, 6)
    y[2] = int(np.argmax(x[2]))
    return x, y, {"weight": rng.uniform(0.5, 2.0, 8)}


def _ce_confident(rng):
    # the target beats the others by 32..690: loss = log(1 + sum_j e^-margin_j) ~ 1e-14..1e-300
    x = _confident_rows([32.0, 100.0, 300.0, 690.0], 5, 0.0, rng)
    x[1] += 1e3
    x[3] -= 1e4
    return x, np.zeros(4, dtype=np.int64), {}


def _ce_many_classes(rng):
    # 2048 classes: a long sum of moderate terms, and a spread of 2e3 where most terms underflow
    x = np.stack([rng.normal(0.0, 3.0, 2048), rng.uniform(-1e3, 1e3, 2048)])
    return x, np.array([int(np.argmax(x[0])), 17]), {}


def _ce_smoothing_confident(rng):
    # confident right rows: nll ~1e-40 and ~1e-200 beside a smoothing term ~margin; a confident wrong row with a
    # zero-weight target: nll 0 beside eps / C * smooth
    x = _confident_rows([90.0, 460.0, 60.0], 6, 0.0, rng)
    return (
        x,
        np.array([0, 0, 3]),
        {"label_smoothing": 1e-6, "weight": np.array([1.0, 0.5, 2.0, 0.0, 1.5, 3.0])},
    )


def _ce_smoothing_zero_weights(rng):
    # the other classes weigh ~0: the target's gradient a (p_y - 1) + b (W p_y - w_y) is ~e^-margin, all in p_y - 1
    x = _confident_rows([40.0, 90.0, 300.0, 5.0], 5, 0.0, rng)
    return (
        x,
        np.array([0, 0, 0, 2]),
        {"label_smoothing": 0.1, "weight": np.array([1.0, 1e-9, 0.0, 2e-9, 0.0])},
    )


def _ce_smoothing_large(rng):
    x = rng.uniform(-1e4, 1e4, (4, 7))
    y = np.array([int(np.argmax(x[0])), 1, 2, 5])
    return x, y, {"label_smoothing": 0.3, "weight": rng.uniform(0.0, 2.0, 7), "ignore_index": 2}


def _ce_kdim(rng):
    x = rng.normal(0.0, 30.0, (2, 4, 3, 2))
    x[0, 1] += 800.0  # class 1 wins every position of sample 0 by hundreds
    y = rng.integers(0, 4, (2, 3, 2))
    y[0] = 1
    return x, y, {"ignore_index": 3}


def _ce_unbatched(rng):
    return _confident_rows([40.0], 9, 1e3, rng)[0], np.array(0), {}


def _ce_mean_over_nothing(rng):
    # the kept targets weigh 0 and the rest are ignored: 'mean' is 0/0 = NaN, and so is each kept row's gradient
    x = rng.normal(0.0, 3.0, (3, 4))
    return x, np.array([0, 0, 2]), {"weight": np.array([0.0, 1.0, 1.0, 1.0]), "ignore_index": 2}


def _ce_prob_near_one_hot(rng):
    # targets 1 - 2^-30 on class 0, the rest spread over the others; logits confident in class 0, or not
    q = rng.dirichlet(np.ones(6), 3) * 2.0**-30
    q[:, 0] = 1.0 - 2.0**-30
    return _confident_rows([200.0, 40.0, 0.0], 6, 0.0, rng), q, {}


def _ce_prob_one_hot_confident(rng):
    # one-hot targets on the winning class: loss = -log p_0 ~ 1e-17..1e-250, gradient p - q ~ the same
    q = np.zeros((3, 5))
    q[:, 0] = 1.0
    return (
        _confident_rows([40.0, 300.0, 575.0], 5, 1e3, rng),
        q,
        {"weight": np.array([0.7, 1.0, 1.0, 1.0, 1.0])},
    )


def _ce_prob_large_smoothed(rng):
    x = rng.uniform(-1e4, 1e4, (4, 6))
    q = rng.dirichlet(np.full(6, 0.3), 4)
    return x, q, {"label_smoothing": 0.2, "weight": np.array([0.0, 1.0, 2.5, 0.3, 1.0, 1e-3])}


def _nll_log_probs(rng):
    # log-probabilities from -1e-300 (a sure class) to -1e4, weights with a zero, ignore_index inside [0, C)
    x = -np.exp(rng.uniform(-690.0, 9.2, (8, 5)))
    return x, rng.integers(0, 5, 8), {"weight": np.array([1.0, 0.0, 2.5, 1e-3, 7.0]), "ignore_index": 4}


def _nll_mean_over_nothing(rng):
    x = -np.exp(rng.uniform(-5.0, 5.0, (3, 4)))
    return x, np.array([1, 3, 1]), {"weight": np.array([1.0, 0.0, 1.0, 1.0]), "ignore_index": 3}


def _bce_edges(rng):
    # probabilities at the ends (the clamp at -100, the backward's floor), next to them, and next to 1/2; a zero
    # weight at x = 1 makes the target's gradient 0 * inf = NaN
    x = np.array([0.0, 1.0, 5e-324, 1e-300, 1e-13, 1e-12, 1e-6, 0.5, 0.5 + 3.1e-9, 0.5 - 7.3e-13, 1 - 1e-6,
                  1 - 1e-12, 1 - 2**-53, 0.47, 0.5 + 1.234567e-5, 0.999])  # fmt: skip
    y = np.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.3, 0.7000001, 1.0])
    w = rng.uniform(0.5, 2.0, 16)
    w[1] = 0.0
    return x, y, {"weight": w}


def _bce_targets_near_input(rng):
    # targets within 2^-10..2^-50 of the input: the gradient (x - y) / (x (1 - x)) is a small difference
    x = rng.uniform(0.0, 1.0, (3, 4))
    y = np.clip(x * (1.0 + rng.choice([-1.0, 1.0], (3, 4)) * 2.0 ** -rng.integers(10, 50, (3, 4))), 0.0, 1.0)
    return x, y, {"weight": rng.uniform(0.0, 3.0, (4,))}


def _bcel_saturated(rng):
    x = np.tile([30.0, -30.0, 700.0, -700.0, 36.7, -36.7, 745.0, -745.0], 2)
    return x, np.repeat([1.0, 0.0], 8), {}


def _bcel_pos_weight_extreme(rng):
    x = np.array([30.0, -30.0, 700.0, -700.0, 3.0, -3.0, 1e-3, 0.0]).repeat(2).reshape(4, 4)
    y = np.tile([1.0, 0.0], 8).reshape(4, 4)
    p = np.tile([1e-6, 1e6], 8).reshape(4, 4)
    return x, y, {"pos_weight": p, "weight": rng.uniform(0.5, 2.0, 4)}


def _bcel_outside_targets(rng):
    # targets outside [0, 1] (torch accepts them): the loss's two terms have opposite signs; the last element's
    # cancel to ~0 (log(1 + e^-1/2) = 1/2 |y|), beside losses of ~60
    x = np.array([-7.8e-5, 1.3e-4, -2.9e-4, -0.5, 0.8, -3.0, 2.5, 30.0, -2.0, -0.5])
    y = np.array(
        [-10.582142185059988, 12.3, -3.7, 1.5, 7.1, -21.0, 2.0, -0.75, 1 / 0.55, -0.9482762520808658]
    )
    p = np.array([1.0, 0.875, 1.0625, 3.0, 0.45, 1.0, 2.0, 1e6, 0.45, 1.0])
    return x, y, {"pos_weight": p}


def _bcel_soft_targets(rng):
    x = rng.normal(0.0, 10.0, (4, 5))
    y = rng.uniform(0.0, 1.0, (4, 5))
    return x, y, {"pos_weight": rng.uniform(0.5, 2.0, 5), "weight": rng.uniform(0.0, 2.0, (4, 1))}


FAMILIES = (
    Family("large-logits", "cross_entropy", _ce_large_logits, frozenset({LOSS})),
    Family("confident", "cross_entropy", _ce_confident, frozenset({LOSS, GRAD_IN})),
    Family("many-classes", "cross_entropy", _ce_many_classes, frozenset({LOSS})),
    Family("smoothing-confident", "cross_entropy", _ce_smoothing_confident, frozenset({LOSS})),
    # each entry is one term there (the other classes' weights ~0): claimed
    Family("smoothing-zero-weights", "cross_entropy", _ce_smoothing_zero_weights, frozenset({LOSS, GRAD_IN})),
    Family("smoothing-large", "cross_entropy", _ce_smoothing_large, frozenset({LOSS})),
    Family("k-dim", "cross_entropy", _ce_kdim, frozenset({LOSS})),
    Family("unbatched", "cross_entropy", _ce_unbatched, frozenset({LOSS, GRAD_IN})),
    Family("mean-over-nothing", "cross_entropy", _ce_mean_over_nothing, frozenset({LOSS, GRAD_IN})),
    Family("prob-near-one-hot", "cross_entropy", _ce_prob_near_one_hot, frozenset({LOSS, GRAD_TG})),
    Family("prob-one-hot-confident", "cross_entropy", _ce_prob_one_hot_confident, frozenset({LOSS, GRAD_TG})),
    Family("prob-large-smoothed", "cross_entropy", _ce_prob_large_smoothed, frozenset({LOSS, GRAD_TG})),
    Family("log-probs", "nll_loss", _nll_log_probs, frozenset({LOSS, GRAD_IN})),
    Family("mean-over-nothing", "nll_loss", _nll_mean_over_nothing, frozenset({LOSS, GRAD_IN})),
    Family("edges", "binary_cross_entropy", _bce_edges, frozenset(STAGES)),
    Family("targets-near-input", "binary_cross_entropy", _bce_targets_near_input, frozenset(STAGES)),
    # y in {0, 1}: each gradient is one term, (1 - y) sigma(x) or -p y sigma(-x)
    Family("saturated", "binary_cross_entropy_with_logits", _bcel_saturated, frozenset(STAGES)),
    Family(
        "pos-weight-extreme", "binary_cross_entropy_with_logits", _bcel_pos_weight_extreme, frozenset(STAGES)
    ),
    # 'none' only: the elements have both signs, and a float64 sum of them is good to eps * sum |l|, not to eps
    # of the sum; nothing elementwise: an element whose two terms cancel keeps only eps of the terms
    Family(
        "outside-targets", "binary_cross_entropy_with_logits", _bcel_outside_targets, reductions=("none",)
    ),
    Family("soft-targets", "binary_cross_entropy_with_logits", _bcel_soft_targets, frozenset({LOSS})),
)


# ----------------------------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Error:
    ulps: float  # worst elementwise |ref - exact| / ulp(exact), where exact != 0
    eps: float  # worst |ref - exact| / (EPS * max |exact|)
    where: str  # the worst element (by eps), or the first NaN/inf position where the two differ
    pattern: bool = False  # True: shapes or NaN/inf positions differ (the errors are then inf)


def measure(ref: np.ndarray | None, truth: exact.Exact, stage: str) -> Error:
    """The reference's error in one stage against the exact values."""
    want = getattr(truth, stage)
    ref = np.asarray(ref, dtype=np.float64)
    if ref.shape != want.shape:
        return Error(np.inf, np.inf, f"shape {ref.shape}, exact {want.shape}", True)
    finite = np.isfinite(want)
    differs = (
        (np.isnan(ref) != np.isnan(want)) | (np.isinf(want) & (ref != want)) | (finite & ~np.isfinite(ref))
    )
    if differs.any():
        at = tuple(int(i) for i in np.argwhere(differs)[0])
        return Error(np.inf, np.inf, f"at {list(at)}: reference {ref[at]!r}, exact {want[at]!r}", True)
    diff = np.where(finite, truth.error(stage, ref), 0.0)
    magnitude = np.abs(np.where(finite, want, 0.0))
    scale = float(magnitude.max(initial=0.0))
    ulps = np.where(magnitude > 0, diff / np.spacing(magnitude), 0.0)
    worst = float(diff.max(initial=0.0))
    eps = worst / (EPS * scale) if scale else (0.0 if worst == 0 else np.inf)
    if not diff.size:
        return Error(0.0, 0.0, "empty")
    at = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return Error(
        float(ulps.max()), eps, f"at {list(map(int, at))}: reference {ref[at]!r}, exact {want[at]!r}"
    )


def _grad_output(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Magnitudes in [0.5, 2] with random signs (ones would hide reduction bugs)."""
    return rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def run_family(family: Family) -> dict[tuple[str, str], Error]:
    """The reference's error in every reduction and stage of the family: {(reduction, stage): Error}."""
    rng = np.random.default_rng(zlib.crc32(family.id.encode()))
    x, target, options = family.make(rng)
    forward, backward = getattr(reference, family.loss), getattr(reference, f"{family.loss}_backward")
    out = {}
    for reduction in family.reductions:
        kwargs = {**options, "reduction": reduction}
        loss = forward(x, target, **kwargs)
        g = _grad_output(rng, np.shape(loss))
        grad_input, grad_target = backward(g, x, target, **kwargs)
        truth = getattr(exact, family.loss)(g, x, target, **kwargs)
        got = {LOSS: loss, GRAD_IN: grad_input, GRAD_TG: grad_target}
        for stage in STAGES:
            if getattr(truth, stage) is None:
                assert got[stage] is None, f"{stage}: the reference returns one, torch has none"
                continue
            out[reduction, stage] = measure(got[stage], truth, stage)
    return out


# ----------------------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.id)
def test_reference_is_within_its_bounds(family: Family) -> None:
    """Every reduction and stage of the family: NaN/inf where the truth has them, the error in eps of scale
    within the bound, and, where the family claims it, every element within the bound in ulps."""
    failures = []
    for (reduction, stage), error in run_family(family).items():
        bound = BOUNDS[family.loss, stage]
        what = f"{stage}, {reduction}"
        if error.pattern:
            failures.append(f"{what}: NaN/inf or shape differs {error.where}")
        elif error.eps > bound.eps:
            failures.append(f"{what}: {error.eps:.3g} eps of scale > {bound.eps:g} {error.where}")
        elif stage in family.elementwise and error.ulps > bound.ulps:
            failures.append(f"{what}: {error.ulps:.3g} ulps > {bound.ulps:g} elementwise")
    assert not failures, f"{family.id}:\n  " + "\n  ".join(failures)


def test_every_bound_is_used() -> None:
    """A bound no family reaches is a bound nobody checks."""
    used = {(f.loss, s) for f in FAMILIES for s in STAGES}
    assert set(BOUNDS) <= used, f"bounds without a family: {sorted(set(BOUNDS) - used)}"
    claimed = {(f.loss, s) for f in FAMILIES for s in f.elementwise}
    assert claimed == set(BOUNDS), f"no elementwise claim for {sorted(set(BOUNDS) - claimed)}"


# The exact values themselves, against closed forms and mpmath's own functions (not harness/exact.py's code).


def test_exact_matches_closed_forms() -> None:
    """Equal logits: log C and p - onehot = 1/C - [c = y]; BCE-with-logits at 0: log 2 and 1/2 - y; nll: -w x."""
    ce = exact.cross_entropy(np.array([1.0, -1.0]), np.zeros((2, 4)), np.array([3, 0]), reduction="none")
    assert ce.loss.tolist() == [float(mp.log(4))] * 2
    assert ce.grad_input.tolist() == [[0.25, 0.25, 0.25, -0.75], [0.75, -0.25, -0.25, -0.25]]
    bcel = exact.binary_cross_entropy_with_logits(
        np.ones(2), np.zeros(2), np.array([0.0, 1.0]), reduction="none"
    )
    assert bcel.loss.tolist() == [float(mp.log(2))] * 2
    assert bcel.grad_input.tolist() == [0.5, -0.5]
    nll = exact.nll_loss(
        2.0, np.array([[-0.5, -3.0]]), np.array([1]), weight=np.array([1.0, 0.25]), reduction="sum"
    )
    assert nll.loss.tolist() == 0.75
    assert nll.grad_input.tolist() == [[0.0, -0.5]]


@pytest.mark.parametrize("margin", [30.0, 300.0, 745.0])
def test_exact_keeps_tiny_losses(margin: float) -> None:
    """A confident right answer's loss log1p(e^-margin) (1e-13..1e-324) takes ~2.5 margin bits to resolve; the
    interval arithmetic buys them, and the value is mpmath's log1p(exp(-margin)) to the last bit."""
    with mp.workprec(200):
        truth = float(mp.log1p(mp.exp(-mp.mpf(margin))))
    ce = exact.cross_entropy(1.0, np.array([margin, 0.0]), np.array(0))
    bcel = exact.binary_cross_entropy_with_logits(1.0, np.array([margin]), np.array([1.0]), reduction="sum")
    assert ce.loss.tolist() == bcel.loss.tolist() == truth > 0


def test_exact_mirrors_torch_conventions() -> None:
    """BCE at x = 0 and 1: loss 100 (the clamp), gradient (x - y) / float32(1e-12), target gradient -+inf (NaN
    under a zero weight); a mean over nothing: NaN."""
    x, y = np.array([0.0, 1.0, 1.0]), np.array([1.0, 0.0, 0.0])
    bce = exact.binary_cross_entropy(np.ones(3), x, y, weight=np.array([1.0, 1.0, 0.0]), reduction="none")
    assert bce.loss.tolist() == [100.0, 100.0, 0.0]
    assert bce.grad_input.tolist() == [-1 / exact.GRAD_FLOOR, 1 / exact.GRAD_FLOOR, 0.0]
    assert bce.grad_target[:2].tolist() == [np.inf, -np.inf]
    assert np.isnan(bce.grad_target[2])
    nll = exact.nll_loss(1.0, np.zeros((2, 3)), np.array([-100, -100]))
    assert np.isnan(nll.loss)
    assert not nll.grad_input.any()


def test_exact_is_proven_not_just_stable() -> None:
    """A cancellation that leaves nothing at 256 bits is refined until its enclosure is tight; an enclosure that
    never tightens is an error, not a guess."""
    (value,) = exact._converge(lambda: [(1 + iv.mpf(2.0**-900)) - 1], exact.DIGITS)
    assert exact._ends(value) == (mp.mpf(2.0**-900),) * 2
    with pytest.raises(ArithmeticError, match="no enclosure"):
        exact._converge(lambda: [iv.mpf([1, 2])], exact.DIGITS)


# ----------------------------------------------------------------------------------------------------------
# The table of docs/tolerances.md
# ----------------------------------------------------------------------------------------------------------


def table() -> str:
    worst: dict[tuple[str, str], dict[str, tuple[float, str]]] = {}
    for family in FAMILIES:
        for (reduction, stage), error in run_family(family).items():
            row = worst.setdefault((family.loss, stage), {})
            where = f"{family.name} ({reduction})"
            for unit, value, counts in (
                ("ulps", error.ulps, stage in family.elementwise),
                ("eps", error.eps, True),
                ("other", error.ulps, stage not in family.elementwise),
            ):
                if counts and value >= row.get(unit, (-1.0, ""))[0]:
                    row[unit] = (value, where)
    lines = [
        "| loss | stage | worst ulps (claimed) | where | worst eps of scale | where | bound (ulps, eps) "
        "| worst ulps, not claimed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (loss, stage), bound in BOUNDS.items():
        row = worst[loss, stage]
        other = f"{row['other'][0]:.3g} ({row['other'][1]})" if "other" in row else "-"
        lines.append(
            f"| {loss} | {stage} | {row['ulps'][0]:.1f} | {row['ulps'][1]} | {row['eps'][0]:.1f} | "
            f"{row['eps'][1]} | {bound.ulps:g}, {bound.eps:g} | {other} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
