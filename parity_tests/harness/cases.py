"""The case grid and input generation.

A case is (loss, options, shape, regime, dtype, device, seed). Its inputs are drawn once in float64 from a seed
derived from the case, then rounded to the case's dtype: torch and the implementation get the same values.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parity_tests.harness.dtypes import NUMPY_DTYPES, round_to
from parity_tests.harness.specs import GPU_DTYPES, SPECS, LossSpec, Shape, resolve_ignore_index

# Options that are handed to the loss as they are (the rest describe how inputs are drawn).
_KEYWORDS = ("ignore_index", "reduction", "label_smoothing")
PROFILES = ("quick", "full", "gpu")


@dataclass(frozen=True)
class Case:
    loss: str
    options: tuple[tuple[str, Any], ...]  # sorted (name, value) pairs of the spec's option axes
    shape: Shape
    regime: str
    dtype: str
    device: str
    seed: int = 0

    @property
    def spec(self) -> LossSpec:
        return SPECS[self.loss]

    @property
    def opts(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def id(self) -> str:
        return f"{self.base_id}-s{self.seed}"

    @property
    def base_id(self) -> str:
        """The id without the seed, e.g. `cross_entropy-index-w-ii-100-ls0.1-mean-8x5x3-float16-cpu`."""
        return self._id(with_shape=True)

    def _id(self, with_shape: bool) -> str:
        o = self.opts
        tokens = [self.loss, o["target"]]
        if o.get("weight"):
            tokens.append("w" if o["weight"] == "class" else f"w.{o['weight']}")
        if o.get("pos_weight"):
            tokens.append(f"pw.{o['pos_weight']}")
        if "ignore_index" in o and (o["target"] == "index" or o["ignore_index"] != -100):
            tokens.append(f"ii{o['ignore_index']}")
        if o.get("label_smoothing"):
            tokens.append(f"ls{o['label_smoothing']}")
        tokens.append(o["reduction"])
        if with_shape:
            tokens.append("x".join(map(str, self.shape)) or "scalar")
        if self.regime != self.spec.regimes[0]:
            tokens.append(self.regime)
        return "-".join([*tokens, self.dtype, self.device])

    def rng(self) -> np.random.Generator:
        # Seeded by the case itself, never by global state: any case can be rebuilt alone.
        return np.random.default_rng([self.seed, zlib.crc32(self.base_id.encode())])

    def to_json(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "options": self.opts,
            "shape": list(self.shape),
            "regime": self.regime,
            "dtype": self.dtype,
            "device": self.device,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Case:
        return cls(
            loss=data["loss"],
            options=tuple(sorted(data["options"].items())),
            shape=tuple(data["shape"]),
            regime=data["regime"],
            dtype=data["dtype"],
            device=data["device"],
            seed=data["seed"],
        )


@dataclass
class CaseData:
    """The inputs of one case: float64 arrays holding values exactly representable in the case's dtype."""

    case: Case
    arrays: dict[str, np.ndarray]  # input, target, [weight], [pos_weight], grad_output, grad_grad_input
    keywords: dict[str, Any] = field(default_factory=dict)

    def impl_arrays(self) -> dict[str, np.ndarray]:
        """Fresh copies of the arrays as a NumPy implementation receives them: the case's dtype (float32 for
        bfloat16). Fresh on every call, so that nothing an implementation does to them changes the case."""
        np_dtype = NUMPY_DTYPES[self.case.dtype]
        return {k: v.copy() if v.dtype.kind in "iu" else v.astype(np_dtype) for k, v in self.arrays.items()}


def output_shape(case: Case, arrays: Mapping[str, np.ndarray]) -> Shape:
    """The shape of the loss (and of grad_output): the input's without its class dimension, or () reduced."""
    shape = arrays["input"].shape
    if case.opts["reduction"] != "none":
        return ()
    if case.opts["target"] in ("index", "prob"):
        return shape[:1] + shape[2:] if len(shape) > 1 else ()
    return shape


