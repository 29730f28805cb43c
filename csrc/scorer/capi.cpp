// The C ABI over codescaler::Scorer: argument checks, conversion, and nothing thrown across it.
#include "codescaler/codescaler.h"

#include <cstddef>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "codescaler/scorer.hpp"

struct codescaler_scorer {
  std::unique_ptr<codescaler::Scorer> scorer;
};

namespace {

using codescaler::ScorerCode;
using codescaler::ScorerStatus;

// ScorerCode and Status take their numbers from status.h, so the C values are the C++ ones cast; these
// hold the last of each in step, where a code added on one side only would first show.
static_assert(static_cast<int>(ScorerCode::internal_error) == CODESCALER_INTERNAL_ERROR);
static_assert(static_cast<int>(codescaler::Status::code_too_long) == CODESCALER_EXTRACT_CODE_TOO_LONG);

codescaler_status to_c(ScorerCode code) { return static_cast<codescaler_status>(code); }

void copy_out(const std::string& text, char* buffer, std::size_t size) {
  if (!buffer || size == 0) return;
  const std::size_t n = text.size() < size - 1 ? text.size() : size - 1;
  std::memcpy(buffer, text.data(), n);
  buffer[n] = '\0';
}

codescaler_status report(const ScorerStatus& s, char* error, std::size_t error_size) {
  copy_out(s.ok() ? std::string() : s.message, error, error_size);
  return to_c(s.code);
}

codescaler_status invalid(const char* message, char* error, std::size_t error_size) {
  copy_out(message, error, error_size);
  return CODESCALER_INVALID_ARGUMENT;
}

// Views of n caller strings; NULL lengths: NUL-terminated. Returns false (and names it) on a NULL string.
bool views(std::size_t n, const char* const* texts, const std::size_t* lengths, const char* name,
           std::vector<std::string_view>& out, std::string& problem) {
  out.clear();
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (!texts[i]) {
      problem = std::string(name) + "[" + std::to_string(i) + "] is NULL";
      return false;
    }
    out.emplace_back(texts[i], lengths ? lengths[i] : std::strlen(texts[i]));
  }
  return true;
}

// Runs `body` (which returns a status), turning anything it throws into a status and a message.
template <class Body>
codescaler_status guarded(char* error, std::size_t error_size, const char* doing, Body&& body) {
  copy_out(std::string(), error, error_size);  // a caller's buffer always ends up a C string
  try {
    return body();
  } catch (const std::bad_alloc&) {
    copy_out(std::string("out of memory ") + doing, error, error_size);
    return CODESCALER_OUT_OF_MEMORY;
  } catch (...) {
    copy_out(std::string("internal error ") + doing, error, error_size);
    return CODESCALER_INTERNAL_ERROR;
  }
}

void fill(const codescaler::Reward& r, codescaler_reward& c) {
  c.reward = r.reward;
  c.raw_score = r.raw_score;
  c.has_raw_score = r.has_raw_score ? 1 : 0;
  c.extraction = static_cast<int32_t>(r.status);
  c.truncated = r.truncated ? 1 : 0;
  c.item_status = to_c(r.item);
  c.code_offset = r.code_begin;
  c.code_length = r.code_end - r.code_begin;
}

}  // namespace

