#!/usr/bin/env python
"""In-process A/B of language-model pretraining speed (docs/text_tasks.md, session 6).

    python scripts/bench_lm_pretrain.py --compare dropout    # bernoulli_ masks vs seqlab's uniform masks
    python scripts/bench_lm_pretrain.py --compare heads      # the module's fp32 loss, log-softmax in bf16, adaptive_nll

The SST-2 preset's BiLSTM (embeddings 256, 2 x 256) over the first 6,000 IMDB reviews (words seen 3+
times), bf16; each variant runs ``--steps`` updates, alternated ``--repeats`` times; prints tokens/s.
The first round includes warm-up. ``heads`` also runs session 6's ``adaptive_nll`` (a bf16
log-softmax per cluster, kept below as ``logsoftmax_nll``) against the current fused one (session 8).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import seqlab.models.bilm as bilm
from seqlab.data.raw_text import read_text
from seqlab.data.vocab import Vocab
from seqlab.models.dropout import dropout
from seqlab.models.encoders import make_rnn
from seqlab.runtime import reuse_freed_memory


def logsoftmax_nll(head: nn.AdaptiveLogSoftmaxWithLoss, x: torch.Tensor, target: torch.Tensor,
                   bf16: bool = False) -> torch.Tensor:
    """Session 6's ``adaptive_nll``: each cluster's logits in bf16, their log-softmax in fp32, gathered."""
    def linear(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        with torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=bf16):
            return module(inputs).float()

    short = head.shortlist_size
    cluster = torch.bucketize(target, target.new_tensor(head.cutoffs), right=True)
    logp = linear(head.head, x).log_softmax(-1).gather(1, torch.where(cluster == 0, target, short + cluster - 1)[:, None])
    logp = logp.squeeze(1)
    for i, tail in enumerate(head.tail, start=1):
        rows = (cluster == i).nonzero().squeeze(1)
        if rows.numel():
            within = linear(tail, x[rows]).log_softmax(-1).gather(1, (target[rows] - head.cutoffs[i - 1])[:, None])
            logp = logp.index_add(0, rows, within.squeeze(1))
    return -logp.mean()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare", choices=["dropout", "heads"], required=True)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=4)
    args = ap.parse_args()
    reuse_freed_memory()  # as seqlab train does (trainer.reuse_freed_memory)
    sents = read_text("imdb")[:6000]
    vocab = Vocab.build(sents, 3)
    stream = [i for s in sents for i in vocab.encode(s)]
    torch.manual_seed(0)
    embed = torch.nn.Embedding(len(vocab), 256)
    rnn = make_rnn("lstm", 256, 256, 1, bidirectional=True)
    if args.compare == "dropout":
        variants = {"F.dropout": lambda x, p: F.dropout(x, p, True), "seqlab dropout": dropout}
        slot, drop_p = "drop", 0.5
    else:
        new = bilm.adaptive_nll
        variants = {"module fp32": lambda head, x, t, bf16=False: head(x.float(), t).loss,
                    "log-softmax bf16 (session 6)": logsoftmax_nll, "adaptive_nll bf16 (fused)": new}
        slot, drop_p = "adaptive_nll", 0.0
    for _ in range(args.repeats):
        for name, fn in variants.items():
            setattr(bilm, slot, fn)
            r = bilm.pretrain_bilm(rnn, embed, stream, len(vocab), (vocab.pad_id, vocab.unk_id), minutes=0,
                                   steps=args.steps, precision="bf16", dropout=drop_p, log_every=10**6)
            print(f"{name}: {r.tokens / r.seconds:,.0f} tok/s", flush=True)


if __name__ == "__main__":
    main()
