#include "codescaler/json.hpp"
#include "../tokenizer/unicode.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <system_error>
#include <unordered_map>

namespace codescaler::json {

bool Value::is_integer() const {
  return type == Type::number && !string.empty() && string.find_first_of(".eEIN") == std::string::npos;
}

const Value* Value::find(std::string_view key) const {
  if (type != Type::object) return nullptr;
  for (auto member = object.rbegin(); member != object.rend(); ++member)
    if (member->first == key) return &member->second;
  return nullptr;
}

const char* type_name(Type type) {
  switch (type) {
    case Type::null: return "null";
    case Type::boolean: return "a boolean";
    case Type::number: return "a number";
    case Type::string: return "a string";
    case Type::array: return "an array";
    case Type::object: return "an object";
  }
  return "?";
}

namespace {

// Python's default sys.get_int_max_str_digits(): json.loads refuses a longer integer (ValueError).
constexpr std::size_t kPythonIntDigits = 4300;

class Parser {
 public:
  Parser(std::string_view text, const ParseOptions& options)
      : text_(text), max_depth_(options.max_depth), python_(options.python) {}

  std::string run(Value& out) {
    skip_space();
    if (!value(out, 0)) return error_;
    skip_space();
    if (pos_ != text_.size()) fail("unexpected data after the JSON value");
    return error_;
  }

 private:
  std::string_view text_;
  std::size_t pos_ = 0;
  int max_depth_;
  bool python_;
  std::string error_;

  bool fail(const std::string& what) {
    std::size_t line = 1, column = 1;
    for (std::size_t i = 0; i < pos_ && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    error_ = "line " + std::to_string(line) + ", column " + std::to_string(column) + " (byte " +
             std::to_string(pos_) + "): " + what;
    return false;
  }

  void skip_space() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }

  bool literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return fail("invalid literal");
    pos_ += word.size();
    return true;
  }

  bool value(Value& out, int depth) {
    if (pos_ >= text_.size()) return fail("unexpected end of input");
    const char c = text_[pos_];
    switch (c) {
      case '{': return object(out, depth);
      case '[': return array(out, depth);
      case '"': out.type = Type::string; return string(out.string);
      case 't': out.type = Type::boolean; out.boolean = true; return literal("true");
      case 'f': out.type = Type::boolean; out.boolean = false; return literal("false");
      case 'n': out.type = Type::null; return literal("null");
      case 'N':
      case 'I':
        if (!python_) break;
        out.type = Type::number;
        out.number = c == 'N' ? std::numeric_limits<double>::quiet_NaN() : HUGE_VAL;
        out.string = c == 'N' ? "NaN" : "Infinity";
        return literal(out.string);
      default:
        break;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return number(out);
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned char>(c));
      return fail(std::string("unexpected byte ") + hex);  // never echo a byte that may not be text
    }
    return fail(std::string("unexpected character '") + c + "'");
  }

  bool number(Value& out) {
    const std::size_t start = pos_;
    auto digits = [&] {
      const std::size_t s = pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      return pos_ - s;
    };
    out.type = Type::number;
    const bool negative = text_[pos_] == '-';
    if (negative) ++pos_;
    if (python_ && text_.substr(pos_, 8) == "Infinity") {
      pos_ += 8;
      out.number = -HUGE_VAL;
      out.string = "-Infinity";
      return true;
    }
    const std::size_t int_digits = digits();
    if (int_digits == 0) return fail("invalid number");
    if (int_digits > 1 && text_[pos_ - int_digits] == '0') return fail("invalid number (leading zero)");
    bool integer = true;
    if (pos_ < text_.size() && text_[pos_] == '.') {
      ++pos_;
      integer = false;
      if (!digits()) return fail("invalid number");
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      integer = false;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (!digits()) return fail("invalid number");
    }
    const std::string_view literal = text_.substr(start, pos_ - start);
    if (python_ && integer && int_digits > kPythonIntDigits) {
      pos_ = start;
      return fail("integer of " + std::to_string(int_digits) + " digits (Python reads at most " +
                  std::to_string(kPythonIntDigits) + ")");
    }
    out.string.assign(literal);
    // from_chars, unlike strtod, ignores the locale's decimal separator.
    const auto r = std::from_chars(literal.data(), literal.data() + literal.size(), out.number);
    if (r.ec == std::errc::result_out_of_range && python_) {
      // Python's float() rounds past the double range to inf and below it to 0.0, keeping the sign.
      out.number = exponent_of_leading_digit(literal) >= 0 ? HUGE_VAL : 0.0;
      if (negative) out.number = -out.number;
    } else if (r.ec != std::errc()) {
      return fail("number out of range");
    }
    return true;
  }

