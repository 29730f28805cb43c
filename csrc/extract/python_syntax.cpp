// The verdict of CPython 3.11's ast.parse: the source checks CPython makes before tokenizing, the checks
// its parser actions make on literals (string escapes, f-strings, bytes vs str, the integer digit limit),
// and the entry point that runs tokenizer, literal checks and grammar.
#include <algorithm>
#include <string>

#include "python_syntax.hpp"
#include "text.hpp"

namespace codescaler::python {
namespace {

// int(str) refuses decimal integers with more digits than this (sys.int_info.default_max_str_digits), and
// so does the parser for a literal.
constexpr std::size_t kMaxIntDigits = 4300;

// ast.parse turns the tree into Python objects with a recursion guard of 3 x (the recursion limit, 1000,
// minus the Python frames already on the stack); this is the depth a caller five frames deep gets
// (a script calling codescaler.extract -> extract_batch -> ast.parse). Deeper trees raise RecursionError.
constexpr int kMaxAstDepth = 3 * (1000 - 5);

bool hex_digit(char c, std::uint32_t& value) {
  if (c >= '0' && c <= '9') value = value * 16 + static_cast<std::uint32_t>(c - '0');
  else if (c >= 'a' && c <= 'f') value = value * 16 + static_cast<std::uint32_t>(c - 'a' + 10);
  else if (c >= 'A' && c <= 'F') value = value * 16 + static_cast<std::uint32_t>(c - 'A' + 10);
  else return false;
  return true;
}

// Escape sequences of a str literal's text (not raw) as the unicode-escape decoder reads them: \x, \u and
// \U need all their hex digits and a code point <= U+10FFFF, \N needs {a non-empty name}. Unknown escapes
// and octal escapes above \377 only warn. Returns the offset of the first bad escape, or npos.
std::size_t bad_str_escape(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') continue;
    const std::size_t at = i;
    if (++i >= s.size()) return std::string_view::npos;  // a trailing backslash stays a backslash
    const char c = s[i];
    int count = 0;
    if (c == 'x') count = 2;
    else if (c == 'u') count = 4;
    else if (c == 'U') count = 8;
    if (count) {
      std::uint32_t value = 0;
      for (int k = 0; k < count; ++k)
        if (i + 1 >= s.size() || !hex_digit(s[++i], value)) return at;
      if (value > 0x10FFFF) return at;
    } else if (c == 'N') {
      if (i + 1 >= s.size() || s[i + 1] != '{') return at;
      const std::size_t close = s.find('}', i + 2);
      if (close == std::string_view::npos || close == i + 2) return at;
      // A name must be one the Unicode database knows: it is made of letters, digits, spaces and hyphens.
      for (std::size_t k = i + 2; k < close; ++k) {
        const char n = s[k];
        if (!((n >= 'A' && n <= 'Z') || (n >= 'a' && n <= 'z') || (n >= '0' && n <= '9') || n == ' ' || n == '-'))
          return at;
      }
      i = close;
    }
  }
  return std::string_view::npos;
}

// \x in a bytes literal (not raw) needs two hex digits; every other escape is fine or only warns.
std::size_t bad_bytes_escape(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') continue;
    const std::size_t at = i;
    if (++i >= s.size()) return at;
    if (s[i] == 'x') {
      std::uint32_t value = 0;
      if (i + 2 >= s.size() || !hex_digit(s[i + 1], value) || !hex_digit(s[i + 2], value)) return at;
      i += 2;
    }
  }
  return std::string_view::npos;
}

struct Prefix {
  bool bytes = false, raw = false, fstring = false;
  std::size_t body_begin = 0, body_end = 0;  // the text between the quotes
};

Prefix read_prefix(std::string_view tok) {
  Prefix p;
  std::size_t i = 0;
  for (; i < tok.size() && tok[i] != '\'' && tok[i] != '"'; ++i) {
    const char c = tok[i];
    if (c == 'b' || c == 'B') p.bytes = true;
    else if (c == 'r' || c == 'R') p.raw = true;
    else if (c == 'f' || c == 'F') p.fstring = true;
  }
  const char quote = tok[i];
  const bool triple = tok.size() - i >= 6 && tok[i + 1] == quote && tok[i + 2] == quote;
  const std::size_t q = triple ? 3 : 1;
  p.body_begin = i + q;
  p.body_end = tok.size() - q;
  return p;
}

