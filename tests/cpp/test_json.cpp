// The JSON reader and writer (csrc/tokenizer/json.hpp), run by ctest without Python. The expected texts
// are what Python 3.11's json.loads / json.dumps(ensure_ascii=False) give; tests/test_cpp_scorer.py checks
// the example against `codescaler score` itself on a messy JSONL file.
#include "expect.hpp"
#include "json.hpp"
#include "unicode.hpp"

#include <cmath>
#include <string>

using codescaler::json::ParseOptions;
using codescaler::json::Value;
using codescaler_test::failures;

namespace {

const ParseOptions kPython{512, true};

// dump(parse(text)) in the python dialect, or "error: ..." when it does not parse.
std::string python_echo(const std::string& text) {
  Value v;
  const std::string problem = codescaler::json::parse(text, v, kPython);
  if (!problem.empty()) return "error: " + problem;
  std::string out;
  codescaler::json::dump(out, v);
  return out;
}

bool parses(const std::string& text, const ParseOptions& options = {}) {
  Value v;
  return codescaler::json::parse(text, v, options).empty();
}

std::string repr(double x) {
  std::string out;
  codescaler::json::dump_float(out, x);
  return out;
}

}  // namespace

int main() {
  // Numbers: integers digit for digit, floats as Python's repr of the double they read as.
  EXPECT(python_echo("9007199254740993") == "9007199254740993");
  EXPECT(python_echo("-123456789012345678901234567890") == "-123456789012345678901234567890");
  EXPECT(python_echo("-0") == "0");
  EXPECT(python_echo("-0.0") == "-0.0");
  EXPECT(python_echo("1.0") == "1.0");
  EXPECT(python_echo("1.50") == "1.5");
  EXPECT(python_echo("1E5") == "100000.0");
  EXPECT(python_echo("1e15") == "1000000000000000.0");
  EXPECT(python_echo("1e16") == "1e+16");
  EXPECT(python_echo("0.0001") == "0.0001");
  EXPECT(python_echo("0.00001") == "1e-05");
  EXPECT(python_echo("123456789012345678901234567890.0") == "1.2345678901234568e+29");
  EXPECT(python_echo("1e400") == "Infinity");
  EXPECT(python_echo("-1e400") == "-Infinity");
  EXPECT(python_echo("1e-400") == "0.0");
  EXPECT(python_echo("-0.1e-400") == "-0.0");
  EXPECT(python_echo("1e999999999999999999999") == "Infinity");
  EXPECT(python_echo("5e-324") == "5e-324");
  EXPECT(python_echo("1.7976931348623157e308") == "1.7976931348623157e+308");
  EXPECT(python_echo("[NaN, Infinity, -Infinity]") == "[NaN, Infinity, -Infinity]");
  EXPECT(python_echo(std::string(4300, '7')) == std::string(4300, '7'));
  EXPECT(python_echo(std::string(4301, '7')).find("4301 digits") != std::string::npos);
  EXPECT(python_echo("0." + std::string(4301, '7')) == "0.7777777777777778");  // floats have no such limit
  for (const char* bad : {"01", "-01", "1.", ".5", "1e", "1e+", "+1", "-", "-NaN", "nan", "infinity", "0x10"})
    EXPECT(python_echo(bad).rfind("error: ", 0) == 0);
  {
    Value v;
    EXPECT(codescaler::json::parse("[1, 1.0, 1e2, -Infinity]", v, kPython).empty());
    EXPECT(v.array[0].is_integer() && !v.array[1].is_integer() && !v.array[2].is_integer());
    EXPECT(!v.array[3].is_integer() && std::isinf(v.array[3].number) && v.array[3].number < 0);
  }
  EXPECT(repr(0.1) == "0.1" && repr(-2.5e-7) == "-2.5e-07" && repr(1234.5) == "1234.5" && repr(0.0) == "0.0");
  EXPECT(repr(std::nan("")) == "NaN" && repr(1e300 * 1e300) == "Infinity");

  // Strings: Python's escapes on output, everything else as UTF-8 text.
  EXPECT(python_echo(R"("a\"b\\c\n\t\b\f\u0001\u007f\u2028\/\u00e9\ud83d\ude00")") ==
         "\"a\\\"b\\\\c\\n\\t\\b\\f\\u0001\x7f\xe2\x80\xa8/\xc3\xa9\xf0\x9f\x98\x80\"");
  // Lone surrogates: kept (as text that is not valid Unicode), paired only when a low one follows at once.
  {
    Value v;
    EXPECT(codescaler::json::parse(R"("a\ud800b")", v, kPython).empty());
    EXPECT(v.string == "a\xed\xa0\x80" "b" && codescaler::unicode::first_invalid_utf8(v.string) == 1);
    EXPECT(python_echo(R"("\ud800\u0041")") == "\"\\ud800A\"");
    EXPECT(python_echo(R"("\udc00\ud800")") == "\"\\udc00\\ud800\"");
    EXPECT(python_echo(R"("\ud800\ud800\udc00")") == "\"\\ud800\xf0\x90\x80\x80\"");
    EXPECT(python_echo(R"("\ud800\uzzzz")").rfind("error: ", 0) == 0);
  }

  // Objects: the last of a repeated key wins, in the place where the key first appeared.
  EXPECT(python_echo(R"({"a": 1, "b": 2, "a": 3})") == R"({"a": 3, "b": 2})");
  EXPECT(python_echo(R"({"\u0061": [1, {"c": null, "c": 1E2}], "a": {}})") == R"({"a": {}})");
  {
    Value v;
    EXPECT(codescaler::json::parse(R"({"question": "first", "question": "last"})", v).empty());
    EXPECT(v.find("question")->string == "last");
  }

  // Anything else Python refuses, the python dialect refuses too.
  for (const char* bad :
       {"[1,]", "{\"a\": 1,}", "1 2", "\"\t\"", "\"\\x\"", "\xef\xbb\xbf" "1", "\x0c" "1", "{1: 2}", ""})
    EXPECT(python_echo(bad).rfind("error: ", 0) == 0);
  EXPECT(parses(std::string(1000, '[') + std::string(1000, ']'), {1000, true}));
  EXPECT(!parses(std::string(1001, '[') + std::string(1001, ']'), {1000, true}));

  // The strict dialect (tokenizer.json, engine files): RFC 8259 and valid Unicode only.
  EXPECT(parses(R"({"a": [1, -2.5e3, "\ud83d\ude00"]})"));
  for (const char* bad :
       {"01", "NaN", "Infinity", "-Infinity", "1e400", R"("\ud800")", R"("\udc00")", R"("\ud800\u0041")"})
    EXPECT(!parses(bad));

  if (failures == 0) std::printf("json tests passed\n");
  return failures ? 1 : 0;
}
