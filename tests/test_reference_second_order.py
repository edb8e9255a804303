"""Checks of the reference's double backward that do not trust torch (no torch import here, on purpose).

``<loss>_double_backward(v, g, x, y, **options) -> (grad_grad_output, grad2_input, grad2_target)`` are the
derivatives of phi(g, x, y) = <grad_input(g, x, y), v>, with grad_input as ``<loss>_backward`` computes it. They
are held to that backward itself, already proven against its forward (test_reference.py):

- finite differences: the directional derivative of phi along a random direction in x, in y (where the target is
  differentiable) and in g, over test_reference.py's whole option table and every reduction;
- symmetry: grad2_input is a Hessian-vector product, so <H v1, v2> = <H v2, v1>;
- linearity: grad2_input and grad2_target are linear in g, grad_grad_output does not depend on it, and all three
  are linear in v;
- edge cases: empty inputs, every target ignored, a zero total weight, no classes, BCE's floor, confident rows;
- the hand-checkable examples of the docstrings;
- error parity: every bad call of the error table raises from the double backward what it raises from the
  backward, and a grad_grad_input of the wrong shape raises, after every other check.
"""

from __future__ import annotations

import doctest
import sys
from collections.abc import Callable
from decimal import Decimal, localcontext

import numpy as np
import pytest

import reference
from parity_tests.harness.bad_calls import TABLE, BadCall
from reference.binary_cross_entropy import GRAD_EPS
from tests.test_reference import (
    CONFIGS,
    EMPTY_CASES,
    FD_STEP,
    IDENTITY_RTOL,
    REDUCTIONS,
    Config,
    _params,
    _rng,
    assert_close,
    make_inputs,
    random_cotangent,
    unreduced_shape,
)

# Central differences of phi along a direction u with step h: the truncation error is ~h^2 |phi'''| / 6, at most
# ~1e-9 of the derivative here (BCE's slope has third derivatives ~1/x^4 ~ 1e5 at x = 0.05), and the rounding error
# ~eps |phi| / h ~ 2e-10 of the terms of phi. 1e-6 of the directional derivative's own terms (sum |grad| |u|)
# leaves over 100x headroom, and a real bug (a lost term, a sign, a denominator) is an O(1) part of those terms.
FD_RTOL = 1e-6


def _functions(loss: str) -> tuple[Callable, Callable]:
    return getattr(reference, f"{loss}_backward"), getattr(reference, f"{loss}_double_backward")


def _case(
    cfg: Config, reduction: str, *key: object
) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray, np.ndarray]:
    """(input, target, options, grad_output, grad_grad_input) of one config, seeded from its id and ``key``."""
    rng = _rng("second-order", *key, cfg, reduction)
    x, target, kwargs = make_inputs(cfg, rng)
    kwargs["reduction"] = reduction
    g = random_cotangent(rng, unreduced_shape(cfg) if reduction == "none" else ())
    return x, target, kwargs, g, random_cotangent(rng, x.shape)


