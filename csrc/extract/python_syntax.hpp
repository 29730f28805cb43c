// Python validity as CPython 3.11's `ast.parse` decides it, without CPython (private to the core).
//
// Three stages, as in CPython: the tokenizer (indentation with its tab/space consistency, line joining,
// identifiers per PEP 3131, number and string literal forms, bracket nesting), the PEG grammar of
// Grammar/python.gram without its `invalid_*` rules (which only choose an error message once a parse has
// failed), and the checks CPython's parser actions make (string escapes and f-strings, bytes/str
// concatenation, the integer digit limit, complex literals in patterns), plus the depth limits of the
// parser stack and of the AST conversion. It answers valid or not, with the first error's position; it
// builds no tree.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "codescaler/syntax.hpp"

namespace codescaler::python {

// Deterministic work budget: one step per token and per grammar rule entered.
struct Budget {
  std::uint64_t limit;
  std::uint64_t used = 0;
  bool spend() { return ++used <= limit; }
  bool exhausted() const { return used > limit; }
};

enum class T : std::uint8_t {
  end_marker, newline, indent, dedent, name, number, string,
  // keywords (async and await are tokens of their own in CPython 3.11, never names)
  kw_false, kw_none, kw_true, kw_and, kw_as, kw_assert, kw_async, kw_await, kw_break, kw_class, kw_continue,
  kw_def, kw_del, kw_elif, kw_else, kw_except, kw_finally, kw_for, kw_from, kw_global, kw_if, kw_import, kw_in,
  kw_is, kw_lambda, kw_nonlocal, kw_not, kw_or, kw_pass, kw_raise, kw_return, kw_try, kw_while, kw_with,
  kw_yield,
  // operators
  lpar, rpar, lsqb, rsqb, colon, comma, semi, plus, minus, star, slash, vbar, amper, less, greater, equal,
  dot, percent, lbrace, rbrace, eqequal, notequal, lessequal, greaterequal, tilde, circumflex, leftshift,
  rightshift, doublestar, plusequal, minequal, starequal, slashequal, percentequal, amperequal, vbarequal,
  circumflexequal, leftshiftequal, rightshiftequal, doublestarequal, doubleslash, doubleslashequal, at,
  atequal, rarrow, ellipsis, colonequal,
  // a token no grammar rule accepts: "<>" (NOTEQUAL without Barry's flag), "!", "$", "?", "`"
  unusable,
};

// Token flags.
inline constexpr std::uint8_t kSoftMatch = 1, kSoftCase = 2, kSoftUnderscore = 4;  // NAME "match", "case", "_"
inline constexpr std::uint8_t kImaginary = 1;                                    // NUMBER ending in j/J

struct Token {
  T type;
  std::uint8_t flags;
  std::uint32_t begin, end;  // byte range in the tokenized text
};

struct Failure {
  const char* message = nullptr;  // nullptr: no failure
  std::size_t offset = 0;         // byte offset into the tokenized text
  bool budget = false;            // the budget ran out (not a verdict)
};

// CPython's tokenizer over `text` (newlines already translated to "\n", a final "\n" present). On failure
// returns false with `failure` set.
bool tokenize(std::string_view text, std::vector<Token>& tokens, Failure& failure, Budget& budget);

// What CPython's parser actions check on literal tokens: each run of adjacent STRING tokens (escapes,
// bytes vs str, f-strings and the expressions inside them) and each NUMBER (decimal integers above 4300
// digits). `string_depth[i]` receives the AST depth of the run starting at token i.
bool check_literals(std::string_view text, const std::vector<Token>& tokens, std::vector<int>& string_depth,
                    Failure& failure, Budget& budget, int fstring_nesting);

enum class Start { file, fstring };  // `file` input, or the star_expressions of an f-string replacement field

// The grammar over `tokens`; returns the AST depth of the result (Module or expression), or -1 with
// `failure` set.
int parse(const std::vector<Token>& tokens, const std::vector<int>& string_depth, Start start, Failure& failure,
          Budget& budget);

// Tokenizes, checks literals and parses `text` (translated newlines, final "\n"); returns the AST depth or -1.
int analyse(std::string_view text, Start start, Failure& failure, Budget& budget, int fstring_nesting);

// The verdict of `ast.parse(code)` for `code` as a Python str encoded in UTF-8 (lone surrogates encoded as
// three bytes count as the UnicodeEncodeError CPython raises). `budget_steps` bounds the work.
SyntaxReport check(std::string_view code, std::uint64_t budget_steps);

}  // namespace codescaler::python
