"""Language-model pretraining of a (bidirectional) RNN encoder on unlabelled text: ``pretrain_bilm``.

ELMo (Peters et al. 2018) and ULMFiT (Howard & Ruder 2018) in the small: before a text classifier
or tagger is trained on its labels, its own embedding and RNN are trained as language models on
raw text: the forward direction's state at position t predicts token t+1, the backward
direction's predicts token t-1 (each direction sees only its own side, so neither can copy the
answer). The vocabulary softmax of each direction is an adaptive softmax (Grave et al. 2017,
``nn.AdaptiveLogSoftmaxWithLoss``): the frequent words get full-size logits, rarer ones smaller
clusters, which makes it several times cheaper than a full softmax for a CPU. The softmax heads are
thrown away afterwards; only the encoder's weights carry over into the task.

The text is one stream of token ids cut into segments of ``seq_len``; the budget is wall-clock
minutes (counted in the run's time, like ``task.embeddings.pretrain``) and/or a number of steps.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from seqlab.models.dropout import dropout as drop
from seqlab.models.heads import run_padded
from seqlab.models.output_loss import linear_cross_entropy

log = logging.getLogger("seqlab")


@dataclass
class BiLMResult:
    steps: int
    tokens: int
    seconds: float
    first_loss: float  # mean loss (nats per predicted token) of the first logged window
    last_loss: float  # ... and of the last


def frequency_ranks(ids: torch.Tensor, skip: Sequence[int], size: int) -> tuple[torch.Tensor, int]:
    """Per id in ``range(size)`` its rank by frequency in ``ids`` (0 = the most frequent; the
    adaptive softmax wants the frequent words first), and how many ids are ranked; ids never seen
    or in ``skip`` get -1 (never predicted)."""
    counts = torch.bincount(ids, minlength=size)
    counts[list(skip)] = 0
    n = int((counts > 0).sum())
    rank = torch.full((size,), -1, dtype=torch.long)
    rank[counts.argsort(descending=True, stable=True)[:n]] = torch.arange(n)
    return rank, n


def adaptive_nll(head: nn.AdaptiveLogSoftmaxWithLoss, x: torch.Tensor, target: torch.Tensor,
                 bf16: bool = False) -> torch.Tensor:
    """Mean negative log-likelihood of ``target`` (N) under ``head`` for the states ``x`` (N x H):
    ``head(x, target).loss``, computed cluster by cluster with ``linear_cross_entropy`` (the
    output layer and its loss in one pass: no log-softmax of the logits is kept, and the gradient
    is formed in the forward pass), and with ``bf16`` its matrix products in bfloat16 (the
    softmaxes stay in float32; under autocast the module itself mixes the two and fails on a CPU)."""
    x = x if bf16 else x.float()
    short = head.shortlist_size
    cluster = torch.bucketize(target, target.new_tensor(head.cutoffs), right=True)  # 0 = shortlist
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        first = torch.where(cluster == 0, target, short + cluster - 1)  # a rarer word: its cluster's entry
        total = linear_cross_entropy(x, head.head.weight, head.head.bias, first)[0]
        for i, (project, out) in enumerate(head.tail, start=1):
            rows = (cluster == i).nonzero().squeeze(1)
            if rows.numel():
                within = target[rows] - head.cutoffs[i - 1]
                total = total + linear_cross_entropy(project(x[rows]), out.weight, out.bias, within)[0]
    return total / max(target.numel(), 1)


def first_layer(rnn: nn.RNNBase) -> nn.RNNBase:
    """``rnn`` itself when it has one layer, else a one-layer RNN made of its first layer's own
    parameters (shared, so training one trains the other). A bidirectional RNN's second layer
    reads both directions of the first, so its forward states have seen the tokens they would
    predict: only the first layer (and the embedding) can be pretrained this way, as in ELMo's
    separate forward and backward stacks."""
    if rnn.num_layers == 1:
        return rnn
    one = type(rnn)(rnn.input_size, rnn.hidden_size, num_layers=1, bias=rnn.bias, batch_first=rnn.batch_first,
                    bidirectional=rnn.bidirectional, **({"nonlinearity": rnn.nonlinearity} if isinstance(rnn, nn.RNN) else {}))
    for name in list(one._parameters):
        one._parameters[name] = getattr(rnn, name)  # the same Parameter objects, l0 names
    return one.to(next(rnn.parameters()).device)


def lm_pairs(out: torch.Tensor, x: torch.Tensor, hidden: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(states, the tokens they predict) per direction, from the RNN output ``out`` (B x S x D*H)
    over tokens ``x`` (B x S): the forward state at t predicts token t+1, the backward one t-1."""
    pairs = [(out[:, :-1, :hidden], x[:, 1:])]
    if out.size(-1) == 2 * hidden:
        pairs.append((out[:, 1:, hidden:], x[:, :-1]))
    return pairs


