#!/usr/bin/env bash
# The default run (`seqlab train`, 9-minute budget) once per subword setting, one after the other,
# then test_2016_flickr BLEU of each best.pt with beam 5 (docs/translation.md, "Default run").
#   bash scripts/bench_default_run.sh OUT_DIR [none bpe ...]     # task.subword.kind values
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1; shift
for kind in "${@:-none bpe}"; do
  for k in $kind; do
    seqlab train "task.subword.kind=$k" trainer.progress_bar=false "hydra.run.dir=$out/$k" > "$out.$k.log" 2>&1
    python - "$out/$k/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"{sys.argv[1]}: {m['step']} updates, {m['train_seconds'] / 60:.1f} min, best {m['monitor']} {m['best']:.2f}")
PY
    seqlab eval "ckpt_path=$out/$k/checkpoints/best.pt" split=test decode.strategy=beam decode.beam_size=5 \
      "hydra.run.dir=$out/${k}_eval" 2>/dev/null | awk -v k="$k" '$1 == "test/bleu" {print "task.subword.kind=" k ": test BLEU (beam 5) " $2}'
  done
done
