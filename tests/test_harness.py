"""Meta-tests: the harness catches faults planted in an implementation, records them and replays them.

A fault is planted in one stage of the reference; the unmodified reference passing the same cases is shown by
test_parity.py itself. Each planted fault must fail the case at the planted stage (and index, where it is one
element), write a complete record, and replay from that record alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pytest

import reference
from parity_tests import repro
from parity_tests import test_parity as parity_module
from parity_tests.harness import tables
from parity_tests.harness.candidate import wrap
from parity_tests.harness.cases import Case, build, grid, grid_items
from parity_tests.harness.check import check
from parity_tests.harness.compare import compare
from parity_tests.harness.dtypes import eps
from parity_tests.harness.evidence import grid_case
from parity_tests.harness.record import write_record
from parity_tests.harness.run import Run
from parity_tests.harness.specs import SPECS
from parity_tests.harness.tables import deviations
from tests.sessions import ROOT, suite

Transform = Callable[[np.ndarray], np.ndarray]
STAGE_INDEX = {"grad_input": 0, "grad_target": 1}
SECOND_ORDER_INDEX = {"grad_grad_output": 0, "grad2_input": 1, "grad2_target": 2}


def planted(loss: str, stage: str, transform: Transform, **forced_options) -> SimpleNamespace:
    """The reference with `transform` applied to one stage of one loss (and options overridden, if given)."""
    impl = SimpleNamespace(**{name: getattr(reference, name) for name in reference.__all__})
    forward, backward = getattr(reference, loss), getattr(reference, f"{loss}_backward")
    double_backward = getattr(reference, f"{loss}_double_backward")

    def faulty_forward(*args, **kwargs):
        out = forward(*args, **{**kwargs, **forced_options})
        return transform(np.array(out, dtype=np.float64)) if stage == "loss" else out

    def faulty(function, index):
        def call(*args, **kwargs):
            results = list(function(*args, **{**kwargs, **forced_options}))
            if stage in index:
                results[index[stage]] = transform(np.array(results[index[stage]], dtype=np.float64))
            return tuple(results)

        return call

    setattr(impl, loss, faulty_forward)
    setattr(impl, f"{loss}_backward", faulty(backward, STAGE_INDEX))
    setattr(impl, f"{loss}_double_backward", faulty(double_backward, SECOND_ORDER_INDEX))
    return impl


def case(loss: str, dtype: str, shape=(8, 5), regime: str = "normal", **options) -> Case:
    spec = SPECS[loss]
    defaults = {name: values[0] for name, values in spec.options.items()}
    return Case(loss, tuple(sorted({**defaults, **options}.items())), shape, regime, dtype, "cpu")


def scale_by(factor: float) -> Transform:
    return lambda a: a * factor


def at_largest(change: Callable[[float], float]) -> Transform:
    def transform(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        i = np.unravel_index(np.argmax(np.abs(a)), a.shape)
        a[i] = change(a[i])
        return a

    return transform


def largest_index(a: np.ndarray) -> list[int]:
    return [int(i) for i in np.unravel_index(np.argmax(np.abs(a)), a.shape)]


STAGE_CASES = [  # (loss, stage, target kind): every stage of every loss
    ("cross_entropy", "loss", "index"),
    ("cross_entropy", "grad_input", "index"),
    ("cross_entropy", "grad_target", "prob"),
    ("nll_loss", "loss", "index"),
    ("nll_loss", "grad_input", "index"),
    ("binary_cross_entropy", "loss", "soft"),
    ("binary_cross_entropy", "grad_input", "soft"),
    ("binary_cross_entropy", "grad_target", "soft"),
    ("binary_cross_entropy_with_logits", "loss", "soft"),
    ("binary_cross_entropy_with_logits", "grad_input", "soft"),
    ("binary_cross_entropy_with_logits", "grad_target", "soft"),
    ("cross_entropy", "grad_grad_output", "index"),
    ("cross_entropy", "grad2_input", "index"),
    ("cross_entropy", "grad2_target", "prob"),
    ("nll_loss", "grad_grad_output", "index"),
    ("binary_cross_entropy", "grad_grad_output", "soft"),
    ("binary_cross_entropy", "grad2_input", "soft"),
    ("binary_cross_entropy", "grad2_target", "soft"),
    ("binary_cross_entropy_with_logits", "grad_grad_output", "soft"),
    ("binary_cross_entropy_with_logits", "grad2_input", "soft"),
    ("binary_cross_entropy_with_logits", "grad2_target", "soft"),
]
DTYPES = ("float64", "float32", "float16", "bfloat16")


def _reduced_sum(stage: str, reduction: str) -> bool:
    """A reduced grad_grad_output: a sum of terms of both signs, judged at the terms' magnitude (its term scale)."""
    return stage == "grad_grad_output" and reduction != "none"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("loss", "stage", "target"), STAGE_CASES, ids=["-".join(c) for c in STAGE_CASES])
