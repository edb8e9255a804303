"""The course lessons (`lessons/`): each lesson's numbers, checked against values derived by hand.

These run without matplotlib; only `test_plots_are_written` needs it (and is skipped without it).
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reference
from lessons import (
    bce_with_logits,
    likelihood_to_nll,
    log_softmax_nll,
    mse_vs_cross_entropy,
    softmax_cross_entropy,
)
from lessons.__main__ import main
from lessons.output import read_csv, write_csv


def sigma(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Every lesson's CSVs, written once through the command line (no plots), and what it printed."""
    out = tmp_path_factory.mktemp("lessons")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["--out", str(out), "--no-plots"]) == 0
    return out, printed.getvalue()


@pytest.fixture
def out_dir(cli_run: tuple[Path, str]) -> Path:
    return cli_run[0]


# -- the CLI and the CSV writer ----------------------------------------------------------------------------


def test_cli_prints_every_lesson(cli_run: tuple[Path, str]) -> None:
    printed = cli_run[1]
    for title in ("1. Why not MSE", "2. Softmax", "3. Likelihood", "4. CrossEntropyLoss", "5. BCEWithLogits"):
        assert title in printed
    # Two of the deck's errors, corrected.
    assert "not 0.0162" in printed
    assert "0.00512" in printed


def test_csv_keeps_values_bit_for_bit(tmp_path: Path) -> None:
    values = [0.1 + 0.2, 1e-300, float("nan"), -math.inf]
    cols = read_csv(write_csv(tmp_path / "t.csv", {"i": [0, 1, 2, 3], "v": values}))
    assert cols["i"] == ["0", "1", "2", "3"]
    back = [float(v) for v in cols["v"]]
    assert back[:2] == values[:2]
    assert math.isnan(back[2])
    assert back[3] == -math.inf
    with pytest.raises(ValueError, match="unequal length"):
        write_csv(tmp_path / "bad.csv", {"a": [1, 2], "b": [1]})


# -- lesson 1: why not MSE ---------------------------------------------------------------------------------


def test_lesson1_csvs_have_a_row_per_epoch(out_dir: Path) -> None:
    for cost in mse_vs_cross_entropy.COSTS:
        for start in mse_vs_cross_entropy.STARTS:
            cols = read_csv(out_dir / "1_why_not_mse" / f"{cost}_{start}_start.csv")
            assert tuple(cols) == mse_vs_cross_entropy.COLUMNS
            assert [int(e) for e in cols["epoch"]] == list(range(301))  # start + 300 updates
            a = np.array(cols["output"], dtype=float)
            expected = a**2 / 2 if cost == "mse" else -np.log1p(-a)  # y = 0
            np.testing.assert_allclose(np.array(cols["cost"], dtype=float), expected, rtol=1e-12)


def test_lesson1_first_step_by_hand() -> None:
    # Good start, MSE: z = 1.5, a = sigma(1.5); dC/dw = a * sigma'(z) = a^2 (1 - a) with x = 1, y = 0.
    a = sigma(1.5)
    run = mse_vs_cross_entropy.train("mse", (0.6, 0.9))
    assert run["cost"][0] == pytest.approx(a**2 / 2, rel=1e-14)
    assert run["cost"][0] == pytest.approx(0.3342, abs=5e-5)
    assert run["w"][1] == pytest.approx(0.6 - 0.15 * a**2 * (1 - a), rel=1e-14)
    # The deck's 0.0162 is (1 - 0.82)^2 / 2, the cost for y = 1; (0 - 0.82)^2 / 2 = 0.3362.
    assert (1 - 0.82) ** 2 / 2 == pytest.approx(mse_vs_cross_entropy.DECK_FIRST_COST)
    assert (0 - 0.82) ** 2 / 2 == pytest.approx(0.3362)
    # Cross-entropy, bad start: dC/dw = sigma(4) - 0, sigma' gone.
    ce = mse_vs_cross_entropy.train("cross_entropy", (2.0, 2.0))
    assert ce["dC_dw"][0] == pytest.approx(sigma(4.0), rel=1e-14)
    assert ce["cost"][0] == pytest.approx(-math.log(1 - sigma(4.0)), rel=1e-14)


