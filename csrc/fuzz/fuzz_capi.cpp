// libFuzzer target over the C ABI (codescaler.h) on a real aoti engine; CODESCALER_FUZZ_ENGINE names it
// (scripts/fuzz_scorer.sh exports the tiny model at float32 and runs this). The first byte picks a mode:
//   0 mod 4: score: the rest split on 0x1f into (question, response) pairs, scored with score_batch and
//            best_of_n (explicit lengths, so NULs and any bytes are text); every status and reward checked;
//   1 mod 4: the rest replaces manifest.json of a copy of the engine, which is then opened;
//   2 mod 4: the rest overwrites the first bytes of that copy's weights.safetensors (header length and
//            JSON header; the file keeps its size, so the manifest's size check passes), then opened;
//   3 mod 4: the rest replaces tokenizer.json of the copy (size in the manifest updated), then opened.
// Nothing may crash, hang or trip a sanitizer; an open that fails must leave no handle.
#include <codescaler/codescaler.h>

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

codescaler_scorer* scorer = nullptr;
fs::path copy;
std::string manifest, tokenizer, weights_head;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "fuzz_capi: %s\n", what);
  std::abort();
}

std::string slurp(const fs::path& p, std::size_t limit = SIZE_MAX) {
  std::ifstream f(p, std::ios::binary);
  std::string s;
  s.resize(std::min<std::size_t>(limit, fs::file_size(p)));
  f.read(s.data(), static_cast<std::streamsize>(s.size()));
  return s;
}

void put(const fs::path& p, const std::string& data, std::ios::openmode mode = std::ios::binary | std::ios::trunc) {
  std::fstream f(p, mode | std::ios::out);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

void check_status(codescaler_status s) {
  if (s < CODESCALER_OK || s > CODESCALER_INTERNAL_ERROR) die("unknown status");
  if (s == CODESCALER_INTERNAL_ERROR) die("internal error reported");
}

void try_open() {
  codescaler_scorer* s = reinterpret_cast<codescaler_scorer*>(0x1);
  char error[256];
  std::memset(error, 'x', sizeof error);
  const codescaler_status st = codescaler_open(copy.c_str(), nullptr, &s, error, sizeof error);
  check_status(st);
  if (!std::memchr(error, '\0', sizeof error)) die("error message not NUL-terminated");
  if (st != CODESCALER_OK && s != nullptr) die("failed open left a handle");
  codescaler_close(s);
}

void score(const std::uint8_t* data, std::size_t size) {
  std::vector<std::string> fields(1);
  for (std::size_t i = 0; i < size && fields.size() <= 16; ++i) {
    if (data[i] == 0x1f) fields.emplace_back();
    else fields.back() += static_cast<char>(data[i]);
  }
  if (fields.size() % 2) fields.emplace_back();
  const std::size_t n = fields.size() / 2;
  std::vector<const char*> qs(n), rs(n);
  std::vector<std::size_t> ql(n), rl(n);
  for (std::size_t i = 0; i < n; ++i) {
    qs[i] = fields[2 * i].data();
    ql[i] = fields[2 * i].size();
    rs[i] = fields[2 * i + 1].data();
    rl[i] = fields[2 * i + 1].size();
  }
  std::vector<codescaler_reward> rewards(n);
  char error[256];
  codescaler_status st = codescaler_score_batch(scorer, n, qs.data(), ql.data(), rs.data(), rl.data(), rewards.data(),
                                                error, sizeof error);
  check_status(st);
  if (st != CODESCALER_OK && st != CODESCALER_INVALID_UTF8) die("score_batch failed on a well-formed call");
  if (st == CODESCALER_OK)
    for (std::size_t i = 0; i < n; ++i) {
      const codescaler_reward& r = rewards[i];
      if (r.item_status == CODESCALER_OK) {
        if (!(r.reward >= 0) || !std::isfinite(r.reward)) die("reward not finite and >= 0");
        if (r.extraction != CODESCALER_EXTRACT_OK && r.reward != 0) die("reward without valid code");
        if (r.extraction == CODESCALER_EXTRACT_OK && !r.has_raw_score) die("valid code not scored");
      } else if (r.item_status != CODESCALER_UNSUPPORTED || !std::isnan(r.reward)) {
        die("refused item without NaN");
      }
      if (r.code_offset + r.code_length > rl[i]) die("code range outside the response");
    }
  std::size_t best = SIZE_MAX;
  st = codescaler_best_of_n(scorer, qs[0], ql[0], n, rs.data(), rl.data(), rewards.data(), &best, error, sizeof error);
  check_status(st);
  if (st == CODESCALER_OK && best >= n) die("best index out of range");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* engine = std::getenv("CODESCALER_FUZZ_ENGINE");
  if (!engine) die("set CODESCALER_FUZZ_ENGINE to an aoti engine directory");
  char error[512];
  codescaler_options options;
  codescaler_options_init(&options);
  options.threads = 1;
  if (codescaler_open(engine, &options, &scorer, error, sizeof error) != CODESCALER_OK) die(error);
  copy = fs::temp_directory_path() / ("codescaler-fuzz-" + std::to_string(::getpid()));
  fs::remove_all(copy);
  fs::copy(engine, copy, fs::copy_options::recursive);
  manifest = slurp(copy / "manifest.json");
  tokenizer = slurp(copy / "tokenizer.json");
  weights_head = slurp(copy / "weights.safetensors", 4096);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 4) {
    case 0:
      score(data + 1, size - 1);
      break;
    case 1:
      put(copy / "manifest.json", rest);
      try_open();
      put(copy / "manifest.json", manifest);
      break;
    case 2:
      put(copy / "weights.safetensors", rest.substr(0, weights_head.size()), std::ios::binary | std::ios::in);
      try_open();
      put(copy / "weights.safetensors", weights_head, std::ios::binary | std::ios::in);
      break;
    case 3: {
      put(copy / "tokenizer.json", rest);
      // Keep the manifest's size check satisfied so the tokenizer itself is read.
      std::string m = manifest;
      const std::string key = "\"tokenizer.json\": {\n      \"size\": ";
      const std::size_t at = m.find(key);
      if (at != std::string::npos) {
        const std::size_t end = m.find_first_not_of("0123456789", at + key.size());
        m.replace(at + key.size(), end - at - key.size(), std::to_string(rest.size()));
      }
      put(copy / "manifest.json", m);
      try_open();
      put(copy / "tokenizer.json", tokenizer);
      put(copy / "manifest.json", manifest);
      break;
    }
  }
  return 0;
}
