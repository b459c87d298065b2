#!/usr/bin/env bash
# The quality figures of docs/translation.md for a translation preset: train it, then
#   - decode test_2016_flickr with its best checkpoint (by validation BLEU) and beam 5;
#   - choose on validation BLEU among {best.pt, the average of the last 5 checkpoints} x {beam 5, 10}
#     and decode the test set once, with the pick.
# Prints the training minutes and every BLEU (sacrebleu, tokenised lower-cased text; decoding in
# PRECISION, default fast: bf16 where its products beat fp32's, fp32 elsewhere, as the preset trains).
#   bash scripts/bench_translation_quality.sh multi30k_de_en outputs/quality_de_en [extra overrides]
#   NO_TRAIN=1 bash scripts/bench_translation_quality.sh multi30k_de_en outputs/quality_de_en   # evaluate a finished run
set -euo pipefail
cd "$(dirname "$0")/.."
exp=$1; run=$2; shift 2
if [[ -z ${NO_TRAIN:-} ]]; then
  seqlab train "experiment=$exp" "hydra.run.dir=$run" trainer.progress_bar=false "$@"
fi
C=$run/checkpoints
python - "$C/last.pt" <<'PY'
import sys, torch
ck = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
print(f"training: {ck['train_seconds'] / 60:.1f} min, {ck['epoch']} epochs, {ck['step']} updates")
PY
bleu() {  # bleu CKPT SPLIT BEAM
  seqlab eval "ckpt_path=$1" "split=$2" decode.strategy=beam "decode.beam_size=$3" "precision=${PRECISION:-fast}" \
    "hydra.run.dir=$run/eval/$(basename "$1" .pt)_$2_beam$3" 2>/dev/null | awk -v k="$2/bleu" '$1 == k {print $2}'
}
echo "best.pt, beam 5: test BLEU $(bleu "$C/best.pt" test 5)"
python scripts/average_checkpoints.py "$C"/step_*.pt --last 5 -o "$C/avg_last5.pt"
pick="" best=-1
for ck in best avg_last5; do
  for beam in 5 10; do
    v=$(bleu "$C/$ck.pt" val "$beam")
    echo "$ck.pt, beam $beam: val BLEU $v"
    if python -c "import sys; sys.exit(0 if $v > $best else 1)"; then best=$v; pick="$ck $beam"; fi
  done
done
read -r ck beam <<< "$pick"
echo "chosen on val ($best): $ck.pt, beam $beam: test BLEU $(bleu "$C/$ck.pt" test "$beam")"
