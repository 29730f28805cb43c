// The only file that includes nanobind: argument conversion and GIL handling around the C++ core.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include "codescaler/fence.hpp"

namespace nb = nanobind;

NB_MODULE(_native, m) {
  m.doc() = "codescaler native core: fence scanning and syntax validation.";
  m.def(
      "scan_codescaler",
      [](std::string_view text) {
        std::vector<codescaler::Block> blocks;
        {
          nb::gil_scoped_release release;
          blocks = codescaler::scan_codescaler(text);
        }
        std::vector<std::tuple<std::size_t, std::size_t, std::size_t, std::size_t>> out;
        out.reserve(blocks.size());
        for (const auto& b : blocks) out.emplace_back(b.tag_begin, b.tag_end, b.code_begin, b.code_end);
        return out;
      },
      nb::arg("text"),
      "Byte offsets (tag_begin, tag_end, code_begin, code_end) of the blocks the CodeScaler pattern finds.");
}
