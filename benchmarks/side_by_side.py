"""torch and the reference side by side in one process: cross_entropy forward+backward, alternating runs.

    .venv/bin/python -m benchmarks.side_by_side [--n 4096] [--c 32000] [--reps 5]

Each repeat times torch (float32) then the reference (float64 math on the same float32 logits) on the same
cores, the reference both ways: its two calls (``cross_entropy`` then ``cross_entropy_backward``, two passes of
exp) and its one call (``cross_entropy_forward_backward``, one). The minimum over repeats of each is the least
disturbed run, and its ratio to torch's is the figure to quote, with the load average printed beside it (a
shared machine inflates every side, unevenly).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

import reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--c", type=int, default=32000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, args.c), dtype=np.float32)
    t = rng.integers(0, args.c, args.n)
    x_torch, t_torch = torch.from_numpy(x).requires_grad_(), torch.from_numpy(t)

    def run_torch() -> object:
        loss = torch.nn.functional.cross_entropy(x_torch, t_torch)
        return torch.autograd.grad(loss, x_torch)[0]

    def run_two_calls() -> object:
        reference.cross_entropy(x, t)
        return reference.cross_entropy_backward(1.0, x, t)[0]

    def run_one_call() -> object:
        return reference.cross_entropy_forward_backward(1.0, x, t)[1]

    runs = {"torch": run_torch, "reference, two calls": run_two_calls, "reference, one call": run_one_call}
    times: dict[str, list[float]] = {name: [] for name in runs}
    load = os.getloadavg()
    for _ in range(args.reps):
        for name, fn in runs.items():
            start = time.perf_counter()
            result = fn()
            times[name].append(time.perf_counter() - start)
            del result
    best = {name: min(v) for name, v in times.items()}
    print(f"cross_entropy fwd+bwd {args.n} x {args.c}, {args.reps} alternating repeats, min (all) in s:")
    for name, values in times.items():
        ratio = "" if name == "torch" else f"  ratio to torch {best[name] / best['torch']:.2f}"
        print(f"  {name:20s} {best[name]:.3f}{ratio}  ({', '.join(f'{v:.2f}' for v in values)})")
    print(f"  load average before {load}, after {os.getloadavg()}; torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
