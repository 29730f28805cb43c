// Extracting a program from an LLM response with the C++ API alone (no Python).
#include <codescaler/extract.hpp>

#include <iostream>
#include <string>

int main() {
  const std::string response =
      "Here is my solution:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\nIt adds two numbers.";
  codescaler::SyntaxChecker checker;
  codescaler::Options options;  // policy codescaler, language python, validated as CPython's ast.parse would
  const codescaler::Extraction e = codescaler::extract(response, options, checker);
  std::cout << "status=" << codescaler::status_name(e.status) << " n_blocks=" << e.n_blocks << "\n"
            << e.code(response) << "\n";

  options.policy = codescaler::Policy::best;
  options.language = codescaler::Language::rust;
  const std::string broken = "```rust\nfn main() { let x = ; }\n```\n";
  const codescaler::Extraction r = codescaler::extract(broken, options, checker);
  std::cout << "rust: status=" << codescaler::status_name(r.status) << " errors=" << r.syntax.n_error_nodes
            << " missing=" << r.syntax.n_missing_nodes << " first error at " << r.syntax.error_line << ":"
            << r.syntax.error_column << "\n";
  return e.status == codescaler::Status::ok ? 0 : 1;
}
