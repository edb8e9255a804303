"""Meta-tests of the three-way judgement (harness/check.py): truth, torch and the candidate.

Each rule is shown to hold and to fail where it should: a candidate is judged against the truth, a registered
torch deviation never excuses it, what it does not implement is neither a pass nor a failure, each failure names
the side that is wrong, and with the reference as the candidate the run judges torch exactly as strictly as ever.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import reference
from parity_tests.harness import check as check_module
from parity_tests.harness import tables
from parity_tests.harness.candidate import wrap
from parity_tests.harness.cases import Case, build
from parity_tests.harness.check import check
from parity_tests.harness.dtypes import eps
from parity_tests.harness.specs import SPECS
from tests.sessions import suite


def case(loss: str, dtype: str, shape=(8, 5), regime: str = "normal", **options) -> Case:
    defaults = {name: values[0] for name, values in SPECS[loss].options.items()}
    return Case(loss, tuple(sorted({**defaults, **options}.items())), shape, regime, dtype, "cpu")


def candidate_of(**functions) -> SimpleNamespace:
    """The reference's API with some functions replaced."""
    return SimpleNamespace(**{**{name: getattr(reference, name) for name in reference.__all__}, **functions})


def scaled_backward(loss: str, factor: float, when=lambda kwargs: True):
    backward = getattr(reference, f"{loss}_backward")

    def planted(*args, **kwargs):
        grad_input, grad_target = backward(*args, **kwargs)
        return (grad_input * factor if when(kwargs) else grad_input), grad_target

    return planted


def test_a_candidate_error_where_torch_has_a_registered_deviation_fails_naming_the_candidate():
    # float64 cross_entropy with label smoothing over 423 classes and large logits: a registered torch deviation
    # (its class-sum gradient is off by ~16 eps there) selects the stage. A 120-eps error planted in the candidate
    # is the candidate's, whatever torch does.
    c = case("cross_entropy", "float64", shape=(3, 423), regime="large", label_smoothing=0.1, reduction="sum")
    data = build(c)
    truth_result = check(data)
    stage = next(s for s in truth_result.stages if s.stage == "grad_input")
    assert stage.deviation is not None
    assert stage.deviation.id.startswith("cross-entropy-class-sum")
    planted = candidate_of(cross_entropy_backward=scaled_backward("cross_entropy", 1 + 120 * eps("float64")))
    result = check(data, planted)
    (failure,) = result.failures
    assert (failure.stage, failure.wrong, failure.candidate_status) == ("grad_input", "candidate", "fail")
    assert failure.torch_status in ("pass", "deviation")


def test_a_real_bug_of_1e5_relative_in_the_weighted_gradient_fails():
    weighted = scaled_backward(
        "cross_entropy", 1 + 1e-5, when=lambda kwargs: kwargs.get("weight") is not None
    )
    planted = candidate_of(cross_entropy_backward=weighted)
    for dtype in ("float64", "float32"):
        failing = check(build(case("cross_entropy", dtype, weight="class", reduction="mean")), planted)
        assert [(s.stage, s.wrong) for s in failing.failures] == [("grad_input", "candidate")], dtype
        assert not check(build(case("cross_entropy", dtype, reduction="mean")), planted).failures


def test_the_candidate_passes_within_k_times_torch_error_and_by_parity_with_torch(monkeypatch):
    c = case("nll_loss", "float32", shape=(4096, 3), reduction="mean")
    data = build(c)
    torch_error = next(s for s in check(data).stages if s.stage == "loss").torch.error
    assert torch_error > 0.1  # a mean of 4096 float32 terms: torch is not exact
    factor = tables.candidate_factor(c, "loss")
    truth = reference.nll_loss(data.impl_arrays()["input"], data.impl_arrays()["target"])
    unit = eps("float32") * abs(float(truth))

    def off_by(k: float):
        return candidate_of(nll_loss=lambda *a, **kw: np.asarray(reference.nll_loss(*a, **kw) + k * unit))

    # beyond the tolerance but within k x torch's own error (with the tolerance lowered to make room for it)
    monkeypatch.setattr(
        check_module, "tolerance_for", lambda *a: tables.Tolerance(torch_error * 1.01, "t", "e")
    )
    within = check(data, off_by(1.5 * torch_error)).stages[0]
    assert (within.candidate_status, within.status) == ("within-k", "pass")
    beyond = check(data, off_by(factor * torch_error * 1.5)).stages[0]
    assert (beyond.candidate_status, beyond.wrong) == ("fail", "candidate")
    # the candidate that returns torch's own value passes by parity with torch, however far torch is
    torch_value = check_module.run_torch(data)["loss"]
    same = check(data, candidate_of(nll_loss=lambda *a, **kw: np.asarray(torch_value))).stages[0]
    assert same.candidate_status in ("pass", "parity")


