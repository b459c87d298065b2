#!/usr/bin/env bash
# Every seqlab figure of docs/translation.md's speed tables, one JSON line each, appended to $1
# (default outputs/bench_translation.jsonl). Run on an otherwise idle machine; takes ~8 minutes on
# 2 cores. The peers: ../shared/bench/peers/run_all.sh t1 (see docs/translation.md).
#   bash scripts/bench_translation_all.sh docs/bench/seqlab_$(date +%F).jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-outputs/bench_translation.jsonl}
ckpt=${CKPT:-/tmp/seqlab_epoch1.pt}
mkdir -p "$(dirname "$out")"
b() { echo "+ $*" >&2; python scripts/bench_translation.py "$@" | tail -n 1 | tee -a "$out"; }
b --warmup 10 --steps 444 --precision bf16 --no-decode --save "$ckpt"   # one epoch, as the peers
b --warmup 10 --steps 444 --precision bf16 --no-decode
b --warmup 10 --steps 200 --precision fp32 --no-decode
b --steps 0 --ckpt "$ckpt" --precision bf16 --decode-repeats 3           # decoding alone, own process
b --steps 0 --ckpt "$ckpt" --precision bf16 --decode-repeats 3
b --steps 0 --ckpt "$ckpt" --precision fp32 --decode-repeats 3
