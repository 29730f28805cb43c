// codescaler._native_testing: the C++ core's parts that the tests hold to Python's references (the fence
// scanners and str.strip, the syntax check alone, the tokenizer, the planner, the Unicode tables). No
// production code imports it. It is test code, so it lives here and, like the other tests/cpp programs,
// reaches private headers: the planner (plan.hpp, which only the C++ scorer runs) and the extraction's
// Unicode tables (text.hpp). The production module, csrc/bindings/module.cpp, includes public headers only.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "codescaler/extract.hpp"
#include "codescaler/fence.hpp"
#include "codescaler/syntax.hpp"
#include "codescaler/tokenizer.hpp"
#include "convert.hpp"
#include "plan.hpp"
#include "text.hpp"

namespace nb = nanobind;
using namespace codescaler;

namespace {

// A Python list of ints from token ids.
nb::list id_list(const std::vector<std::int32_t>& ids) {
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(ids.size()));
  if (!list) throw nb::python_error();
  for (std::size_t i = 0; i < ids.size(); ++i) {
    PyObject* v = PyLong_FromLong(ids[i]);
    if (!v) {
      Py_DECREF(list);
      throw nb::python_error();
    }
    PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), v);
  }
  return nb::steal<nb::list>(list);
}

// The UTF-8 view of one Python string (str only).
python::Utf8Texts one_text(nb::handle text) {
  python::Utf8Texts t;
  t.add(text.ptr(), 0);
  return t;
}

std::unique_ptr<Tokenizer> open_tokenizer(const std::string& path) {
  std::unique_ptr<Tokenizer> tokenizer;
  TokenizerStatus status;
  {
    nb::gil_scoped_release release;
    status = Tokenizer::open(path, &tokenizer);
  }
  if (!status.ok()) throw nb::value_error(status.message.c_str());
  return tokenizer;
}

nb::list py_encode(const Tokenizer& tokenizer, nb::handle text, bool add_special_tokens) {
  const python::Utf8Texts t = one_text(text);
  std::vector<std::int32_t> ids;
  TokenizerStatus status;
  {
    nb::gil_scoped_release release;
    status = tokenizer.encode(t.views[0], &ids, add_special_tokens);
  }
  if (!status.ok()) throw nb::value_error(status.message.c_str());
  return id_list(ids);
}

nb::list py_encode_batch(const Tokenizer& tokenizer, nb::handle texts, bool add_special_tokens,
                         unsigned threads) {
  nb::object seq = nb::steal(PySequence_Tuple(texts.ptr()));  // keeps the strings alive, see extract_batch
  if (!seq.is_valid()) throw nb::python_error();
  const Py_ssize_t n = PyTuple_GET_SIZE(seq.ptr());
  python::Utf8Texts t;
  t.views.reserve(static_cast<std::size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) t.add(PyTuple_GET_ITEM(seq.ptr(), i), i);
  std::vector<std::vector<std::int32_t>> ids;
  std::vector<TokenizerStatus> statuses;
  {
    nb::gil_scoped_release release;
    statuses = tokenizer.encode_batch(t.views, &ids, add_special_tokens, threads);
  }
  if (statuses.size() != t.views.size()) throw std::bad_alloc();
  nb::list out;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (!statuses[i].ok())
      throw nb::value_error(("text " + std::to_string(i) + ": " + statuses[i].message).c_str());
    out.append(id_list(ids[i]));
  }
  return out;
}

// Token ids from a Python sequence of ints; `what` names it in errors.
std::vector<std::int32_t> ids_from(PyObject* obj, const std::string& what) {
  nb::object seq = nb::steal(PySequence_Fast(obj, (what + " must be a list of int or None").c_str()));
  if (!seq.is_valid()) throw nb::python_error();
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
  PyObject** values = PySequence_Fast_ITEMS(seq.ptr());
  std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
  for (Py_ssize_t j = 0; j < n; ++j) {
    int overflow = 0;
    const long long v = PyLong_Check(values[j]) ? PyLong_AsLongLongAndOverflow(values[j], &overflow) : 0;
    if (!PyLong_Check(values[j]) || overflow || v < INT32_MIN || v > INT32_MAX)
      throw nb::type_error((what + "[" + std::to_string(j) + "] must be an int32 token id").c_str());
    ids[static_cast<std::size_t>(j)] = static_cast<std::int32_t>(v);
  }
  return ids;
}

