"""A torch candidate: cross_entropy as a fused kernel computes it, written in plain torch.

The logits are read one chunk of classes at a time (CHUNK), as a Triton or CUDA kernel reads tiles: per row a
running maximum m and a running sum s of exp(x - m), rescaled whenever m grows (the online softmax of Milakov and
Gimelshein, which fused cross-entropy kernels use), so that no softmax-sized buffer is ever held. The loss is
w_y ((m - x_y) + log s); the gradient, written chunk by chunk, is a (p - onehot) + b (p W - w) with
p = exp((x - m) - log s).
Accumulators are float32 (float64 for float64 inputs); the gradient is stored in the input's dtype, so a bfloat16
case runs in bfloat16 as it would on a GPU.

Class-index targets with class weights, ignore_index, label smoothing, every reduction, unbatched and K-dim inputs.
Probability targets are declined (NotImplementedError): the suite counts them as not implemented. Only
cross_entropy is defined: the other losses are not implemented either.
"""

from __future__ import annotations

import torch

LOSS_PARITY_KIND = "torch"
CHUNK = 128  # classes per chunk; small enough that the suite's 423- and 1000-class cases span several chunks


def _rows(input: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows of logits (R, C) with the classes last, targets (R,))."""
    if input.dim() == 1:
        return input.unsqueeze(0), target.reshape(1)
    return input.movedim(1, -1).flatten(0, -2), target.reshape(-1)  # flatten: reshape(-1, 0) is ambiguous


def _accumulator(input: torch.Tensor) -> torch.dtype:
    return torch.float64 if input.dtype == torch.float64 else torch.float32


def _check(input: torch.Tensor, target: torch.Tensor, label_smoothing: float) -> None:
    if target.shape == input.shape and target.is_floating_point():
        raise NotImplementedError("probability targets are not supported by this kernel")
    if label_smoothing > 1:
        raise RuntimeError(f"label_smoothing: must be between 0.0 and 1.0, got {label_smoothing}")


def _pass(x: torch.Tensor, weight: torch.Tensor | None, acc: torch.dtype):
    """One read of the logits: per row m (the maximum), log s (s = sum_c exp(x_c - m)) and d = sum_c w_c (m - x_c)
    (the label-smoothing sum without the log-sum), each accumulated online as the chunks go by."""
    rows, classes = x.shape
    m = torch.full((rows,), -torch.inf, dtype=acc, device=x.device)
    s = torch.zeros(rows, dtype=acc, device=x.device)
    d = torch.zeros(rows, dtype=acc, device=x.device)
    seen = torch.zeros((), dtype=acc, device=x.device)  # sum of the weights of the classes read so far
    for start in range(0, classes, CHUNK):
        chunk = x[:, start : start + CHUNK].to(acc)
        w = (
            torch.ones(chunk.shape[1], dtype=acc, device=x.device)
            if weight is None
            else weight[start : start + CHUNK].to(acc)
        )
        grown = torch.maximum(m, chunk.amax(dim=1))
        first = torch.isinf(m) & (m < 0)  # nothing read yet (or only -inf): nothing to rescale
        shift = torch.where(first, torch.zeros_like(m), m - grown)  # <= 0
        s = s * torch.exp(shift) + torch.exp(chunk - grown.unsqueeze(1)).sum(dim=1)
        # every term m - x_c >= 0: a sum of one sign, not the difference W (m + log s) - sum_c w_c x_c
        d = d - seen * shift + ((grown.unsqueeze(1) - chunk) * w).sum(dim=1)
        seen = seen + w.sum()
        m = grown
    return m, torch.log(s), d


def _coefficients(target, weight, ignore_index, reduction, label_smoothing, classes, acc, device):
    """(kept, w_y, 1 / the 'mean' denominator or 1)."""
    kept = target != ignore_index
    safe = torch.where(kept, target, torch.zeros_like(target))
    # no class: every target is ignored (torch rejects any other), and w_y is not used
    if weight is None or classes == 0:
        w_y = torch.ones(target.shape, dtype=acc, device=device)
    else:
        w_y = weight.to(acc)[safe]
    w_y = torch.where(kept, w_y, torch.zeros_like(w_y))
    # 'mean' over nothing: 1 / 0 = inf, and the loss 0 * inf = NaN as torch has it; the gradient stays 0 (below)
    scale = 1.0 / w_y.sum() if reduction == "mean" else torch.ones((), dtype=acc, device=device)
    return kept, safe, w_y, scale


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    _check(input, target, label_smoothing)
    eps = max(float(label_smoothing), 0.0)
    acc = _accumulator(input)
    x, t = _rows(input, target)
    classes = x.shape[1]
    m, log_s, d = _pass(x, weight, acc)
    kept, safe, w_y, scale = _coefficients(t, weight, ignore_index, reduction, eps, classes, acc, x.device)
    x_y = x.gather(1, safe.unsqueeze(1)).squeeze(1).to(acc) if classes else torch.zeros_like(m)
    # -log p_y = (m - x_y) + log s: two terms >= 0 (not (m + log s) - x_y, which rounds log s away beside m)
    nll = torch.where(kept, w_y * ((m - x_y) + log_s), torch.zeros_like(m))

    def reduce(rows: torch.Tensor) -> torch.Tensor:
        if reduction == "none":
            return rows.reshape(target.shape)
        return rows.sum() * scale if reduction == "mean" else rows.sum()

    if eps == 0:
        return reduce(nll)
    w_sum = classes if weight is None else weight.to(acc).sum()
    smooth = torch.where(kept, w_sum * log_s + d, torch.zeros_like(m))
    # each term reduced on its own, as torch does: over a kept weight of 0 the nll term's 'mean' is 0/0 = NaN, and
    # so is the loss (one 'mean' of the sum would be inf)
    # no class: eps / C = inf times a smoothing sum over no class (0) is NaN, in every row and reduction, as in torch
    return (1 - eps) * reduce(nll) + torch.tensor(eps, dtype=acc) / classes * reduce(smooth)


def _only_kept(kept: torch.Tensor, coefficient: torch.Tensor) -> torch.Tensor:
    """A row's coefficient, 0 where its target is ignored: where(), not a product with the mask, since an ignored
    row's 0 times a 'mean' over nothing's inf would be NaN."""
    return torch.where(kept, coefficient, torch.zeros_like(coefficient))


def _probabilities(chunk: torch.Tensor, m: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
    """p = exp((x - m) - log s), not exp(x - (m + log s)): m + log s rounds to eps |m|, a relative error of eps |m|
    in every p for large logits."""
    return torch.exp((chunk - m.unsqueeze(1)) - log_s.unsqueeze(1))


def cross_entropy_backward(
    grad_output, input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
):
    _check(input, target, label_smoothing)
    eps = max(float(label_smoothing), 0.0)
    acc = _accumulator(input)
    x, t = _rows(input, target)
    classes = x.shape[1]
    m, log_s, _ = _pass(x, weight, acc)
    kept, safe, w_y, scale = _coefficients(t, weight, ignore_index, reduction, eps, classes, acc, x.device)
    g = grad_output.to(acc).reshape(-1) if reduction == "none" else grad_output.to(acc) * scale
    a = _only_kept(kept, (1 - eps) * w_y * g)  # the nll term's coefficient per row
    b = _only_kept(kept, eps / max(classes, 1) * g)  # the smoothing term's
    w = torch.ones(classes, dtype=acc, device=x.device) if weight is None else weight.to(acc)
    w_sum = w.sum()
    grad = torch.empty(x.shape, dtype=input.dtype, device=x.device)
    for start in range(0, classes, CHUNK):
        chunk = x[:, start : start + CHUNK].to(acc)
        p = _probabilities(chunk, m, log_s)
        onehot = (safe.unsqueeze(1) == torch.arange(start, start + chunk.shape[1], device=x.device)).to(acc)
        part = a.unsqueeze(1) * (p - onehot) + b.unsqueeze(1) * (p * w_sum - w[start : start + CHUNK])
        grad[:, start : start + CHUNK] = part.to(input.dtype)
    if input.dim() == 1:
        return grad.reshape(input.shape), None
    moved = list(input.movedim(1, -1).shape)
    return grad.reshape(moved).movedim(-1, 1), None
