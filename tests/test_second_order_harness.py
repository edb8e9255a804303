"""Meta-tests of the second-order stages (grad_grad_output, grad2_input, grad2_target): a fault planted in a
candidate's double backward is caught at its stage and index, recorded and replayed; a candidate without one is
unsupported there, never failing unless --require-all; a torch candidate is differentiated twice through its
forward; where torch itself cannot differentiate twice, torch is not judged there and the run goes on."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reference
from parity_tests import repro
from parity_tests import test_parity as parity_module
from parity_tests.harness import render, runner, sensitivity
from parity_tests.harness.candidate import wrap
from parity_tests.harness.cases import Case, build, grid_items, output_shape
from parity_tests.harness.check import check
from parity_tests.harness.dtypes import round_to
from parity_tests.harness.record import write_record
from parity_tests.harness.run import Run
from parity_tests.harness.specs import SPECS
from parity_tests.harness.stages import SECOND_ORDER
from tests.sessions import suite


def case(loss: str, dtype: str, shape=(8, 5), **options) -> Case:
    defaults = {name: values[0] for name, values in SPECS[loss].options.items()}
    return Case(loss, tuple(sorted({**defaults, **options}.items())), shape, "normal", dtype, "cpu")


def with_double_backward(loss: str, change) -> SimpleNamespace:
    """The reference with `change(grad_grad_output, grad2_input, grad2_target)` applied to its double backward."""
    impl = SimpleNamespace(**{name: getattr(reference, name) for name in reference.__all__})
    double_backward = getattr(reference, f"{loss}_double_backward")
    setattr(impl, f"{loss}_double_backward", lambda *a, **k: change(*double_backward(*a, **k)))
    return impl


def largest(a: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(a)), a.shape))


@pytest.mark.parametrize(
    ("loss", "options"),
    [
        ("cross_entropy", {"target": "prob", "weight": "class", "label_smoothing": 0.1}),
        ("binary_cross_entropy", {"target": "soft", "weight": "elementwise"}),
        ("binary_cross_entropy_with_logits", {"target": "soft", "pos_weight": "broadcast"}),
    ],
)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_double_backward_1_percent_off_is_caught_at_its_stage(loss, options, dtype):
    data = build(case(loss, dtype, reduction="sum", **options))
    assert not check(data, wrap(with_double_backward(loss, lambda *r: r))).failed
    off = with_double_backward(loss, lambda ggo, gi2, gt2: (ggo, gi2 * 1.01, gt2))
    (failure,) = check(data, off).failures
    assert (failure.stage, failure.wrong, failure.candidate_status) == ("grad2_input", "candidate", "fail")
    # the one wrong in grad2_target: a stage of its own
    off = with_double_backward(loss, lambda ggo, gi2, gt2: (ggo, gi2, gt2 * 1.01))
    assert [(s.stage, s.wrong) for s in check(data, off).failures] == [("grad2_target", "candidate")]


@pytest.mark.parametrize(
    "loss", ["cross_entropy", "binary_cross_entropy", "binary_cross_entropy_with_logits"]
)
def test_one_wrong_sign_is_caught_at_its_index_and_recorded(loss, tmp_path):
    data = build(case(loss, "float32", reduction="mean"))
    grad2_input = runner.run_truth(data)["grad2_input"]
    at = largest(grad2_input)

    def flip(ggo, gi2, gt2):
        gi2 = gi2.copy()
        gi2[at] = -gi2[at]
        return ggo, gi2, gt2

    result = check(data, with_double_backward(loss, flip))
    (failure,) = result.failures
    assert (failure.stage, failure.wrong, failure.verdict.worst_index) == ("grad2_input", "candidate", at)
    record = json.loads(write_record(result, tmp_path).read_text())
    assert (record["stage"], tuple(record["worst_index"])) == ("grad2_input", at)
    assert "grad_grad_input" in record["checksums"]  # the record keeps the double backward's input too


def test_a_wrong_reduced_grad_grad_output_is_caught():
    # nll_loss 'mean': grad_grad_output = -sum w_y v_y / sum w_y, a sum of both signs; a candidate that forgets the
    # weights' normalisation is off by far more than its terms' eps
    data = build(case("nll_loss", "float64", weight="class", reduction="mean"))
    kept = data.arrays["target"] != -100
    total = data.arrays["weight"][data.arrays["target"][kept]].sum()
    off = with_double_backward("nll_loss", lambda ggo, gi2, gt2: (ggo * total / kept.sum(), gi2, gt2))
    failures = check(data, off).failures
    assert [(s.stage, s.wrong) for s in failures] == [("grad_grad_output", "candidate")], str(
        [(s.stage, s.candidate.problem or s.candidate.error) for s in failures]
    )


def test_a_candidate_without_a_double_backward_is_unsupported_there_never_failing(tmp_path):
    first_order = SimpleNamespace(nll_loss=reference.nll_loss, nll_loss_backward=reference.nll_loss_backward)
    data = build(case("nll_loss", "float32", reduction="sum"))
    result = check(data, first_order)
    assert {s.stage: s.candidate_status for s in result.stages} == {
        "loss": "pass",
        "grad_input": "pass",
        "grad_grad_output": "unsupported",
        "grad2_input": "unsupported",
    }
    assert "defines no nll_loss_double_backward" in result.stages[2].unsupported
    assert (result.outcome, result.failed) == ("unsupported", False)

    # in a run: counted apart (the item passes), unless --require-all
    item = next(iter(grid_items([data.case]).values()))
    candidate = wrap(first_order, "first_order")
    for require_all in (False, True):
        run = Run(SimpleNamespace(), tmp_path / str(require_all), {}, candidate)
        request = SimpleNamespace(
            node=SimpleNamespace(nodeid="item"),
            config=SimpleNamespace(
                getoption=lambda name, *a, r=require_all: r if name == "--require-all" else None
            ),
        )
        if require_all:
            with pytest.raises(pytest.fail.Exception, match="nll_loss_double_backward"):
                parity_module.test_parity(item, candidate, run, request)
        else:
            parity_module.test_parity(item, candidate, run, request)
        run.close()


def test_a_torch_candidate_is_differentiated_twice_through_its_forward():
    data = build(case("binary_cross_entropy_with_logits", "float32", reduction="mean", weight="elementwise"))
    forward_only = SimpleNamespace(
        LOSS_PARITY_KIND="torch", binary_cross_entropy_with_logits=F.binary_cross_entropy_with_logits
    )
    result = check(data, forward_only)
    assert not result.failed
    assert {s.stage: s.candidate_status for s in result.stages if s.stage in SECOND_ORDER} == dict.fromkeys(
        SECOND_ORDER, "pass"
    )

    # through autograd twice, a forward with the curvature in float16 is judged as it runs
    def coarse(x, y, **kwargs):
        return F.binary_cross_entropy_with_logits(
            x.half(), y.half(), **{k: v.half() if torch.is_tensor(v) else v for k, v in kwargs.items()}
        )

    result = check(data, SimpleNamespace(LOSS_PARITY_KIND="torch", binary_cross_entropy_with_logits=coarse))
    assert {s.stage for s in result.failures} >= {"loss", "grad2_input"}
    assert all(s.wrong == "candidate" for s in result.failures)


def test_a_torch_candidate_with_a_backward_and_no_double_backward_is_unsupported_at_second_order():
    def backward(grad_output, input, target, **kwargs):
        x = input.detach().requires_grad_()
        (grad,) = torch.autograd.grad(F.nll_loss(x, target, **kwargs), x, grad_output)
        return grad, None

    module = SimpleNamespace(LOSS_PARITY_KIND="torch", nll_loss=F.nll_loss, nll_loss_backward=backward)
    result = check(build(case("nll_loss", "float64", reduction="none")), module)
    statuses = {s.stage: s.candidate_status for s in result.stages}
    assert statuses == {
        "loss": "pass",
        "grad_input": "pass",
        "grad_grad_output": "unsupported",
        "grad2_input": "unsupported",
    }
    assert "no nll_loss_double_backward" in result.stages[2].unsupported
    # with its own double backward, that is what is judged: here the reference's, one entry wrong
    data = build(case("nll_loss", "float64", reduction="none"))

    def double_backward(grad_grad_input, grad_output, input, target, **kwargs):
        ggo, gi2, _ = reference.nll_loss_double_backward(
            grad_grad_input.numpy(), grad_output.numpy(), input.numpy(), target.numpy(), **kwargs
        )
        ggo[0] += 1.0
        return torch.from_numpy(ggo), torch.from_numpy(gi2), None

    module.nll_loss_double_backward = double_backward
    (failure,) = check(data, module).failures
    assert (failure.stage, failure.wrong, failure.verdict.worst_index) == (
        "grad_grad_output",
        "candidate",
        (0,),
    )


class _OnceDifferentiable(torch.autograd.Function):
    """x -> x * 1, whose backward cannot be differentiated again (as some fused kernels' cannot)."""

    @staticmethod
    def forward(ctx, x):
        return x * 1

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return grad * 1


def test_where_autograd_cannot_differentiate_twice_the_candidate_is_unsupported_there():
    def fused(input, target, **kwargs):
        return F.cross_entropy(_OnceDifferentiable.apply(input), target, **kwargs)

    result = check(
        build(case("cross_entropy", "float32")),
        SimpleNamespace(LOSS_PARITY_KIND="torch", cross_entropy=fused),
    )
    assert not result.failed
    statuses = {s.stage: (s.candidate_status, s.unsupported) for s in result.stages}
    assert statuses["grad_input"] == ("pass", None)
    assert statuses["grad2_input"][0] == "unsupported"
    assert "autograd twice through cross_entropy" in statuses["grad2_input"][1]


def test_where_torch_cannot_differentiate_twice_torch_is_not_judged_and_the_candidate_is(
    monkeypatch, tmp_path
):
    spec = SPECS["cross_entropy"]

    def fused(input, target, **kwargs):
        return F.cross_entropy(_OnceDifferentiable.apply(input), target, **kwargs)

    monkeypatch.setitem(SPECS, "cross_entropy", type(spec)(**{**vars(spec), "torch_fn": fused}))
    data = build(case("cross_entropy", "float32", reduction="mean"))
    out = runner.run_torch(data)
    assert out["grad_input"] is not None  # the first order is untouched
    assert out["grad2_input"] is None
    assert "differentiable once only" in out.unavailable["grad2_input"]

    result = check(data)
    assert not result.failed
    second = [s for s in result.stages if s.stage in SECOND_ORDER]
    assert {(s.torch_status, s.status) for s in second} == {("unavailable", "unavailable")}
    assert all("differentiable once only" in s.torch_unavailable for s in second)
    # the candidate is still judged against the truth there
    off = with_double_backward("cross_entropy", lambda ggo, gi2, gt2: (ggo, gi2 * 1.01, gt2))
    (failure,) = check(data, off).failures
    assert (failure.stage, failure.wrong, failure.torch_status) == ("grad2_input", "candidate", "unavailable")
    right = check(data, with_double_backward("cross_entropy", lambda *r: r))
    assert {s.status for s in right.stages if s.stage in SECOND_ORDER} == {"pass"}
    # in a run: the item passes, and the summary says what torch was not judged on, and why
    run = Run(SimpleNamespace(), tmp_path, {}, wrap(reference))
    request = SimpleNamespace(
        node=SimpleNamespace(nodeid="item"), config=SimpleNamespace(getoption=lambda *a: None)
    )
    parity_module.test_parity((data.case,), wrap(reference), run, request)
    run.close()
    summary = render.render_markdown({"outcome": "PASS", "reason": "-"}, render.read_rows(run.dir))
    assert (
        "| cross_entropy | grad2_input | float32 | cpu | 1 | the backward is differentiable once only"
        in summary
    )


def test_the_double_backward_input_is_drawn_last_and_leaves_every_other_input_as_it_was():
    # The registered deviations' evidence cases rest on the other inputs: they are what they were before the
    # second-order stages (the same draws, in the same order, from the case's generator).
    for c in (
        case("cross_entropy", "float16", target="prob", weight="class"),
        case("binary_cross_entropy_with_logits", "float64", pos_weight="broadcast", reduction="none"),
        Case(
            "nll_loss",
            case("nll_loss", "float16", weight="class").options,
            (4096, 3),
            "large",
            "float16",
            "cpu",
        ),
    ):
        rng = c.rng()
        drawn = c.spec.sample(rng, c.shape, c.opts, c.regime)
        out_shape = output_shape(c, drawn)
        drawn["grad_output"] = rng.uniform(0.5, 2.0, out_shape) * rng.choice([-1.0, 1.0], out_shape)
        data = build(c)
        for name, array in drawn.items():
            expected = array if array.dtype.kind in "iu" else round_to(array, c.dtype)
            np.testing.assert_array_equal(data.arrays[name], expected, err_msg=name)
        assert sorted(data.arrays) == sorted([*drawn, "grad_grad_input"])
        v = data.arrays["grad_grad_input"]
        assert v.shape == data.arrays["input"].shape
        assert (np.abs(v) >= 0.5).all()
        assert (np.abs(v) <= 2).all()
        assert (v < 0).any()
        assert (v > 0).any()


FAULT_MODULE = '''
"""A fault planted from outside: the reference with cross_entropy's grad2_input 1% off."""
from reference import *  # noqa: F403
import reference

def cross_entropy_double_backward(*args, **kwargs):
    ggo, grad2_input, grad2_target = reference.cross_entropy_double_backward(*args, **kwargs)
    return ggo, grad2_input * 1.01, grad2_target
'''


def test_a_second_order_fault_through_impl_fails_the_run_shows_in_the_matrix_and_replays(
    pytester, monkeypatch, tmp_path
):
    (tmp_path / "planted_second_order.py").write_text(FAULT_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    reports = tmp_path / "reports"
    run = suite(
        pytester,
        reports,
        "-q",
        "--impl",
        "planted_second_order",
        "--loss",
        "cross_entropy",
        "--dtype",
        "float64",
        "-k",
        "cross_entropy-prob-w-ls0.1-sum-float64-cpu",
    )
    assert run.ret == 1, run.stdout.str()
    (run_dir,) = (reports / "runs").iterdir()
    records = sorted((run_dir / "failures").glob("*.json"))
    assert records
    record = json.loads(records[0].read_text())
    assert (record["stage"], record["wrong"]) == ("grad2_input", "candidate")
    summary = (run_dir / "summary.md").read_text()
    matrix = summary.split("### the candidate against the truth")[1]
    # every stage has its row, in the stages' order: the first order, then the second
    rows = [matrix.index(f"| cross_entropy | {stage} |") for stage in ("loss", "grad_input", *SECOND_ORDER)]
    assert rows == sorted(rows)
    assert "grad2_input" in (run_dir / "summary.html").read_text()
    assert repro.main([str(records[0])]) == 1
    assert repro.main([str(records[0]), "--impl", "reference"]) == 0


def test_the_sensitivity_table_has_the_second_order_stages():
    # per element (reduction 'none'), where each stage is judged at its own values: a uniform relative error of 16
    # eps is caught in every second-order stage, with no false failure of the unmodified reference
    cases = [
        case("cross_entropy", "float32", target="prob", weight="class", reduction="none"),
        case("nll_loss", "float32", weight="class", reduction="none"),
        case("binary_cross_entropy", "float32", target="soft", reduction="none"),
        case(
            "binary_cross_entropy_with_logits",
            "float32",
            target="soft",
            pos_weight="broadcast",
            reduction="none",
        ),
    ]
    found, false_failures = sensitivity.measure("quick", cases)
    assert false_failures == 0
    for stage in SECOND_ORDER:
        caught = [k for k, _ in found[("float32", stage)]]
        assert caught, stage
        assert max(caught) <= 16, (stage, found[("float32", stage)])
