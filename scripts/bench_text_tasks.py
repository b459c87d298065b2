#!/usr/bin/env python
"""Train an experiment preset of the text tasks (issue 4) and report its dev metric and speed.

    python scripts/bench_text_tasks.py sst2                         # the whole preset
    python scripts/bench_text_tasks.py ud_ewt_upos trainer.max_steps=2000
    nice -n 5 python scripts/bench_text_tasks.py tinyshakespeare trainer.max_epochs=3
    python scripts/bench_text_tasks.py sst2 --seeds 1,2,3,4,5       # an ensemble of five seeds

Presets: sst2, imdb, ud_ewt_upos, tinyshakespeare (conf/experiment/); anything after the preset is
a Hydra override. The run goes to outputs/bench/<preset>/<time>. The last line printed is one JSON
object: the monitored metric (best and final), wall-clock minutes (start-up, data loading and
validation included), training tokens per second (input tokens; characters for charlm), the
machine (torch threads, the CPUs the process may run on, e.g. under ``taskset``) and its load
average before and after. With ``--seeds`` one member is trained per seed (each printing its own
line), then the ensemble of their checkpoints (``--member best|last``) is evaluated on the dev set:
the last line gives its metric and the members' minutes summed.
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

PRESETS = ("sst2", "sst2_imdb", "imdb", "ud_ewt_upos", "tinyshakespeare")


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


def machine(load_before: tuple[float, ...]) -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "load_avg_before": [round(x, 2) for x in load_before],
            "load_avg_after": [round(x, 2) for x in os.getloadavg()]}


def train_preset(preset: str, overrides: list[str], run_dir: Path) -> dict:
    """Train ``experiment=<preset>`` with ``overrides`` into ``run_dir``; the JSON summary."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={preset}", "trainer.progress_bar=false",
                                                      *overrides])
    run_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    metrics = train(cfg, run_dir)
    minutes = (time.perf_counter() - t0) / 60
    summary = json.loads((run_dir / "metrics.json").read_text())
    monitor = summary["monitor"]
    return {
        "preset": preset,
        "overrides": overrides,
        "monitor": monitor,
        "best": summary["best"],
        "final": metrics.get(monitor),
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "minutes": round(minutes, 2),
        "steps": summary["step"],
        "epochs": summary["epoch"],
        "tokens_per_sec": logged_tokens_per_sec(run_dir / "tb"),
        "run_dir": str(run_dir),
        "machine": machine(load_before),
    }


def evaluate_ensemble(paths: list[str]) -> dict[str, float]:
    """Validation metrics of the ensemble of ``paths`` (their probabilities averaged)."""
    from seqlab.evaluate import restore

    task, _, _ = restore(paths, with_data=True, device="cpu")
    with torch.inference_mode():
        return task.evaluate("val")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preset", choices=PRESETS)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. trainer.max_steps=500")
    ap.add_argument("--out", default="outputs/bench", help="parent of the run directory")
    ap.add_argument("--seeds", default="", help="comma-separated seeds: train one member per seed, then "
                    "evaluate the ensemble (probabilities averaged); minutes are summed over members")
    ap.add_argument("--member", choices=("best", "last"), default="best",
                    help="with --seeds: each member's best (on dev) or last checkpoint")
    args = ap.parse_intermixed_args(argv)  # options may follow the overrides
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    register_schemas()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if not args.seeds:
        result = train_preset(args.preset, args.overrides, Path(args.out) / args.preset / stamp)
        print(json.dumps(result), flush=True)
        return result
    load_before = os.getloadavg()
    members = []
    for seed in args.seeds.split(","):
        run_dir = Path(args.out) / args.preset / f"{stamp}-seed{seed}"
        members.append(train_preset(args.preset, [*args.overrides, f"seed={seed}"], run_dir))
        print(json.dumps(members[-1]), flush=True)
    paths = [str(Path(m["run_dir"]) / "checkpoints" / f"{args.member}.pt") for m in members]
    t0 = time.perf_counter()
    metrics = evaluate_ensemble(paths)
    monitor = members[0]["monitor"]
    result = {
        "preset": args.preset,
        "overrides": args.overrides,
        "ensemble": {"seeds": args.seeds, "member_checkpoint": args.member, "checkpoints": paths},
        "monitor": monitor,
        "ensemble_value": metrics.get(monitor),
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "members_best": [m["best"] for m in members],
        "members_final": [m["final"] for m in members],
        "minutes": round(sum(m["minutes"] for m in members), 2),
        "eval_minutes": round((time.perf_counter() - t0) / 60, 2),
        "machine": machine(load_before),
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
