"""The error table: bad calls of the four losses, each with the exception class torch raises on CPU for it.

Data only (NumPy inputs, no torch import), shared by the tests that hold an implementation to it:
``test_errors.py`` checks that torch still raises each recorded class and that the implementation's forward and
backward raise it too; ``test_reference_second_order.py`` that the reference's double backward raises what its
backward raises.

Entries with ``only_backward`` are inputs torch's forward accepts but its backward rejects.

``raises`` and ``only_backward`` are what torch 2.13, the release the reference mirrors, does. Where another release
behaves otherwise, ``releases`` says so, as data with its evidence: each `Release` names a version range and what torch
does there. ``behaviour(call, version)`` is what torch does in a given release.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Arrays = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Release:
    """What torch releases in a version range do with a bad call, where it differs from torch 2.13."""

    torch: str  # a version range, e.g. "<2.8"
    raises: type[Exception]
    only_backward: bool = False
    evidence: str = ""


@dataclass(frozen=True)
class BadCall:
    id: str  # readable, unique within its loss
    loss: str  # name in torch.nn.functional and in the implementation (+ "_backward")
    build: Callable[[], tuple[Arrays, dict[str, Any]]]  # ((input, target), keyword arguments)
    raises: type[Exception]  # the class torch raises on CPU, checked by the test itself
    names: str  # the argument the implementation's message must name
    only_backward: bool = False
    grad_output: Any = field(default=None)  # for only_backward entries; None: ones of the loss's shape
    releases: tuple[Release, ...] = ()  # other torch releases that behave otherwise


def behaviour(bad: BadCall, version: str) -> tuple[type[Exception], bool]:
    """(the class torch raises, whether only its backward raises) in the torch release `version`."""
    from parity_tests.harness.selectors import torch_version_in

    for release in bad.releases:
        if torch_version_in(version, release.torch):
            return release.raises, release.only_backward
    return bad.raises, bad.only_backward


# Measured on CPU with torch 2.4.1, 2.6.0, 2.8.0, 2.10.0, 2.13.0, 2.14.1 and 2.15.0 (docs/torch-versions.md).
_LONG_BEFORE_2_8 = Release(
    "<2.8",
    RuntimeError,
    evidence="torch 2.4.1, 2.6.0: RuntimeError, the same message (\"... not implemented for 'Long'\"); "
    "2.8.0 and later: NotImplementedError",
)
_SIZE_MISMATCH_BEFORE_2_9 = Release(
    "<2.9",
    RuntimeError,
    evidence="torch 2.4.1, 2.6.0, 2.8.0: the forward raises RuntimeError 'size mismatch (got input: [3], target: "
    "[2])'; 2.9.1, 2.10.0 and later: ValueError 'For 1D input, 1D target must have size 1'",
)


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def logits(*shape: int) -> np.ndarray:
    return _rng().standard_normal(shape)


def probs(*shape: int) -> np.ndarray:
    return _rng().uniform(0.05, 0.95, shape)


def labels(*values: int, dtype: type = np.int64) -> np.ndarray:
    return np.array(values, dtype=dtype)


def call(input: np.ndarray, target: np.ndarray, **kwargs: Any) -> tuple[Arrays, dict[str, Any]]:
    return (input, target), kwargs


CLASS_LOSSES = ("nll_loss", "cross_entropy")
BINARY_LOSSES = ("binary_cross_entropy", "binary_cross_entropy_with_logits")

TABLE: list[BadCall] = []

# --- reduction (every loss) ---------------------------------------------------------------------------------
for _loss in (*CLASS_LOSSES, *BINARY_LOSSES):
    _pair = (
        (logits(4, 3), labels(0, 1, 2, 0)) if _loss in CLASS_LOSSES else (probs(4, 3), probs(4, 3).round())
    )
    TABLE += [
        BadCall(
            "reduction-invalid", _loss, lambda p=_pair: call(*p, reduction="avg"), ValueError, "reduction"
        ),
        BadCall("reduction-None", _loss, lambda p=_pair: call(*p, reduction=None), ValueError, "reduction"),
    ]
TABLE.append(
    BadCall(
        "reduction-invalid-probability-target",
        "cross_entropy",
        lambda: call(logits(4, 3), probs(4, 3), reduction="avg"),
        ValueError,
        "reduction",
    )
)

# --- class-index targets: shapes, dtypes, bounds (nll_loss and cross_entropy) -------------------------------
for _loss in CLASS_LOSSES:
    TABLE += [
        BadCall(
            "batch-size-mismatch", _loss, lambda: call(logits(4, 3), labels(0, 1, 2)), ValueError, "target"
        ),
        BadCall(
            "batch-size-mismatch-4d",
            _loss,
            lambda: call(logits(2, 3, 4, 5), np.zeros((3, 4, 5), np.int64)),
            ValueError,
            "target",
        ),
        BadCall(
            "spatial-shape-mismatch-4d",
            _loss,
            lambda: call(logits(2, 3, 4, 5), np.zeros((2, 4, 4), np.int64)),
            RuntimeError,
            "target",
        ),
        BadCall(
            "spatial-shape-mismatch-3d",
            _loss,
            lambda: call(logits(2, 3, 4), np.zeros((2, 5), np.int64)),
            RuntimeError,
            "target",
        ),
        BadCall(
            "spatial-shape-mismatch-5d",
            _loss,
            lambda: call(logits(2, 3, 4, 5, 6), np.zeros((2, 4, 5, 7), np.int64)),
            RuntimeError,
            "target",
        ),
        BadCall(
            "target-rank-too-low-4d",
            _loss,
            lambda: call(logits(2, 3, 4, 5), np.zeros((2, 4), np.int64)),
            RuntimeError,
            "target",
        ),
        BadCall(
            "target-rank-too-high-4d",
            _loss,
            lambda: call(logits(2, 3, 4, 5), np.zeros((2, 4, 5, 1), np.int64)),
            RuntimeError,
            "target",
        ),
        BadCall(
            "target-2d-for-2d-input",
            _loss,
            lambda: call(logits(4, 3), np.zeros((4, 2), np.int64)),
            RuntimeError,
            "target",
        ),
        BadCall(
            "target-0d-for-2d-input",
            _loss,
            lambda: call(logits(4, 3), labels(1).reshape(())),
            ValueError,
            "target",
        ),
        BadCall(
            "1d-input-target-size-2",
            _loss,
            lambda: call(logits(3), labels(1, 2)),
            ValueError,
            "target",
            releases=(_SIZE_MISMATCH_BEFORE_2_9,),
        ),
        BadCall(
            "1d-input-target-2d",
            _loss,
            lambda: call(logits(3), np.ones((1, 1), np.int64)),
            RuntimeError,
            "target",
        ),
        BadCall(
            "target-dtype-float64", _loss, lambda: call(logits(4, 3), np.zeros(4)), RuntimeError, "target"
        ),
        BadCall(
            "target-dtype-uint8-4d",
            _loss,
            lambda: call(logits(2, 3, 4, 5), np.zeros((2, 4, 5), np.uint8)),
            RuntimeError,
            "target",
        ),
        BadCall(
            "target-dtype-uint8-3d",
            _loss,
            lambda: call(logits(2, 3, 4), np.zeros((2, 4), np.uint8)),
            RuntimeError,
            "target",
        ),
        BadCall(
            "target-dtype-uint8-empty-4d-none",
            _loss,
            lambda: call(logits(0, 3, 2, 2), np.zeros((0, 2, 2), np.uint8), reduction="none"),
            RuntimeError,
            "target",
        ),
        BadCall(
            "target-out-of-range-equal-C",
            _loss,
            lambda: call(logits(4, 3), labels(0, 3, 1, 0)),
            IndexError,
            "target",
        ),
        BadCall(
            "target-out-of-range-above-C",
            _loss,
            lambda: call(logits(4, 3), labels(0, 5, 1, 0)),
            IndexError,
            "target",
        ),
        BadCall(
            "target-out-of-range-negative",
            _loss,
            lambda: call(logits(4, 3), labels(0, -1, 1, 0)),
            IndexError,
            "target",
        ),
        BadCall(
            "target-out-of-range-below-ignore-index",
            _loss,
            lambda: call(logits(4, 3), labels(0, -101, 1, 0)),
            IndexError,
            "target",
        ),
        BadCall(
            "target-out-of-range-ignore-index-elsewhere",
            _loss,
            lambda: call(logits(4, 3), labels(0, 3, 1, 0), ignore_index=0),
            IndexError,
            "target",
        ),
        BadCall(
            "target-out-of-range-reduction-none",
            _loss,
            lambda: call(logits(4, 3), labels(0, 3, 1, 0), reduction="none"),
            IndexError,
            "target",
        ),
        BadCall(
            "target-out-of-range-uint8",
            _loss,
            lambda: call(logits(4, 3), labels(0, 200, 1, 0, dtype=np.uint8)),
            IndexError,
            "target",
        ),
        BadCall(
            "target-out-of-range-4d",
            _loss,
            lambda: call(logits(2, 3, 4, 5), np.full((2, 4, 5), 3, np.int64)),
            IndexError,
            "target",
        ),
        BadCall(
            "target-out-of-range-1d-input",
            _loss,
            lambda: call(logits(3), labels(3).reshape(())),
            IndexError,
            "target",
        ),
        BadCall(
            "target-out-of-range-no-classes",
            _loss,
            lambda: call(logits(2, 0), labels(0, 0)),
            IndexError,
            "target",
        ),
        BadCall(
            "weight-wrong-length",
            _loss,
            lambda: call(logits(4, 3), labels(0, 1, 2, 0), weight=np.ones(2)),
            RuntimeError,
            "weight",
        ),
        BadCall(
            "weight-2d",
            _loss,
            lambda: call(logits(4, 3), labels(0, 1, 2, 0), weight=np.ones((3, 1))),
            RuntimeError,
            "weight",
        ),
        BadCall(
            "weight-0d",
            _loss,
            lambda: call(logits(4, 3), labels(0, 1, 2, 0), weight=np.array(1.0)),
            RuntimeError,
            "weight",
        ),
        BadCall(
            "weight-wrong-length-4d",
            _loss,
            lambda: call(logits(2, 3, 4, 5), np.zeros((2, 4, 5), np.int64), weight=np.ones(4)),
            RuntimeError,
            "weight",
        ),
        BadCall(
            "weight-dtype-mismatch",
            _loss,
            lambda: call(logits(4, 3), labels(0, 1, 2, 0), weight=np.ones(3, np.float32)),
            RuntimeError,
            "weight",
        ),
        BadCall(
            "ignore-index-float",
            _loss,
            lambda: call(logits(4, 3), labels(0, 1, 2, 0), ignore_index=1.0),
            TypeError,
            "ignore_index",
        ),
        BadCall(
            "input-dtype-int64",
            _loss,
            lambda: call(np.ones((4, 3), np.int64), labels(0, 1, 2, 0)),
            NotImplementedError,
            "input",
            releases=(_LONG_BEFORE_2_8,),
        ),
        # torch's forward accepts a (1,) target for a 1-D input, its backward does not
        BadCall(
            "1d-input-target-shape-1-backward",
            _loss,
            lambda: call(logits(3), labels(1)),
            RuntimeError,
            "target",
            only_backward=True,
            releases=(
                Release(
                    "<2.9",
                    RuntimeError,
                    evidence="torch 2.4.1, 2.6.0, 2.8.0: the forward already raises 'size mismatch (got input: [3], "
                    "target: [1])'",
                ),
            ),
        ),
        # the reducing forward of an empty input never reads the uint8 target, the backward does
        BadCall(
            "target-dtype-uint8-empty-4d-backward",
            _loss,
            lambda: call(logits(0, 3, 2, 2), np.zeros((0, 2, 2), np.uint8)),
            RuntimeError,
            "target",
            only_backward=True,
        ),
        BadCall(
            "grad-output-shape-mismatch",
            _loss,
            lambda: call(logits(4, 3), labels(0, 1, 2, 0)),
            RuntimeError,
            "grad_output",
            only_backward=True,
            grad_output=np.ones(4),
        ),
    ]
for _dtype in (np.int32, np.int16, np.int8, np.bool_):
    for _loss in CLASS_LOSSES:
        TABLE.append(
            BadCall(
                f"target-dtype-{np.dtype(_dtype).name}",
                _loss,
                lambda d=_dtype: call(logits(4, 3), labels(0, 1, 1, 0).astype(d)),
                RuntimeError,
                "target",
            )
        )
TABLE.append(
    BadCall("input-0d", "nll_loss", lambda: call(np.array(1.0), labels(0).reshape(())), ValueError, "input")
)

# --- cross_entropy only: 0-d input, label smoothing, probability targets ------------------------------------
TABLE += [
    # log_softmax over dim 1 of a 0-d input fails before nll_loss's check (an IndexError, not a ValueError)
    BadCall("input-0d", "cross_entropy", lambda: call(np.array(1.0), labels(0)), IndexError, "input"),
    BadCall(
        "input-0d-float-target",
        "cross_entropy",
        lambda: call(np.array(1.0), np.array(0.5)),
        IndexError,
        "input",
    ),
    # a 0-d target has the 0-d input's shape: the probability path, whose dtype check comes first
    BadCall(
        "input-0d-long-target-0d",
        "cross_entropy",
        lambda: call(np.array(1.0), labels(0).reshape(())),
        RuntimeError,
        "target",
    ),
    BadCall(
        "label-smoothing-above-1",
        "cross_entropy",
        lambda: call(logits(4, 3), labels(0, 1, 2, 0), label_smoothing=1.5),
        RuntimeError,
        "label_smoothing",
    ),
    BadCall(
        "label-smoothing-target-dtype-int32",
        "cross_entropy",
        lambda: call(logits(4, 3), labels(0, 1, 2, 0, dtype=np.int32), label_smoothing=0.1),
        RuntimeError,
        "target",
    ),
    BadCall(
        "label-smoothing-target-out-of-range",
        "cross_entropy",
        lambda: call(logits(4, 3), labels(0, 3, 2, 0), label_smoothing=0.1),
        IndexError,
        "target",
    ),
    BadCall(
        "label-smoothing-weight-wrong-length",
        "cross_entropy",
        lambda: call(logits(4, 3), labels(0, 1, 2, 0), weight=np.ones(4), label_smoothing=0.1),
        RuntimeError,
        "weight",
    ),
    # without label smoothing the rank >= 3 kernel accepts any weight of C elements; this path does not
    BadCall(
        "label-smoothing-weight-2d-4d-input",
        "cross_entropy",
        lambda: call(
            logits(2, 3, 4, 5), np.zeros((2, 4, 5), np.int64), weight=np.ones((3, 1)), label_smoothing=0.1
        ),
        RuntimeError,
        "weight",
    ),
    # two torch quirks of the label-smoothing path, recorded so that a fix in torch is noticed
    BadCall(
        "label-smoothing-1d-input-target-shape-1",
        "cross_entropy",
        lambda: call(logits(3), labels(1), label_smoothing=0.1),
        RuntimeError,
        "target",
    ),
    BadCall(
        "label-smoothing-uint8-target-weight-mean",
        "cross_entropy",
        lambda: call(
            logits(4, 3), labels(0, 1, 2, 0, dtype=np.uint8), weight=np.ones(3), label_smoothing=0.1
        ),
        RuntimeError,
        "target",
    ),
    BadCall(
        "probability-target-label-smoothing-above-1",
        "cross_entropy",
        lambda: call(logits(4, 3), probs(4, 3), label_smoothing=1.5),
        RuntimeError,
        "label_smoothing",
    ),
    BadCall(
        "probability-target-ignore-index-0",
        "cross_entropy",
        lambda: call(logits(4, 3), probs(4, 3), ignore_index=0),
        RuntimeError,
        "ignore_index",
    ),
    BadCall(
        "probability-target-ignore-index-above-C",
        "cross_entropy",
        lambda: call(logits(4, 3), probs(4, 3), ignore_index=5),
        RuntimeError,
        "ignore_index",
    ),
    BadCall(
        "probability-target-dtype-int64",
        "cross_entropy",
        lambda: call(logits(4, 3), np.zeros((4, 3), np.int64)),
        RuntimeError,
        "target",
    ),
    BadCall(
        "probability-target-dtype-bool",
        "cross_entropy",
        lambda: call(logits(4, 3), np.zeros((4, 3), np.bool_)),
        RuntimeError,
        "target",
    ),
    BadCall(
        "probability-target-weight-wrong-length",
        "cross_entropy",
        lambda: call(logits(4, 3), probs(4, 3), weight=np.ones(4)),
        RuntimeError,
        "weight",
    ),
    BadCall(
        "probability-target-weight-2d-4d-input",
        "cross_entropy",
        lambda: call(logits(2, 3, 4, 5), probs(2, 3, 4, 5), weight=np.ones((3, 1))),
        RuntimeError,
        "weight",
    ),
    BadCall(
        "probability-target-input-dtype-int64",
        "cross_entropy",
        lambda: call(np.ones((4, 3), np.int64), probs(4, 3)),
        NotImplementedError,
        "input",
        releases=(_LONG_BEFORE_2_8,),
    ),
]

# --- binary losses: shapes, dtypes, broadcasting ------------------------------------------------------------
for _loss in BINARY_LOSSES:
    TABLE += [
        BadCall("target-shape-mismatch", _loss, lambda: call(probs(4, 3), probs(4, 2)), ValueError, "target"),
        BadCall(
            "target-shape-broadcastable", _loss, lambda: call(probs(4, 3), probs(1, 3)), ValueError, "target"
        ),
        BadCall(
            "target-shape-extra-dim", _loss, lambda: call(probs(4, 3), probs(4, 3, 1)), ValueError, "target"
        ),
        BadCall(
            "weight-not-broadcastable",
            _loss,
            lambda: call(probs(4, 3), probs(4, 3), weight=np.ones(2)),
            RuntimeError,
            "weight",
        ),
        BadCall(
            "weight-enlarges-rank",
            _loss,
            lambda: call(probs(4, 3), probs(4, 3), weight=np.ones((1, 1, 3))),
            RuntimeError,
            "weight",
        ),
        BadCall(
            "weight-enlarges-dim",
            _loss,
            lambda: call(probs(4, 1), probs(4, 1), weight=np.ones(3)),
            RuntimeError,
            "weight",
        ),
        BadCall(
            "input-dtype-int64",
            _loss,
            lambda: call(np.ones((4, 3), np.int64), np.ones((4, 3), np.int64)),
            NotImplementedError,
            "input",
            releases=(_LONG_BEFORE_2_8,),
        ),
        BadCall(
            "grad-output-shape-mismatch",
            _loss,
            lambda: call(probs(4, 3), probs(4, 3), reduction="none"),
            RuntimeError,
            "grad_output",
            only_backward=True,
            grad_output=np.ones(3),
        ),
    ]
TABLE += [
    BadCall(
        "input-above-1", "binary_cross_entropy", lambda: call(probs(3) + 1, probs(3)), RuntimeError, "input"
    ),
    BadCall(
        "input-below-0", "binary_cross_entropy", lambda: call(probs(3) - 1, probs(3)), RuntimeError, "input"
    ),
    BadCall(
        "input-nan",
        "binary_cross_entropy",
        lambda: call(np.array([0.5, np.nan]), probs(2)),
        RuntimeError,
        "input",
    ),
    BadCall(
        "target-above-1", "binary_cross_entropy", lambda: call(probs(3), probs(3) + 1), RuntimeError, "target"
    ),
    BadCall(
        "target-below-0", "binary_cross_entropy", lambda: call(probs(3), probs(3) - 1), RuntimeError, "target"
    ),
    BadCall(
        "target-nan",
        "binary_cross_entropy",
        lambda: call(probs(2), np.array([0.5, np.nan])),
        RuntimeError,
        "target",
    ),
    BadCall(
        "target-out-of-range-reduction-none",
        "binary_cross_entropy",
        lambda: call(probs(3), probs(3) + 1, reduction="none"),
        RuntimeError,
        "target",
    ),
    BadCall(
        "target-dtype-mismatch",
        "binary_cross_entropy",
        lambda: call(probs(3), probs(3).astype(np.float32)),
        RuntimeError,
        "target",
    ),
    BadCall(
        "target-dtype-int64",
        "binary_cross_entropy",
        lambda: call(probs(3), np.ones(3, np.int64)),
        RuntimeError,
        "target",
    ),
    BadCall(
        "target-dtype-int64",
        "binary_cross_entropy_with_logits",
        lambda: call(logits(3), np.ones(3, np.int64)),
        RuntimeError,
        "target",
    ),
    BadCall(
        "target-dtype-bool",
        "binary_cross_entropy_with_logits",
        lambda: call(logits(3), np.ones(3, np.bool_)),
        RuntimeError,
        "target",
        releases=(
            Release(
                ">=2.14.1",
                NotImplementedError,
                evidence="torch 2.14.1, 2.15.0: NotImplementedError with the same message ('Subtraction, the `-` "
                "operator, with two bool tensors is not supported'); 2.13.0 and earlier: RuntimeError; 2.14.0 not "
                "measured",
            ),
        ),
    ),
    # the classic mistake: pos_weight (C,) for an (N, C, H, W) input broadcasts against W, not C
    BadCall(
        "pos-weight-not-broadcastable",
        "binary_cross_entropy_with_logits",
        lambda: call(logits(2, 3, 4, 5), probs(2, 3, 4, 5), pos_weight=np.ones(3)),
        RuntimeError,
        "pos_weight",
    ),
    BadCall(
        "pos-weight-enlarges-rank",
        "binary_cross_entropy_with_logits",
        lambda: call(logits(4, 3), probs(4, 3), pos_weight=np.ones((2, 4, 3))),
        RuntimeError,
        "pos_weight",
    ),
    BadCall(
        "pos-weight-enlarges-dim",
        "binary_cross_entropy_with_logits",
        lambda: call(logits(4, 1), probs(4, 1), pos_weight=np.ones(3)),
        RuntimeError,
        "pos_weight",
    ),
]