def test_lesson1_sigma_prime_cancels_in_the_reference_bce() -> None:
    # BCELoss's backward on a = sigma(z), times sigma'(z), is BCEWithLogitsLoss's backward: sigma(z) - y.
    z, y = np.array([4.0, -1.0, 0.3]), np.array([0.0, 1.0, 0.0])
    a = reference.sigmoid(z)
    chained = reference.binary_cross_entropy_backward(1.0, a, y, reduction="sum")[0] * a * (1 - a)
    direct = reference.binary_cross_entropy_with_logits_backward(1.0, z, y, reduction="sum")[0]
    np.testing.assert_allclose(chained, direct, rtol=1e-14)
    np.testing.assert_allclose(direct, a - y, rtol=1e-14)


def test_lesson1_mse_slows_down_from_the_bad_start_and_cross_entropy_does_not() -> None:
    mse = mse_vs_cross_entropy.train("mse", (2.0, 2.0))
    ce = mse_vs_cross_entropy.train("cross_entropy", (2.0, 2.0))
    # sigma'(4) = 0.0177: MSE's first step is ~57x smaller than cross-entropy's.
    assert ce["dC_dw"][0] / mse["dC_dw"][0] == pytest.approx(1 / (1 - sigma(4.0)) / sigma(4.0), rel=1e-12)
    assert mse["cost"][100] > 0.95 * mse["cost"][0]  # 100 epochs: the cost moved by under 5%
    assert mse["cost"][150] > 0.85 * mse["cost"][0]
    assert ce["cost"][20] < 0.15 * ce["cost"][0]
    assert ce["cost"][100] < 0.02 * ce["cost"][0]
    assert mse_vs_cross_entropy.epochs_to_halve(mse["cost"]) > 150
    assert mse_vs_cross_entropy.epochs_to_halve(ce["cost"]) < 15
    # From the good start MSE is not slowed down: half the cost in under 30 epochs.
    assert mse_vs_cross_entropy.epochs_to_halve(mse_vs_cross_entropy.train("mse", (0.6, 0.9))["cost"]) < 30


def test_lesson1_final_outputs_and_the_decks_figures() -> None:
    runs = mse_vs_cross_entropy.run_all()
    finals = {key: run["output"][-1] for key, run in runs.items()}
    assert all(0 < a < 0.25 for a in finals.values())
    assert finals["cross_entropy", "good"] < 0.02
    assert finals["cross_entropy", "bad"] < 0.02
    # Nielsen's figures: MSE ends at output 0.09 from the good start and 0.20 from the bad one.
    assert finals["mse", "good"] == pytest.approx(0.09, abs=0.005)
    assert finals["mse", "bad"] == pytest.approx(0.20, abs=0.005)
    # x = 1 gives w and b the same gradient: w - b stays at its start value.
    for (_, start), run in runs.items():
        w0, b0 = mse_vs_cross_entropy.STARTS[start]
        np.testing.assert_allclose(run["w"] - run["b"], w0 - b0, atol=1e-12)
    # The deck's "300 epochs" w = -1.11, b = -0.81, output 0.13 is the MSE run near epoch 190, not 300.
    good = runs["mse", "good"]
    assert (round(good["w"][191], 2), round(good["b"][191], 2), round(good["output"][191], 2)) == (
        -1.11,
        -0.81,
        0.13,
    )
    assert (round(good["w"][300], 2), round(good["b"][300], 2)) == (-1.28, -0.98)


# -- lesson 2: softmax and categorical cross-entropy -------------------------------------------------------


