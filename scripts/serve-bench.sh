#!/usr/bin/env bash
# Aggregate generated tokens/s of `bitnet serve` at 1, 4, 16 and 64 concurrent streaming clients
# (128-token prompts, 128 tokens out, temperature 0, ignore_eos; wall time of the whole batch of
# requests) on a random-weight model of the 700M TQ2_0 shape carrying llama.cpp's LLaMA SPM
# vocabulary, with TTFT and inter-token latency p50/p99 from tools/serve_load.py. When
# LLAMA_SERVER names a llama-server binary, it serves the same file with the same --parallel,
# -c and -t, and each client count runs on both servers in turn. `bitnet bench` tg64 of the same
# model is printed first as the one-client reference.
#
#   LLAMA_SERVER=path/to/llama-server scripts/serve-bench.sh
#   THREADS=2 PARALLEL=16 CTX=8192 CLIENTS="1 4 16 64" BATCH=64   (the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
parallel=${PARALLEL:-16}
ctx=${CTX:-8192}
clients=${CLIENTS:-"1 4 16 64"}
batch=${BATCH:-64}
cargo build --release -p bitnet-cli
bitnet=target/release/bitnet
mkdir -p target/bench
model=target/bench/700m-tq2_0-spm.gguf
[ -f data/tokenizers/ggml-vocab-llama-spm.gguf ] || scripts/fetch-data.sh
[ -f "$model" ] || "$bitnet" random-model --shape 700m --type tq2_0 --llamacpp-arch \
  --vocab data/tokenizers/ggml-vocab-llama-spm.gguf "$model"
"$bitnet" bench -m "$model" -p 128 -n 64 -t "$threads" -r 3 --cache-type f16

pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
wait_ready() { # url pid
  for _ in $(seq 1200); do
    curl -sf "$1/health" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { echo "the server at $1 exited" >&2; return 1; }
    sleep 0.1
  done
  echo "$1 did not become ready" >&2
  return 1
}
"$bitnet" serve -m "$model" --port 18080 --parallel "$parallel" --ctx "$ctx" -t "$threads" \
  --batch "$batch" --queue 256 2>target/bench/bitnet-serve.log &
pids+=($!)
servers=("bitnet http://127.0.0.1:18080 $!")
if [ -n "${LLAMA_SERVER:-}" ]; then
  "$LLAMA_SERVER" -m "$model" --port 18081 --parallel "$parallel" -c "$ctx" -t "$threads" \
    -tb "$threads" --no-warmup >target/bench/llama-server.log 2>&1 &
  pids+=($!)
  servers+=("llama-server http://127.0.0.1:18081 $!")
fi
for s in "${servers[@]}"; do
  set -- $s
  wait_ready "$2" "$3"
  python3 tools/serve_load.py --url "$2" --clients 1 --max-tokens 8 --label "$1 warm-up" >/dev/null
done
for c in $clients; do
  for s in "${servers[@]}"; do
    set -- $s
    python3 tools/serve_load.py --url "$2" --clients "$c" --label "$1"
  done
done
