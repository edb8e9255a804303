"""Argument checks shared by the losses.

Each check raises the exception class torch raises on CPU for the same fault (torch 2.13), with a message that
starts with the name of the offending argument. The order of the checks follows torch's, so that an input with
several faults fails on the same one.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from numpy.typing import ArrayLike

REDUCTIONS = ("none", "mean", "sum")
# class-index dtypes torch accepts (uint8 only for inputs of rank <= 2, or empty ones)
_INDEX_DTYPES = (np.dtype(np.int64), np.dtype(np.uint8))


def check_reduction(reduction: str) -> str:
    """The reduction, or ValueError. torch still accepts 'elementwise_mean' (= 'mean') with a warning."""
    if reduction == "elementwise_mean":
        warnings.warn(
            "reduction: 'elementwise_mean' is deprecated, use 'mean' (torch accepts it with this warning)",
            UserWarning,
            stacklevel=3,
        )
        return "mean"
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction: {reduction!r} is not a valid value for reduction; expected 'none', 'mean' or 'sum'"
        )
    return reduction


def floating(name: str, value: ArrayLike) -> np.ndarray:
    """``value`` as an array of a floating dtype, or NotImplementedError (torch has no integer kernel)."""
    a = np.asarray(value)
    if a.dtype.kind != "f":
        raise NotImplementedError(f"{name}: dtype {a.dtype} is not supported; expected a floating dtype")
    return a


def check_same_shape(input: np.ndarray, target: np.ndarray) -> None:
    """BCE and BCEWithLogits: no broadcasting between input and target (ValueError)."""
    if target.shape != input.shape:
        raise ValueError(
            f"target: shape {target.shape} differs from the input's shape {input.shape}; they must be equal"
        )


def check_broadcast(name: str, value: np.ndarray, shape: tuple[int, ...]) -> None:
    """``value`` must broadcast to ``shape`` without enlarging it (torch: RuntimeError)."""
    try:
        out = np.broadcast_shapes(shape, value.shape)
    except ValueError:
        raise RuntimeError(
            f"{name}: shape {value.shape} does not broadcast against the input's {shape}"
        ) from None
    if out != shape:
        raise RuntimeError(
            f"{name}: shape {value.shape} would enlarge the loss from {shape} to {out}; it must not"
        )


def check_unit_interval(name: str, value: np.ndarray) -> None:
    """BCE: every element in [0, 1] (NaN fails), else RuntimeError."""
    if not np.all((value >= 0) & (value <= 1)):
        raise RuntimeError(f"{name}: all elements should be between 0 and 1 (found values outside, or NaN)")


def check_ignore_index(ignore_index: int) -> int:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index: must be int, not {type(ignore_index).__name__}")
    return int(ignore_index)


def check_label_smoothing(label_smoothing: float) -> float:
    """> 1 is rejected (RuntimeError); torch only checks when > 0, so negative and NaN mean 'no smoothing'."""
    eps = float(label_smoothing)
    if eps > 1.0:
        raise RuntimeError(f"label_smoothing: must be between 0.0 and 1.0, got {eps}")
    return eps if eps > 0.0 else 0.0


def class_targets(
    input: np.ndarray,
    target: ArrayLike,
    weight: ArrayLike | None,
    ignore_index: int,
    *,
    reduction: str,
    weight_1d: bool = False,
    backward: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Check class-index targets the way torch's ``nll_loss_nd`` does.

    Returns ``(target, keep, weight)``: target as int64 of the loss's per-element shape (a (1,) target of a
    1-D input becomes 0-d, as torch does), ``keep = target != ignore_index``, weight as float64 (C,) or None.
    ``weight_1d`` demands a 1-D weight at every rank (cross_entropy with label smoothing). ``backward``:
    torch's backward kernels reject some targets their forward accepts.
    """
    if input.ndim < 1:
        raise ValueError("input: expected 1 or more dimensions (got 0)")
    t = np.asarray(target)
    if input.ndim == 1:
        if t.ndim > 1:
            raise RuntimeError(f"target: 0-D or 1-D target expected for a 1-D input, got shape {t.shape}")
        if t.ndim == 1:
            if t.shape[0] != 1:
                raise ValueError(f"target: for a 1-D input, a 1-D target must have size 1, got {t.shape}")
            if backward:
                raise RuntimeError(
                    "target: torch's backward rejects a (1,) target for a 1-D input; use a 0-d one"
                )
            t = t.reshape(())
    else:
        if t.ndim == 0:
            if input.shape[0] == 0:
                raise IndexError("target: 0-d target has no batch dimension for an input of batch size 0")
            raise ValueError(f"target: batch size (0-d target) does not match the input's {input.shape[0]}")
        if t.shape[0] != input.shape[0]:
            raise ValueError(f"target: batch size {t.shape[0]} does not match the input's {input.shape[0]}")
        if input.ndim == 2 and t.ndim != 1:
            raise RuntimeError(
                f"target: 1-D target expected for a 2-D input (no multi-target), got {t.shape}"
            )
        if input.ndim == 4 and t.ndim != 3:
            raise RuntimeError(f"target: 3-D target expected for a 4-D input, got {t.ndim}-D")
        if input.ndim >= 3 and t.shape[1:] != input.shape[2:]:
            expected = (input.shape[0], *input.shape[2:])
            raise RuntimeError(f"target: expected shape {expected}, got {t.shape}")
    n_classes = input.shape[0 if input.ndim == 1 else 1]
    w = None
    if weight is not None:
        w = np.asarray(weight)
        # the 1-D/2-D kernel wants a 1-D weight; the kernel for rank >= 3 only counts its elements
        if ((input.ndim <= 2 or weight_1d) and w.ndim != 1) or w.size != n_classes:
            raise RuntimeError(f"weight: expected a 1-D tensor of {n_classes} elements, got shape {w.shape}")
    if t.dtype not in _INDEX_DTYPES:
        raise RuntimeError(f"target: class indices must be int64 or uint8, got {t.dtype}")
    reduced_empty = input.size == 0 and reduction != "none" and not backward
    if t.dtype == np.uint8 and input.ndim >= 3 and not reduced_empty:
        # the kernels for rank >= 3 (nll_loss2d) read int64 only; only the reducing forward of an empty input
        # returns before reading the target
        raise RuntimeError(f"target: class indices must be int64 for a {input.ndim}-D input, got uint8")
    if w is not None and w.dtype != input.dtype:
        raise RuntimeError(f"weight: dtype {w.dtype} differs from the input's {input.dtype}; they must match")
    t = t.astype(np.int64)
    keep = t != ignore_index
    bad = keep & ((t < 0) | (t >= n_classes))
    if bad.any():
        raise IndexError(
            f"target: class index {t[bad].flat[0]} is out of bounds for {n_classes} classes "
            f"(ignore_index={ignore_index})"
        )
    return t, keep, (None if w is None else w.reshape(-1).astype(np.float64))


def grad_output_array(grad_output: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    """grad_output as float64 of exactly the loss's shape (torch.autograd: RuntimeError on a mismatch)."""
    g = np.asarray(grad_output, dtype=np.float64)
    if g.shape != shape:
        raise RuntimeError(f"grad_output: shape {g.shape} does not match the loss's shape {shape}")
    return g


def grad_grad_input_array(grad_grad_input: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    """A double backward's grad_grad_input as float64 of exactly the input's shape (else RuntimeError).

    Checked after every check of the backward, grad_output's included: torch meets it at the second
    ``autograd.grad``, after the first has run.
    """
    v = np.asarray(grad_grad_input, dtype=np.float64)
    if v.shape != shape:
        raise RuntimeError(f"grad_grad_input: shape {v.shape} does not match the input's shape {shape}")
    return v