// (seqs, pools, slot, packs), as python/codescaler/plan.py's Plan fields; packs as (prefix, members) tuples.
nb::tuple py_plan(nb::handle items, const std::vector<std::int64_t>& bounds, std::optional<std::int32_t> pad_id,
                  bool share, std::int64_t max_batch_tokens, std::int64_t max_batch_size) {
  if (max_batch_tokens < 1 || max_batch_size < 1)
    throw nb::value_error("max_batch_tokens and max_batch_size must be positive");
  nb::object seq = nb::steal(PySequence_Fast(items.ptr(), "items must be a sequence"));
  if (!seq.is_valid()) throw nb::python_error();
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
  if (static_cast<std::size_t>(n) != bounds.size())
    throw nb::value_error((std::to_string(n) + " sequences but " + std::to_string(bounds.size()) + " boundaries").c_str());
  std::vector<std::vector<std::int32_t>> storage;
  storage.reserve(static_cast<std::size_t>(n));  // no reallocation: `ptrs` point into it
  std::vector<const std::vector<std::int32_t>*> ptrs(static_cast<std::size_t>(n), nullptr);
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = PySequence_Fast_GET_ITEM(seq.ptr(), i);
    if (item == Py_None) continue;
    storage.push_back(ids_from(item, "items[" + std::to_string(i) + "]"));
    ptrs[static_cast<std::size_t>(i)] = &storage.back();
  }
  plan::Plan p;
  {
    nb::gil_scoped_release release;
    p = plan::make_plan(ptrs, bounds, pad_id, share, static_cast<std::size_t>(max_batch_tokens),
                        static_cast<std::size_t>(max_batch_size));
  }
  nb::list seqs, pools, slot, packs;
  for (const auto& s : p.seqs) seqs.append(id_list(s));
  // An empty sequence without a pad id pools at Python's -1 (SIZE_MAX in C++).
  for (std::size_t pool : p.pools) pools.append(static_cast<std::ptrdiff_t>(pool));
  for (std::ptrdiff_t k : p.slot) slot.append(k);
  for (const auto& pack : p.packs) {
    nb::list units;
    for (const plan::Unit& u : pack) units.append(nb::make_tuple(u.prefix, nb::cast(u.members)));
    packs.append(units);
  }
  return nb::make_tuple(seqs, pools, slot, packs);
}

nb::list py_findall_codescaler(nb::handle text) {
  const python::Utf8Texts t = one_text(text);
  std::vector<Block> blocks;
  {
    nb::gil_scoped_release release;
    blocks = scan_codescaler(t.views[0]);
  }
  nb::list out;
  for (const Block& b : blocks)
    out.append(nb::make_tuple(python::decode(t.views[0], b.tag_begin, b.tag_end),
                              python::decode(t.views[0], b.code_begin, b.code_end)));
  return out;
}

nb::list py_scan_tolerant(nb::handle text) {
  const python::Utf8Texts t = one_text(text);
  nb::list out;
  for (const Block& b : scan_tolerant(t.views[0]))
    out.append(nb::make_tuple(python::decode(t.views[0], b.tag_begin, b.tag_end),
                              python::decode(t.views[0], b.code_begin, b.code_end), b.closed));
  return out;
}

nb::object py_strip(nb::handle text) {
  const python::Utf8Texts t = one_text(text);
  const auto [b, e] = strip_range(t.views[0], 0, t.views[0].size());
  return python::decode(t.views[0], b, e);
}

python::Extraction py_check_syntax(nb::handle code, const std::string& language, std::uint64_t parse_budget_steps) {
  const python::Utf8Texts t = one_text(code);
  const Language lang = python::parse_language(language);
  SyntaxReport r;
  {
    nb::gil_scoped_release release;
    SyntaxChecker checker;
    r = checker.check(t.views[0], lang, parse_budget_steps);
  }
  Extraction e;
  e.status = r.timed_out ? Status::timeout : r.valid ? Status::ok : Status::syntax_error;
  e.code_end = t.views[0].size();
  e.n_blocks = 1;
  e.syntax = r;
  return python::to_python(t.views[0], t.ascii[0], e);
}

}  // namespace

