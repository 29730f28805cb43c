#!/usr/bin/env bash
# Builds the C++ scorer and the two libFuzzer targets over its C ABI with AddressSanitizer and
# UndefinedBehaviorSanitizer (our code: the scorer, extractor, tokenizer and planner; libtorch itself is
# not instrumented), exports the tiny model as a float32 aoti engine, and runs each target in turn:
#   codescaler_fuzz_capi    scoring calls: (question, response) pairs, lengths, error buffers, best-of-n;
#   codescaler_fuzz_engine  codescaler_open on a damaged engine: manifest.json, the weights header,
#                           a weights file of the fuzzer's own, tokenizer.json.
# Not part of CI. Needs clang with libFuzzer (Debian: apt-get install clang-14) and the torch wheel in
# the active Python (the one whose `codescaler` exports the engine).
#   scripts/fuzz_scorer.sh [seconds per target=300] [extra libFuzzer flags for both...]
#   FUZZ_TARGETS="engine" scripts/fuzz_scorer.sh 600     # one target only
# Corpora, logs and findings (crash-*, leak-*, timeout-*, oom-*) land in build/fuzz-scorer/run-{capi,engine}/.
set -euo pipefail
seconds="${1:-300}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build/fuzz-scorer}"
targets="${FUZZ_TARGETS:-capi engine}"
cc="${CC:-$(command -v clang || command -v clang-14)}"
cxx="${CXX:-$(command -v clang++ || command -v clang++-14)}"
python="$(command -v python || command -v python3)"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
# Configured once (cmake --build re-runs it when CMakeLists.txt changes; a fresh configure rewrites a
# tree-sitter header and so rebuilds the grammars): FUZZ_RECONFIGURE=1 forces it.
[ -f "$build/CMakeCache.txt" ] && [ -z "${FUZZ_RECONFIGURE:-}" ] ||
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DPython3_EXECUTABLE="$python" \
  -DCMAKE_C_FLAGS="$san -fsanitize=fuzzer-no-link" -DCMAKE_CXX_FLAGS="$san -fsanitize=fuzzer-no-link" \
  -DCMAKE_EXE_LINKER_FLAGS="$san" -DCMAKE_SHARED_LINKER_FLAGS="$san" \
  -DCODESCALER_BUILD_FUZZER=ON -DCODESCALER_BUILD_TESTS=OFF >/dev/null
for t in $targets; do
  cmake --build "$build" --target "codescaler_fuzz_$t" -j"${FUZZ_JOBS:-2}"
done

engine="$build/engine"
[ -f "$engine/manifest.json" ] || codescaler export --model tiny --out "$engine" --format aoti --dtype float32