def test_lesson2_softmax_example() -> None:
    ex = softmax_cross_entropy.softmax_example()
    exps = [math.exp(1.3), math.exp(0.2), math.exp(-2.1)]
    assert ex["exp_sum"] == pytest.approx(sum(exps), rel=1e-15)
    assert ex["exp_sum"] == pytest.approx(5.013155, abs=1e-6)
    np.testing.assert_allclose(ex["softmax"], np.array(exps) / sum(exps), rtol=1e-15)
    np.testing.assert_allclose(ex["softmax"], [0.7319, 0.2436, 0.0244], atol=5e-5)
    assert ex["softmax"].sum() == pytest.approx(1.0, abs=1e-15)
    # The deck's three-decimal values do not add up to 1.
    assert softmax_cross_entropy.DECK_SOFTMAX.sum() == pytest.approx(0.998)


def test_lesson2_batch_losses() -> None:
    batch = softmax_cross_entropy.batch_losses()
    np.testing.assert_allclose(batch["p_true"], [0.39, 0.17, 0.41])
    np.testing.assert_allclose(
        batch["losses"], [-math.log(0.39), -math.log(0.17), -math.log(0.41)], rtol=1e-15
    )
    np.testing.assert_allclose(np.round(batch["losses"], 4), [0.9416, 1.7720, 0.8916])  # the deck truncates
    np.testing.assert_allclose(batch["losses"], softmax_cross_entropy.DECK_LOSSES, atol=1e-4)
    assert batch["batch_loss"] == pytest.approx(-math.log(0.39 * 0.17 * 0.41) / 3, rel=1e-15)
    assert round(batch["batch_loss"], 4) == 1.2017  # the deck's 1.2, rounded
    assert batch["batch_loss_from_logits"] == pytest.approx(batch["batch_loss"], rel=1e-15)
    # torch agrees, and the two filled-in probabilities of each row cannot change a one-hot loss.
    probs = torch.tensor(softmax_cross_entropy.PROBABILITIES)
    targets = torch.tensor(softmax_cross_entropy.TARGETS)
    assert F.nll_loss(probs.log(), targets).item() == pytest.approx(batch["batch_loss"], rel=1e-15)
    other = softmax_cross_entropy.PROBABILITIES.copy()
    other[1], other[2] = [0.8, 0.17, 0.03], [0.5, 0.09, 0.41]
    assert reference.nll_loss(np.log(other), softmax_cross_entropy.TARGETS) == pytest.approx(
        batch["batch_loss"]
    )


def test_lesson2_csv(out_dir: Path) -> None:
    cols = read_csv(out_dir / "2_softmax_cross_entropy" / "batch.csv")
    assert cols["sample"] == ["gato", "perro", "ave"]
    np.testing.assert_allclose(np.array(cols["loss"], dtype=float), -np.log([0.39, 0.17, 0.41]), rtol=1e-15)


# -- lesson 3: likelihood to NLL ---------------------------------------------------------------------------


def test_lesson3_likelihoods_by_hand() -> None:
    # Draws: 2 red, 3 blue, so L(q) = q_red^2 q_blue^3 and NLL = -(2 ln q_red + 3 ln q_blue).
    assert likelihood_to_nll.likelihood(0.8)[0] == pytest.approx(0.8**2 * 0.2**3, rel=1e-14)
    assert likelihood_to_nll.likelihood(0.8)[0] == pytest.approx(0.00512, rel=1e-12)
    assert likelihood_to_nll.likelihood(0.5)[0] == pytest.approx(0.5**5, rel=1e-14)  # 0.03125, deck 0.031
    assert likelihood_to_nll.nll(0.8)[0] == pytest.approx(-(2 * math.log(0.8) + 3 * math.log(0.2)), rel=1e-15)
    assert likelihood_to_nll.nll(0.5)[0] == pytest.approx(5 * math.log(2), rel=1e-15)
    # The deck's 0.023 is (4/5)^2 (1/3)^3: 1/3 where q_blue is 1/5.
    assert (4 / 5) ** 2 * (1 / 3) ** 3 == pytest.approx(0.0237, abs=1e-4)
    # Smaller NLL = more likely: the 0.5 model wins, by 6.1x.
    assert likelihood_to_nll.nll(0.5)[0] < likelihood_to_nll.nll(0.8)[0]
    assert 0.5**5 / (0.8**2 * 0.2**3) == pytest.approx(6.1, abs=0.01)


