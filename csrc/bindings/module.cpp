// The only file that includes nanobind: argument conversion and GIL handling around the C++ core.
// Offsets are UTF-8 bytes inside the core and code points here, at the Python boundary.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "codescaler/extract.hpp"
#include "codescaler/tokenizer.hpp"
#include "../extract/text.hpp"
#include "../scorer/plan.hpp"

namespace nb = nanobind;
using namespace codescaler;

namespace {

Policy parse_policy(const std::string& name) {
  if (auto p = policy_from_name(name)) return *p;
  throw nb::value_error(("unknown policy '" + name + "'; known: codescaler, last, best").c_str());
}

Language parse_language(const std::string& name) {
  if (auto l = language_from_tag(name); l && name == language_name(*l)) return *l;
  throw nb::value_error(
      ("unknown language '" + name + "'; known: python, cpp, java, javascript, go, rust").c_str());
}

// UTF-8 views of Python strings. CPython caches a str's UTF-8 form, so this copies nothing for ASCII text
// and once for other text; strings holding lone surrogates (valid str, invalid UTF-8) are encoded with
// "surrogatepass", which the core decodes back to the same code points.
struct Utf8Texts {
  std::vector<std::string_view> views;
  std::vector<bool> ascii;
  std::vector<nb::object> keep_alive;

