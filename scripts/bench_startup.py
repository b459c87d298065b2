#!/usr/bin/env python
"""Start-up time of `seqlab train`: from the command to the first training step (issue 2 target: <= 10 s
with the tokenised data cached).

Runs `seqlab train` for one step, twice: the first run fills the token cache, the second is timed
(best of --repeats). The figure is an upper bound: it includes the one step, a one-sentence validation
and writing the checkpoints. Prints one JSON line.

    python scripts/bench_startup.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ARGS = ["trainer.max_steps=1", "trainer.limit_eval=1", "task.num_samples=0", "trainer.progress_bar=false"]


def run(tmp: str, env: dict, k: int) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "seqlab", "train", *ARGS, f"hydra.run.dir={tmp}/run{k}"],
                   env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", SEQLAB_CACHE=f"{tmp}/cache")
        cold = run(tmp, env, 0)
        warm = [run(tmp, env, k + 1) for k in range(args.repeats)]
    print(json.dumps({"cold_s": round(cold, 2), "cached_best_s": round(min(warm), 2),
                      "cached_runs_s": [round(w, 2) for w in warm]}))


if __name__ == "__main__":
    main()
