#!/usr/bin/env bash
# Builds the libFuzzer target over codescaler::extract with AddressSanitizer and UndefinedBehaviorSanitizer
# and runs it. Not part of CI. Needs clang with libFuzzer (Debian: apt-get install clang libclang-rt-dev).
#   scripts/fuzz_extract.sh [seconds=600] [extra libFuzzer flags...]
# e.g. `scripts/fuzz_extract.sh 600 -len_control=0 -max_len=8192` to explore long inputs from the start.
set -euo pipefail
seconds="${1:-600}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build/fuzz}"
cc="${CC:-$(command -v clang || command -v clang-14)}"
cxx="${CXX:-$(command -v clang++ || command -v clang++-14)}"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_C_FLAGS="$san -fsanitize=fuzzer-no-link" -DCMAKE_CXX_FLAGS="$san -fsanitize=fuzzer-no-link" \
  -DCMAKE_EXE_LINKER_FLAGS="$san" -DCODESCALER_BUILD_FUZZER=ON ${CODESCALER_SDIST_DIR:+-DCODESCALER_SDIST_DIR="$CODESCALER_SDIST_DIR"}
cmake --build "$build" --target codescaler_fuzz_extract -j"$(nproc)"
corpus="$build/corpus"
mkdir -p "$corpus"
# Seeds: a few responses in the shapes the policies care about (the first byte selects policy/language).
printf '\x00Here:\n```python\ndef f(x):\n    return x\n```\nDone.' > "$corpus/seed-codescaler"
printf '\x01~~~c++ {.x}\r\nint main() {}\r\n~~~\r\n````py\n```\nx\n```\n````' > "$corpus/seed-last"
printf '\x11```rust\nfn main() { let x = ; }\n```\n```rs\nfn f() {}\n```' > "$corpus/seed-best"
printf '\x02```p\xc3\xa9\n\x00\xff\xfe```\n \xc2\xa0```' > "$corpus/seed-unicode"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
"$build/codescaler_fuzz_extract" "$corpus" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
  -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$build/" "$@"
