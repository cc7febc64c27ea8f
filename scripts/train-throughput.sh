#!/usr/bin/env bash
# Training throughput in one run: `bitnet train` (fused ops, and the composed reference) against
# the PyTorch anchor (transformers' BitNetForCausalLM with online-quantized AutoBitLinear, AdamW,
# clip 1.0) on the same shapes, vocabulary 4096, batches and thread counts. Engines alternate
# within each repetition so both see the same machine load; figures are medians over the
# repetitions of each run's median step (bitnet: the logged steps after the second; PyTorch: its
# own median of the timed steps after two warm-up steps). Prints a markdown table with the ratios.
#
#   scripts/train-throughput.sh [REPS]
#
# The anchor is not part of this repository: ANCHOR (default ../shared/tools/torch_bitnet_train.py)
# run by PYTHON (default python3) from an environment with `pip install torch transformers`.
# Without it, only the bitnet columns are printed. STEPS (default 8) sets bitnet's steps per run.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
steps=${STEPS:-8}
python=${PYTHON:-python3}
anchor=${ANCHOR:-../shared/tools/torch_bitnet_train.py}
cargo build --release -q -p bitnet-cli
bitnet=target/release/bitnet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
have_torch=0
if [ -f "$anchor" ] && "$python" -c "import torch, transformers" 2>/dev/null; then have_torch=1; fi

bitnet_tps() { # preset batch seq threads ops
  local dir="$out/$1-$4-$5"
  rm -rf "$dir"
  $bitnet train --preset "$1" --batch-size "$2" --seq-len "$3" -t "$4" --ops "$5" \
    --steps "$steps" --warmup 2 --eval-every 0 --eval-windows 1 --log-every 1 --save-every 0 \
    --sample-tokens 0 --quiet --out "$dir" > /dev/null
  python3 -c '
import json, sys
t = sorted(json.loads(l)["tokens_per_s"] for l in open(sys.argv[1]) if json.loads(l)["step"] > 2)
print(f"{t[len(t)//2]:.1f}")' "$dir/metrics.jsonl"
}

torch_tps() { # threads hidden inter layers heads kv seq batch
  "$python" "$anchor" "$@" 2>/dev/null | sed -n 's/.*tokens\/s=\([0-9.]*\).*/\1/p'
}

median() { python3 -c 'import statistics, sys; print(f"{statistics.median(map(float, sys.argv[1:])):.0f}")' "$@"; }
ratio() { python3 -c 'import sys; a, b = map(float, sys.argv[1:]); print(f"{a / b:.2f}" if b else "n/a")' "$1" "$2"; }

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo
echo "| shape | batch x seq | threads | PyTorch | bitnet composed | bitnet fused | fused / PyTorch | fused / composed |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
# preset batch seq threads | anchor shape (hidden inter layers heads kv)
for row in "tiny 8 128 1 256 768 4 4 2" "tiny 8 128 2 256 768 4 4 2" \
           "125m 2 256 1 768 2048 12 12 4" "125m 2 256 2 768 2048 12 12 4"; do
  set -- $row
  preset=$1 batch=$2 seq=$3 threads=$4 h=$5 i=$6 l=$7 nh=$8 kv=$9
  pt=() co=() fu=()
  for _ in $(seq "$reps"); do
    if [ $have_torch = 1 ]; then pt+=("$(torch_tps "$threads" "$h" "$i" "$l" "$nh" "$kv" "$seq" "$batch")"); fi
    co+=("$(bitnet_tps "$preset" "$batch" "$seq" "$threads" composed)")
    fu+=("$(bitnet_tps "$preset" "$batch" "$seq" "$threads" fused)")
  done
  c=$(median "${co[@]}") f=$(median "${fu[@]}")
  if [ $have_torch = 1 ]; then p=$(median "${pt[@]}"); else p=n/a; fi
  echo "| $preset | $batch x $seq | $threads | $p | $c | $f | $( [ "$p" = n/a ] && echo n/a || ratio "$f" "$p") | $(ratio "$f" "$c") |"
done
