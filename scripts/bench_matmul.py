"""Does this CPU gain from bf16? Matrix-product speed in fp32, bf16 and fp16, and what
``precision=fast`` picks here.

The shapes are the translation benchmark's (docs/translation.md): a square 4096 product, the output
layer over a batch's ~860 target tokens and over one decoder step's 64 rows, the decoder's
recurrent product and the encoder's input projection. On a CPU with AMX tiles bf16 runs several
times faster than fp32; with AVX-512-BF16 but no AMX, it ran at about half fp32's speed.

    python scripts/bench_matmul.py              # one JSON line per shape, then a summary line
    python scripts/bench_matmul.py --repeats 50
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from seqlab.runtime import autocast_dtype, cpu_features, precision_name  # noqa: E402

SHAPES = {  # rows x inner -> out (F.linear(x: rows x inner, w: out x inner))
    "square 4096": (4096, 4096, 4096),
    "output layer, a batch": (860, 512, 7859),
    "output layer, a decoder step": (64, 512, 7859),
    "decoder recurrence, a step": (64, 1280, 2048),
    "encoder input projection": (860, 256, 1024),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def gflops(rows: int, inner: int, out: int, dtype: torch.dtype, repeats: int) -> float:
    x, w = torch.randn(rows, inner, dtype=dtype), torch.randn(out, inner, dtype=dtype)
    for _ in range(2):  # warm-up: kernel selection and caches
        F.linear(x, w)
    n = max(2, repeats // 10) if rows * inner * out > 10**10 else repeats
    t0 = time.perf_counter()
    for _ in range(n):
        F.linear(x, w)
    return 2 * rows * inner * out * n / (time.perf_counter() - t0) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.manual_seed(0)
    ratios = []
    for name, (rows, inner, out) in SHAPES.items():
        line = {"shape": name, "rows_inner_out": [rows, inner, out]}
        for dname, dtype in DTYPES.items():
            line[f"{dname}_gflop_s"] = round(gflops(rows, inner, out, dtype, args.repeats), 1)
        ratios.append(line["bf16_gflop_s"] / line["fp32_gflop_s"])
        print(json.dumps(line), flush=True)
    print(json.dumps({"cpu": cpu_features(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "bf16_over_fp32_min_max": [round(min(ratios), 2), round(max(ratios), 2)],
                      "precision_fast_picks": precision_name(autocast_dtype("fast", torch.device("cpu")))}))


if __name__ == "__main__":
    main()