def test_lesson3_nll_minimum_is_the_empirical_frequency(out_dir: Path) -> None:
    table = likelihood_to_nll.sweep()
    best = int(np.argmin(table["nll"]))
    assert table["q_red"][best] == 0.4
    p = likelihood_to_nll.EMPIRICAL
    entropy = -(p * np.log(p)).sum()
    assert table["nll_per_draw"][best] == pytest.approx(entropy, rel=1e-14)  # H(p, p) = H(p)
    assert table["likelihood"][best] == pytest.approx(0.4**2 * 0.6**3, rel=1e-13)
    # NLL / N is the cross-entropy -sum_i p_i ln q_i of the deck.
    q = np.array([0.3, 0.7])
    assert likelihood_to_nll.nll(0.3)[0] / 5 == pytest.approx(-(p * np.log(q)).sum(), rel=1e-14)
    cols = read_csv(out_dir / "3_likelihood_to_nll" / "nll_vs_q_red.csv")
    assert len(cols["q_red"]) == 999
    assert set(cols) == {"q_red", "nll", "nll_per_draw", "likelihood"}


# -- lesson 4: CrossEntropyLoss = LogSoftmax + NLLLoss -----------------------------------------------------


@pytest.fixture(scope="module")
def usages() -> dict[str, dict[str, np.ndarray]]:
    return log_softmax_nll.evaluate()


def test_lesson4_identity(usages: dict[str, dict[str, np.ndarray]]) -> None:
    ce, nll = usages["CrossEntropyLoss(scores)"], usages["NLLLoss(LogSoftmax(scores))"]
    np.testing.assert_allclose(ce["losses"], nll["losses"], rtol=1e-15)
    np.testing.assert_allclose(ce["grad"], nll["grad"], rtol=1e-14, atol=1e-16)
    q = reference.softmax(log_softmax_nll.SCORES)
    np.testing.assert_allclose(ce["losses"], -np.log(q[[0, 1, 2], [0, 1, 2]]), rtol=1e-15)
    # (softmax - onehot) / N
    np.testing.assert_allclose(ce["grad"], (q - np.eye(3)) / 3, rtol=1e-14, atol=1e-17)
    assert ce["mean"] == pytest.approx(1.8121, abs=1e-4)
    for usage in usages.values():  # the reference agrees with torch on every usage, right or wrong
        np.testing.assert_allclose(usage["losses"], usage["torch_losses"], rtol=1e-14, atol=1e-16)
        np.testing.assert_allclose(usage["grad"], usage["torch_grad"], rtol=1e-13, atol=1e-16)


def test_lesson4_nll_of_raw_scores(usages: dict[str, dict[str, np.ndarray]]) -> None:
    raw = usages["NLLLoss(scores)"]
    np.testing.assert_array_equal(raw["losses"], [-1.3, -0.2, 2.1])  # -score of the true class
    assert raw["mean"] == pytest.approx(0.2)
    np.testing.assert_array_equal(raw["grad"], -np.eye(3) / 3)  # whatever the prediction
    shifted = log_softmax_nll.evaluate(log_softmax_nll.SCORES + 10.0)
    assert shifted["NLLLoss(scores)"]["mean"] == pytest.approx(-9.8)  # same predictions, 10 lower
    ce_mean = usages["CrossEntropyLoss(scores)"]["mean"]
    assert shifted["CrossEntropyLoss(scores)"]["mean"] == pytest.approx(ce_mean)


