// libFuzzer target over the scoring half of the C ABI (codescaler.h) on a real aoti engine, which
// CODESCALER_FUZZ_ENGINE names (scripts/fuzz_scorer.sh exports the tiny model at float32 and runs this;
// csrc/fuzz/fuzz_engine.cpp fuzzes the engine directory itself). Two handles are opened once: the
// defaults, and one with policy "best", score_empty, no prefix sharing, max_length 24 (so truncation
// happens) and tiny batches (so several passes run per call).
//
// The first byte is options:
//   bit 0      which handle;
//   bit 1      explicit lengths (NULs and every byte are text) or NULL lengths (each field ends at its
//              first NUL, as a C caller's strings would);
//   bits 2-3   the error buffer: 256 bytes, 1 byte, 7 bytes, or NULL;
//   bits 4-7   at most 1 + (bits >> 4) pairs.
// The rest splits on 0x1f into question, response, question, response... Each call is checked: a known
// status, invalid UTF-8 reported exactly when a field is ill-formed, every reward's invariants (finite
// and >= 0 or NaN exactly when item_status != OK, 0 without valid code, the code range inside the
// response), the error buffer a C string ("" on success); best_of_n's index is the first highest
// non-NaN reward. Nothing may crash, hang or trip a sanitizer.
#include <codescaler/codescaler.h>

#include "utf8_reference.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

using codescaler_fuzz::well_formed_utf8;

codescaler_scorer* handles[2] = {nullptr, nullptr};
bool score_empty[2] = {false, true};

[[noreturn]] void die(const char* what, const char* detail = "") {
  std::fprintf(stderr, "fuzz_capi: %s %s\n", what, detail);
  std::abort();
}

void close_handles() {
  for (codescaler_scorer*& h : handles) {
    codescaler_close(h);
    h = nullptr;
  }
}

double softplus(double x) { return std::fmax(x, 0.0) + std::log1p(std::exp(-std::fabs(x))); }

// The caller's error buffer: `size` bytes inside a larger, poisoned-by-pattern array, so a write past
// `size` shows as a changed guard byte.
struct ErrorBuffer {
  char bytes[300];
  std::size_t size;
  bool null;
  explicit ErrorBuffer(unsigned choice) {
    static const std::size_t sizes[] = {256, 1, 7, 0};
    size = sizes[choice & 3];
    null = size == 0;
    std::memset(bytes, 'x', sizeof bytes);
  }
  char* ptr() { return null ? nullptr : bytes; }
  void check(codescaler_status st, const char* call) const {
    if (null) return;
    for (std::size_t i = size; i < sizeof bytes; ++i)
      if (bytes[i] != 'x') die(call, "wrote past error_size");
    const void* nul = std::memchr(bytes, '\0', size);
    if (!nul) die(call, "left the error buffer without a NUL");
    if (st == CODESCALER_OK && bytes[0] != '\0') die(call, "left a message on success");
    if (st != CODESCALER_OK && size > 1 && bytes[0] == '\0') die(call, "failed without a message");
  }
};

void check_status(codescaler_status s, const char* call) {
  if (s < CODESCALER_OK || s > CODESCALER_INTERNAL_ERROR) die(call, "returned an unknown status");
  if (std::strcmp(codescaler_status_name(s), "unknown") == 0) die(call, "status has no name");
}