// One f-string's body, as CPython 3.11's string parser reads it (Parser/string_parser.c): literal text with
// {{ and }} and escapes, and replacement fields {expression[=][!conversion][:format spec]} whose expression
// is parsed as "(" + expression + ")" with the start rule star_expressions. Format specs nest once.
class FString {
 public:
  FString(std::string_view body, bool raw, Failure& failure, Budget& budget, int nesting, std::size_t base)
      : s_(body), raw_(raw), failure_(failure), budget_(budget), nesting_(nesting), base_(base) {}

  // AST depth of the JoinedStr, or -1.
  int run() {
    std::size_t i = 0;
    const int d = parse(i, 0);
    return d < 0 ? -1 : d;
  }

 private:
  int fail(const char* message) {
    if (!failure_.message) {
      failure_.message = message;
      failure_.offset = base_;
    }
    return -1;
  }

  // Literal text up to an undoubled brace; 1: a doubled brace ended it (scan on past the second brace),
  // 0: stopped at a brace or the end, -1: error.
  int literal(std::size_t& i, int level) {
    const std::size_t start = i, end = s_.size();
    int result = 0;
    std::size_t literal_end = end;
    while (i < end) {
      char ch = s_[i++];
      if (!raw_ && ch == '\\' && i < end) {
        ch = s_[i++];
        if (ch == 'N') {  // \N{NAME}: its braces are not a field
          if (i < end && s_[i++] == '{')
            while (i < end && s_[i++] != '}') {
            }
          continue;
        }
      }
      if (ch != '{' && ch != '}') continue;
      if (level == 0 && i < end && s_[i] == ch) {  // {{ or }}: one brace of text
        literal_end = i++;
        result = 1;
        break;
      }
      if (level == 0 && ch == '}') return fail("f-string: single '}' is not allowed");
      literal_end = --i;
      break;
    }
    if (!raw_ && bad_str_escape(s_.substr(start, std::min(literal_end, end) - start)) != std::string_view::npos)
      return fail("f-string: invalid escape sequence");
    return result;
  }

  // The replacement field at s_[i] == '{'; returns the FormattedValue's depth.
  int field(std::size_t& i, int level) {
    if (level >= 2) return fail("f-string: expressions nested too deeply");
    ++i;
    const std::size_t expr_start = i;
    char quote = 0;
    int string_type = 0, depth = 0;
    char parens[200];
    const std::size_t end = s_.size();
    for (; i < end; ++i) {
      const char ch = s_[i];
      if (ch == '\\') return fail("f-string expression part cannot include a backslash");
      if (quote) {
        if (ch == quote) {
          if (string_type == 3) {
            if (i + 2 < end && s_[i + 1] == ch && s_[i + 2] == ch) {
              i += 2;
              quote = 0;
              string_type = 0;
            }
          } else {
            quote = 0;
            string_type = 0;
          }
        }
        continue;
      }
      if (ch == '\'' || ch == '"') {
        if (i + 2 < end && s_[i + 1] == ch && s_[i + 2] == ch) {
          string_type = 3;
          i += 2;
        } else {
          string_type = 1;
        }
        quote = ch;
      } else if (ch == '[' || ch == '(' || ch == '{') {
        if (depth >= 200) return fail("f-string: too many nested parenthesis");
        parens[depth++] = ch;
      } else if (ch == '#') {
        return fail("f-string expression part cannot include '#'");
      } else if (depth == 0 && (ch == '!' || ch == ':' || ch == '}' || ch == '=' || ch == '>' || ch == '<')) {
        if (i + 1 < end) {
          const char next = s_[i + 1];
          if ((ch == '!' && next == '=') || (ch == '=' && next == '=') || (ch == '<' && next == '=') ||
              (ch == '>' && next == '=')) {
            ++i;
            continue;
          }
        }
        if (ch == '>' || ch == '<') continue;
        break;
      } else if (ch == ']' || ch == ')' || ch == '}') {
        if (depth == 0) return fail("f-string: unmatched closing parenthesis");
        const char opening = parens[--depth];
        if (!((opening == '(' && ch == ')') || (opening == '[' && ch == ']') || (opening == '{' && ch == '}')))
          return fail("f-string: closing parenthesis does not match opening parenthesis");
      }
    }
    if (quote) return fail("f-string: unterminated string");
    if (depth) return fail("f-string: unmatched opening parenthesis");
    if (i >= end) return fail("f-string: expecting '}'");
    const std::size_t expr_end = i;
    int result = expression(expr_start, expr_end);
    if (result < 0) return -1;
    if (s_[i] == '=') {
      ++i;
      while (i < end && (s_[i] == ' ' || s_[i] == '\t' || s_[i] == '\n' || s_[i] == '\r' || s_[i] == '\f' ||
                         s_[i] == '\v'))
        ++i;
    }
    if (i < end && s_[i] == '!') {
      ++i;
      if (i >= end) return fail("f-string: expecting '}'");
      const char conversion = s_[i++];
      if (conversion != 's' && conversion != 'r' && conversion != 'a')
        return fail("f-string: invalid conversion character");
    }
    if (i < end && s_[i] == ':') {
      ++i;
      if (i >= end) return fail("f-string: expecting '}'");
      const int spec = parse(i, level + 1);
      if (spec < 0) return -1;
      result = std::max(result, spec);
    }
    if (i >= end || s_[i] != '}') return fail("f-string: expecting '}'");
    ++i;
    return result + 1;  // FormattedValue
  }

