#!/usr/bin/env bash
# Every seqlab figure of docs/translation.md's speed tables, one JSON line each, appended to $1
# (default outputs/bench_translation.jsonl). Run on an otherwise idle machine; ~12 minutes on
# 2 cores. The peers: ../shared/bench/peers/run_all.sh, and scripts/bench_peers_seeds.sh for
# OpenNMT-py over the same seeds (see docs/translation.md).
#   bash scripts/bench_translation_all.sh docs/bench/seqlab_$(date +%F).jsonl
# SEEDS (default "42 1 2"): one one-epoch model per seed; each is decoded, greedy and beam 5 in
# separate processes, as the peers' translate runs are (each its own peak RSS). PRECISION (default
# fast: bf16 where its products beat fp32's, else fp32): the one-epoch models' training and decoding.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-outputs/bench_translation.jsonl}
ckdir=${CKDIR:-/tmp}
mkdir -p "$(dirname "$out")"
b() { echo "+ $*" >&2; python scripts/bench_translation.py "$@" | tail -n 1 | tee -a "$out"; }
for seed in ${SEEDS:-42 1 2}; do   # one epoch, as the peers
  b --warmup 10 --steps 444 --precision "${PRECISION:-fast}" --no-decode --save "$ckdir/seqlab_epoch1_s$seed.pt" "seed=$seed"
done
b --warmup 10 --steps 200 --precision fp32 --no-decode
for seed in ${SEEDS:-42 1 2}; do   # decoding alone, one process per strategy
  for d in greedy beam5; do
    b --steps 0 --ckpt "$ckdir/seqlab_epoch1_s$seed.pt" --precision "${PRECISION:-fast}" --decode-repeats 3 --decode $d
  done
done
seed=${SEEDS:-42}; seed=${seed%% *}
for d in greedy beam5; do
  b --steps 0 --ckpt "$ckdir/seqlab_epoch1_s$seed.pt" --precision fp32 --decode-repeats 3 --decode $d
done
