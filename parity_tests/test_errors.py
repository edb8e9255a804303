"""Error parity: every bad input torch rejects, the candidate rejects with the same exception class.

One table of bad calls (``harness/bad_calls.py``), one test. For each entry the test first checks that torch (CPU)
still raises the recorded class (so a change in torch shows up here), then that the candidate raises exactly that
class from the loss and from its ``_backward``. Messages are not compared with torch's; the reference's must name
the argument (a candidate is held to the class only: torch's own messages often do not name it). A candidate that
lacks the function, or declines with NotImplementedError where torch raises something else, is counted as not
implementing it (a failure only with ``--require-all``).

Where the installed torch release raises differently from torch 2.13 (the release the reference mirrors; the table
records both, ``bad_calls.Release``), torch is checked against its own release's behaviour, and a candidate passes
with either: the behaviour of the torch it runs beside, or the one the reference mirrors.

Entries with ``only_backward`` are inputs torch's forward accepts but its backward rejects: the test checks
that both forwards succeed and both backwards raise.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from parity_tests.harness.bad_calls import TABLE, Arrays, BadCall, behaviour
from parity_tests.harness.candidate import Candidate
from parity_tests.plugin import selected_losses


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


def _candidate_call(
    candidate: Candidate, case: BadCall, stage: str, inputs: Arrays, kwargs: dict[str, Any]
) -> None:
    """The call in the candidate: NumPy arrays, or for a torch candidate the same values as tensors (its backward
    through autograd where it defines none)."""
    module = candidate.module
    if candidate.kind == "torch":
        x, y = (_torch(a) for a in inputs)
        kwargs = {k: _torch(v) for k, v in kwargs.items()}
        backward = getattr(module, f"{case.loss}_backward", None)
        if stage == "forward" or backward is None:
            if stage == "backward" and x.is_floating_point():
                x.requires_grad_(True)
            out = getattr(module, case.loss)(x, y, **kwargs)
            if stage == "backward":
                g = torch.ones_like(out) if case.grad_output is None else _torch(case.grad_output)
                torch.autograd.grad(out, x, g)
            return
        g = torch.ones(()) if case.grad_output is None else _torch(case.grad_output)
        backward(g, x, y, **kwargs)
        return
    if stage == "forward":
        getattr(module, case.loss)(*inputs, **kwargs)
    else:
        # checks of the arguments come before grad_output's: any grad_output will do for a bad argument
        g = 1.0 if case.grad_output is None else case.grad_output
        getattr(module, f"{case.loss}_backward")(g, *inputs, **kwargs)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "bad" in metafunc.fixturenames and metafunc.config.loss_parity is not None:
        losses = selected_losses(metafunc.config)
        chosen = [c for c in TABLE if c.loss in losses]
        metafunc.parametrize("bad", chosen, ids=[f"{c.loss}-{c.id}" for c in chosen])


@pytest.mark.parity
@pytest.mark.parametrize("stage", ["forward", "backward"])
def test_rejected_like_torch(candidate: Candidate, parity_run, bad: BadCall, stage: str) -> None:
    # (named "bad", not "case": the plugin parametrizes every test that takes "cases" with the parity grid)
    inputs, kwargs = bad.build()
    name = bad.loss if stage == "forward" or candidate.kind == "torch" else f"{bad.loss}_backward"
    # torch as the installed release behaves, and as torch 2.13 (the release the reference mirrors) does
    installed = behaviour(bad, torch.__version__)
    accepted = {installed, (bad.raises, bad.only_backward)}
    row = {"loss": bad.loss, "id": bad.id, "stage": stage, "torch": installed[0].__name__}
    if not candidate.defines(name):
        parity_run.add_row("errors", {**row, "outcome": "unsupported", "message": f"defines no {name}"})
        pytest.skip(f"not implemented by the candidate: {candidate.name} defines no {name}")

    as_installed = dataclasses.replace(bad, raises=installed[0], only_backward=installed[1])
    if installed[1] and stage == "forward":  # torch's forward accepts it; only its backward raises
        _torch_call(dataclasses.replace(as_installed, only_backward=False, raises=Exception), inputs, kwargs)
    else:
        with pytest.raises(Exception) as torch_info:  # the class is asserted just below
            _torch_call(as_installed, inputs, kwargs)
        assert type(torch_info.value) is installed[0], (
            f"torch {torch.__version__} now raises {type(torch_info.value).__name__}, the table says "
            f"{installed[0].__name__}: {torch_info.value} [{bad.loss}-{bad.id}]"
        )

    try:
        _candidate_call(candidate, bad, stage, inputs, kwargs)
    except Exception as exc:  # compared with torch's classes just below
        raised = exc
    else:
        raised = None
    # what the candidate may do here: accept (a forward that torch accepts) or raise one of torch's classes
    allowed = {cls for cls, only_backward in accepted if not (only_backward and stage == "forward")}
    may_accept = stage == "forward" and any(only_backward for _, only_backward in accepted)
    said = " or ".join(sorted(c.__name__ for c in allowed)) or "nothing"
    if isinstance(raised, NotImplementedError) and NotImplementedError not in allowed:
        message = f"{stage} raised NotImplementedError: {raised}"
        parity_run.add_row("errors", {**row, "outcome": "unsupported", "message": message})
        if not parity_run.config.getoption("--require-all"):
            pytest.skip(f"not implemented by the candidate: {message}")
    if raised is None:
        problem = None if may_accept else f"{stage} accepted it; torch raises {said}"
    elif type(raised) not in allowed:
        problem = f"{stage} raised {type(raised).__name__}: {raised}; torch raises {said}"
    elif candidate.is_truth and bad.names not in str(raised):
        # the reference's own standard: a message that names the argument (torch's often does not: "Target 3 is
        # out of bounds.", "expected scalar type Long but found Byte"), so a candidate is held to the class only
        problem = f"{stage}'s message does not name {bad.names!r}: {raised}"
    else:
        problem = None
    message = problem or (str(raised) if raised is not None else "accepted, as torch does")
    parity_run.add_row("errors", {**row, "outcome": "differ" if problem else "agree", "message": message})
    assert problem is None, f"{problem} [{bad.loss}-{bad.id}]"
