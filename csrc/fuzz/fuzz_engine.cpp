// libFuzzer target over codescaler_open's reading of an engine directory. The good aoti engine that
// CODESCALER_FUZZ_ENGINE names is copied once into a temporary directory; each input then damages that
// copy, opens it and puts it back. The first byte picks what the rest of the input becomes:
//   0 mod 4: manifest.json;
//   1 mod 4: the first bytes of weights.safetensors, overwritten in place (8-byte little-endian header
//            length, then the JSON header; the file keeps its size and its tensor data, so a header that
//            still parses opens for real);
//   2 mod 4: a whole weights file of its own, fuzz.safetensors, that the manifest's "weights" names
//            instead (any header length, truncated headers, data_offsets past the end of a short file);
//   3 mod 4: tokenizer.json (its size in the manifest updated, so the tokenizer itself is read).
// codescaler_open must return a known status with a message; a failed open must leave *out NULL (and,
// under LeakSanitizer, nothing allocated); a successful one must describe itself and score a pair with
// the ABI's invariants, then close. Nothing may crash, hang or trip a sanitizer.
//
// One invariant is only recorded, not enforced: an accepted engine whose tensor data is garbage (a
// header moved onto other bytes) can yield a non-finite score, and the scorer does not check scores.
// Such inputs are counted and, when CODESCALER_FUZZ_FINDINGS names a directory, the first 20 saved
// there as nonfinite-N.
#include <codescaler/codescaler.h>

#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace fs = std::filesystem;

namespace {

fs::path copy;
std::string manifest, manifest_fuzz_weights, weights_head;
const std::uint8_t* input = nullptr;
std::size_t input_size = 0, nonfinite = 0;

[[noreturn]] void die(const char* what, const char* detail = "") {
  std::fprintf(stderr, "fuzz_engine: %s %s\n", what, detail);
  std::abort();
}

std::string slurp(const fs::path& p, std::size_t limit = SIZE_MAX) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("cannot read", p.c_str());
  std::string s(std::min<std::uintmax_t>(limit, fs::file_size(p)), '\0');
  std::size_t at = 0;
  while (at < s.size()) {
    const ssize_t got = ::pread(fd, s.data() + at, s.size() - at, static_cast<off_t>(at));
    if (got <= 0) die("short read", p.c_str());
    at += static_cast<std::size_t>(got);
  }
  ::close(fd);
  return s;
}

// Writes `data` at offset 0 of `p`; `truncate`: the file becomes exactly `data`.
void put(const fs::path& p, const std::string& data, bool truncate = true) {
  const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0644);
  if (fd < 0) die("cannot write", p.c_str());
  std::size_t at = 0;
  while (at < data.size()) {
    const ssize_t put = ::pwrite(fd, data.data() + at, data.size() - at, static_cast<off_t>(at));
    if (put <= 0) die("short write", p.c_str());
    at += static_cast<std::size_t>(put);
  }
  ::close(fd);
}

// The manifest with `"key": ` inside the object `"object": {` set to `value` (the exporter's layout).
std::string with_field(const std::string& m, const std::string& object, const std::string& key,
                       const std::string& value) {
  const std::size_t in = m.find("\"" + object + "\": {");
  const std::size_t at = in == std::string::npos ? in : m.find("\"" + key + "\": ", in);
  if (at == std::string::npos) die("manifest.json lacks", (object + "." + key).c_str());
  const std::size_t begin = at + key.size() + 4;
  const std::size_t end = m.find_first_of(",\n}", begin);
  return m.substr(0, begin) + value + m.substr(end);
}

void check_status(codescaler_status s, const char* call) {
  if (s < CODESCALER_OK || s > CODESCALER_INTERNAL_ERROR) die(call, "returned an unknown status");
}

void remove_copy() {
  std::error_code ec;
  fs::remove_all(copy, ec);
}

void record_nonfinite() {
  if (nonfinite++ == 0) std::fprintf(stderr, "fuzz_engine: a non-finite score from an accepted engine (recorded)\n");
  const char* dir = std::getenv("CODESCALER_FUZZ_FINDINGS");
  if (!dir || nonfinite > 20) return;
  std::error_code ec;
  fs::create_directories(dir, ec);
  put(fs::path(dir) / ("nonfinite-" + std::to_string(nonfinite)),
      std::string(reinterpret_cast<const char*>(input), input_size));
}

