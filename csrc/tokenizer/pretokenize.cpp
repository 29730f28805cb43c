#include "pretokenize.hpp"

#include <cstdint>

#include "unicode.hpp"

namespace codescaler::pretokenize {
namespace {

constexpr const char* kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kCl100k =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

constexpr std::uint8_t kOther = 0x80;  // none of letter, number, space: [^\s\p{L}\p{N}]

// A cursor over well-formed UTF-8 that classifies code points.
struct Text {
  const char* s;
  std::size_t n;

  // Class bits at `pos` (0 past the end) and the code point's length.
  std::uint8_t at(std::size_t pos, std::uint32_t& cp, std::size_t& len) const {
    if (pos >= n) {
      cp = 0;
      len = 0;
      return 0;
    }
    len = unicode::decode(s, pos, cp);
    const std::uint8_t f = unicode::flags(cp) & (unicode::letter | unicode::number | unicode::space);
    return f ? f : kOther;
  }
  std::uint8_t at(std::size_t pos) const {
    std::uint32_t cp;
    std::size_t len;
    return at(pos, cp, len);
  }
  // End of the run of code points from `pos` whose class has any of `mask`, at most `max` of them.
  std::size_t run(std::size_t pos, std::uint8_t mask, std::size_t max = SIZE_MAX) const {
    std::uint32_t cp;
    std::size_t len;
    for (std::size_t count = 0; count < max && pos < n && (at(pos, cp, len) & mask); ++count) pos += len;
    return pos;
  }
  std::size_t crlf_run(std::size_t pos) const {
    while (pos < n && (s[pos] == '\r' || s[pos] == '\n')) ++pos;
    return pos;
  }
};

// 's|'t|'re|'ve|'m|'ll|'d at `pos` (which holds '\''); returns the match end or 0. Case-insensitive
// matching follows Unicode simple case folding, under which U+017F LATIN SMALL LETTER LONG S is an 's'.
std::size_t contraction(const Text& t, std::size_t pos, bool ignore_case) {
  auto letter = [&](std::size_t at, char lower, std::size_t& len) {
    if (at >= t.n) return false;
    const char c = t.s[at];
    len = 1;
    if (c == lower) return true;
    if (!ignore_case) return false;
    if (c == lower - 'a' + 'A') return true;
    if (lower == 's' && at + 1 < t.n && static_cast<unsigned char>(c) == 0xC5 &&
        static_cast<unsigned char>(t.s[at + 1]) == 0xBF) {
      len = 2;
      return true;
    }
    return false;
  };
  const std::size_t p = pos + 1;
  std::size_t a = 0, b = 0;
  for (char single : {'s', 't', 'm', 'd'})
    if (letter(p, single, a)) return p + a;
  if (letter(p, 'r', a) && letter(p + a, 'e', b)) return p + a + b;
  if (letter(p, 'v', a) && letter(p + a, 'e', b)) return p + a + b;
  if (letter(p, 'l', a) && letter(p + a, 'l', b)) return p + a + b;
  return 0;
}

// \s+(?!\S)|\s+ at a whitespace code point: all of the run if it ends the text or is one code point long,
// else the run less its last code point.
std::size_t space_tail(const Text& t, std::size_t pos) {
  std::size_t end = pos, last = pos;
  std::uint32_t cp;
  std::size_t len;
  while (end < t.n && (t.at(end, cp, len) & unicode::space)) {
    last = end;
    end += len;
  }
  if (end == t.n || last == pos) return end;
  return last;
}

std::size_t match_gpt2(const Text& t, std::size_t pos) {
  std::uint32_t c0;
  std::size_t len0;
  const std::uint8_t f0 = t.at(pos, c0, len0);
  if (c0 == '\'')
    if (std::size_t e = contraction(t, pos, false)) return e;
  const std::size_t after_space = c0 == ' ' ? pos + 1 : pos;
  const std::uint8_t f1 = c0 == ' ' ? t.at(pos + 1) : f0;
  for (std::uint8_t cls : {std::uint8_t{unicode::letter}, std::uint8_t{unicode::number}, kOther})
    if (f1 & cls) return t.run(after_space, cls);
  return space_tail(t, pos);
}

std::size_t match_qwen(const Text& t, std::size_t pos, std::size_t max_digits) {
  std::uint32_t c0;
  std::size_t len0;
  const std::uint8_t f0 = t.at(pos, c0, len0);
  if (c0 == '\'')
    if (std::size_t e = contraction(t, pos, true)) return e;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (f0 & unicode::letter) return t.run(pos, unicode::letter);
  if (c0 != '\r' && c0 != '\n' && !(f0 & unicode::number) && (t.at(pos + len0) & unicode::letter))
    return t.run(pos + len0, unicode::letter);
  // \p{N} or \p{N}{1,3}
  if (f0 & unicode::number) return t.run(pos, unicode::number, max_digits);
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  if (c0 == ' ' && (t.at(pos + 1) & kOther)) return t.crlf_run(t.run(pos + 1, kOther));
  if (f0 & kOther) return t.crlf_run(t.run(pos, kOther));
  // Whitespace from here. \s*[\r\n]+ : the run up to and including its last CR or LF.
  std::size_t end = pos, last_newline = 0;
  bool newline = false;
  std::uint32_t cp;
  std::size_t len;
  while (end < t.n && (t.at(end, cp, len) & unicode::space)) {
    if (cp == '\r' || cp == '\n') {
      newline = true;
      last_newline = end + 1;
    }
    end += len;
  }
  if (newline) return last_newline;
  return space_tail(t, pos);
}

}  // namespace

std::optional<Pattern> pattern_from_regex(std::string_view regex) {
  for (Pattern p : {Pattern::gpt2, Pattern::qwen2, Pattern::cl100k})
    if (regex == pattern_regex(p)) return p;
  return std::nullopt;
}

const char* pattern_regex(Pattern pattern) {
  switch (pattern) {
    case Pattern::gpt2: return kGpt2;
    case Pattern::qwen2: return kQwen2;
    case Pattern::cl100k: return kCl100k;
  }
  return "";
}

void split(Pattern pattern, std::string_view text, std::size_t offset,
           std::vector<std::pair<std::size_t, std::size_t>>& pieces) {
  const Text t{text.data(), text.size()};
  std::size_t pos = 0;
  while (pos < t.n) {
    std::size_t end;
    switch (pattern) {
      case Pattern::gpt2: end = match_gpt2(t, pos); break;
      case Pattern::qwen2: end = match_qwen(t, pos, 1); break;
      default: end = match_qwen(t, pos, 3); break;
    }
    pieces.emplace_back(offset + pos, offset + end);
    pos = end;
  }
}

}  // namespace codescaler::pretokenize