NB_MODULE(_native_testing, m) {
  m.doc() = "Test helpers over the C++ core (scanners, the syntax check alone, tokenizer, planner); "
            "production code uses codescaler._native.";
  // check_syntax returns codescaler._native.Extraction, a type that module registers.
  nb::module_::import_("codescaler._native");

  nb::class_<Tokenizer>(m, "Tokenizer",
                        "A Hugging Face tokenizer.json (byte-level BPE) read and run by the C++ core.")
      .def_static("open", &open_tokenizer, nb::arg("path"),
                  "Reads `path`; raises ValueError naming what is unsupported or malformed.")
      .def("encode", &py_encode, nb::sig("def encode(self, text: str, add_special_tokens: bool = True) -> list[int]"),
           nb::arg("text"), nb::arg("add_special_tokens") = true,
           "Token ids of `text`, as tokenizers.Tokenizer.encode(text, add_special_tokens).ids.")
      .def("encode_batch", &py_encode_batch,
           nb::sig("def encode_batch(self, texts: collections.abc.Sequence[str], add_special_tokens: bool = True, "
                   "threads: int = 1) -> list[list[int]]"),
           nb::arg("texts"), nb::arg("add_special_tokens") = true, nb::arg("threads") = 1,
           "encode over many texts with the GIL released, on `threads` threads (0: all cores).")
      .def("token_to_id", &Tokenizer::token_to_id, nb::arg("token"),
           "The id of a token as tokenizer.json spells it (added tokens included), or None.")
      .def_prop_ro("vocab_size", &Tokenizer::vocab_size, "One past the largest id.")
      .def_prop_ro_static(
          "unicode_version", [](nb::handle) { return std::string(Tokenizer::unicode_version()); },
          "The Unicode version of the tokenizer's character tables (the building Python's unicodedata).");

  m.def("unicode_version", [] { return std::string(text::unicode_version()); },
        "The Unicode version of the \\w and whitespace tables built in (the building Python's unicodedata).");

  m.def("plan", &py_plan,
        nb::sig("def plan(items: collections.abc.Sequence[collections.abc.Sequence[int] | None], "
                "bounds: collections.abc.Sequence[int], pad_id: int | None, share: bool, max_batch_tokens: int, "
                "max_batch_size: int) -> tuple[list[list[int]], list[int], list[int], "
                "list[list[tuple[int, list[int]]]]]"),
        nb::arg("items"), nb::arg("bounds"), nb::arg("pad_id").none(), nb::arg("share"),
        nb::arg("max_batch_tokens"), nb::arg("max_batch_size"),
        "codescaler.plan.plan(items, bounds, pad_id, packed=True, ...) planned by the C++ planner the C++ "
        "scorer uses, with the GIL released. Returns (seqs, pools, slot, packs), packs as lists of "
        "(prefix, members) tuples.");

  m.def("findall_codescaler", &py_findall_codescaler,
        nb::sig("def findall_codescaler(text: str) -> list[tuple[str, str]]"), nb::arg("text"),
        "The (tag, body) pairs re.findall(FENCE, text) returns, found by the C++ scanner.");

  m.def("scan_tolerant", &py_scan_tolerant, nb::sig("def scan_tolerant(text: str) -> list[tuple[str, str, bool]]"),
        nb::arg("text"), "The (tag, body, closed) blocks a Markdown-tolerant reader finds.");

  m.def("strip", &py_strip, nb::sig("def strip(text: str) -> str"), nb::arg("text"),
        "str.strip() as the C++ core computes it.");

  m.def("check_syntax", &py_check_syntax,
        nb::sig("def check_syntax(code: str, language: str, parse_budget_steps: int = codescaler._native.PARSE_BUDGET_STEPS) "
                "-> codescaler._native.Extraction"),
        nb::arg("code"), nb::arg("language"), nb::arg("parse_budget_steps") = kDefaultParseBudgetSteps,
        "The C++ verdict on `code` alone (Python: the ast.parse check; other languages: tree-sitter), as "
        "an extract_batch result whose block is the whole of `code`.");
}
