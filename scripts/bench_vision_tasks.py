"""Measure the vision-task targets of docs/vision_tasks.md.

    python scripts/bench_vision_tasks.py cache                 # frozen-encoder epoch 1 vs epoch 2 time
    python scripts/bench_vision_tasks.py runs --experiment synthetic_captioning --models lstm,lstm_attn
    python scripts/bench_vision_tasks.py runs --experiment synthetic_frames --models rnn,lstm \\
        --extra data=synthetic_frames_long

``runs`` trains each model from the preset (one process at a time), evaluates its best checkpoint on
the test split and prints a markdown table with the training minutes and the test metrics; extra
overrides apply to every run. Everything is offline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench_cache(args: argparse.Namespace) -> None:
    """Time two epochs of a frozen-encoder captioning run: the first fills the feature cache."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT / "tests"))
    import torch
    from conftest import compose_config
    from hydra.utils import instantiate

    from seqlab.config import to_spec
    from seqlab.data.batch import BucketBatchSampler

    if args.threads:
        torch.set_num_threads(args.threads)
    cache_dir = Path(tempfile.mkdtemp(prefix="seqlab-bench-"))
    over = [f"experiment={args.experiment}", f"cache_dir={cache_dir}", *args.extra]
    cfg = compose_config("train", over)
    t0 = time.perf_counter()
    corpus = instantiate(cfg.data, _convert_="all")
    task = instantiate(cfg.task, _convert_="all")(model=to_spec(cfg.model), data=corpus, cache_dir=str(cache_dir),
                                                  state=None)
    print(f"data + task: {time.perf_counter() - t0:.1f}s; backbone {getattr(cfg.task.encoder.backbone, 'value', cfg.task.encoder.backbone)}, "
          f"trainable={cfg.task.encoder.trainable}, {len(task.train_lengths())} training captions")
    opt = torch.optim.Adam([p for p in task.network.parameters() if p.requires_grad], lr=1e-3)
    sampler = BucketBatchSampler(task.train_lengths(), cfg.trainer.batch_size, 0)
    times = []
    for epoch in range(args.epochs):
        t = time.perf_counter()
        for idx in sampler:
            task.network.train()
            out = task.training_step(task.collate(idx))
            opt.zero_grad()
            out.loss.backward()
            opt.step()
        times.append(time.perf_counter() - t)
        print(f"epoch {epoch + 1}: {times[-1]:.1f}s" + (f"  ({times[0] / times[-1]:.1f}x faster than epoch 1)"
                                                     if epoch else ""))
    files = sorted((cache_dir / "features").glob("*.pt"))
    print("feature cache files:", ", ".join(f"{f.name} ({f.stat().st_size / 1e6:.1f} MB)" for f in files))


def run_models(args: argparse.Namespace) -> None:
    out_root = Path(args.out or tempfile.mkdtemp(prefix="seqlab-bench-runs-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    rows = []
    for model in args.models.split(","):
        run = out_root / model
        cmd = ["seqlab", "train", f"experiment={args.experiment}", f"model={model}", *args.extra,
               "trainer.progress_bar=false", f"hydra.run.dir={run}"]
        print("$", " ".join(cmd), flush=True)
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True)
        minutes = (time.perf_counter() - t) / 60
        ev = ["seqlab", "eval", f"ckpt_path={run / 'checkpoints' / 'best.pt'}", "split=test",
              f"hydra.run.dir={run / 'eval_test'}"]
        print("$", " ".join(ev), flush=True)
        subprocess.run(ev, env=env, check=True)
        metrics = json.loads((run / "eval_test" / "metrics.json").read_text())["metrics"]
        rows.append((model, minutes, metrics))
    keys = sorted({k for _, _, m in rows for k in m})
    print(f"\n| model | train min | {' | '.join(keys)} |")
    print("|" + "---|" * (len(keys) + 2))
    for model, minutes, m in rows:
        print(f"| {model} | {minutes:.1f} | " + " | ".join(f"{m[k]:.3g}" if k in m else "-" for k in keys) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="epoch 1 vs epoch 2 with a frozen encoder")
    c.add_argument("--experiment", default="coco_mini")
    c.add_argument("--epochs", type=int, default=2)
    c.add_argument("--threads", type=int, default=0)
    c.add_argument("extra", nargs="*", help="more Hydra overrides")
    r = sub.add_parser("runs", help="train + test-evaluate several model presets")
    r.add_argument("--experiment", default="synthetic_captioning")
    r.add_argument("--models", default="lstm,lstm_attn")
    r.add_argument("--out", default=None)
    r.add_argument("extra", nargs="*", help="more Hydra overrides for every run")
    args = p.parse_args()
    bench_cache(args) if args.cmd == "cache" else run_models(args)


if __name__ == "__main__":
    main()
