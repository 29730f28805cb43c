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
// JSON is read and written as Python's json reads and writes it (codescaler/json.hpp's python
// dialect), so each id comes back as `codescaler score` echoes it: integers of any size digit for digit,
// floats as Python's repr, the last of repeated keys. "id" is null when the line is not a JSON object.
// Text that is not valid Unicode (a lone surrogate escape such as "\ud800") in the question, the
// response or the id is never scored (input_error), and an id holding it is never echoed ("id": null).
#include <codescaler/json.hpp>
#include <codescaler/scorer.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace {

namespace json = codescaler::json;

// Python's json recurses once per level and gives up near its recursion limit (1000 frames).
constexpr int kMaxDepth = 1000;

// The Python type json.loads makes of `v`, as `codescaler score` names it in its messages.
const char* python_type(const json::Value& v) {
  switch (v.type) {
    case json::Type::null: return "NoneType";
    case json::Type::boolean: return "bool";
    case json::Type::number: return v.is_integer() ? "int" : "float";
    case json::Type::string: return "str";
    case json::Type::array: return "list";
    case json::Type::object: return "dict";
  }
  return "?";
}

// True when every string and key in `v` is valid Unicode (no lone surrogate escape).
bool valid_unicode(const json::Value& v) {
  if (v.is_string()) return json::first_invalid_utf8(v.string) == std::string::npos;
  for (const json::Value& item : v.array)
    if (!valid_unicode(item)) return false;
  for (const auto& [key, value] : v.object)
    if (json::first_invalid_utf8(key) != std::string::npos || !valid_unicode(value)) return false;
  return true;
}

// Python's `not line.strip()`: empty or only str.isspace() characters (well-formed UTF-8 `text`).
bool blank(std::string_view text) {
  const auto [begin, end] = codescaler::strip_range(text, 0, text.size());
  return begin == end;
}

// Characters (code points) in the well-formed UTF-8 `text`: its bytes that are not continuation bytes.
std::size_t characters(std::string_view text) {
  std::size_t n = 0;
  for (const char c : text) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

struct Line {
  json::Value record;
  std::string id = "null";  // the id as `codescaler score` writes it
  std::string error;        // empty: scorable
};

Line parse_line(std::size_t n, std::string raw) {
  Line line;
  if (n == 1 && raw.rfind("\xef\xbb\xbf", 0) == 0) raw.erase(0, 3);
  const std::string where = "line " + std::to_string(n) + ": ";
  if (const std::size_t bad = json::first_invalid_utf8(raw); bad != std::string::npos) {
    char byte[8];
    std::snprintf(byte, sizeof byte, "0x%02x", static_cast<unsigned char>(raw[bad]));
    line.error = where + "not valid UTF-8 (byte " + byte + " at byte " + std::to_string(bad + 1) + ")";
    return line;
  }
  if (blank(raw)) {
    line.error = where + "blank line";
    return line;
  }
  if (const std::string problem = json::parse(raw, line.record, {kMaxDepth, /*python=*/true}); !problem.empty()) {
    line.record = json::Value();  // a half-read line echoes nothing of itself
    line.error = where + "invalid JSON (" + problem + ")";
    return line;
  }
  if (!line.record.is_object()) {
    line.error = where + "expected a JSON object, got " + python_type(line.record);
    return line;
  }
  const json::Value* id = line.record.find("id");
  const bool id_valid = !id || valid_unicode(*id);
  if (id && id_valid) {
    line.id.clear();
    json::dump(line.id, *id);
  }
  for (const char* field : {"question", "response"}) {
    const json::Value* v = line.record.find(field);
    if (!v || !v->is_string()) {
      line.error = where + "field '" + field + "' must be a string (" + (v ? python_type(*v) : "missing") + ")";
      return line;
    }
  }
  // Text that is not valid Unicode is never scored; this line fails, not its chunk.
  for (const char* field : {"question", "response"}) {
    const std::string& text = line.record.find(field)->string;
    if (const std::size_t bad = json::first_invalid_utf8(text); bad != std::string::npos) {
      line.error = where + "field '" + field + "' is not valid Unicode (lone surrogate at character " +
                   std::to_string(characters(text.substr(0, bad))) + ")";
      return line;
    }
  }
  if (!id_valid) line.error = where + "field 'id' is not valid Unicode (a lone surrogate)";
  return line;
}

std::string output(const Line& line, const codescaler::Reward* r, const std::string& chunk_error) {
  std::string out = "{\"id\": " + line.id + ", ";
  const std::string& error = !line.error.empty() ? line.error : chunk_error;
  if (!error.empty() || !r) {
    out += "\"reward\": null, \"raw_score\": null, \"status\": \"input_error\", \"error\": ";
    json::dump_string(out, error);
    return out + "}";
  }
  if (r->item != codescaler::ScorerCode::ok) {
    out += "\"reward\": null, \"raw_score\": null, \"status\": \"";
    out += codescaler::scorer_code_name(r->item);
    out += "\", \"error\": ";
    json::dump_string(out, r->message);
    return out + "}";
  }
  out += "\"reward\": ";
  json::dump_float(out, r->reward);
  out += ", \"raw_score\": ";
  if (r->has_raw_score) json::dump_float(out, r->raw_score);
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
