#!/usr/bin/env bash
# Decoding only, OpenNMT-py and seqlab in turn seed by seed, with the one-epoch models of an earlier
# sitting of bench_translation_interleaved.sh (FROM): for a change to decoding, without training
# again. Per seed: OpenNMT-py's decode of its FROM model (greedy x3, beam 5 x2, its harness's own
# command, into a copy of the run folder named TAG_s<seed>), then seqlab's greedy and beam 5 of its
# FROM checkpoint, each its own process, for each QUANTIZE (default "none int8"). ~6 minutes for
# three seeds on 2 cores; run it on an otherwise idle machine.
#   bash scripts/bench_decoding_interleaved.sh s11d s11 42 1 2      # seqlab's JSON lines: $JSONL
#   /tmp/peerbench/venvs/ref/bin/python ../shared/bench/peers/parse_run.py --session s11d --toolkits onmt
# JSONL (default outputs/bench_<tag>.jsonl); CKDIR (default /tmp): where FROM's checkpoints are;
# OUT (default /tmp/peerbench/runs): the peers' harness's runs folder; PRECISION (default fast).
set -euo pipefail
cd "$(dirname "$0")/.."
tag=$1; from=$2; shift 2
out=${JSONL:-outputs/bench_$tag.jsonl}
ckdir=${CKDIR:-/tmp}
runs=${OUT:-/tmp/peerbench/runs}
peers=${PEERS:-$(cd .. && pwd)/shared/bench/peers}
[[ -f $peers/30_onmt.sh ]] || { echo "no peers' harness at $peers (set PEERS)" >&2; exit 2; }
mkdir -p "$(dirname "$out")"
source scripts/bench_lib.sh  # b, seqlab_decodes
for seed in "$@"; do
  src=$runs/onmt/${from}_s$seed dst=$runs/onmt/${tag}_s$seed
  [[ -f $src/ckpt && -f $ckdir/seqlab_${from}_s$seed.pt ]] || { echo "no $from models for seed $seed" >&2; exit 2; }
  rm -rf "$dst" && mkdir -p "$dst"
  cp "$src"/ckpt "$src"/config.yaml "$src"/train* "$src"/vocab* "$dst"/  # the training record, not its decodes
  echo "+ OpenNMT-py decode, seed $seed ($(date +%T); $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  bash "$peers/30_onmt.sh" decode "${tag}_s$seed"
  seqlab_decodes "$ckdir/seqlab_${from}_s$seed.pt"
done