  void add(PyObject* obj, Py_ssize_t index) {
    if (!PyUnicode_Check(obj))
      throw nb::type_error(("response " + std::to_string(index) + " must be str, got " +
                            Py_TYPE(obj)->tp_name).c_str());
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(obj, &size);
    if (!data) {
      PyErr_Clear();
      nb::object bytes = nb::steal(PyUnicode_AsEncodedString(obj, "utf-8", "surrogatepass"));
      if (!bytes.is_valid()) throw nb::python_error();
      data = PyBytes_AS_STRING(bytes.ptr());
      size = PyBytes_GET_SIZE(bytes.ptr());
      keep_alive.push_back(std::move(bytes));
    }
    views.emplace_back(data, static_cast<std::size_t>(size));
    ascii.push_back(PyUnicode_IS_ASCII(obj));
  }
};

nb::object decode(std::string_view text, std::size_t begin, std::size_t end) {
  nb::object s = nb::steal(PyUnicode_DecodeUTF8(text.data() + begin, static_cast<Py_ssize_t>(end - begin),
                                                "surrogatepass"));
  if (!s.is_valid()) throw nb::python_error();
  return s;
}

std::size_t to_code_points(std::string_view text, bool ascii, std::size_t byte_offset) {
  return ascii ? byte_offset : text::code_points(text, byte_offset);
}

// (status, n_blocks, tag, code, code_start, code_end, n_error_nodes, n_missing_nodes, error_line,
//  error_column); code is the selected, stripped block (also for syntax_error), offsets in code points.
nb::tuple to_python(std::string_view text, bool ascii, const Extraction& e) {
  nb::object tag = nb::none(), code = nb::str("");
  std::size_t start = 0, end = 0;
  if (e.has_block()) {
    if (e.tag_end > e.tag_begin) tag = decode(text, e.tag_begin, e.tag_end);
    code = decode(text, e.code_begin, e.code_end);
    start = to_code_points(text, ascii, e.code_begin);
    end = start + to_code_points(e.code(text), ascii, e.code_end - e.code_begin);
  }
  nb::object line = nb::none(), column = nb::none();
  if (!e.syntax.valid && e.syntax.error_line) {
    line = nb::int_(e.syntax.error_line);
    const std::string_view code_text = e.code(text);
    const std::size_t line_start = e.syntax.error_offset - (e.syntax.error_column - 1);
    column = nb::int_(1 + to_code_points(code_text.substr(line_start), ascii, e.syntax.error_column - 1));
  }
  return nb::make_tuple(status_name(e.status), e.n_blocks, tag, code, start, end, e.syntax.n_error_nodes,
                        e.syntax.n_missing_nodes, line, column);
}

nb::list py_extract_batch(nb::handle responses, const std::string& policy, const std::string& language,
                       unsigned threads, bool validate, std::uint64_t parse_budget_steps) {
  Options options;
  options.policy = parse_policy(policy);
  options.language = parse_language(language);
  options.validate = validate;
  options.parse_budget_steps = parse_budget_steps;
  // A tuple holds a reference to every response while the GIL is released: another thread may mutate
  // the caller's list meanwhile, and the views below point into the strings.
  nb::object seq = nb::steal(PySequence_Tuple(responses.ptr()));
  if (!seq.is_valid()) throw nb::python_error();
  const Py_ssize_t n = PyTuple_GET_SIZE(seq.ptr());
  Utf8Texts texts;
  texts.views.reserve(static_cast<std::size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) texts.add(PyTuple_GET_ITEM(seq.ptr(), i), i);
  std::vector<Extraction> results;
  {
    nb::gil_scoped_release release;
    results = codescaler::extract_batch(texts.views, options, threads);
  }
  nb::list out;
  for (std::size_t i = 0; i < results.size(); ++i)
    out.append(to_python(texts.views[i], texts.ascii[i], results[i]));
  return out;
}

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

nb::list py_encode_batch(const Tokenizer& tokenizer, nb::handle texts, bool add_special_tokens,
                         unsigned threads) {
  nb::object seq = nb::steal(PySequence_Tuple(texts.ptr()));  // keeps the strings alive, see extract_batch
  if (!seq.is_valid()) throw nb::python_error();
  const Py_ssize_t n = PyTuple_GET_SIZE(seq.ptr());
  Utf8Texts t;
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

}  // namespace

NB_MODULE(_native, m) {
  m.doc() = "codescaler native core: fence scanning, block selection and syntax validation (Python as "
            "CPython's ast.parse decides it, other languages with tree-sitter).";
  m.attr("LANGUAGES") = nb::make_tuple("python", "cpp", "java", "javascript", "go", "rust");
  m.attr("POLICIES") = nb::make_tuple("codescaler", "last", "best");
  m.attr("PARSE_BUDGET_STEPS") = kDefaultParseBudgetSteps;
  m.attr("MAX_CODE_BYTES") = kMaxCodeBytes;

  nb::class_<Tokenizer>(m, "Tokenizer",
                        "A Hugging Face tokenizer.json (byte-level BPE) read and run by the C++ core.")
      .def_static("open", &open_tokenizer, nb::arg("path"),
                  "Reads `path`; raises ValueError naming what is unsupported or malformed.")
      .def(
          "encode",
          [](const Tokenizer& tokenizer, nb::handle text, bool add_special_tokens) {
            Utf8Texts t;
            t.add(text.ptr(), 0);
            std::vector<std::int32_t> ids;
            TokenizerStatus status;
            {
              nb::gil_scoped_release release;
              status = tokenizer.encode(t.views[0], &ids, add_special_tokens);
            }
            if (!status.ok()) throw nb::value_error(status.message.c_str());
            return id_list(ids);
          },
          nb::sig("def encode(self, text: str, add_special_tokens: bool = True) -> list[int]"),
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

  m.def("extract_batch", &py_extract_batch,
        nb::sig("def extract_batch(responses: collections.abc.Sequence[str], policy: str = 'codescaler', "
                "language: str = 'python', threads: int = 1, validate: bool = True, "
                "parse_budget_steps: int = PARSE_BUDGET_STEPS) -> list[tuple[str, int, str | None, str, int, int, int, int, int | None, int | None]]"),
        nb::arg("responses"), nb::arg("policy") = "codescaler",
        nb::arg("language") = "python", nb::arg("threads") = 1, nb::arg("validate") = true,
        nb::arg("parse_budget_steps") = kDefaultParseBudgetSteps,
        "Extracts from each response with the GIL released, over `threads` threads (0: all cores). Returns "
        "one tuple (status, n_blocks, tag, code, code_start, code_end, n_error_nodes, n_missing_nodes, "
        "error_line, error_column) per response, in input order; offsets and columns in code points. "
        "Validation spends at most `parse_budget_steps` parser steps per response (status timeout past them); "
        "selected code over MAX_CODE_BYTES UTF-8 bytes is status code_too_long, validate or not.");

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

  m.def(
      "findall_codescaler",
      [](nb::handle text) {
        Utf8Texts t;
        t.add(text.ptr(), 0);
        std::vector<Block> blocks;
        {
          nb::gil_scoped_release release;
          blocks = scan_codescaler(t.views[0]);
        }
        nb::list out;
        for (const Block& b : blocks)
          out.append(nb::make_tuple(decode(t.views[0], b.tag_begin, b.tag_end),
                                    decode(t.views[0], b.code_begin, b.code_end)));
        return out;
      },
      nb::sig("def findall_codescaler(text: str) -> list[tuple[str, str]]"), nb::arg("text"),
      "The (tag, body) pairs re.findall(FENCE, text) returns, found by the C++ scanner.");

  m.def(
      "scan_tolerant",
      [](nb::handle text) {
        Utf8Texts t;
        t.add(text.ptr(), 0);
        nb::list out;
        for (const Block& b : scan_tolerant(t.views[0]))
          out.append(nb::make_tuple(decode(t.views[0], b.tag_begin, b.tag_end),
                                    decode(t.views[0], b.code_begin, b.code_end), b.closed));
        return out;
      },
      nb::sig("def scan_tolerant(text: str) -> list[tuple[str, str, bool]]"), nb::arg("text"),
      "The (tag, body, closed) blocks a Markdown-tolerant reader finds.");

  m.def(
      "strip",
      [](nb::handle text) {
        Utf8Texts t;
        t.add(text.ptr(), 0);
        const auto [b, e] = strip_range(t.views[0], 0, t.views[0].size());
        return decode(t.views[0], b, e);
      },
      nb::sig("def strip(text: str) -> str"), nb::arg("text"), "str.strip() as the C++ core computes it.");

  m.def(
      "check_syntax",
      [](nb::handle code, const std::string& language, std::uint64_t parse_budget_steps) {
        Utf8Texts t;
        t.add(code.ptr(), 0);
        const Language lang = parse_language(language);
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
        return to_python(t.views[0], t.ascii[0], e);
      },
      nb::sig("def check_syntax(code: str, language: str, parse_budget_steps: int = PARSE_BUDGET_STEPS) -> tuple[str, int, str | None, str, int, int, int, int, int | None, int | None]"),
      nb::arg("code"), nb::arg("language"), nb::arg("parse_budget_steps") = kDefaultParseBudgetSteps,
      "The C++ verdict on `code` alone (Python: the ast.parse check; other languages: tree-sitter), as an "
      "extract_batch tuple.");
}
