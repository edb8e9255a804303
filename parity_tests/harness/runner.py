"""Run one case on torch (in the case's dtype and device) and on the truth (the reference, in float64)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from parity_tests.harness.cases import CaseData
from parity_tests.harness.dtypes import TORCH_DTYPES
from parity_tests.harness.oracle import truth
from parity_tests.harness.threads import THREADS

STAGES = ("loss", "grad_input", "grad_target")
Outputs = dict[str, np.ndarray | None]  # stage -> float64 array (None: the stage does not exist)


def _to_numpy(tensor: torch.Tensor | None) -> np.ndarray | None:
    # To the host first, then float64 there: not a float64 copy on the device.
    return None if tensor is None else tensor.detach().cpu().to(torch.float64).numpy()


def run_torch(data: CaseData, device: str | None = None) -> Outputs:
    """torch's forward, then autograd.grad with the case's grad_output."""
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
    input_ = tensor("input").requires_grad_()
    target = tensor("target")
    wrt = [input_]
    if case.spec.target_is_differentiable(case.opts):
        wrt.append(target.requires_grad_())
    extras = {name: tensor(name) for name in ("weight", "pos_weight") if name in data.arrays}
    loss = case.spec.torch_fn(input_, target, **extras, **data.keywords)
    grads = torch.autograd.grad(loss, wrt, grad_outputs=tensor("grad_output"))
    return {
        "loss": _to_numpy(loss),
        "grad_input": _to_numpy(grads[0]),
        "grad_target": _to_numpy(grads[1]) if len(grads) > 1 else None,
    }


def run_truth(data: CaseData) -> Outputs:
    """The truth: the reference's forward and `<loss>_backward` on (copies of) the same rounded values."""
    name = data.case.loss
    arrays = data.impl_arrays()
    extras = {k: arrays[k] for k in ("weight", "pos_weight") if k in arrays}
    loss = getattr(truth, name)(arrays["input"], arrays["target"], **extras, **data.keywords)
    grad_input, grad_target = getattr(truth, f"{name}_backward")(
        arrays["grad_output"], arrays["input"], arrays["target"], **extras, **data.keywords
    )
    return {"loss": np.asarray(loss), "grad_input": grad_input, "grad_target": grad_target}
