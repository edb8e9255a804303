"""Checks of the NumPy reference that do not trust torch (no torch import here, on purpose).

The parity suite measures torch against the reference, so the reference has to be right on its own evidence:

- finite differences: every analytic backward is the vector-Jacobian product of its own forward, for every
  option, target kind and shape, with a random grad_output (ones would hide reduction bugs);
- identities between the losses (cross_entropy = nll_loss o log_softmax, BCEWithLogits = BCE o sigmoid, label
  smoothing = smoothed probability targets, shift invariance, dCE/dz = softmax - onehot);
- reduction relations and torch's documented edge cases (empty batch, all ignored, the BCE log clamp), as
  written in docs/torch-semantics.md;
- the worked examples of the course material (course-material.txt), with the deck's own arithmetic checked.
"""

from __future__ import annotations

import decimal
import math
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

import reference
from parity_tests.harness import bad_calls
from reference import (
    binary_cross_entropy,
    binary_cross_entropy_backward,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_backward,
    cross_entropy,
    cross_entropy_backward,
    cross_entropy_forward_backward,
    log_sigmoid,
    log_softmax,
    nll_loss,
    nll_loss_backward,
    sigmoid,
    softmax,
)

# Central differences on float64 with step h: truncation error ~ h^2 * f''' / 6 ~ 1e-12 and rounding error
# ~ eps * |phi| / h ~ 2e-16 * 30 / 1e-6 ~ 1e-8 (phi = sum(g * loss) is at most ~30 here), i.e. ~1e-8 relative
# to gradients of size >= 0.05. FD_RTOL = 1e-6 leaves 100x headroom over that noise and is still 1e5 times
# tighter than any real bug (a wrong denominator, a missing weight or a sign is an O(1) relative error).
FD_STEP = 1e-6
FD_RTOL = 1e-6
# Two float64 evaluations of the same math in a different order differ by a few ulps times the condition
# number of the sum; 1e-12 of the array's scale is thousands of ulps of room and still catches any real bug.
IDENTITY_RTOL = 1e-12

SHAPES: tuple[tuple[int, ...], ...] = ((3,), (4, 3), (2, 3, 2, 2))
REDUCTIONS = ("none", "mean", "sum")
IGNORE_INDEX_INSIDE = 1  # an ignore_index inside [0, C): torch allows it, and those targets are skipped


# ----------------------------------------------------------------------------------------------------
# The option table: one Config per (loss, options, shape); every generic test runs over (a slice of) it.
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    loss: str  # the name of the forward function in `reference`; `<loss>_backward` is its VJP
    shape: tuple[int, ...]  # the input's shape; the class dim is 1 (0 for a 1-D input)
    target: str  # "index" (class indices) | "prob" (class probabilities) | "binary" (BCE targets in [0, 1])
    # weight: "-" none | "w" class weights (C,) | "full" BCE weight of the input's shape | "last" (d_last,)
    weight: str = "-"
    ignore: str = "-"  # "-" default -100, nothing ignored | "ii-100" some targets -100 | "ii1" ignore_index=1
    smoothing: float = 0.0
    # pos_weight: "-" none | "last" shape (d_last,) | "bcast" (C, 1, 1) on a 4-D input, (1,) otherwise
    pos_weight: str = "-"

    @property
    def n_classes(self) -> int:
        return self.shape[0] if len(self.shape) == 1 else self.shape[1]

    @property
    def class_dim(self) -> int:
        return 0 if len(self.shape) == 1 else 1

    @property
    def label(self) -> str:
        parts = [self.loss, self.target]
        if self.weight != "-":
            parts.append(f"w{self.weight}" if self.weight != "w" else "w")
        if self.ignore != "-":
            parts.append(self.ignore)
        if self.smoothing:
            parts.append(f"ls{self.smoothing:g}")
        if self.pos_weight != "-":
            parts.append(f"pw{self.pos_weight}")
        parts.append("(" + ",".join(map(str, self.shape)) + ")")
        return "-".join(parts)


def _configs() -> Iterator[Config]:
    for shape in SHAPES:
        for ignore in ("-", "ii-100", "ii1"):
            if ignore == "ii-100" and len(shape) == 1:
                continue  # the one sample would be ignored: mean = 0/0, tested in test_all_ignored
            for weight in ("-", "w"):
                yield Config("nll_loss", shape, "index", weight, ignore)
                for smoothing in (0.0, 0.1, 1.0):
                    yield Config("cross_entropy", shape, "index", weight, ignore, smoothing)
        for weight in ("-", "w"):
            for smoothing in (0.0, 0.1, 1.0):
                yield Config("cross_entropy", shape, "prob", weight, smoothing=smoothing)
        for weight in ("-", "full", "last"):
            yield Config("binary_cross_entropy", shape, "binary", weight)
            for pos_weight in ("-", "last", "bcast"):
                yield Config(
                    "binary_cross_entropy_with_logits", shape, "binary", weight, pos_weight=pos_weight
                )


CONFIGS = tuple(_configs())


def _params(configs: tuple[Config, ...], reductions: tuple[str, ...] = REDUCTIONS) -> list:
    return [pytest.param(c, r, id=f"{c.label}-{r}") for c in configs for r in reductions]