def _dot(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """<a, b> and the size of its terms, sum |a| |b> (the scale a rounding or FD error is relative to)."""
    return float(np.sum(a * b)), float(np.sum(np.abs(a) * np.abs(b)))


def _assert_directional(phi: Callable[[float], float], grad: np.ndarray, u: np.ndarray, what: str) -> None:
    """(phi(h) - phi(-h)) / 2h, phi(t) = phi at the point moved by t u, against <grad, u>."""
    fd = (phi(FD_STEP) - phi(-FD_STEP)) / (2 * FD_STEP)
    expected, scale = _dot(grad, u)
    assert abs(fd - expected) <= FD_RTOL * scale, (
        f"central difference {fd!r}, but <grad, u> = {expected!r} (|diff| {abs(fd - expected):.3e}, allowed "
        f"{FD_RTOL:g} x {scale:.3e}) [{what}]"
    )


# ----------------------------------------------------------------------------------------------------
# 1. Finite differences of the backward
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cfg", "reduction"), _params(CONFIGS))
def test_double_backward_matches_directional_differences(cfg: Config, reduction: str) -> None:
    x, target, kwargs, g, v = _case(cfg, reduction)
    backward, double_backward = _functions(cfg.loss)
    grad_grad_output, grad2_input, grad2_target = double_backward(v, g, x, target, **kwargs)
    for name, got, like in (("grad_grad_output", grad_grad_output, g), ("grad2_input", grad2_input, x)):
        got = np.asarray(got)
        assert got.shape == like.shape, f"{name}: shape {got.shape}, but should be {like.shape} [{cfg.label}]"
        assert got.dtype == np.float64, f"{name}: dtype {got.dtype}, but should be float64 [{cfg.label}]"

    def phi(g_: np.ndarray, x_: np.ndarray, target_: np.ndarray) -> float:
        return float(np.sum(backward(g_, x_, target_, **kwargs)[0] * v))

    rng = _rng("directions", cfg, reduction)
    u = random_cotangent(rng, x.shape)
    _assert_directional(
        lambda t: phi(g, x + t * u, target), grad2_input, u, f"input, {cfg.label}-{reduction}"
    )
    u = random_cotangent(rng, g.shape)
    _assert_directional(
        lambda t: phi(g + t * u, x, target), grad_grad_output, u, f"grad_output, {cfg.label}-{reduction}"
    )
    if cfg.target == "index":
        assert grad2_target is None, "class-index targets are not differentiable: grad2_target should be None"
    else:
        assert grad2_target.shape == target.shape, f"grad2_target: shape {grad2_target.shape} [{cfg.label}]"
        assert grad2_target.dtype == np.float64, f"grad2_target: dtype {grad2_target.dtype} [{cfg.label}]"
        u = random_cotangent(rng, target.shape)
        _assert_directional(
            lambda t: phi(g, x, target + t * u), grad2_target, u, f"target, {cfg.label}-{reduction}"
        )


# ----------------------------------------------------------------------------------------------------
# 2. Identities: a symmetric Hessian, linearity
# ----------------------------------------------------------------------------------------------------
# Only cross_entropy's Hessian has off-diagonal entries (softmax couples the classes); the elementwise losses' is
# diagonal and nll_loss's is 0, symmetric whatever their code does.
CE_CONFIGS = tuple(c for c in CONFIGS if c.loss == "cross_entropy")


@pytest.mark.parametrize(("cfg", "reduction"), _params(CE_CONFIGS))
def test_hessian_is_symmetric(cfg: Config, reduction: str) -> None:
    """grad2_input(v) = H v with H = d grad_input / d x, the Hessian of <g, loss>: <H v1, v2> = <H v2, v1>."""
    x, target, kwargs, g, v1 = _case(cfg, reduction)
    v2 = random_cotangent(_rng("v2", cfg, reduction), x.shape)
    double_backward = _functions(cfg.loss)[1]
    h_v1 = double_backward(v1, g, x, target, **kwargs)[1]
    h_v2 = double_backward(v2, g, x, target, **kwargs)[1]
    (a, scale_a), (b, scale_b) = _dot(h_v1, v2), _dot(h_v2, v1)
    # two float64 sums of the same terms in another order: a few ulps of their size, 1e-12 is thousands of them
    assert abs(a - b) <= IDENTITY_RTOL * max(scale_a, scale_b), f"<H v1, v2> = {a!r}, <H v2, v1> = {b!r}"


@pytest.mark.parametrize(("cfg", "reduction"), _params(CONFIGS))
def test_double_backward_is_linear(cfg: Config, reduction: str) -> None:
    """phi is linear in g and in v: so are grad2_input and grad2_target in g (grad_grad_output does not depend on
    g at all), and all three in v. The weights (0.75, -1.25) do not sum to 1: an affine fault shows."""
    x, target, kwargs, g1, v1 = _case(cfg, reduction)
    rng = _rng("linear", cfg, reduction)
    g2, v2 = random_cotangent(rng, g1.shape), random_cotangent(rng, v1.shape)
    double_backward = _functions(cfg.loss)[1]
    a, b = 0.75, -1.25

    def outputs(v: np.ndarray, g: np.ndarray) -> tuple:
        return double_backward(v, g, x, target, **kwargs)

    for argument, mixed, first, second in (
        ("grad_output", outputs(v1, a * g1 + b * g2), outputs(v1, g1), outputs(v1, g2)),
        ("grad_grad_input", outputs(a * v1 + b * v2, g1), outputs(v1, g1), outputs(v2, g1)),
    ):
        for k, stage in enumerate(("grad_grad_output", "grad2_input", "grad2_target")):
            if mixed[k] is None:
                assert first[k] is None
                assert second[k] is None
                continue
            what = f"{stage} in {argument}, {cfg.label}-{reduction}"
            if argument == "grad_output" and k == 0:
                assert_close(mixed[k], first[k], rtol=IDENTITY_RTOL, what=what)
                assert_close(second[k], first[k], rtol=IDENTITY_RTOL, what=what)
            else:  # a combination of float64 results: a few ulps of their scale, 1e-12 is ample
                assert_close(mixed[k], a * first[k] + b * second[k], rtol=IDENTITY_RTOL, what=what)


# ----------------------------------------------------------------------------------------------------
# 3. Edge cases: nothing to differentiate, NaN where the backward has NaN, the BCE floor, confident rows
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("loss", "shape", "target_kind", "kwargs"), EMPTY_CASES)
def test_empty_input(
    loss: str, shape: tuple[int, ...], target_kind: str, kwargs: dict, reduction: str
) -> None:
    """An empty batch: the backward is empty whatever g and x, so every derivative of phi is 0 ('mean' too: its
    0/0 is in the loss, not in the empty gradient) or empty."""
    x = np.zeros(shape) if loss != "binary_cross_entropy" else np.full(shape, 0.5)
    target = np.zeros((shape[0], *shape[2:]), dtype=np.int64) if target_kind == "index" else np.zeros(shape)
    loss_shape = target.shape if target_kind != "prob" else (shape[0], *shape[2:])
    g = np.ones(loss_shape) if reduction == "none" else 1.0
    grad_grad_output, grad2_input, grad2_target = _functions(loss)[1](
        np.zeros(shape), g, x, target, reduction=reduction, **kwargs
    )
    expected = np.zeros(loss_shape) if reduction == "none" else 0.0
    assert_close(grad_grad_output, expected, rtol=0, what=f"grad_grad_output, {loss} {shape} {reduction}")
    assert grad2_input.shape == shape
    assert grad2_target is None if target_kind == "index" else grad2_target.shape == shape


