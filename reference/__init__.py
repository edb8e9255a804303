"""NumPy float64 reference of four torch losses: forward, hand-derived backward and double backward.

No torch import."""

from .activations import log_sigmoid, log_softmax, sigmoid, softmax
from .binary_cross_entropy import (
    binary_cross_entropy,
    binary_cross_entropy_backward,
    binary_cross_entropy_double_backward,
)
from .binary_cross_entropy_with_logits import (
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_backward,
    binary_cross_entropy_with_logits_double_backward,
)
from .cross_entropy import (
    cross_entropy,
    cross_entropy_backward,
    cross_entropy_double_backward,
    cross_entropy_forward_backward,
)
from .modules import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, NLLLoss
from .nll_loss import nll_loss, nll_loss_backward, nll_loss_double_backward

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "NLLLoss",
    "binary_cross_entropy",
    "binary_cross_entropy_backward",
    "binary_cross_entropy_double_backward",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_backward",
    "binary_cross_entropy_with_logits_double_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "cross_entropy_double_backward",
    "cross_entropy_forward_backward",
    "log_sigmoid",
    "log_softmax",
    "nll_loss",
    "nll_loss_backward",
    "nll_loss_double_backward",
    "sigmoid",
    "softmax",
]