def _rng(*key: object) -> np.random.Generator:
    """A generator seeded from the case's id: the same case always gets the same data, whatever runs first."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _functions(loss: str) -> tuple[Callable, Callable]:
    return getattr(reference, loss), getattr(reference, f"{loss}_backward")


def _ignored_mask(target: np.ndarray, kwargs: dict) -> np.ndarray:
    return np.asarray(target == kwargs.get("ignore_index", -100))


def make_inputs(cfg: Config, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """(input, target, keyword options except reduction) for one config, drawn from `rng`."""
    shape, n_classes = cfg.shape, cfg.n_classes
    kwargs: dict = {}
    if cfg.loss == "binary_cross_entropy":
        # Probabilities away from 0 and 1: the FD steps stay inside (0, 1) and log() is never clamped.
        x = rng.uniform(0.05, 0.95, shape)
    else:
        x = rng.normal(0.0, 1.5, shape)

    if cfg.target == "index":
        target_shape = () if len(shape) == 1 else (shape[0], *shape[2:])
        flat = rng.integers(0, n_classes, size=math.prod(target_shape)).astype(np.int64)
        if cfg.ignore == "ii-100":
            flat[::2] = -100  # every other target ignored, never all of them
        elif cfg.ignore == "ii1":
            kwargs["ignore_index"] = IGNORE_INDEX_INSIDE
            flat[:] = rng.choice([0, 2], size=flat.size)
            if flat.size > 1:  # a 1-D input keeps its one target: the unmatched ignore_index must not matter
                flat[::2] = IGNORE_INDEX_INSIDE
        target = flat.reshape(target_shape)
    elif cfg.target == "prob":
        target = rng.uniform(0.1, 1.0, shape)
        target /= target.sum(axis=cfg.class_dim, keepdims=True)
    else:
        # Soft labels inside (0.1, 0.9): both terms of BCE count, and FD steps on the target stay in [0, 1].
        target = rng.uniform(0.1, 0.9, shape)

    if cfg.weight == "w":
        kwargs["weight"] = rng.uniform(0.5, 2.0, n_classes)
    elif cfg.weight == "full":
        kwargs["weight"] = rng.uniform(0.5, 2.0, shape)
    elif cfg.weight == "last":
        kwargs["weight"] = rng.uniform(0.5, 2.0, shape[-1:])
    if cfg.smoothing:
        kwargs["label_smoothing"] = cfg.smoothing
    if cfg.pos_weight == "last":
        kwargs["pos_weight"] = rng.uniform(0.5, 3.0, shape[-1:])
    elif cfg.pos_weight == "bcast":
        kwargs["pos_weight"] = rng.uniform(0.5, 3.0, (n_classes, 1, 1) if len(shape) == 4 else (1,))
    return x, target, kwargs


def unreduced_shape(cfg: Config) -> tuple[int, ...]:
    """reduction='none' shape: the target's for indices, the input's less the class dim for probabilities."""
    if cfg.target == "binary":
        return cfg.shape
    return tuple(d for i, d in enumerate(cfg.shape) if i != cfg.class_dim)


def mean_denominator(cfg: Config, target: np.ndarray, kwargs: dict) -> float:
    """What torch's 'mean' divides by (docs/torch-semantics.md), computed independently of the reference."""
    if cfg.target == "index":
        # sum of w[y_n] over the targets that are not ignored (their count without a weight)
        kept = target[~_ignored_mask(target, kwargs)]
        weight = kwargs.get("weight", np.ones(cfg.n_classes))
        return float(weight[kept].sum())
    if cfg.target == "prob":
        return math.prod(cfg.shape) / cfg.n_classes  # N*d1*..*dk, not any weight sum
    return float(math.prod(cfg.shape))  # BCE: numel; weights are not in the denominator


