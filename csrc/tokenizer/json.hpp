// A small JSON reader for tokenizer.json: a DOM of null/bool/number/string/array/object, parsed without
// exceptions. Errors carry the byte offset, line and column. Object members keep their file order.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace codescaler::json {

enum class Type { null, boolean, number, string, array, object };

class Value {
 public:
  Type type = Type::null;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<Value> array;
  std::vector<std::pair<std::string, Value>> object;

  bool is_null() const { return type == Type::null; }
  bool is_string() const { return type == Type::string; }
  bool is_array() const { return type == Type::array; }
  bool is_object() const { return type == Type::object; }
  bool is_bool() const { return type == Type::boolean; }
  bool is_number() const { return type == Type::number; }
  // The member `key` of an object, or nullptr (also when this is not an object).
  const Value* find(std::string_view key) const;
};

const char* type_name(Type type);

// Parses `text` (one JSON value, surrounding whitespace allowed) into `out`. Returns an empty string on
// success, else a message such as "line 3, column 7 (byte 40): expected ':'". Nesting is limited to
// `max_depth` levels so hostile input cannot exhaust the stack.
std::string parse(std::string_view text, Value& out, int max_depth = 512);

}  // namespace codescaler::json
