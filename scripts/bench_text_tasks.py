#!/usr/bin/env python
"""Train an experiment preset of the text tasks (issue 4) and report its dev metric and speed.

    python scripts/bench_text_tasks.py sst2                         # the whole preset
    python scripts/bench_text_tasks.py ud_ewt_upos trainer.max_steps=2000
    nice -n 5 python scripts/bench_text_tasks.py tinyshakespeare trainer.max_epochs=3

Presets: sst2, imdb, ud_ewt_upos, tinyshakespeare (conf/experiment/); anything after the preset is
a Hydra override. The run goes to outputs/bench/<preset>/<time>. The last line printed is one JSON
object: the monitored metric (best and final), wall-clock minutes (start-up, data loading and
validation included), training tokens per second (input tokens; characters for charlm), the
machine (torch threads, the CPUs the process may run on, e.g. under ``taskset``) and its load
average before and after.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from seqlab.config import register_schemas  # noqa: E402
from seqlab.runtime import CONF_DIR  # noqa: E402
from seqlab.train import train  # noqa: E402

PRESETS = ("sst2", "imdb", "ud_ewt_upos", "tinyshakespeare")


def logged_tokens_per_sec(tb_dir: Path) -> float | None:
    """Median of the ``train/tokens_per_sec`` the trainer logged (None if nothing was logged)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return None
    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    if "train/tokens_per_sec" not in acc.Tags().get("scalars", []):
        return None
    return statistics.median(e.value for e in acc.Scalars("train/tokens_per_sec"))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preset", choices=PRESETS)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. trainer.max_steps=500")
    ap.add_argument("--out", default="outputs/bench", help="parent of the run directory")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    register_schemas()
    overrides = [f"experiment={args.preset}", "trainer.progress_bar=false", *args.overrides]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    run_dir = Path(args.out) / args.preset / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    metrics = train(cfg, run_dir)
    minutes = (time.perf_counter() - t0) / 60
    summary = json.loads((run_dir / "metrics.json").read_text())
    monitor = summary["monitor"]
    result = {
        "preset": args.preset,
        "overrides": args.overrides,
        "monitor": monitor,
        "best": summary["best"],
        "final": metrics.get(monitor),
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "minutes": round(minutes, 2),
        "steps": summary["step"],
        "epochs": summary["epoch"],
        "tokens_per_sec": logged_tokens_per_sec(run_dir / "tb"),
        "run_dir": str(run_dir),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                    "load_avg_before": [round(x, 2) for x in load_before],
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
