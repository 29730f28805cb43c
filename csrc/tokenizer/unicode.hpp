// Code-point classes for the pre-tokenizer regexes, UTF-8 checking and decoding, and NFC, from tables
// generated at build time out of the building Python's unicodedata (gen_tokenizer_tables.py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace codescaler::unicode {

enum : std::uint8_t { letter = 1, number = 2, space = 4, unstable = 8, decomposes = 16 };

// Class bits of a code point: \p{L}, \p{N}, \s (White_Space), "NFC may change it or its neighbour", and
// "has a canonical decomposition".
std::uint8_t flags(std::uint32_t cp);

// The byte offset of the first ill-formed UTF-8 sequence (overlong forms, surrogates and code points past
// U+10FFFF included), or std::string_view::npos when `text` is well formed.
std::size_t first_invalid_utf8(std::string_view text);

// Decodes the code point at `pos` of well-formed UTF-8; returns its length in bytes.
inline std::size_t decode(const char* s, std::size_t pos, std::uint32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  if (b0 < 0xE0) {
    cp = ((b0 & 0x1Fu) << 6) | (static_cast<unsigned char>(s[pos + 1]) & 0x3Fu);
    return 2;
  }
  if (b0 < 0xF0) {
    cp = ((b0 & 0x0Fu) << 12) | ((static_cast<unsigned char>(s[pos + 1]) & 0x3Fu) << 6) |
         (static_cast<unsigned char>(s[pos + 2]) & 0x3Fu);
    return 3;
  }
  cp = ((b0 & 0x07u) << 18) | ((static_cast<unsigned char>(s[pos + 1]) & 0x3Fu) << 12) |
       ((static_cast<unsigned char>(s[pos + 2]) & 0x3Fu) << 6) | (static_cast<unsigned char>(s[pos + 3]) & 0x3Fu);
  return 4;
}

void append_utf8(std::string& out, std::uint32_t cp);

// True when NFC leaves well-formed `text` unchanged because no code point in it is unstable.
bool nfc_quick_yes(std::string_view text);

// Unicode Normalization Form C of well-formed `text`, appended to `out`.
void nfc(std::string_view text, std::string& out);

// The Unicode version of the built-in tables.
const char* version();

}  // namespace codescaler::unicode
