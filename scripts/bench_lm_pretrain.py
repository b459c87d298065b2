#!/usr/bin/env python
"""In-process A/B of language-model pretraining speed (docs/text_tasks.md, session 6).

    python scripts/bench_lm_pretrain.py --compare dropout    # bernoulli_ masks vs seqlab's uniform masks
    python scripts/bench_lm_pretrain.py --compare heads      # the module's fp32 loss vs adaptive_nll in bf16

The SST-2 preset's BiLSTM (embeddings 256, 2 x 256) over the first 6,000 IMDB reviews (words seen 3+
times), bf16; each variant runs ``--steps`` updates, alternated ``--repeats`` times; prints tokens/s.
The first pair includes warm-up.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import seqlab.models.bilm as bilm
from seqlab.data.raw_text import read_text
from seqlab.data.vocab import Vocab
from seqlab.models.dropout import dropout
from seqlab.models.encoders import make_rnn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare", choices=["dropout", "heads"], required=True)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=4)
    args = ap.parse_args()
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
        variants = {"module fp32": lambda head, x, t, bf16=False: head(x.float(), t).loss, "adaptive_nll bf16": new}
        slot, drop_p = "adaptive_nll", 0.0
    for _ in range(args.repeats):
        for name, fn in variants.items():
            setattr(bilm, slot, fn)
            r = bilm.pretrain_bilm(rnn, embed, stream, len(vocab), (vocab.pad_id, vocab.unk_id), minutes=0,
                                   steps=args.steps, precision="bf16", dropout=drop_p, log_every=10**6)
            print(f"{name}: {r.tokens / r.seconds:,.0f} tok/s", flush=True)


if __name__ == "__main__":
    main()
