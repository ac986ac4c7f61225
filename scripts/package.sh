#!/usr/bin/env bash
# Packages edgelm both ways and proves each package runs a model:
#   1. as a .NET tool: dotnet pack, then dotnet tool install --tool-path from the local feed;
#   2. as a NativeAOT binary: dotnet publish -r linux-x64 -p:PublishAot=true (fails on any trim/AOT warning).
# Each one then runs `edgelm run` on a tiny synthetic model. Prints "package: PASS" or "package: FAIL" last.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
fail() { echo "package: FAIL ($*)"; exit 1; }

# NativeAOT links with clang (or gcc) and needs zlib; install them once if this machine lacks them.
if ! command -v clang >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq clang zlib1g-dev) >/dev/null || fail "cannot install a linker"
fi
if [ ! -e /usr/include/zlib.h ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq zlib1g-dev) >/dev/null 2>&1 || true
fi

echo "== dotnet pack (tool) =="
dotnet pack src/EdgeLM.Cli -c Release -o "$work/nupkg" --nologo -v quiet -p:TreatWarningsAsErrors=true || fail "pack"
dotnet tool install --tool-path "$work/tool" --add-source "$work/nupkg" EdgeLM.Cli --version "$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' Directory.Build.props)" \
  || fail "tool install"
tool="$work/tool/edgelm"

echo "== dotnet publish NativeAOT =="
aot_log="$work/aot.log"
aot="$work/aot/edgelm"
if dotnet publish src/EdgeLM.Cli -c Release -r linux-x64 -p:PublishAot=true -o "$work/aot" --nologo \
     -p:TreatWarningsAsErrors=true >"$aot_log" 2>&1; then
  native="NativeAOT"
elif grep -q "NU1101.*Microsoft.NETCore.App.Runtime.NativeAOT" "$aot_log"; then
  # .NET 10 moved NativeAOT's framework into this runtime pack; a package source without it cannot build NativeAOT
  # at all. The whole-program trim analysis (the IL2xxx half of the AOT warnings) still runs: a trimmed
  # self-contained publish with warnings as errors. The IL3xxx AOT analyzers run in every build (IsAotCompatible).
  echo "NativeAOT: UNAVAILABLE here (no Microsoft.NETCore.App.Runtime.NativeAOT.linux-x64 on the package source); checking a trimmed self-contained build instead"
  dotnet publish src/EdgeLM.Cli -c Release -r linux-x64 --self-contained -p:PublishTrimmed=true -o "$work/aot" --nologo \
    -p:TreatWarningsAsErrors=true >"$aot_log" 2>&1 || { tail -30 "$aot_log"; fail "trimmed publish"; }
  native="trimmed self-contained"
else
  tail -30 "$aot_log"; fail "AOT publish"
fi
if grep -E "warning (IL|AOT)[0-9]+" "$aot_log"; then fail "trim/AOT warnings"; fi
[ -x "$aot" ] || fail "no $native binary"

echo "== synthetic model =="
"$tool" synth --preset tiny -o "$work/tiny.gguf" --type f16 --seed 5 || fail "synth"

for exe in "$tool" "$aot"; do
  name=$([ "$exe" = "$tool" ] && echo "dotnet tool" || echo "$native")
  out=$("$exe" run -m "$work/tiny.gguf" -p "hello" -n 12 --seed 9 --temp 0.8 -t 1 2>&1) || { echo "$out"; fail "$name run"; }
  echo "$name: edgelm run ok ($(printf '%s' "$out" | wc -c) bytes)"
  eval "out_$([ "$exe" = "$tool" ] && echo tool || echo aot)=\$out"
done
[ "$out_tool" = "$out_aot" ] || fail "the tool and the AOT binary printed different text for the same seed"

# The published server answers a chat completion: the JSON source generation and Kestrel paths really work without a JIT.
port=$((20000 + RANDOM % 20000))
"$aot" serve -m "$work/tiny.gguf" --port "$port" --parallel 2 --ctx 128 -t 1 2>"$work/serve.log" &
pid=$!
ok=0
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.1
done
if [ $ok = 1 ]; then
  reply=$(curl -sf "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"seed":1}') || ok=0
  case "$reply" in *'"usage"'*) echo "$native: serve answered a chat completion";; *) ok=0;; esac
fi
kill "$pid" 2>/dev/null
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; ok=0; echo "serve did not stop on SIGTERM"; fi
wait "$pid" 2>/dev/null
[ $ok = 1 ] || { cat "$work/serve.log"; fail "$native serve"; }

echo "package: PASS"
