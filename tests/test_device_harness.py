"""Meta-tests of the device machinery, on cpu: the cross-device stages, the determinism check, the invalid-input
outcomes, the chunked comparison and the memory sizing of the gpu profile each catch what they are for.

A second device is stood in for by cpu itself, with torch's results on the "other" device altered where a test
plants a fault: each check must fail on the fault and pass without it.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import reference
from parity_tests.harness import check as check_module
from parity_tests.harness import compare as compare_module
from parity_tests.harness import determinism, devices, invalid
from parity_tests.harness.cases import Case, build, grid
from parity_tests.harness.compare import compare
from parity_tests.harness.dtypes import eps
from parity_tests.harness.specs import SPECS
from parity_tests.harness.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent


def case(loss: str, dtype: str, shape=(8, 5), device: str = "cpu", **options) -> Case:
    defaults = {name: values[0] for name, values in SPECS[loss].options.items()}
    return Case(loss, tuple(sorted({**defaults, **options}.items())), shape, "normal", dtype, device)


@pytest.fixture
def twin(monkeypatch: pytest.MonkeyPatch):
    """Makes "twin" the baseline device: torch's results there are cpu's, passed through `alter` (a dict the
    test fills: stage -> function of the array)."""
    alter: dict = {}
    real = check_module.run_torch

    def run(data, device=None):
        if device == "twin":
            out = real(data, "cpu")
            return {k: alter[k](v) if k in alter and v is not None else v for k, v in out.items()}
        return real(data, device)

    monkeypatch.setattr(check_module, "run_torch", run)
    monkeypatch.setattr(check_module, "BASELINE", "twin")
    return alter


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
@pytest.mark.parametrize("stage", STAGES)
def test_a_device_that_disagrees_with_the_baseline_is_caught(twin, stage, dtype):
    c = case("cross_entropy", dtype, target="prob", reduction="none")
    result = check_module.check(build(c), reference)
    names = [s.verdict.stage for s in result.stages]
    assert names == [*STAGES, *(f"{s} vs twin" for s in STAGES)]
    assert not result.failures  # without a fault, every stage passes
    twin[stage] = lambda a: a * (1 + 16 * eps(dtype))
    result = check_module.check(build(c), reference)
    assert [s.verdict.stage for s in result.failures] == [
        f"{stage} vs twin"
    ]  # torch on the device is unchanged


def test_a_disagreement_that_a_registered_deviation_explains_is_that_deviation(twin):
    # float16 'mean' of about 3000 losses of 30: torch's cpu kernel sums them in float16, which overflows
    # (float16-sum-overflow-in-mean, a registered cpu deviation), while the twin computes the mean correctly.
    c = case("nll_loss", "float16", shape=(4096, 3), reduction="mean")
    data = build(c)
    data.arrays["input"][:] = -30.0
    twin["loss"] = lambda a: np.full_like(a, 30.0)
    result = check_module.check(data, reference)
    statuses = {s.verdict.stage: (s.status, s.deviation and s.deviation.id) for s in result.stages}
    assert statuses["loss"] == ("deviation", "float16-sum-overflow-in-mean")
    assert statuses["loss vs twin"] == ("deviation", "float16-sum-overflow-in-mean")
    assert not result.failures
    twin["loss"] = lambda a: np.full_like(a, 31.0)  # a twin that is wrong as well: its own error still fails
    statuses = {s.verdict.stage: s.status for s in check_module.check(data, reference).failures}
    assert statuses == {"loss vs twin": "fail"}


def test_a_nondeterministic_path_fails_unless_torch_documents_it(monkeypatch):
    data = build(case("cross_entropy", "float32"))
    assert determinism.check_determinism(data).ok
    rng = np.random.default_rng(0)
    real = determinism.run_torch

    def noisy(data, device=None):  # an atomic-add order that varies: the last bit of one element flips
        out = real(data, device)
        grad = out["grad_input"].copy()
        grad.flat[0] = np.nextafter(np.float32(grad.flat[0]), np.float32(np.inf) * rng.choice([-1, 1]))
        return {**out, "grad_input": grad}

    monkeypatch.setattr(determinism, "run_torch", noisy)
    result = determinism.check_determinism(data)
    assert result.differing == ["grad_input"]
    assert not result.ok
    monkeypatch.setattr(
        determinism, "documented_nondeterminism", lambda data: "does not have a deterministic ..."
    )
    assert determinism.check_determinism(data).ok


def test_torch_documented_nondeterminism_is_read_from_its_warning(monkeypatch):
    def warns(data, device=None):
        import warnings

        warnings.warn(
            "nll_loss2d_forward_out_cuda_template does not have a deterministic implementation", stacklevel=1
        )
        return {}

    monkeypatch.setattr(determinism, "run_torch", warns)
    assert "nll_loss2d" in determinism.documented_nondeterminism(build(case("nll_loss", "float32")))


def test_invalid_outcomes_are_classified(monkeypatch):
    assert invalid.outcome("ce-index-above-classes", "cpu")["outcome"] == "error:IndexError"
    assert invalid.outcome("ce-prob-target-negative", "cpu")["outcome"] == "silent"

    def asserting(*args, **kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered\nCompile with TORCH_USE_CUDA_DSA")

    entry = invalid.INVALID["ce-index-above-classes"]
    fake = invalid.Invalid(entry.loss, entry.what, lambda: (asserting, *entry.make()[1:]), entry.outcomes)
    monkeypatch.setitem(invalid.INVALID, "fake", fake)
    assert invalid.outcome("fake", "cpu")["outcome"] == "assert"


@pytest.mark.heavy
def test_an_invalid_input_runs_in_a_subprocess_with_the_same_outcome():
    assert invalid.outcome_in_subprocess("bce-input-above-one", "cpu") == invalid.outcome(
        "bce-input-above-one", "cpu"
    )


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_chunked_comparison_finds_the_same_fault_at_its_index(monkeypatch, dtype):
    rng = np.random.default_rng(1)
    expected = rng.normal(size=(37, 11))
    actual = expected.copy()
    actual[29, 7] += 16 * eps(dtype) * np.abs(expected).max()
    whole = compare("grad_input", expected, actual, dtype, 8.0)
    monkeypatch.setattr(compare_module, "CHUNK", 10)
    chunked = compare("grad_input", expected, actual, dtype, 8.0)
    assert not chunked.ok
    assert chunked.worst_index == whole.worst_index == (29, 7)
    assert (chunked.error, chunked.scale, chunked.mismatches) == (whole.error, whole.scale, whole.mismatches)


def test_a_gpu_case_that_does_not_fit_is_skipped_with_the_reason(monkeypatch):
    llm = next(c for c in grid("gpu", ["cpu"]) if c.shape == (8192, 128256))
    monkeypatch.setattr(devices, "host_free_bytes", lambda: 16 << 30)
    assert "GiB on this host, 16.0 GiB free" in devices.unfit(llm)
    monkeypatch.setattr(devices, "host_free_bytes", lambda: 1 << 40)
    assert devices.unfit(llm) is None
    assert devices.unfit(case("cross_entropy", "float32")) is None  # the grid's cases are never sized


def test_an_absent_device_collects_nothing_and_says_so(pytester, tmp_path):
    if "cuda" in devices.available():
        pytest.skip("this machine has cuda")
    run = pytester.runpytest_inprocess(
        *(str(ROOT / "parity_tests" / name) for name in ("test_parity.py", "test_determinism.py")),
        "--device",
        "cuda",
        "-p",
        "no:cacheprovider",
        f"--report-dir={tmp_path}",
        f"--rootdir={ROOT}",
        "-c",
        str(ROOT / "pyproject.toml"),
    )
    output = run.stdout.str()
    assert run.ret == 0, output[-2000:]
    assert "not on this machine, nothing collected: cuda" in output
    summary = (tmp_path / "latest" / "summary.md").read_text()
    assert summary.startswith("PASS: nothing to run: cuda is not on this machine")
    assert "(absent here: cuda)" in summary


def test_a_record_too_large_to_store_replays_from_its_seed(monkeypatch, tmp_path):
    from parity_tests.harness import record as records

    c = case("cross_entropy", "bfloat16", target="prob", weight="class")
    impl = SimpleNamespace(**vars(reference))
    impl.cross_entropy = lambda *a, **k: reference.cross_entropy(*a, **k) * 1.5
    result = check_module.check(build(c), impl)
    monkeypatch.setattr(records, "MAX_NPZ_BYTES", 0)
    path = records.write_record(result, tmp_path)
    assert not list(tmp_path.glob("*.npz"))
    record, data = records.load_record(path)
    assert record["inputs_file"] is None
    assert all(
        determinism.same_bits(data.arrays[k], v) for k, v in build(c).arrays.items() if v.dtype.kind == "f"
    )


def test_a_finite_value_for_a_nan_is_explained_only_where_registered():
    from parity_tests.harness.tables import Deviation

    zero_for_nan = compare("loss", np.array(np.nan), np.array(0.0), "float32", 8.0)
    inf_for_nan = compare("loss", np.array(np.nan), np.array(np.inf), "float32", 8.0)
    assert zero_for_nan.missing_nan == 1
    assert inf_for_nan.missing_nan == 0
    allowed = Deviation("d", "", "", "", {"finite_for_nan": True})
    assert allowed.explains(zero_for_nan)
    assert not allowed.explains(inf_for_nan)  # torch's inf for a NaN is another mechanism
    assert not Deviation("d", "", "", "", {"nonfinite": True}).explains(zero_for_nan)
