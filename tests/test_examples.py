"""The torch candidate of examples/ (a chunked, online-softmax cross-entropy as a fused kernel computes it, storing
low precision) passes the suite as it is, declining what it does not implement; and two bugs such kernels really
have, planted back into it, are caught, each named as the candidate's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from examples import chunked_cross_entropy as kernel
from parity_tests.harness.cases import Case, CaseData, build
from parity_tests.harness.check import check
from parity_tests.harness.specs import SPECS
from tests.sessions import suite


def case(dtype: str, shape=(8, 5), regime: str = "normal", **options) -> Case:
    defaults = {name: values[0] for name, values in SPECS["cross_entropy"].options.items()}
    return Case("cross_entropy", tuple(sorted({**defaults, **options}.items())), shape, regime, dtype, "cpu")


def test_the_kernel_passes_the_suite_declining_probability_targets(pytester, tmp_path):
    reports = tmp_path / "reports"
    result = suite(
        pytester,
        reports,
        "--loss",
        "cross_entropy",
        "--impl",
        "examples.chunked_cross_entropy",
        "--dtype",
        "bfloat16",
        "--dtype",
        "float32",
        "-k",
        "cross_entropy and (index-w-ii-100-ls0.1 or index-iilast-mean or prob-mean)",
    )
    summary = (reports / "latest" / "summary.md").read_text()
    assert result.ret == 0, result.stdout.str()[-3000:]
    assert summary.startswith("PASS: ")
    # it has a hand-written backward and no double backward: the second order is declined, not every option
    declined = next(
        line for line in summary.splitlines() if line.startswith("Declined wherever it appears: ")
    )
    assert "**cross_entropy: target: prob**" in declined
    assert "**cross_entropy: second order**" in declined
    assert "| cross_entropy | target: index | 104 | 0 | 0 |" in summary
    assert "### the candidate against the truth" in summary


def test_the_rounding_of_m_plus_log_s_is_caught(monkeypatch):
    # exp(x - (m + log s)) for exp((x - m) - log s): m + log s keeps eps |m|, with |m| ~ 3000 for large logits
    data = build(case("float64", shape=(4096, 3), regime="large", reduction="sum"))
    assert not check(data, kernel).failed
    monkeypatch.setattr(
        kernel, "_probabilities", lambda chunk, m, log_s: torch.exp(chunk - (m + log_s).unsqueeze(1))
    )
    failures = check(data, kernel).failures
    assert [(s.stage, s.wrong) for s in failures] == [("grad_input", "candidate")]


def test_a_nan_from_a_mean_over_nothing_is_caught(monkeypatch):
    # an ignored row's coefficient as a product with the mask: 0 times the inf of a 'mean' over nothing is NaN
    data = build(case("float32", regime="all-ignored", weight="class", reduction="mean"))
    assert not check(data, kernel).failed
    monkeypatch.setattr(kernel, "_only_kept", lambda kept, coefficient: kept * coefficient)
    (failure,) = check(data, kernel).failures
    assert (failure.stage, failure.wrong) == ("grad_input", "candidate")
    assert failure.candidate.nan_mismatches


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(0,), (3, 0)])  # torch rejects K-dim inputs of no class
def test_zero_classes_every_target_ignored(shape, label_smoothing, reduction):
    """No class at all (every target ignored, as torch requires): an empty gradient, a NaN 'mean', and with label
    smoothing NaN everywhere (eps / C = inf times 0), as torch gives. The fuzz found the kernel failing here three
    times: a class weight indexed by the targets (IndexError), the smoothing term divided by the class count
    (ZeroDivisionError), then that term taken as 0 (0 where torch has NaN)."""
    target_shape = shape[:1] if len(shape) > 1 else ()
    data = CaseData(
        case("float64", shape=shape, weight="class", reduction=reduction, label_smoothing=label_smoothing),
        {
            "input": np.zeros(shape),
            "target": np.full(target_shape, -100, dtype=np.int64),
            "weight": np.zeros(0),
            "grad_output": np.full(target_shape if reduction == "none" else (), 0.75),
            "grad_grad_input": np.zeros(shape),
        },
        {"ignore_index": -100, "reduction": reduction, "label_smoothing": label_smoothing},
    )
    result = check(data, kernel)
    assert not result.failed, result.failures


def test_a_mean_over_a_kept_weight_of_zero_with_smoothing_is_nan():
    """The one kept target has weight 0: the nll term's 'mean' is 0/0 = NaN, the loss NaN as torch has it. The fuzz
    found the kernel giving inf, from one 'mean' of the smoothed sum (c / 0)."""
    data = CaseData(
        case("float64", shape=(3,), weight="class", reduction="mean", label_smoothing=0.1),
        {
            "input": np.array([0.25, -1.5, 2.0]),
            "target": np.array(1, dtype=np.int64),
            "weight": np.array([1.0, 0.0, 2.0]),
            "grad_output": np.array(0.75),
            "grad_grad_input": np.array([1.5, -0.5, 1.0]),
        },
        {"ignore_index": -100, "reduction": "mean", "label_smoothing": 0.1},
    )
    result = check(data, kernel)
    assert not result.failed, result.failures
