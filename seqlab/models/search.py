"""Decoding for any decoder with ``init_state(enc)`` and ``step(prev, state)``: greedy,
sampling and batched beam search (all hypotheses of all sentences advance in one tensor op)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")
R = TypeVar("R")


def decoding_copy(network: nn.Module, cache: dict) -> nn.Module:
    """The network to decode with. Under autocast, a copy whose weights are already in the autocast
    dtype: autocast re-casts fp32 weights at every call when no gradient is recorded, which at one
    call per decoder step costs more than the bf16 matmuls save. The copy is kept in ``cache``
    while the network's weights do not change; without autocast the network itself is used."""
    dev = next(network.parameters()).device.type
    if not torch.is_autocast_enabled(dev):
        return network
    dtype = torch.get_autocast_dtype(dev)
    if all(p.dtype == dtype for p in network.parameters() if p.is_floating_point()):
        return network  # already in that precision (a decoding-only process, see evaluate.restore)
    versions = (dtype, *(p._version for p in network.parameters()))
    if cache.get("versions") != versions:
        cache["network"] = copy.deepcopy(network).to(dtype).eval()
        cache["versions"] = versions
    return cache["network"]


def worker_count(workers: int, items: int) -> int:
    """How many threads ``map_batches`` uses for ``items`` (``workers`` 0: one per intra-op thread)."""
    threads = torch.get_num_threads()
    return max(1, min(workers or threads, threads, items))


