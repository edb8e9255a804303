"""The candidate under test (`--impl`): how it is loaded, how it is called, and what it must return.

Two kinds of candidate:

* NumPy (the default): NumPy arrays in, in the case's dtype (float32 arrays holding the values of a bfloat16 case,
  class indices int64), NumPy float64 arrays out. Ports, teaching code. Its gradients come from its
  ``<loss>_backward``, its second-order stages from its ``<loss>_double_backward``.
* torch (a module that sets ``LOSS_PARITY_KIND = "torch"``): torch tensors on the case's device in the case's
  dtype, tensors of any floating dtype out, as a kernel really runs (low precision included). Its gradients come
  from its ``<loss>_backward`` if it defines one, else from autograd through its forward; its second-order stages
  from its ``<loss>_double_backward`` if it defines one, else from autograd twice through its forward where it
  defines no ``<loss>_backward`` (a hand-written backward is not differentiated).

A loss or function the module does not define, or a call that raises NotImplementedError (or, through autograd
twice, an operation whose double backward torch has not implemented), is *unsupported*: neither a pass nor a
failure. Anything else that goes wrong is a failure of the candidate, saying what came back: an exception
(which call raised, and the last frames of its traceback), a result that is not a real floating array of the
expected shape, an argument changed in place. Every call gets its own copies of the inputs, so that nothing the
candidate does can change the case that the record keeps.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from parity_tests.harness.cases import CaseData
from parity_tests.harness.dtypes import TORCH_DTYPES
from parity_tests.harness.oracle import truth
from parity_tests.harness.runner import not_differentiable
from parity_tests.harness.specs import SPECS
from parity_tests.harness.stages import FIRST_ORDER, SECOND_ORDER

KIND_ATTRIBUTE = "LOSS_PARITY_KIND"
KINDS = ("numpy", "torch")
FRAMES = 4  # the candidate's last traceback frames kept in a failure
# Inputs larger than this are not compared after the calls (a copy of a device-scale input is GBs).
MUTATION_CHECK_ELEMENTS = 1 << 24


class CandidateError(Exception):
    """The candidate cannot be used at all: a usage error, reported once."""


@dataclass(frozen=True)
class Candidate:
    name: str  # as given to --impl
    module: Any
    kind: str  # "numpy" or "torch"
    is_truth: bool  # the reference itself: the run is torch against the truth alone
    # the sys.path entry it was imported from, for a replay command that works as printed
    path: str | None = None

    def defines(self, loss: str) -> bool:
        return callable(getattr(self.module, loss, None))


def load(name: str) -> Candidate:
    """The candidate `--impl NAME`, or CandidateError with one clear message."""
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        raise CandidateError(
            f"--impl {name}: cannot be imported ({type(exc).__name__}: {exc}); is the folder that holds it on "
            "sys.path (PYTHONPATH, or the current folder with `python -m pytest`)?"
        ) from None
    candidate = wrap(module, name)
    if not any(candidate.defines(loss) for loss in SPECS):
        raise CandidateError(f"--impl {name}: defines none of the losses ({', '.join(SPECS)})")
    return candidate


def wrap(module: Any, name: str | None = None) -> Candidate:
    """A module (or any object with the API's functions, as the meta-tests plant) as a Candidate."""
    if isinstance(module, Candidate):
        return module
    name = name or getattr(module, "__name__", type(module).__name__)
    kind = getattr(module, KIND_ATTRIBUTE, "numpy")
    if kind not in KINDS:
        raise CandidateError(
            f"--impl {name}: {KIND_ATTRIBUTE} = {kind!r}; expected one of {', '.join(KINDS)}"
        )
    return Candidate(name, module, kind, _is_truth(module), _import_root(module))


def _is_truth(module: Any) -> bool:
    if module is truth:
        return True
    file = getattr(module, "__file__", None)
    return file is not None and _same_file(file, truth.__file__)


@cache
def _same_file(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _import_root(module: Any) -> str | None:
    """The sys.path entry that `module` was imported from (the folder holding its top-level package)."""
    name = getattr(module, "__name__", None)
    return _root_of(name) if isinstance(name, str) and name in sys.modules else None


@cache
def _root_of(name: str) -> str | None:
    top = sys.modules.get(name.split(".")[0])
    if top is None:
        return None
    if hasattr(top, "__path__"):  # a package (a namespace package has no __file__)
        return str(Path(next(iter(top.__path__))).resolve().parent)
    file = getattr(top, "__file__", None)
    return str(Path(file).resolve().parent) if file else None


@dataclass
class Outcome:
    """What the candidate gave for one stage: a float64 value, or why it has none."""

    value: np.ndarray | None = None
    unsupported: str | None = None  # the candidate declines (not a failure)
    problem: str | None = None  # the candidate failed: raised, or returned something that is not a result


class _Declined(Exception):
    pass


class _Broke(Exception):
    pass


# The candidate's call in progress (for a hang, which a time limit interrupts) and the calls that hung earlier in
# this process: a call that hung once is not tried again, so that a hanging candidate costs one time limit per
# process, not one per test.
running: dict[str, str | None] = {"call": None, "case": None}
hung: dict[str, str] = {}  # call -> the case it hung on


def _call(what: str, case_id: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if what in hung:
        raise _Broke(f"{what} not called: it hung on {hung[what]} earlier in this run")
    running.update(call=what, case=case_id)
    try:
        result = fn(*args, **kwargs)
    except NotImplementedError as exc:
        running.update(call=None, case=None)
        raise _Declined(f"{what} raised NotImplementedError" + (f": {exc}" if str(exc) else "")) from None
    except (Exception, SystemExit) as exc:  # SystemExit too: a candidate must not end the run
        running.update(call=None, case=None)
        raise _Broke(f"{what} raised {type(exc).__name__}: {exc}\n{_frames(exc)}") from None
    # (a time limit's exception passes through with `running` still naming the call: mark_hung reads it)
    running.update(call=None, case=None)
    return result


def _frames(exc: BaseException) -> str:
    """The last frames of the candidate's traceback (this module's own frame left out)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__][-FRAMES:]
    return "".join(traceback.format_list(frames)).rstrip()


def mark_hung(case_id: str) -> str | None:
    """After a time limit interrupted a call: remember it as hung; returns the call's name (None if none ran)."""
    what = running["call"]
    if what is not None:
        hung[what] = case_id
        running.update(call=None, case=None)
    return what


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray | np.generic):
        return f"a NumPy {value.dtype} array of shape {np.shape(value)}"
    if isinstance(value, torch.Tensor):
        return f"a torch {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}" if value is not None else "None"


def _numpy_result(value: Any, shape: tuple[int, ...] | None, what: str) -> np.ndarray | None:
    """`value` as a float64 array of `shape` (None where the stage does not exist), or _Broke naming it."""
    if shape is None:
        if value is not None:
            raise _Broke(
                f"{what} returned {_describe(value)} where the API has None (torch has no such gradient)"
            )
        return None
    if type(value) is float and shape == ():  # a plain Python float is a float64 0-d result
        return np.asarray(value)
    api = f"the NumPy API returns float64 arrays of shape {shape}"
    if isinstance(value, torch.Tensor):
        raise _Broke(
            f"{what} returned {_describe(value)}; {api} (a torch candidate sets {KIND_ATTRIBUTE} = 'torch')"
        )
    if not isinstance(value, np.ndarray | np.generic) or value.dtype != np.float64:
        raise _Broke(f"{what} returned {_describe(value)}; {api}")
    if np.shape(value) != shape:
        raise _Broke(f"{what} returned shape {np.shape(value)}; {api}")
    return np.asarray(value)


def _torch_result(value: Any, shape: tuple[int, ...] | None, what: str) -> np.ndarray | None:
    """`value` (a tensor of any real floating dtype, on any device) as a float64 array of `shape`."""
    if shape is None:
        if value is not None:
            raise _Broke(
                f"{what} returned {_describe(value)} where the API has None (torch has no such gradient)"
            )
        return None
    api = f"a torch candidate returns real floating tensors of shape {shape}"
    if not isinstance(value, torch.Tensor) or not value.dtype.is_floating_point:
        raise _Broke(f"{what} returned {_describe(value)}; {api}")
    if tuple(value.shape) != shape:
        raise _Broke(f"{what} returned shape {tuple(value.shape)}; {api}")
    return value.detach().cpu().to(torch.float64).numpy()


def run(
    candidate: Candidate, data: CaseData, expected: Mapping[str, np.ndarray | None]
) -> dict[str, Outcome]:
    """The candidate's outcome for each stage of `expected` (the truth's results: which stages exist, and their
    shapes)."""
    run_kind = _run_torch if candidate.kind == "torch" else _run_numpy
    return run_kind(
        candidate, data, {stage: None if v is None else np.shape(v) for stage, v in expected.items()}
    )


FIRST_GRADIENTS = FIRST_ORDER[1:]  # a backward's results, in its order; a double backward's are SECOND_ORDER


def _run_numpy(candidate: Candidate, data: CaseData, shapes: Mapping[str, Any]) -> dict[str, Outcome]:
    case, module = data.case, candidate.module
    loss = case.loss
    given = data.impl_arrays()
    extras = {k: given[k] for k in ("weight", "pos_weight") if k in given}
    out: dict[str, Outcome] = {}

    forward = getattr(module, loss, None)
    if not callable(forward):
        return {stage: Outcome(unsupported=f"{candidate.name} defines no {loss}") for stage in shapes}
    out["loss"] = _attempt(
        lambda: _numpy_result(
            _call(loss, case.id, forward, given["input"], given["target"], **extras, **data.keywords),
            shapes["loss"],
            loss,
        )
    )
    for order, order_stages, arguments in (
        ("backward", FIRST_GRADIENTS, ("grad_output",)),
        # as torch's double backward: (grad_grad_input, grad_output, input, target, ...) -> three results
        ("double_backward", SECOND_ORDER, ("grad_grad_input", "grad_output")),
    ):
        function = getattr(module, f"{loss}_{order}", None)
        if not callable(function):
            reason = f"{candidate.name} defines no {loss}_{order}"
            out.update({s: Outcome(unsupported=reason) for s in order_stages if s in shapes})
            continue
        what = f"{loss}_{order}"

        def results(function=function, what=what, arguments=arguments, order_stages=order_stages):
            result = _call(
                what,
                case.id,
                function,
                *(given[a] for a in arguments),
                given["input"],
                given["target"],
                **extras,
                **data.keywords,
            )
            return _tuple(result, what, order_stages)

        out.update(_gradients(results, shapes, order_stages, what, _numpy_result))
    changed = _changed(given, data.impl_arrays())
    if changed:
        problem = f"{candidate.name} changed its argument {changed} in place (torch never does)"
        out = {s: o if o.unsupported else Outcome(problem=problem) for s, o in out.items()}
    return out


def _run_torch(candidate: Candidate, data: CaseData, shapes: Mapping[str, Any]) -> dict[str, Outcome]:
    case, module = data.case, candidate.module
    loss = case.loss
    dtype = TORCH_DTYPES[case.dtype]

    def tensor(name: str) -> torch.Tensor:
        host = torch.from_numpy(data.arrays[name].copy())
        return (host.to(dtype) if host.is_floating_point() else host).to(case.device)

    forward = getattr(module, loss, None)
    if not callable(forward):
        return {stage: Outcome(unsupported=f"{candidate.name} defines no {loss}") for stage in shapes}
    x, target, grad_output = tensor("input"), tensor("target"), tensor("grad_output")
    grad_grad_input = tensor("grad_grad_input")
    extras = {k: tensor(k) for k in ("weight", "pos_weight") if k in data.arrays}
    backward = getattr(module, f"{loss}_backward", None)
    double_backward = getattr(module, f"{loss}_double_backward", None)
    wrt = [x, target] if shapes.get("grad_target") is not None else [x]
    through_autograd = not callable(backward)
    # autograd twice: where it has no double backward of its own, the candidate's gradient is differentiated again
    twice = through_autograd and not callable(double_backward)
    if through_autograd:
        for t in wrt:
            t.requires_grad_(True)
    if twice:
        grad_output.requires_grad_(True)
    first = [s for s in FIRST_GRADIENTS if s in shapes]
    second = [s for s in SECOND_ORDER if s in shapes]
    out: dict[str, Outcome] = {}
    value: dict[str, Any] = {}

    def forward_value() -> np.ndarray | None:
        value["loss"] = _call(loss, case.id, forward, x, target, **extras, **data.keywords)
        return _torch_result(value["loss"], shapes["loss"], loss)

    out["loss"] = _attempt(forward_value)

    def own(function: Callable[..., Any], order: str, stages: tuple[str, ...], *leading: Any) -> dict:
        """The stages from the candidate's own `<loss>_<order>`, called on detached tensors."""
        what = f"{loss}_{order}"

        def results() -> tuple[Any, ...]:
            inputs = (*leading, x.detach(), target.detach())
            return _tuple(_call(what, case.id, function, *inputs, **extras, **data.keywords), what, stages)

        return _gradients(results, shapes, stages, what, _torch_result)

    if callable(double_backward):
        out.update(
            own(double_backward, "double_backward", SECOND_ORDER, grad_grad_input, grad_output.detach())
        )
    elif not through_autograd:
        reason = f"{candidate.name} defines {loss}_backward and no {loss}_double_backward"
        out.update({s: Outcome(unsupported=reason) for s in second})
    if not through_autograd:
        out.update(own(backward, "backward", FIRST_GRADIENTS, grad_output.detach()))
        return out

    what = f"autograd through {loss}"
    computed = value.get("loss")
    gradient_stages = first + [s for s in second if s not in out]
    if out["loss"].unsupported:
        return {
            **{s: Outcome(unsupported=out["loss"].unsupported) for s in gradient_stages},
            "loss": out["loss"],
        }
    if out["loss"].problem:
        problem = f"no gradients: {loss} failed and {candidate.name} defines no {loss}_backward"
        return {**out, **{s: Outcome(problem=problem) for s in gradient_stages}}
    if not isinstance(computed, torch.Tensor) or not computed.requires_grad:
        reason = f"{loss}'s result has no autograd graph and {candidate.name} defines no {loss}_backward"
        return {**out, **{s: Outcome(unsupported=reason) for s in gradient_stages}}
    grads: dict[str, Any] = {}

    def gradients() -> tuple[Any, ...]:
        grads["first"] = _call(
            what,
            case.id,
            torch.autograd.grad,
            computed,
            wrt,
            grad_output,
            create_graph=twice,
            allow_unused=True,
        )
        return grads["first"][0], grads["first"][1] if len(wrt) > 1 else None

    out.update(_gradients(gradients, shapes, FIRST_GRADIENTS, what, _torch_result))
    if not twice:
        return out
    what2 = f"autograd twice through {loss}"
    grad_input = grads.get("first", (None,))[0]
    why = (
        not_differentiable(grad_input)
        if isinstance(grad_input, torch.Tensor)
        else "no gradient to differentiate"
    )
    if why is not None:
        out.update({s: Outcome(unsupported=f"{what2}: {why}") for s in second})
        return out
    second_wrt = [grad_output, *wrt]

    def second_order() -> tuple[Any, ...]:
        try:
            found = torch.autograd.grad(grad_input, second_wrt, grad_grad_input, allow_unused=True)
        except RuntimeError as exc:
            if "not implemented" in str(exc) or "once_differentiable" in str(exc):
                raise NotImplementedError(str(exc).strip().splitlines()[0]) from None
            raise
        # None: the gradient does not depend on that argument, a derivative of 0
        found = [torch.zeros_like(t) if d is None else d for d, t in zip(found, second_wrt, strict=True)]
        return (*found, None) if len(found) < 3 else tuple(found)

    out.update(
        _gradients(lambda: _call(what2, case.id, second_order), shapes, SECOND_ORDER, what2, _torch_result)
    )
    return out


def _tuple(value: Any, what: str, stages: tuple[str, ...]) -> tuple[Any, ...]:
    """A call's results, one per stage of `stages` (FIRST_GRADIENTS or SECOND_ORDER), in that order."""
    if not isinstance(value, tuple | list) or len(value) != len(stages):
        size = {2: "pair", 3: "triple"}[len(stages)]
        raise _Broke(f"{what} returned {_describe(value)}; expected a {size} ({', '.join(stages)})")
    return tuple(value)


def _gradients(
    compute: Callable[[], tuple[Any, ...]],
    shapes: Mapping[str, Any],
    order: tuple[str, ...],
    what: str,
    result: Callable[..., Any],
) -> dict[str, Outcome]:
    """The stages of one call (the backward, the double backward, or autograd): `compute` returns its results
    in the stages' `order` (FIRST_GRADIENTS or SECOND_ORDER); only the stages the case has are judged."""
    stages = [s for s in order if s in shapes]
    try:
        found = dict(zip(order, compute(), strict=True))
    except _Declined as exc:
        return {s: Outcome(unsupported=str(exc)) for s in stages}
    except _Broke as exc:
        return {s: Outcome(problem=str(exc)) for s in stages}
    return {s: _attempt(lambda s=s: result(found[s], shapes[s], f"{what} ({s})")) for s in stages}


def _attempt(compute: Callable[[], np.ndarray | None]) -> Outcome:
    try:
        return Outcome(value=compute())
    except _Declined as exc:
        return Outcome(unsupported=str(exc))
    except _Broke as exc:
        return Outcome(problem=str(exc))


def _changed(given: Mapping[str, np.ndarray], pristine: Mapping[str, np.ndarray]) -> str | None:
    """The first argument that the candidate changed in place, if any."""
    for name, array in given.items():
        if array.size <= MUTATION_CHECK_ELEMENTS and not np.array_equal(
            array, pristine[name], equal_nan=True
        ):
            return f"`{name}`"
    return None
