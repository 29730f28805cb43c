// C++ API tests, run by ctest: fence scanning, strip, selection policies, per-language validation and
// hostile input, without Python.
#include "expect.hpp"
#include <codescaler/extract.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

using namespace codescaler;

namespace {

using codescaler_test::failures;

std::string body(std::string_view text, const Block& b) {
  return std::string(text.substr(b.code_begin, b.code_end - b.code_begin));
}

std::string tag(std::string_view text, const Block& b) {
  return std::string(text.substr(b.tag_begin, b.tag_end - b.tag_begin));
}

Extraction run(const std::string& text, Policy policy, Language language) {
  SyntaxChecker checker;
  Options options;
  options.policy = policy;
  options.language = language;
  return extract(text, options, checker);
}

void test_scan_codescaler() {
  {
    const std::string t = "a ```py\nx = 1\n``` b ```\ny\n```";
    const auto blocks = scan_codescaler(t);
    EXPECT(blocks.size() == 2);
    EXPECT(tag(t, blocks[0]) == "py" && body(t, blocks[0]) == "x = 1\n");
    EXPECT(tag(t, blocks[1]).empty() && body(t, blocks[1]) == "y\n");
  }
  {  // a tag with a non-word char fails there; findall retries one char further (still inside the fence)
    const std::string t = "```c++\nint x;\n```";
    EXPECT(scan_codescaler(t).empty());
  }
  {  // unicode word characters are part of \w
    const std::string t = "```p\xC3\xA9\nx\n```";  // "pé"
    const auto blocks = scan_codescaler(t);
    EXPECT(blocks.size() == 1 && tag(t, blocks[0]) == "p\xC3\xA9");
  }
  {  // CRLF: \r is not \w and not \n, so "```python\r\n" opens no block at that position
    const std::string t = "```python\r\nx\r\n```";
    EXPECT(scan_codescaler(t).empty());
  }
  {  // an unterminated block ends the scan
    const std::string t = "```\nx = 1\n";
    EXPECT(scan_codescaler(t).empty());
  }
}

void test_strip() {
  const std::string t = "\xC2\xA0\t x = 1 \xE2\x80\xA8\x1F";  // NBSP, tab, ..., LINE SEPARATOR, \x1f
  const auto [b, e] = strip_range(t, 0, t.size());
  EXPECT(t.substr(b, e - b) == "x = 1");
  const std::string bad = " \xFF ";  // invalid UTF-8 stays, as one non-space character
  const auto [b2, e2] = strip_range(bad, 0, bad.size());
  EXPECT(bad.substr(b2, e2 - b2) == "\xFF");
}

void test_scan_tolerant() {
  const std::string t =
      "Intro\r\n~~~c++ {.numberLines}\r\nint main() {}\r\n~~~\r\n\n````python3 title=x\n```\ninner\n```\n````\n"
      "  ```js\n  let x = 1;\n";
  const auto blocks = scan_tolerant(t);
  EXPECT(blocks.size() == 3);
  EXPECT(tag(t, blocks[0]) == "c++" && body(t, blocks[0]) == "int main() {}\r\n" && blocks[0].closed);
  EXPECT(tag(t, blocks[1]) == "python3" && body(t, blocks[1]) == "```\ninner\n```\n");
  EXPECT(tag(t, blocks[2]) == "js" && !blocks[2].closed);
}

void test_policies() {
  const std::string two = "```python\nprint(1)\n```\ntext\n```python\ndef f(:\n```\n";
  EXPECT(run(two, Policy::codescaler, Language::python).status == Status::multiple_blocks);
  EXPECT(run(two, Policy::last, Language::python).status == Status::syntax_error);
  const Extraction best = run(two, Policy::best, Language::python);
  EXPECT(best.status == Status::ok && best.code(two) == "print(1)");
  const std::string ties = "```py\na = 1\n```\n```py\nb = 2\n```\n```rust\nfn main() {}\n```\n";
  const Extraction tie = run(ties, Policy::best, Language::python);
  EXPECT(tie.status == Status::ok && tie.code(ties) == "b = 2" && tie.n_blocks == 3);
  EXPECT(run(ties, Policy::last, Language::rust).code(ties) == "fn main() {}");
  EXPECT(run("no fences here", Policy::best, Language::go).status == Status::no_block);
  EXPECT(run("```\n \n```", Policy::codescaler, Language::python).status == Status::empty_block);
}

void test_languages() {
  struct Case {
    Language language;
    const char* good;
    const char* bad;
  };
  const std::vector<Case> cases = {
      {Language::python, "def f(x):\n    return x + 1\n", "def f(x)\n    return x +\n"},
      {Language::cpp, "#include <vector>\nint main() { std::vector<int> v{1}; return v[0]; }\n",
       "int main() { return 0\n"},
      {Language::java, "class A { int f() { return 1; } }\n", "class A { int f() { return 1 } \n"},
      {Language::javascript, "const f = (x) => x * 2;\nconsole.log(f(2));\n", "const f = (x => ;\n"},
      {Language::go, "package main\nfunc main() { x := 1; _ = x }\n", "package main\nfunc main() { x := }\n"},
      {Language::rust, "fn main() { let x: i32 = 1; println!(\"{}\", x); }\n", "fn main() { let x = ; }\n"},
  };
  SyntaxChecker checker;
  const std::uint64_t budget = kDefaultParseBudgetSteps;
  for (const Case& c : cases) {
    const SyntaxReport good = checker.check(c.good, c.language, budget);
    const SyntaxReport bad = checker.check(c.bad, c.language, budget);
    if (!good.valid) std::fprintf(stderr, "valid %s program rejected\n", language_name(c.language));
    EXPECT(good.valid && good.n_error_nodes == 0 && good.n_missing_nodes == 0);
    // tree-sitter counts ERROR and MISSING nodes; the Python check names the error instead.
    EXPECT(!bad.valid && bad.error_line >= 1);
    EXPECT(c.language == Language::python ? bad.error != nullptr : bad.n_error_nodes + bad.n_missing_nodes > 0);
  }
  const SyntaxReport r = checker.check("x = 1\ny = (\n", Language::python, budget);
  EXPECT(!r.valid && r.error_line >= 1);
}

// Python validity without CPython: each case's expected verdict is ast.parse's (CPython 3.11), checked by
// tests/test_verdict.py against the interpreter itself.
void test_python_verdict() {
  struct Case {
    const char* code;
    bool valid;
  };
  const std::vector<Case> cases = {
      {"else", false}, {"except:\n    pass", false}, {"\\", false}, {"`x`", false}, {"x := 1", false},
      {"\xEF\xBB\xBFx = 1", false}, {"print x", false}, {"if 1:\n\tx = 1\n        y = 2", false},
      {"if x:\n    a\n  b", false}, {"x\xE2\x80\x8B = 1", false}, {"x = '\xED\xA0\x80'", false},
      {"await = 1", false}, {"f'{x!z}'", false}, {"x = 07", false},
      {"x = 1\ry = 2", true}, {"def f():\n    return (1 +\n2)", true}, {"x = a, *[]", true},
      {"from __future__ import *", true}, {"f'{x!r:>{w}}' 'y'", true}, {"print(x, end='')", true},
      {"match x:\n    case [1, *r] | {'a': _}:\n        pass", true}, {"x = 1if y else 2", true},
  };
  SyntaxChecker checker;
  for (const Case& c : cases) {
    const SyntaxReport r = checker.check(c.code, Language::python, kDefaultParseBudgetSteps);
    if (r.valid != c.valid) std::fprintf(stderr, "python verdict wrong for %s\n", c.code);
    EXPECT(r.valid == c.valid && !r.timed_out && (r.valid || (r.error != nullptr && r.error_line >= 1)));
  }
  // The reported loophole: a response whose only block is `else` is a syntax error, so its reward is 0.
  EXPECT(run("```python\nelse\n```", Policy::codescaler, Language::python).status == Status::syntax_error);
  // The budget counts steps: a check given exactly the steps it took gets the same verdict, one fewer is a
  // timeout, whatever the machine's load (tree-sitter's steps come in hundreds).
  for (Language language : {Language::python, Language::cpp}) {
    std::string code;
    for (int i = 0; i < 50; ++i)
      code += language == Language::python ? "x = [i for i in y]\n" : "int f() { return [](int a) { return a; }(1); }\n";
    const SyntaxReport full = checker.check(code, language, kDefaultParseBudgetSteps);
    EXPECT(full.valid && full.steps > 0);
    EXPECT(checker.check(code, language, full.steps).valid);
    EXPECT(checker.check(code, language, full.steps - (language == Language::python ? 1 : 100)).timed_out);
  }
}

void test_hostile() {
  const auto start = std::chrono::steady_clock::now();
  std::string big(10 << 20, 'a');
  for (std::size_t i = 0; i < big.size(); i += 97) big[i] = '\n';
  big.replace(0, 4, "```\n");
  big += "\n```";
  Options options;
  options.parse_budget_steps = 2'000'000;
  SyntaxChecker checker;
  const Extraction e = extract(big, options, checker);
  EXPECT(e.status == Status::code_too_long);  // 10 MB of code: over kMaxCodeBytes, never parsed
  std::string fences;
  for (int i = 0; i < 100000; ++i) fences += (i % 3 ? "```py\n(\n" : "~~~\n\x00\xFF\n");
  fences.push_back('\0');
  for (Policy p : {Policy::codescaler, Policy::last, Policy::best}) {
    options.policy = p;
    const Extraction f = extract(fences, options, checker);
    EXPECT(f.n_blocks > 0);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT(seconds < 30.0);
}

void test_batch_order() {
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i)
    texts.push_back(i % 2 ? "```python\nx = " + std::to_string(i) + "\n```" : std::string("none"));
  std::vector<std::string_view> views(texts.begin(), texts.end());
  const auto results = extract_batch(views, Options{}, 2);
  EXPECT(results.size() == texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    if (i % 2) EXPECT(results[i].code(texts[i]) == "x = " + std::to_string(i));
    else EXPECT(results[i].status == Status::no_block);
  }
}

}  // namespace

int main() {
  test_scan_codescaler();
  test_strip();
  test_scan_tolerant();
  test_policies();
  test_languages();
  test_python_verdict();
  test_hostile();
  test_batch_order();
  if (failures) {
    std::fprintf(stderr, "%d expectation(s) failed\n", failures);
    return 1;
  }
  std::printf("all C++ extraction tests passed\n");
  return 0;
}