def test_with_the_reference_as_candidate_torch_is_judged_alone_and_as_strictly(monkeypatch):
    c = case("binary_cross_entropy", "float32", reduction="sum")
    data = build(c)
    assert wrap(reference).is_truth
    real = check_module.run_torch

    def torch_off(data, device=None):
        out = real(data, device)
        out["grad_target"] = out["grad_target"] * (1 + 16 * eps("float32"))
        return out

    monkeypatch.setattr(check_module, "run_torch", torch_off)
    result = check(data)
    assert [(s.stage, s.wrong, s.candidate_status) for s in result.failures] == [
        ("grad_target", "torch", "truth")
    ]
    # with a correct candidate beside it, the same torch error is still torch's, and the candidate passes
    result = check(data, candidate_of())
    (failure,) = result.failures
    assert (failure.wrong, failure.candidate_status) == ("torch", "pass")


def test_what_the_candidate_does_not_implement_is_unsupported_never_a_failure():
    c = build(case("cross_entropy", "float32", label_smoothing=0.1))

    def declines(*args, label_smoothing=0.0, **kwargs):
        if label_smoothing > 0:
            raise NotImplementedError("label_smoothing")
        return reference.cross_entropy(*args, label_smoothing=label_smoothing, **kwargs)

    result = check(c, candidate_of(cross_entropy=declines))
    statuses = {s.stage: s.candidate_status for s in result.stages}
    assert statuses == {
        "loss": "unsupported",
        "grad_input": "pass",
        "grad_grad_output": "pass",
        "grad2_input": "pass",
    }
    assert result.outcome == "unsupported"
    assert not result.failed
    no_backward = SimpleNamespace(cross_entropy=reference.cross_entropy)
    result = check(c, no_backward)
    assert {s.stage: s.candidate_status for s in result.stages} == {
        "loss": "pass",
        "grad_input": "unsupported",
        "grad_grad_output": "unsupported",
        "grad2_input": "unsupported",
    }
    assert "defines no cross_entropy_backward" in result.stages[1].unsupported
    assert "defines no cross_entropy_double_backward" in result.stages[2].unsupported
    nothing = check(build(case("nll_loss", "float32")), no_backward)
    assert all(s.candidate_status == "unsupported" for s in nothing.stages)
    assert not nothing.failed


@pytest.mark.parametrize(
    ("returned", "said"),
    [
        (lambda x: x.astype(np.complex128), "complex128 array"),
        (lambda x: x.tolist(), "a list"),
        (lambda x: x.astype(np.int64), "int64 array"),
        (lambda x: x.astype(np.float32), "float32 array of shape (8, 5); the NumPy API returns float64"),
        (lambda x: x[..., None], "returned shape"),
        (lambda x: None, "returned None"),
    ],
)
def test_a_result_that_is_not_a_real_float64_array_of_the_shape_fails_saying_what_came_back(returned, said):
    c = build(case("binary_cross_entropy_with_logits", "float32", reduction="none"))
    bad = candidate_of(
        binary_cross_entropy_with_logits=lambda *a, **k: returned(
            reference.binary_cross_entropy_with_logits(*a, **k)
        )
    )
    result = check(c, bad)
    (failure,) = result.failures
    assert (failure.stage, failure.wrong) == ("loss", "candidate")
    assert said in failure.candidate.problem


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_a_backward_or_double_backward_returning_the_wrong_number_of_results_fails_saying_so(kind):
    c = build(case("nll_loss", "float32"))
    out = np.asarray if kind == "numpy" else torch.from_numpy

    def arrays(*args):  # a torch candidate gets tensors: the reference takes their values in float64
        return [
            a if kind == "numpy" else a.double().numpy() if a.is_floating_point() else a.numpy() for a in args
        ]

    bad = candidate_of(
        LOSS_PARITY_KIND=kind,
        nll_loss=lambda x, y, **k: out(np.asarray(reference.nll_loss(*arrays(x, y), **k))),
        # grad_input alone, and a double backward without its grad2_target
        nll_loss_backward=lambda g, x, y, **k: out(reference.nll_loss_backward(*arrays(g, x, y), **k)[0]),
        nll_loss_double_backward=lambda *a, **k: reference.nll_loss_double_backward(*arrays(*a), **k)[:2],
    )
    result = check(c, bad)
    problems = {s.stage: s.candidate.problem for s in result.failures}
    assert set(problems) == {"grad_input", "grad_grad_output", "grad2_input"}, problems
    assert "expected a pair (grad_input, grad_target)" in problems["grad_input"]
    assert "expected a triple (grad_grad_output, grad2_input, grad2_target)" in problems["grad2_input"]


