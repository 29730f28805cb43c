// Syntax validation for the languages extraction supports: Python as CPython 3.11's ast.parse decides it
// (a C++ implementation of its tokenizer, grammar and literal checks; no CPython), the other languages
// with tree-sitter. Both run under a deterministic budget of parser steps, never a clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "codescaler/export.h"

namespace codescaler {

enum class Language { python, cpp, java, javascript, go, rust };

// "python", "cpp", ... -> Language; also accepts the tags responses use ("py", "python3", "c++", "js", ...).
CODESCALER_API std::optional<Language> language_from_tag(std::string_view tag);
CODESCALER_API const char* language_name(Language language);

// Parser steps allowed per response by default. A step is one tree-sitter parse action, or one token or
// grammar rule entered by the Python check. Ordinary code takes about 2 steps per byte with tree-sitter and
// about 1 with the Python check (6 for the densest, one short statement per line), so blocks of several
// megabytes pass (1 MB of "x = 1" lines takes 6M steps, 10 MB ends in timed_out), while input that makes a
// parser work superlinearly stops after a bounded amount of work. Counted, not timed: the same input gets
// the same verdict on any machine under any load.
inline constexpr std::uint64_t kDefaultParseBudgetSteps = 32'000'000;

struct SyntaxReport {
  bool valid = false;
  bool timed_out = false;           // the parse budget (steps) ran out; valid is false
  std::uint32_t n_error_nodes = 0;  // tree-sitter languages: ERROR nodes in the tree
  std::uint32_t n_missing_nodes = 0;  // tree-sitter languages: MISSING nodes the parser inserted to recover
  // The first error, when !valid && !timed_out (tree-sitter: the first ERROR or MISSING node in document
  // order; Python: where the check failed, near where CPython reports it):
  std::uint32_t error_line = 0;    // 1-based
  std::uint32_t error_column = 0;  // 1-based, in UTF-8 bytes from the line start
  std::size_t error_offset = 0;    // UTF-8 byte offset into the checked code
  const char* error = nullptr;     // Python: what is wrong, in CPython's words where it has them (static text)
  std::uint64_t steps = 0;         // parser steps spent
};

// One tree-sitter parser; not thread-safe, use one per thread. The language tables are shared.
class SyntaxChecker {
 public:
  CODESCALER_API SyntaxChecker();
  CODESCALER_API ~SyntaxChecker();
  SyntaxChecker(const SyntaxChecker&) = delete;
  SyntaxChecker& operator=(const SyntaxChecker&) = delete;

  // Checks `code`, spending at most `budget_steps` parser steps (past them: timed_out).
  CODESCALER_API SyntaxReport check(std::string_view code, Language language, std::uint64_t budget_steps);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace codescaler
