"""The output layer and the cross-entropy loss in one pass: ``linear_cross_entropy``.

Training a decoder with a vocabulary of V words over N target tokens normally materialises the
N x V logits, a float copy of them, their log-softmax, and in the backward pass the N x V gradient
of each; with label smoothing the plain loss for the log is a second pass over the logits. Here the
logits live one chunk of rows at a time: for each chunk the forward pass computes the loss, the
unsmoothed negative log-likelihood, and the gradient of the loss with respect to the logits
(``softmax - target distribution``), and turns it straight into the gradients of the input, the
weight and the bias. Backward then only scales them. Same mathematics as
``F.cross_entropy(F.linear(x, w, b).float(), target, label_smoothing=eps, reduction="sum")``
(the tests compare both), in a fraction of the memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK_ROWS = 2048
ROW_MULTIPLE = 64  # each chunk's rows are padded to a multiple of this (see _pad_rows)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    dev = x.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype


def _fused(x, w, b, target, smoothing: float, dtype: torch.dtype, with_grad: bool):
    """The chunked pass: (loss_sum, nll_sum, (gx, gw, gb) or None). Matmuls in ``dtype``; softmax and
    sums in fp32 (fp64 for fp64 input)."""
    acc = torch.promote_types(x.dtype, torch.float32)
    n_rows, V = x.size(0), w.size(0)
    xc, wc = x.to(dtype), w.to(dtype)
    bc = b.to(dtype) if b is not None else None
    loss_sum = x.new_zeros((), dtype=acc)
    nll_sum = x.new_zeros((), dtype=acc)
    gx = torch.empty_like(xc) if with_grad else None
    gw = gb = None  # the first chunk's gradients, then sums (one chunk is the common case)
    for lo in range(0, n_rows, CHUNK_ROWS):
        real = min(CHUNK_ROWS, n_rows - lo)  # rows of this chunk; the padding follows them
        xs, ts = _pad_rows(xc[lo : lo + real]), _pad_rows(target[lo : lo + real])
        # V x n: the vocabulary down, this chunk's tokens across (the layout in which oneDNN's three
        # matmuls below run fastest: about half the time of the n x V layout for this model's shapes)
        logits = (torch.addmm(bc[:, None], wc, xs.t()) if bc is not None else wc.mm(xs.t())).to(acc)
        # log-sum-exp by hand (torch.logsumexp is several passes slower), keeping exp(logits - max)
        top = logits.amax(0, keepdim=True)
        picked = logits.gather(0, ts[None, :]).squeeze(0)
        mean = logits.mean(0) if smoothing else None
        e = logits.sub_(top).exp_()
        total = e.sum(0)
        lse = top.squeeze(0) + total.log()
        nll = lse - picked
        loss = nll if not smoothing else (1 - smoothing) * nll + smoothing * (lse - mean)
        loss_sum += loss[:real].sum()
        nll_sum += nll[:real].sum()
        if not with_grad:
            continue
        # d loss / d logits = softmax - ((1 - eps) * onehot + eps / V), computed in place
        g = e.mul_(total.reciprocal_()[None, :])
        if smoothing:
            g.sub_(smoothing / V)
        g.scatter_add_(0, ts[None, :], g.new_full((1, ts.size(0)), -(1 - smoothing)))
        g[:, real:] = 0
        gc = g.to(dtype)  # V x n
        gx[lo : lo + real] = gc.t().mm(wc)[:real]
        gw_c, gb_c = gc.mm(xs).to(acc), (g.sum(1) if b is not None else None)
        if gw is None:
            gw, gb = gw_c, gb_c
        else:
            gw.add_(gw_c)
            if gb is not None:
                gb.add_(gb_c)
    if with_grad and gw is None:  # no rows
        gw = torch.zeros(w.shape, dtype=acc, device=w.device)
        gb = torch.zeros(V, dtype=acc, device=w.device) if b is not None else None
    return loss_sum, nll_sum, ((gx, gw, gb) if with_grad else None)


def _pad_rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` with zero rows appended up to a multiple of ``ROW_MULTIPLE``.

    oneDNN (PyTorch's CPU matmul for bf16) builds and caches a kernel for each matrix shape, which
    for these three large matmuls costs as much as running them; the number of target tokens in a
    batch changes from batch to batch, so without padding nearly every batch pays for new kernels
    (and the cache of them grows). Padded rows are left out of the loss and the gradients."""
    pad = -t.size(0) % ROW_MULTIPLE
    return F.pad(t, (0, 0) * (t.dim() - 1) + (0, pad)) if pad else t


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, target, smoothing, dtype):
        loss_sum, nll_sum, (gx, gw, gb) = _fused(x, w, b, target, smoothing, dtype, with_grad=True)
        ctx.save_for_backward(gx, gw, gb if gb is not None else gw.new_empty(0))
        ctx.has_bias = b is not None
        ctx.dtypes = (x.dtype, w.dtype)
        ctx.mark_non_differentiable(nll_sum)
        return loss_sum, nll_sum

    @staticmethod
    def backward(ctx, grad_loss, _grad_nll):
        gx, gw, gb = ctx.saved_tensors
        x_dtype, w_dtype = ctx.dtypes
        gx = (gx * grad_loss.to(gx.dtype)).to(x_dtype) if ctx.needs_input_grad[0] else None
        # in place: the saved gradients are used once (a second backward through this graph would
        # need retain_graph, which the trainer never asks for), and a weight-sized allocation is spared
        gw_out = gw.mul_(grad_loss).to(w_dtype) if ctx.needs_input_grad[1] else None
        gb_out = gb.mul_(grad_loss).to(w_dtype) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw_out, gb_out, None, None, None


def linear_cross_entropy(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, target: torch.Tensor,
    ignore_index: int = -100, label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Summed cross-entropy of ``x @ weight.T + bias`` against ``target``, without keeping the logits.

    x: ... x H; target: ... (same leading shape); rows whose target is ``ignore_index`` count for
    nothing. Returns (loss_sum, nll_sum, n_tokens): the (label-smoothed) loss to back-propagate,
    the plain negative log-likelihood (no gradient; equal to the loss without smoothing), and the
    number of counted rows. Under autocast the matmuls run in the autocast dtype and the softmax in
    fp32, as they would for ``F.linear`` followed by ``F.cross_entropy`` on ``.float()`` logits.
    """
    x, target = x.reshape(-1, x.size(-1)), target.reshape(-1)
    keep = target != ignore_index
    n = int(keep.sum())
    x, target = x[keep], target[keep]
    dtype = _compute_dtype(x)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, weight, bias)
    )
    if not needs_grad:
        loss_sum, nll_sum, _ = _fused(x, weight, bias, target, float(label_smoothing), dtype, with_grad=False)
        return loss_sum, nll_sum, n
    with torch.autocast(x.device.type, enabled=False):
        loss_sum, nll_sum = _LinearCrossEntropy.apply(x, weight, bias, target, float(label_smoothing), dtype)
    return loss_sum, nll_sum, n
