#!/usr/bin/env bash
# llama.cpp's llama-bench and edgelm bench on the same files, same flags, one after the other, and the ratio.
# KV cache: each engine's default unless -k f16 (both F16; llama-bench has no F32 KV cache): llama.cpp F16, EdgeLM F32.
# Usage: side-by-side.sh [-p 512] [-n 128] [-t 2] [-r 3] [-k f16] [-o DIR] MODEL.gguf...   (-o keeps both JSON reports)
#   LLAMA_BENCH=path (default: build-tools.sh's output), EDGELM="dotnet run -c Release --project src/EdgeLM.Cli --"
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
p=512 n=128 t=2 r=3 kv= keep=
while getopts "p:n:t:r:k:o:" o; do case $o in p) p=$OPTARG;; n) n=$OPTARG;; t) t=$OPTARG;; r) r=$OPTARG;; k) kv=$OPTARG;; o) keep=$OPTARG;; *) exit 2;; esac; done
case $kv in "") llama_kv=(); edgelm_kv=();; f16) llama_kv=(-ctk f16 -ctv f16); edgelm_kv=(--kv f16);;
  *) echo "side-by-side: -k takes f16 (or nothing: each engine's default), not $kv" >&2; exit 2;; esac
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "usage: side-by-side.sh [-p N] [-n N] [-t N] [-r N] MODEL.gguf..." >&2; exit 2; }
llama="${LLAMA_BENCH:-$here/build/llama.cpp/build/bin/llama-bench}"
[ -x "$llama" ] || { echo "side-by-side: no llama-bench at $llama (run tools/llama-reference/build-tools.sh)" >&2; exit 1; }
edgelm="${EDGELM:-dotnet run -c Release --project $root/src/EdgeLM.Cli --}"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
[ -z "$keep" ] || mkdir -p "$keep"
echo "| model | threads | test | llama.cpp t/s | EdgeLM t/s | EdgeLM / llama.cpp | EdgeLM peak RSS |"
echo "| --- | ---: | --- | ---: | ---: | ---: | ---: |"
for m in "$@"; do
  [ -f "$m" ] || { echo "side-by-side: no such file: $m" >&2; exit 1; }
  "$llama" -m "$m" -p "$p" -n "$n" -t "$t" -r "$r" "${llama_kv[@]}" -o json > "$work/l.json" 2> "$work/l.err" \
    || { tail -3 "$work/l.err" >&2; exit 1; }
  $edgelm bench -m "$m" -p "$p" -n "$n" -t "$t" -r "$r" "${edgelm_kv[@]}" --json "$work/e.json" > /dev/null 2> "$work/e.err" \
    || { tail -3 "$work/e.err" >&2; exit 1; }
  if [ -n "$keep" ]; then b=$(basename "$m" .gguf); cp "$work/l.json" "$keep/llama-$b-t$t.json"; cp "$work/e.json" "$keep/edgelm-$b-t$t.json"; fi
  python3 - "$m" "$work/l.json" "$work/e.json" "$t" <<'PY'
import json, os, sys
name, l, e = os.path.basename(sys.argv[1]), json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
def key(prompt, gen): return f"pp{prompt}" if prompt else f"tg{gen}"
ours = {}
for r in (e["results"] if isinstance(e, dict) else e):
    ours[key(r.get("n_prompt", 0), r.get("n_gen", 0))] = (r["avg_ts"], r["stddev_ts"], r.get("peak_rss_bytes", 0))
for r in l:
    k = key(r["n_prompt"], r["n_gen"])
    if k not in ours: continue
    a, s = r["avg_ts"], r["stddev_ts"]
    b, sb, rss = ours[k]
    print(f"| {name} | {sys.argv[4]} | {k} | {a:.1f} ± {s:.1f} | {b:.1f} ± {sb:.1f} | {b / a:.2f} | {rss / 2**20:.0f} MiB |")
PY
done
