"""The teacher-forced loop of an attentional LSTM decoder with input feeding, forward and backward
written out by hand: ``attentional_lstm_loop``.

This is the decoder of the JoeyNMT / OpenNMT-py arrangement (``model=lstm_attn``): at step t

    gates = x_t + W [o_{t-1}; h_{t-1}]            x_t: the embedding's share, all steps in one matmul
    c_t = sig(f) * c_{t-1} + sig(i) * tanh(g);  h_t = sig(o) * tanh(c_t)
    a_t = softmax(score(h_t, keys) over the real source positions)
    ctx_t = sum_s a_ts memory_s
    o_t = dropout(tanh(W_c [h_t; ctx_t]))         the attentional vector: output and next input

with ``score`` additive (``v . tanh(W_q h + b_q + keys)``), dot or general (``h . keys``; general's
keys are projected beforehand). Autograd records some 30 small operations per step and runs some 60
backward nodes for them; at 64 sentences x 512 units each of those is a few microseconds of work
and about as much of bookkeeping. Here the forward pass runs without a graph and keeps what the
backward pass needs; the backward pass is the chain rule step by step in reverse, and every weight
gets its gradient in one matmul over all steps at the end (as ``SharedWeight`` does). Matrix
products run in ``dtype`` (bf16 under autocast), everything else in the state's precision (fp32):
the same mathematics as ``RNNDecoder``'s step-by-step path, which the tests compare it with.
"""

from __future__ import annotations

import torch

from seqlab.models.dropout import keep_mask


