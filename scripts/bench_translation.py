#!/usr/bin/env python
"""Training and decoding throughput of the benchmark translation model (issue 3).

The model is the one ../shared/bench/peers/ trains with OpenNMT-py and JoeyNMT: Multi30k en->de
(tokenised lower-cased), vocab min_freq 2, emb 256, 1-layer biLSTM 2x256, LSTM decoder 512 with
input feeding and additive attention, dropout 0.3, Adam 1e-3, clip 1.0, 64 sentences per update.
Tokens are counted as the peers' harness does: target = words + </s>, source = words.

    python scripts/bench_translation.py --steps 100                  # train throughput (fp32)
    python scripts/bench_translation.py --steps 100 --precision bf16
    # as the peers' harness does: one epoch (454 updates), then decode with that model
    python scripts/bench_translation.py --warmup 10 --steps 444 --precision bf16 --save /tmp/epoch1.pt
    # decoding alone, in its own process (so that peak RSS is the decoder's)
    python scripts/bench_translation.py --steps 0 --ckpt /tmp/epoch1.pt --precision bf16

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from seqlab.config import register_schemas, to_spec  # noqa: E402
from seqlab.evaluate import restore_task  # noqa: E402
from seqlab.runtime import (  # noqa: E402
    CONF_DIR,
    autocast_dtype,
    cpu_features,
    lean_decoding_memory,
    precision_name,
    reuse_freed_memory,
    seed_everything,
)
from seqlab.training import checkpoint as ckpt_io  # noqa: E402
from seqlab.training.trainer import Trainer, precision_context  # noqa: E402

BENCH_OVERRIDES = [
    "task=translation", "data=multi30k", "data.src_lang=en", "data.tgt_lang=de", "model=lstm_attn",
    "model.emb_size=256", "model.hidden_size=512", "model.num_layers=1", "model.bidirectional=true",
    "model.dropout=0.3", "model.attention=additive", "model.attention_style=luong",
    "model.input_feeding=true", "model.decoder_init=bridge", "task.vocab.min_freq=2",
    "optimizer.lr=1e-3", "trainer.grad_clip=1.0", "trainer.batch_size=64", "trainer.bucket=true",
]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(overrides: list[str]):
    register_schemas()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=BENCH_OVERRIDES + overrides)
    seed_everything(cfg.seed)
    corpus = instantiate(cfg.data, _convert_="all")
    task = instantiate(cfg.task, _convert_="all")(model=to_spec(cfg.model), data=corpus, cache_dir=cfg.cache_dir)
    return cfg, task


def bench_train(cfg, task, steps: int, warmup: int, window: int) -> dict:
    trainer_cfg = to_spec(cfg.trainer)
    trainer = Trainer(trainer_cfg, cfg.seed, {})
    task.to(trainer.device)
    optimizer = instantiate(cfg.optimizer)(params=task.network.parameters())
    sampler = task.make_sampler(task.train_lengths(), trainer_cfg.batch_size, cfg.seed, trainer_cfg.bucket,
                                trainer_cfg.bucket_pool)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    params = list(task.network.parameters())
    trainer.checkpointer = type("C", (), {"last_path": Path("/nonexistent")})()
    task.network.train()
    rates, src_rates, sec_per_update = [], [], []
    tok = src_tok = n = 0
    t0 = None
    it = iter(sampler)
    for i in range(warmup + steps):
        try:
            idx = next(it)
        except StopIteration:
            it = iter(sampler)
            idx = next(it)
        out = trainer._train_step(task, task.collate(idx), optimizer, scaler, params)
        if i + 1 == warmup:
            t0 = time.perf_counter()
        elif i + 1 > warmup:
            tok, src_tok, n = tok + out.n_tokens, src_tok + out.n_src_tokens, n + 1
            if n == window:
                dt = time.perf_counter() - t0
                rates.append(tok / dt)
                src_rates.append((tok + src_tok) / dt)
                sec_per_update.append(dt / n)
                tok = src_tok = n = 0
                t0 = time.perf_counter()
    if not rates:
        return {}
    return {
        "train_tgt_tok_per_s": round(statistics.median(rates), 1),
        "train_src_tgt_tok_per_s": round(statistics.median(src_rates), 1),
        "sec_per_update": round(statistics.median(sec_per_update), 4),
        "train_windows": len(rates),
    }


def read_test_pairs(data_cfg) -> tuple[list[list[str]], list[list[str]]]:
    """The test split's tokenised source and reference read straight from its files, as the peers'
    ``translate`` reads a source file: a decoding-only process loads no training data."""
    sides = []
    for path in (data_cfg.test.src, data_cfg.test.tgt):
        with (gzip.open(path, "rt", encoding="utf-8") if str(path).endswith(".gz") else open(path, encoding="utf-8")) as f:
            sides.append([line.split() for line in f.read().splitlines()])
    return sides[0], sides[1]


DECODES = {
    "greedy": {"strategy": "greedy", "max_len": 100, "batch_size": 64},
    "beam5": {"strategy": "beam", "beam_size": 5, "max_len": 100, "batch_size": 64},
}


def bench_decode(task, repeats: int, pairs=None, which=tuple(DECODES), quantize: str = "none") -> dict:
    src, tgt = pairs if pairs is not None else task.splits["test"]
    out = {}
    for name in which:
        decode = {**DECODES[name], "quantize": quantize}
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with torch.inference_mode():
                hyps = task.translate_tokens(src, decode)
            times.append(time.perf_counter() - t0)
        from seqlab.metrics import bleu

        score, sig = bleu([h.text for h in hyps], [" ".join(t) for t in tgt])
        out[f"{name}_sent_per_s"] = round(len(src) / statistics.median(times), 1)
        out[f"{name}_bleu"] = round(score, 2)
        out["bleu_signature"] = sig
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100, help="timed training updates (after warm-up)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--window", type=int, default=25, help="updates per timing window (median reported)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fast"],
                    help="fast: bf16 where its products beat fp32's (AMX, or measured), else fp32 (as the presets' trainer.precision=fast)")
    ap.add_argument("--ckpt", help="decode with this checkpoint (else the model trained here)")
    ap.add_argument("--save", help="write the trained model here (a checkpoint that --ckpt and seqlab eval read)")
    ap.add_argument("--decode-repeats", type=int, default=2)
    ap.add_argument("--no-decode", action="store_true")
    ap.add_argument("--decode", default="greedy,beam5",
                    help="which decodings, comma-separated (one per process gives each its own peak RSS, as the "
                         "peers' separate translate runs do)")
    ap.add_argument("--quantize", default="none", choices=["none", "int8"],
                    help="int8: the decoder step's products in int8 (decode.quantize)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = ap.parse_args()
    if args.precision == "fast":  # recorded as what it resolved to
        args.precision = precision_name(autocast_dtype("fast", torch.device("cpu")))
    overrides = [f"trainer.precision={args.precision}", *args.overrides]
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "cpu": cpu_features(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "precision": args.precision,
        "quantize": args.quantize,
        "overrides": overrides, **({"ckpt": args.ckpt} if args.ckpt else {}),
    }
    if args.steps > 0 or not args.ckpt:
        cfg, task = build(overrides)
        result["params"] = sum(p.numel() for p in task.network.parameters())
    if args.steps > 0:
        if cfg.trainer.reuse_freed_memory:  # as seqlab train does
            reuse_freed_memory()
        result.update(bench_train(cfg, task, args.steps, args.warmup, args.window))
        if args.save:
            config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
            ckpt_io.atomic_save(ckpt_io.model_checkpoint(task, config, args.warmup + args.steps), Path(args.save))
    if not args.no_decode:
        if args.ckpt:  # decoding only: the task comes from the checkpoint, not from a training build
            lean_decoding_memory()  # as seqlab eval / predict do, and restored as they restore it
            ckpt = ckpt_io.load(args.ckpt)
            task, run_cfg = restore_task(ckpt, with_data=False, precision=args.precision)
            del ckpt
            result["params"] = sum(p.numel() for p in task.network.parameters())
            pairs = read_test_pairs(run_cfg.data)
        else:
            pairs = None
        with precision_context(args.precision, torch.device("cpu")):
            result.update(bench_decode(task, args.decode_repeats, pairs, args.decode.split(","), args.quantize))
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
