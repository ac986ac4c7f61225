#!/usr/bin/env bash
# Builds the llama.cpp reference engine used by tests/EdgeLM.Tests/Reference (see docs/REFERENCE-ENGINE.md):
#   1. npm: node-llama-cpp 3.22.1 (llama.cpp v0.5.0 source as a git bundle) and @node-llama-cpp/linux-x64
#      (prebuilt libllama/libggml, CPU backends per ISA); --omit=optional keeps the CUDA/Vulkan/Arm packages out.
#      `npm install --no-save` rather than `npm ci`: node-llama-cpp lists optional mac/win/riscv packages that were
#      never published at 3.22.1, which npm ci reports as a lock mismatch; install still follows the committed lock.
#   2. headers (include/, ggml/include/) and llama.cpp's own gguf-py from the bundle into build/src/.
#   3. gcc: build/llama-logits, linked to the prebuilt libllama with an rpath to its directory.
# Idempotent: each step is skipped when its output is newer than its inputs. Prints the binary's path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
build="$here/build"
bins="$here/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"
bundle="$here/node_modules/node-llama-cpp/llama/gitRelease.bundle"
die() { echo "llama-reference setup: $*" >&2; exit 1; }

[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || die "prebuilt llama.cpp is only set up for Linux x86-64 (this is $(uname -s)-$(uname -m))"
command -v npm >/dev/null 2>&1 || die "npm not found (install Node.js 20+)"
command -v gcc >/dev/null 2>&1 || die "gcc not found"
command -v git >/dev/null 2>&1 || die "git not found"

if [ ! -f "$bins/libllama.v0.5.0.so" ] || [ ! -f "$bundle" ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log=$(mktemp)
  if ! npm install --no-save --ignore-scripts --omit=optional --no-audit --no-fund >"$log" 2>&1; then
    grep -m3 "npm error [^ ]" "$log" >&2 || tail -3 "$log" >&2; rm -f "$log"; die "npm install failed (see above)"
  fi
  rm -f "$log"
  [ -f "$bins/libllama.v0.5.0.so" ] || die "npm install did not install $bins/libllama.v0.5.0.so"
fi

src="$build/src"
if [ ! -f "$src/.done" ] || [ "$bundle" -nt "$src/.done" ]; then
  rm -rf "$src" "$build/llama.git"
  mkdir -p "$src"
  git clone -q --bare "$bundle" "$build/llama.git" || die "cannot clone $bundle"
  git --git-dir "$build/llama.git" archive HEAD include ggml/include gguf-py LICENSE | tar -x -C "$src" \
    || die "cannot extract headers and gguf-py from the bundle"
  rm -rf "$build/llama.git"
  touch "$src/.done"
fi

binary="$build/llama-logits"
if [ ! -x "$binary" ] || [ llama-logits.c -nt "$binary" ] || [ "$src/.done" -nt "$binary" ]; then
  gcc -O2 -std=c11 -Wall -Wextra -Werror -I"$src/include" -I"$src/ggml/include" llama-logits.c -o "$binary.tmp" \
    "$bins/libllama.v0.5.0.so" "$bins/libggml.v0.5.0.so" "$bins/libggml-base.so" -ldl -Wl,-rpath,"$bins" \
    || die "gcc failed to build llama-logits"
  mv "$binary.tmp" "$binary"
fi
# Loading the libraries here turns a missing CPU backend or glibc mismatch into a setup error, not a test failure.
"$binary" --help >/dev/null 2>&1 || die "$binary does not run (ldd: $(ldd "$binary" 2>&1 | grep -m1 'not found' || true))"
echo "$binary"
