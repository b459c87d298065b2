"""Word vectors learned from raw text in minutes: skip-gram with negative sampling (word2vec).

Mikolov et al. 2013 as the original C tool does it: frequent words sub-sampled (``sample``), a
dynamic window (a context ``k`` words away is kept with chance ``(window - k + 1) / window``),
``negatives`` noise words per pair drawn from the unigram distribution to the power 0.75, plain
SGD with a learning rate falling linearly to nothing. Pairs are batched (the gradient is written
out and added to the rows with ``index_add_``, one update per batch instead of one per pair), so it
runs at torch speed on one CPU thread.

Used to pretrain embeddings within a training budget from the bundled unlabelled text (e.g. the
IMDB reviews for SST-2): ``scripts/pretrain_word_vectors.py`` writes a GloVe-format text file that
``task.embeddings.path`` reads.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from seqlab.errors import TrainingDiverged

log = logging.getLogger(__name__)


def build_vocab(sentences: Iterable[Sequence[str]], min_count: int, max_size: int) -> tuple[list[str], np.ndarray]:
    """Words seen at least ``min_count`` times (the ``max_size`` most frequent), by falling count."""
    counts = Counter(w for s in sentences for w in s)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))[:max_size]
    return words, np.array([counts[w] for w in words], dtype=np.float64)


def context_pairs(ids: np.ndarray, window: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(centre, context) pairs of one token stream, both directions, with word2vec's dynamic window."""
    centres, contexts = [], []
    n = len(ids)
    for k in range(1, window + 1):
        keep = rng.random(n - k) < (window - k + 1) / window
        a, b = ids[:-k][keep], ids[k:][keep]
        centres += [a, b]
        contexts += [b, a]
    return np.concatenate(centres), np.concatenate(contexts)


def train_skipgram(
    sentences: list[list[str]],
    dim: int = 256,
    window: int = 5,
    negatives: int = 5,
    min_count: int = 3,
    max_size: int = 100_000,
    sample: float = 1e-4,
    epochs: int = 2,
    lr: float = 0.025,
    batch_size: int = 4096,
    max_minutes: float = 0.0,
    seed: int = 0,
) -> tuple[list[str], torch.Tensor]:
    """Train skip-gram vectors on ``sentences`` (lists of tokens); returns the words and their input
    vectors (``len(words) x dim``). ``max_minutes`` (0: no limit) stops early, the rate then ending
    where it was."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    words, counts = build_vocab(sentences, min_count, max_size)
    index = {w: i for i, w in enumerate(words)}
    stream = np.array([index.get(w, -1) for s in sentences for w in s], dtype=np.int64)
    stream = stream[stream >= 0]  # rare words removed before windows are taken, as word2vec does
    freq = counts / counts.sum()
    keep_p = np.minimum(1.0, (np.sqrt(freq / sample) + 1) * sample / freq) if sample > 0 else np.ones_like(freq)
    noise = torch.tensor(counts**0.75 / (counts**0.75).sum(), dtype=torch.float)
    V = len(words)
    w_in = torch.empty(V, dim).uniform_(-0.5 / dim, 0.5 / dim)
    w_out = torch.zeros(V, dim)
    pairs = len(stream) * float(keep_p[stream].mean()) * (window + 1)  # expected pairs per epoch
    total_batches = max(1, math.ceil(pairs / batch_size) * epochs)
    step, seen = 0, 0
    log.info("skip-gram: %d words, %d tokens, dim %d, window %d, %d epochs", V, len(stream), dim, window, epochs)
    label = torch.zeros(1, 1 + negatives)
    label[0, 0] = 1.0
    for epoch in range(epochs):
        kept = stream[rng.random(len(stream)) < keep_p[stream]]
        centre, context = context_pairs(kept, window, rng)
        order = rng.permutation(len(centre))
        centre, context = torch.from_numpy(centre[order]), torch.from_numpy(context[order])
        for s in range(0, len(centre), batch_size):
            c, o = centre[s : s + batch_size], context[s : s + batch_size]  # N, N
            neg = torch.multinomial(noise, len(c) * negatives, replacement=True).view(len(c), negatives)
            targets = torch.cat([o[:, None], neg], dim=1)  # N x (1+K)
            u = w_in[c]  # N x D
            v = w_out[targets]  # N x (1+K) x D
            p = torch.sigmoid(torch.bmm(v, u[:, :, None]).squeeze(-1))  # N x (1+K)
            # loss = -log p_pos - sum log(1 - p_neg); its gradient w.r.t. each score is p - label
            g = p - label  # N x (1+K)
            rate = lr * max(1e-4, 1 - step / total_batches)
            w_in.index_add_(0, c, torch.bmm(g[:, None, :], v).squeeze(1), alpha=-rate)
            w_out.index_add_(0, targets.flatten(), (g[:, :, None] * u[:, None, :]).flatten(0, 1), alpha=-rate)
            step += 1
            seen += len(c)
            if step % 200 == 0:
                if not torch.isfinite(w_in).all():
                    raise TrainingDiverged(f"skip-gram diverged at step {step}: try a lower lr ({lr}) or batch size "
                                           f"({batch_size}); a small vocabulary needs small batches")
                loss = -(torch.log(p[:, 0] + 1e-7).sum() + torch.log(1 - p[:, 1:] + 1e-7).sum()) / len(c)
                log.info("skip-gram epoch %d step %d/%d  loss %.3f  %.0f pairs/s", epoch + 1, step,
                         total_batches, float(loss), seen / (time.perf_counter() - t0))
            if max_minutes and time.perf_counter() - t0 > 60 * max_minutes:
                log.info("skip-gram: stopped after %.1f minutes (epoch %d, step %d)", max_minutes, epoch + 1, step)
                return words, w_in
    return words, w_in
    return words, w_in
