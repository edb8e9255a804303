"""Run one case on torch (in the case's dtype and device) and on the truth (the reference, in float64)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from parity_tests.harness.cases import CaseData
from parity_tests.harness.dtypes import TORCH_DTYPES
from parity_tests.harness.oracle import truth
from parity_tests.harness.stages import SECOND_ORDER
from parity_tests.harness.threads import THREADS


class Outputs(dict):
    """stage -> float64 array (None: the stage does not exist, or torch could not compute it); `unavailable`:
    stage -> why torch has no value for a stage that exists (it cannot differentiate twice there)."""

    def __init__(self, *args, unavailable: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.unavailable = unavailable or {}


def _to_numpy(tensor: torch.Tensor | None) -> np.ndarray | None:
    # To the host first, then float64 there: not a float64 copy on the device.
    return None if tensor is None else tensor.detach().cpu().to(torch.float64).numpy()


def run_torch(data: CaseData, device: str | None = None) -> Outputs:
    """torch's forward, autograd.grad with the case's grad_output, and autograd.grad of that gradient with the
    case's grad_grad_input (the double backward)."""
    case = data.case
    dtype = TORCH_DTYPES[case.dtype]
    device = device or case.device

    def tensor(name: str) -> torch.Tensor:
        array = data.arrays[name]
        # Converted on the host: a float64 copy on the device would be the biggest array of a large case.
        host = torch.from_numpy(array)
        return (host.to(dtype) if array.dtype.kind == "f" else host).to(device)

    # The suite runs torch single-threaded (conftest.py); a device-scale case on cpu gets the host's cores.
    threads = torch.get_num_threads()
    if device == "cpu" and data.arrays["input"].size >= 1 << 24:
        torch.set_num_threads(THREADS)
    try:
        return _forward_backward(data, tensor)
    finally:
        torch.set_num_threads(threads)


def _forward_backward(data: CaseData, tensor: Callable[[str], torch.Tensor]) -> Outputs:
    case = data.case
    differentiable = case.spec.target_is_differentiable(case.opts)
    extras = {name: tensor(name) for name in ("weight", "pos_weight") if name in data.arrays}

    def forward() -> tuple[torch.Tensor, list[torch.Tensor]]:
        input_ = tensor("input").requires_grad_()
        target = tensor("target")
        wrt = [input_, target.requires_grad_()] if differentiable else [input_]
        return case.spec.torch_fn(input_, target, **extras, **data.keywords), wrt

    loss, wrt = forward()
    # grad_output requires grad too: the double backward differentiates the gradient wrt it
    grad_output = tensor("grad_output").requires_grad_()
    why = None
    try:
        grads = torch.autograd.grad(loss, wrt, grad_outputs=grad_output, create_graph=True)
    # a backward that has no derivative may refuse create_graph: first order alone
    except RuntimeError as exc:
        why = f"torch cannot differentiate its backward: {_first_line(exc)}"
        loss, wrt = forward()
        grads = torch.autograd.grad(loss, wrt, grad_outputs=grad_output.detach())
    out = Outputs(
        {
            "loss": _to_numpy(loss),
            "grad_input": _to_numpy(grads[0]),
            "grad_target": _to_numpy(grads[1]) if differentiable else None,
        }
    )
    second_wrt = [grad_output, *wrt]
    if why is None:
        why = not_differentiable(grads[0])
    if why is None:
        try:
            second = torch.autograd.grad(
                grads[0], second_wrt, grad_outputs=tensor("grad_grad_input"), allow_unused=True
            )
        except RuntimeError as exc:  # no double backward for this dtype or device
            why = f"torch cannot differentiate twice here: {_first_line(exc)}"
    existing = SECOND_ORDER[: len(second_wrt)]  # grad2_target only where the target is differentiable
    out.update(dict.fromkeys(SECOND_ORDER))
    if why is not None:
        out.unavailable = dict.fromkeys(existing, why)
        return out
    for stage, d, t in zip(existing, second, second_wrt, strict=True):
        # None: the gradient does not depend on that argument (nll_loss's on its input), a derivative of 0
        out[stage] = _to_numpy(d) if d is not None else np.zeros(tuple(t.shape))
    return out


# The node autograd puts where a backward cannot be differentiated (a function marked once_differentiable).
ERROR_NODE = "torch::autograd::Error"


def not_differentiable(gradient: torch.Tensor) -> str | None:
    """Why `gradient` cannot be differentiated again, or None. A gradient without a graph cannot; nor can one
    whose graph holds autograd's error node: autograd.grad with allow_unused=True may skip that node and return
    None, as for an input that is not used, so the graph is searched for it instead."""
    if not gradient.requires_grad:
        return "the gradient has no autograd graph (no double backward)"
    seen, stack = set(), [gradient.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if node.name() == ERROR_NODE:
            return "the backward is differentiable once only (its graph holds autograd's error node)"
        stack.extend(next_node for next_node, _ in node.next_functions)
    return None


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def run_truth(data: CaseData) -> Outputs:
    """The truth: the reference's forward, `<loss>_backward` and `<loss>_double_backward` on (copies of) the same
    rounded values."""
    name = data.case.loss
    arrays = data.impl_arrays()
    extras = {k: arrays[k] for k in ("weight", "pos_weight") if k in arrays}
    loss = getattr(truth, name)(arrays["input"], arrays["target"], **extras, **data.keywords)
    grad_input, grad_target = getattr(truth, f"{name}_backward")(
        arrays["grad_output"], arrays["input"], arrays["target"], **extras, **data.keywords
    )
    grad_grad_output, grad2_input, grad2_target = getattr(truth, f"{name}_double_backward")(
        arrays["grad_grad_input"],
        arrays["grad_output"],
        arrays["input"],
        arrays["target"],
        **extras,
        **data.keywords,
    )
    return Outputs(
        {
            "loss": np.asarray(loss),
            "grad_input": grad_input,
            "grad_target": grad_target,
            "grad_grad_output": np.asarray(grad_grad_output),
            "grad2_input": grad2_input,
            "grad2_target": grad2_target,
        }
    )
