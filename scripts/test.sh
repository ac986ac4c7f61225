#!/usr/bin/env bash
# The test command of README.md: the whole xunit suite, then the kernel tests again with lower ISAs
# so that the AVX2 and portable Vector128 (Arm) paths stay tested on an AVX-512 machine.
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build EdgeLM.slnx -c Release --nologo -v quiet
dotnet test EdgeLM.slnx -c Release --no-build --nologo
for isa in "DOTNET_EnableAVX512F=0" "DOTNET_EnableAVX2=0"; do
  echo "== kernel tests with $isa =="
  env "$isa" dotnet test EdgeLM.slnx -c Release --no-build --nologo --filter "Category=Kernels"
done
