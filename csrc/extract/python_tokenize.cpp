// CPython 3.11's tokenizer rules (Parser/tokenizer.c), as far as they decide validity.
#include <cstring>
#include <string_view>

#include "python_syntax.hpp"
#include "text.hpp"

namespace codescaler::python {
namespace {

constexpr int kEof = -1;
constexpr int kTabSize = 8;    // columns of a tab; the alternate reading counts a tab as 1
constexpr int kMaxIndent = 100;
constexpr int kMaxLevel = 200;  // brackets open at once

bool is_digit(int c) { return c >= '0' && c <= '9'; }
bool is_xdigit(int c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool is_identifier_start(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 128; }
bool is_identifier_char(int c) { return is_identifier_start(c) || is_digit(c); }

struct Keyword {
  const char* text;
  T type;
};

constexpr Keyword kKeywords[] = {
    {"False", T::kw_false}, {"None", T::kw_none}, {"True", T::kw_true}, {"and", T::kw_and}, {"as", T::kw_as},
    {"assert", T::kw_assert}, {"async", T::kw_async}, {"await", T::kw_await}, {"break", T::kw_break},
    {"class", T::kw_class}, {"continue", T::kw_continue}, {"def", T::kw_def}, {"del", T::kw_del},
    {"elif", T::kw_elif}, {"else", T::kw_else}, {"except", T::kw_except}, {"finally", T::kw_finally},
    {"for", T::kw_for}, {"from", T::kw_from}, {"global", T::kw_global}, {"if", T::kw_if},
    {"import", T::kw_import}, {"in", T::kw_in}, {"is", T::kw_is}, {"lambda", T::kw_lambda},
    {"nonlocal", T::kw_nonlocal}, {"not", T::kw_not}, {"or", T::kw_or}, {"pass", T::kw_pass},
    {"raise", T::kw_raise}, {"return", T::kw_return}, {"try", T::kw_try}, {"while", T::kw_while},
    {"with", T::kw_with}, {"yield", T::kw_yield},
};

T two_chars(int c1, int c2) {
  switch (c1) {
    case '!': return c2 == '=' ? T::notequal : T::end_marker;
    case '%': return c2 == '=' ? T::percentequal : T::end_marker;
    case '&': return c2 == '=' ? T::amperequal : T::end_marker;
    case '*': return c2 == '*' ? T::doublestar : c2 == '=' ? T::starequal : T::end_marker;
    case '+': return c2 == '=' ? T::plusequal : T::end_marker;
    case '-': return c2 == '=' ? T::minequal : c2 == '>' ? T::rarrow : T::end_marker;
    case '/': return c2 == '/' ? T::doubleslash : c2 == '=' ? T::slashequal : T::end_marker;
    case ':': return c2 == '=' ? T::colonequal : T::end_marker;
    case '<': return c2 == '<' ? T::leftshift : c2 == '=' ? T::lessequal : c2 == '>' ? T::unusable : T::end_marker;
    case '=': return c2 == '=' ? T::eqequal : T::end_marker;
    case '>': return c2 == '=' ? T::greaterequal : c2 == '>' ? T::rightshift : T::end_marker;
    case '@': return c2 == '=' ? T::atequal : T::end_marker;
    case '^': return c2 == '=' ? T::circumflexequal : T::end_marker;
    case '|': return c2 == '=' ? T::vbarequal : T::end_marker;
  }
  return T::end_marker;  // not a two-character operator
}

T three_chars(T two, int c3) {
  if (c3 != '=') return T::end_marker;
  switch (two) {
    case T::doublestar: return T::doublestarequal;
    case T::doubleslash: return T::doubleslashequal;
    case T::leftshift: return T::leftshiftequal;
    case T::rightshift: return T::rightshiftequal;
    default: return T::end_marker;
  }
}

T one_char(int c) {
  switch (c) {
    case '%': return T::percent;
    case '&': return T::amper;
    case '(': return T::lpar;
    case ')': return T::rpar;
    case '*': return T::star;
    case '+': return T::plus;
    case ',': return T::comma;
    case '-': return T::minus;
    case '.': return T::dot;
    case '/': return T::slash;
    case ':': return T::colon;
    case ';': return T::semi;
    case '<': return T::less;
    case '=': return T::equal;
    case '>': return T::greater;
    case '@': return T::at;
    case '[': return T::lsqb;
    case ']': return T::rsqb;
    case '^': return T::circumflex;
    case '{': return T::lbrace;
    case '|': return T::vbar;
    case '}': return T::rbrace;
    case '~': return T::tilde;
  }
  return T::unusable;
}

class Lexer {
 public:
  Lexer(std::string_view text, std::vector<Token>& out, Failure& failure, Budget& budget)
      : s_(text), out_(out), failure_(failure), budget_(budget) {}

  bool run();

 private:
  int nextc() { return i_ < s_.size() ? static_cast<unsigned char>(s_[i_++]) : kEof; }
  void backup(int c) {
    if (c != kEof) --i_;
  }
  bool fail(const char* message, std::size_t at) {
    failure_.message = message;
    failure_.offset = at;
    return false;
  }
  bool emit(T type, std::size_t begin, std::size_t end, std::uint8_t flags = 0) {
    if (!budget_.spend()) {
      failure_.budget = true;
      return fail("parse budget exhausted", begin);
    }
    out_.push_back({type, flags, static_cast<std::uint32_t>(begin), static_cast<std::uint32_t>(end)});
    return true;
  }
  bool indentation(bool& blankline);
  bool name(int c, std::size_t start);
  bool string(int quote, std::size_t start);
  bool number(int c, std::size_t start, bool fraction_first);
  int decimal_tail();
  bool end_of_number(int c);
  bool verify_identifier(std::size_t start);

  std::string_view s_;
  std::size_t i_ = 0;
  std::vector<Token>& out_;
  Failure& failure_;
  Budget& budget_;
  int indstack_[kMaxIndent] = {0};
  int altindstack_[kMaxIndent] = {0};
  int indent_ = 0;
  int pendin_ = 0;
  char parenstack_[kMaxLevel] = {0};
  int level_ = 0;
  bool atbol_ = true;
};

// The indentation of a line that starts a logical line: pushes or pops the indentation stack, as the
// tokenizer does, and marks blank or comment-only lines (they do not count).
bool Lexer::indentation(bool& blankline) {
  int col = 0, altcol = 0, cont_line_col = 0, c;
  const std::size_t line_start = i_;
  for (;;) {
    c = nextc();
    if (c == ' ') {
      ++col;
      ++altcol;
    } else if (c == '\t') {
      col = (col / kTabSize + 1) * kTabSize;
      ++altcol;
    } else if (c == '\f') {
      col = altcol = 0;
    } else if (c == '\\') {
      // A backslash continuation inside the indentation: the column of the first one is the line's
      // indentation, whatever the continued line adds.
      cont_line_col = cont_line_col ? cont_line_col : col;
      if (nextc() != '\n') return fail("unexpected character after line continuation character", i_ - 1);
      c = nextc();
      if (c == kEof) return fail("unexpected EOF while parsing", i_);
      backup(c);
    } else {
      break;
    }
  }
  backup(c);
  blankline = c == '#' || c == '\n';
  if (blankline || level_ != 0) return true;
  if (cont_line_col) col = altcol = cont_line_col;
  if (col == indstack_[indent_]) {
    if (altcol != altindstack_[indent_]) return fail("inconsistent use of tabs and spaces in indentation", line_start);
  } else if (col > indstack_[indent_]) {
    if (indent_ + 1 >= kMaxIndent) return fail("too many levels of indentation", line_start);
    if (altcol <= altindstack_[indent_]) return fail("inconsistent use of tabs and spaces in indentation", line_start);
    ++pendin_;
    ++indent_;
    indstack_[indent_] = col;
    altindstack_[indent_] = altcol;
  } else {
    while (indent_ > 0 && col < indstack_[indent_]) {
      --pendin_;
      --indent_;
    }
    if (col != indstack_[indent_]) return fail("unindent does not match any outer indentation level", line_start);
    if (altcol != altindstack_[indent_]) return fail("inconsistent use of tabs and spaces in indentation", line_start);
  }
  return true;
}

bool Lexer::verify_identifier(std::size_t start) {
  for (std::size_t j = start; j < i_;) {
    const text::CodePoint cp = text::decode(s_.substr(0, i_), j);
    const bool ok = j == start ? text::is_id_start(cp.value) : text::is_id_continue(cp.value);
    if (!ok) return fail("invalid character in identifier", j);
    j += cp.length;
  }
  return true;
}

bool Lexer::name(int c, std::size_t start) {
  // String prefixes: b, r, u, f in the combinations CPython allows, directly followed by a quote.
  bool saw_b = false, saw_r = false, saw_u = false, saw_f = false;
  for (;;) {
    if (!(saw_b || saw_u || saw_f) && (c == 'b' || c == 'B')) saw_b = true;
    else if (!(saw_b || saw_u || saw_r || saw_f) && (c == 'u' || c == 'U')) saw_u = true;
    else if (!(saw_r || saw_u) && (c == 'r' || c == 'R')) saw_r = true;
    else if (!(saw_f || saw_b || saw_u) && (c == 'f' || c == 'F')) saw_f = true;
    else break;
    c = nextc();
    if (c == '"' || c == '\'') return string(c, start);
  }
  bool nonascii = false;
  while (is_identifier_char(c)) {
    nonascii |= c >= 128;
    c = nextc();
  }
  backup(c);
  if (nonascii && !verify_identifier(start)) return false;
  const std::string_view word = s_.substr(start, i_ - start);
  T type = T::name;
  std::uint8_t flags = 0;
  if (word.size() >= 2 && word.size() <= 8)  // keywords are 2 to 8 letters long
    for (const Keyword& k : kKeywords)
      if (word[0] == k.text[0] && word == k.text) type = k.type;
  if (word == "match") flags = kSoftMatch;
  else if (word == "case") flags = kSoftCase;
  else if (word == "_") flags = kSoftUnderscore;
  return emit(type, start, i_, flags);
}

bool Lexer::string(int quote, std::size_t start) {
  int quote_size = 1, end_quote_size = 0;
  int c = nextc();
  if (c == quote) {
    c = nextc();
    if (c == quote) quote_size = 3;
    else end_quote_size = 1;  // the empty string
  }
  if (c != quote) backup(c);
  while (end_quote_size != quote_size) {
    c = nextc();
    if (c == kEof || (quote_size == 1 && c == '\n'))
      return fail(quote_size == 3 ? "unterminated triple-quoted string literal" : "unterminated string literal",
                  start);
    if (c == quote) {
      ++end_quote_size;
    } else {
      end_quote_size = 0;
      if (c == '\\') nextc();  // the escaped character, whatever it is
    }
  }
  return emit(T::string, start, i_);
}

// Digits and single underscores between digits, after a first digit already read; returns the next
// character, or 0 after reporting "invalid decimal literal".
int Lexer::decimal_tail() {
  int c;
  for (;;) {
    do {
      c = nextc();
    } while (is_digit(c));
    if (c != '_') break;
    c = nextc();
    if (!is_digit(c)) {
      backup(c);
      fail("invalid decimal literal", i_);
      return 0;
    }
  }
  return c;
}

// What may follow a number: CPython 3.11 only warns when a keyword that can follow a number in valid code
// is glued to it ("1if x else 2"); any other letter or digit there is an error.
bool Lexer::end_of_number(int c) {
  bool keyword = false;
  auto ahead = [&](const char* rest) { return s_.substr(i_, std::strlen(rest)) == rest; };
  if (c == 'a') keyword = ahead("nd");
  else if (c == 'e') keyword = ahead("lse");
  else if (c == 'f') keyword = ahead("or");
  else if (c == 'i') keyword = i_ < s_.size() && (s_[i_] == 'f' || s_[i_] == 'n' || s_[i_] == 's');
  else if (c == 'o') keyword = ahead("r");
  else if (c == 'n') keyword = ahead("ot");
  if (!keyword && is_identifier_char(c)) {
    backup(c);
    return fail("invalid number literal", i_);
  }
  return true;
}

// A number starting with `c` (a digit), or with "." when `fraction_first` (c is then the first digit after
// the point). Mirrors the tokenizer's number states.
bool Lexer::number(int c, std::size_t start, bool fraction_first) {
  auto done = [&](int last) {
    backup(last);
    return emit(T::number, start, i_);
  };
  auto imaginary = [&]() {
    const int next = nextc();
    if (!end_of_number(next)) return false;
    backup(next);
    return emit(T::number, start, i_, kImaginary);
  };
  // Fraction, exponent and imaginary part of a decimal number; `c` is the character after the integer part
  // (or the first one after the point when `after_point`).
  auto rest = [&](int c, bool after_point) -> bool {
    if (!after_point && c == '.') {
      c = nextc();
      after_point = true;
    }
    if (after_point && is_digit(c)) {
      c = decimal_tail();
      if (c == 0) return false;
    }
    if (c == 'e' || c == 'E') {
      const int e = c;
      c = nextc();
      if (c == '+' || c == '-') {
        c = nextc();
        if (!is_digit(c)) {
          backup(c);
          return fail("invalid decimal literal", i_);
        }
      } else if (!is_digit(c)) {
        backup(c);
        if (!end_of_number(e)) return false;
        backup(e);
        return emit(T::number, start, i_);
      }
      c = decimal_tail();
      if (c == 0) return false;
    }
    if (c == 'j' || c == 'J') return imaginary();
    if (!end_of_number(c)) return false;
    return done(c);
  };

  if (fraction_first) return rest(c, true);
  if (c == '0') {
    c = nextc();
    if (c == 'x' || c == 'X' || c == 'o' || c == 'O' || c == 'b' || c == 'B') {
      const int base = (c == 'x' || c == 'X') ? 16 : (c == 'o' || c == 'O') ? 8 : 2;
      auto in_base = [base](int d) {
        return base == 16 ? is_xdigit(d) : base == 8 ? (d >= '0' && d < '8') : (d == '0' || d == '1');
      };
      c = nextc();
      do {
        if (c == '_') c = nextc();
        if (!in_base(c)) {
          if (base != 16 && is_digit(c)) return fail("invalid digit in number literal", i_ - 1);
          backup(c);
          return fail("invalid number literal", i_);
        }
        do {
          c = nextc();
        } while (in_base(c));
      } while (c == '_');
      if (base != 16 && is_digit(c)) return fail("invalid digit in number literal", i_ - 1);
      if (!end_of_number(c)) return false;
      return done(c);
    }
    bool nonzero = false;
    for (;;) {  // "0", "00", "0_0": zeros only, unless a fraction, exponent or j follows
      if (c == '_') {
        c = nextc();
        if (!is_digit(c)) {
          backup(c);
          return fail("invalid decimal literal", i_);
        }
      }
      if (c != '0') break;
      c = nextc();
    }
    if (is_digit(c)) {
      nonzero = true;
      c = decimal_tail();
      if (c == 0) return false;
    }
    if (c == '.' || c == 'e' || c == 'E' || c == 'j' || c == 'J') return rest(c, false);
    if (nonzero) {
      backup(c);
      return fail("leading zeros in decimal integer literals are not permitted", start);
    }
    if (!end_of_number(c)) return false;
    return done(c);
  }
  c = decimal_tail();
  if (c == 0) return false;
  return rest(c, false);
}

bool Lexer::run() {
  for (;;) {
    // A new line: its indentation, unless inside brackets or the line is blank.
    bool blankline = false;
    if (atbol_) {
      atbol_ = false;
      if (!indentation(blankline)) return false;
    }
    for (; pendin_ > 0; --pendin_)
      if (!emit(T::indent, i_, i_)) return false;
    for (; pendin_ < 0; ++pendin_)
      if (!emit(T::dedent, i_, i_)) return false;

    for (bool same_line = true; same_line;) {  // the tokens of one physical line
      int c;
      do {
        c = nextc();
      } while (c == ' ' || c == '\t' || c == '\f');
      const std::size_t start = c == kEof ? i_ : i_ - 1;
      if (c == '#')
        while (c != kEof && c != '\n') c = nextc();
      if (c == kEof) {
        if (level_ > 0) return fail("'(' was never closed", start);
        return emit(T::end_marker, i_, i_);
      }
      if (is_identifier_start(c)) {
        if (!name(c, start)) return false;
        continue;
      }
      if (c == '\n') {
        atbol_ = true;
        same_line = false;
        if (!blankline && level_ == 0 && !emit(T::newline, start, i_ - 1)) return false;
        continue;
      }
      if (c == '.') {
        c = nextc();
        if (is_digit(c)) {
          if (!number(c, start, true)) return false;
          continue;
        }
        if (c == '.') {
          const int c3 = nextc();
          if (c3 == '.') {
            if (!emit(T::ellipsis, start, i_)) return false;
            continue;
          }
          backup(c3);
        }
        backup(c);
        if (!emit(T::dot, start, i_)) return false;
        continue;
      }
      if (is_digit(c)) {
        if (!number(c, start, false)) return false;
        continue;
      }
      if (c == '\'' || c == '"') {
        if (!string(c, start)) return false;
        continue;
      }
      if (c == '\\') {  // line continuation: the next physical line continues this logical one
        if (nextc() != '\n') return fail("unexpected character after line continuation character", start);
        c = nextc();
        if (c == kEof) return fail("unexpected EOF while parsing", start);
        backup(c);
        continue;
      }
      const int c2 = nextc();
      const T two = two_chars(c, c2);
      if (two != T::end_marker) {
        const int c3 = nextc();
        const T three = three_chars(two, c3);
        if (three == T::end_marker) backup(c3);
        if (!emit(three != T::end_marker ? three : two, start, i_)) return false;
        continue;
      }
      backup(c2);
      if (c == '(' || c == '[' || c == '{') {
        if (level_ >= kMaxLevel) return fail("too many nested parentheses", start);
        parenstack_[level_++] = static_cast<char>(c);
      } else if (c == ')' || c == ']' || c == '}') {
        if (level_ == 0) return fail("unmatched closing bracket", start);
        const char opening = parenstack_[--level_];
        if (!((opening == '(' && c == ')') || (opening == '[' && c == ']') || (opening == '{' && c == '}')))
          return fail("closing parenthesis does not match opening parenthesis", start);
      } else if (c < 0x20 || c == 0x7F) {
        return fail("invalid non-printable character", start);
      }
      if (!emit(one_char(c), start, i_)) return false;
    }
  }
}

}  // namespace

bool tokenize(std::string_view text, std::vector<Token>& tokens, Failure& failure, Budget& budget) {
  tokens.clear();
  tokens.reserve(text.size() / 4 + 16);
  return Lexer(text, tokens, failure, budget).run();
}

}  // namespace codescaler::python
