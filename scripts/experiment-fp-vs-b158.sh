#!/usr/bin/env bash
# fp (plain linears) against b1.58 on the same data, tokens, schedule and seed, for the model
# sizes given as config files (default: docs/experiments/s.json and m.json). Each pair runs
# side by side on one thread each. Prints the validation table of docs/experiments.md.
#   scripts/experiment-fp-vs-b158.sh [STEPS] [CONFIG...]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-600}
shift || true
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(docs/experiments/s.json docs/experiments/m.json)

[ -f data/shakespeare/shakespeare_complete.txt ] || scripts/fetch-data.sh
cargo build --release -q -p bitnet-cli
bitnet=target/release/bitnet
prepared=data/prepared/shakespeare
[ -f $prepared/meta.json ] || $bitnet data prepare data/shakespeare --out $prepared

for cfg in "${configs[@]}"; do
  size=$(basename "$cfg" .json)
  for q in none b158; do
    $bitnet train --config "$cfg" --data $prepared --quant $q --steps "$steps" \
      --batch-size 8 --seq-len 128 --seed 1 --threads 1 --eval-every 100 --eval-windows 64 \
      --save-every 0 --sample-tokens 0 --quiet --out "runs/experiment/$size-$q" \
      > "runs/experiment-$size-$q.log" 2>&1 &
  done
  wait
done

python3 - "${configs[@]}" <<'PY'
import json, math, sys, os
print("| model | params | quant | val loss | val ppl | train tokens/s (1 thread) |")
print("|---|---|---|---|---|---|")
for cfg in sys.argv[1:]:
    size = os.path.basename(cfg)[:-5]
    for q in ("none", "b158"):
        recs = [json.loads(l) for l in open(f"runs/experiment/{size}-{q}/metrics.jsonl")]
        val = [r for r in recs if "val_loss" in r][-1]
        tps = sorted(r["tokens_per_s"] for r in recs if r["step"] > 0)
        c = json.load(open(f"runs/experiment/{size}-{q}/config.json"))
        h, i, l, v = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
        kv = c["num_key_value_heads"] * h // c["num_attention_heads"]
        n = l * (2 * h * h + 2 * h * kv + 3 * h * i)
        print(f"| {size} | {n/1e6:.2f}M + {v*h/1e6:.2f}M emb | {q} | {val['val_loss']:.4f} | "
              f"{math.exp(val['val_loss']):.2f} | {tps[len(tps)//2]:.0f} |")
PY