ALL_IGNORED = [
    pytest.param("nll_loss", {}, [-100, -100, -100], id="nll_loss-ii-100"),
    pytest.param("nll_loss", {"ignore_index": 2}, [2, 2, 2], id="nll_loss-ii2"),
    pytest.param("cross_entropy", {}, [-100, -100, -100], id="cross_entropy-ii-100"),
    pytest.param("cross_entropy", {"label_smoothing": 0.1}, [-100, -100, -100], id="cross_entropy-ls0.1"),
    pytest.param(
        "cross_entropy",
        {"weight": np.array([1.0, 2.0, 3.0]), "label_smoothing": 1.0, "ignore_index": 1},
        [1, 1, 1],
        id="cross_entropy-w-ls1-ii1",
    ),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("loss", "kwargs", "target"), ALL_IGNORED)
def test_all_ignored_is_zero(loss: str, kwargs: dict, target: list[int], reduction: str) -> None:
    """Every target ignored: the backward is exactly 0 for every g and x (the mean's 0/0 is in the loss only), so
    every derivative of phi is 0, 'mean' included."""
    rng = _rng("all-ignored", loss, repr(kwargs), reduction)
    x, v = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    y = np.array(target, dtype=np.int64)
    g = random_cotangent(rng, (3,) if reduction == "none" else ())
    backward, double_backward = _functions(loss)
    assert_close(
        backward(g, x, y, reduction=reduction, **kwargs)[0], np.zeros((3, 3)), rtol=0, what="backward"
    )
    grad_grad_output, grad2_input, _ = double_backward(v, g, x, y, reduction=reduction, **kwargs)
    assert_close(grad_grad_output, np.zeros(g.shape), rtol=0, what=f"grad_grad_output, {loss} {reduction}")
    assert_close(grad2_input, np.zeros((3, 3)), rtol=0, what=f"grad2_input, {loss} {reduction}")


