// A small JSON reader for tokenizer.json, the engine's files and JSON Lines input, and a writer: a DOM of
// null/bool/number/string/array/object, parsed without exceptions. Errors carry the byte offset, line and
// column. Object members keep their file order, duplicates included; find() takes the last, as Python's
// json does. The python dialect reads a line as Python's json.loads does and dump() writes a value as
// json.dumps(..., ensure_ascii=False) writes what json.loads made of it, so a JSONL tool can echo a field
// exactly as `codescaler score` does.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "codescaler/export.h"

namespace codescaler::json {

enum class Type { null, boolean, number, string, array, object };

class Value {
 public:
  Type type = Type::null;
  bool boolean = false;
  double number = 0.0;
  // A string's UTF-8 text. For a number, its literal as written ("1E5", "9007199254740993", "-Infinity"),
  // so a caller can tell 1 from 1.0 and keep the digits of an integer a double cannot hold.
  // In the python dialect a lone surrogate escape ("\ud800") is kept as its three-byte generalized
  // UTF-8 form, which unicode::first_invalid_utf8 reports: such text is not valid Unicode.
  std::string string;
  std::vector<Value> array;
  std::vector<std::pair<std::string, Value>> object;

  bool is_null() const { return type == Type::null; }
  bool is_string() const { return type == Type::string; }
  bool is_array() const { return type == Type::array; }
  bool is_object() const { return type == Type::object; }
  bool is_bool() const { return type == Type::boolean; }
  bool is_number() const { return type == Type::number; }
  // A number written without a fraction or exponent: an int to Python, of any size.
  CODESCALER_API bool is_integer() const;
  // The member `key` of an object (the last one when the key repeats, as in Python), or nullptr (also
  // when this is not an object).
  CODESCALER_API const Value* find(std::string_view key) const;
};

CODESCALER_API const char* type_name(Type type);

struct ParseOptions {
  // Nesting limit, so hostile input cannot exhaust the stack.
  int max_depth = 512;
  // false: RFC 8259 and valid Unicode only. true: what Python's json.loads accepts besides: the literals
  // NaN, Infinity and -Infinity, lone surrogate escapes (see Value::string), floats out of double range
  // (1e400 is inf, 1e-400 is 0.0); integers longer than Python's default int_max_str_digits (4300
  // digits) are refused, as Python refuses them.
  bool python = false;
};

// Parses `text` (one JSON value, surrounding whitespace allowed) into `out`. Returns an empty string on
// success, else a message such as "line 3, column 7 (byte 40): expected ':'".
CODESCALER_API std::string parse(std::string_view text, Value& out, const ParseOptions& options = {});

// Appends what Python's json.dumps(v, ensure_ascii=False) gives for the value json.loads read as `v`:
// integers digit for digit, floats as Python's repr (1E5 -> 100000.0, 1e400 -> Infinity), NaN and
// Infinity as Python writes them, duplicate keys once (first place, last value), ", " and ": " as
// separators. A lone surrogate is written as its \uXXXX escape, so the output is always valid UTF-8.
CODESCALER_API void dump(std::string& out, const Value& v);
CODESCALER_API void dump_string(std::string& out, std::string_view s);
// Python's repr of a double (shortest text that reads back; 1.0, 1e-05, 1e+16), NaN, Infinity, -Infinity.
CODESCALER_API void dump_float(std::string& out, double x);

// The byte offset of the first byte of `text` that is not well-formed UTF-8 (a lone surrogate the python
// dialect kept included), or npos: what a JSON Lines reader checks before scoring a field.
CODESCALER_API std::size_t first_invalid_utf8(std::string_view text);

}  // namespace codescaler::json
