"""The dtypes a case can run in: torch's dtype, what the implementation receives, and the dtype's epsilon."""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

TORCH_DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}

# NumPy has no bfloat16: the implementation gets float32 arrays holding the bfloat16-rounded values.
NUMPY_DTYPES: dict[str, type[np.floating]] = {
    "float64": np.float64,
    "float32": np.float32,
    "float16": np.float16,
    "bfloat16": np.float32,
}


@cache
def eps(dtype: str) -> float:
    """Machine epsilon of the dtype (the spacing of floats just above 1)."""
    return float(torch.finfo(TORCH_DTYPES[dtype]).eps)


@cache
def max_finite(dtype: str) -> float:
    return float(torch.finfo(TORCH_DTYPES[dtype]).max)


@cache
def smallest_subnormal(dtype: str) -> float:
    info = torch.finfo(TORCH_DTYPES[dtype])
    return float(info.tiny * info.eps)


def round_to(values: np.ndarray, dtype: str) -> np.ndarray:
    """The float64 values rounded (to nearest) to `dtype`, returned as float64. NumPy rounds to float32 and float16
    as torch does; bfloat16, which NumPy lacks, goes through torch."""
    values = np.asarray(values, dtype=np.float64)
    if dtype == "bfloat16":
        return torch.from_numpy(values).to(torch.bfloat16).double().numpy()
    with np.errstate(over="ignore"):  # beyond the dtype's range is +-inf, as in torch
        return values.astype(NUMPY_DTYPES[dtype]).astype(np.float64)


def ulp(values: np.ndarray, dtype: str) -> np.ndarray:
    """The spacing of `dtype` at each value (the subnormal spacing near zero)."""
    info = torch.finfo(TORCH_DTYPES[dtype])
    mag = np.abs(np.asarray(values, dtype=np.float64))
    exponent = np.floor(np.log2(np.maximum(mag, info.tiny)))
    return np.exp2(exponent) * info.eps
