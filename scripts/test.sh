#!/usr/bin/env bash
# The test command of README.md: the whole xunit suite, then the kernel tests again with lower ISAs
# so that the AVX2 and portable Vector128 (Arm) paths stay tested on an AVX-512 machine.
set -euo pipefail
cd "$(dirname "$0")/.."
# The pipeline's report.html is rendered in headless Chromium by a test; CI (root, Debian) installs it when missing.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the report render test fails under CI=true" >&2
fi
# The llama.cpp agreement tests (tests/EdgeLM.Tests/Reference) need llama.cpp's gguf-py, which needs numpy for
# /usr/bin/python3, and the prebuilt llama.cpp reference engine (npm, ~85 MB; a few seconds once cached).
if ! /usr/bin/python3 -c "import numpy" >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-numpy >/dev/null) \
    || echo "warning: could not install python3-numpy; the llama.cpp agreement tests fail under CI=true" >&2
fi
bash tools/llama-reference/setup.sh >/dev/null \
  || echo "warning: tools/llama-reference/setup.sh failed; the llama.cpp agreement tests fail under CI=true" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
dotnet build EdgeLM.slnx -c Release --nologo -v quiet
dotnet test EdgeLM.slnx -c Release --no-build --nologo 2>&1 | tee -a "$log"
for isa in "DOTNET_EnableAVX512F=0" "DOTNET_EnableAVX2=0"; do
  echo "== kernel tests with $isa =="
  env "$isa" dotnet test EdgeLM.slnx -c Release --no-build --nologo --filter "Category=Kernels" 2>&1 | tee -a "$log"
done
# Packaging: the .NET tool and the NativeAOT binary each run a tiny model (a minute or two); counted as one test.
echo "== packaging (dotnet tool + NativeAOT) =="
package_failed=0
bash scripts/package.sh || package_failed=1
# One closing line over all runs, in the plain form CI tools read.
passed=$(grep -oE 'Passed: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
failed=$(grep -oE 'Failed: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
if [ "$package_failed" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
echo "tests: $passed passed, $failed failed"
[ "$package_failed" = 0 ]
