// Scoring JSON Lines with the C++ scorer alone (no Python in the process):
//
//   score_example ENGINE_DIR [INPUT.jsonl] [--threads N] [--chunk N] > rewards.jsonl
//
// Input and output follow `codescaler score`: one object per line with string fields "question" and
// "response" ("id" is echoed); exactly one output line per input line, in input order:
//   {"id": ..., "reward": float, "raw_score": float|null, "status": "ok"|"no_block"|..., "truncated": bool}
// A line that cannot be scored gets {"id": ..., "reward": null, ..., "status": "input_error", "error": "line N: ..."};
// a pair the chat template cannot render exactly gets status "unsupported" and the reason.
// Lines are scored in chunks (default 256), so a GRPO group in consecutive lines shares its question.
// JSON is read with the project's own small reader (csrc/tokenizer/json.hpp).
#include <codescaler/scorer.hpp>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "../tokenizer/json.hpp"
#include "../tokenizer/unicode.hpp"

namespace {

void write_string(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

void write_number(std::string& out, double x) {
  if (!std::isfinite(x)) {
    out += "null";
    return;
  }
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, x);  // shortest text that reads back as x
  out.append(buf, r.ptr);
}

void write_value(std::string& out, const codescaler::json::Value& v) {
  using codescaler::json::Type;
  switch (v.type) {
    case Type::null: out += "null"; break;
    case Type::boolean: out += v.boolean ? "true" : "false"; break;
    case Type::number: write_number(out, v.number); break;
    case Type::string: write_string(out, v.string); break;
    case Type::array:
      out += '[';
      for (std::size_t i = 0; i < v.array.size(); ++i) {
        if (i) out += ", ";
        write_value(out, v.array[i]);
      }
      out += ']';
      break;
    case Type::object:
      out += '{';
      for (std::size_t i = 0; i < v.object.size(); ++i) {
        if (i) out += ", ";
        write_string(out, v.object[i].first);
        out += ": ";
        write_value(out, v.object[i].second);
      }
      out += '}';
      break;
  }
}

struct Line {
  codescaler::json::Value record;
  std::string error;  // empty: scorable
};

Line parse_line(std::size_t n, std::string raw) {
  Line line;
  if (n == 1 && raw.rfind("\xef\xbb\xbf", 0) == 0) raw.erase(0, 3);
  if (!raw.empty() && raw.back() == '\r') raw.pop_back();
  const std::string where = "line " + std::to_string(n) + ": ";
  if (const std::size_t bad = codescaler::unicode::first_invalid_utf8(raw); bad != std::string::npos) {
    line.error = where + "not valid UTF-8 (byte " + std::to_string(bad + 1) + ")";
    return line;
  }
  if (raw.find_first_not_of(" \t\r\n") == std::string::npos) {
    line.error = where + "blank line";
    return line;
  }
  const std::string problem = codescaler::json::parse(raw, line.record);
  if (!problem.empty()) {
    line.error = where + "invalid JSON (" + problem + ")";
    return line;
  }
  if (!line.record.is_object()) {
    line.error = where + "expected a JSON object";
    return line;
  }
  for (const char* field : {"question", "response"}) {
    const codescaler::json::Value* v = line.record.find(field);
    if (!v || !v->is_string()) {
      line.error = where + "field '" + field + "' must be a string (" + (v ? codescaler::json::type_name(v->type) : "missing") + ")";
      return line;
    }
    // A "\ud800" escape decodes to text that is not UTF-8: this line fails, not its chunk.
    if (const std::size_t bad = codescaler::unicode::first_invalid_utf8(v->string); bad != std::string::npos) {
      line.error = where + "field '" + field + "' is not valid Unicode (a lone surrogate escape)";
      return line;
    }
  }
  return line;
}

std::string output(const Line& line, const codescaler::Reward* r, const std::string& chunk_error) {
  std::string out = "{";
  if (const codescaler::json::Value* id = line.record.find("id")) {
    out += "\"id\": ";
    write_value(out, *id);
    out += ", ";
  }
  const std::string& error = !line.error.empty() ? line.error : chunk_error;
  if (!error.empty() || !r) {
    out += "\"reward\": null, \"raw_score\": null, \"status\": \"input_error\", \"error\": ";
    write_string(out, error);
    return out + "}";
  }
  if (r->item != codescaler::ScorerCode::ok) {
    out += "\"reward\": null, \"raw_score\": null, \"status\": \"unsupported\", \"error\": ";
    write_string(out, r->message);
    return out + "}";
  }
  out += "\"reward\": ";
  write_number(out, r->reward);
  out += ", \"raw_score\": ";
  if (r->has_raw_score) write_number(out, r->raw_score);
  else out += "null";
  out += ", \"status\": \"";
  out += codescaler::status_name(r->status);
  out += "\", \"truncated\": ";
  out += r->truncated ? "true" : "false";
  return out + "}";
}

}  // namespace

