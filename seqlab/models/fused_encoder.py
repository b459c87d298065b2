"""One LSTM layer over a padded batch, every direction at once, forward and backward written out by
hand: ``lstm_layer``. The encoder's recurrence (``masked_rnn``) runs its LSTM layers with it.

At step t, for each direction d (the backward one reads each sentence reversed within its length):

    gates = x_t + W_d h_{t-1}                    x_t: the input's share, all steps in one matmul
    c_t = sig(f) * c_{t-1} + sig(i) * tanh(g);   h_t = sig(o) * tanh(c_t)

Under autograd a step is some 15 small operations forward, twice as many backward, plus a
``torch.where`` per state to hold it after the sentence's end. Here the forward pass keeps running
past each sentence's end instead (those steps' outputs are zeroed and their gradients are zero, so
they change nothing), takes the final states at each sentence's last token, and keeps what the
backward pass needs; the derivatives of the gates are formed after the loop over all steps at
once. The backward pass is then a handful of operations per step, and the recurrent weight gets its
gradient in one matmul over all steps. Matrix products run in the weight's dtype (bf16 under
autocast), the cell arithmetic and the states in the input's (fp32): the same mathematics as
``nn.LSTM`` over packed sequences, which the tests compare it with.
"""

from __future__ import annotations

import torch


def _run(gi: torch.Tensor, w: torch.Tensor, keep: bool):
    """The forward loop. Returns (out S x D x B x H, cs (S+1) x ..., hs (S+1) x ... in w's dtype,
    and with ``keep`` the sigmoids S x D x B x 4H, tanh(g) and tanh(c))."""
    S, D, B, G = gi.shape
    H = G // 4
    hs = gi.new_empty(S + 1, D, B, H, dtype=w.dtype)  # h_{t-1}: the recurrent matmul's input (and dW's)
    hs[0].zero_()
    cs = gi.new_empty(S + 1, D, B, H)
    cs[0].zero_()
    out = gi.new_empty(S, D, B, H)
    sgs = gi.new_empty(S, D, B, G) if keep else None
    tgs = gi.new_empty(S, D, B, H) if keep else None
    tcs = gi.new_empty(S, D, B, H) if keep else None
    for t in range(S):
        gates = gi[t] + torch.bmm(hs[t], w)  # matmul dtype + state dtype: promoted inside the add
        sg = torch.sigmoid(gates, out=sgs[t] if keep else None)  # i, f, (g: unused), o
        tg = torch.tanh(gates[..., 2 * H : 3 * H], out=tgs[t] if keep else None)
        c = torch.addcmul(sg[..., H : 2 * H] * cs[t], sg[..., :H], tg, out=cs[t + 1])
        tc = torch.tanh(c, out=tcs[t] if keep else None)
        hs[t + 1].copy_(torch.mul(sg[..., 3 * H :], tc, out=out[t]))
    return out, cs, hs, sgs, tgs, tcs


def _ends(lengths: torch.Tensor, B: int):
    """(each row's last step, clamped to 0; the row index; 1 for rows with tokens, 0 for empty ones)."""
    last = (lengths - 1).clamp_min(0)
    return last, torch.arange(B, device=lengths.device), (lengths > 0)[None, :, None]


def _finish(out: torch.Tensor, cs: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor):
    """The forward loop's results as ``lstm_layer`` returns them: the outputs zeroed at padding (in
    place) and the final h and c (D x B x H) taken at each row's last token (zero for an empty row)."""
    last, rows, nonempty = _ends(lengths, out.size(2))
    h_fin = out[last, :, rows].transpose(0, 1) * nonempty
    c_fin = cs[last + 1, :, rows].transpose(0, 1) * nonempty
    return out.mul_(mask.t()[:, None, :, None]), h_fin, c_fin


