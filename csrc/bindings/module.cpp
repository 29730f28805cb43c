// codescaler._native: what the package's production code calls, extract_batch and its constants, with the
// GIL released around the C++ core. Test helpers live in codescaler._native_testing (tests/cpp/native_testing.cpp).
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <string>
#include <vector>

#include "codescaler/extract.hpp"
#include "convert.hpp"

namespace nb = nanobind;
using namespace codescaler;

namespace {

std::vector<python::Extraction> py_extract_batch(nb::handle responses, const std::string& policy,
                                                 const std::string& language, unsigned threads, bool validate,
                                                 std::uint64_t parse_budget_steps) {
  Options options;
  options.policy = python::parse_policy(policy);
  options.language = python::parse_language(language);
  options.validate = validate;
  options.parse_budget_steps = parse_budget_steps;
  // A tuple holds a reference to every response while the GIL is released: another thread may mutate
  // the caller's list meanwhile, and the views below point into the strings.
  nb::object seq = nb::steal(PySequence_Tuple(responses.ptr()));
  if (!seq.is_valid()) throw nb::python_error();
  const Py_ssize_t n = PyTuple_GET_SIZE(seq.ptr());
  python::Utf8Texts texts;
  texts.views.reserve(static_cast<std::size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) texts.add(PyTuple_GET_ITEM(seq.ptr(), i), i);
  std::vector<Extraction> results;
  {
    nb::gil_scoped_release release;
    results = codescaler::extract_batch(texts.views, options, threads);
  }
  std::vector<python::Extraction> out;
  out.reserve(results.size());
  for (std::size_t i = 0; i < results.size(); ++i)
    out.push_back(python::to_python(texts.views[i], texts.ascii[i], results[i]));
  return out;
}

}  // namespace

NB_MODULE(_native, m) {
  m.doc() = "codescaler native core: fence scanning, block selection and syntax validation (Python as "
            "CPython's ast.parse decides it, other languages with tree-sitter).";
  m.attr("PARSE_BUDGET_STEPS") = kDefaultParseBudgetSteps;
  m.attr("MAX_CODE_BYTES") = kMaxCodeBytes;

  nb::class_<python::Extraction>(
      m, "Extraction",
      "What the C++ core found in one response: the selected block (tag and stripped code, also for "
      "syntax_error), its place in the response and the C++ syntax check's verdict. Offsets and columns "
      "count code points.")
      .def_ro("status", &python::Extraction::status,
              "ok, no_block, multiple_blocks, empty_block, syntax_error, timeout or code_too_long; with "
              "validate=False, ok means selected and not checked.")
      .def_ro("n_blocks", &python::Extraction::n_blocks, "Fenced blocks found, of any tag.")
      .def_ro("tag", &python::Extraction::tag, "The selected block's tag, None when it has none.")
      .def_ro("code", &python::Extraction::code, "The selected block, stripped (\"\" when none was selected).")
      .def_ro("code_start", &python::Extraction::code_start, "Where code starts in the response.")
      .def_ro("code_end", &python::Extraction::code_end, "Where code ends in the response.")
      .def_ro("n_error_nodes", &python::Extraction::n_error_nodes, "tree-sitter's ERROR nodes in code.")
      .def_ro("n_missing_nodes", &python::Extraction::n_missing_nodes, "tree-sitter's MISSING nodes in code.")
      .def_ro("error_line", &python::Extraction::error_line,
              "1-based line of the first error the C++ check found, None when it found none.")
      .def_ro("error_column", &python::Extraction::error_column, "1-based column of that error, or None.");

  m.def("extract_batch", &py_extract_batch,
        nb::sig("def extract_batch(responses: collections.abc.Sequence[str], policy: str = 'codescaler', "
                "language: str = 'python', threads: int = 1, validate: bool = True, "
                "parse_budget_steps: int = PARSE_BUDGET_STEPS) -> list[Extraction]"),
        nb::arg("responses"), nb::arg("policy") = "codescaler",
        nb::arg("language") = "python", nb::arg("threads") = 1, nb::arg("validate") = true,
        nb::arg("parse_budget_steps") = kDefaultParseBudgetSteps,
        "Extracts from each response with the GIL released, over `threads` threads (0: all cores); one "
        "Extraction per response, in input order. Validation spends at most `parse_budget_steps` parser "
        "steps per response (status timeout past them); selected code over MAX_CODE_BYTES UTF-8 bytes is "
        "status code_too_long, validate or not.");
}