  // Literal parts and fields up to the end (level 0) or the '}' closing a format spec; the JoinedStr depth.
  int parse(std::size_t& i, int level) {
    int deepest = 1;  // Constant parts
    for (;;) {
      const int r = literal(i, level);
      if (r < 0) return -1;
      if (r == 1) continue;
      if (i >= s_.size() || s_[i] == '}') break;
      const int d = field(i, level);
      if (d < 0) return -1;
      deepest = std::max(deepest, d);
    }
    if (level != 0 && (i >= s_.size() || s_[i] != '}')) return fail("f-string: expecting '}'");
    return deepest + 1;
  }

  int expression(std::size_t begin, std::size_t end) {
    const std::string_view expr = s_.substr(begin, end - begin);
    if (expr.find_first_not_of(" \t\n\f") == std::string_view::npos)
      return fail(end < s_.size() && s_[end] != '}' ? "f-string: expression required before '!', ':' or '='"
                                                    : "f-string: empty expression not allowed");
    std::string source;
    source.reserve(expr.size() + 3);
    source += '(';
    source += expr;
    source += ")\n";
    Failure inner;
    const int depth = analyse(source, Start::fstring, inner, budget_, nesting_ + 1);
    if (depth < 0) {
      if (!failure_.message) {
        failure_ = inner;
        failure_.offset = base_;
      }
      return -1;
    }
    return depth;
  }

  std::string_view s_;
  bool raw_;
  Failure& failure_;
  Budget& budget_;
  int nesting_;
  std::size_t base_;  // offset of the string token, for errors
};

// Newlines as CPython's tokenizer sees a str source: "\r\n" and a lone "\r" become "\n", and exec input
// ends with "\n".
std::string translate_newlines(std::string_view code) {
  std::string out;
  out.reserve(code.size() + 1);
  for (std::size_t i = 0; i < code.size(); ++i) {
    if (code[i] == '\r') {
      out += '\n';
      if (i + 1 < code.size() && code[i + 1] == '\n') ++i;
    } else {
      out += code[i];
    }
  }
  if (out.empty() || out.back() != '\n') out += '\n';
  return out;
}

bool is_line_end(std::string_view s, std::size_t i) {
  return s[i] == '\n' || (s[i] == '\r' && (i + 1 >= s.size() || s[i + 1] != '\n'));
}

struct LinePosition {
  std::uint32_t line;  // 1-based
  std::size_t start;   // offset of the line's first byte
};

// Where `offset` is, with "\n", "\r\n" and a lone "\r" ending lines as CPython reads them.
LinePosition line_position(std::string_view s, std::size_t offset) {
  LinePosition p{1, 0};
  for (std::size_t i = 0; i < offset && i < s.size(); ++i)
    if (is_line_end(s, i)) p = {p.line + 1, i + 1};
  return p;
}

std::size_t line_start(std::string_view s, std::uint32_t line) {
  std::size_t i = 0;
  for (std::uint32_t seen = 1; seen < line && i < s.size(); ++i)
    if (is_line_end(s, i)) ++seen;
  return i;
}

}  // namespace

