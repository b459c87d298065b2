# Shared by the interleaved benchmark scripts (sourced, not run; from the repository root).
# b ARGS...: one scripts/bench_translation.py process; its last line (the JSON) is appended to $out.
b() { echo "+ $* ($(date +%T); $(cut -d' ' -f1-3 /proc/loadavg))" >&2; python scripts/bench_translation.py "$@" | tail -n 1 | tee -a "$out"; }
# seqlab_decodes CKPT: greedy and beam 5 of CKPT, each its own process, for each of $QUANTIZE
# (default "none int8"), in $PRECISION (default fast).
seqlab_decodes() {
  local q d
  for q in ${QUANTIZE:-none int8}; do
    for d in greedy beam5; do
      b --steps 0 --ckpt "$1" --precision "${PRECISION:-fast}" --quantize "$q" --decode-repeats 3 --decode $d
    done
  done
}
