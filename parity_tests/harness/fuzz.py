"""Property-based search of each loss's whole input space (Hypothesis), and the search that runs it.

`draw_case` draws one case, every choice a labelled draw: shape (unbatched, up to 4 spatial dims, empty dims, one
class, odd sizes, now and then a large class count), value regime, targets, weights, broadcast shapes, option values
(sometimes omitted, so that the defaults get tested too) and dtype. The values themselves come from a NumPy
generator seeded by a drawn seed: Hypothesis shrinks the shape, the regime and the seed, and the failing case it
ends with is small. As in `cases.build`, values are drawn in float64 and rounded to the dtype with `round_to`, so
torch and the implementation get identical inputs. Only inputs that torch accepts are drawn (error parity is
test_errors.py's). `search` runs the property `check(case) has no failures` and returns the shrunk failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import numpy as np
from hypothesis import HealthCheck, Phase, assume, given, reject
from hypothesis import strategies as st

from parity_tests.harness.cases import Case, CaseData, cotangent, output_shape
from parity_tests.harness.check import CaseResult, check
from parity_tests.harness.dtypes import max_finite, round_to
from parity_tests.harness.specs import SPECS, Arrays, Shape
from parity_tests.harness.stages import STAGES

REGIME = "fuzz"

# The fuzz profile searches (10,000 examples per loss and device unless --max-examples says otherwise) and keeps
# found failures in the database under .hypothesis/ for the next run; every other profile runs a small
# derandomized slice, so that the gate stays fast and deterministic.
FUZZ_SETTINGS = hypothesis.settings(
    max_examples=10_000,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # no explain phase: its notes go to an exception the search catches (the record says what failed), and it
    # re-ran a shrunk failure some 200 times (7 of the planted-fault meta-test's 12 s)
    phases=[phase for phase in Phase if phase is not Phase.explain],
)
GATE_SETTINGS = hypothesis.settings(FUZZ_SETTINGS, max_examples=25, derandomize=True, database=None)


def settings_for(fuzzing: bool, max_examples: int | None, derandomize: bool) -> hypothesis.settings:
    """test_fuzz.py's Hypothesis settings: the full search (`--profile fuzz`) or the gate's slice."""
    chosen = FUZZ_SETTINGS if fuzzing else GATE_SETTINGS
    if max_examples is not None:
        chosen = hypothesis.settings(chosen, max_examples=max_examples)
    if derandomize:
        chosen = hypothesis.settings(chosen, derandomize=True, database=None)
    return chosen


def database_folder(loss: str, device: str) -> Path:
    """Where the fuzz keeps one test's found failures: in Hypothesis's own folder (./.hypothesis, or
    HYPOTHESIS_STORAGE_DIRECTORY), never inside an installed suite. Computed here rather than by Hypothesis's
    `storage_directory`, whose return type changed (a Path, then an object whose str is its repr)."""
    home = os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY") or Path.cwd() / ".hypothesis"
    return Path(home) / "fuzz" / f"{loss}-{device}"


MAX_NUMEL = 20_000  # keeps one example in the milliseconds
# The magnitude of drawn logits: ordinary first (Hypothesis shrinks towards the first choice).
SCALES = {"ordinary": 2.0, "tiny": 1e-4, "large": 1e2, "extreme": 1e4, "beyond": 1e6}
# How often a special value (exact 0 and 1, +-30, +-1e4, -inf, ...) replaces a drawn one.
SPECIAL_RATES = (0.0, 0.1, 0.5, 1.0)
LARGE_CLASS_COUNTS = (100, 423, 1000, 4096)
LABEL_SMOOTHING = st.one_of(
    st.sampled_from((0.0, 0.1, 1.0, -0.25)),  # a negative value is taken as 0 by torch
    st.integers(1, 999).map(lambda k: k / 1000),
)


def _option(
    data: st.DataObject, keywords: dict[str, Any], name: str, values: st.SearchStrategy, default: Any
):
    """A keyword option: passed (and recorded in `keywords`) or left out, so that the default is used."""
    if data.draw(st.booleans(), label=f"pass {name}"):
        keywords[name] = data.draw(values, label=name)
        return keywords[name]
    return default


def _dims(data: st.DataObject, count: int, numel: int, label: str) -> list[int]:
    """`count` dimensions (0 to 9 each), kept so that the whole array stays within MAX_NUMEL elements."""
    dims = []
    for i in range(count):
        dims.append(
            data.draw(st.integers(0, max(1, min(9, MAX_NUMEL // max(numel, 1)))), label=f"{label}{i}")
        )
        numel *= max(dims[-1], 1)
    return dims


def _values(
    data: st.DataObject, rng: np.random.Generator, shape: Shape, specials: Sequence[float], dtype: str
):
    """float64 values in a drawn regime, some replaced by special values, within the dtype's finite range
    (save the specials, which may be infinite)."""
    regime = data.draw(st.sampled_from([*SCALES, "mixed"]), label="value regime")
    if regime == "mixed":  # magnitudes spread over 1e-6 .. 1e5
        values = rng.normal(0.0, 1.0, shape) * 10.0 ** rng.uniform(-6, 5, shape)
    else:
        values = rng.normal(0.0, SCALES[regime], shape)
    # A 64th of the range: a true result stays finite where its inputs are (save deliberate -inf).
    limit = max_finite(dtype) / 64
    return _with_specials(data, rng, np.clip(values, -limit, limit), specials)


def _with_specials(
    data: st.DataObject, rng: np.random.Generator, values: np.ndarray, specials: Sequence[float]
):
    """`values` with a drawn share of its entries replaced by `specials`."""
    if not specials:
        return np.asarray(values, dtype=np.float64)
    rate = data.draw(st.sampled_from(SPECIAL_RATES), label="special rate")
    replaced = rng.choice(np.asarray(specials, dtype=np.float64), np.shape(values))
    return np.where(rng.random(np.shape(values)) < rate, replaced, values)


def _logit_specials(dtype: str, infinite: bool) -> tuple[float, ...]:
    """Logits at the edges: 0, confident (+-30), extreme (+-1e4, within the dtype), and -inf where torch defines
    the result (a class of probability 0; torch's BCE-with-logits has no defined value there)."""
    big = min(1e4, max_finite(dtype) / 64)
    return (0.0, 30.0, -30.0, big, -big, *((-np.inf,) if infinite else ()))


def _class_case(
    data: st.DataObject, loss: str, dtype: str, reduction: str
) -> tuple[dict[str, Any], dict[str, Any], Arrays]:
    """cross_entropy / nll_loss: (options, keywords, float64 arrays)."""
    rank = data.draw(st.integers(1, 6), label="rank")  # (C,), (N, C), (N, C, d1..d4)
    # Few classes first, then none or one, then many: a shrink towards the first branch keeps some classes.
    classes = st.one_of(st.integers(2, 9), st.sampled_from((1, 0)), st.sampled_from(LARGE_CLASS_COUNTS))
    n_classes = data.draw(classes, label="classes")
    dims = _dims(data, rank - 1, n_classes, "dim")
    shape = (n_classes,) if rank == 1 else (dims[0], n_classes, *dims[1:])
    class_dim = 0 if rank == 1 else 1
    kind = (
        "index" if loss == "nll_loss" else data.draw(st.sampled_from(("index", "prob")), label="target kind")
    )
    # torch reshapes a rank-3 or rank >= 5 input to 4-D by inferring a dimension, which fails without classes
    assume(n_classes or kind == "prob" or rank in (1, 2, 4) or 0 in shape[:1] + shape[2:])
    target_shape = shape[:class_dim] + shape[class_dim + 1 :]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    keywords: dict[str, Any] = {}
    options: dict[str, Any] = {"target": kind}

    if loss == "nll_loss" and data.draw(st.booleans(), label="log-probabilities"):
        logits = _values(data, rng, shape, _logit_specials(dtype, infinite=True), dtype)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # an all -inf row is NaN
            shifted = logits - np.max(logits, axis=class_dim, keepdims=True) if logits.size else logits
            x = shifted - np.log(np.exp(shifted).sum(axis=class_dim, keepdims=True))
    else:
        x = _values(data, rng, shape, _logit_specials(dtype, infinite=True), dtype)
        if loss == "nll_loss" and reduction != "none":  # raw values of one sign: see _weights
            x = -np.abs(x) if data.draw(st.booleans(), label="non-positive") else np.abs(x)
    arrays = {"input": x}

    if kind == "prob":
        options["ignore_index"] = _option(data, keywords, "ignore_index", st.sampled_from((-100, -1)), -100)
        form = data.draw(st.sampled_from(("normalised", "one-hot", "unnormalised")), label="target form")
        if form == "normalised":
            q = np.exp(rng.normal(0.0, 2.0, shape))
            q /= np.maximum(q.sum(axis=class_dim, keepdims=True), 1e-300)
        elif form == "one-hot":
            picked = rng.integers(0, max(n_classes, 1), target_shape)[..., None]
            q = np.moveaxis((np.arange(n_classes) == picked).astype(np.float64), -1, class_dim)
        else:
            q = rng.uniform(0.0, 3.0, shape)
        arrays["target"] = q
    else:
        choices = ("default", "negative", "class", "last class", "beyond")
        choice = data.draw(st.sampled_from(choices), label="ignore_index")
        ignore_index = {
            "default": -100,
            "negative": -1,
            "last class": max(n_classes - 1, 0),
            "beyond": n_classes + 2,
        }.get(choice)
        if choice == "class":
            ignore_index = data.draw(st.integers(0, max(n_classes - 1, 0)), label="ignored class")
        if choice == "default":
            _option(data, keywords, "ignore_index", st.just(-100), -100)
        else:
            keywords["ignore_index"] = ignore_index
        options["ignore_index"] = ignore_index
        target = rng.integers(0, max(n_classes, 1), target_shape)
        ignored = (
            1.0 if n_classes == 0 else data.draw(st.sampled_from((0.0, 0.25, 0.9, 1.0)), label="ignored")
        )
        arrays["target"] = np.where(rng.random(target_shape) < ignored, ignore_index, target).astype(np.int64)

    options["weight"] = None
    if data.draw(st.booleans(), label="weight"):
        options["weight"] = "class"
        arrays["weight"] = _weights(data, rng, (n_classes,))
    if loss == "cross_entropy":
        options["label_smoothing"] = max(
            _option(data, keywords, "label_smoothing", LABEL_SMOOTHING, 0.0), 0.0
        )
    return options, keywords, arrays


WEIGHT_FORMS = ("positive", "with zeros", "negative", "zeros")


def _weights(
    data: st.DataObject, rng: np.random.Generator, shape: Shape, forms: Sequence[str] = WEIGHT_FORMS
) -> np.ndarray:
    """Weights of one sign (mixed signs make the loss a cancelling sum, see docs/fuzzing.md), with zeros."""
    form = data.draw(st.sampled_from(forms), label="weight values")
    values = rng.uniform(0.25, 3.0, shape)
    if form == "with zeros":
        values = np.where(rng.random(shape) < 0.5, 0.0, values)
    elif form == "negative":
        values = -values
    elif form == "zeros":
        values = np.zeros(shape)
    return values


def _broadcast_shape(data: st.DataObject, shape: Shape, name: str) -> Shape:
    """A shape that broadcasts to `shape` without enlarging it: trailing dimensions, each kept or 1."""
    rank = data.draw(st.integers(0, len(shape)), label=f"{name} rank")
    kept = data.draw(st.lists(st.booleans(), min_size=rank, max_size=rank), label=f"{name} keeps dim")
    return tuple(d if k else 1 for d, k in zip(shape[len(shape) - rank :], kept, strict=True))


def _binary_case(
    data: st.DataObject, loss: str, dtype: str, reduction: str
) -> tuple[dict[str, Any], dict[str, Any], Arrays]:
    """binary_cross_entropy / binary_cross_entropy_with_logits: (options, keywords, float64 arrays)."""
    rank = data.draw(st.integers(0, 5), label="rank")
    shape = tuple(_dims(data, rank, 1, "dim"))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    logits = loss == "binary_cross_entropy_with_logits"
    if logits:
        x = _values(data, rng, shape, _logit_specials(dtype, infinite=False), dtype)
    else:  # probabilities, exact 0 and 1 and their neighbours among the specials
        with np.errstate(over="ignore"):
            x = 1.0 / (1.0 + np.exp(-_values(data, rng, shape, (), "float64")))
        x = _with_specials(data, rng, x, (0.0, 1.0, 0.5, 1e-12, 1 - 1e-12, 1e-3, 1 - 1e-3))
    # Targets outside [0, 1] (accepted by torch here) make terms of both signs: unreduced only, see _weights.
    kinds = ("soft", "binary", "unbounded") if logits and reduction == "none" else ("soft", "binary")
    kind = data.draw(st.sampled_from(kinds), label="target kind")
    target = {
        "soft": lambda: rng.uniform(0.0, 1.0, shape),
        "binary": lambda: rng.integers(0, 2, shape).astype(np.float64),
        "unbounded": lambda: rng.normal(0.0, 3.0, shape),  # torch does not range-check this target
    }[kind]()
    options: dict[str, Any] = {"target": kind}
    arrays = {"input": x, "target": target}
    for name in ("weight", "pos_weight") if logits else ("weight",):
        options[name] = None
        if data.draw(st.booleans(), label=name):
            extra_shape = _broadcast_shape(data, shape, name)
            options[name] = "elementwise" if extra_shape == shape else "broadcast"
            # a negative pos_weight turns the sign of a term with the target: terms of both signs
            arrays[name] = _weights(
                data, rng, extra_shape, WEIGHT_FORMS if name == "weight" else WEIGHT_FORMS[:2]
            )
    return options, {}, arrays


def draw_case(data: st.DataObject, loss: str, device: str, dtypes: Sequence[str]) -> CaseData:
    """One case of `loss` on `device`: inputs torch accepts, rounded to the drawn dtype."""
    dtype = data.draw(st.sampled_from(list(dtypes)), label="dtype")
    keywords: dict[str, Any] = {}
    reduction = _option(data, keywords, "reduction", st.sampled_from(("none", "mean", "sum")), "mean")
    draw = _class_case if "ignore_index" in SPECS[loss].options else _binary_case
    options, more_keywords, arrays = draw(data, loss, dtype, reduction)
    options["reduction"] = reduction
    keywords.update(more_keywords)
    case = Case(loss, tuple(sorted(options.items())), arrays["input"].shape, REGIME, dtype, device)
    rng = np.random.default_rng(zlib.crc32(arrays["input"].tobytes()))
    out_shape = output_shape(case, arrays)
    arrays["grad_output"] = cotangent(rng, out_shape)
    arrays["grad_grad_input"] = cotangent(rng, arrays["input"].shape)  # last, as in cases.build
    arrays = {
        k: np.asarray(v) if np.asarray(v).dtype.kind in "iu" else round_to(v, dtype)
        for k, v in arrays.items()
    }
    # The seed names the inputs: equal ids mean equal cases.
    seed = zlib.crc32(repr(sorted(keywords.items())).encode())
    for name in sorted(arrays):
        seed = zlib.crc32(
            np.ascontiguousarray(arrays[name]).tobytes() + str(arrays[name].shape).encode(), seed
        )
    return CaseData(dataclasses.replace(case, seed=seed), arrays, keywords)


class Mismatch(AssertionError):
    """A case whose comparison fails (no registered deviation explains it)."""

    def __init__(self, result: CaseResult) -> None:
        super().__init__(f"{result.case.id}: {', '.join(s.stage for s in result.failures)}")
        self.result = result


# One exception class per failing stage: Hypothesis keeps a shrink only if it fails the same way.
_MISMATCHES = {stage: type(f"{stage.title().replace('_', '')}Mismatch", (Mismatch,), {}) for stage in STAGES}


@dataclass
class Findings:
    failure: CaseResult | None = None  # the shrunk failing case, if any
    deviations: dict[str, CaseResult] = field(default_factory=dict)  # deviation id -> first case it explained
    examples: int = 0  # cases checked, shrinking included


def search(
    loss: str,
    device: str,
    dtypes: Sequence[str],
    candidate: Any,
    settings: hypothesis.settings,
    seconds: float | None = None,
    seed: int | None = None,
    watch: Callable[[CaseData], Any] | None = None,
) -> Findings:
    """Check `candidate` on cases drawn from the loss's whole space until `settings.max_examples` cases (or
    `seconds`) are done or one fails; a failure is shrunk to a minimal case. Registered deviations and what the
    candidate does not implement do not fail a case. `seed` fixes Hypothesis's random stream (as --hypothesis-seed
    does). `watch(case data)`: a context manager around each case (the run's journal)."""
    found = Findings()
    stop_at = time.monotonic() + seconds if seconds else None

    @hypothesis.settings(settings)
    @given(st.data())
    def holds(data: st.DataObject) -> None:
        if stop_at is not None and time.monotonic() > stop_at and found.failure is None:
            reject()  # the time budget is spent: Hypothesis stops generating (shrinking goes on)
        case_data = draw_case(data, loss, device, dtypes)
        with watch(case_data) if watch else contextlib.nullcontext():
            result = check(case_data, candidate)
        found.examples += 1
        if result.failures:
            found.failure = result
            raise _MISMATCHES[result.failures[0].stage](result)
        # a passing case only: a failing one is shrunk, and recorded as the failure
        for stage in result.stages:
            if stage.status == "deviation":
                found.deviations.setdefault(stage.deviation.id, result)

    if seed is not None:
        holds = hypothesis.seed(seed)(holds)
    try:
        holds()
    except Mismatch as exc:
        found.failure = exc.result
    return found