@pytest.mark.parametrize(
    ("loss", "smoothing"), [("nll_loss", 0.0), ("cross_entropy", 0.0), ("cross_entropy", 0.1)], ids=str
)
def test_zero_total_weight_mean_is_nan_where_the_backward_is(loss: str, smoothing: float) -> None:
    """Kept targets whose weights sum to 0, 'mean': the backward is 0 * (g / 0) = NaN on their rows (it is
    non-finite whatever g), so grad_grad_output is NaN, and so is grad2_input wherever the backward depends on x
    (cross_entropy: exactly the backward's NaN pattern); nll_loss's backward does not depend on x: 0 there."""
    kwargs: dict = {"weight": np.array([0.0, 1.0, 2.0])}
    if smoothing:
        kwargs["label_smoothing"] = smoothing
    rng = _rng("zero-weight", loss, smoothing)
    x, v, y = rng.normal(size=(3, 3)), rng.normal(size=(3, 3)), np.array([0, 0, -100])
    backward, double_backward = _functions(loss)
    grad_input = backward(0.5, x, y, **kwargs)[0]
    grad_grad_output, grad2_input, _ = double_backward(v, 0.5, x, y, **kwargs)
    assert np.isnan(grad_grad_output)
    assert np.isnan(grad_input[:2]).any()
    assert not np.isnan(grad_input[2]).any()
    if loss == "nll_loss":
        assert_close(grad2_input, np.zeros((3, 3)), rtol=0, what="nll_loss grad2_input")
    else:
        assert np.array_equal(np.isnan(grad2_input), np.isnan(grad_input)), f"{grad2_input} vs {grad_input}"


@pytest.mark.parametrize("shape", [(0,), (2, 0), (0, 0), (2, 0, 1, 1)], ids=str)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_without_classes(shape: tuple[int, ...], smoothing: float, reduction: str) -> None:
    """C = 0: the backward is an empty gradient whatever g (for class indices and probabilities alike), so phi is 0
    and grad_grad_output is 0 in every element and reduction; grad2_input and grad2_target are empty."""
    loss_shape = shape[1:] if len(shape) == 1 else shape[:1] + shape[2:]
    g = np.ones(loss_shape) if reduction == "none" else 1.0
    kwargs = {"reduction": reduction, "label_smoothing": smoothing}
    expected = np.zeros(loss_shape) if reduction == "none" else 0.0
    for target in (np.full(loss_shape, -100, dtype=np.int64), np.zeros(shape)):
        out = reference.cross_entropy_double_backward(np.zeros(shape), g, np.zeros(shape), target, **kwargs)
        assert_close(out[0], expected, rtol=0, what=f"grad_grad_output, C = 0, {target.dtype} {reduction}")
        assert out[1].shape == shape
        assert out[2] is None if target.dtype == np.int64 else out[2].shape == shape


def test_bce_floor_is_a_constant_denominator() -> None:
    """Where x (1 - x) <= float32(1e-12) the backward is (x - y) / EPS: d/dx = 1 / EPS, d/dy = -1 / EPS, and the
    grad_grad_output term is (x - y) / EPS. EPS written here independently of the reference."""
    eps = float(np.float32(1e-12))  # torch's 1e-12f
    assert eps == GRAD_EPS
    x = np.array([0.0, 1.0, 5e-13, 0.5])
    y = np.array([1.0, 0.0, 0.25, 1.0])
    v = np.array([1.0, -2.0, 0.5, 1.0])
    terms, grad2_input, grad2_target = reference.binary_cross_entropy_double_backward(
        v, np.ones(4), x, y, reduction="none"
    )
    # float64 arithmetic on exact inputs: a division or two of rounding
    rtol = 1e-15
    assert_close(terms, v * (x - y) / np.array([eps, eps, eps, 0.25]), rtol=rtol, what="grad_grad_output")
    assert_close(grad2_input, v * np.array([1 / eps, 1 / eps, 1 / eps, 4.0]), rtol=rtol, what="grad2_input")
    assert_close(grad2_target, -v / np.array([eps, eps, eps, 0.25]), rtol=rtol, what="grad2_target")