def test_a_relative_error_of_16_eps_is_caught(loss, stage, target, dtype):
    for reduction in ("none", "mean", "sum"):
        c = case(loss, dtype, target=target, reduction=reduction)
        data = build(c)
        assert not check(data, reference).failures, f"the unmodified reference must pass {c.id}"
        if _reduced_sum(stage, reduction):
            # 16 eps of its terms, the unit it is judged in (its own value may be hundreds of times smaller)
            terms = SPECS[loss].term_scales[stage](data.arrays, data.keywords)
            fault = planted(loss, stage, lambda a, t=terms: a + 16 * eps(dtype) * t)
        else:
            fault = planted(loss, stage, scale_by(1 + 16 * eps(dtype)))
        result = check(data, fault)
        assert [(s.stage, s.wrong) for s in result.failures] == [(stage, "candidate")], c.id


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_relative_error_within_tolerance_passes(dtype):
    # The other side of sensitivity: an error far below the tolerance is not a false failure.
    c = case("cross_entropy", dtype, reduction="sum")
    assert not check(build(c), planted("cross_entropy", "grad_input", scale_by(1 + eps(dtype) / 4))).failures


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize(
    ("fault", "transform", "cause"),
    [
        ("nan", at_largest(lambda v: np.nan), "NaN pattern differs"),
        ("sign", at_largest(lambda v: -v), "over tolerance"),
        ("inf", at_largest(lambda v: np.inf), "inf pattern differs"),
    ],
)
def test_one_wrong_gradient_entry_is_caught_at_its_index(dtype, fault, transform, cause, tmp_path):
    c = case("binary_cross_entropy_with_logits", dtype, reduction="mean")
    data = build(c)
    expected_index = largest_index(
        reference.binary_cross_entropy_with_logits_backward(
            data.impl_arrays()["grad_output"],
            data.impl_arrays()["input"],
            data.impl_arrays()["target"],
            reduction="mean",
        )[0]
    )
    impl = planted(c.loss, "grad_input", transform)
    result = check(data, impl)
    (failure,) = result.failures
    assert (failure.stage, failure.wrong) == ("grad_input", "candidate")
    assert list(failure.verdict.worst_index) == expected_index
    record = json.loads(write_record(result, tmp_path).read_text())
    assert record["cause"] == cause
    assert record["worst_index"] == expected_index


@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_a_wrong_mean_denominator_is_caught(dtype):
    # The fault: divide the weighted sum by the number of targets instead of the sum of their weights.
    c = case("nll_loss", dtype, weight="class", reduction="mean")
    data = build(c)
    arrays = data.impl_arrays()
    n_kept = np.sum(arrays["target"] != -100)
    weight_sum = arrays["weight"].astype(np.float64)[arrays["target"][arrays["target"] != -100]].sum()
    result = check(data, planted("nll_loss", "loss", scale_by(weight_sum / n_kept)))
    assert [s.stage for s in result.failures] == ["loss"]


def test_a_mishandled_ignore_index_is_caught():
    # The fault: ignore_index forgotten (treated as the default -100 while the case ignores class 1).
    c = case("cross_entropy", "float32", ignore_index=1, reduction="mean")
    result = check(build(c), planted("cross_entropy", "loss", lambda a: a, ignore_index=-100))
    # the double backward is given the same wrong option: its stages fail too
    assert {s.stage for s in result.failures} == {"loss", "grad_input", "grad_grad_output", "grad2_input"}