def cell_derivatives(sg: torch.Tensor, tg: torch.Tensor, c_prev: torch.Tensor, tc: torch.Tensor):
    """An LSTM cell's local derivatives for every step at once, from what its forward pass kept:
    the sigmoids of the four gates ``sg`` (... x 4H; the g slot unused), tanh(g) ``tg``, the previous
    cell state ``c_prev`` and tanh(c) ``tc`` (... x H). Returns (P ... x 4H, Q ... x H) such that a
    step's backward pass is

        dc = dc_from_later + dh * Q;   d gates = [dc dc dc dh] * P

    i.e. P = [tg s_i(1-s_i), c_prev s_f(1-s_f), s_i (1-tg^2), tc s_o(1-s_o)], Q = s_o (1 - tc^2)."""
    H = tg.size(-1)
    d = torch.addcmul(sg, sg, sg, value=-1.0)  # s (1 - s)
    P = torch.empty_like(sg)
    torch.mul(d[..., :H], tg, out=P[..., :H])
    torch.mul(d[..., H : 2 * H], c_prev, out=P[..., H : 2 * H])
    torch.addcmul(sg[..., :H], sg[..., :H] * tg, tg, value=-1.0, out=P[..., 2 * H : 3 * H])
    torch.mul(d[..., 3 * H :], tc, out=P[..., 3 * H :])
    Q = torch.addcmul(sg[..., 3 * H :], sg[..., 3 * H :] * tc, tc, value=-1.0)
    return P, Q


class _LSTMLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gi, w, lengths, mask):
        S, H = gi.size(0), gi.size(3) // 4
        out, cs, hs, sg, tg, tc = _run(gi, w, keep=True)
        out, h_fin, c_fin = _finish(out, cs, lengths, mask)
        P, Q = cell_derivatives(sg, tg, cs[:S], tc)
        ctx.save_for_backward(w, lengths, mask)
        ctx.tensors = (hs, P, Q, sg[..., H : 2 * H])
        ctx.gi_dtype = gi.dtype
        return out, h_fin, c_fin

    @staticmethod
    def backward(ctx, d_out, d_hfin, d_cfin):
        w, lengths, mask = ctx.saved_tensors
        hs, P, Q, sf = ctx.tensors
        S, D, B, H = Q.shape
        dH = d_out.to(Q.dtype) * mask.t()[:, None, :, None]  # nothing flows from the padding's outputs
        dC = torch.zeros_like(dH)
        last, rows, nonempty = _ends(lengths, B)
        if d_hfin is not None:  # the final states' gradients enter at each sentence's last step
            dH[last, :, rows] += (d_hfin.to(Q.dtype) * nonempty).transpose(0, 1)
        if d_cfin is not None:
            dC[last, :, rows] += (d_cfin.to(Q.dtype) * nonempty).transpose(0, 1)
        dG = torch.empty_like(P)
        dG_low = hs.new_empty(P.shape)  # in the matmuls' dtype
        wt = w.transpose(1, 2)
        dh_rec = dc_rec = None
        for t in range(S - 1, -1, -1):
            dh = dH[t] if dh_rec is None else dH[t] + dh_rec
            dc = torch.addcmul(dC[t], dh, Q[t])
            if dc_rec is not None:
                dc += dc_rec
            torch.mul(torch.cat([dc, dc, dc, dh], -1), P[t], out=dG[t])
            dG_low[t].copy_(dG[t])
            dh_rec = torch.bmm(dG_low[t], wt)
            dc_rec = dc * sf[t]
        # dW = sum_t h_{t-1}^T dgates_t: one matmul per direction over all steps
        dw = torch.bmm(hs[:S].permute(1, 3, 0, 2).reshape(D, H, S * B),
                       dG_low.permute(1, 0, 2, 3).reshape(D, S * B, 4 * H))
        return dG.to(ctx.gi_dtype), dw.to(w.dtype), None, None


def lstm_layer(gi: torch.Tensor, w: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor):
    """One LSTM layer, D directions side by side.

    gi: S x D x B x 4H, the input's share of the gates (both biases included; gate order i, f, g, o
    as in PyTorch), in the state's precision; w: D x H x 4H, the recurrent weights transposed, in
    the matmuls' precision; lengths: B; mask: B x S, True at real positions. Returns (outputs
    S x D x B x H, zero at padding; final h and c D x B x H, those after each row's last token)."""
    if torch.is_grad_enabled() and (gi.requires_grad or w.requires_grad):
        with torch.autocast(gi.device.type, enabled=False):
            return _LSTMLayer.apply(gi, w, lengths, mask)
    out, cs, _, _, _, _ = _run(gi, w, keep=False)
    return _finish(out, cs, lengths, mask)
