"""Apply a loss's formula to cache-sized blocks of a large input, on every core.

Written over whole arrays, a loss on (4096, 32000) float32 logits makes a float64 copy of the input and
several temporaries of that size (GBs), and each NumPy pass streams them through RAM. The same formula applied
to blocks of ~64k elements converts the input to float64 one block at a time and keeps its temporaries in
cache. NumPy releases the GIL inside its kernels, so a few threads taking blocks in turn use every core.

A block is an index tuple into the input: a range along one axis, single positions along the axes before it,
everything along the axes after it and along ``whole_axis`` (the class axis, which a softmax needs entire).
Blocks never overlap, so threads may write their results into disjoint parts of one output array.
"""

from __future__ import annotations

import contextvars
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import product
from typing import TypeVar

import numpy as np

from ._reduce import reduce_loss

T = TypeVar("T")
Index = tuple[slice, ...]

# float64 elements per block (2 MiB): a block and its temporaries stay in L3, and the 25-70 us of Python per
# block is a few percent of its ~2 ms of work (on 2 AMD EPYC cores, 64k to 256k elements measured alike)
BLOCK_ELEMENTS = 1 << 18
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def blocks(shape: tuple[int, ...], whole_axis: int | None = None) -> list[Index]:
    """Index tuples of non-overlapping blocks of at most ~BLOCK_ELEMENTS that together cover ``shape``.

    A zero-length ``whole_axis`` does not empty the list (a loss over zero classes still has elements); any
    other zero-length axis does. A 0-d shape is one block, ``(...,)``, which indexes to a 0-d array.

    >>> blocks((4096, 32000), whole_axis=1)[:2]  # 8 rows of 32000 classes per block
    [(slice(0, 8, None),), (slice(8, 16, None),)]
    >>> blocks((3, 423, 32000), whole_axis=1)[0]  # a row is too big: ranges of the last axis, row by row
    (slice(0, 1, None), slice(None, None, None), slice(0, 619, None))
    """
    if not shape:
        return [(Ellipsis,)]
    sizes = [max(n, 1) if axis == whole_axis else n for axis, n in enumerate(shape)]
    if 0 in sizes:
        return []
    split = [a for a in range(len(shape)) if a != whole_axis]
    if not split:
        return [(slice(None),)]
    # split along the first axis k whose unit (everything after it, plus the whole axis) fits a block
    for k in split:
        unit = math.prod(sizes[k + 1 :]) * (
            sizes[whole_axis] if whole_axis is not None and whole_axis < k else 1
        )
        if unit <= BLOCK_ELEMENTS or k == split[-1]:
            break
    step = max(1, BLOCK_ELEMENTS // unit)
    outer = [range(shape[a]) if a in split and a < k else [None] for a in range(k)]
    out = []
    for position in product(*outer):
        head = tuple(slice(None) if i is None else slice(i, i + 1) for i in position)
        for start in range(0, shape[k], step):
            out.append((*head, slice(start, start + step)))
    return out


def without(index: Index, axis: int) -> Index:
    """The block's index into an array that lacks ``axis`` (the loss of a class-dim input)."""
    return index[:axis] + index[axis + 1 :]


def part(a: np.ndarray | None, shape: tuple[int, ...], index: Index) -> np.ndarray | None:
    """The block of ``a`` broadcast to ``shape`` (a view: a weight or a 0-d grad_output is not copied)."""
    return None if a is None else np.broadcast_to(a, shape)[index]


def map_blocks(fn: Callable[[Index], T], shape: tuple[int, ...], whole_axis: int | None = None) -> list[T]:
    """``[fn(index) for index in blocks(shape, whole_axis)]``, the blocks shared out over THREADS threads.

    Each thread runs in a copy of the caller's context, so ``np.errstate`` set by the caller holds there too.
    """
    index = blocks(shape, whole_axis)
    threads = min(THREADS, len(index))
    if threads <= 1:
        return [fn(i) for i in index]
    results: list = [None] * len(index)
    todo = iter(range(len(index)))
    lock = threading.Lock()

    def work() -> None:  # take the next block until none is left: a busy core simply takes fewer
        while True:
            with lock:
                k = next(todo, None)
            if k is None:
                return
            results[k] = fn(index[k])

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(contextvars.copy_context().run, work) for _ in range(threads)]
    for future in futures:
        future.result()  # re-raises a worker's exception here
    return results


# Elementwise losses (BCE, BCEWithLogits): blocks along the leading axes; weights broadcast into each block.


def map_reduce(fn: Callable[..., np.ndarray], reduction: str, x: np.ndarray, *args: np.ndarray | None):
    """``reduce_loss(fn(x, *args), reduction)`` for an elementwise ``fn``, computed block by block.

    'none' fills the loss block by block; 'mean' and 'sum' add up the blocks' sums, so that no input-sized
    loss is ever held. ``args`` broadcast to x's shape.
    """
    if reduction == "none":
        loss = np.empty(x.shape)

        def fill(i: Index) -> None:
            loss[i] = fn(x[i], *(part(a, x.shape, i) for a in args))

        map_blocks(fill, x.shape)
        return loss
    sums = map_blocks(lambda i: fn(x[i], *(part(a, x.shape, i) for a in args)).sum(), x.shape)
    return reduce_loss(np.array(sums, dtype=np.float64), reduction, x.size)


def map_backward(
    fn: Callable[..., tuple[np.ndarray, ...]],
    g: np.ndarray,
    x: np.ndarray,
    *args: np.ndarray | None,
    outputs: int = 2,
) -> tuple[np.ndarray, ...]:
    """``fn(g, x, *args) -> (grad_input, grad_target)`` for an elementwise ``fn``, block by block.

    ``outputs``: how many arrays of x's shape ``fn`` returns (a double backward's three: the terms of
    grad_grad_output, grad2_input, grad2_target).
    """
    results = tuple(np.empty(x.shape) for _ in range(outputs))

    def fill(i: Index) -> None:
        for out, value in zip(
            results, fn(part(g, x.shape, i), x[i], *(part(a, x.shape, i) for a in args)), strict=True
        ):
            out[i] = value

    map_blocks(fill, x.shape)
    return results
