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
and about as much of bookkeeping. Here the forward pass runs without a graph and writes what the
backward pass needs into one buffer per quantity; after the loop, the local derivatives of the
cell, the attentional layer and the dropout are formed for all steps at once. The backward pass is
then the chain rule step by step in reverse, a few operations a step (the additive score's key
gradient is kept as two running sums: sum_s ds = 0 for a softmax's input gradient is not assumed),
and every weight gets its gradient in one matmul over all steps at the end. Matrix
products run in ``dtype`` (bf16 under autocast), everything else in the state's precision (fp32):
the same mathematics as ``RNNDecoder``'s step-by-step path, which the tests compare it with.
"""

from __future__ import annotations

import torch

from seqlab.models.attention import tanh_
from seqlab.models.dropout import keep_mask
from seqlab.models.fused_encoder import cell_derivatives


class _AttentionalLSTMLoop(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_pre, h, c, feed, keys, memory, mask, w, wq, bq, v, wc, p, dtype, keep):
        B, T, _ = x_pre.shape
        acc = x_pre.dtype
        H = h.size(1)
        S, A = keys.shape[1], keys.shape[2]
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
        outs = x_pre.new_empty(B, T, H)
        attn = x_pre.new_empty(T, B, S)
        # what the backward pass reads, one buffer per quantity over all steps
        new = x_pre.new_empty if keep else (lambda *shape: None)
        sgs, tgs, tcs, os_ = new(T, B, 4 * H), new(T, B, H), new(T, B, H), new(T, B, H)
        cs = x_pre.new_empty(T + 1, B, H) if keep else None
        # additive: hid_t = tanh(q_t + keys) is B x S x A a step; one scratch buffer, recomputed in backward
        scratch = keys_.new_empty(B, S, A) if additive else None
        qs = new(T, B, A) if keep and additive else None
        hs = new(T, B, H) if keep and not additive else None  # dot / general: d keys = sum_t ds_t (x) h_t
        F = w.size(1) - H  # the fed-back vector's size
        # the matmuls' inputs [feed; h] and [h; context] in their precision, one row block per step (kept for dW)
        xhs = x_pre.new_empty(T, B, F + H, dtype=dtype)
        hcs = x_pre.new_empty(T, B, H + mem.size(2), dtype=dtype)
        keeps = []
        if keep:
            cs[0] = c
        for t in range(T):
            xh = xhs[t]
            xh[:, :F].copy_(feed)
            xh[:, F:].copy_(h)
            gates = x_pre[:, t] + xh.mm(w_.t())  # fp32 + bf16: promoted inside the add, no cast
            sg = torch.sigmoid(gates, out=sgs[t] if keep else None)  # i, f, (g: unused), o
            tg = torch.tanh(gates[:, 2 * H : 3 * H], out=tgs[t] if keep else None)
            c = torch.addcmul(sg[:, H : 2 * H] * c, sg[:, :H], tg, out=cs[t + 1] if keep else None)
            tc = torch.tanh(c, out=tcs[t] if keep else None)
            h = sg[:, 3 * H :] * tc
            hc = hcs[t]
            hc[:, :H].copy_(h)  # h in the matmuls' precision
            if additive:
                q = torch.addmm(bq_, hc[:, :H], wq_.t()).to(acc)
                if keep:
                    qs[t] = q
                hid = tanh_(torch.add(keys_, q.unsqueeze(1), out=scratch))  # B x S x A
                scores = hid.view(-1, A).mv(v_).view(B, -1)
            else:
                scores = torch.bmm(keys_, h.unsqueeze(2)).squeeze(2)
                if keep:
                    hs[t] = h
            a = torch.softmax(scores + neg, dim=1, out=attn[t])  # B x S
            hc[:, H:].copy_(torch.bmm(a.unsqueeze(1), mem).squeeze(1))  # the context, B x M
            o = torch.tanh(hc.mm(wc_.t()).to(acc), out=os_[t] if keep else None)
            drop = keep_mask(o, p) if p > 0 else None  # seqlab's dropout mask, drawn in the same order
            feed = o * drop if drop is not None else o
            outs[:, t] = feed
            if keep:
                keeps.append(drop)
        if keep:
            # the derivatives of the cell and the attentional layer, over all steps at once:
            # d gates = [dc dc dc dh] * P;  d c += dh * Q;  d (W_c [h; ctx]) = d out * K
            P, Q = cell_derivatives(sgs, tgs, cs[:T], tcs)
            K = torch.addcmul(torch.ones_like(os_), os_, os_, value=-1.0)  # 1 - o^2
            if p > 0:
                K.mul_(torch.stack(keeps))
            ctx.inputs = (xhs, hcs)
            ctx.derivs = (P, Q, K, sgs[..., H : 2 * H], qs if additive else hs, attn)  # q_t or h_t per step
            ctx.weights = (w_, wq_, v_, wc_, keys_, mem)
            ctx.meta = (additive, acc, H, F)
        attn = attn.transpose(0, 1).to(memory.dtype, memory_format=torch.contiguous_format)  # a copy: B x T x S
        ctx.mark_non_differentiable(attn)
        return outs, attn

    @staticmethod
    def backward(ctx, d_outs, _d_attn):
        additive, acc, H, F = ctx.meta
        w_, wq_, v_, wc_, keys_, mem = ctx.weights
        P, Q, K, SF, per_step, attn = ctx.derivs  # additive: the queries q_t; dot / general: h_t
        xhs, hcs = ctx.inputs
        T, B = xhs.shape[:2]
        d_outs = d_outs.to(acc)
        dx_pre = d_outs.new_empty(B, T, w_.size(0))
        dzs = xhs.new_empty(T, B, H)  # the matmuls' output gradients, in their precision
        dgs = xhs.new_empty(T, B, w_.size(0))
        dfeed = dh_next = dc = None
        if additive:  # d keys = v * sum_t ds_t (1 - hid_t^2): the sums over steps are kept
            ds_sum = keys_.new_zeros(keys_.shape[:2])  # B x S
            ds_hid2 = torch.zeros_like(keys_)  # B x S x A
            hid = torch.empty_like(keys_)
            dv = torch.zeros_like(v_)
        dq_all, dctx_all = [], []  # dq_all: dot / general keep d scores
        for t in range(T - 1, -1, -1):
            a = attn[t]
            do = d_outs[:, t] if dfeed is None else d_outs[:, t] + dfeed
            dz_ = torch.mul(do, K[t], out=dzs[t])  # through the dropout and the tanh
            dhc = dz_.mm(wc_).to(acc)
            dh = dhc[:, :H]
            dctx = dhc[:, H:]
            da = torch.bmm(mem, dctx.unsqueeze(2)).squeeze(2)  # B x S
            ds = a * (da - (a * da).sum(1, keepdim=True))  # softmax
            if additive:
                tanh_(torch.add(keys_, per_step[t].unsqueeze(1), out=hid))  # recomputed: cheaper than keeping T of them
                dv.addmv_(hid.view(-1, hid.size(-1)).t(), ds.view(-1))
                hid2 = hid.mul_(hid)
                dsum = ds.sum(1)
                # dq = sum_s d hid_s = v * (sum_s ds_s - sum_s ds_s hid_s^2)
                dq = (dsum[:, None] - torch.bmm(ds.unsqueeze(1), hid2).squeeze(1)) * v_
                ds_sum += ds
                ds_hid2.addcmul_(ds.unsqueeze(2), hid2)
                dq_all.append(dq)
                dh = dh + dq.to(wq_.dtype).mm(wq_).to(acc)
            else:
                dh = dh + torch.bmm(ds.unsqueeze(1), keys_).squeeze(1)
                dq_all.append(ds)
            if dh_next is not None:
                dh = dh + dh_next
            dc = dh * Q[t] if dc is None else torch.addcmul(dc, dh, Q[t])
            dgates = torch.mul(torch.cat([dc, dc, dc, dh], 1), P[t], out=dx_pre[:, t])
            dg_ = dgs[t]
            dg_.copy_(dgates)
            dxh = dg_.mm(w_).to(acc)
            dfeed, dh_next = dxh[:, :F], dxh[:, F:]
            dc = dc * SF[t]
            dctx_all.append(dctx)
        dq_all.reverse(), dctx_all.reverse()
        # every weight's gradient in one matmul over all steps
        dw = dgs.view(T * B, -1).t().mm(xhs.view(T * B, -1)).to(acc)
        dwc = dzs.view(T * B, -1).t().mm(hcs.view(T * B, -1)).to(acc)
        dmem = torch.bmm(attn.permute(1, 2, 0), torch.stack(dctx_all, 1))  # B x S x M
        dwq = dbq = dkeys = None
        if additive:
            dq = torch.cat(dq_all)  # (T*B) x A
            dwq = dq.to(wq_.dtype).t().mm(hcs[:, :, :H].reshape(T * B, H)).to(acc)
            dbq = dq.sum(0)
            dkeys = (ds_sum.unsqueeze(2) - ds_hid2).mul_(v_)
        else:  # scores = keys . h: d keys = sum_t ds_t (x) h_t
            dkeys = torch.bmm(torch.stack(dq_all, 2), per_step.transpose(0, 1))
        ctx.inputs = ctx.weights = ctx.derivs = None
        grads = (dx_pre, dh_next, dc, dfeed, dkeys, dmem, None, dw, dwq, dbq, dv if additive else None, dwc)
        grads = [g.to(dt) if g is not None else None for g, dt in zip(grads, ctx.dtypes, strict=True)]
        return (*grads, None, None, None)


def attentional_lstm_loop(x_pre, h0, c0, feed0, keys, memory, mask, w, wq, bq, v, wc, p: float, dtype):
    """Teacher-forced outputs B x T x H (after dropout ``p``) and attention weights B x T x S.

    x_pre: B x T x 4H, the embedding's share of the gates (biases included); h0, c0: B x H;
    feed0: B x F, the first fed-back vector; keys: B x S x A (additive: projected; dot/general: the
    vectors h is scored against); memory: B x S x M; mask: B x S, True at real positions;
    w: 4H x (F + H), the gates' weight for [feed; h]; wq, bq, v: the additive score's query
    projection and vector (None: dot product); wc: H x (H + M), the attentional layer.
    ``dtype``: the matrix products' precision."""
    keep = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x_pre, h0, c0, feed0, keys, memory, w, wq, bq, v, wc))
    with torch.autocast(x_pre.device.type, enabled=False):  # the precisions are chosen inside
        return _AttentionalLSTMLoop.apply(x_pre, h0, c0, feed0, keys, memory, mask, w, wq, bq, v, wc, float(p),
                                          dtype, keep)
