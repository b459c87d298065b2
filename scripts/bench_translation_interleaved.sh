#!/usr/bin/env bash
# The benchmark model trained for one epoch by OpenNMT-py and by seqlab in turn, seed by seed
# (OpenNMT-py seed A, seqlab seed A, OpenNMT-py seed B, ...), so that the machine's drift in speed
# lands on both toolkits alike; then seqlab's decoding of each one-epoch model (greedy and beam 5,
# each its own process, without and with int8 products) and fp32 training. ~20 minutes for three
# seeds on 2 cores; run it on an otherwise idle machine. The peers' harness needs its one-off install (../shared/bench/peers/README.md).
#   bash scripts/bench_translation_interleaved.sh s9b 42 1 2            # seqlab's JSON lines: $JSONL
#   /tmp/peerbench/venvs/ref/bin/python ../shared/bench/peers/parse_run.py --session s9b --toolkits onmt
# JSONL (default outputs/bench_<tag>.jsonl), CKDIR (default /tmp): where the lines and checkpoints go
# (OUT is the peers' harness's runs folder, default /tmp/peerbench/runs);
# PRECISION (default fast: bf16 where its products beat fp32's, else fp32): seqlab's training and decoding;
# QUANTIZE (default "none int8"): the decodings' decode.quantize, each in its own processes.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=$1; shift
out=${JSONL:-outputs/bench_$tag.jsonl}
ckdir=${CKDIR:-/tmp}
mkdir -p "$(dirname "$out")"
source scripts/bench_lib.sh  # b, seqlab_decodes
for seed in "$@"; do
  echo "+ OpenNMT-py seed $seed ($(date +%T); $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  bash scripts/bench_peers_seeds.sh "$tag" "$seed"
  b --warmup 10 --steps 444 --precision "${PRECISION:-fast}" --no-decode --save "$ckdir/seqlab_${tag}_s$seed.pt" "seed=$seed"
done
for seed in "$@"; do
  seqlab_decodes "$ckdir/seqlab_${tag}_s$seed.pt"
done
b --warmup 10 --steps 200 --precision fp32 --no-decode
