"""The benchmarked losses and shapes, and the torch / reference callables for each stage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

import reference

ONE_CALL = (
    "fwd+bwd, one call"  # the reference's <loss>_forward_backward, where it has one; torch: its fwd+bwd
)
STAGES = ("forward", "backward", "fwd+bwd", ONE_CALL)
IMPLS = ("torch", "reference")


@dataclass(frozen=True)
class BenchCase:
    loss: str
    shape: tuple[int, ...]
    rounds: int  # timed rounds per stage: few for the large shapes, so that `make bench` takes minutes

    @property
    def id(self) -> str:
        return f"{self.loss}-{'x'.join(map(str, self.shape))}"


CASES = (
    BenchCase("cross_entropy", (4096, 32000), 3),  # an LLM's vocabulary
    BenchCase("cross_entropy", (3, 423, 32000), 3),  # odd sizes, classes along dim 1 of a 3-D input
    BenchCase("cross_entropy", (8, 21, 128, 128), 5),  # a segmentation map (PASCAL VOC's 21 classes)
    BenchCase("binary_cross_entropy", (4096, 1000), 10),  # multi-label
    BenchCase("binary_cross_entropy_with_logits", (4096, 1000), 10),
)


def inputs(case: BenchCase, seed: int = 0) -> dict[str, np.ndarray]:
    """float32 inputs (and int64 class indices) as a training step would see them; both sides get these."""
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(case.shape, dtype=np.float32) * 2).astype(np.float32)
    if case.loss == "cross_entropy":
        n_classes = case.shape[1]
        target = rng.integers(0, n_classes, case.shape[:1] + case.shape[2:])
        return {"input": logits, "target": target}
    target = (rng.random(case.shape) < 0.1).astype(np.float32)  # multi-label: ~10% positives
    if case.loss == "binary_cross_entropy":
        return {"input": 1.0 / (1.0 + np.exp(-logits)), "target": target}
    return {"input": logits, "target": target}


def torch_stages(case: BenchCase, data: dict[str, np.ndarray]) -> dict[str, Callable[[], object]]:
    """Zero-argument callables per stage. ``backward`` needs a fresh graph: it is (setup, target)."""
    loss_fn = getattr(torch.nn.functional, case.loss)
    target = torch.from_numpy(data["target"])

    def forward() -> tuple[torch.Tensor, torch.Tensor]:
        # as in training: the input requires grad, so the forward saves what its backward needs
        x = torch.from_numpy(data["input"]).requires_grad_()
        return loss_fn(x, target), x

    def backward(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad(loss, x)[0]

    return {
        "forward": forward,
        "backward": (forward, backward),
        "fwd+bwd": lambda: backward(*forward()),
    }


def reference_stages(case: BenchCase, data: dict[str, np.ndarray]) -> dict[str, Callable[[], object]]:
    forward_fn = getattr(reference, case.loss)
    backward_fn = getattr(reference, case.loss + "_backward")
    x, target = data["input"], data["target"]

    def backward() -> object:
        return backward_fn(1.0, x, target)

    stages = {
        "forward": lambda: forward_fn(x, target),
        "backward": backward,
        "fwd+bwd": lambda: (forward_fn(x, target), backward()),
    }
    one_call = getattr(reference, case.loss + "_forward_backward", None)
    if one_call is not None:
        stages[ONE_CALL] = lambda: one_call(1.0, x, target)
    return stages


def has_stage(case: BenchCase, stage: str, impl: str) -> bool:
    return stage != ONE_CALL or (impl == "reference" and hasattr(reference, case.loss + "_forward_backward"))
