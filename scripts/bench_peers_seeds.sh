#!/usr/bin/env bash
# OpenNMT-py's one-epoch benchmark run (train + decode) for several seeds, through the peers' own
# harness (../shared/bench/peers, see its README for the one-off install) copied to a temporary
# folder with one change: the seed in its OpenNMT-py config. One epoch's model differs a lot from
# seed to seed (how many greedy hypotheses run on to the 100-token limit, and so decoding speed),
# so docs/translation.md compares toolkits over the same seeds rather than one seed each.
#   bash scripts/bench_peers_seeds.sh t4 42 1 2      # runs $OUT/onmt/t4_s42, t4_s1, t4_s2
#   /tmp/peerbench/venvs/ref/bin/python ../shared/bench/peers/parse_run.py --session t4 --toolkits onmt
set -euo pipefail
tag=$1; shift
peers=${PEERS:-$(cd "$(dirname "$0")/../.." && pwd)/shared/bench/peers}
[[ -f $peers/30_onmt.sh ]] || { echo "no peers' harness at $peers (set PEERS)" >&2; exit 2; }
for seed in "$@"; do
  copy=$(mktemp -d)
  cp -r "$peers"/. "$copy"
  sed -i "s/^seed: .*/seed: $seed/" "$copy/configs/onmt_rnn.yaml"
  grep -q "^seed: $seed$" "$copy/configs/onmt_rnn.yaml"
  bash "$copy/30_onmt.sh" train "${tag}_s$seed" epoch
  bash "$copy/30_onmt.sh" decode "${tag}_s$seed"
  rm -rf "$copy"
done