@pytest.mark.parametrize("x0", [1.1e-12, 4e-10, 3e-6, 1 - 2.0**-30], ids=lambda v: f"x{v:.3g}")
def test_bce_near_the_floor_matches_differences(x0: float) -> None:
    """Just above the floor (x (1 - x) = 1.1e-12), near it and near 1, where the slope (x - y) / (x (1 - x)) is
    ~1e11 and its derivative ~1e23: central differences with a step of 1e-5 of the distance to the edge (truncation
    ~(h / x)^2 = 1e-10; rounding ~eps |slope| / (h |derivative|) ~ 1e-11) agree with the analytic values to 1e-8."""
    x, y, v = np.array([x0]), np.array([0.3]), np.array([1.5])
    _, grad2_input, grad2_target = reference.binary_cross_entropy_double_backward(
        v, 1.0, x, y, reduction="sum"
    )

    def slope(x_: np.ndarray, y_: np.ndarray) -> float:
        return float(reference.binary_cross_entropy_backward(1.0, x_, y_, reduction="sum")[0][0] * v[0])

    h = 1e-5 * min(x0, 1 - x0)
    up, down = x + h, x - h  # the steps actually taken (near 1 they round to the float64 grid)
    fd_x = (slope(up, y) - slope(down, y)) / (up - down)[0]
    fd_y = (slope(x, y + 1e-6) - slope(x, y - 1e-6)) / 2e-6
    assert abs(fd_x - grad2_input[0]) <= 1e-8 * abs(grad2_input[0]), (fd_x, grad2_input[0])
    assert abs(fd_y - grad2_target[0]) <= 1e-8 * abs(grad2_target[0]), (fd_y, grad2_target[0])


def _exact_softmax_hvp(x: list[float], v: list[float], y: int) -> tuple[list[float], float]:
    """In 60-digit decimal arithmetic, for one row: p * (v - <p, v>) and <p, v> - v_y."""
    with localcontext() as context:
        context.prec = 60
        e = [Decimal(a).exp() for a in x]
        p = [a / sum(e) for a in e]
        pv = sum(a * Decimal(b) for a, b in zip(p, v, strict=True))
        return [float(a * (Decimal(b) - pv)) for a, b in zip(p, v, strict=True)], float(pv - Decimal(v[y]))


@pytest.mark.parametrize("target", [0, 1], ids=["right", "wrong"])
def test_confident_row_keeps_its_digits(target: int) -> None:
    """A confident row, p = (1 - 3e-16, 1e-16, 1.4e-16, 0.9e-16): grad2_input's entry at the top class,
    p_0 (v_0 - <p, v>), is ~4e-16 after v_0 cancels against <p, v> ~ v_0, and so is grad_grad_output's
    <p, v> - v_y for the right target. Written as v_0 - <p, v> they would keep none of their digits (an error of
    eps |v_0| on a result 5x smaller than eps |v_0|); pivoted, each entry is within 8 eps of its own exact value.
    The inputs are dyadic, so every difference of them is exact: what is left is a few roundings (an exp, a sum
    of four terms of one sign, a division, two products), well under 8 eps."""
    x = [36.75, 0.0, 0.25, -0.25]
    v = [2.25, -1.125, 0.375, 0.75]  # v_0 the largest: the terms of <p, v - v_0> have one sign
    exact, exact_ggo = _exact_softmax_hvp(x, v, target)
    ggo, grad2_input, _ = reference.cross_entropy_double_backward(
        np.array([v]), 1.0, np.array([x]), np.array([target]), reduction="sum"
    )
    eps = np.finfo(np.float64).eps
    error = np.abs(grad2_input[0] - exact) / np.abs(exact)
    assert error.max() <= 8 * eps, f"grad2_input {grad2_input[0]} vs exact {exact}: {error / eps} eps"
    assert abs(float(ggo) - exact_ggo) <= 8 * eps * abs(exact_ggo), (
        f"grad_grad_output {ggo!r} vs {exact_ggo!r}"
    )


