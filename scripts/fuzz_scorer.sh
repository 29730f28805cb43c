#!/usr/bin/env bash
# Builds the C++ scorer and the libFuzzer target over its C ABI (csrc/fuzz/fuzz_capi.cpp) with
# AddressSanitizer and UndefinedBehaviorSanitizer (our code; libtorch itself is not instrumented), exports
# the tiny model as a float32 aoti engine and fuzzes scoring, manifest.json, the weights header and
# tokenizer.json. Not part of CI. Needs clang with libFuzzer and the torch wheel in the active Python.
#   scripts/fuzz_scorer.sh [seconds=600] [extra libFuzzer flags...]
set -euo pipefail
seconds="${1:-600}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build/fuzz-scorer}"
cc="${CC:-$(command -v clang || command -v clang-14)}"
cxx="${CXX:-$(command -v clang++ || command -v clang++-14)}"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DPython3_EXECUTABLE="$(command -v python)" \
  -DCMAKE_C_FLAGS="$san -fsanitize=fuzzer-no-link" -DCMAKE_CXX_FLAGS="$san -fsanitize=fuzzer-no-link" \
  -DCMAKE_EXE_LINKER_FLAGS="$san" -DCMAKE_SHARED_LINKER_FLAGS="$san" -DCODESCALER_BUILD_FUZZER=ON
cmake --build "$build" --target codescaler_fuzz_capi -j"$(nproc)"
engine="$build/engine"
[ -f "$engine/manifest.json" ] || codescaler export --model tiny --out "$engine" --format aoti --dtype float32
corpus="$build/corpus"
mkdir -p "$corpus"
# Seeds, one per mode (the first byte picks it: 0 score, 1 manifest, 2 weights header, 3 tokenizer.json).
printf '\x00Write add.\x1fSure:\n```python\ndef add(a, b):\n    return a + b\n```\x1fWrite add.\x1fno code' > "$corpus/seed-score"
printf '\x00<think>\x1f```python\ns = "</think>"\n```\x1f\xff\x1f\x00' > "$corpus/seed-refused"
{ printf '\x01'; cat "$engine/manifest.json"; } > "$corpus/seed-manifest"
{ printf '\x02'; head -c 4096 "$engine/weights.safetensors"; } > "$corpus/seed-weights"
{ printf '\x03'; head -c 60000 "$engine/tokenizer.json"; } > "$corpus/seed-tokenizer"
export CODESCALER_FUZZ_ENGINE="$engine"
# libtorch is built without the sanitizer: its own allocations are not ours to leak-check, and vectors
# crossing into it carry no container annotations.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:detect_container_overflow=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
"$build/codescaler_fuzz_capi" "$corpus" -max_total_time="$seconds" -max_len=70000 -timeout=30 \
  -rss_limit_mb=8192 -print_final_stats=1 -artifact_prefix="$build/" "$@"