def map_batches(fn: Callable[[T], R], batches: Sequence[T], workers: int = 0) -> list[R]:
    """``[fn(b) for b in batches]``, spread over ``workers`` threads on a CPU (0: one per intra-op
    thread), each with its share of the intra-op threads.

    A decoder step is a few dozen small operations, which do not keep two cores busy; two batches
    decoded side by side on one core each do. Grad mode, inference mode and autocast carry over.
    """
    threads = torch.get_num_threads()
    workers = worker_count(workers, len(batches))
    if workers <= 1:
        return [fn(b) for b in batches]
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    amp = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")

    def run(b: T) -> R:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad), \
                torch.autocast("cpu", dtype=amp[1], enabled=amp[0]):
            return fn(b)

    torch.set_num_threads(max(1, threads // workers))
    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(run, batches))
    finally:
        torch.set_num_threads(threads)


@dataclass
class Hypotheses:
    """tokens: B x T ids (after ``<s>``, padded with ``</s>``); scores: B log-probs;
    attention: B x T x S or None."""

    tokens: torch.Tensor
    scores: torch.Tensor
    attention: torch.Tensor | None


@torch.no_grad()
def greedy(decoder, enc, bos: int, eos: int, max_len: int, sample: bool = False,
           temperature: float = 1.0, top_k: int = 0, weights=None) -> Hypotheses:
    """Pick the most likely (or a sampled) token at each step until every sentence has ``</s>``:
    ``greedy_stream`` over one batch."""
    B, S = enc.memory.shape[:2]
    return greedy_stream(decoder, [lambda: enc], [(B, S)], bos, eos, max_len, sample, temperature, top_k, weights)[0]


@dataclass
class _Rows:
    """Sentences decoding side by side in ``greedy_stream``: the decoder state, each row's sentence
    id, next position, last token and whether it has ended."""

    state: object
    ids: torch.Tensor
    t: torch.Tensor
    prev: torch.Tensor
    done: torch.Tensor

    @classmethod
    def start(cls, state, ids: torch.Tensor, bos: int) -> _Rows:
        return cls(state, ids, torch.zeros_like(ids), torch.full_like(ids, bos), torch.zeros_like(ids, dtype=torch.bool))

    def __len__(self) -> int:
        return self.ids.numel()

    def take(self, index: torch.Tensor) -> _Rows:
        return _Rows(self.state.select(index), self.ids[index], self.t[index], self.prev[index], self.done[index])

    def split(self, n: int) -> tuple[_Rows, _Rows | None]:
        """The first n rows, and the rest (None when none is left)."""
        if n >= len(self):
            return self, None
        index = torch.arange(len(self), device=self.ids.device)
        return self.take(index[:n]), self.take(index[n:])

    def cat(self, other: _Rows) -> _Rows:
        other.state.weights = self.state.weights  # prepared once per decode, not per batch
        return _Rows(self.state.cat(other.state), *(torch.cat([getattr(self, f), getattr(other, f)])
                                                    for f in ("ids", "t", "prev", "done")))


@torch.no_grad()
def greedy_stream(decoder, encode: Sequence[Callable[[], object]], sizes: Sequence[tuple[int, int]], bos: int,
                  eos: int, max_len: int, sample: bool = False, temperature: float = 1.0,
                  top_k: int = 0, weights=None) -> list[Hypotheses]:
    """Greedy decoding (or sampling) of a stream of batches, one ``Hypotheses`` per batch.

    ``encode[i]()`` gives batch i's encoder output, whose batch and source sizes are ``sizes[i]``.
    At most as many sentences as the first batch has advance together. Sentences that have ended
    leave once a quarter of the rows has (``COMPACT_AT``; fewer kernel shapes than at every step),
    and sentences of the next batches take their rows: a sentence that runs on to ``max_len``
    keeps its neighbours' rows busy instead of stepping alone at the end of its batch. Each
    sentence's tokens are those of decoding it on its own (rows do not interact; a longer source
    in the batch only adds masked positions). ``weights``: the decoder's step weights, prepared
    once for the whole stream (``init_state(enc, weights)``); None: the first step prepares them."""
    dev = next(decoder.parameters()).device
    capacity = sizes[0][0]
    offsets = [0]
    for b, _ in sizes:
        offsets.append(offsets[-1] + b)
    N, S_max = offsets[-1], max(s for _, s in sizes)
    # one spare column: a row that has ended writes </s> (and zero attention) there, past its end
    tokens = torch.full((N, max_len + 1), eos, dtype=torch.long, device=dev)
    scores = torch.zeros(N, device=dev)
    attention = None
    pending = list(range(len(sizes)))  # batches not yet encoded
    waiting: _Rows | None = None  # sentences of an encoded batch that have no row yet

    def refill(rows: _Rows | None) -> _Rows | None:
        nonlocal waiting
        while (waiting is not None or pending) and (rows is None or len(rows) < capacity):
            if waiting is None:
                k = pending.pop(0)
                ids = torch.arange(offsets[k], offsets[k + 1], device=dev)
                waiting = _Rows.start(decoder.init_state(encode[k](), weights), ids, bos)
            head, waiting = waiting.split(len(waiting) if rows is None else capacity - len(rows))
            rows = head if rows is None else rows.cat(head)
        return rows

    rows = refill(None)
    while rows is not None:
        logits, rows.state, w = decoder.step(rows.prev, rows.state)
        logits = logits.float()
        if sample:
            z = logits / max(temperature, 1e-6)
            if top_k > 0:
                kth = z.topk(min(top_k, z.size(-1)), dim=-1).values[:, -1:]
                z = z.masked_fill(z < kth, float("-inf"))
            tok = torch.multinomial(torch.softmax(z, -1), 1).squeeze(1)
            best = logits.gather(1, tok[:, None]).squeeze(1)
            top = logits.amax(-1)
        else:
            best, tok = max_rows(logits)
            top = best
        done = rows.done
        tok = tok.masked_fill(done, eos)
        # log p of the token: best - logsumexp(logits), with the exponentials taken in place (torch.logsumexp
        # allocates two more V-wide copies a step; logits is not read again)
        lse = logits.sub_(top[:, None]).exp_().sum(-1).log_().add_(top)
        scores[rows.ids] += (best - lse).masked_fill(done, 0.0)
        pos = rows.t.clamp(max=max_len)
        tokens[rows.ids, pos] = tok
        if w is not None:
            if attention is None:
                attention = torch.zeros(N, max_len + 1, S_max, device=dev)
            attention[rows.ids, pos, : w.size(1)] = w.float().masked_fill(done[:, None], 0.0)
        rows.t = rows.t + 1
        rows.done = done | (tok == eos) | (rows.t >= max_len)
        rows.prev = tok
        live = int((~rows.done).sum())
        if live == 0 or _compact(rows.done):
            rows = refill(rows.take((~rows.done).nonzero().squeeze(1)) if live else None)
    tokens = tokens[:, :max_len]
    ended = tokens == eos  # each sentence's length: up to its first </s>, or max_len
    lengths = torch.where(ended.any(1), ended.int().argmax(1) + 1, max_len)
    out = []
    for k in range(len(sizes)):
        a, b = offsets[k], offsets[k + 1]
        T = int(lengths[a:b].max()) if b > a else 0
        att = attention[a:b, :T, : sizes[k][1]] if attention is not None else None
        out.append(Hypotheses(tokens[a:b, :T], scores[a:b], att))
    return out


def topk_rows(x: torch.Tensor, k: int, block: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``x.topk(k, dim=-1)`` for a R x V tensor with a large V, in two stages.

    The k largest values of a row lie in the k blocks (of ``block`` columns) with the largest
    maxima: a block outside those has k blocks before it each holding a value at least as large as
    all of its own. So one pass of block maxima and a top-k over k * block candidates give the same
    values as a top-k over V; on a CPU this is ~2x faster for a beam's R x V log-probabilities. Among
    equal values the index chosen may differ from ``torch.topk``'s."""
    R, V = x.shape
    full = V - V % block
    if full < block * k * 4:  # too few blocks to gain
        return x.topk(k, dim=-1)
    blocks = x[:, :full].view(R, full // block, block)
    best_blocks = blocks.amax(-1).topk(k, dim=-1).indices  # R x k
    cand = blocks.gather(1, best_blocks[:, :, None].expand(R, k, block)).view(R, k * block)
    cand_idx = (best_blocks[:, :, None] * block + torch.arange(block, device=x.device)).view(R, k * block)
    if full < V:  # the last, partial block always competes
        cand = torch.cat([cand, x[:, full:]], dim=1)
        tail = torch.arange(full, V, device=x.device).expand(R, V - full)
        cand_idx = torch.cat([cand_idx, tail], dim=1)
    values, pos = cand.topk(k, dim=-1)
    return values, cand_idx.gather(1, pos)


def max_rows(x: torch.Tensor, block: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``x.max(dim=-1)`` for a R x V tensor with a large V: the maximum of each block of ``block``
    columns first (a plain reduction, which a CPU vectorises; a maximum with its index is not), then
    the index within the best block. Same values and indices (the first of equal maxima, as
    ``torch.max`` on a CPU); 2.4x faster for greedy decoding's 64 x 7,859 logits here."""
    R, V = x.shape
    full = V - V % block
    if full < block * 4:  # too few blocks to gain
        return x.max(-1)
    blocks = x[:, :full].view(R, full // block, block)
    best, where = blocks.amax(-1).max(-1)  # R: the best block (the first of equals)
    _, pos = blocks.gather(1, where[:, None, None].expand(R, 1, block)).squeeze(1).max(-1)
    index = where * block + pos
    if full < V:  # the last, partial block: taken only if strictly larger (the first of equals wins)
        tail, tail_pos = x[:, full:].max(-1)
        larger = tail > best
        best, index = torch.where(larger, tail, best), torch.where(larger, tail_pos + full, index)
    return best, index


COMPACT_AT = 0.75  # finished sentences leave the batch once the live ones are at most this share


def _compact(done: torch.Tensor) -> bool:
    """Whether to drop the finished sentences now. Dropping them at every step would give the
    matmul library a new shape (and a cached kernel, with its memory) at almost every step;
    dropping them a quarter at a time keeps the shapes few."""
    return int((~done).sum()) <= COMPACT_AT * done.numel()


def length_penalty(length: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT (Wu et al. 2016): ((5 + |y|) / 6) ** alpha; alpha 0 means none."""
    return ((5.0 + length.float()) / 6.0) ** alpha


@torch.no_grad()
def beam_search(decoder, enc, bos: int, eos: int, max_len: int, beam_size: int = 5,
                alpha: float = 1.0, weights=None) -> Hypotheses:
    """Batched beam search; returns the best finished hypothesis per sentence.

    Beams live as rows, K per live sentence; each step takes the top 2K of K*V continuations per
    sentence (found among each beam's own top 2K), sets aside those among the top K that end in
    ``</s>`` (scored with the GNMT length penalty), and keeps the K best that do not. A sentence
    is done when its best candidate ends (so beam size 1 is exactly greedy), when no live beam can
    still beat its best finished hypothesis, or at ``max_len``; done sentences leave the batch as in ``greedy``.
    Everything is tensor operations over the whole batch; no per-hypothesis Python. ``weights``
    as in ``greedy_stream``.
    """
    K = beam_size
    B, S = enc.memory.shape[:2]
    dev = enc.memory.device
    state = decoder.init_state(enc, weights).expand(K)  # K hypothesis rows per sentence, one copy of its memory
    alive = torch.arange(B, device=dev)  # original sentence of each sentence in the batch
    finished = torch.zeros(B, dtype=torch.bool, device=dev)
    prev = torch.full((B * K,), bos, dtype=torch.long, device=dev)
    # only the first beam is live at the start, so the K beams do not all pick the same token
    beam_scores = torch.full((B, K), float("-inf"), device=dev)
    beam_scores[:, 0] = 0.0
    history = torch.empty(B * K, 0, dtype=torch.long, device=dev)
    attn_hist = None
    best_score = torch.full((B,), float("-inf"), device=dev)
    best_tokens = torch.full((B, max_len), eos, dtype=torch.long, device=dev)
    best_attn = None
    top_k_rank = torch.arange(2 * K, device=dev)[None, :] < K
    beam_offsets = torch.arange(K, device=dev)
    lp_max = length_penalty(torch.tensor(float(max_len)), alpha).item() if alpha > 0 else 1.0
    t = 0
    for t in range(max_len):
        Bl = alive.numel()
        logits, state, w = decoder.step(prev, state)
        logits = logits.float()  # Bl*K x V
        # a sentence's best 2K continuations are among its beams' own best 2K each: rank K*2K, not K*V
        n = min(2 * K, logits.size(-1))
        row_scores, row_tokens = topk_rows(logits, n)  # Bl*K x n
        # their log-probabilities: logits - logsumexp, with the exponentials taken in place (no
        # V-wide log_softmax output beside the logits; logits is not read again)
        top = row_scores[:, :1]
        row_scores = row_scores - logits.sub_(top).exp_().sum(-1, keepdim=True).log_().add_(top)
        cand = (beam_scores.view(Bl * K, 1) + row_scores).view(Bl, K * n)
        top_scores, top_idx = cand.topk(2 * K, dim=1)  # 2K: K survive after the </s> ones leave
        origin, token = top_idx // n, row_tokens.view(Bl, K * n).gather(1, top_idx)  # Bl x 2K
        is_eos = token == eos
        if t == max_len - 1:
            is_eos = torch.ones_like(is_eos)  # force-finish at the length limit
        # --- set aside finished hypotheses among the top K
        lp = length_penalty(torch.tensor(float(t + 1)), alpha).item() if alpha > 0 else 1.0
        fin = is_eos & top_k_rank & ~finished[:, None]
        norm = (top_scores / lp).masked_fill(~fin, float("-inf"))
        cand_best, j = norm.max(dim=1)  # Bl
        improve = cand_best > best_score[alive]
        if bool(improve.any()):
            li = improve.nonzero().squeeze(1)  # sentences in the batch with a better finished hypothesis
            b_idx = alive[li]
            src_row = li * K + origin[li, j[li]]
            best_score[b_idx] = cand_best[li]
            best_tokens[b_idx, :t] = history[src_row]
            best_tokens[b_idx, t] = token[li, j[li]]
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
        keep_scores, keep_pos = live.topk(K, dim=1)  # Bl x K
        keep_origin, keep_token = origin.gather(1, keep_pos), token.gather(1, keep_pos)
        bound = keep_scores[:, 0] / lp_max  # the best a live beam can still reach
        finished = finished | (best_score[alive] > bound) | torch.isinf(keep_scores[:, 0]) | is_eos[:, 0]
        if bool(finished.all()):
            break
        sel = (torch.arange(Bl, device=dev)[:, None] * K + keep_origin).view(-1)
        if _compact(finished):  # finished sentences leave the batch: drop their K rows
            stay = (~finished).nonzero().squeeze(1)
            rows = (stay[:, None] * K + beam_offsets).view(-1)
            sel, keep_scores, keep_token = sel[rows], keep_scores[stay], keep_token[stay]
            alive, finished = alive[stay], finished[stay]
            state = state.select(sel, stay)  # the hypotheses kept, and their sentences' memory
        else:
            state = state.reorder(sel)  # sel stays within each sentence's K rows
        history = torch.cat([history.index_select(0, sel), keep_token.view(-1, 1)], dim=1)
        if w is not None:
            step_attn = w.index_select(0, sel).unsqueeze(1)
            attn_hist = step_attn if attn_hist is None else torch.cat([attn_hist.index_select(0, sel), step_attn], 1)
        beam_scores = keep_scores.masked_fill(finished[:, None], float("-inf"))
        prev = keep_token.view(-1)
    T = t + 1
    return Hypotheses(best_tokens[:, :T], best_score, best_attn[:, :T] if best_attn is not None else None)