  // The power of ten of a number literal's first non-zero digit (1e400: 400; 0.05e-400: -402), saturating
  // far beyond any double's range; only called for a literal from_chars found out of range (never 0).
  static long long exponent_of_leading_digit(std::string_view literal) {
    if (literal[0] == '-') literal.remove_prefix(1);
    const std::size_t e = literal.find_first_of("eE");
    long long exponent = 0;
    if (e != std::string_view::npos) {
      std::size_t i = e + 1;
      const bool minus = literal[i] == '-';
      if (literal[i] == '+' || literal[i] == '-') ++i;
      for (; i < literal.size() && exponent < 1'000'000'000'000'000LL; ++i)
        exponent = exponent * 10 + (literal[i] - '0');
      if (minus) exponent = -exponent;
      literal = literal.substr(0, e);
    }
    const std::size_t dot = literal.find('.');
    const std::size_t int_len = dot == std::string_view::npos ? literal.size() : dot;
    const std::size_t lead = literal.find_first_of("123456789");
    if (lead == std::string_view::npos) return 0;
    const long long place = lead < int_len ? static_cast<long long>(int_len - 1 - lead)
                                           : -static_cast<long long>(lead - int_len);
    return exponent + place;
  }

  bool hex4(std::uint32_t& out) {
    if (text_.size() - pos_ < 4) return fail("truncated \\u escape");
    out = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = text_[pos_++];
      out <<= 4;
      if (h >= '0' && h <= '9') out |= static_cast<std::uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f') out |= static_cast<std::uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') out |= static_cast<std::uint32_t>(h - 'A' + 10);
      else return fail("invalid \\u escape");
    }
    return true;
  }

  bool string(std::string& out) {
    ++pos_;  // opening quote
    out.clear();
    while (true) {
      // Copy the run up to the next quote, backslash or control character at once.
      std::size_t run = pos_;
      while (run < text_.size() && text_[run] != '"' && text_[run] != '\\' &&
             static_cast<unsigned char>(text_[run]) >= 0x20)
        ++run;
      out.append(text_.data() + pos_, run - pos_);
      pos_ = run;
      if (pos_ >= text_.size()) return fail("unterminated string");
      const char c = text_[pos_];
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c != '\\') return fail("control character in string");
      if (++pos_ >= text_.size()) return fail("unterminated string");
      const char e = text_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = 0;
          if (!hex4(cp)) return false;
          // A high surrogate pairs only with a low one escaped right after it; otherwise it stays alone
          // and the next escape is read on its own (Python's rule).
          if (cp >= 0xD800 && cp <= 0xDBFF && text_.substr(pos_, 2) == "\\u") {
            const std::size_t next = pos_;
            pos_ += 2;
            std::uint32_t low = 0;
            if (!hex4(low)) return false;
            if (low >= 0xDC00 && low <= 0xDFFF) cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            else pos_ = next;
          }
          if (cp >= 0xD800 && cp <= 0xDFFF && !python_) return fail("lone surrogate in \\u escape");
          unicode::append_utf8(out, cp);  // a lone surrogate as three bytes (generalized UTF-8)
          break;
        }
        default: --pos_; return fail("invalid escape");
      }
    }
  }

  bool array(Value& out, int depth) {
    if (depth >= max_depth_) return fail("nesting too deep");
    out.type = Type::array;
    ++pos_;
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == ']') {
      ++pos_;
      return true;
    }
    while (true) {
      out.array.emplace_back();
      skip_space();
      if (!value(out.array.back(), depth + 1)) return false;
      skip_space();
      if (pos_ >= text_.size()) return fail("unterminated array");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == ']') {
        ++pos_;
        return true;
      }
      return fail("expected ',' or ']'");
    }
  }

  bool object(Value& out, int depth) {
    if (depth >= max_depth_) return fail("nesting too deep");
    out.type = Type::object;
    ++pos_;
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      return true;
    }
    while (true) {
      skip_space();
      if (pos_ >= text_.size() || text_[pos_] != '"') return fail("expected a string key");
      out.object.emplace_back();
      if (!string(out.object.back().first)) return false;
      skip_space();
      if (pos_ >= text_.size() || text_[pos_] != ':') return fail("expected ':'");
      ++pos_;
      skip_space();
      if (!value(out.object.back().second, depth + 1)) return false;
      skip_space();
      if (pos_ >= text_.size()) return fail("unterminated object");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == '}') {
        ++pos_;
        return true;
      }
      return fail("expected ',' or '}'");
    }
  }
};

}  // namespace