extern "C" {

void codescaler_options_init(codescaler_options* options) {
  if (!options) return;
  const codescaler::ScorerOptions d;
  options->struct_size = sizeof(codescaler_options);
  options->threads = d.threads;
  options->max_length = d.max_length;
  options->max_batch_tokens = d.max_batch_tokens;
  options->max_batch_size = d.max_batch_size;
  options->share_prefix = d.share_prefix ? 1 : 0;
  options->score_empty = d.score_empty ? 1 : 0;
  options->policy = "codescaler";
  options->language = "python";
  options->parse_budget_steps = d.parse_budget_steps;
}

codescaler_status codescaler_open(const char* engine_dir, const codescaler_options* options, codescaler_scorer** out,
                                  char* error, size_t error_size) {
  if (!engine_dir || !out) return invalid("codescaler_open: engine_dir and out must not be NULL", error, error_size);
  *out = nullptr;
  return guarded(error, error_size, "opening the engine", [&]() -> codescaler_status {
    codescaler::ScorerOptions o;
    if (options) {
      // The first layout ended at `language`; later fields are read only when the caller's struct has them.
      constexpr std::size_t kFirstLayout = offsetof(codescaler_options, parse_budget_steps);
      if (options->struct_size != sizeof(codescaler_options) && options->struct_size != kFirstLayout)
        return invalid("codescaler_open: options.struct_size is wrong; fill options with codescaler_options_init",
                       error, error_size);
      if (options->struct_size >= offsetof(codescaler_options, parse_budget_steps) + sizeof(uint64_t))
        o.parse_budget_steps = options->parse_budget_steps;
      o.threads = options->threads;
      o.max_length = options->max_length;
      o.max_batch_tokens = options->max_batch_tokens;
      o.max_batch_size = options->max_batch_size;
      o.share_prefix = options->share_prefix != 0;
      o.score_empty = options->score_empty != 0;
      const std::string policy = options->policy ? options->policy : "codescaler";
      const auto chosen = codescaler::policy_from_name(policy);
      if (!chosen)
        return report({ScorerCode::invalid_argument, "policy \"" + policy + "\" is not codescaler, last or best"}, error,
                      error_size);
      o.policy = *chosen;
      const std::string language = options->language ? options->language : "python";
      const auto lang = codescaler::language_from_tag(language);
      if (!lang) return report({ScorerCode::invalid_argument, "language \"" + language + "\" is not supported"}, error, error_size);
      o.language = *lang;
    }
    auto handle = std::make_unique<codescaler_scorer>();
    const ScorerStatus s = codescaler::Scorer::open(engine_dir, o, &handle->scorer);
    if (!s.ok()) return report(s, error, error_size);
    *out = handle.release();
    return CODESCALER_OK;
  });
}

void codescaler_close(codescaler_scorer* scorer) { delete scorer; }

codescaler_status codescaler_score_batch(codescaler_scorer* scorer, size_t n, const char* const* questions,
                                         const size_t* question_lengths, const char* const* responses,
                                         const size_t* response_lengths, codescaler_reward* rewards, char* error,
                                         size_t error_size) {
  if (!scorer) return invalid("codescaler_score_batch: scorer is NULL", error, error_size);
  if (n && (!questions || !responses || !rewards))
    return invalid("codescaler_score_batch: questions, responses and rewards must not be NULL", error, error_size);
  return guarded(error, error_size, "while scoring", [&]() -> codescaler_status {
    std::vector<std::string_view> qs, rs;
    std::string problem;
    if (!views(n, questions, question_lengths, "questions", qs, problem) ||
        !views(n, responses, response_lengths, "responses", rs, problem))
      return report({ScorerCode::invalid_argument, problem}, error, error_size);
    std::vector<codescaler::Reward> got;
    const ScorerStatus s = scorer->scorer->score_batch(qs, rs, &got);
    if (!s.ok()) return report(s, error, error_size);
    for (std::size_t i = 0; i < n; ++i) fill(got[i], rewards[i]);
    return report(s, error, error_size);
  });
}

codescaler_status codescaler_best_of_n(codescaler_scorer* scorer, const char* question, size_t question_length,
                                       size_t n, const char* const* candidates, const size_t* candidate_lengths,
                                       codescaler_reward* rewards, size_t* best, char* error, size_t error_size) {
  if (!scorer || !question || !candidates || !rewards || !best)
    return invalid("codescaler_best_of_n: scorer, question, candidates, rewards and best must not be NULL", error,
                   error_size);
  return guarded(error, error_size, "while scoring", [&]() -> codescaler_status {
    std::vector<std::string_view> cs;
    std::string problem;
    if (!views(n, candidates, candidate_lengths, "candidates", cs, problem))
      return report({ScorerCode::invalid_argument, problem}, error, error_size);
    codescaler::BestOfN got;
    const ScorerStatus s = scorer->scorer->best_of_n(std::string_view(question, question_length), cs, &got);
    if (!s.ok()) return report(s, error, error_size);
    for (std::size_t i = 0; i < n; ++i) fill(got.details[i], rewards[i]);
    *best = got.index;
    return report(s, error, error_size);
  });
}

size_t codescaler_describe(const codescaler_scorer* scorer, char* buffer, size_t size) {
  if (!scorer) return 0;
  try {
    const std::string line = scorer->scorer->describe();
    copy_out(line, buffer, size);
    return line.size() + 1;
  } catch (...) {
    return 0;
  }
}

const char* codescaler_status_name(codescaler_status status) {
  const int value = status;  // a C caller may pass any int
  if (value < CODESCALER_OK || value > CODESCALER_INTERNAL_ERROR) return "unknown";
  return codescaler::scorer_code_name(static_cast<ScorerCode>(status));
}

const char* codescaler_extraction_name(int32_t extraction) {
  if (extraction < CODESCALER_EXTRACT_OK || extraction > CODESCALER_EXTRACT_CODE_TOO_LONG) return "unknown";
  return codescaler::status_name(static_cast<codescaler::Status>(extraction));
}

}  // extern "C"