// An engine that opened must work as one.
void use(codescaler_scorer* s) {
  char line[512];
  const std::size_t need = codescaler_describe(s, line, sizeof line);
  if (need == 0 || !std::memchr(line, '\0', sizeof line)) die("describe failed on an open handle");
  const char* questions[] = {"Write f.", "Write f.", "q"};
  const char* responses[] = {"```python\ndef f(x):\n    return x\n```", "no code", "```python\nx = (\n```"};
  codescaler_reward rewards[3];
  char error[256];
  std::memset(error, 'x', sizeof error);
  const codescaler_status st = codescaler_score_batch(s, 3, questions, nullptr, responses, nullptr, rewards, error,
                                                      sizeof error);
  check_status(st, "score_batch");
  if (!std::memchr(error, '\0', sizeof error)) die("score_batch left the error buffer without a NUL");
  if (st != CODESCALER_OK) return;  // e.g. MODEL_ERROR from a header libtorch refuses at run time
  for (std::size_t i = 0; i < 3; ++i) {
    const codescaler_reward& r = rewards[i];
    if (r.code_offset + r.code_length > std::strlen(responses[i])) die("code range outside the response");
    if (r.item_status == CODESCALER_OK) {
      if (r.extraction != CODESCALER_EXTRACT_OK && r.reward != 0 && !std::isnan(r.reward))
        die("reward without valid code");
      if (!std::isfinite(r.reward) || (r.has_raw_score && !std::isfinite(r.raw_score))) {
        record_nonfinite();
        continue;
      }
      if (!(r.reward >= 0)) die("negative reward");
    } else if (!std::isnan(r.reward)) {
      die("refused item without NaN");
    }
  }
}

void try_open() {
  codescaler_scorer* s = reinterpret_cast<codescaler_scorer*>(std::uintptr_t{1});
  char error[256];
  std::memset(error, 'x', sizeof error);
  codescaler_options options;
  codescaler_options_init(&options);
  options.threads = 1;
  const codescaler_status st = codescaler_open(copy.c_str(), &options, &s, error, sizeof error);
  check_status(st, "open");
  if (!std::memchr(error, '\0', sizeof error)) die("open left the error buffer without a NUL");
  if (st != CODESCALER_OK) {
    if (s != nullptr) die("a failed open left a handle");
    if (error[0] == '\0') die("a failed open left no message");
    if (st == CODESCALER_INTERNAL_ERROR) die("open reported an internal error:", error);
    return;
  }
  if (!s || error[0] != '\0') die("a successful open without a handle or with a message");
  use(s);
  codescaler_close(s);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* engine = std::getenv("CODESCALER_FUZZ_ENGINE");
  if (!engine) die("set CODESCALER_FUZZ_ENGINE to an aoti engine directory");
  // Under $TMPDIR: scripts/fuzz_scorer.sh points it into the build tree and empties it before each run,
  // since a crash, leak or timeout ends libFuzzer without atexit handlers, leaving this ~100 MB copy and
  // libtorch's extracted blocks behind.
  std::string tmpl = (fs::temp_directory_path() / "codescaler-fuzz-engine-XXXXXX").string();
  if (const char* dir = ::mkdtemp(tmpl.data())) copy = dir;
  else die("mkdtemp failed");
  std::atexit(remove_copy);
  fs::copy(engine, copy, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  manifest = slurp(copy / "manifest.json");
  weights_head = slurp(copy / "weights.safetensors", 4096);
  (void)with_field(manifest, "tokenizer.json", "size", "0");  // the layout mode 3 edits is there
  manifest_fuzz_weights = manifest;
  const std::string from = "\"weights\": \"weights.safetensors\"";
  const std::size_t at = manifest_fuzz_weights.find(from);
  if (at == std::string::npos) die("manifest.json does not name weights.safetensors");
  manifest_fuzz_weights.replace(at, from.size(), "\"weights\": \"fuzz.safetensors\"");
  // The copy opens as it is, or every input would only exercise the same refusal.
  codescaler_scorer* s = nullptr;
  char error[512];
  if (codescaler_open(copy.c_str(), nullptr, &s, error, sizeof error) != CODESCALER_OK) die("copy does not open:", error);
  codescaler_close(s);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  input = data;
  input_size = size;
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 4) {
    case 0:
      put(copy / "manifest.json", rest);
      try_open();
      put(copy / "manifest.json", manifest);
      break;
    case 1:
      put(copy / "weights.safetensors", rest.substr(0, weights_head.size()), false);
      try_open();
      put(copy / "weights.safetensors", weights_head, false);
      break;
    case 2:
      put(copy / "fuzz.safetensors", rest);
      put(copy / "manifest.json", manifest_fuzz_weights);
      try_open();
      put(copy / "manifest.json", manifest);
      break;
    case 3:  // the real tokenizer.json (18 MB for Qwen's) is renamed aside, not rewritten
      fs::rename(copy / "tokenizer.json", copy / "tokenizer.json.good");
      put(copy / "tokenizer.json", rest);
      put(copy / "manifest.json", with_field(manifest, "tokenizer.json", "size", std::to_string(rest.size())));
      try_open();
      fs::rename(copy / "tokenizer.json.good", copy / "tokenizer.json");
      put(copy / "manifest.json", manifest);
      break;
  }
  return 0;
}