class _AttentionalLSTMLoop(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_pre, h, c, feed, keys, memory, mask, w, wq, bq, v, wc, p, dtype):
        B, T, _ = x_pre.shape
        acc = x_pre.dtype
        H = h.size(1)
        additive = wq is not None
        w_, wc_ = w.to(dtype), wc.to(dtype)
        wq_ = wq.to(dtype) if additive else None
        bq_ = bq.to(dtype) if additive else None
        v_ = v.to(acc) if additive else None
        mem = memory.to(acc)
        keys_ = keys.to(acc)
        neg = torch.zeros(mask.shape, dtype=acc, device=mask.device).masked_fill_(~mask, float("-inf"))
        ctx.dtypes = [t.dtype if t is not None else None for t in (x_pre, h, c, feed, keys, memory, mask, w, wq, bq,
                                                                     v, wc)]  # the inputs', for their gradients
        keep_for_backward = any(ctx.needs_input_grad)
        outs = x_pre.new_empty(B, T, H)
        attn = x_pre.new_empty(B, T, mask.size(1))
        saved = []
        for t in range(T):
            xh = torch.cat([feed, h], 1).to(dtype)  # B x (F + H), the matmul's input (kept for dW)
            gates = x_pre[:, t] + xh.mm(w_.t())  # fp32 + bf16: promoted inside the add, no cast
            sg = torch.sigmoid(gates)  # i, f, (g: unused), o
            tg = torch.tanh(gates[:, 2 * H : 3 * H])
            c_prev = c
            c = torch.addcmul(sg[:, H : 2 * H] * c, sg[:, :H], tg)
            tc = torch.tanh(c)
            h = sg[:, 3 * H :] * tc
            if additive:
                q = torch.addmm(bq_, h.to(dtype), wq_.t()).to(acc)
                hid = (keys_ + q.unsqueeze(1)).tanh_()  # B x S x A
                scores = hid.view(-1, hid.size(-1)).mv(v_).view(B, -1)
            else:
                hid = None
                scores = torch.bmm(keys_, h.unsqueeze(2)).squeeze(2)
            a = torch.softmax(scores + neg, dim=1)  # B x S
            context = torch.bmm(a.unsqueeze(1), mem).squeeze(1)  # B x M
            hc = torch.cat([h, context], 1).to(dtype)
            o = torch.tanh(hc.mm(wc_.t()).to(acc))
            keep = keep_mask(o, p) if p > 0 else None  # seqlab's dropout mask, drawn in the same order
            feed = o * keep if keep is not None else o
            outs[:, t] = feed
            attn[:, t] = a
            if keep_for_backward:
                saved.append((xh, sg, tg, c_prev, tc, h, hid, a, hc, o, keep))
        ctx.saved = saved
        ctx.weights = (w_, wq_, v_, wc_, keys_, mem)
        ctx.meta = (additive, acc, H, w.size(1) - H)  # F: the fed-back vector's size
        attn = attn.to(memory.dtype)
        ctx.mark_non_differentiable(attn)
        return outs, attn

    @staticmethod
    def backward(ctx, d_outs, _d_attn):
        additive, acc, H, F = ctx.meta
        w_, wq_, v_, wc_, keys_, mem = ctx.weights
        saved = ctx.saved
        T = len(saved)
        d_outs = d_outs.to(acc)
        dx_pre = d_outs.new_empty(d_outs.size(0), T, w_.size(0))
        dfeed = dh_next = dc = None
        dkeys = torch.zeros_like(keys_) if additive else None  # dot / general: one bmm at the end
        dv = torch.zeros_like(v_) if additive else None
        dz_all, dq_all, dg_all, dctx_all = [], [], [], []  # dq_all: dot / general keep d scores
        for t in range(T - 1, -1, -1):
            xh, sg, tg, c_prev, tc, h, hid, a, hc, o, keep = saved[t]
            do = d_outs[:, t] if dfeed is None else d_outs[:, t] + dfeed
            if keep is not None:
                do = do * keep
            dz = do * (1 - o * o)  # tanh
            dz_ = dz.to(w_.dtype)
            dhc = dz_.mm(wc_).to(acc)
            dh = dhc[:, :H]
            dctx = dhc[:, H:]
            da = torch.bmm(mem, dctx.unsqueeze(2)).squeeze(2)  # B x S
            ds = a * (da - (a * da).sum(1, keepdim=True))  # softmax
            if additive:
                dv += hid.view(-1, hid.size(-1)).t().mv(ds.view(-1))
                dhid = hid.mul(hid).neg_().add_(1).mul_(v_).mul_(ds.unsqueeze(2))  # B x S x A
                dkeys += dhid
                dq = dhid.sum(1)
                dq_all.append(dq)
                dh = dh + dq.to(wq_.dtype).mm(wq_).to(acc)
            else:
                dh = dh + torch.bmm(ds.unsqueeze(1), keys_).squeeze(1)
                dq_all.append(ds)
            if dh_next is not None:
                dh = dh + dh_next
            si, sf, so = sg[:, :H], sg[:, H : 2 * H], sg[:, 3 * H :]
            dc = dh * so * (1 - tc * tc) if dc is None else dc + dh * so * (1 - tc * tc)
            dgates = torch.cat([dc * tg * si * (1 - si), dc * c_prev * sf * (1 - sf),
                                dc * si * (1 - tg * tg), dh * tc * so * (1 - so)], 1)
            dx_pre[:, t] = dgates
            dg_ = dgates.to(w_.dtype)
            dxh = dg_.mm(w_).to(acc)
            dfeed, dh_next = dxh[:, :F], dxh[:, F:]
            dc = dc * sf
            dz_all.append(dz_)
            dg_all.append(dg_)
            dctx_all.append(dctx)
        dz_all.reverse(), dq_all.reverse(), dg_all.reverse(), dctx_all.reverse()
        # every weight's gradient in one matmul over all steps
        dw = torch.cat(dg_all).t().mm(torch.cat([s[0] for s in saved])).to(acc)
        dwc = torch.cat(dz_all).t().mm(torch.cat([s[8] for s in saved])).to(acc)
        A = torch.stack([s[7] for s in saved], 1)  # B x T x S
        dmem = torch.bmm(A.transpose(1, 2), torch.stack(dctx_all, 1))  # B x S x M
        dwq = dbq = None
        if additive:
            dq = torch.cat(dq_all)  # (T*B) x A
            hs = torch.cat([s[5] for s in saved])
            dwq = dq.to(wq_.dtype).t().mm(hs.to(wq_.dtype)).to(acc)
            dbq = dq.sum(0)
        else:  # scores = keys . h: d keys = sum_t ds_t (x) h_t
            dkeys = torch.bmm(torch.stack(dq_all, 2), torch.stack([s[5] for s in saved], 1))
        ctx.saved = ctx.weights = None
        grads = (dx_pre, dh_next, dc, dfeed, dkeys, dmem, None, dw, dwq, dbq, dv, dwc)
        grads = [g.to(dt) if g is not None else None for g, dt in zip(grads, ctx.dtypes, strict=True)]
        return (*grads, None, None)


def attentional_lstm_loop(x_pre, h0, c0, feed0, keys, memory, mask, w, wq, bq, v, wc, p: float, dtype):
    """Teacher-forced outputs B x T x H (after dropout ``p``) and attention weights B x T x S.

    x_pre: B x T x 4H, the embedding's share of the gates (biases included); h0, c0: B x H;
    feed0: B x F, the first fed-back vector; keys: B x S x A (additive: projected; dot/general: the
    vectors h is scored against); memory: B x S x M; mask: B x S, True at real positions;
    w: 4H x (F + H), the gates' weight for [feed; h]; wq, bq, v: the additive score's query
    projection and vector (None: dot product); wc: H x (H + M), the attentional layer.
    ``dtype``: the matrix products' precision."""
    with torch.autocast(x_pre.device.type, enabled=False):  # the precisions are chosen inside
        return _AttentionalLSTMLoop.apply(x_pre, h0, c0, feed0, keys, memory, mask, w, wq, bq, v, wc, float(p),
                                          dtype)
