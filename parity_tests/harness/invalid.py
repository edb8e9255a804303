"""Inputs that torch's device kernels check inside the kernel, and what each device does with them.

On CUDA an out-of-range class index or a BCE input outside [0, 1] is a device-side assert: the CUDA context of
the process is unusable afterwards. Each such input therefore runs in a subprocess of its own
(`python -m parity_tests.harness.invalid NAME DEVICE` prints the outcome as JSON), so the rest of the run keeps
a working context. On cpu the same call runs in-process: there it raises an ordinary exception.

An outcome is `error:<exception class>` (raised at the call, the process fine), `assert` (a device-side
assert), `silent` (a result, no complaint), or `crash` (the process died). OUTCOMES records, per device, what
torch does; the test fails where torch does something else (torch changed, or a new device behaves otherwise).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Invalid:
    loss: str
    what: str
    make: Callable[[], tuple[Callable[..., torch.Tensor], list[torch.Tensor], dict[str, Any]]]
    outcomes: dict[str, str]  # device -> the recorded outcome


def _logits(*shape: int) -> torch.Tensor:
    return torch.linspace(-2.0, 2.0, int(torch.tensor(shape).prod())).reshape(shape)


INVALID: dict[str, Invalid] = {
    "ce-index-above-classes": Invalid(
        "cross_entropy",
        "class index 3 with 3 classes, (4, 3) input",
        lambda: (F.cross_entropy, [_logits(4, 3), torch.tensor([0, 1, 3, 2])], {}),
        {"cpu": "error:IndexError", "cuda": "assert"},
    ),
    "ce-index-negative": Invalid(
        "cross_entropy",
        "class index -1 that is not the ignore_index",
        lambda: (F.cross_entropy, [_logits(4, 3), torch.tensor([0, -1, 1, 2])], {}),
        {"cpu": "error:IndexError", "cuda": "assert"},
    ),
    "ce-index-above-classes-kdim": Invalid(
        "cross_entropy",
        "class index 5 with 3 classes, (2, 3, 4, 4) input (the spatial kernel)",
        lambda: (
            F.cross_entropy,
            [
                _logits(2, 3, 4, 4),
                torch.zeros(2, 4, 4, dtype=torch.long).index_put_((torch.tensor([1]),), torch.tensor(5)),
            ],
            {},
        ),
        {"cpu": "error:IndexError", "cuda": "assert"},
    ),
    "nll-index-above-classes-unbatched": Invalid(
        "nll_loss",
        "class index 7 with 3 classes, unbatched (3,) input",
        lambda: (F.nll_loss, [torch.log_softmax(_logits(3), 0), torch.tensor(7)], {}),
        {"cpu": "error:IndexError", "cuda": "assert"},
    ),
    "nll-index-above-classes-sum": Invalid(
        "nll_loss",
        "class index 3 with 3 classes, reduction 'sum'",
        lambda: (
            F.nll_loss,
            [torch.log_softmax(_logits(4, 3), 1), torch.tensor([0, 1, 3, 2])],
            {"reduction": "sum"},
        ),
        {"cpu": "error:IndexError", "cuda": "assert"},
    ),
    "nll-ignore-index-beyond-classes": Invalid(
        "nll_loss",
        "targets equal to an ignore_index of 5 with 3 classes",
        lambda: (
            F.nll_loss,
            [torch.log_softmax(_logits(4, 3), 1), torch.tensor([0, 5, 1, 5])],
            {"ignore_index": 5},
        ),
        {"cpu": "silent", "cuda": "silent"},
    ),
    "ce-weight-wrong-length": Invalid(
        "cross_entropy",
        "class weight of 2 entries for 3 classes (checked on the host)",
        lambda: (F.cross_entropy, [_logits(4, 3), torch.tensor([0, 1, 2, 1])], {"weight": torch.ones(2)}),
        {"cpu": "error:RuntimeError", "cuda": "error:RuntimeError"},
    ),
    "bce-input-above-one": Invalid(
        "binary_cross_entropy",
        "input 1.5",
        lambda: (F.binary_cross_entropy, [torch.tensor([0.2, 1.5, 0.7]), torch.tensor([0.0, 1.0, 1.0])], {}),
        {"cpu": "error:RuntimeError", "cuda": "assert"},
    ),
    "bce-input-negative": Invalid(
        "binary_cross_entropy",
        "input -0.25",
        lambda: (
            F.binary_cross_entropy,
            [torch.tensor([0.2, -0.25, 0.7]), torch.tensor([0.0, 1.0, 1.0])],
            {},
        ),
        {"cpu": "error:RuntimeError", "cuda": "assert"},
    ),
    "bce-input-nan": Invalid(
        "binary_cross_entropy",
        "input NaN",
        lambda: (
            F.binary_cross_entropy,
            [torch.tensor([0.2, float("nan"), 0.7]), torch.tensor([0.0, 1.0, 1.0])],
            {},
        ),
        {"cpu": "error:RuntimeError", "cuda": "assert"},
    ),
    "bce-target-above-one": Invalid(
        "binary_cross_entropy",
        "target 1.5",
        lambda: (F.binary_cross_entropy, [torch.tensor([0.2, 0.5, 0.7]), torch.tensor([0.0, 1.5, 1.0])], {}),
        {"cpu": "error:RuntimeError", "cuda": "assert"},
    ),
    "bce-logits-target-above-one": Invalid(
        "binary_cross_entropy_with_logits",
        "target 1.5 (targets are not checked)",
        lambda: (
            F.binary_cross_entropy_with_logits,
            [torch.tensor([0.2, -1.0, 3.0]), torch.tensor([0.0, 1.5, 1.0])],
            {},
        ),
        {"cpu": "silent", "cuda": "silent"},
    ),
    "ce-prob-target-negative": Invalid(
        "cross_entropy",
        "probability targets with a negative entry (targets are not checked)",
        lambda: (F.cross_entropy, [_logits(2, 3), torch.tensor([[0.5, 0.75, -0.25], [0.0, 0.0, 1.0]])], {}),
        {"cpu": "silent", "cuda": "silent"},
    ),
}


def outcome(name: str, device: str) -> dict[str, Any]:
    """Run one invalid input's forward and backward on `device`, in this process; what happened."""
    fn, tensors, keywords = INVALID[name].make()
    tensors = [t.to(device) for t in tensors]
    keywords = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in keywords.items()}
    x = tensors[0].requires_grad_()
    try:
        loss = fn(x, *tensors[1:], **keywords)
        (grad,) = torch.autograd.grad(loss, x, torch.ones_like(loss))
        result = {"loss": loss.detach().cpu().tolist(), "grad_finite": bool(grad.isfinite().all())}
        if device == "cuda":
            torch.cuda.synchronize()
        elif device == "mps":
            torch.mps.synchronize()
    except Exception as exc:  # what torch raised is the observation
        text = str(exc)
        kind = "assert" if "device-side assert" in text else f"error:{type(exc).__name__}"
        return {"outcome": kind, "message": text.strip().splitlines()[0] if text.strip() else ""}
    return {"outcome": "silent", "result": result}


def outcome_in_subprocess(name: str, device: str, timeout: float = 120) -> dict[str, Any]:
    """`outcome` in a fresh process (a device-side assert breaks the CUDA context of the process it happens in)."""
    env = {**os.environ, "CUDA_LAUNCH_BLOCKING": "1"}  # the assert is reported at the call that caused it
    proc = subprocess.run(
        [sys.executable, "-m", "parity_tests.harness.invalid", name, device],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or [""])[-1]
        if "device-side assert" in proc.stderr:
            return {"outcome": "assert", "message": tail}
        return {"outcome": "crash", "message": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


if __name__ == "__main__":
    print(json.dumps(outcome(sys.argv[1], sys.argv[2])))