def pretrain_bilm(
    rnn: nn.RNNBase,
    embed: nn.Module,
    stream: torch.Tensor | Sequence[int],
    vocab_size: int,
    skip_ids: Sequence[int],
    *,
    minutes: float = 10.0,
    steps: int = 0,
    seq_len: int = 64,
    batch_size: int = 64,
    lr: float = 2e-3,
    cutoffs: Sequence[int] = (2000, 10000),
    dropout: float = 0.0,
    grad_clip: float = 1.0,
    precision: str = "fp32",
    seed: int = 0,
    log_every: int = 100,
    classes: torch.Tensor | None = None,
) -> BiLMResult:
    """Train ``rnn`` (batch-first; with the parameters behind ``embed``) as a forward (and, when
    bidirectional, backward) language model over ``stream``; stops after ``minutes`` or ``steps``
    (0: no limit), whichever comes first. ``embed`` (trained too): B x S ids -> B x S x features.
    Tokens in ``skip_ids`` (padding, ``<unk>``) are read but never predicted. ``classes`` (one
    entry per id, -1 = never predicted) replaces the default targets, the ids themselves ranked by
    frequency: a tagger reads cased word forms but predicts their lower-cased words. Of a
    multi-layer RNN only the first layer is trained (``first_layer``)."""
    if minutes <= 0 and steps <= 0:
        raise ValueError("pretrain_bilm needs a budget: minutes > 0 or steps > 0")
    if len(stream) < 2 * seq_len:
        raise ValueError(f"pretrain_bilm: the text has {len(stream)} tokens, fewer than two segments of {seq_len}")
    stream = torch.as_tensor(stream, dtype=torch.long)
    device = next(rnn.parameters()).device
    lm_rnn = first_layer(rnn)
    if classes is None:
        rank, n_classes = frequency_ranks(stream, skip_ids, vocab_size)
    else:
        if classes.shape != (vocab_size,):
            raise ValueError(f"pretrain_bilm: classes has shape {tuple(classes.shape)}, not ({vocab_size},)")
        rank, n_classes = classes.long(), int(classes.max()) + 1
    rank = rank.to(device)
    dirs = 2 if rnn.bidirectional else 1
    H = rnn.hidden_size
    if n_classes < 2:
        raise ValueError(f"pretrain_bilm: the text has {n_classes} distinct words to predict; it needs two or more")
    cut = [c for c in cutoffs if 0 < c < n_classes] or [n_classes - 1]  # nn.AdaptiveLogSoftmaxWithLoss needs one
    heads = nn.ModuleList(nn.AdaptiveLogSoftmaxWithLoss(H, n_classes, cut, div_value=4.0) for _ in range(dirs))
    heads.to(device)
    params = [p for p in [*embed.parameters(), *lm_rnn.parameters(), *heads.parameters()] if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, fused=True)
    n_seg = len(stream) // seq_len
    batch_size = min(batch_size, n_seg)  # a text shorter than one batch still makes (smaller) batches
    data = stream[: n_seg * seq_len].view(n_seg, seq_len)
    order = list(range(n_seg))
    rng = random.Random(seed)
    bf16 = precision == "bf16"
    was_training = lm_rnn.training
    lm_rnn.train()
    t0 = time.perf_counter()
    step = tokens = 0
    window: list[float] = []
    first = last = float("nan")
    lengths = torch.full((batch_size,), seq_len, dtype=torch.long)

    def over() -> bool:
        return (steps > 0 and step >= steps) or (minutes > 0 and time.perf_counter() - t0 >= minutes * 60)

    while not over():
        rng.shuffle(order)
        for lo in range(0, n_seg - batch_size + 1, batch_size):
            x = data[order[lo : lo + batch_size]].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                inputs = drop(embed(x), dropout)
                out = drop(run_padded(lm_rnn, inputs, lengths), dropout)  # B x S x dirs*H
            loss = 0.0
            for head, (states, target) in zip(heads, lm_pairs(out, x, H), strict=True):
                cls = rank[target].reshape(-1)
                keep = cls >= 0
                loss = loss + adaptive_nll(head, states.reshape(-1, H)[keep], cls[keep], bf16)
            loss = loss / dirs
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            step, tokens = step + 1, tokens + x.numel()
            window.append(loss.item())
            if not math.isfinite(window[-1]):
                raise FloatingPointError(f"language-model pretraining diverged at step {step} (loss {window[-1]})")
            if len(window) == log_every or over():
                mean = sum(window) / len(window)
                first = mean if math.isnan(first) else first
                last = mean
                el = time.perf_counter() - t0
                log.info("LM pretraining: step %d  loss %.3f  ppl %.1f  %.0f tok/s  %.1f min", step, mean,
                         math.exp(min(mean, 50)), tokens / el, el / 60)
                window = []
            if over():
                break
    lm_rnn.train(was_training)
    return BiLMResult(step, tokens, time.perf_counter() - t0, first, last)
