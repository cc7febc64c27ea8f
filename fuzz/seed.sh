#!/usr/bin/env bash
# Builds the seed corpora of the fuzz targets from the engine's test fixtures:
#   corpus/gguf         the hf-offline fixture converted to TQ2_0, TQ1_0 and I2_S GGUF files
#   corpus/safetensors  each hf-* fixture as <u16 length><config.json><model.safetensors>
# Usage (from the repository root): fuzz/seed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
fix=crates/bitnet-infer/tests/fixtures
cargo build --release -q -p bitnet-cli
mkdir -p fuzz/corpus/gguf fuzz/corpus/safetensors
for t in tq2_0 tq1_0 i2_s; do
  target/release/bitnet convert "$fix/hf-offline" "fuzz/corpus/gguf/hf-offline.$t.gguf" --type "$t" >/dev/null
done
for d in hf-online hf-offline hf-bitlinear; do
  python3 - "$fix/$d" "fuzz/corpus/safetensors/$d" <<'PY'
import struct, sys
src, out = sys.argv[1], sys.argv[2]
cfg = open(f"{src}/config.json", "rb").read()
st = open(f"{src}/model.safetensors", "rb").read()
open(out, "wb").write(struct.pack("<H", len(cfg)) + cfg + st)
PY
done
echo "seeds in fuzz/corpus/{gguf,safetensors}"