std::string parse(std::string_view text, Value& out, const ParseOptions& options) {
  out = Value();
  return Parser(text, options).run(out);
}

void dump_string(std::string& out, std::string_view s) {
  out += '"';
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: {
        char buf[8];
        if (c < 0x20) {
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else if (c == 0xED && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0xA0) {
          // a lone surrogate (generalized UTF-8): as Python's ensure_ascii writes it
          const unsigned cp = 0xD000u | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 6) |
                              (static_cast<unsigned char>(s[i + 2]) & 0x3Fu);
          std::snprintf(buf, sizeof buf, "\\u%04x", cp);
          out += buf;
          i += 2;
        } else {
          out += static_cast<char>(c);
        }
      }
    }
  }
  out += '"';
}

void dump_float(std::string& out, double x) {
  if (std::isnan(x)) {
    out += "NaN";
    return;
  }
  if (std::isinf(x)) {
    out += x < 0 ? "-Infinity" : "Infinity";
    return;
  }
  // The shortest digits that read back as x (as Python's repr picks them), then Python's layout: positional
  // when the decimal point falls within 16 digits of the first one (1e-05 and 1e+16 are not).
  char buf[40];
  const auto r = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);  // "-d.ddde+XX"
  std::string_view sci(buf, static_cast<std::size_t>(r.ptr - buf));
  if (sci[0] == '-') {
    out += '-';
    sci.remove_prefix(1);
  }
  const std::size_t e = sci.find('e');
  std::string digits(1, sci[0]);
  if (e > 1) digits.append(sci.substr(2, e - 2));
  const int exponent = std::atoi(std::string(sci.substr(e + 1)).c_str());
  const int point = exponent + 1;  // digits d1 d2 ... mean 0.d1d2... x 10^point
  const int n = static_cast<int>(digits.size());
  if (point <= -4 || point > 16) {
    out += digits[0];
    if (n > 1) {
      out += '.';
      out.append(digits, 1);
    }
    char exp[16];
    std::snprintf(exp, sizeof exp, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += exp;
  } else if (point <= 0) {
    out += "0.";
    out.append(static_cast<std::size_t>(-point), '0');
    out += digits;
  } else if (point >= n) {
    out += digits;
    out.append(static_cast<std::size_t>(point - n), '0');
    out += ".0";
  } else {
    out.append(digits, 0, static_cast<std::size_t>(point));
    out += '.';
    out.append(digits, static_cast<std::size_t>(point));
  }
}

void dump(std::string& out, const Value& v) {
  switch (v.type) {
    case Type::null: out += "null"; break;
    case Type::boolean: out += v.boolean ? "true" : "false"; break;
    case Type::number:
      if (v.is_integer()) out += v.string == "-0" ? "0" : v.string;  // Python's int(-0) is 0
      else dump_float(out, v.number);
      break;
    case Type::string: dump_string(out, v.string); break;
    case Type::array:
      out += '[';
      for (std::size_t i = 0; i < v.array.size(); ++i) {
        if (i) out += ", ";
        dump(out, v.array[i]);
      }
      out += ']';
      break;
    case Type::object: {
      // A dict keeps a repeated key where it first appeared, with its last value.
      std::unordered_map<std::string_view, std::size_t> last;
      for (std::size_t i = 0; i < v.object.size(); ++i) last[v.object[i].first] = i;
      out += '{';
      bool first = true;
      for (const auto& member : v.object) {
        std::size_t& at = last[member.first];
        if (at == std::string::npos) continue;  // written already
        if (!first) out += ", ";
        first = false;
        dump_string(out, member.first);
        out += ": ";
        dump(out, v.object[at].second);
        at = std::string::npos;
      }
      out += '}';
      break;
    }
  }
}

std::size_t first_invalid_utf8(std::string_view text) { return unicode::first_invalid_utf8(text); }

}  // namespace codescaler::json