def cotangent(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """A random grad_output or grad_grad_input: magnitudes in [0.5, 2] (never only ones: ones hide reduction bugs),
    random signs."""
    return rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def build(case: Case) -> CaseData:
    rng = case.rng()
    drawn = case.spec.sample(rng, case.shape, case.opts, case.regime)
    out_shape = output_shape(case, drawn)
    drawn["grad_output"] = cotangent(rng, out_shape)
    # The double backward's grad_grad_input (the input's shape), alike; drawn last, so that every other input of a
    # case is what it was before the second-order stages (the deviations' evidence cases rest on them).
    drawn["grad_grad_input"] = cotangent(rng, drawn["input"].shape)
    arrays = {k: v if v.dtype.kind in "iu" else round_to(v, case.dtype) for k, v in drawn.items()}
    keywords = {k: v for k, v in case.opts.items() if k in _KEYWORDS}
    if "ignore_index" in keywords:
        keywords["ignore_index"] = resolve_ignore_index(keywords["ignore_index"], case.shape)
    return CaseData(case, arrays, keywords)


def grid_items(cases: Iterable[Case], over_shapes: bool = True) -> dict[str, tuple[Case, ...]]:
    """The grid as test items: the cases of the same loss, options, regime, dtype, device and seed, over their
    shapes, make one item (as torch's OpInfo tests run one op and dtype over its sample inputs). pytest's own
    cost per item is most of a small case's, so a fifth of the items is a quicker gate; failures, records and
    replays stay per case. An item's id is the cases' id without the shape, unless it holds one shape only.
    ``over_shapes=False``: one case per item (the gpu profile's cases take up to minutes and are sized alone)."""
    items: dict[tuple, list[Case]] = {}
    for case in cases:
        key = (case.loss, case.options, case.regime, case.dtype, case.device, case.seed)
        if not over_shapes:
            key += (case.shape,)
        items.setdefault(key, []).append(case)
    named = {}
    for group in items.values():
        first = group[0]
        named[first.id if len(group) == 1 else f"{first._id(with_shape=False)}-s{first.seed}"] = tuple(group)
    return named


def _option_grid(spec: LossSpec) -> Iterator[dict[str, Any]]:
    names = list(spec.options)
    for values in itertools.product(*(spec.options[n] for n in names)):
        yield dict(zip(names, values, strict=True))


def grid(
    profile: str, devices: list[str], dtypes: list[str] | None = None, losses: list[str] | None = None
) -> Iterator[Case]:
    """Every case of a profile. quick: every option combination on the quick shapes in the ordinary regime, and on
    a few of them in the other regimes (there with the spec's `regime_options` only). full: every combination, shape
    and regime, two seeds. gpu: the device-scale shapes with their few option combinations, float32 and bfloat16 (a
    case that does not fit in the free memory of its device or of this host is skipped with the reason, see
    `devices.unfit`)."""
    if profile not in PROFILES:
        raise ValueError(f"profile: {profile!r} is not one of {PROFILES}")
    for spec in SPECS.values():
        if losses is not None and spec.name not in losses:
            continue
        for device in devices:
            for dtype in spec.dtypes.get(device, ()):
                if dtypes and dtype not in dtypes:
                    continue
                for options, regime, shape, seed in _profile_cases(spec, profile, dtype):
                    if spec.valid(options, shape, regime):
                        yield Case(
                            spec.name, tuple(sorted(options.items())), shape, regime, dtype, device, seed
                        )


def _profile_cases(
    spec: LossSpec, profile: str, dtype: str
) -> Iterator[tuple[Mapping[str, Any], str, Shape, int]]:
    if profile == "gpu":
        if dtype in GPU_DTYPES:
            for shape, options in spec.gpu_cases:
                yield options, spec.regimes[0], shape, 0
        return
    for options in _option_grid(spec):
        for regime in spec.regimes:
            if profile == "full":
                shapes, seeds = spec.shapes + spec.extra_shapes, (0, 1)
            else:
                ordinary = regime == spec.regimes[0]
                if not ordinary and any(options[k] not in v for k, v in spec.regime_options.items()):
                    continue
                shapes = spec.shapes if ordinary else spec.regime_shapes
                seeds = (0,)
            for shape in shapes:
                for seed in seeds:
                    yield options, regime, shape, seed