def random_cotangent(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A grad_output of random sizes and signs, never all ones (ones hide reduction and broadcast bugs)."""
    return np.asarray(rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape))


def central_differences(phi: Callable[[np.ndarray], float], a: np.ndarray, h: float = FD_STEP) -> np.ndarray:
    """d phi / d a, one element at a time: (phi(a + h e_i) - phi(a - h e_i)) / 2h."""
    grad = np.zeros(a.shape)
    for i in np.ndindex(a.shape):
        up, down = a.copy(), a.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (phi(up) - phi(down)) / (2 * h)
    return grad


def assert_close(actual: object, expected: object, *, rtol: float, what: str) -> None:
    """|actual - expected| <= rtol * max|expected| everywhere (scaled to the array: gradients of a mean are
    O(1/N)); NaN and +-inf must sit at the same places with the same values."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape}, but should be {expected.shape} [{what}]"
    finite = np.isfinite(expected)
    assert np.array_equal(actual[~finite], expected[~finite], equal_nan=True), (
        f"non-finite values {actual[~finite]}, but should be {expected[~finite]} [{what}]"
    )
    assert np.isfinite(actual[finite]).all(), f"non-finite values where finite expected: {actual} [{what}]"
    a, e = np.where(finite, actual, 0.0), np.where(finite, expected, 0.0)
    err = np.abs(a - e)
    if err.size == 0:
        return
    scale = float(np.max(np.abs(e)))
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    assert err[worst] <= rtol * scale, (
        f"|diff| {err[worst]:.3e} at {tuple(map(int, worst))}: got {a[worst]!r}, expected {e[worst]!r}; "
        f"allowed {rtol:g} x scale {scale:.3e} [{what}]"
    )


# ----------------------------------------------------------------------------------------------------
# 1. Finite differences: every backward against its own forward
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cfg", "reduction"), _params(CONFIGS))
def test_backward_matches_central_differences(cfg: Config, reduction: str) -> None:
    rng = _rng(cfg, reduction)
    x, target, kwargs = make_inputs(cfg, rng)
    kwargs["reduction"] = reduction
    forward, backward = _functions(cfg.loss)

    out = np.asarray(forward(x, target, **kwargs))
    expected_shape = unreduced_shape(cfg) if reduction == "none" else ()
    assert out.shape == expected_shape, (
        f"loss shape {out.shape}, but should be {expected_shape} [{cfg.label}]"
    )
    assert out.dtype == np.float64, f"loss dtype {out.dtype}, but should be float64 [{cfg.label}]"

    g = random_cotangent(rng, out.shape)
    grad_input, grad_target = backward(g, x, target, **kwargs)

    fd_input = central_differences(lambda v: float(np.sum(g * forward(v, target, **kwargs))), x)
    assert np.asarray(grad_input).dtype == np.float64, f"grad_input dtype {np.asarray(grad_input).dtype}"
    assert_close(grad_input, fd_input, rtol=FD_RTOL, what=f"grad_input vs central differences, {cfg.label}")

    if cfg.target == "index":
        assert grad_target is None, "class-index targets are not differentiable: grad_target should be None"
    else:
        fd_target = central_differences(lambda v: float(np.sum(g * forward(x, v, **kwargs))), target)
        assert_close(
            grad_target, fd_target, rtol=FD_RTOL, what=f"grad_target vs central differences, {cfg.label}"
        )


# ----------------------------------------------------------------------------------------------------
# 2. Identities
# ----------------------------------------------------------------------------------------------------
CE_INDEX_PLAIN = tuple(
    c for c in CONFIGS if c.loss == "cross_entropy" and c.target == "index" and c.smoothing == 0.0
)


@pytest.mark.parametrize(("cfg", "reduction"), _params(CE_INDEX_PLAIN))
def test_cross_entropy_is_nll_of_log_softmax(cfg: Config, reduction: str) -> None:
    """Without smoothing, torch's cross_entropy *is* nll_loss(log_softmax(x)) (torch-semantics.md, path 3)."""
    rng = _rng("ce=nll", cfg, reduction)
    x, target, kwargs = make_inputs(cfg, rng)
    kwargs["reduction"] = reduction
    logp = log_softmax(x, dim=cfg.class_dim)

    ce = cross_entropy(x, target, **kwargs)
    assert_close(ce, nll_loss(logp, target, **kwargs), rtol=IDENTITY_RTOL, what=f"forward, {cfg.label}")

    # Backward through the composition: the VJP of log_softmax maps u to u - softmax * sum(u over classes).
    g = random_cotangent(rng, np.shape(ce))
    grad_logp, _ = nll_loss_backward(g, logp, target, **kwargs)
    chained = grad_logp - softmax(x, dim=cfg.class_dim) * grad_logp.sum(axis=cfg.class_dim, keepdims=True)
    grad_x, _ = cross_entropy_backward(g, x, target, **kwargs)
    assert_close(grad_x, chained, rtol=IDENTITY_RTOL, what=f"backward, {cfg.label}")


CE_INDEX_SMOOTHED = tuple(
    c
    for c in CONFIGS
    if c.loss == "cross_entropy" and c.target == "index" and c.smoothing > 0 and c.ignore in ("-", "ii-100")
)


@pytest.mark.parametrize(("cfg", "reduction"), _params(CE_INDEX_SMOOTHED))
def test_label_smoothing_equals_smoothed_probability_targets(cfg: Config, reduction: str) -> None:
    """Index targets with smoothing eps vs probability targets q = onehot*(1-eps) + eps/C.

    Per sample the two paths agree, weights included: -sum_c w_c q_c logp_c = (1-eps) w_y (-logp_y)
    + eps/C sum_c w_c (-logp_c). They differ only in what torch's 'mean' divides by: the index path by the sum
    of w[y_n] over kept targets, the probability path by N*d1..dk; and the probability path ignores no row.
    So: with no weight and nothing ignored every reduction is equal; otherwise the index path equals the
    probability path's per-sample losses, zeroed where ignored and reduced with the index path's denominator.
    """
    rng = _rng("ls=prob", cfg, reduction)
    x, target, kwargs = make_inputs(cfg, rng)
    eps, n_classes = kwargs.pop("label_smoothing"), cfg.n_classes
    ignored = _ignored_mask(target, kwargs)
    onehot = np.moveaxis(np.eye(n_classes)[np.where(ignored, 0, target)], -1, cfg.class_dim)
    q = onehot * (1 - eps) + eps / n_classes

    index_loss = cross_entropy(x, target, reduction=reduction, label_smoothing=eps, **kwargs)
    per_sample = np.where(ignored, 0.0, cross_entropy(x, q, reduction="none", **kwargs))
    denominator = {"none": None, "sum": 1.0, "mean": mean_denominator(cfg, target, kwargs)}[reduction]
    expected = per_sample if denominator is None else per_sample.sum() / denominator
    assert_close(index_loss, expected, rtol=IDENTITY_RTOL, what=f"forward, {cfg.label}")
    if cfg.weight == "-" and cfg.ignore == "-":  # the textbook identity, reduced outputs compared directly
        prob_loss = cross_entropy(x, q, reduction=reduction)
        assert_close(index_loss, prob_loss, rtol=IDENTITY_RTOL, what=f"forward, plain, {cfg.label}")

    # Backward: the same relation for the VJP, through the probability path's 'none' backward.
    g = random_cotangent(rng, np.shape(index_loss))
    g_per_sample = np.where(ignored, 0.0, g if denominator is None else g / denominator)
    grad_index, _ = cross_entropy_backward(g, x, target, reduction=reduction, label_smoothing=eps, **kwargs)
    grad_prob, _ = cross_entropy_backward(g_per_sample, x, q, reduction="none", **kwargs)
    assert_close(grad_index, grad_prob, rtol=IDENTITY_RTOL, what=f"backward, {cfg.label}")


def _bce_identity_params() -> list:
    params = []
    for shape in SHAPES:
        for weight in ("-", "full", "last"):
            for labels, pos_weight in (("soft", "-"), ("hard", "-"), ("hard", "last")):
                for reduction in REDUCTIONS:
                    cfg = Config(
                        "binary_cross_entropy_with_logits", shape, "binary", weight, pos_weight=pos_weight
                    )
                    params.append(
                        pytest.param(cfg, labels, reduction, id=f"{cfg.label}-{labels}-{reduction}")
                    )
    return params


@pytest.mark.parametrize(("cfg", "labels", "reduction"), _bce_identity_params())
def test_bce_with_logits_is_bce_of_sigmoid(cfg: Config, labels: str, reduction: str) -> None:
    """BCEWithLogits(x, y) = BCE(sigmoid(x), y) while sigmoid does not saturate (|x| <= 4 here), and
    d/dx BCEWithLogits = dBCE/da * sigma'(x) (chain rule; sigma' = a(1-a)); the target gradients are equal.
    With hard labels, pos_weight p is a per-element BCE weight: p where y = 1, 1 where y = 0."""
    rng = _rng("bcewl=bce", cfg, labels, reduction)
    _, _, kwargs = make_inputs(cfg, rng)
    x = rng.uniform(-4.0, 4.0, cfg.shape)
    y = rng.integers(0, 2, cfg.shape).astype(np.float64) if labels == "hard" else rng.uniform(0, 1, cfg.shape)
    a = sigmoid(x)
    bce_weight = np.broadcast_to(kwargs.get("weight", 1.0), cfg.shape)
    if "pos_weight" in kwargs:
        bce_weight = bce_weight * (kwargs["pos_weight"] * y + (1 - y))

    # log(1 - a) for a = sigmoid(4) amplifies a's rounding by 1/(1-a) ~ 55: still far inside 1e-10.
    rtol = 1e-10
    logits_loss = binary_cross_entropy_with_logits(x, y, reduction=reduction, **kwargs)
    bce_loss = binary_cross_entropy(a, y, weight=bce_weight, reduction=reduction)
    assert_close(logits_loss, bce_loss, rtol=rtol, what=f"forward, {cfg.label}-{labels}")

    g = random_cotangent(rng, np.shape(logits_loss))
    grad_x, grad_y_logits = binary_cross_entropy_with_logits_backward(g, x, y, reduction=reduction, **kwargs)
    grad_a, grad_y_bce = binary_cross_entropy_backward(g, a, y, weight=bce_weight, reduction=reduction)
    assert_close(grad_x, grad_a * a * (1 - a), rtol=rtol, what=f"grad_input, {cfg.label}-{labels}")
    # With pos_weight the BCE weight above depends on y, so the two are different functions of y.
    if "pos_weight" not in kwargs:
        assert_close(grad_y_logits, grad_y_bce, rtol=rtol, what=f"grad_target, {cfg.label}-{labels}")


CE_ALL = tuple(c for c in CONFIGS if c.loss == "cross_entropy")


@pytest.mark.parametrize(("cfg", "reduction"), _params(CE_ALL, ("none",)))
def test_cross_entropy_is_unchanged_by_shifting_the_logits(cfg: Config, reduction: str) -> None:
    """softmax(z + c) = softmax(z): a per-sample constant added to every logit changes no loss nor gradient.
    Shifts up to +-1000 also make exp() overflow unless log_softmax subtracts the max, as torch does."""
    rng = _rng("shift", cfg)
    x, target, kwargs = make_inputs(cfg, rng)
    shift = np.expand_dims(rng.uniform(-1000, 1000, unreduced_shape(cfg)), cfg.class_dim)
    # ulp(1000) ~ 1e-13 per shifted logit, relative to losses and gradients of size ~1: 1e-10 is ample.
    rtol = 1e-10
    loss = cross_entropy(x, target, reduction=reduction, **kwargs)
    shifted = cross_entropy(x + shift, target, reduction=reduction, **kwargs)
    assert_close(shifted, loss, rtol=rtol, what=f"forward, {cfg.label}")
    g = random_cotangent(rng, np.shape(loss))
    grads = cross_entropy_backward(g, x, target, reduction=reduction, **kwargs)
    grads_shifted = cross_entropy_backward(g, x + shift, target, reduction=reduction, **kwargs)
    assert_close(grads_shifted[0], grads[0], rtol=rtol, what=f"grad_input, {cfg.label}")
    if cfg.target == "prob":  # d/dq = -w * logp (x) is shift-invariant too
        assert_close(grads_shifted[1], grads[1], rtol=rtol, what=f"grad_target, {cfg.label}")


def _forward_backward_matches_the_two_calls(x, target, g, kwargs: dict, what: str) -> None:
    """cross_entropy_forward_backward = (cross_entropy, *cross_entropy_backward), bitwise: the same operations."""
    loss, grad_input, grad_target = cross_entropy_forward_backward(g, x, target, **kwargs)
    expected = cross_entropy_backward(g, x, target, **kwargs)
    assert np.array_equal(loss, cross_entropy(x, target, **kwargs), equal_nan=True), f"loss differs [{what}]"
    assert np.array_equal(grad_input, expected[0], equal_nan=True), f"grad_input differs [{what}]"
    assert (grad_target is None) == (expected[1] is None), f"grad_target: one of them is None [{what}]"
    if grad_target is not None:
        assert np.array_equal(grad_target, expected[1], equal_nan=True), f"grad_target differs [{what}]"


@pytest.mark.parametrize(("cfg", "reduction"), _params(CE_ALL))
def test_cross_entropy_forward_backward_is_the_two_calls(cfg: Config, reduction: str) -> None:
    rng = _rng("forward_backward", cfg, reduction)
    x, target, kwargs = make_inputs(cfg, rng)
    if x.size > 3:  # rows with an inf and a NaN logit: NaN in both, at the same places
        x.flat[0], x.flat[-1] = np.inf, np.nan
    g = random_cotangent(rng, np.shape(cross_entropy(x, target, reduction=reduction, **kwargs)))
    _forward_backward_matches_the_two_calls(x, target, g, {"reduction": reduction, **kwargs}, cfg.label)


def test_cross_entropy_forward_backward_over_many_blocks() -> None:
    """Large enough for several blocks on every thread, float32 logits as in training, some ignored."""
    rng = _rng("forward_backward", "blocks")
    x = rng.normal(0.0, 3.0, (64, 50_000)).astype(np.float32)
    target = rng.integers(0, 50_000, 64)
    target[::5] = -100
    for kwargs in ({}, {"label_smoothing": 0.1, "weight": rng.uniform(0.5, 2.0, 50_000).astype(np.float32)}):
        _forward_backward_matches_the_two_calls(x, target, 0.5, kwargs, f"(64, 50000) float32 {list(kwargs)}")


@pytest.mark.parametrize(
    ("shape", "dim"),
    [((5,), 0), ((5,), -1), ((4, 5), 1), ((4, 5), 0), ((2, 3, 4), 1), ((2, 3, 4), -1)],
    ids=lambda v: str(v),
)
def test_softmax_sums_to_one_and_log_softmax_is_its_log(shape: tuple[int, ...], dim: int) -> None:
    x = _rng("softmax", shape, dim).normal(0.0, 3.0, shape)
    p, logp = softmax(x, dim=dim), log_softmax(x, dim=dim)
    assert (p > 0).all(), "softmax of moderate logits must be strictly positive"
    assert_close(p.sum(axis=dim), np.ones(np.delete(shape, dim)), rtol=1e-14, what="sum of softmax")
    assert_close(logp, np.log(p), rtol=IDENTITY_RTOL, what="log_softmax vs log(softmax)")
    # and it is the textbook definition along `dim` (moderate logits: the naive form is exact enough here)
    naive = np.exp(x) / np.exp(x).sum(axis=dim, keepdims=True)
    assert_close(p, naive, rtol=IDENTITY_RTOL, what=f"softmax vs exp(x) / sum exp(x), dim={dim}")


def test_softmax_and_sigmoid_do_not_overflow() -> None:
    """The stable forms: max-subtracted softmax, log_sigmoid(x) = -log1p(exp(-|x|)) + min(x, 0)."""
    x = np.array([1000.0, 0.0, -1000.0])
    assert_close(softmax(x, dim=0), [1.0, 0.0, 0.0], rtol=1e-15, what="softmax([1000, 0, -1000])")
    assert_close(
        log_softmax(x, dim=0), [0.0, -1000.0, -2000.0], rtol=1e-15, what="log_softmax([1000, 0, -1000])"
    )
    assert_close(sigmoid(x), [1.0, 0.5, 0.0], rtol=1e-15, what="sigmoid([1000, 0, -1000])")
    assert_close(
        log_sigmoid(x), [0.0, -math.log(2), -1000.0], rtol=1e-15, what="log_sigmoid([1000, 0, -1000])"
    )
    z = np.linspace(-30, 30, 13)
    assert_close(log_sigmoid(z), np.log(sigmoid(z)), rtol=1e-14, what="log_sigmoid = log(sigmoid), |z| <= 30")
    assert_close(sigmoid(z), 1 / (1 + np.exp(-z)), rtol=1e-14, what="sigmoid = 1 / (1 + exp(-z))")


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("shape", [(5,), (4, 5)], ids=str)
def test_cross_entropy_gradient_is_softmax_minus_onehot(shape: tuple[int, ...], reduction: str) -> None:
    """dCE/dz = softmax(z) - onehot(y): softmax's derivative cancels against d(-log p) (the course's point).
    Summed over a batch each row is exactly that; the mean divides it by N."""
    rng = _rng("softmax-onehot", shape, reduction)
    x = rng.normal(0.0, 2.0, shape)
    target = rng.integers(0, shape[-1], shape[:-1]).astype(np.int64)
    grad, grad_target = cross_entropy_backward(np.asarray(1.0), x, target, reduction=reduction)
    n = 1 if len(shape) == 1 else shape[0]
    expected = (softmax(x, dim=-1) - np.eye(shape[-1])[target]) / (n if reduction == "mean" else 1)
    assert_close(grad, expected, rtol=IDENTITY_RTOL, what=f"cross_entropy_backward {shape} {reduction}")
    assert grad_target is None


# ----------------------------------------------------------------------------------------------------
# 4. Reductions and torch's edge cases (docs/torch-semantics.md)
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", [pytest.param(c, id=c.label) for c in CONFIGS])
def test_reductions_are_sum_and_mean_of_none(cfg: Config) -> None:
    """sum = none.sum(); mean = sum / D with D = sum of w[y_n] over kept targets (index), N*d1..dk
    (probabilities), numel (BCE); and the backward of each reduction is the same VJP scaled the same way."""
    rng = _rng("reductions", cfg)
    x, target, kwargs = make_inputs(cfg, rng)
    forward, backward = _functions(cfg.loss)
    none = forward(x, target, reduction="none", **kwargs)
    total = forward(x, target, reduction="sum", **kwargs)
    mean = forward(x, target, reduction="mean", **kwargs)
    denominator = mean_denominator(cfg, target, kwargs)
    assert_close(total, np.sum(none), rtol=IDENTITY_RTOL, what=f"sum vs none.sum(), {cfg.label}")
    assert_close(mean, np.sum(none) / denominator, rtol=IDENTITY_RTOL, what=f"mean vs sum / D, {cfg.label}")

    g = random_cotangent(rng, ())
    grad_none = backward(np.full(np.shape(none), g), x, target, reduction="none", **kwargs)
    grad_sum = backward(g, x, target, reduction="sum", **kwargs)
    grad_mean = backward(g, x, target, reduction="mean", **kwargs)
    for k, stage in enumerate(("grad_input", "grad_target")):
        if grad_none[k] is None:
            assert grad_sum[k] is None
            assert grad_mean[k] is None
            continue
        assert_close(grad_sum[k], grad_none[k], rtol=IDENTITY_RTOL, what=f"{stage} sum vs none, {cfg.label}")
        assert_close(
            grad_mean[k], grad_sum[k] / denominator, rtol=IDENTITY_RTOL, what=f"{stage} mean, {cfg.label}"
        )


EMPTY_CASES = [
    pytest.param("cross_entropy", (0, 3), "index", {}, id="cross_entropy-index"),
    pytest.param("cross_entropy", (0, 3), "index", {"label_smoothing": 0.1}, id="cross_entropy-index-ls0.1"),
    pytest.param("cross_entropy", (0, 3), "prob", {}, id="cross_entropy-prob"),
    pytest.param("nll_loss", (0, 3), "index", {}, id="nll_loss"),
    pytest.param(
        "nll_loss", (0, 3, 2), "index", {"weight": np.array([1.0, 2.0, 3.0])}, id="nll_loss-w-(0,3,2)"
    ),
    pytest.param("binary_cross_entropy", (0, 3), "binary", {}, id="binary_cross_entropy"),
    pytest.param(
        "binary_cross_entropy_with_logits", (0,), "binary", {}, id="binary_cross_entropy_with_logits"
    ),
]


@pytest.mark.parametrize(("loss", "shape", "target_kind", "kwargs"), EMPTY_CASES)
def test_empty_batch(loss: str, shape: tuple[int, ...], target_kind: str, kwargs: dict) -> None:
    """torch: an empty input gives 'mean' NaN (0/0), 'sum' 0 and 'none' an empty array."""
    forward, _ = _functions(loss)
    x = np.zeros(shape) if loss != "binary_cross_entropy" else np.full(shape, 0.5)
    if target_kind == "index":
        target = np.zeros((shape[0], *shape[2:]), dtype=np.int64)
    else:
        target = np.zeros(shape)
    assert np.isnan(forward(x, target, reduction="mean", **kwargs)), "empty mean should be NaN (0/0)"
    assert forward(x, target, reduction="sum", **kwargs) == 0.0
    none = np.asarray(forward(x, target, reduction="none", **kwargs))
    expected_shape = shape if target_kind == "binary" else (shape[0], *shape[2:])  # the class dim drops
    assert none.shape == expected_shape, f"'none' shape {none.shape}, but should be {expected_shape}"


@pytest.mark.parametrize(
    ("loss", "kwargs", "target"),
    [
        pytest.param("nll_loss", {}, [-100, -100, -100], id="nll_loss-ii-100"),
        pytest.param("nll_loss", {"ignore_index": 2}, [2, 2, 2], id="nll_loss-ii2"),
        pytest.param("cross_entropy", {}, [-100, -100, -100], id="cross_entropy-ii-100"),
        pytest.param("cross_entropy", {"label_smoothing": 0.1}, [-100, -100, -100], id="cross_entropy-ls0.1"),
        # weights of the kept targets summing to 0 is the same 0/0 as ignoring everything
        pytest.param("nll_loss", {"weight": np.array([0.0, 1.0, 2.0])}, [0, 0, 0], id="nll_loss-zero-weight"),
        pytest.param(
            "cross_entropy", {"weight": np.array([0.0, 1.0, 2.0])}, [0, 0, 0], id="cross_entropy-zero-weight"
        ),
    ],
)
def test_all_ignored(loss: str, kwargs: dict, target: list[int]) -> None:
    """torch: nothing kept (or the kept weights sum to 0) -> 'mean' 0/0 = NaN, 'sum' 0, 'none' all zeros."""
    forward, _ = _functions(loss)
    x = _rng("all-ignored", loss, repr(kwargs)).normal(size=(3, 3))
    y = np.array(target, dtype=np.int64)
    assert np.isnan(forward(x, y, reduction="mean", **kwargs)), "mean over nothing kept should be NaN"
    assert forward(x, y, reduction="sum", **kwargs) == 0.0
    assert_close(forward(x, y, reduction="none", **kwargs), np.zeros(3), rtol=0, what="'none', all ignored")


def test_smoothed_mean_over_zero_total_weight_is_nan() -> None:
    """torch divides the NLL part by the kept targets' total weight on its own: 0 / 0 = NaN, even though the
    smoothing term over the other classes is not 0."""
    x = _rng("zero-weight-smoothing").normal(size=(2, 3))
    loss = cross_entropy(x, np.array([0, 0]), weight=np.array([0.0, 1.0, 2.0]), label_smoothing=0.1)
    assert np.isnan(loss)


@pytest.mark.parametrize("shape", [(0,), (2, 0), (0, 0), (2, 0, 1, 1)], ids=str)
@pytest.mark.parametrize("weighted", [False, True], ids=["", "w"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_label_smoothing_without_classes(shape: tuple[int, ...], weighted: bool, reduction: str) -> None:
    """An input of C = 0 classes with label smoothing eps > 0. Class indices (all ignored: no class is in range):
    torch adds eps / C = inf times the smoothing term, a sum over no classes (0), and inf * 0 is NaN in every
    element and in every reduction, a 'sum' of no elements included. Probability targets: q (1 - eps) + eps / C
    has no elements, so the loss is the unsmoothed one, -(a sum over no classes) = -0 per element. Either way
    the gradients are empty, shaped like the input."""
    x = np.zeros(shape)
    loss_shape = shape[1:] if len(shape) == 1 else shape[:1] + shape[2:]
    kwargs = {"reduction": reduction, "label_smoothing": 0.1}
    if weighted:
        kwargs["weight"] = np.zeros(0)
    g = np.ones(loss_shape) if reduction == "none" else 1.0

    y = np.full(loss_shape, -100, dtype=np.int64)
    loss = cross_entropy(x, y, **kwargs)
    assert loss.shape == (loss_shape if reduction == "none" else ())
    assert np.isnan(loss).all()
    grad_input, grad_target = cross_entropy_backward(g, x, y, **kwargs)
    assert grad_input.shape == shape
    assert grad_target is None

    q = np.zeros(shape)
    with np.errstate(divide="ignore"):  # log_softmax takes the log of a sum over no classes, log(0)
        loss = cross_entropy(x, q, **kwargs)
        grad_input, grad_target = cross_entropy_backward(g, x, q, **kwargs)
    expected = {"none": np.zeros(loss_shape), "sum": 0.0, "mean": np.nan}[reduction]  # mean: 0 / (numel / C)
    assert_close(loss, expected, rtol=0, what=f"probability targets, C = 0, {reduction}")
    assert grad_input.shape == grad_target.shape == shape


def _bce_with_logits_exact(x: float, y: float, p: float) -> tuple[float, float, float, float]:
    """In 50-digit decimal arithmetic: the loss l = -(p y log sigma(x) + (1 - y) log sigma(-x)), its d/dy
    h = log sigma(-x) - p log sigma(x), and their condition numbers in x and y,
    (|x dl/dx| + |y dl/dy|) / |l| and |x dh/dx| / |h| (how many eps float64 inputs may move them)."""
    with decimal.localcontext() as context:
        context.prec = 50
        x_, y_, p_ = Decimal(x), Decimal(y), Decimal(p)

        def sigmoid_(z: Decimal) -> Decimal:
            return 1 / (1 + (-z).exp())

        def log_sigmoid_(z: Decimal) -> Decimal:
            return -(1 + (-z).exp()).ln()

        loss = -(p_ * y_ * log_sigmoid_(x_) + (1 - y_) * log_sigmoid_(-x_))
        h = log_sigmoid_(-x_) - p_ * log_sigmoid_(x_)
        dl_dx = (1 - y_) * sigmoid_(x_) - p_ * y_ * sigmoid_(-x_)
        dh_dx = -sigmoid_(x_) - p_ * sigmoid_(-x_)
        kappa_loss = (abs(x_ * dl_dx) + abs(y_ * h)) / abs(loss)
        return float(loss), float(h), float(kappa_loss), float(abs(x_ * dh_dx) / abs(h))


@pytest.mark.parametrize("pos_weight", [None, 0.875, 1.0625, 3.0], ids=["", "pw0.875", "pw1.0625", "pw3"])
def test_bce_with_logits_is_accurate_for_targets_outside_0_1(pos_weight: float | None) -> None:
    """Targets outside [0, 1] (torch accepts them): p y log sigma(x) and (1 - y) log sigma(-x) then have opposite
    signs, e.g. 7.3 and -8.0 for y = -10.58 at x ~ 0, where the loss is 0.69; and the target's gradient
    log sigma(-x) - p log sigma(x) is 0.69 - 0.74 = -0.04 at x ~ 0 for p = 1.0625. Computed as written, each
    loses the digits the two terms share. The loss and the gradient must be within 2 eps plus their condition
    number (in x and y) of the exact value: as accurate as float64 inputs allow."""
    xs = np.array([-7.821699578063e-05, 1.3e-4, -2.9e-4, 4.1e-5, -6e-6, -0.5, 0.8, -3.0, 2.5])
    ys = np.array([-10.582142185059988, 12.3, -3.7, 4.2, -0.75, 1.5, 7.1, -21.0])
    x, y = np.meshgrid(xs, ys)
    p = None if pos_weight is None else np.full(x.shape, pos_weight)
    weight = 1.0 if pos_weight is None else pos_weight
    exact = np.array(
        [_bce_with_logits_exact(a, b, weight) for a, b in zip(x.flat, y.flat, strict=True)]
    ).reshape((*x.shape, 4))
    loss = binary_cross_entropy_with_logits(x, y, reduction="none", pos_weight=p)
    _, grad_target = binary_cross_entropy_with_logits_backward(
        np.ones(x.shape), x, y, reduction="none", pos_weight=p
    )
    eps = np.finfo(np.float64).eps
    for got, want, kappa, what in (
        (loss, exact[..., 0], exact[..., 2], "loss"),
        (grad_target, exact[..., 1], exact[..., 3], "grad_target"),
    ):
        error = np.abs(got - want) / np.abs(want) / eps
        worst = np.unravel_index(int(np.argmax(error - kappa)), error.shape)
        assert error[worst] <= 2 + kappa[worst], (
            f"{what}: {error[worst]:.1f} eps off (condition number {kappa[worst]:.2g}) at x = {x[worst]!r}, "
            f"y = {y[worst]!r}: got {got[worst]!r}, exact {want[worst]!r}"
        )


def test_bce_clamps_log_at_minus_100_but_not_the_gradient() -> None:
    """torch: the forward clamps log(x) and log(1-x) at -100 (so x=0, y=1 costs 100, and 0 * log 0 is 0,
    not NaN); the backward divides by max(x(1-x), 1e-12) (-1e12 there); the target's, -logit(x), is +-inf."""
    x = np.array([0.0, 1.0, 0.0, 1.0])
    y = np.array([1.0, 0.0, 0.0, 1.0])
    assert_close(
        binary_cross_entropy(x, y, reduction="none"), [100.0, 100.0, 0.0, 0.0], rtol=0, what="BCE at 0 and 1"
    )
    assert binary_cross_entropy(x[:1], y[:1]) == 100.0
    grad_x, grad_y = binary_cross_entropy_backward(np.ones(4), x, y, reduction="none")
    # torch float64 gives -1.000000004e12: its 1e-12 is a float32 constant (9.99999996e-13). Both pass.
    assert_close(grad_x, [-1e12, 1e12, 0.0, 0.0], rtol=1e-8, what="BCE grad_input at 0 and 1")
    assert_close(grad_y, [np.inf, -np.inf, np.inf, -np.inf], rtol=0, what="BCE grad_target at 0 and 1")


MODULES = {
    "cross_entropy": "CrossEntropyLoss",
    "nll_loss": "NLLLoss",
    "binary_cross_entropy": "BCELoss",
    "binary_cross_entropy_with_logits": "BCEWithLogitsLoss",
}


# one reduction per config, rotated: the modules only forward their options, every option is still reached
@pytest.mark.parametrize(
    ("cfg", "reduction"),
    [pytest.param(c, REDUCTIONS[i % 3], id=f"{c.label}-{REDUCTIONS[i % 3]}") for i, c in enumerate(CONFIGS)],
)
def test_modules_forward_their_options_to_the_functions(cfg: Config, reduction: str) -> None:
    """CrossEntropyLoss(weight, *, ignore_index=, reduction=, ...)(x, y) is the functional call, options and
    all (a dropped pos_weight or label_smoothing would show here), and so is its backward."""
    rng = _rng("modules", cfg, reduction)
    x, target, kwargs = make_inputs(cfg, rng)
    kwargs["reduction"] = reduction
    forward, backward = _functions(cfg.loss)
    module = getattr(reference, MODULES[cfg.loss])(**kwargs)
    expected = forward(x, target, **kwargs)
    assert_close(module(x, target), expected, rtol=0, what=f"{MODULES[cfg.loss]} forward, {cfg.label}")
    g = random_cotangent(rng, np.shape(expected))
    for got, want, stage in zip(
        module.backward(g, x, target), backward(g, x, target, **kwargs), ("in", "tgt"), strict=True
    ):
        if want is None:
            assert got is None
        else:
            assert_close(got, want, rtol=0, what=f"{MODULES[cfg.loss]} backward {stage}, {cfg.label}")


def test_reference_does_not_import_torch() -> None:
    """The oracle must not lean on the library it judges (design.md): importing it loads no torch."""
    code = "import sys, reference; sys.exit('torch' in sys.modules)"
    root = Path(reference.__file__).resolve().parent.parent
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0


# ----------------------------------------------------------------------------------------------------
# 3. The worked examples of the course material (docs/course-material.txt, Spanish slides)
# ----------------------------------------------------------------------------------------------------
def test_deck_softmax_of_three_logits() -> None:
    """Deck: e^1.3 + e^0.2 + e^-2.1 = 5.013155.., e^1.3/5.013155 = 0.731.., 0.243.., 0.024.. (cut off)."""
    z = np.array([1.3, 0.2, -2.1])
    p = softmax(z, dim=0)
    # logsumexp recovered from the reference: z - log_softmax(z) is log(sum exp z) in every slot
    sum_exp = np.exp(z - log_softmax(z, dim=0))
    assert_close(sum_exp, np.full(3, 5.013155), rtol=2e-7, what="sum of exp = 5.013155..")
    deck = np.array([0.731, 0.243, 0.024])
    assert ((p - deck >= 0) & (p - deck < 1e-3)).all(), f"softmax {p} should truncate to the deck's {deck}"
    assert_close(p.sum(), 1.0, rtol=1e-15, what="softmax sums to 1 (deck: 0.024 + 0.243 + 0.731 = 1)")


def test_deck_batch_of_three() -> None:
    """Deck: true-class probabilities 0.39 (gato), 0.17 (perro), 0.41 (ave); losses 0.9416, 1.7719, 0.8915;
    mean 1.2.

    The deck shows the whole row only for gato ([0.39, 0.28, 0.33]); the other rows are ours (each sums to 1)
    and only their true-class entry matters. The deck truncates to 4 decimals: -ln 0.17 = 1.771957 and
    -ln 0.41 = 0.891598 round to 1.7720 and 0.8916, so the check is 0 <= value - deck < 1e-4.
    The mean is 1.201721 (1.201667 from the deck's own truncated values): its "1.2" is right to one decimal.
    """
    probs = np.array([[0.39, 0.28, 0.33], [0.45, 0.17, 0.38], [0.30, 0.29, 0.41]])
    y = np.array([0, 1, 2])
    losses = nll_loss(np.log(probs), y, reduction="none")
    deck = np.array([0.9416, 1.7719, 0.8915])
    assert ((losses - deck >= 0) & (losses - deck < 1e-4)).all(), f"{losses} should truncate to {deck}"
    mean = nll_loss(np.log(probs), y)
    assert_close(mean, -(math.log(0.39) + math.log(0.17) + math.log(0.41)) / 3, rtol=1e-14, what="batch mean")
    assert mean == pytest.approx(1.201721, abs=5e-7)
    assert round(float(mean), 1) == 1.2
    # The rows sum to 1, so their logs are already log_softmax: cross_entropy on them is the same loss.
    assert_close(cross_entropy(np.log(probs), y), mean, rtol=IDENTITY_RTOL, what="cross_entropy on log-probs")


@pytest.mark.parametrize(("y", "a"), [(0.0, 0.001), (1.0, 0.999)])
def test_deck_bce_is_about_zero_when_confidently_right(y: float, a: float) -> None:
    """Deck: 'Caso y = 0, a = 0.001' and 'Caso y = 1, a = 0.999' give C ~ 0: exactly -ln(0.999) = 0.0010005.
    Confidently wrong (the other label) costs -ln(0.001) = 6.9078: the contrast is the point of the slide."""
    right = binary_cross_entropy(np.array([a]), np.array([y]))
    wrong = binary_cross_entropy(np.array([a]), np.array([1.0 - y]))
    assert_close(right, -math.log(0.999), rtol=1e-12, what=f"BCE(y={y}, a={a})")
    assert_close(wrong, -math.log(0.001), rtol=1e-12, what=f"BCE(y={1 - y}, a={a})")


@pytest.mark.parametrize(
    ("w", "b", "a_deck"),
    [pytest.param(0.6, 0.9, 0.82, id="good-weights"), pytest.param(2.0, 2.0, 0.98, id="bad-weights")],
)
def test_deck_single_neuron_gradient_is_sigma_minus_y(w: float, b: float, a_deck: float) -> None:
    """Deck: x = 1, y = 0, z = wx + b, a = sigma(z); with BCE, dC/dz = sigma(z) - y ('sin sigma'(z)'),
    while MSE's gradient (a - y) sigma'(z) vanishes when the neuron saturates (the 'bad weights' slides).

    Deck arithmetic error: for the good weights it writes C = (0 - 0.82)^2 / 2 = 0.0162. It is 0.3362
    (0.3342 with the unrounded a = 0.8176); 0.0162 = (1 - 0.82)^2 / 2, i.e. the slide used y = 1.
    """
    x, y = 1.0, 0.0
    z = np.array([w * x + b])
    a = sigmoid(z)
    assert round(float(a[0]), 2) == a_deck
    if w == 0.6:
        assert z[0] == pytest.approx(1.5)
        mse = (y - a[0]) ** 2 / 2
        assert mse == pytest.approx(0.334214, abs=5e-7), "MSE at a = sigma(1.5); the deck's 0.0162 is wrong"
        assert (y - a_deck) ** 2 / 2 == pytest.approx(0.3362), (
            "the deck's own rounded a gives 0.3362, not 0.0162"
        )

    target, one = np.array([y]), np.asarray(1.0)
    grad_z, _ = binary_cross_entropy_with_logits_backward(one, z, target)
    grad_a, _ = binary_cross_entropy_backward(one, a, target)
    sigma_prime = a * (1 - a)
    assert_close(grad_z, a - y, rtol=1e-14, what="dBCEWithLogits/dz = sigma(z) - y")
    assert_close(grad_a * sigma_prime, a - y, rtol=1e-12, what="dBCE/da * sigma'(z) = sigma(z) - y")
    # dC/dw = x (sigma(z) - y) with x = 1; MSE's (a - y) sigma'(z) is 5.6x smaller for the good weights and
    # 56x smaller for the bad ones (z = 4): why MSE learns slowly from a saturated wrong start.
    mse_grad = (a - y) * sigma_prime
    assert grad_z[0] / mse_grad[0] == pytest.approx(1 / sigma_prime[0])
    if w == 2.0:
        assert grad_z[0] > 50 * mse_grad[0]


@pytest.mark.parametrize(
    ("q", "likelihood"),
    [
        # Deck error: it writes L = (4/5)^2 (1/3)^3 = 0.023 for q_B = 1/5; with q_B = 1/5, L = 0.64 * 0.008.
        pytest.param((0.8, 0.2), 0.00512, id="modelo-malo-q0.8"),
        pytest.param((0.5, 0.5), 0.03125, id="modelo-bueno-q0.5"),  # deck: (2.5/5)^2 (2.5/5)^3 = 0.031
    ],
)
def test_deck_five_balls_likelihood(q: tuple[float, float], likelihood: float) -> None:
    """Deck: five draws, 2 red and 3 blue (p = 2/5, 3/5). L = prod_i q_i^(N p_i) = exp(-summed NLL),
    and log(L) / N = sum_i p_i log q_i, i.e. minus the cross-entropy of p against q."""
    draws = np.array([0, 0, 1, 1, 1])  # red = 0, blue = 1
    log_q = np.log(np.array(q))
    nll = nll_loss(np.tile(log_q, (5, 1)), draws, reduction="sum")
    assert_close(math.exp(-nll), likelihood, rtol=1e-12, what=f"likelihood for q = {q}")
    # cross_entropy with the empirical distribution as a probability target: -(1/N) log L
    ce = cross_entropy(log_q, np.array([0.4, 0.6]))
    assert_close(ce, nll / 5, rtol=1e-12, what=f"cross-entropy(p, q) = NLL / N for q = {q}")


def test_deck_better_model_is_more_likely() -> None:
    """Deck: 'more likely' — q = (0.5, 0.5) beats q = (0.8, 0.2) (0.03125 vs 0.00512; with the deck's slip
    (1/3)^3 it was 0.023 vs 0.031, the same verdict). In NLL terms the better model has the lower loss."""
    draws = np.array([0, 0, 1, 1, 1])
    losses = [nll_loss(np.tile(np.log(q), (5, 1)), draws) for q in ((0.8, 0.2), (0.5, 0.5), (0.4, 0.6))]
    assert losses[1] < losses[0]
    # and the maximum-likelihood model is the empirical distribution itself
    assert losses[2] < losses[1]


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_an_ignored_row_has_a_zero_gradient_whatever_its_logits(reduction, label_smoothing):
    # The loss does not depend on an ignored row, so its gradient is 0, also where its softmax is undefined (all -inf,
    # or +inf): the formula's 0 * NaN there would be NaN (torch's registered deviation, not the truth).
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.5, 1.0, 2.0], [np.inf, 0.0, 1.0]])
    t = np.array([-100, 1, -100])
    g = np.ones(3) if reduction == "none" else 1.0
    options = {"reduction": reduction, "label_smoothing": label_smoothing}
    grad = cross_entropy_backward(g, x, t, **options)[0]
    assert np.array_equal(grad[[0, 2]], np.zeros((2, 3)))
    assert np.isfinite(grad[1]).all()
    assert np.isfinite(cross_entropy(x, t, **options)).all()
    grad2 = reference.cross_entropy_double_backward(np.ones(x.shape), g, x, t, **options)[1]
    assert np.array_equal(grad2[[0, 2]], np.zeros((2, 3)))


_CROSS_ENTROPY_BAD_CALLS = [c for c in bad_calls.TABLE if c.loss == "cross_entropy"]


@pytest.mark.parametrize("bad", _CROSS_ENTROPY_BAD_CALLS, ids=[c.id for c in _CROSS_ENTROPY_BAD_CALLS])
def test_forward_backward_rejects_like_its_two_calls(bad) -> None:
    """``cross_entropy_forward_backward`` (the reference's one-pass extra) raises what ``cross_entropy`` then
    ``cross_entropy_backward`` raise, for every bad call of the error table: class and message."""
    inputs, kwargs = bad.build()
    g = 1.0 if bad.grad_output is None else bad.grad_output

    def two_calls() -> None:
        cross_entropy(*inputs, **kwargs)
        cross_entropy_backward(g, *inputs, **kwargs)

    with pytest.raises(Exception) as expected:
        two_calls()
    with pytest.raises(type(expected.value)) as got:
        cross_entropy_forward_backward(g, *inputs, **kwargs)
    assert str(got.value) == str(expected.value), f"one call: {got.value}; two: {expected.value}"