def test_bce_with_logits_curvature_keeps_its_digits() -> None:
    """sigma(x) sigma(-x) = e^-|x| / (1 + e^-|x|)^2 for |x| up to 700, each value within 4 eps of itself (an exp,
    a division and two products of roundings); as sigma (1 - sigma) it would be 0 beyond x ~ 37."""
    x = np.array([-700.0, -40.0, -3.0, 0.0, 2.5, 40.0, 700.0])
    _, grad2_input, _ = reference.binary_cross_entropy_with_logits_double_backward(
        np.ones(x.shape), np.ones(x.shape), x, np.full(x.shape, 0.3), reduction="none"
    )
    with localcontext() as context:
        context.prec = 60
        exact = np.array([float((-abs(Decimal(a))).exp() / (1 + (-abs(Decimal(a))).exp()) ** 2) for a in x])
    eps = np.finfo(np.float64).eps
    error = np.abs(grad2_input - exact) / exact
    assert error.max() <= 4 * eps, f"{grad2_input} vs {exact}: {error / eps} eps"


@pytest.mark.parametrize(
    "loss", ["nll_loss", "cross_entropy", "binary_cross_entropy", "binary_cross_entropy_with_logits"]
)
def test_docstring_example(loss: str) -> None:
    """Each double backward's docstring ends with a value checkable by hand: it must be what the code returns."""
    function = getattr(reference, f"{loss}_double_backward")
    (test,) = doctest.DocTestFinder().find(function, globs=vars(sys.modules[function.__module__]).copy())
    assert test.examples, f"{loss}_double_backward has no example"
    result = doctest.DocTestRunner().run(test, out=lambda _: None)
    assert result.failed == 0, (
        f"{result.failed} of {result.attempted} examples of {loss}_double_backward fail"
    )


# ----------------------------------------------------------------------------------------------------
# 4. Error parity with the backward
# ----------------------------------------------------------------------------------------------------
def _grad_output(bad: BadCall) -> object:
    # the table's own grad_output where it has one (the entries about grad_output); any other will do
    return 1.0 if bad.grad_output is None else bad.grad_output


@pytest.mark.parametrize("grad_grad_input", ["right-shape", "wrong-shape"])
@pytest.mark.parametrize("bad", TABLE, ids=[f"{c.loss}-{c.id}" for c in TABLE])
def test_rejected_like_the_backward(bad: BadCall, grad_grad_input: str) -> None:
    """Every bad call of the error table: the double backward raises the backward's exception, class and message,
    also when grad_grad_input is wrong too (its check comes after all of the backward's)."""
    (x, target), kwargs = bad.build()
    backward, double_backward = _functions(bad.loss)
    v = np.ones(np.shape(x)) if grad_grad_input == "right-shape" else np.ones((*np.shape(x), 2))
    with pytest.raises(Exception) as expected:  # the class is compared below, with the double backward's
        backward(_grad_output(bad), x, target, **kwargs)
    with pytest.raises(type(expected.value)) as got:
        double_backward(v, _grad_output(bad), x, target, **kwargs)
    assert str(got.value) == str(expected.value), f"double backward: {got.value}; backward: {expected.value}"


@pytest.mark.parametrize(
    "cfg", [c for c in CONFIGS if c.weight in ("-", "w") and c.ignore != "ii1"], ids=lambda c: c.label
)
def test_grad_grad_input_of_another_shape_is_rejected(cfg: Config) -> None:
    """A grad_grad_input not of the input's shape (a broadcastable one included): RuntimeError naming it."""
    x, target, kwargs, g, _ = _case(cfg, "mean")
    double_backward = _functions(cfg.loss)[1]
    for shape in ((*x.shape[:-1], x.shape[-1] + 1), (1, *x.shape), x.shape[1:]):
        with pytest.raises(RuntimeError, match=r"^grad_grad_input:"):
            double_backward(np.ones(shape), g, x, target, **kwargs)
