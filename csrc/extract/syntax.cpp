#include "codescaler/syntax.hpp"

#include <tree_sitter/api.h>

#include <algorithm>
#include <string>

#include "python_syntax.hpp"

extern "C" {
const TSLanguage* tree_sitter_cpp(void);
const TSLanguage* tree_sitter_java(void);
const TSLanguage* tree_sitter_javascript(void);
const TSLanguage* tree_sitter_go(void);
const TSLanguage* tree_sitter_rust(void);
}

namespace codescaler {
namespace {

const TSLanguage* ts_language(Language language) {
  switch (language) {
    case Language::python: return nullptr;  // python::check decides Python, as CPython would
    case Language::cpp: return tree_sitter_cpp();
    case Language::java: return tree_sitter_java();
    case Language::javascript: return tree_sitter_javascript();
    case Language::go: return tree_sitter_go();
    case Language::rust: return tree_sitter_rust();
  }
  return nullptr;
}

// tree-sitter calls the progress callback once per kStepsPerCallback parse actions (its
// OP_COUNT_PER_PARSER_CALLBACK_CHECK), so counting calls counts work, the same on every run.
constexpr std::uint64_t kStepsPerCallback = 100;

struct StepBudget {
  std::uint64_t limit;
  std::uint64_t used = 0;
};

bool out_of_steps(TSParseState* state) {
  auto* budget = static_cast<StepBudget*>(state->payload);
  budget->used += kStepsPerCallback;
  return budget->used > budget->limit;
}

// Counts ERROR and MISSING nodes, descending only into subtrees that hold an error, and records the
// first one in document order.
void count_errors(TSNode root, SyntaxReport& report) {
  TSTreeCursor cursor = ts_tree_cursor_new(root);
  bool first = true;
  while (true) {
    const TSNode node = ts_tree_cursor_current_node(&cursor);
    const bool is_error = ts_node_is_error(node), is_missing = ts_node_is_missing(node);
    if (is_error || is_missing) {
      if (is_error) ++report.n_error_nodes;
      if (is_missing) ++report.n_missing_nodes;
      if (first) {
        first = false;
        const TSPoint p = ts_node_start_point(node);
        report.error_line = p.row + 1;
        report.error_column = p.column + 1;
        report.error_offset = ts_node_start_byte(node);
      }
    }
    if (ts_node_has_error(node) && ts_tree_cursor_goto_first_child(&cursor)) continue;
    while (!ts_tree_cursor_goto_next_sibling(&cursor)) {
      if (!ts_tree_cursor_goto_parent(&cursor)) {
        ts_tree_cursor_delete(&cursor);
        return;
      }
    }
  }
}

}  // namespace

std::optional<Language> language_from_tag(std::string_view tag) {
  std::string t(tag);
  for (auto& c : t)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  if (t == "python" || t == "py" || t == "python3" || t == "py3" || t == "python2") return Language::python;
  if (t == "cpp" || t == "c++" || t == "cxx" || t == "cc" || t == "hpp" || t == "h++") return Language::cpp;
  if (t == "java") return Language::java;
  if (t == "javascript" || t == "js" || t == "node" || t == "nodejs" || t == "jsx" || t == "mjs")
    return Language::javascript;
  if (t == "go" || t == "golang") return Language::go;
  if (t == "rust" || t == "rs") return Language::rust;
  return std::nullopt;
}

const char* language_name(Language language) {
  switch (language) {
    case Language::python: return "python";
    case Language::cpp: return "cpp";
    case Language::java: return "java";
    case Language::javascript: return "javascript";
    case Language::go: return "go";
    case Language::rust: return "rust";
  }
  return "?";
}

struct SyntaxChecker::Impl {
  TSParser* parser = ts_parser_new();
  ~Impl() { ts_parser_delete(parser); }
};

SyntaxChecker::SyntaxChecker() : impl_(std::make_unique<Impl>()) {}
SyntaxChecker::~SyntaxChecker() = default;

SyntaxReport SyntaxChecker::check(std::string_view code, Language language, std::uint64_t budget_steps) {
  if (language == Language::python) return python::check(code, budget_steps);
  SyntaxReport report;
  TSParser* parser = impl_->parser;
  ts_parser_set_language(parser, ts_language(language));
  struct Source {
    std::string_view code;
  } source{code};
  TSInput input{};
  input.payload = &source;
  input.encoding = TSInputEncodingUTF8;
  input.read = [](void* payload, uint32_t byte, TSPoint, uint32_t* bytes_read) -> const char* {
    const auto* src = static_cast<const Source*>(payload);
    if (byte >= src->code.size()) {
      *bytes_read = 0;
      return "";
    }
    *bytes_read = static_cast<uint32_t>(std::min<std::size_t>(src->code.size() - byte, 1 << 16));
    return src->code.data() + byte;
  };
  StepBudget budget{budget_steps};
  TSParseOptions options{};
  options.payload = &budget;
  options.progress_callback = out_of_steps;
  if (code.size() > UINT32_MAX / 2) {  // tree-sitter offsets are 32-bit
    report.timed_out = true;
    return report;
  }
  TSTree* tree = ts_parser_parse_with_options(parser, nullptr, input, options);
  report.steps = budget.used;
  if (!tree) {
    ts_parser_reset(parser);  // otherwise the next parse would resume this one
    report.timed_out = true;
    return report;
  }
  const TSNode root = ts_tree_root_node(tree);
  report.valid = !ts_node_has_error(root);
  if (!report.valid) count_errors(root, report);
  ts_tree_delete(tree);
  return report;
}

}  // namespace codescaler