int main(int argc, char** argv) {
  std::string engine_dir, input;
  codescaler::ScorerOptions options;
  std::size_t chunk = 256;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--threads" || arg == "--chunk") && i + 1 < argc) {
      char* end = nullptr;
      const unsigned long v = std::strtoul(argv[++i], &end, 10);
      if (!end || *end != '\0') {
        std::cerr << "error: " << arg << " needs a number, got " << argv[i] << "\n";
        return 2;
      }
      if (arg == "--threads") options.threads = static_cast<unsigned>(v);
      else chunk = v ? v : 1;
    } else if (engine_dir.empty()) {
      engine_dir = arg;
    } else if (input.empty()) {
      input = arg;
    } else {
      std::cerr << "usage: score_example ENGINE_DIR [INPUT.jsonl] [--threads N] [--chunk N]\n";
      return 2;
    }
  }
  if (engine_dir.empty()) {
    std::cerr << "usage: score_example ENGINE_DIR [INPUT.jsonl] [--threads N] [--chunk N]\n";
    return 2;
  }
  std::ifstream file;
  if (!input.empty()) {
    file.open(input, std::ios::binary);
    if (!file) {
      std::cerr << "error: " << input << ": cannot open\n";
      return 2;
    }
  }
  std::istream& in = input.empty() ? std::cin : file;

  std::unique_ptr<codescaler::Scorer> scorer;
  const codescaler::ScorerStatus opened = codescaler::Scorer::open(engine_dir, options, &scorer);
  if (!opened.ok()) {
    std::cerr << "error (" << codescaler::scorer_code_name(opened.code) << "): " << opened.message << "\n";
    return 2;
  }
  std::cerr << "scoring with " << scorer->describe() << "\n";

  std::size_t n = 0, ok = 0, no_code = 0, errors = 0, truncated = 0;
  std::vector<Line> lines;
  auto flush = [&] {
    std::vector<std::string_view> qs, rs;
    std::vector<std::size_t> at;
    for (std::size_t i = 0; i < lines.size(); ++i)
      if (lines[i].error.empty()) {
        qs.push_back(lines[i].record.find("question")->string);
        rs.push_back(lines[i].record.find("response")->string);
        at.push_back(i);
      }
    std::vector<codescaler::Reward> rewards;
    const codescaler::ScorerStatus s = scorer->score_batch(qs, rs, &rewards);
    const std::string chunk_error = s.ok() ? "" : std::string(codescaler::scorer_code_name(s.code)) + ": " + s.message;
    std::string out;
    for (std::size_t i = 0, j = 0; i < lines.size(); ++i) {
      const codescaler::Reward* r = nullptr;
      if (j < at.size() && at[j] == i) r = s.ok() ? &rewards[j++] : (++j, nullptr);
      const bool failed = !lines[i].error.empty() || !s.ok() || (r && r->item != codescaler::ScorerCode::ok);
      errors += failed;
      if (!failed) {
        ok += r->status == codescaler::Status::ok;
        no_code += r->status != codescaler::Status::ok;
        truncated += r->truncated;
      }
      out += output(lines[i], r, lines[i].error.empty() ? chunk_error : "") + "\n";
    }
    std::cout << out << std::flush;
    lines.clear();
  };
  for (std::string raw; std::getline(in, raw);) {
    lines.push_back(parse_line(++n, std::move(raw)));
    if (lines.size() >= chunk) flush();
  }
  if (!lines.empty()) flush();
  std::cerr << n << " lines: " << ok << " scored, " << no_code << " without valid code, " << errors << " errors, "
            << truncated << " truncated\n";
  return 0;
}
