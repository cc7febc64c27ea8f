#!/usr/bin/env bash
# Training throughput (tokens/s, median of the logged steps after the first) of the tiny and 125m
# presets on the bundled text: 1 thread, 2 data-parallel threads, and candle's own per-operation
# threading on 2 threads (RAYON_NUM_THREADS=2 with one worker), all in one run.
#   scripts/train-throughput.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-12}
cargo build --release -q -p bitnet-cli
bitnet=target/release/bitnet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() { # preset batch seq label env... -- args...
  local preset=$1 batch=$2 seq=$3 label=$4; shift 4
  local envs=(); while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  env "${envs[@]}" $bitnet train "$@" --preset "$preset" --batch-size "$batch" --seq-len "$seq" \
    --steps "$steps" --warmup 2 --eval-every 0 --eval-windows 1 --log-every 2 --save-every 0 \
    --sample-tokens 0 --quiet --out "$out/$preset-$label" > /dev/null
  python3 - "$out/$preset-$label/metrics.jsonl" "$preset" "$batch x $seq" "$label" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
tps = sorted(r["tokens_per_s"] for r in recs if r["step"] > 2)
print(f"| {sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} | {tps[len(tps)//2]:.0f} |")
PY
}
echo "| preset | batch x seq | threads | tokens/s |"
echo "|---|---|---|---|"
for p in "tiny 8 128" "125m 2 256"; do
  set -- $p
  run $1 $2 $3 "1" X=1 -- -t 1
  run $1 $2 $3 "2 (data parallel)" X=1 -- -t 2
  run $1 $2 $3 "2 (candle threads)" RAYON_NUM_THREADS=2 -- -t 1
done
