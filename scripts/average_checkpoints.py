#!/usr/bin/env python
"""Average the weights of several checkpoints of one run into a new checkpoint (for eval/predict).

    python scripts/average_checkpoints.py outputs/run/checkpoints/step_*.pt --last 3 -o avg.pt
    seqlab eval ckpt_path=avg.pt split=test decode.strategy=beam
"""

from __future__ import annotations

import argparse
import re
import sys

from seqlab.errors import SeqlabError
from seqlab.training.checkpoint import atomic_save, average


def step_of(path: str) -> int:
    m = re.search(r"step_(\d+)\.pt$", path)
    return int(m.group(1)) if m else -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--last", type=int, default=0, help="only the N latest (by step_<N>.pt)")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    paths = sorted(args.checkpoints, key=step_of)
    if args.last:
        paths = paths[-args.last :]
    try:
        atomic_save(average(paths), args.output)
    except SeqlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"averaged {len(paths)} checkpoints -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