def test_a_raising_implementation_fails_every_stage():
    def broken(*args, **kwargs):
        raise ZeroDivisionError("planted")

    impl = SimpleNamespace(binary_cross_entropy=broken, binary_cross_entropy_backward=broken)
    result = check(build(case("binary_cross_entropy", "float32")), impl)
    assert [s.stage for s in result.failures] == ["loss", "grad_input", "grad_target"]
    assert "ZeroDivisionError: planted" in result.failures[0].verdict.problem


FAULT_MODULE = '''
"""A fault planted from outside: the reference with grad_input of cross_entropy 16 float32 eps too large."""
import numpy as np
from reference import *  # noqa: F403
import reference

def cross_entropy_backward(*args, **kwargs):
    grad_input, grad_target = reference.cross_entropy_backward(*args, **kwargs)
    return grad_input * (1 + 16 * float(np.finfo(np.float32).eps)), grad_target
'''


def test_grid_items_hold_every_case_once_and_differ_only_in_shape():
    cases = list(grid("quick", ["cpu"]))
    items = grid_items(cases)
    assert sorted(c.id for item in items.values() for c in item) == sorted(c.id for c in cases)
    for item_id, item in items.items():
        assert len({(c.loss, c.options, c.regime, c.dtype, c.device, c.seed) for c in item}) == 1, item_id
        assert len({c.shape for c in item}) == len(item), item_id
    assert len(items) < len(cases) / 4  # the point of grouping: a fraction of pytest's per-item cost


def test_one_bad_shape_fails_its_item_and_the_others_are_still_checked(tmp_path):
    item = next(
        v
        for v in grid_items(grid("quick", ["cpu"], ["float32"])).values()
        if v[0].loss == "nll_loss" and v[0].regime == "normal" and v[0].opts["reduction"] == "sum"
    )
    bad = item[2]
    faulty = planted("nll_loss", "loss", lambda a: a * 1.01)  # 1% off, only for the shape of `bad`
    impl = SimpleNamespace(**vars(faulty))
    impl.nll_loss = lambda input, target, **kw: (
        faulty if np.shape(input) == bad.shape else reference
    ).nll_loss(input, target, **kw)
    candidate = wrap(impl, "planted")
    run = Run(SimpleNamespace(), tmp_path, {}, candidate)
    request = SimpleNamespace(
        node=SimpleNamespace(nodeid="item"), config=SimpleNamespace(getoption=lambda *a: False)
    )
    with pytest.raises(pytest.fail.Exception) as info:
        parity_module.test_parity(item, candidate, run, request)
    run.close()
    rows = [json.loads(line) for line in (run.dir / "rows" / "main.jsonl").read_text().splitlines()]
    assert [r["case_id"] for r in rows] == [c.id for c in item]  # every case checked and reported
    assert [r["case_id"] for r in rows if r["outcome"] == "failed"] == [bad.id]
    message = str(info.value)
    assert f"shape={list(bad.shape)}" in message
    assert "the candidate is wrong" in message
    assert message.count("replay:") == 1
    assert (run.failures_dir / f"{bad.id}.json").exists()


