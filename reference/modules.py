"""torch.nn-style loss modules over the functional reference.

Constructor keywords and defaults are torch.nn's, minus the deprecated ``size_average`` / ``reduce``; every
argument after ``weight`` is keyword-only, so that a positional call written for torch (where the second
positional is ``size_average``) fails loudly instead of meaning something else. Like torch, the options are
validated when the loss is called, not at construction.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .binary_cross_entropy import binary_cross_entropy, binary_cross_entropy_backward
from .binary_cross_entropy_with_logits import (
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_backward,
)
from .cross_entropy import cross_entropy, cross_entropy_backward
from .nll_loss import nll_loss, nll_loss_backward


class CrossEntropyLoss:
    """``torch.nn.CrossEntropyLoss(weight=None, ignore_index=-100, reduction='mean', label_smoothing=0.0)``.

    >>> float(CrossEntropyLoss()(np.zeros((1, 2)), np.array([1]))) == float(np.log(2.0))
    True
    """

    def __init__(
        self,
        weight: ArrayLike | None = None,
        *,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        self.weight = weight
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing

    def _options(self) -> dict:
        return {
            "weight": self.weight,
            "ignore_index": self.ignore_index,
            "reduction": self.reduction,
            "label_smoothing": self.label_smoothing,
        }

    def __call__(self, input: ArrayLike, target: ArrayLike) -> np.ndarray:
        return cross_entropy(input, target, **self._options())

    def backward(self, grad_output: ArrayLike | float, input: ArrayLike, target: ArrayLike):
        return cross_entropy_backward(grad_output, input, target, **self._options())


class NLLLoss:
    """``torch.nn.NLLLoss(weight=None, ignore_index=-100, reduction='mean')``.

    >>> NLLLoss(reduction="sum")(np.array([[-1.0, -2.0]]), np.array([1])).tolist()
    2.0
    """

    def __init__(self, weight: ArrayLike | None = None, *, ignore_index: int = -100, reduction: str = "mean"):
        self.weight = weight
        self.ignore_index = ignore_index
        self.reduction = reduction

    def _options(self) -> dict:
        return {"weight": self.weight, "ignore_index": self.ignore_index, "reduction": self.reduction}

    def __call__(self, input: ArrayLike, target: ArrayLike) -> np.ndarray:
        return nll_loss(input, target, **self._options())

    def backward(self, grad_output: ArrayLike | float, input: ArrayLike, target: ArrayLike):
        return nll_loss_backward(grad_output, input, target, **self._options())


class BCELoss:
    """``torch.nn.BCELoss(weight=None, reduction='mean')``.

    >>> BCELoss(reduction="none")(np.array([0.5]), np.array([0.0])).round(6).tolist()
    [0.693147]
    """

    def __init__(self, weight: ArrayLike | None = None, *, reduction: str = "mean") -> None:
        self.weight = weight
        self.reduction = reduction

    def __call__(self, input: ArrayLike, target: ArrayLike) -> np.ndarray:
        return binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)

    def backward(self, grad_output: ArrayLike | float, input: ArrayLike, target: ArrayLike):
        return binary_cross_entropy_backward(
            grad_output, input, target, weight=self.weight, reduction=self.reduction
        )


class BCEWithLogitsLoss:
    """``torch.nn.BCEWithLogitsLoss(weight=None, reduction='mean', pos_weight=None)``.

    >>> BCEWithLogitsLoss(reduction="none")(np.array([0.0]), np.array([1.0])).round(6).tolist()
    [0.693147]
    """

    def __init__(
        self,
        weight: ArrayLike | None = None,
        *,
        reduction: str = "mean",
        pos_weight: ArrayLike | None = None,
    ) -> None:
        self.weight = weight
        self.reduction = reduction
        self.pos_weight = pos_weight

    def _options(self) -> dict:
        return {"weight": self.weight, "reduction": self.reduction, "pos_weight": self.pos_weight}

    def __call__(self, input: ArrayLike, target: ArrayLike) -> np.ndarray:
        return binary_cross_entropy_with_logits(input, target, **self._options())

    def backward(self, grad_output: ArrayLike | float, input: ArrayLike, target: ArrayLike):
        return binary_cross_entropy_with_logits_backward(grad_output, input, target, **self._options())
