// Program extraction: pick the code block of a response under a policy and validate its syntax (Python as
// CPython's ast.parse would, other languages with tree-sitter; see syntax.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "codescaler/export.h"
#include "codescaler/fence.hpp"
#include "codescaler/status.h"
#include "codescaler/syntax.hpp"

namespace codescaler {

enum class Policy {
  codescaler,  // the published recipe: exactly one block (exact upstream pattern), stripped
  last,        // the last block tagged with the language (or untagged), tolerant fences
  best,        // the longest block of the language that parses cleanly, ties to the last
};

// The extraction outcome, numbered by the C ABI's codescaler_extraction (status.h), which a Reward's
// status becomes in codescaler_reward.extraction. code_too_long: the selected code is longer than
// kMaxCodeBytes; it is neither parsed nor scored.
enum class Status {
  ok = CODESCALER_EXTRACT_OK,
  no_block = CODESCALER_EXTRACT_NO_BLOCK,
  multiple_blocks = CODESCALER_EXTRACT_MULTIPLE_BLOCKS,
  empty_block = CODESCALER_EXTRACT_EMPTY_BLOCK,
  syntax_error = CODESCALER_EXTRACT_SYNTAX_ERROR,
  timeout = CODESCALER_EXTRACT_TIMEOUT,
  code_too_long = CODESCALER_EXTRACT_CODE_TOO_LONG,
};

// The most UTF-8 bytes of (stripped) code a response's selected block may hold for its syntax to be checked
// and the model to run on it (256 KiB; the model reads at most max_length tokens of it anyway). Bytes, not
// seconds: the same block gets the same status everywhere. It bounds the validity check per item (CPython's
// ast.parse in Python, the C++ check here) where the parse budget alone would let 10 MB through CPython.
inline constexpr std::size_t kMaxCodeBytes = 262'144;

CODESCALER_API const char* status_name(Status status);
// "codescaler", "last", "best" -> Policy (the names of Python's `policy` option).
CODESCALER_API std::optional<Policy> policy_from_name(std::string_view name);

struct Options {
  Policy policy = Policy::codescaler;
  Language language = Language::python;
  // false: stop after selection and leave validity to the caller (status ok means "selected, not yet
  // checked"); Python callers do this to let CPython decide Python validity.
  bool validate = true;
  // Parser steps for all syntax checks of one response (policy best may check several blocks); past it the
  // status is timeout. Deterministic: the same response gets the same status on any machine under any load.
  std::uint64_t parse_budget_steps = kDefaultParseBudgetSteps;
};

struct Extraction {
  Status status = Status::no_block;
  std::uint32_t n_blocks = 0;        // blocks found (all tags)
  std::size_t tag_begin = 0, tag_end = 0;    // byte range of the selected block's tag
  std::size_t code_begin = 0, code_end = 0;  // byte range of the selected, stripped code
  SyntaxReport syntax;               // meaningful when validation ran
  bool has_block() const { return status == Status::ok || status == Status::empty_block ||
                                  status == Status::syntax_error || status == Status::timeout ||
                                  status == Status::code_too_long; }
  std::string_view code(std::string_view text) const { return text.substr(code_begin, code_end - code_begin); }
};

// Strips leading and trailing whitespace as Python's str.strip() does (Unicode White_Space and the
// C0 separators \x1c-\x1f); returns the byte range of what remains inside [begin, end).
CODESCALER_API std::pair<std::size_t, std::size_t> strip_range(std::string_view text, std::size_t begin, std::size_t end);

// One response; `checker` is only used when options.validate.
CODESCALER_API Extraction extract(std::string_view text, const Options& options, SyntaxChecker& checker);

// Many responses over `threads` worker threads (0: hardware concurrency), one SyntaxChecker per thread;
// results in input order.
CODESCALER_API std::vector<Extraction> extract_batch(const std::vector<std::string_view>& texts, const Options& options,
                                                     unsigned threads = 0);

}  // namespace codescaler