def test_a_fault_planted_through_impl_fails_the_suite_records_and_replays(pytester, monkeypatch, tmp_path):
    (tmp_path / "planted_fault.py").write_text(FAULT_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    reports = tmp_path / "reports"
    run = suite(
        pytester,
        reports,
        "-q",
        "--impl",
        "planted_fault",
        "--loss",
        "cross_entropy",
        "-k",
        "cross_entropy-index-ii-100-mean-float32-cpu",
    )
    stdout = run.stdout.str()
    assert run.ret == 1, stdout
    assert "-m parity_tests.repro" in stdout
    assert "--impl planted_fault --impl-path" in stdout
    (run_dir,) = (reports / "runs").iterdir()
    records = sorted((run_dir / "failures").glob("*.json"))
    assert records, stdout
    record = json.loads(records[0].read_text())
    assert record["stage"] == "grad_input"
    assert record["impl"] == "planted_fault"
    for key in (
        "case_id",
        "loss",
        "options",
        "dtype",
        "device",
        "max_abs_error",
        "max_rel_error",
        "worst_index",
        "expected",
        "actual",
        "tolerance",
        "seed",
        "versions",
        "inputs_file",
        "repro",
        "mismatches",
        "total",
        "ulps",
        "nan_mismatches",
        "inf_mismatches",
    ):
        assert key in record, key
    assert (records[0].parent / record["inputs_file"]).exists()
    summary = (reports / "latest" / "summary.md").read_text()
    assert summary.startswith("FAIL: ")
    assert "candidate wrong: cross_entropy, over tolerance" in summary
    assert (run_dir / "junit.xml").exists()

    assert repro.main([str(records[0])]) == 1  # still failing with the planted fault
    assert repro.main([str(records[0]), "--impl", "reference"]) == 0  # passes with the reference


def test_every_registered_deviation_is_documented_with_evidence():
    docs = [(ROOT / "docs" / name).read_text() for name in ("deviations.md", "fuzzing.md", "devices.md")]
    headings = [line for text in docs for line in text.splitlines() if line.startswith("#")]
    for deviation in deviations():
        assert any(deviation.id in heading for heading in headings), deviation.id
        assert deviation.evidence
        assert deviation.what_torch_does
        assert deviation.true_value


def test_every_evidence_case_is_a_grid_case():
    # a run looks up only the evidence of its own devices: a misspelt id of another device fails here
    for deviation in deviations():
        for case_id in deviation.entry.get("evidence_cases", []):
            assert grid_case(case_id).id == case_id


def test_a_misspelt_selector_field_is_rejected(tmp_path, monkeypatch):
    # "dtypes" for "dtype" would otherwise select every dtype without a word.
    (tmp_path / "deviations.toml").write_text('[[deviation]]\nid = "x"\ndtypes = "float16"\nevidence = "e"\n')
    monkeypatch.setattr(tables, "HERE", tmp_path)
    tables._load.cache_clear()
    tables.deviations.cache_clear()
    try:
        with pytest.raises(ValueError, match="unknown fields"):
            tables.deviations()
    finally:
        tables._load.cache_clear()
        tables.deviations.cache_clear()


@pytest.mark.parametrize(
    ("expected", "actual", "ok", "field"),
    [
        ([1.0, 2.0], [1.0, np.nan], False, "nan_mismatches"),  # NaN where the truth is a number
        ([1.0, np.nan], [1.0, 2.0], False, "nan_mismatches"),  # a number where the truth is NaN
        ([1.0, 2.0], [1.0, np.inf], False, "inf_mismatches"),
        ([1.0, 1e6], [1.0, np.inf], True, None),  # beyond float16's range the truth is inf there
        ([1.0, -1e6], [1.0, np.inf], False, "inf_mismatches"),  # but with its sign
        ([1.0, 65530.0], [1.0, 65504.0], True, None),  # at the overflow threshold, within tolerance: either
        ([1.0, 65510.0], [1.0, np.inf], True, None),
        ([0.0, 0.0], [0.0, 1e-6], False, "mismatches"),  # all-zero truth: within float16's subnormal steps
    ],
)
def test_compare_judges_nan_inf_and_zero_patterns(expected, actual, ok, field):
    verdict = compare("loss", np.array(expected), np.array(actual), "float16", 8)
    assert verdict.ok is ok
    if field:
        assert getattr(verdict, field) >= 1


def test_compare_reports_a_shape_mismatch_and_a_missing_stage():
    assert "shape" in compare("loss", np.zeros(3), np.zeros((3, 1)), "float32", 8).problem
    assert "returned no grad_target" in compare("grad_target", None, np.zeros(3), "float32", 8).problem


def test_a_deviation_explains_only_what_it_describes():
    deviation = tables.Deviation("d", "", "", "", {"nonfinite": True, "max_eps": 8})
    nan_where_finite = compare("loss", np.array([1.0, 2.0]), np.array([1.0, np.nan]), "float16", 8)
    finite_far_off = compare("loss", np.array([1.0, 2.0]), np.array([1.0, 2.5]), "float16", 8)
    torch_misses_an_inf = compare("loss", np.array([1.0, 1e6]), np.array([1.0, 2.0]), "float16", 8)
    assert deviation.explains(nan_where_finite)
    assert not deviation.explains(finite_far_off)
    assert not deviation.explains(torch_misses_an_inf)


def test_the_error_table_ids_are_unique() -> None:
    from parity_tests.harness.bad_calls import TABLE

    ids = [f"{c.loss}-{c.id}" for c in TABLE]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
