"""torch's cross_entropy forward+backward on a GPU beside its memory-bandwidth floor.

    python -m benchmarks.device_throughput [--device cuda] [--reps 20]

The floor: a forward+backward must read the logits once and write their gradient once (2 x N x C elements of
the dtype), at the device's copy bandwidth, measured here as a device-to-device copy of a 4 GiB tensor (bytes
read plus bytes written, per second). Times are CUDA-event medians after warm-up. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

SHAPES = ((4096, 32000), (8192, 128256))
DTYPES = (torch.bfloat16, torch.float32)


def timed(fn, reps: int) -> float:
    """Median seconds of `fn` over `reps` runs, after three warm-ups."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def copy_bandwidth(device: str, reps: int) -> float:
    """Bytes read plus bytes written per second by a device-to-device copy of 4 GiB."""
    src = torch.empty(1 << 30, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    seconds = timed(lambda: dst.copy_(src), reps)
    return 2 * src.numel() * src.element_size() / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    bandwidth = copy_bandwidth(args.device, args.reps)
    print(
        f"{torch.cuda.get_device_name()}, torch {torch.__version__}: copy bandwidth {bandwidth / 1e12:.2f} TB/s"
    )
    print()
    print("| shape | dtype | forward+backward | bytes at the floor | floor time | of the floor |")
    print("|---|---|---|---|---|---|")
    for n, c in SHAPES:
        for dtype in DTYPES:
            x = torch.randn(n, c, device=args.device, dtype=dtype, requires_grad=True)
            t = torch.randint(0, c, (n,), device=args.device)

            def step(x=x, t=t) -> None:
                torch.autograd.grad(F.cross_entropy(x, t), x)

            seconds = timed(step, args.reps)
            floor_bytes = 2 * x.numel() * x.element_size()
            floor = floor_bytes / bandwidth
            print(
                f"| {n} x {c} | {str(dtype).removeprefix('torch.')} | {seconds * 1e3:.2f} ms | "
                f"{floor_bytes / 1e9:.2f} GB | {floor * 1e3:.2f} ms | {floor / seconds:.0%} |"
            )
            del x, t
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
