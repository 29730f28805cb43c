// What the two extension modules share at the Python boundary: UTF-8 views of Python strings, the policy
// and language names, and the Extraction type both return. Offsets are UTF-8 bytes inside the core and code
// points here.
#pragma once

#include <nanobind/nanobind.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "codescaler/extract.hpp"

// A named namespace, not an anonymous one: codescaler._native registers Extraction and
// codescaler._native_testing returns it, and nanobind matches the two modules' C++ type by its name.
namespace codescaler::python {

namespace nb = nanobind;

inline Policy parse_policy(const std::string& name) {
  if (auto p = policy_from_name(name)) return *p;
  throw nb::value_error(("unknown policy '" + name + "'; known: codescaler, last, best").c_str());
}

inline Language parse_language(const std::string& name) {
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

inline nb::object decode(std::string_view text, std::size_t begin, std::size_t end) {
  nb::object s = nb::steal(PyUnicode_DecodeUTF8(text.data() + begin, static_cast<Py_ssize_t>(end - begin),
                                                "surrogatepass"));
  if (!s.is_valid()) throw nb::python_error();
  return s;
}

// Code points in text[0, byte_offset). A Python string's UTF-8 ("surrogatepass" included) is well formed,
// so they are the bytes that do not continue a sequence (10xxxxxx).
inline std::size_t code_points(std::string_view text, bool ascii, std::size_t byte_offset) {
  if (ascii) return byte_offset;
  std::size_t n = 0;
  for (std::size_t i = 0; i < byte_offset; ++i) n += (static_cast<unsigned char>(text[i]) & 0xC0) != 0x80;
  return n;
}

// One response's extraction as Python reads it (codescaler._native.Extraction): the selected, stripped code
// (also for syntax_error) and its place in the response in code points.
struct Extraction {
  nb::str status;
  std::uint32_t n_blocks = 0;
  std::optional<nb::str> tag;  // None: no block, or a block without a tag
  nb::str code{""};
  std::size_t code_start = 0, code_end = 0;
  std::uint32_t n_error_nodes = 0, n_missing_nodes = 0;
  std::optional<std::size_t> error_line, error_column;  // 1-based, code points; where the C++ check stopped
};

inline Extraction to_python(std::string_view text, bool ascii, const codescaler::Extraction& e) {
  Extraction out;
  out.status = nb::str(status_name(e.status));
  out.n_blocks = e.n_blocks;
  if (e.has_block()) {
    if (e.tag_end > e.tag_begin) out.tag = nb::borrow<nb::str>(decode(text, e.tag_begin, e.tag_end));
    out.code = nb::borrow<nb::str>(decode(text, e.code_begin, e.code_end));
    out.code_start = code_points(text, ascii, e.code_begin);
    out.code_end = out.code_start + static_cast<std::size_t>(PyUnicode_GET_LENGTH(out.code.ptr()));
  }
  out.n_error_nodes = e.syntax.n_error_nodes;
  out.n_missing_nodes = e.syntax.n_missing_nodes;
  if (!e.syntax.valid && e.syntax.error_line) {
    out.error_line = e.syntax.error_line;
    const std::string_view code_text = e.code(text);
    const std::size_t line_start = e.syntax.error_offset - (e.syntax.error_column - 1);
    out.error_column = 1 + code_points(code_text.substr(line_start), ascii, e.syntax.error_column - 1);
  }
  return out;
}

}  // namespace codescaler::python