bool check_literals(std::string_view text, const std::vector<Token>& tokens, std::vector<int>& string_depth,
                    Failure& failure, Budget& budget, int fstring_nesting) {
  string_depth.assign(tokens.size(), 1);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const Token& t = tokens[i];
    if (t.type == T::unusable) {
      failure.message = "invalid syntax";
      failure.offset = t.begin;
      return false;
    }
    if (t.type == T::number) {
      const std::string_view n = text.substr(t.begin, t.end - t.begin);
      const bool based = n.size() > 1 && n[0] == '0' && std::string_view("xXoObB").find(n[1]) != std::string_view::npos;
      const auto digits = static_cast<std::size_t>(std::count_if(n.begin(), n.end(), [](char c) { return c != '_'; }));
      if (!based && n.find_first_of(".eEjJ") == std::string_view::npos && digits > kMaxIntDigits) {
        failure.message = "Exceeds the limit (4300 digits) for integer string conversion";
        failure.offset = t.begin;
        return false;
      }
      continue;
    }
    if (t.type != T::string || (i > 0 && tokens[i - 1].type == T::string)) continue;
    // A run of adjacent strings is one literal: all bytes or none.
    bool first_bytes = false, any_fstring = false;
    int deepest = 1;
    for (std::size_t j = i; j < tokens.size() && tokens[j].type == T::string; ++j) {
      const std::string_view tok = text.substr(tokens[j].begin, tokens[j].end - tokens[j].begin);
      const Prefix p = read_prefix(tok);
      const std::string_view body = tok.substr(p.body_begin, p.body_end - p.body_begin);
      failure.offset = tokens[j].begin;
      if (j == i) first_bytes = p.bytes;
      else if (p.bytes != first_bytes) return (failure.message = "cannot mix bytes and nonbytes literals"), false;
      if (p.fstring) {
        any_fstring = true;
        const int d = FString(body, p.raw, failure, budget, fstring_nesting, tokens[j].begin).run();
        if (d < 0) return false;
        deepest = std::max(deepest, d);
      } else if (p.bytes) {
        // Every character, closing quotes included, must be ASCII; escapes are checked unless raw.
        if (std::any_of(tok.begin(), tok.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; }))
          return (failure.message = "bytes can only contain ASCII literal characters"), false;
        if (!p.raw && bad_bytes_escape(body) != std::string_view::npos)
          return (failure.message = "invalid \\x escape in a bytes literal"), false;
      } else if (!p.raw && bad_str_escape(body) != std::string_view::npos) {
        return (failure.message = "invalid escape sequence in a string literal"), false;
      }
    }
    // A run holding an f-string is one JoinedStr (its parts: Constants and FormattedValues).
    string_depth[i] = any_fstring ? std::max(deepest, 2) : 1;
  }
  return true;
}

int analyse(std::string_view text, Start start, Failure& failure, Budget& budget, int fstring_nesting) {
  std::vector<Token> tokens;
  if (!tokenize(text, tokens, failure, budget)) return -1;
  std::vector<int> string_depth;
  if (!check_literals(text, tokens, string_depth, failure, budget, fstring_nesting)) return -1;
  return parse(tokens, string_depth, start, failure, budget);
}

SyntaxReport check(std::string_view code, std::uint64_t budget_steps) {
  SyntaxReport report;
  Failure failure;
  Budget budget{budget_steps};
  std::string text;  // `code` as the tokenizer reads it, once it got that far
  // What CPython refuses before tokenizing: a NUL, and text that is not UTF-8 (a lone surrogate cannot be
  // encoded: UnicodeEncodeError).
  std::size_t bad = code.find('\0');
  for (std::size_t i = 0; bad == std::string_view::npos && i < code.size();) {
    if (static_cast<unsigned char>(code[i]) < 0x80) {
      ++i;
      continue;
    }
    const text::CodePoint cp = text::decode(code, i);
    if (cp.value == text::kInvalid || (cp.value >= 0xD800 && cp.value <= 0xDFFF)) bad = i;
    i += cp.length;
  }
  if (bad != std::string_view::npos) {
    failure.message = code[bad] == '\0' ? "source code string cannot contain null bytes"
                                        : "surrogates not allowed (the text cannot be encoded)";
    failure.offset = bad;
  } else if (code.size() >= (std::size_t{1} << 31)) {  // token offsets are 32-bit
    failure.message = "parse budget exhausted";
    failure.budget = true;
  } else {
    text = translate_newlines(code);
    const int depth = analyse(text, Start::file, failure, budget, 0);
    if (depth > kMaxAstDepth) {
      failure.message = "maximum recursion depth exceeded during ast construction";
      failure.offset = 0;
    }
    report.valid = depth >= 0 && depth <= kMaxAstDepth;
  }
  report.steps = budget.used;
  if (report.valid) return report;
  report.timed_out = failure.budget;
  report.error = failure.message;
  std::size_t offset = failure.offset;
  if (!text.empty()) {  // the same line and column in `code`, whose line ends may be "\r\n" or "\r"
    const LinePosition p = line_position(text, offset);
    offset = line_start(code, p.line) + (offset - p.start);
  }
  report.error_offset = std::min(offset, code.size());
  const LinePosition p = line_position(code, report.error_offset);
  report.error_line = p.line;
  report.error_column = static_cast<std::uint32_t>(report.error_offset - p.start + 1);
  return report;
}

}  // namespace codescaler::python