def test_an_exception_says_which_call_raised_with_the_last_frames():
    def forward_raises(*args, **kwargs):
        raise ZeroDivisionError("planted in the forward")

    result = check(build(case("nll_loss", "float32")), candidate_of(nll_loss=forward_raises))
    problem = result.failures[0].candidate.problem
    assert problem.startswith("nll_loss raised ZeroDivisionError: planted in the forward")
    assert "forward_raises" in problem  # the frame that raised
    assert [s.stage for s in result.failures] == ["loss"]  # the backward is its own call, and passes

    def exits(*args, **kwargs):
        raise SystemExit(3)

    result = check(build(case("nll_loss", "float32")), candidate_of(nll_loss_backward=exits))
    assert "nll_loss_backward raised SystemExit: 3" in result.failures[0].candidate.problem


def test_a_candidate_that_changes_its_arguments_fails_and_the_case_keeps_its_inputs():
    data = build(case("nll_loss", "float32", ignore_index=1))
    kept = {k: v.copy() for k, v in data.arrays.items()}

    def scribbles(input, target, **kwargs):
        target[...] = 0  # an implementation that changes its integer targets in place
        return reference.nll_loss(input, target, **kwargs)

    result = check(data, candidate_of(nll_loss=scribbles))
    assert all("changed its argument `target` in place" in s.candidate.problem for s in result.failures)
    for name, array in kept.items():
        np.testing.assert_array_equal(data.arrays[name], array)


def test_a_torch_candidate_is_judged_as_it_runs_in_its_own_dtype():
    import torch
    import torch.nn.functional as F

    module = SimpleNamespace(LOSS_PARITY_KIND="torch", cross_entropy=F.cross_entropy)
    c = build(case("cross_entropy", "bfloat16", weight="class", label_smoothing=0.1))
    result = check(c, module)
    assert not result.failed  # torch itself, through autograd: parity with torch at worst
    assert {s.candidate_status for s in result.stages} <= {"pass", "parity"}

    def in_float32(input, target, **kwargs):
        return F.cross_entropy(
            input.float(), target, **{k: v.float() if torch.is_tensor(v) else v for k, v in kwargs.items()}
        )

    result = check(c, SimpleNamespace(LOSS_PARITY_KIND="torch", cross_entropy=in_float32))
    assert {s.stage: s.candidate_status for s in result.stages} == dict.fromkeys(
        ("loss", "grad_input", "grad_grad_output", "grad2_input"), "pass"
    )
    halves = SimpleNamespace(
        LOSS_PARITY_KIND="torch", cross_entropy=lambda *a, **k: F.cross_entropy(*a, **k) * 0.5
    )
    # autograd through its forward, once and twice: every stage is half of the truth
    assert [(s.stage, s.wrong) for s in check(c, halves).failures] == [
        ("loss", "candidate"),
        ("grad_input", "candidate"),
        ("grad_grad_output", "candidate"),
        ("grad2_input", "candidate"),
    ]


def test_an_evidence_case_where_torch_no_longer_deviates_fails(monkeypatch):
    from parity_tests.harness.evidence import evidence
    from parity_tests.harness.runner import run_truth

    proof = next(e for e in evidence(["cpu"]) if e.deviation.id == "float16-sum-overflow-in-mean")
    data = proof.data()
    assert not check(data).failed  # torch deviates as registered: expected
    monkeypatch.setattr(check_module, "run_torch", lambda data, device=None: run_truth(data))  # torch "fixed"
    result = check(data)
    assert [d.id for d in result.lost_evidence] == ["float16-sum-overflow-in-mean"]
    assert result.failed


