// Syntax validation with tree-sitter for the languages extraction supports.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

namespace codescaler {

enum class Language { python, cpp, java, javascript, go, rust };

// "python", "cpp", ... -> Language; also accepts the tags responses use ("py", "python3", "c++", "js", ...).
std::optional<Language> language_from_tag(std::string_view tag);
const char* language_name(Language language);

// The steady_clock time (ns since its epoch) `budget_us` microseconds from now, for SyntaxChecker::check.
std::int64_t deadline_after_us(std::int64_t budget_us);

struct SyntaxReport {
  bool valid = false;
  bool timed_out = false;           // the parse budget ran out; valid is false
  std::uint32_t n_error_nodes = 0;  // ERROR nodes in the tree
  std::uint32_t n_missing_nodes = 0;  // MISSING nodes the parser inserted to recover
  // The first error in document order (ERROR or MISSING node), when !valid && !timed_out:
  std::uint32_t error_line = 0;    // 1-based
  std::uint32_t error_column = 0;  // 1-based, in UTF-8 bytes from the line start
  std::size_t error_offset = 0;    // UTF-8 byte offset into the checked code
};

// One tree-sitter parser; not thread-safe, use one per thread. The language tables are shared.
class SyntaxChecker {
 public:
  SyntaxChecker();
  ~SyntaxChecker();
  SyntaxChecker(const SyntaxChecker&) = delete;
  SyntaxChecker& operator=(const SyntaxChecker&) = delete;

  // Parses `code`; gives up (timed_out) once `deadline_ns` (steady_clock, since epoch) has passed.
  SyntaxReport check(std::string_view code, Language language, std::int64_t deadline_ns);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace codescaler
