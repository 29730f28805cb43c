// UTF-8 decoding and the code-point classes Python's regex and str.strip() use (private to the core).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace codescaler::text {

struct CodePoint {
  std::uint32_t value;  // kInvalid for a byte that does not start a well-formed sequence
  std::size_t length;   // bytes consumed, >= 1
};

inline constexpr std::uint32_t kInvalid = 0xFFFFFFFFu;

// Decodes the code point starting at `pos`. Surrogates encoded as three bytes (Python's
// "surrogatepass") decode to their code point; any other malformed sequence is one invalid byte.
inline CodePoint decode(std::string_view s, std::size_t pos) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) return {b0, 1};
  std::size_t len;
  std::uint32_t cp, min;
  if (b0 >= 0xC2 && b0 <= 0xDF) { len = 2; cp = b0 & 0x1F; min = 0x80; }
  else if (b0 >= 0xE0 && b0 <= 0xEF) { len = 3; cp = b0 & 0x0F; min = 0x800; }
  else if (b0 >= 0xF0 && b0 <= 0xF4) { len = 4; cp = b0 & 0x07; min = 0x10000; }
  else return {kInvalid, 1};
  if (pos + len > s.size()) return {kInvalid, 1};
  for (std::size_t i = 1; i < len; ++i) {
    const auto b = static_cast<unsigned char>(s[pos + i]);
    if ((b & 0xC0) != 0x80) return {kInvalid, 1};
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF) return {kInvalid, 1};
  return {cp, len};
}

// Decodes the code point that ends at `end` (exclusive), consistently with forward decoding.
inline CodePoint decode_before(std::string_view s, std::size_t begin, std::size_t end) {
  std::size_t start = end - 1;
  for (std::size_t back = 0; back < 3 && start > begin &&
                             (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80; ++back)
    --start;
  const CodePoint cp = decode(s.substr(0, end), start);
  if (start + cp.length == end && cp.value != kInvalid) return cp;
  return {kInvalid, 1};
}

// Python's \w for str patterns: str.isalnum() or "_".
bool is_word(std::uint32_t cp);
// Python's str.isspace().
bool is_space(std::uint32_t cp);
// PEP 3131 identifiers as Python's str.isidentifier() reads them: may `cp` start one ("_" included), or
// continue one (XID_Continue)?
bool is_id_start(std::uint32_t cp);
bool is_id_continue(std::uint32_t cp);

// The Unicode version of the tables (the generating Python's unicodedata.unidata_version).
const char* unicode_version();

// Number of code points in s[0, byte_offset) as Python counts them (each malformed byte counts one).
std::size_t code_points(std::string_view s, std::size_t byte_offset);

}  // namespace codescaler::text
