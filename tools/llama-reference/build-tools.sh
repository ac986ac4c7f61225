#!/usr/bin/env bash
# Builds llama.cpp's own llama-bench and llama-perplexity from the source that setup.sh installed (node-llama-cpp's
# git bundle, the same llama.cpp version as the prebuilt reference libraries), with -march=native, for side-by-side
# speed (side-by-side.sh) and KL-divergence checks (docs/REFERENCE-ENGINE.md). Takes ~10 minutes on 2 cores.
# Usage: build-tools.sh [BUILD_DIR]   (default tools/llama-reference/build/llama.cpp); prints the bin folder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
die() { echo "llama-reference build-tools: $*" >&2; exit 1; }
command -v cmake >/dev/null 2>&1 || die "cmake not found"
bash "$here/setup.sh" >/dev/null || die "setup.sh failed"
bundle="$here/node_modules/node-llama-cpp/llama/gitRelease.bundle"
out="${1:-$here/build/llama.cpp}"
if [ ! -f "$out/CMakeLists.txt" ]; then
  rm -rf "$out.tmp" && git clone -q "$bundle" "$out.tmp" 2>/dev/null || die "cannot clone $bundle"
  mv "$out.tmp" "$out"
fi
cmake -S "$out" -B "$out/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null || die "cmake configure failed"
cmake --build "$out/build" -j"$(nproc)" --target llama-bench llama-perplexity >/dev/null || die "build failed"
echo "$out/build/bin"