# Seeds. fuzz_capi: first byte = options (bit 0 handle, bit 1 explicit lengths, bits 2-3 error buffer,
# bits 4-7 pair count), then fields split on 0x1f. fuzz_engine: first byte mod 4 = the file replaced.
mkdir -p "$build/run-capi/corpus" "$build/run-engine/corpus"
c="$build/run-capi/corpus"
printf '\x32Write add.\x1fSure:\n```python\ndef add(a, b):\n    return a + b\n```\x1fWrite add.\x1fno code' > "$c/seed-score"
printf '\xf1<think>\x1f```python\ns = "</think>"\n```\x1fq\x1f```python\nx = (\n```\x1fq\x1f\xff' > "$c/seed-refused"
printf '\x13q\x00tail\x1f```py\nx = 1\n```\x00```py\ny\n```\x1f\x1f' > "$c/seed-nul"
printf '\x23%s\x1f```python\n%s\n```' "$(printf 'long question %.0s' {1..20})" "$(printf 'x = [1, 2, 3]\n%.0s' {1..20})" > "$c/seed-truncated"
# fuzz_engine opens a copy of engine-fuzz: the same engine with a 1000-entry cut of its tokenizer.json
# (the manifest's probes re-encoded with it), since parsing Qwen's 18 MB vocabulary under ASan costs
# ~2 s, and every input that gets past the manifest would pay it.
small="$build/engine-fuzz"
if [ ! -f "$small/manifest.json" ] || [ "$small/manifest.json" -ot "$engine/manifest.json" ]; then
  rm -rf "$small" && mkdir -p "$small"
  for f in "$engine"/*; do ln -s "$f" "$small/"; done
  rm "$small/manifest.json" "$small/tokenizer.json"
  "$python" - "$engine" "$small" <<'EOF'
import json, os, sys
from codescaler import _native
engine, small = sys.argv[1:]
t = json.load(open(os.path.join(engine, "tokenizer.json"), encoding="utf-8"))
vocab = {k: v for k, v in t["model"]["vocab"].items() if v < 1000}
pairs = [m.split(" ") if isinstance(m, str) else m for m in t["model"]["merges"]]
t["model"]["vocab"] = vocab
t["model"]["merges"] = [p for p in pairs if p[0] in vocab and p[1] in vocab and p[0] + p[1] in vocab]
path = os.path.join(small, "tokenizer.json")
with open(path, "w", encoding="utf-8") as f:
    json.dump(t, f, ensure_ascii=False)
tok = _native.Tokenizer.open(path)
m = json.load(open(os.path.join(engine, "manifest.json"), encoding="utf-8"))
m["files"]["tokenizer.json"]["size"] = os.path.getsize(path)
m["tokenizer"]["probes"] = {text: tok.encode(text) for text in m["tokenizer"]["probes"]}
with open(os.path.join(small, "manifest.json"), "w", encoding="utf-8") as f:
    json.dump(m, f, ensure_ascii=False, indent=2)
EOF
fi
e="$build/run-engine/corpus"
{ printf '\x00'; cat "$small/manifest.json"; } > "$e/seed-manifest"
{ printf '\x01'; head -c 4096 "$engine/weights.safetensors"; } > "$e/seed-weights-inplace"
{ printf '\x02'; head -c 4096 "$engine/weights.safetensors"; } > "$e/seed-weights-file"
{ printf '\x03'; cat "$small/tokenizer.json"; } > "$e/seed-tokenizer"

# libtorch is built without the sanitizer: containers whose storage crosses into it carry no ASan
# annotations (detect_container_overflow=0). Leaks are checked after every input that allocated more
# than it freed, and at exit; fuzz_scorer.lsan.supp says why that needs use_tls=0 and two suppressions.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:detect_container_overflow=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$root/scripts/fuzz_scorer.lsan.supp:print_suppressions=0:use_tls=0}"
declare -A max_len=([capi]=4096 [engine]=65536)
for t in $targets; do
  log="$build/run-$t/fuzz.log"
  echo "== codescaler_fuzz_$t for ${seconds}s (log: $log)"
  if [ "$t" = engine ]; then export CODESCALER_FUZZ_ENGINE="$small"; else export CODESCALER_FUZZ_ENGINE="$engine"; fi
  export CODESCALER_FUZZ_FINDINGS="$build/run-$t"  # fuzz_engine's non-finite scores (see its header)
  # libtorch extracts each open's compiled blocks under $TMPDIR, and fuzz_engine copies the engine there;
  # a run that ends in a finding leaves them behind, so they are kept here and removed before the next.
  export TMPDIR="$build/run-$t/tmp"
  rm -rf "$TMPDIR" && mkdir -p "$TMPDIR"
  status=0
  (cd "$build/run-$t" && "$build/codescaler_fuzz_$t" corpus -max_total_time="$seconds" -max_len="${max_len[$t]}" \
    -timeout=60 -rss_limit_mb=8192 -print_final_stats=1 -artifact_prefix="$build/run-$t/" "$@") >"$log" 2>&1 || status=$?
  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb)|^#[0-9]+.*(DONE|cov:)' \
    "$log" | tail -n 6
  if ls "$build/run-$t"/nonfinite-* >/dev/null 2>&1; then
    echo "non-finite scores from accepted engines: $(ls "$build/run-$t"/nonfinite-* | wc -l) input(s) in $build/run-$t/"
  fi
  if [ "$status" -ne 0 ]; then
    echo "codescaler_fuzz_$t exited $status; see $log and $build/run-$t/ for the input" >&2
    tail -n 40 "$log" >&2
    exit "$status"
  fi
done
