#include "codescaler/fence.hpp"

#include "text.hpp"

namespace codescaler {

std::vector<Block> scan_codescaler(std::string_view s) {
  std::vector<Block> blocks;
  const std::size_t n = s.size();
  std::size_t pos = 0;
  while (true) {
    const std::size_t open = s.find("```", pos);
    if (open == std::string_view::npos) break;
    // (\w+)? is greedy and \w never matches "\n", so the optional tag matches iff the maximal word run
    // after the backticks is followed by a newline; backtracking cannot find another split.
    std::size_t p = open + 3;
    while (p < n) {
      const text::CodePoint cp = text::decode(s, p);
      if (!text::is_word(cp.value)) break;
      p += cp.length;
    }
    if (p >= n || s[p] != '\n') {
      pos = open + 1;  // findall retries one character further on
      continue;
    }
    const std::size_t close = s.find("```", p + 1);
    // No closing fence after this body means none after any later opening either: every later "```"
    // starts at or after p + 1, so its body's search range lies inside this one's.
    if (close == std::string_view::npos) break;
    blocks.push_back(Block{open + 3, p, p + 1, close, true});
    pos = close + 3;
  }
  return blocks;
}

namespace {

bool is_blank(char c) { return c == ' ' || c == '\t'; }

// A fence line: optional indentation, then three or more of one fence character.
struct Fence {
  char ch = 0;
  std::size_t length = 0;
  std::size_t after = 0;  // first byte after the fence run
};

Fence fence_at(std::string_view s, std::size_t line_begin, std::size_t line_end) {
  std::size_t p = line_begin;
  while (p < line_end && is_blank(s[p])) ++p;
  if (p >= line_end || (s[p] != '`' && s[p] != '~')) return {};
  const char ch = s[p];
  std::size_t q = p;
  while (q < line_end && s[q] == ch) ++q;
  if (q - p < 3) return {};
  return Fence{ch, q - p, q};
}

}  // namespace

std::vector<Block> scan_tolerant(std::string_view s) {
  std::vector<Block> blocks;
  const std::size_t n = s.size();
  bool open = false;
  Fence opening;
  Block current{};
  for (std::size_t line_begin = 0; line_begin < n;) {
    std::size_t next = s.find('\n', line_begin);
    next = next == std::string_view::npos ? n : next + 1;
    std::size_t line_end = next;
    if (line_end > line_begin && s[line_end - 1] == '\n') --line_end;
    if (line_end > line_begin && s[line_end - 1] == '\r') --line_end;
    const Fence f = fence_at(s, line_begin, line_end);
    if (!open) {
      if (f.length) {
        std::size_t t = f.after;
        while (t < line_end && is_blank(s[t])) ++t;
        std::size_t te = t;
        // The tag is the info string's first word: "c++", "python3", "rust,ignore" -> up to a blank,
        // comma or brace.
        while (te < line_end && !is_blank(s[te]) && s[te] != ',' && s[te] != '{' && s[te] != '`') ++te;
        bool info_ok = true;
        if (f.ch == '`')  // a backtick fence's info string cannot hold a backtick (it is inline code)
          for (std::size_t i = f.after; i < line_end; ++i) info_ok &= s[i] != '`';
        if (info_ok) {
          open = true;
          opening = f;
          current = Block{t, te, next, next, false};
        }
      }
    } else if (f.length && f.ch == opening.ch && f.length >= opening.length) {
      std::size_t t = f.after;
      while (t < line_end && is_blank(s[t])) ++t;
      if (t == line_end) {
        current.code_end = line_begin;
        current.closed = true;
        blocks.push_back(current);
        open = false;
      }
    }
    line_begin = next;
  }
  if (open) {
    current.code_end = n;
    blocks.push_back(current);
  }
  return blocks;
}

}  // namespace codescaler