def test_lesson4_nll_of_probabilities(usages: dict[str, dict[str, np.ndarray]]) -> None:
    prob = usages["NLLLoss(Softmax(scores))"]
    q = reference.softmax(np.array([1.3, 0.2, -2.1]))
    np.testing.assert_allclose(prob["losses"], -q, rtol=1e-15)  # -q_true, each target once
    assert prob["mean"] == pytest.approx(-1 / 3, rel=1e-15)
    # Gradient on the true score: -q (1 - q) / N, vanishing as the prediction gets worse (q -> 0).
    np.testing.assert_allclose(np.diag(prob["grad"]), -q * (1 - q) / 3, rtol=1e-14)
    correct = np.diag(usages["CrossEntropyLoss(scores)"]["grad"])
    assert correct[2] / prob["grad"][2, 2] == pytest.approx(1 / q[2], rel=1e-12)  # 41x weaker
    ce_prob = usages["CrossEntropyLoss(Softmax(scores))"]
    expected = -q + np.log(np.exp(q).sum())
    np.testing.assert_allclose(ce_prob["losses"], expected, rtol=1e-15)
    low, high = math.log(math.e + 2) - 1, math.log(math.e + 2)  # its range for C = 3
    table = log_softmax_nll.sweep(np.linspace(-30, 30, 61))
    ce_prob_losses, nll_prob_losses = (
        table["CrossEntropyLoss(Softmax(scores)) loss"],
        table["NLLLoss(Softmax(scores)) loss"],
    )
    assert np.all((low < ce_prob_losses) & (ce_prob_losses < high))
    assert np.all((-1 <= nll_prob_losses) & (nll_prob_losses <= 0))


def test_lesson4_csv(out_dir: Path) -> None:
    cols = read_csv(out_dir / "4_log_softmax_nll" / "usages.csv")
    assert len(cols["usage"]) == 2 * len(log_softmax_nll.USAGES) * 3
    losses = np.array(cols["loss"], dtype=float)
    np.testing.assert_allclose(losses, np.array(cols["torch_loss"], dtype=float), rtol=1e-14, atol=1e-16)


# -- lesson 5: BCEWithLogitsLoss vs Sigmoid + BCELoss ------------------------------------------------------

P1 = "p->1 (y=0, x=+|x|)"
P0 = "p->0 (y=1, x=-|x|)"


Measured = dict[tuple[str, str], dict[str, np.ndarray]]


@pytest.fixture(scope="module")
def bce() -> Measured:
    return bce_with_logits.measure_all()


def first_bad(measured: dict[str, np.ndarray], key: str) -> float:
    magnitude = bce_with_logits.first_bad_magnitude(measured[key])
    assert magnitude is not None, f"{key} is never >10% off"
    return magnitude


def test_lesson5_truth() -> None:
    loss, grad = bce_with_logits.truth(np.array([0.0, 1.0, 40.0, -40.0]), 0.0)
    np.testing.assert_allclose(loss, [math.log(2), math.log1p(math.e), 40.0, math.exp(-40.0)], rtol=1e-15)
    np.testing.assert_allclose(grad, [0.5, sigma(1.0), 1.0, math.exp(-40.0)], rtol=1e-15)


def test_lesson5_composed_saturates_in_float32(bce: Measured) -> None:
    r = bce[P1, "float32"]
    err = r["torch sigmoid+BCELoss loss_err"]
    # Beyond |x| ~ 16.6 float32's 1/(1 + e^-x) is exactly 1: loss clamped to 100, gradient sigma' = 0.
    beyond = bce_with_logits.MAGNITUDES > 17
    assert np.all(err[beyond & (bce_with_logits.MAGNITUDES < 90)] > 0.1)  # 100 instead of the true 17..90
    assert err[-1] == pytest.approx(0.5, rel=1e-6)  # 100 instead of 200
    assert np.all(err[bce_with_logits.MAGNITUDES < 10] < 1e-4)
    assert 15 < first_bad(r, "torch sigmoid+BCELoss loss_err") < 18
    assert np.all(r["torch sigmoid+BCELoss loss"][beyond] == 100.0)
    assert np.all(r["torch sigmoid+BCELoss grad"][beyond] == 0.0)
    np.testing.assert_allclose(r["torch BCEWithLogitsLoss grad"][beyond], 1.0)
    assert r["torch BCEWithLogitsLoss loss"][-1] == pytest.approx(200.0, rel=1e-7)