void check_reward(const codescaler_reward& r, std::size_t response_length, bool scores_empty, const char* call) {
  if (r.extraction < CODESCALER_EXTRACT_OK || r.extraction > CODESCALER_EXTRACT_TIMEOUT)
    die(call, "unknown extraction");
  if (std::strcmp(codescaler_extraction_name(r.extraction), "unknown") == 0) die(call, "extraction has no name");
  if (r.code_offset > response_length || r.code_length > response_length - r.code_offset)
    die(call, "code range outside the response");
  if (r.extraction != CODESCALER_EXTRACT_OK && r.code_length != 0) die(call, "a code range without valid code");
  if (r.item_status == CODESCALER_OK) {
    if (!std::isfinite(r.reward) || !(r.reward >= 0)) die(call, "reward not finite and >= 0");
    if (r.extraction != CODESCALER_EXTRACT_OK && r.reward != 0) die(call, "reward without valid code");
    if (r.extraction == CODESCALER_EXTRACT_OK && !r.has_raw_score) die(call, "valid code not scored");
    if (r.extraction != CODESCALER_EXTRACT_OK && !scores_empty && r.has_raw_score)
      die(call, "invalid code scored without score_empty");
    if (r.has_raw_score) {
      if (!std::isfinite(r.raw_score)) die(call, "raw score not finite");
      if (r.extraction == CODESCALER_EXTRACT_OK && std::fabs(r.reward - softplus(r.raw_score)) > 1e-9)
        die(call, "reward is not softplus(raw score)");
    }
  } else {
    if (r.item_status != CODESCALER_UNSUPPORTED) die(call, "item_status neither OK nor UNSUPPORTED");
    if (!std::isnan(r.reward)) die(call, "refused item without NaN");
    if (r.has_raw_score) die(call, "refused item has a raw score");
  }
  if (r.truncated && !r.has_raw_score) die(call, "truncated but not run");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* engine = std::getenv("CODESCALER_FUZZ_ENGINE");
  if (!engine) die("set CODESCALER_FUZZ_ENGINE to an aoti engine directory");
  char error[512];
  for (int k = 0; k < 2; ++k) {
    codescaler_options options;
    codescaler_options_init(&options);
    options.threads = 1;
    if (k == 1) {
      options.policy = "best";
      options.score_empty = 1;
      options.share_prefix = 0;
      options.max_length = 24;
      options.max_batch_tokens = 40;
      options.max_batch_size = 2;
    }
    const codescaler_status st = codescaler_open(engine, &options, &handles[k], error, sizeof error);
    if (st != CODESCALER_OK) die(codescaler_status_name(st), error);
  }
  std::atexit(close_handles);  // libtorch's extracted blocks under /tmp go with the handles
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const unsigned flags = data[0];
  const int which = flags & 1;
  const bool explicit_lengths = flags & 2;
  const std::size_t max_pairs = 1 + (flags >> 4);
  codescaler_scorer* scorer = handles[which];

  std::vector<std::string> fields(1);
  for (std::size_t i = 1; i < size; ++i) {
    if (data[i] == 0x1f) {
      if (fields.size() == 2 * max_pairs) break;
      fields.emplace_back();
    } else {
      fields.back() += static_cast<char>(data[i]);
    }
  }
  if (fields.size() % 2) fields.emplace_back();
  const std::size_t n = fields.size() / 2;
  std::vector<const char*> qs(n), rs(n);
  std::vector<std::size_t> ql(n), rl(n);
  bool all_valid = true;
  for (std::size_t i = 0; i < n; ++i) {
    qs[i] = fields[2 * i].c_str();  // std::string keeps a NUL after its bytes, for the NULL-lengths calls
    rs[i] = fields[2 * i + 1].c_str();
    ql[i] = explicit_lengths ? fields[2 * i].size() : std::strlen(qs[i]);
    rl[i] = explicit_lengths ? fields[2 * i + 1].size() : std::strlen(rs[i]);
    all_valid = all_valid && well_formed_utf8({qs[i], ql[i]}) && well_formed_utf8({rs[i], rl[i]});
  }
  const std::size_t* qlens = explicit_lengths ? ql.data() : nullptr;
  const std::size_t* rlens = explicit_lengths ? rl.data() : nullptr;

  // Rewards past n are sentinels that must stay untouched.
  std::vector<codescaler_reward> rewards(n + 1);
  std::memset(rewards.data(), 0xAB, rewards.size() * sizeof(codescaler_reward));
  const codescaler_reward sentinel = rewards[n];
  ErrorBuffer error(flags >> 2);
  codescaler_status st =
      codescaler_score_batch(scorer, n, qs.data(), qlens, rs.data(), rlens, rewards.data(), error.ptr(), error.size);
  check_status(st, "score_batch");
  error.check(st, "score_batch");
  if (std::memcmp(&rewards[n], &sentinel, sizeof sentinel) != 0) die("score_batch", "wrote past n rewards");
  if (all_valid && st != CODESCALER_OK) die("score_batch failed on well-formed input:", codescaler_status_name(st));
  if (!all_valid && st != CODESCALER_INVALID_UTF8) die("score_batch did not report invalid UTF-8");
  if (st == CODESCALER_OK)
    for (std::size_t i = 0; i < n; ++i) check_reward(rewards[i], rl[i], score_empty[which], "score_batch");

  // Best-of-N: the first question against every response.
  std::memset(rewards.data(), 0xAB, rewards.size() * sizeof(codescaler_reward));
  std::size_t best = SIZE_MAX;
  ErrorBuffer error2(flags >> 2);
  const bool candidates_valid = well_formed_utf8({qs[0], ql[0]}) && [&] {
    for (std::size_t i = 0; i < n; ++i)
      if (!well_formed_utf8({rs[i], rl[i]})) return false;
    return true;
  }();
  st = codescaler_best_of_n(scorer, qs[0], ql[0], n, rs.data(), rlens, rewards.data(), &best, error2.ptr(),
                            error2.size);
  check_status(st, "best_of_n");
  error2.check(st, "best_of_n");
  if (std::memcmp(&rewards[n], &sentinel, sizeof sentinel) != 0) die("best_of_n", "wrote past n rewards");
  if (!candidates_valid && st != CODESCALER_INVALID_UTF8) die("best_of_n did not report invalid UTF-8");
  if (candidates_valid && st != CODESCALER_OK && st != CODESCALER_UNSUPPORTED)
    die("best_of_n failed on well-formed input:", codescaler_status_name(st));
  if (st == CODESCALER_OK) {  // (UNSUPPORTED: every candidate refused; then no reward is written)
    bool any = false;
    std::size_t want = 0;
    for (std::size_t i = 0; i < n; ++i) {
      check_reward(rewards[i], rl[i], score_empty[which], "best_of_n");
      if (std::isnan(rewards[i].reward)) continue;
      if (!any || rewards[i].reward > rewards[want].reward) want = i;
      any = true;
    }
    if (!any || best != want) die("best_of_n", "index is not the first highest non-NaN reward");
  }
  return 0;
}
