"""Peak memory of one call: the most bytes held at once, above what was held before the call.

Each side is measured at its allocator, the only place that sees every array, however short-lived:

* the reference: tracemalloc, to which NumPy reports every array buffer it allocates and frees;
* torch: the profiler's memory events (``profile_memory=True``): every allocation and free of torch's CPU
  allocator, in order, summed into a running total.

Both count what the call returns (the gradient is part of the cost) and not the inputs it is given. Neither
counts interpreter overhead or allocator slack; an RSS delta would, but on this machine freed blocks stay in
malloc's heap and are reused, so consecutive calls would read 0 for arrays of tens of MB.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

from torch.profiler import ProfilerActivity, profile


def peak_traced(fn: Callable[[], object]) -> int:
    """Peak bytes of NumPy (and other tracemalloc-visible) allocations during ``fn()``, above the start."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
        del result
    finally:
        tracemalloc.stop()
    return max(0, peak - before)


def peak_torch(fn: Callable[[], object]) -> int:
    """Peak bytes held by torch's CPU allocator during ``fn()``, above the start (profiler memory events)."""
    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
        del result
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    held = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        held += event.nbytes()
        peak = max(peak, held)
    return peak
