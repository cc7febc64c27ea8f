#!/usr/bin/env bash
# Starts `bitnet serve` on SmolLM2-135M-Instruct (data/, from scripts/fetch-data.sh), runs
# tools/openai_client_check.py with the official `openai` client from a venv in target/, then
# stops the server with SIGTERM and checks that it exits cleanly.
#   BITNET=target/release/bitnet scripts/openai-client-check.sh   (default: target/debug/bitnet)
set -euo pipefail
cd "$(dirname "$0")/.."
bitnet=${BITNET:-target/debug/bitnet}
model=data/models/SmolLM2-135M-Instruct.Q4_1.gguf
venv=target/openai-venv
[ -x "$bitnet" ] || cargo build -p bitnet-cli
[ -f "$model" ] || scripts/fetch-data.sh
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import openai" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "openai==1.*"
fi
log=$(mktemp)
key=check-$RANDOM$RANDOM
"$bitnet" serve -m "$model" --port 0 --parallel 2 --ctx 4096 --api-key "$key" -t 2 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 600); do
  grep -q '^ready:' "$log" && break
  kill -0 $pid 2>/dev/null || { cat "$log"; echo "the server exited" >&2; exit 1; }
  sleep 0.1
done
url=$(sed -n 's/^ready: \(http[^ ]*\) .*/\1/p' "$log")
[ -n "$url" ] || { cat "$log"; echo "the server did not become ready" >&2; exit 1; }
"$venv/bin/python" tools/openai_client_check.py --base-url "$url" --api-key "$key"
kill -TERM $pid
status=0
wait $pid || status=$?
cat "$log"
[ "$status" -eq 0 ] || { echo "the server exited with $status after SIGTERM" >&2; exit 1; }
grep -q '^stopped' "$log"
echo "openai client check passed"
