"""Decoding for any decoder with ``init_state(enc)`` and ``step(prev, state)``: greedy,
sampling and batched beam search (all hypotheses of all sentences advance in one tensor op)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Hypotheses:
    """tokens: B x T ids (after ``<s>``, padded with ``</s>``); scores: B log-probs;
    attention: B x T x S or None."""

    tokens: torch.Tensor
    scores: torch.Tensor
    attention: torch.Tensor | None


@torch.no_grad()
def greedy(decoder, enc, bos: int, eos: int, max_len: int, sample: bool = False,
           temperature: float = 1.0, top_k: int = 0) -> Hypotheses:
    """Pick the most likely (or a sampled) token at each step until every sentence has ``</s>``."""
    state = decoder.init_state(enc)
    B = enc.memory.size(0)
    prev = torch.full((B,), bos, dtype=torch.long, device=enc.memory.device)
    done = torch.zeros(B, dtype=torch.bool, device=prev.device)
    scores = torch.zeros(B, device=prev.device)
    out, attn = [], []
    for _ in range(max_len):
        logits, state, w = decoder.step(prev, state)
        logp = torch.log_softmax(logits.float(), dim=-1)
        if sample:
            z = logits.float() / max(temperature, 1e-6)
            if top_k > 0:
                kth = z.topk(min(top_k, z.size(-1)), dim=-1).values[:, -1:]
                z = z.masked_fill(z < kth, float("-inf"))
            tok = torch.multinomial(torch.softmax(z, -1), 1).squeeze(1)
        else:
            tok = logp.argmax(-1)
        tok = torch.where(done, torch.full_like(tok, eos), tok)
        scores = scores + torch.where(done, torch.zeros_like(scores), logp.gather(1, tok[:, None]).squeeze(1))
        out.append(tok)
        if w is not None:
            attn.append(w)
        done = done | (tok == eos)
        prev = tok
        if bool(done.all()):
            break
    return Hypotheses(torch.stack(out, 1), scores, torch.stack(attn, 1) if attn else None)


def length_penalty(length: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT (Wu et al. 2016): ((5 + |y|) / 6) ** alpha; alpha 0 means none."""
    return ((5.0 + length.float()) / 6.0) ** alpha


@torch.no_grad()
def beam_search(decoder, enc, bos: int, eos: int, max_len: int, beam_size: int = 5,
                alpha: float = 1.0) -> Hypotheses:
    """Batched beam search; returns the best finished hypothesis per sentence.

    Beams live as B*K rows; each step takes the top 2K of K*V continuations per sentence, sets
    aside those among the top K that end in ``</s>`` (scored with the GNMT length penalty), and
    keeps the K best that do not. A sentence is done when its best candidate ends (so beam size 1
    is exactly greedy), when no live beam can still beat its best finished hypothesis, or at
    ``max_len``. Everything is tensor operations over the whole batch; no per-hypothesis Python.
    """
    K = beam_size
    B = enc.memory.size(0)
    dev = enc.memory.device
    S = enc.memory.size(1)
    rows = torch.arange(B, device=dev).repeat_interleave(K)
    state = decoder.init_state(enc).select(rows)
    prev = torch.full((B * K,), bos, dtype=torch.long, device=dev)
    # only the first beam is live at the start, so the K beams do not all pick the same token
    beam_scores = torch.full((B, K), float("-inf"), device=dev)
    beam_scores[:, 0] = 0.0
    history = torch.empty(B * K, 0, dtype=torch.long, device=dev)
    attn_hist = None
    best_score = torch.full((B,), float("-inf"), device=dev)
    best_tokens = torch.full((B, max_len), eos, dtype=torch.long, device=dev)
    best_attn = None
    finished = torch.zeros(B, dtype=torch.bool, device=dev)
    batch_rows = torch.arange(B, device=dev)
    top_k_rank = torch.arange(2 * K, device=dev)[None, :] < K
    lp_max = length_penalty(torch.tensor(float(max_len)), alpha).item() if alpha > 0 else 1.0
    t = 0
    for t in range(max_len):
        logits, state, w = decoder.step(prev, state)
        logp = torch.log_softmax(logits.float(), dim=-1)  # BK x V
        V = logp.size(-1)
        cand = (beam_scores.view(B * K, 1) + logp).view(B, K * V)
        top_scores, top_idx = cand.topk(2 * K, dim=1)  # 2K: K survive after the </s> ones leave
        origin, token = top_idx // V, top_idx % V  # B x 2K
        is_eos = token == eos
        if t == max_len - 1:
            is_eos = torch.ones_like(is_eos)  # force-finish at the length limit
        # --- set aside finished hypotheses among the top K
        fin = is_eos & top_k_rank & ~finished[:, None]
        lp = length_penalty(torch.tensor(float(t + 1)), alpha).item() if alpha > 0 else 1.0
        norm = (top_scores / lp).masked_fill(~fin, float("-inf"))
        cand_best, j = norm.max(dim=1)  # B
        improve = cand_best > best_score
        if bool(improve.any()):
            b_idx = batch_rows[improve]
            src_row = b_idx * K + origin[b_idx, j[improve]]
            best_score = torch.where(improve, cand_best, best_score)
            best_tokens[b_idx, :t] = history[src_row]
            best_tokens[b_idx, t] = token[b_idx, j[improve]]
            best_tokens[b_idx, t + 1 :] = eos
            if w is not None:
                if best_attn is None:
                    best_attn = torch.zeros(B, max_len, S, device=dev)
                best_attn[b_idx] = 0.0
                if attn_hist is not None:
                    best_attn[b_idx, :t] = attn_hist[src_row].float()
                best_attn[b_idx, t] = w[src_row].float()
        # --- keep the K best continuations that did not end
        live = top_scores.masked_fill(is_eos, float("-inf"))
        keep_scores, keep_pos = live.topk(K, dim=1)  # B x K
        keep_origin, keep_token = origin.gather(1, keep_pos), token.gather(1, keep_pos)
        bound = keep_scores[:, 0] / lp_max  # the best a live beam can still reach
        finished = finished | (best_score > bound) | torch.isinf(keep_scores[:, 0]) | is_eos[:, 0]
        if bool(finished.all()):
            break
        sel = (batch_rows[:, None] * K + keep_origin).view(-1)
        history = torch.cat([history.index_select(0, sel), keep_token.view(-1, 1)], dim=1)
        if w is not None:
            step_attn = w.index_select(0, sel).unsqueeze(1)
            attn_hist = step_attn if attn_hist is None else torch.cat([attn_hist.index_select(0, sel), step_attn], 1)
        state = state.reorder(sel)  # sel stays within each sentence's K rows
        beam_scores = keep_scores.masked_fill(finished[:, None], float("-inf"))
        prev = keep_token.view(-1)
    T = t + 1
    return Hypotheses(best_tokens[:, :T], best_score, best_attn[:, :T] if best_attn is not None else None)
