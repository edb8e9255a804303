"""How many threads the harness's own array work may use on large cases: every core this process may run on
(NumPy and torch release the GIL inside their kernels)."""

from __future__ import annotations

import os

THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
