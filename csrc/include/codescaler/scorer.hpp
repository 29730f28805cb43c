// The CodeScaler reward inside a C++ process: extraction, chat template, tokenizer, the compiled model and
// the shaping, with no Python. It reads an engine directory made by
// `codescaler export --model MODEL --out DIR --format aoti` on the same machine and gives, bit for bit, the
// rewards Python's `RewardModel.from_pretrained(DIR)` gives to every pair both score (see the README).
// A reward's bits depend on the pair alone, never on what else a call holds: every conversation is split
// at the same boundary (its question's tokens, up to the chat template's last added token before the
// code), and the compiled blocks always run on tiles of the engine's `row_tile` tokens.
//
// What differs from Python, by design:
// - Python validity is decided without CPython, by a C++ reading of CPython 3.11's ast.parse rules
//   (tokenizer, grammar, literal checks, depth limits; see syntax.hpp). benchmarks/bench_verdict.py and
//   tests/test_verdict.py measure it against ast.parse: 1 disagreement on 9,742 awkward blocks (an unknown
//   \N{...} character name, accepted here), none on 32,399 real files. The parse budget
//   (parse_budget_steps) is counted in parser steps, not time: a 10 MB block of "x = 1" lines is always
//   Status::timeout, where Python's CPython path would score it.
// - The chat template is the splice recorded at export (head + question + middle + code + tail, with the
//   code's leading characters stripped as the template does), verified by probes there. A (question, code)
//   pair containing one of the template's recorded `refuse` strings (e.g. "</think>" for Qwen3) is not
//   scored: its Reward has `item` = ScorerCode::unsupported and a NaN reward. An engine whose template is
//   no splice at all is refused at open.
// - Truncation is upstream's (right, at max_length tokens); Python's truncation="question" is not offered.
//
// No exceptions leave this API: every call returns a ScorerStatus. A Scorer is safe to share between
// threads: extraction and tokenization run on the calling thread(s), forward passes one at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "codescaler/export.h"
#include "codescaler/extract.hpp"
#include "codescaler/status.h"

namespace codescaler {

// Numbered by the C ABI's codescaler_status (status.h): the C functions return these values as they are.
enum class ScorerCode {
  ok = CODESCALER_OK,
  invalid_argument = CODESCALER_INVALID_ARGUMENT,  // a call's arguments are wrong (sizes differ, no candidates, bad option value)
  invalid_utf8 = CODESCALER_INVALID_UTF8,  // a question or response is not well-formed UTF-8 (the message names which, and where)
  io_error = CODESCALER_IO_ERROR,          // a file of the engine directory could not be read
  bad_engine = CODESCALER_BAD_ENGINE,      // the engine directory is damaged, truncated or inconsistent (the message names the file)
  unsupported = CODESCALER_UNSUPPORTED,    // a valid engine (or item) this scorer cannot run exactly (the message says why)
  model_error = CODESCALER_MODEL_ERROR,    // libtorch failed while running the model (the message carries its text)
  out_of_memory = CODESCALER_OUT_OF_MEMORY,
  internal_error = CODESCALER_INTERNAL_ERROR,  // anything else; a bug if ever seen
};

CODESCALER_API const char* scorer_code_name(ScorerCode code);

struct ScorerStatus {
  ScorerCode code = ScorerCode::ok;
  std::string message;
  bool ok() const { return code == ScorerCode::ok; }
};

struct ScorerOptions {
  // CPU threads for the model (libtorch's intra-op pool, which is process-wide) and for extraction and
  // tokenization; 0 leaves libtorch's default and uses every core for the rest.
  unsigned threads = 0;
  // Token limit of one conversation; 0: the engine's (its manifest's max_length). Larger is refused.
  std::size_t max_length = 0;
  // The planner, as Python's options of the same names.
  std::size_t max_batch_tokens = 8192;
  std::size_t max_batch_size = 64;
  bool share_prefix = true;
  // Extraction, as Python's options of the same names.
  Policy policy = Policy::codescaler;
  Language language = Language::python;
  bool score_empty = false;
  std::uint64_t parse_budget_steps = kDefaultParseBudgetSteps;  // per response; past it Status::timeout
};

struct Reward {
  double reward = 0.0;      // softplus(raw_score) when the code is valid, else 0.0; NaN when item != ok
  double raw_score = 0.0;   // the model's score; meaningful only when has_raw_score
  bool has_raw_score = false;
  Status status = Status::no_block;  // extraction status; ok means valid code was found
  bool truncated = false;   // the conversation exceeded max_length and the model saw its first tokens only
  std::string code;         // the extracted code ("" unless status is ok)
  std::size_t code_begin = 0, code_end = 0;  // its byte range in the response
  // unsupported: the template cannot render this pair exactly; model_error: the model's score is NaN or
  // infinite (raw_score holds it), so no reward is given
  ScorerCode item = ScorerCode::ok;
  std::string message;      // why, when item != ok
};

struct BestOfN {
  std::size_t index = 0;  // the highest reward, ties to the earliest candidate
  std::vector<Reward> details;
};

class Scorer {
 public:
  // Reads and checks `engine_dir` (manifest, files, machine, tokenizer, template), loads the weights
  // and the compiled blocks, and runs one warm-up pass.
  CODESCALER_API static ScorerStatus open(const std::string& engine_dir, const ScorerOptions& options,
                                          std::unique_ptr<Scorer>* out);
  CODESCALER_API ~Scorer();
  Scorer(const Scorer&) = delete;
  Scorer& operator=(const Scorer&) = delete;

  CODESCALER_API ScorerStatus score(std::string_view question, std::string_view response, Reward* out) const;
  // One reward per (questions[i], responses[i]), in order. Identical conversations are run once, and the
  // responses to one question share its tokens, with the same bits as when scored alone (see the
  // README's "Throughput: how a batch is scored").
  CODESCALER_API ScorerStatus score_batch(const std::vector<std::string_view>& questions,
                                          const std::vector<std::string_view>& responses, std::vector<Reward>* out) const;
  // A GRPO step: groups[i] holds the responses to questions[i].
  CODESCALER_API ScorerStatus score_groups(const std::vector<std::string_view>& questions,
                                           const std::vector<std::vector<std::string_view>>& groups,
                                           std::vector<std::vector<Reward>>* out) const;
  CODESCALER_API ScorerStatus best_of_n(std::string_view question, const std::vector<std::string_view>& candidates,
                                        BestOfN* out) const;

  // "bfloat16" or "float32" (fixed at export), the truncation length in use, and one line for logs.
  CODESCALER_API const std::string& dtype() const;
  CODESCALER_API std::size_t max_length() const;
  CODESCALER_API std::string describe() const;

 private:
  struct Impl;
  explicit Scorer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace codescaler
