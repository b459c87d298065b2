#!/usr/bin/env python
"""Page faults and seconds per step of language-model pretraining, with and without
``trainer.reuse_freed_memory`` (docs/text_tasks.md, session 8).

    python scripts/bench_page_faults.py --steps 60 --repeats 2

The SST-2 preset's BiLSTM (embeddings 256, 2 x 256, the IMDB vocabulary of words seen 3+ times) over
the first 8,000 IMDB reviews, bf16, dropout 0.5. Each variant runs in a fresh process (glibc's
setting cannot be undone in one), alternated ``--repeats`` times: 20 warm-up steps, then ``--steps``
timed ones; prints minor page faults and seconds per timed step.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time


def child(variant: str, steps: int) -> None:
    import torch

    import seqlab.models.bilm as bilm
    from seqlab.data.raw_text import read_text
    from seqlab.data.vocab import Vocab
    from seqlab.models.encoders import make_rnn
    from seqlab.runtime import reuse_freed_memory

    if variant == "reuse":
        reuse_freed_memory()
    texts = read_text("imdb")
    vocab = Vocab.build(texts, 3)
    stream = [i for s in texts[:8000] for i in vocab.encode(s)]
    torch.manual_seed(0)
    embed = torch.nn.Embedding(len(vocab), 256)
    rnn = make_rnn("lstm", 256, 256, 1, bidirectional=True)

    def run(n: int) -> None:
        bilm.pretrain_bilm(rnn, embed, stream, len(vocab), (vocab.pad_id, vocab.unk_id), minutes=0, steps=n,
                           precision="bf16", dropout=0.5, log_every=10**6)

    run(20)
    faults, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    run(steps)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    print(f"{variant}: {faults / steps:,.0f} minor page faults a step, {(time.perf_counter() - t0) / steps:.3f} s a step",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--child", choices=["default", "reuse"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.steps)
    for _ in range(args.repeats):
        for variant in ("default", "reuse"):
            subprocess.run([sys.executable, __file__, "--child", variant, "--steps", str(args.steps)], check=True)


if __name__ == "__main__":
    main()