def test_lesson5_with_logits_stays_within_a_few_eps(bce: Measured) -> None:
    for (case, dtype), r in bce.items():
        for stage in ("loss", "grad"):
            torch_eps = bce_with_logits.worst_in_eps(r[f"torch BCEWithLogitsLoss {stage}_err"], dtype)
            ref_err = np.max(r[f"reference BCEWithLogitsLoss {stage}_err"])
            assert torch_eps <= 4, (case, dtype, stage)
            assert ref_err <= 4 * np.finfo(np.float64).eps, (case, dtype, stage)


def test_lesson5_saturation_point_follows_the_dtype(bce: Measured) -> None:
    first = {d: first_bad(bce[P1, d], "torch sigmoid+BCELoss loss_err") for d in bce_with_logits.DTYPES}
    # p rounds to 1 near x = ln(2/eps): 36.7 (float64), 16.6 (float32), 7.6 (float16), 5.5 (bfloat16).
    assert first["bfloat16"] < first["float16"] < first["float32"] < first["float64"]
    assert 36 < first["float64"] < 40
    assert 7 < first["float16"] < 9
    assert 5 < first["bfloat16"] < 7
    # float16 has no room for BCELoss's 1e-12: the saturated gradient is inf * 0 = nan.
    assert np.isnan(bce[P1, "float16"]["torch sigmoid+BCELoss grad"][-1])
    # p -> 0: BCELoss's backward divides by max(p(1 - p), 1e-12): wrong past |x| = ln(1e12) = 27.6, even
    # in float64.
    g = bce[P0, "float64"]["torch sigmoid+BCELoss grad_err"]
    assert np.all(g[bce_with_logits.MAGNITUDES < 27] < 1e-12)
    assert np.all(g[bce_with_logits.MAGNITUDES > 28] > 0.1)
    # ...and its loss, clamped at 100, is wrong once the true loss passes 100 (|x| > 111 for 10%).
    assert 100 < first_bad(bce[P0, "float64"], "torch sigmoid+BCELoss loss_err") < 120


def test_lesson5_reference_composed_breaks_where_the_rounded_sigmoid_does(bce: Measured) -> None:
    for dtype in ("float64", "float16", "bfloat16"):  # float32: torch's sigmoid itself rounds to 1 sooner
        r = bce[P1, dtype]
        assert first_bad(r, "reference sigmoid+BCELoss loss_err") == first_bad(
            r, "torch sigmoid+BCELoss loss_err"
        )
    assert 17.3 < first_bad(bce[P1, "float32"], "reference sigmoid+BCELoss loss_err") < 19


def test_lesson5_csv(out_dir: Path) -> None:
    cols = read_csv(out_dir / "5_bce_with_logits" / "error_vs_logit.csv")
    n = len(bce_with_logits.CASES) * len(bce_with_logits.DTYPES) * 2 * 2 * bce_with_logits.MAGNITUDES.size
    assert len(cols["loss"]) == n
    assert {"case", "dtype", "side", "form", "abs_x", "truth_loss", "loss", "loss_rel_err"} <= set(cols)


# -- plots (matplotlib is optional) ------------------------------------------------------------------------


def test_plots_are_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    starts = mse_vs_cross_entropy.STARTS
    runs = {
        (c, s): mse_vs_cross_entropy.train(c, starts[s], epochs=20)
        for c in ("mse", "cross_entropy")
        for s in starts
    }
    path = mse_vs_cross_entropy.plot(runs, tmp_path / "1.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
