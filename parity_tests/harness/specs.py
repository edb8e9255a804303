"""One LossSpec per loss: the torch callable, the option space, how inputs are drawn, what is differentiable.

Tests are generic over `SPECS` (like torch's OpInfo): adding a loss means one reference file and one entry here.
Inputs are drawn in float64; `cases.py` rounds them to the case's dtype for both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch.nn.functional as F

from parity_tests.harness.oracle import truth
from parity_tests.harness.threads import THREADS

Shape = tuple[int, ...]
# The float64 arrays of one case: input, target, and optionally weight, pos_weight.
Arrays = dict[str, np.ndarray]
ALL_DTYPES = ("float64", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class LossSpec:
    name: str  # the functional's name, in torch.nn.functional and in the implementation under test
    torch_fn: Callable[..., Any]
    # Option axes. "target" is the target kind; "weight"/"pos_weight" name a shape kind (None: absent);
    # the others are keyword arguments passed as they are.
    options: Mapping[str, tuple[Any, ...]]
    shapes: tuple[Shape, ...]  # quick profile
    extra_shapes: tuple[Shape, ...]  # added by the full profile
    regimes: tuple[str, ...]  # value regimes; the first is the ordinary one
    regime_shapes: tuple[Shape, ...]  # the quick profile's shapes for the other regimes
    # The gpu profile: device-scale shapes, each with an option combination a model would use there.
    gpu_cases: tuple[tuple[Shape, Mapping[str, Any]], ...]
    sample: Callable[[np.random.Generator, Shape, Mapping[str, Any], str], Arrays]
    target_is_differentiable: Callable[[Mapping[str, Any]], bool]
    dtypes: Mapping[str, tuple[str, ...]]  # device type -> supported dtypes
    # stage -> the magnitude of the terms torch combines for that stage, given the case's arrays and keyword
    # options (and, where the caller has them, the truth's outputs on the case, which a scale may reuse). Where the
    # result is a small difference of large terms, torch's error is eps times the terms, not eps times the result;
    # compare.py takes the larger of this and the result's own scale.
    term_scales: Mapping[str, Callable[..., float]] = field(default_factory=dict)
    # The quick profile's other regimes keep only these option values (the ordinary regime has them all): the
    # gate's time goes where the values matter.
    regime_options: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def valid(self, options: Mapping[str, Any], shape: Shape, regime: str) -> bool:
        """Whether torch accepts this combination (invalid ones belong to test_errors.py)."""
        if (
            options.get("target") == "prob"
            and resolve_ignore_index(options.get("ignore_index", -100), shape) >= 0
        ):
            return False  # torch: ignore_index is not supported for floating point targets
        if regime == "all-ignored" and options.get("target") != "index":
            return False
        return not (options.get("pos_weight") and len(shape) < 2)


def _class_dim(shape: Shape) -> int:
    return 0 if len(shape) == 1 else 1


def resolve_ignore_index(value: int | str, shape: Shape) -> int:
    """An ignore_index option as torch receives it: "last" is the last class of the shape (C - 1)."""
    if value == "last":
        return max(shape[_class_dim(shape)] - 1, 0) if shape else 0
    return int(value)


def _logits(rng: np.random.Generator, shape: Shape, regime: str) -> np.ndarray:
    # "large": |logits| in the hundreds to thousands, where a naive exp overflows and softmax saturates.
    scale = 1e3 if regime == "large" else 2.0
    return rng.normal(0.0, scale, shape)


def _log_softmax(x: np.ndarray, dim: int) -> np.ndarray:
    with np.errstate(
        invalid="ignore", divide="ignore"
    ):  # a row of -inf (a fuzz's special) is NaN, as in torch
        shifted = x - x.max(axis=dim, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))


def _class_targets(rng: np.random.Generator, shape: Shape, options: Mapping[str, Any], regime: str) -> Arrays:
    dim = _class_dim(shape)
    n_classes = shape[dim]
    target_shape = shape[:dim] + shape[dim + 1 :]
    ignore_index = resolve_ignore_index(options.get("ignore_index", -100), shape)
    if options.get("target") == "prob":
        target = np.exp(_log_softmax(rng.normal(0.0, 1.0, shape), dim))
    else:
        target = rng.integers(0, max(n_classes, 1), target_shape).astype(np.int64)
        if regime == "all-ignored":
            target[...] = ignore_index
        elif ignore_index < 0:  # a quarter of the positions ignored (ignore_index >= 0 ignores its class)
            target[rng.random(target_shape) < 0.25] = ignore_index
    arrays = {"target": target}
    if options.get("weight"):
        arrays["weight"] = rng.uniform(0.5, 2.0, (n_classes,))
    return arrays


def _sample_cross_entropy(rng, shape, options, regime) -> Arrays:
    return {"input": _logits(rng, shape, regime), **_class_targets(rng, shape, options, regime)}


def _sample_nll_loss(rng, shape, options, regime) -> Arrays:
    # NLLLoss expects log-probabilities: draw logits and normalise them in float64.
    log_probs = _log_softmax(_logits(rng, shape, regime), _class_dim(shape))
    return {"input": log_probs, **_class_targets(rng, shape, options, regime)}


def _broadcast_shape(shape: Shape, kind: str | None) -> Shape | None:
    """weight / pos_weight shapes: 'elementwise' (the input's), 'broadcast' (per class along dim 1 for rank >= 2,
    as (C,) for 2-D or (C, 1, 1) for 4-D: torch aligns trailing dimensions), None (absent)."""
    if kind is None:
        return None
    if kind == "elementwise" or len(shape) < 2:
        return shape
    return (shape[1],) + (1,) * (len(shape) - 2)


def _binary_targets(rng: np.random.Generator, shape: Shape, options: Mapping[str, Any]) -> np.ndarray:
    if options.get("target") == "binary":
        return rng.integers(0, 2, shape).astype(np.float64)
    return rng.uniform(0.0, 1.0, shape)


def _extras(rng: np.random.Generator, shape: Shape, options: Mapping[str, Any]) -> Arrays:
    arrays = {}
    for name in ("weight", "pos_weight"):
        extra_shape = _broadcast_shape(shape, options.get(name))
        if extra_shape is not None:
            arrays[name] = rng.uniform(0.25, 3.0, extra_shape)
    return arrays


# Probabilities at and next to the ends of [0, 1], where BCE's log clamp and its backward's floor act.
_EDGE_PROBABILITIES = np.array([0.0, 1.0, 1e-12, 1e-6, 1e-3, 0.5, 1 - 1e-3, 1 - 1e-6, 1 - 1e-12])


def _sample_binary_cross_entropy(rng, shape, options, regime) -> Arrays:
    if regime == "saturated":
        probs = rng.choice(_EDGE_PROBABILITIES, shape)
    else:
        # Ordinary probabilities stay inside [1e-3, 1 - 1e-3]: exact 0 and 1 (in float16, anything within 2.4e-4
        # of them) belong to the saturated regime.
        probs = np.clip(1.0 / (1.0 + np.exp(-rng.normal(0.0, 2.0, shape))), 1e-3, 1 - 1e-3)
    return {"input": probs, "target": _binary_targets(rng, shape, options), **_extras(rng, shape, options)}


def _sample_binary_cross_entropy_with_logits(rng, shape, options, regime) -> Arrays:
    # "large": |logits| up to a few hundred, where sigmoid rounds to 0 or 1 in every dtype.
    scale = 100.0 if regime == "large" else 2.0
    logits = rng.normal(0.0, scale, shape)
    return {"input": logits, "target": _binary_targets(rng, shape, options), **_extras(rng, shape, options)}


def _softmax_term_scale(arrays: Arrays, keywords: Mapping[str, Any], expected: Arrays | None = None) -> float:
    """cross_entropy's grad_input is g * (p * sum(w q) - w q) / D with p = softmax(x), each entry a difference of
    terms up to |g| * max|w| * max(p, q) / D. A confident correct row (p_y -> 1) leaves p_y - 1 tiny while
    torch's error stays eps times the terms."""
    x, target, g = arrays["input"], arrays["target"], arrays["grad_output"]
    if x.size == 0:
        return 0.0
    dim = _class_dim(x.shape)
    n_classes = x.shape[dim]
    weights = np.abs(arrays.get("weight", np.ones(n_classes)))
    smoothing = keywords.get("label_smoothing", 0.0)
    smoothing = smoothing if smoothing > 0 else 0.0  # torch takes a negative (or NaN) label_smoothing as 0
    index = target.dtype.kind != "f"
    if not index:
        denominator = x.size / n_classes
    else:
        kept = target != keywords.get("ignore_index", -100)
        denominator = float(weights[target[kept]].sum())
    if keywords.get("reduction", "mean") != "mean":
        denominator = 1.0
    if not denominator:
        return 0.0
    classes = np.arange(n_classes).reshape((-1,) + (1,) * (x.ndim - dim - 1))
    g = np.abs(g)
    # In slices along the batch axis, on every core: at the gpu profile's sizes, whole-array temporaries would
    # be GBs each.
    step = x.shape[0] if dim == 0 else max(1, _SLICE_ELEMENTS // max(1, x[:1].size))

    def worst(i: int) -> float:
        rows = (lambda a: a[i : i + step]) if dim else (lambda a: a)
        p = np.exp(_log_softmax(rows(x), dim))
        if index:
            t = rows(target)
            kept = t != keywords.get("ignore_index", -100)
            onehot = classes == np.expand_dims(np.where(kept, t, -1), dim)
            q, kept = onehot * (1 - smoothing) + smoothing / n_classes, np.expand_dims(kept, dim)
        else:
            q, kept = np.abs(rows(target)) * (1 - smoothing) + smoothing / n_classes, True
        g_rows = np.expand_dims(rows(g), dim) if np.ndim(g) else g
        return float((g_rows * np.maximum(p, q) * kept).max(initial=0.0))

    starts = range(0, x.shape[0], step)
    if len(starts) == 1:  # a grid case: a pool of threads would cost more than the work
        return worst(0) * float(weights.max()) / denominator
    with ThreadPoolExecutor(THREADS) as pool:
        return max(pool.map(worst, starts)) * float(weights.max()) / denominator


_SLICE_ELEMENTS = 1 << 22


def _elementwise_scale(
    magnitude: np.ndarray, arrays: Arrays, keywords: Mapping[str, Any], grad: bool
) -> float:
    """The scale of a stage made of elementwise terms of `magnitude`: for a gradient |g| * magnitude (/ numel
    for mean), for a loss the magnitudes reduced like the loss. Infinite terms (log 0) are left to the exact
    NaN/inf comparison."""
    magnitude = np.where(np.isfinite(magnitude), magnitude, 0.0)
    if magnitude.size == 0:
        return 0.0
    reduction = keywords.get("reduction", "mean")  # a keyword left out has torch's default
    per_element = np.abs(arrays["grad_output"]) * magnitude if grad else magnitude
    if reduction == "none" or grad:
        return float(per_element.max() / (magnitude.size if grad and reduction == "mean" else 1))
    return float(per_element.sum() / (magnitude.size if reduction == "mean" else 1))


def _broadcast(arrays: Arrays, name: str) -> np.ndarray:
    return np.broadcast_to(arrays.get(name, np.ones(())), arrays["input"].shape)


def _logit_term_scale(arrays: Arrays, keywords: Mapping[str, Any], expected: Arrays | None = None) -> float:
    """binary_cross_entropy's grad_target is -g * w * (log x - log(1 - x)): near x = 1/2 a small difference of
    two logs of magnitude ~0.7."""
    x = arrays["input"]
    with np.errstate(divide="ignore"):
        magnitude = np.abs(_broadcast(arrays, "weight")) * (np.abs(np.log(x)) + np.abs(np.log1p(-x)))
    return _elementwise_scale(magnitude, arrays, keywords, grad=True)


def _unbounded_target_term_scale(
    arrays: Arrays, keywords: Mapping[str, Any], expected: Arrays | None = None
) -> float:
    """binary_cross_entropy_with_logits' loss for targets outside [0, 1], which torch accepts: there the true loss
    (1 - y) x - ((p - 1) y + 1) log sigma(x) is itself a difference of those two terms, whose factor p y + 1 - y is
    a sum of terms of both signs too (no formula has terms of one sign), and any floating-point result is off by
    eps times |(1 - y) x| + (|p y| + 1 + |y|) |log sigma(x)|. Within [0, 1] (and p >= 0) the loss is
    -(p y log sigma(x) + (1 - y) log sigma(-x)), two terms of one sign: its magnitude is the loss itself, so this
    adds nothing there, and torch's cancellation there stays a registered deviation."""
    x, y = arrays["input"], arrays["target"]
    w, p = np.abs(_broadcast(arrays, "weight")), _broadcast(arrays, "pos_weight")
    with np.errstate(invalid="ignore", over="ignore"):
        log_sig, log_sig_neg = -np.logaddexp(0.0, -x), -np.logaddexp(0.0, x)
        inside = (y >= 0) & (y <= 1) & (p >= 0)
        magnitude = w * np.where(
            inside,
            np.abs(p * y * log_sig) + np.abs((1 - y) * log_sig_neg),
            np.abs((1 - y) * x) + (np.abs(p * y) + 1 + np.abs(y)) * np.abs(log_sig),
        )
    return _elementwise_scale(magnitude, arrays, keywords, grad=False)


def _gradient_term_scale(loss: str) -> Callable[..., float]:
    """The scale of `loss`'s grad_grad_output, d <grad_input, v> / d grad_output = <grad_input(unit g), v>
    (v = grad_grad_input): per element of the loss the sum of grad_input(unit g) * v over its entries, reduced
    like the loss. Those products have both signs (v's are random): a reduced result is a sum of hundreds of
    them, with condition numbers in the hundreds, and any floating-point result (the reference's too) is off by
    eps times sum |grad_input(unit g) * v|, not eps times the result. That sum, per element for 'none' (the
    largest), is the scale. grad_input(unit g) is the truth's grad_input divided by g where the caller has it (g is
    never 0 in a drawn case), else the reference's backward at a unit g."""

    def scale(arrays: Arrays, keywords: Mapping[str, Any], expected: Arrays | None = None) -> float:
        x, v, g = arrays["input"], arrays["grad_grad_input"], arrays["grad_output"]
        reduction = keywords.get("reduction", "mean")
        if x.size == 0 or (reduction == "none" and x.ndim == np.ndim(g)):
            return 0.0  # nothing, or one term per element (the result itself): nothing to add
        with np.errstate(all="ignore"):
            if expected is not None and np.isfinite(g).all() and (g != 0).all():
                # g per element of the loss: spread over its classes
                spread = np.expand_dims(g, _class_dim(x.shape)) if np.ndim(g) else g
                grad_input = expected["grad_input"] / spread
            else:
                extras = {k: arrays[k] for k in ("weight", "pos_weight") if k in arrays}
                unit = np.ones_like(g)
                grad_input, _ = getattr(truth, f"{loss}_backward")(
                    unit, x, arrays["target"], **extras, **keywords
                )
            products = np.abs(grad_input * v)
        products = np.where(np.isfinite(products), products, 0.0)  # NaN/inf: the exact comparison's
        if reduction != "none":
            return float(products.sum())
        if products.ndim > np.ndim(g):  # a class dimension: each element sums over its classes
            products = products.sum(axis=_class_dim(x.shape))
        return float(products.max(initial=0.0))

    return scale


def _unbounded_target_curvature_term_scale(
    arrays: Arrays, keywords: Mapping[str, Any], expected: Arrays | None = None
) -> float:
    """binary_cross_entropy_with_logits' grad2_input g w v (p y + 1 - y) sigma(x) sigma(-x) for targets outside
    [0, 1] (or p < 0), which torch accepts: there p y + 1 - y is a sum of terms of both signs (no formula has terms
    of one sign; the reference's regrouping 1 + (p - 1) y helps only where p - 1 is exact), and any floating-point
    result is off by eps times |p y| + 1 + |y|. Within [0, 1] (and p >= 0) it is p y + (1 - y), two terms of one
    sign: this adds nothing there."""
    x, y, v = arrays["input"], arrays["target"], arrays["grad_grad_input"]
    w, p = np.abs(_broadcast(arrays, "weight")), _broadcast(arrays, "pos_weight")
    with np.errstate(invalid="ignore", over="ignore"):
        curvature = np.exp(-np.logaddexp(0.0, -x) - np.logaddexp(0.0, x))  # sigma(x) sigma(-x)
        inside = (y >= 0) & (y <= 1) & (p >= 0)
        factor = np.where(inside, np.abs(p * y + 1 - y), np.abs(p * y) + 1 + np.abs(y))
    return _elementwise_scale(w * np.abs(v) * factor * curvature, arrays, keywords, grad=True)


REDUCTIONS = ("none", "mean", "sum")
_CLASS_SHAPES = ((5,), (8, 5), (2, 3, 4, 5), (3, 423), (4, 1), (0, 5), (4096, 3))
_CLASS_EXTRA = ((1, 1), (2, 7, 3), (2, 3, 2, 2, 2), (2, 4, 0, 3), (64, 1000), (1, 21, 32, 32), (70000, 2))
_BINARY_SHAPES = ((7,), (8, 5), (2, 3, 4, 5), (3, 423), (0, 5), (4096, 3))
_BINARY_EXTRA = ((1,), (2, 7, 3), (2, 4, 0, 3), (64, 1000), (1, 21, 32, 32), (70000, 2))
# Which dtypes each device type runs (MPS has no float64).
DEVICE_DTYPES = {"cpu": ALL_DTYPES, "cuda": ALL_DTYPES, "mps": ("float32", "float16", "bfloat16")}
# The gpu profile: a language model's vocabulary (Llama 3: 128256) over 8192 tokens, a segmentation map of 21
# classes (Pascal VOC) over a batch of 8 images of 512 x 512, a multi-label head of 1000 outputs.
LLM_SHAPE, SEGMENTATION_SHAPE, MULTILABEL_SHAPE = (8192, 128256), (8, 21, 512, 512), (65536, 1000)
GPU_DTYPES = ("float32", "bfloat16")
# A language model's loss: class indices, ignore_index -100 (padding), mean over the tokens.
_CE_DEFAULTS = {
    "target": "index",
    "weight": None,
    "ignore_index": -100,
    "reduction": "mean",
    "label_smoothing": 0.0,
}

SPECS: dict[str, LossSpec] = {
    spec.name: spec
    for spec in (
        LossSpec(
            name="cross_entropy",
            torch_fn=F.cross_entropy,
            options={
                "target": ("index", "prob"),
                "weight": (None, "class"),
                "ignore_index": (-100, -1, 1, "last"),
                "reduction": REDUCTIONS,
                "label_smoothing": (0.0, 0.1, 1.0),
            },
            shapes=_CLASS_SHAPES,
            extra_shapes=_CLASS_EXTRA,
            regimes=("normal", "large", "all-ignored"),
            regime_shapes=((8, 5), (2, 3, 4, 5), (3, 423), (4096, 3)),
            gpu_cases=(
                (LLM_SHAPE, _CE_DEFAULTS),
                (SEGMENTATION_SHAPE, _CE_DEFAULTS),
                (SEGMENTATION_SHAPE, {**_CE_DEFAULTS, "weight": "class", "label_smoothing": 0.1}),
            ),
            sample=_sample_cross_entropy,
            target_is_differentiable=lambda options: options["target"] == "prob",
            dtypes=DEVICE_DTYPES,
            term_scales={
                "grad_input": _softmax_term_scale,
                "grad_grad_output": _gradient_term_scale("cross_entropy"),
            },
            regime_options={"ignore_index": (-100, 1)},
        ),
        LossSpec(
            name="nll_loss",
            torch_fn=F.nll_loss,
            options={
                "target": ("index",),
                "weight": (None, "class"),
                "ignore_index": (-100, -1, 1, "last"),
                "reduction": REDUCTIONS,
            },
            shapes=_CLASS_SHAPES,
            extra_shapes=_CLASS_EXTRA,
            regimes=("normal", "large", "all-ignored"),
            regime_shapes=((8, 5), (2, 3, 4, 5), (3, 423), (4096, 3)),
            gpu_cases=(
                (
                    SEGMENTATION_SHAPE,
                    {"target": "index", "weight": None, "ignore_index": -100, "reduction": "mean"},
                ),
                (
                    SEGMENTATION_SHAPE,
                    {"target": "index", "weight": "class", "ignore_index": 1, "reduction": "none"},
                ),
            ),
            sample=_sample_nll_loss,
            target_is_differentiable=lambda options: False,
            dtypes=DEVICE_DTYPES,
            term_scales={"grad_grad_output": _gradient_term_scale("nll_loss")},
            regime_options={"ignore_index": (-100, 1)},
        ),
        LossSpec(
            name="binary_cross_entropy",
            torch_fn=F.binary_cross_entropy,
            options={
                "target": ("soft", "binary"),
                "weight": (None, "elementwise", "broadcast"),
                "reduction": REDUCTIONS,
            },
            shapes=_BINARY_SHAPES,
            extra_shapes=_BINARY_EXTRA,
            regime_shapes=((8, 5), (2, 3, 4, 5), (4096, 3)),
            regimes=("normal", "saturated"),
            gpu_cases=(
                (SEGMENTATION_SHAPE, {"target": "soft", "weight": None, "reduction": "mean"}),
                (MULTILABEL_SHAPE, {"target": "binary", "weight": "broadcast", "reduction": "sum"}),
            ),
            sample=_sample_binary_cross_entropy,
            target_is_differentiable=lambda options: True,
            dtypes=DEVICE_DTYPES,
            term_scales={
                "grad_target": _logit_term_scale,
                "grad_grad_output": _gradient_term_scale("binary_cross_entropy"),
            },
        ),
        LossSpec(
            name="binary_cross_entropy_with_logits",
            torch_fn=F.binary_cross_entropy_with_logits,
            options={
                "target": ("soft", "binary"),
                "weight": (None, "elementwise", "broadcast"),
                "pos_weight": (None, "broadcast"),
                "reduction": REDUCTIONS,
            },
            shapes=_BINARY_SHAPES,
            extra_shapes=_BINARY_EXTRA,
            regime_shapes=((8, 5), (2, 3, 4, 5), (4096, 3)),
            regimes=("normal", "large"),
            gpu_cases=(
                (
                    SEGMENTATION_SHAPE,
                    {"target": "soft", "weight": "elementwise", "pos_weight": None, "reduction": "none"},
                ),
                (
                    MULTILABEL_SHAPE,
                    {"target": "binary", "weight": None, "pos_weight": "broadcast", "reduction": "mean"},
                ),
            ),
            sample=_sample_binary_cross_entropy_with_logits,
            target_is_differentiable=lambda options: True,
            dtypes=DEVICE_DTYPES,
            term_scales={
                "loss": _unbounded_target_term_scale,
                "grad_grad_output": _gradient_term_scale("binary_cross_entropy_with_logits"),
                "grad2_input": _unbounded_target_curvature_term_scale,
            },
        ),
    )
}
