"""Error parity: every bad input torch rejects, the implementation rejects with the same exception class.

One table of bad calls (``harness/bad_calls.py``), one test. For each entry the test first checks that torch
(CPU) still raises the recorded class (so a change in torch shows up here), then that the implementation raises
exactly that class from the loss and from its ``_backward``, with a message naming the offending argument.
Messages are not compared with torch's: only the argument's name is asserted.

Entries with ``only_backward`` are inputs torch's forward accepts but its backward rejects: the test checks
that both forwards succeed and both backwards raise.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from parity_tests.harness.bad_calls import TABLE, Arrays, BadCall


def _torch(value: Any) -> Any:
    return torch.tensor(value) if isinstance(value, np.ndarray) else value


def _torch_call(case: BadCall, inputs: Arrays, kwargs: dict[str, Any]) -> None:
    """The call in torch: forward, then (only_backward entries) the backward for the recorded grad_output."""
    x, y = (_torch(a) for a in inputs)
    if case.only_backward:
        x.requires_grad_(True)
    out = getattr(F, case.loss)(x, y, **{k: _torch(v) for k, v in kwargs.items()})
    if case.only_backward:
        g = torch.ones_like(out) if case.grad_output is None else _torch(case.grad_output)
        torch.autograd.grad(out, x, g)


def _impl_call(impl: ModuleType, case: BadCall, stage: str, inputs: Arrays, kwargs: dict[str, Any]) -> None:
    if stage == "forward":
        getattr(impl, case.loss)(*inputs, **kwargs)
    else:
        # checks of the arguments come before grad_output's: any grad_output will do for a bad argument
        g = 1.0 if case.grad_output is None else case.grad_output
        getattr(impl, f"{case.loss}_backward")(g, *inputs, **kwargs)


@pytest.mark.parametrize("stage", ["forward", "backward"])
@pytest.mark.parametrize("bad", TABLE, ids=[f"{c.loss}-{c.id}" for c in TABLE])
def test_rejected_like_torch(impl: ModuleType, bad: BadCall, stage: str) -> None:
    # (named "bad", not "case": conftest parametrizes every test that takes "case" with the parity grid)
    case = bad
    inputs, kwargs = case.build()
    if case.only_backward and stage == "forward":
        # the forward is accepted by both; only the backward (the other stage) must raise
        _torch_call(BadCall(case.id, case.loss, case.build, case.raises, case.names), inputs, kwargs)
        getattr(impl, case.loss)(*inputs, **kwargs)
        return

    with pytest.raises(Exception) as torch_info:  # the class is asserted just below
        _torch_call(case, inputs, kwargs)
    assert type(torch_info.value) is case.raises, (
        f"torch {torch.__version__} now raises {type(torch_info.value).__name__}, the table says "
        f"{case.raises.__name__}: {torch_info.value} [{case.loss}-{case.id}]"
    )

    with pytest.raises(Exception) as info:
        _impl_call(impl, case, stage, inputs, kwargs)
    assert type(info.value) is case.raises, (
        f"{stage} raised {type(info.value).__name__}: {info.value}; torch raises {case.raises.__name__} "
        f"[{case.loss}-{case.id}]"
    )
    assert case.names in str(info.value), (
        f"{stage}'s message does not name {case.names!r}: {info.value} [{case.loss}-{case.id}]"
    )


def test_table_ids_are_unique() -> None:
    ids = [f"{c.loss}-{c.id}" for c in TABLE]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


CROSS_ENTROPY_TABLE = [c for c in TABLE if c.loss == "cross_entropy"]


@pytest.mark.parametrize("bad", CROSS_ENTROPY_TABLE, ids=[c.id for c in CROSS_ENTROPY_TABLE])
def test_forward_backward_rejects_like_its_two_calls(impl: ModuleType, bad: BadCall) -> None:
    """``cross_entropy_forward_backward``, where the implementation has it (the reference's one-pass extra, not
    part of the API), raises what ``cross_entropy`` then ``cross_entropy_backward`` raise: class and message."""
    one_call = getattr(impl, "cross_entropy_forward_backward", None)
    if one_call is None:
        pytest.skip(f"{impl.__name__} has no cross_entropy_forward_backward")
    inputs, kwargs = bad.build()
    g = 1.0 if bad.grad_output is None else bad.grad_output

    def two_calls() -> None:
        impl.cross_entropy(*inputs, **kwargs)
        impl.cross_entropy_backward(g, *inputs, **kwargs)

    with pytest.raises(Exception) as expected:
        two_calls()
    with pytest.raises(type(expected.value)) as got:
        one_call(g, *inputs, **kwargs)
    assert str(got.value) == str(expected.value), f"one call: {got.value}; two: {expected.value}"
