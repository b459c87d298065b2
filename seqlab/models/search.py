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

    Beams live as B*K rows; each step takes the top K of K*V continuations per sentence.
    A hypothesis that emits ``</s>`` is scored with the length penalty and set aside; search for a
    sentence ends when its best finished score cannot be beaten by any live beam (with a
    monotone penalty, once the best live raw score normalised by the longest possible length
    is below it) or at ``max_len``.
    """
    K = beam_size
    B = enc.memory.size(0)
    dev = enc.memory.device
    rows = torch.arange(B, device=dev).repeat_interleave(K)
    state = decoder.init_state(enc).select(rows)
    prev = torch.full((B * K,), bos, dtype=torch.long, device=dev)
    # only the first beam is live at the start, so the K beams do not all pick the same token
    beam_scores = torch.full((B, K), float("-inf"), device=dev)
    beam_scores[:, 0] = 0.0
    history = torch.empty(B * K, 0, dtype=torch.long, device=dev)
    attn_hist = None
    best_score = torch.full((B,), float("-inf"), device=dev)
    best_tokens: list[torch.Tensor | None] = [None] * B
    best_attn: list[torch.Tensor | None] = [None] * B
    finished = torch.zeros(B, dtype=torch.bool, device=dev)
    for t in range(max_len):
        logits, state, w = decoder.step(prev, state)
        logp = torch.log_softmax(logits.float(), dim=-1)  # BK x V
        V = logp.size(-1)
        cand = (beam_scores.view(B * K, 1) + logp).view(B, K * V)
        top_scores, top_idx = cand.topk(2 * K, dim=1)  # 2K so that K survive after </s> ones leave
        origin = top_idx // V  # B x 2K: which beam
        token = top_idx % V
        is_eos = token == eos
        if t == max_len - 1:
            is_eos = torch.ones_like(is_eos)  # force-finish at the length limit
        # --- set aside finished hypotheses (only among the top K, as in standard beam search)
        fin_rank = is_eos & (torch.arange(2 * K, device=dev)[None, :] < K) & ~finished[:, None]
        if bool(fin_rank.any()):
            norm = top_scores / length_penalty(torch.tensor(t + 1, device=dev), alpha)
            for b, j in fin_rank.nonzero().tolist():
                if norm[b, j] > best_score[b]:
                    best_score[b] = norm[b, j]
                    src_row = b * K + int(origin[b, j])
                    best_tokens[b] = torch.cat([history[src_row], token[b, j : j + 1]])
                    if w is not None:
                        step_w = w[src_row : src_row + 1]
                        prev_w = attn_hist[src_row] if attn_hist is not None else step_w[:0]
                        best_attn[b] = torch.cat([prev_w, step_w], 0)
        # --- keep the K best non-finished continuations
        live_scores = top_scores.masked_fill(is_eos, float("-inf"))
        keep_scores, keep_pos = live_scores.topk(K, dim=1)  # B x K
        keep_origin = origin.gather(1, keep_pos)
        keep_token = token.gather(1, keep_pos)
        # a sentence is done when no live beam can still beat its best finished hypothesis
        bound = keep_scores[:, 0] / length_penalty(torch.tensor(max_len, device=dev), alpha) if alpha > 0 \
            else keep_scores[:, 0]
        # ... or when its best candidate this step was </s> (so beam size 1 is exactly greedy)
        finished = finished | (best_score > bound) | torch.isinf(keep_scores[:, 0]) | is_eos[:, 0]
        if bool(finished.all()):
            break
        sel = (torch.arange(B, device=dev)[:, None] * K + keep_origin).view(-1)
        history = torch.cat([history.index_select(0, sel), keep_token.view(-1, 1)], dim=1)
        if w is not None:
            step_attn = w.index_select(0, sel).unsqueeze(1)
            attn_hist = step_attn if attn_hist is None else torch.cat([attn_hist.index_select(0, sel), step_attn], 1)
        state = state.select(sel)
        beam_scores = keep_scores.masked_fill(finished[:, None], float("-inf"))
        prev = keep_token.view(-1)
    T = max(len(x) for x in best_tokens)
    tokens = torch.full((B, T), eos, dtype=torch.long, device=dev)
    for b, seq in enumerate(best_tokens):
        tokens[b, : len(seq)] = seq
    attention = None
    if best_attn[0] is not None:
        S = best_attn[0].size(-1)
        attention = torch.zeros(B, T, S, device=dev)
        for b, a in enumerate(best_attn):
            attention[b, : a.size(0)] = a
    return Hypotheses(tokens, best_score, attention)
