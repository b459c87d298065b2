#!/usr/bin/env python
"""Fine-tuning A/Bs over one language model: ``task.lm_pretrain`` runs once, later runs reuse it.

    python scripts/bench_finetune.py sst2 --lm-cache outputs/lm/sst2_a.pt seed=42    # trains the LM, saves it
    python scripts/bench_finetune.py sst2 --lm-cache outputs/lm/sst2_a.pt seed=1 task.pooling=concat

The first run with a given ``--lm-cache`` file trains the preset's language model as usual and
saves the pretrained embedding and RNN there; every later run loads them instead of pretraining
(~2 minutes a run for SST-2 instead of ~18), so fine-tuning choices can be compared over the *same*
language model with several seeds. The file must come from the same preset, text and vocabulary
(its shapes are checked). This is a measuring tool: the minutes it reports leave out the language
model, so they are not the preset's; a preset's own figure comes from ``bench_text_tasks.py``.
The last line printed is ``bench_text_tasks.py``'s JSON summary, with ``lm_cache`` added.
(Session 7's SST-2 A/Bs in docs/text_tasks.md were run this way.)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

import seqlab.tasks.sentiment as sentiment

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_text_tasks  # noqa: E402

log = logging.getLogger("bench_finetune")


def caching(path: Path):
    """``pretrain_encoder`` that loads the encoder from ``path`` if it exists, else trains and saves it."""
    train = sentiment.pretrain_encoder

    def pretrain_encoder(rnn, embed, stream, n_ids, skip_ids, spec, dropout, classes=None):
        if path.is_file():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            for name, module in (("rnn", rnn), ("embed", embed)):
                own = module.state_dict()
                if {k: v.shape for k, v in own.items()} != {k: v.shape for k, v in saved[name].items()}:
                    raise SystemExit(f"--lm-cache {path}: its {name} does not fit this run's (another preset, "
                                     "text or vocabulary?)")
                module.load_state_dict(saved[name])
            log.info("task.lm_pretrain: loaded from %s (not trained in this run)", path)
            return
        train(rnn, embed, stream, n_ids, skip_ids, spec, dropout, classes)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"rnn": rnn.state_dict(), "embed": embed.state_dict()}, path)
        log.info("task.lm_pretrain: saved to %s", path)

    return pretrain_encoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preset", choices=("sst2", "sst2_imdb", "imdb"))
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. seed=1 task.pooling=concat")
    ap.add_argument("--lm-cache", required=True, type=Path, help="the language model's file (made by the first run)")
    args = ap.parse_intermixed_args()
    existed = args.lm_cache.is_file()
    sentiment.pretrain_encoder = caching(args.lm_cache)
    result = bench_text_tasks.main([args.preset, *args.overrides])
    print(json.dumps({**result, "lm_cache": {"path": str(args.lm_cache), "loaded": existed}}), flush=True)


if __name__ == "__main__":
    main()
