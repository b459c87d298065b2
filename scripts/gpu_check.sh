#!/usr/bin/env bash
# GPU check: the test suite with CUDA visible (device=auto picks the GPU), the translation benchmark in
# bf16 and fp32, and `seqlab train` with trainer.precision=auto (fp16 + gradient scaling) followed by
# `seqlab eval` in bf16. Run from the repository root on a machine with an NVIDIA GPU:
#   bash scripts/gpu_check.sh [out_dir]
# Logs and JSON lines go to out_dir (default outputs/gpu_check). Each step runs even if one before failed;
# the exit status is the number of failed steps.
set -u
out=${1:-outputs/gpu_check}
run=${RUN_DIR:-$out/run}   # the training run's directory
mkdir -p "$out"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 SEQLAB_CACHE=${SEQLAB_CACHE:-/tmp/seqlab_cache}
py=${PYTHON:-python3}
failed=0
step() {  # step NAME SECONDS CMD...: run with a time limit, log to $out/NAME.log, count failures
  local name=$1 limit=$2; shift 2
  echo "=== $name: $*"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "--- $name: rc=$rc in $((SECONDS - t0)) s"; tail -n 8 "$out/$name.log"
  [ $rc -eq 0 ] || failed=$((failed + 1))
}

nvidia-smi -L
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"

workers=$($py -c "import xdist" 2>/dev/null && echo "-n 8" || echo "")
step pytest 200 $py -m pytest -q -p no:cacheprovider $workers tests
step bench_bf16 80 $py scripts/bench_translation.py --steps 300 --window 50 --precision bf16
step bench_fp32 60 $py scripts/bench_translation.py --steps 300 --window 50 --precision fp32 --no-decode
step train_fp16 140 $py -m seqlab train experiment=multi30k_de_en trainer.precision=auto trainer.max_epochs=1 \
  trainer.progress_bar=false "hydra.run.dir=$run"
step eval_bf16 50 $py -m seqlab eval "ckpt_path=$run/checkpoints/best.pt" precision=bf16 split=test \
  decode.strategy=beam decode.beam_size=5 "hydra.run.dir=$run/eval"
echo "failed steps: $failed"
exit $failed