def test_evidence_is_required_only_of_a_torch_within_the_deviations_range():
    # log-softmax-float16-borrows-a-lanes-max is torch < 2.8's: a later torch need not deviate on its evidence
    case_id = "cross_entropy-index-ii-100-none-1x21x32x32-large-float16-cpu-s0"
    assert "log-softmax-float16-borrows-a-lanes-max" in [d.id for d in tables.evidence_of(case_id, "2.4.1")]
    assert "log-softmax-float16-borrows-a-lanes-max" not in [
        d.id for d in tables.evidence_of(case_id, "2.13.0")
    ]


def _session(pytester, tmp_path, monkeypatch, name: str, body: str, *args: str):
    """A small session of the suite against a candidate module `name` (the reference's API, with `body`)."""
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    reports = tmp_path / "reports"
    result = suite(pytester, reports, "--impl", name, *args, modules=("test_parity.py", "test_errors.py"))
    return result, (reports / "latest" / "summary.md").read_text()


SMOOTHED_OR_NOT = "cross_entropy-index-ii-100-mean-float32 or cross_entropy-index-ii-100-ls0.1-mean-float32"


def test_a_correct_partial_candidate_passes_with_its_coverage_in_the_summary(pytester, tmp_path, monkeypatch):
    partial = "from reference import nll_loss, nll_loss_backward  # noqa: F401\n"
    args = (
        "--loss",
        "nll_loss",
        "--loss",
        "cross_entropy",
        "-k",
        f"nll_loss-index-ii-100-mean or {SMOOTHED_OR_NOT}",
    )
    result, summary = _session(pytester, tmp_path, monkeypatch, "partial_candidate", partial, *args)
    assert result.ret == 0, result.stdout.str()[-3000:]
    assert summary.startswith("PASS: ")
    assert "cross_entropy loss (" in summary  # the reasons: it defines no cross_entropy
    assert "partial_candidate defines no cross_entropy" in summary
    assert "Not implemented at all: **cross_entropy**." in summary
    assert "| cross_entropy | target: index | 0 |" in summary  # the coverage table: nothing of it supported
    assert "| nll_loss | target: index |" in summary
    # no nll_loss_double_backward: the second order is not implemented, counted apart, and the run still passes
    assert "partial_candidate defines no nll_loss_double_backward" in summary
    assert "Declined wherever it appears: **nll_loss: second order**." in summary
    # the case counts tell the cases it passed where it implements them from those it does not implement at all
    counts = re.search(
        r"(\d+) passed in every stage the candidate implements.*?(\d+) not implemented by", summary
    )
    assert counts, summary[:2000]
    assert int(counts[1]) > 0
    assert int(counts[2]) > 0


def test_a_candidate_declining_label_smoothing_passes_and_the_summary_names_it(
    pytester, tmp_path, monkeypatch
):
    declining = (
        "from reference import *  # noqa: F403\nimport reference\n\n"
        "def _no_smoothing(label_smoothing):\n"
        "    if label_smoothing > 0:\n"
        "        raise NotImplementedError('label_smoothing is not supported')\n\n"
        "def cross_entropy(*a, label_smoothing=0.0, **k):\n"
        "    _no_smoothing(label_smoothing)\n"
        "    return reference.cross_entropy(*a, **k)\n\n"
        "def cross_entropy_backward(*a, label_smoothing=0.0, **k):\n"
        "    _no_smoothing(label_smoothing)\n"
        "    return reference.cross_entropy_backward(*a, **k)\n"
    )
    args = ("--loss", "cross_entropy", "-k", SMOOTHED_OR_NOT)
    result, summary = _session(pytester, tmp_path, monkeypatch, "declining_candidate", declining, *args)
    assert result.ret == 0, result.stdout.str()[-3000:]
    assert "Declined wherever it appears: **cross_entropy: label_smoothing**" in summary
    strict = suite(pytester, tmp_path / "strict", "--impl", "declining_candidate", "--require-all", *args)
    assert strict.ret == 1  # --require-all: what it does not implement fails
    assert "not implemented by the candidate (--require-all)" in strict.stdout.str()
