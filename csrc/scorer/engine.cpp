#include "engine.hpp"

#include <sys/stat.h>
#include <sys/utsname.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <new>
#include <set>
#include <sstream>

#include "codescaler/json.hpp"
#include "failure.hpp"

namespace codescaler::engine {

const std::string* Splice::refused_by(std::string_view question, std::string_view code) const {
  for (const std::string& s : refuse)
    if (question.find(s) != std::string_view::npos || code.find(s) != std::string_view::npos) return &s;
  return nullptr;
}

void Splice::join(std::string_view question, std::string_view code, std::string& out) const {
  if (!code_lstrip.empty()) {
    const std::size_t keep = code.find_first_not_of(code_lstrip);
    code = keep == std::string_view::npos ? std::string_view() : code.substr(keep);
  }
  out.clear();
  out.reserve(head.size() + question.size() + middle.size() + code.size() + tail.size());
  out.append(head).append(question).append(middle).append(code).append(tail);
}

void Splice::question_part(std::string_view question, std::string& out) const {
  out.clear();
  out.reserve(head.size() + question.size() + question_end);
  out.append(head).append(question).append(middle, 0, question_end);
}

namespace {

std::string shortest(double d) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", d);
  return text;
}

// Typed access to manifest fields; every message names the file and the field.
class Fields {
 public:
  explicit Fields(std::string where) : where_(std::move(where)) {}

  const json::Value& get(const json::Value& obj, const char* key, json::Type type, const std::string& path) const {
    const json::Value* v = obj.find(key);
    if (!v) fail(ScorerCode::bad_engine, where_ + ": field " + path + " is missing");
    if (v->type != type)
      fail(ScorerCode::bad_engine, where_ + ": field " + path + " is " + json::type_name(v->type) + ", expected " +
                                       json::type_name(type));
    return *v;
  }
  std::int64_t integer(const json::Value& obj, const char* key, const std::string& path, std::int64_t lo,
                       std::int64_t hi) const {
    const double d = get(obj, key, json::Type::number, path).number;
    if (!(d == std::floor(d)) || d < static_cast<double>(lo) || d > static_cast<double>(hi))
      fail(ScorerCode::bad_engine, where_ + ": field " + path + " is " + std::to_string(d) + ", expected an integer in [" +
                                       std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return static_cast<std::int64_t>(d);
  }
  const std::string& where() const { return where_; }

 private:
  std::string where_;
};

std::vector<std::string> cpu_flags() {
  std::ifstream info("/proc/cpuinfo");
  std::string line;
  std::vector<std::string> flags;
  while (std::getline(info, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos) break;
    std::istringstream words(line.substr(colon + 1));
    std::set<std::string> unique;
    for (std::string w; words >> w;)
      for (const char* p : {"avx", "amx", "fma", "f16c", "sse4"})
        if (w.rfind(p, 0) == 0) unique.insert(w);
    flags.assign(unique.begin(), unique.end());
    break;
  }
  return flags;
}

// Python's codescaler.engine.aoti.machine_key(), which the manifest records.
void check_machine(const json::Value& machine, const Fields& f, std::string_view torch_version) {
  std::vector<std::string> diff;
  const json::Value& torch = f.get(machine, "torch", json::Type::string, "machine.torch");
  const std::string there = torch.string.substr(0, torch.string.find('+'));
  if (there != torch_version) diff.push_back("torch: engine " + torch.string + ", here " + std::string(torch_version));
  struct utsname u {};
  const std::string arch = uname(&u) == 0 ? u.machine : "?";
  const std::string& m = f.get(machine, "machine", json::Type::string, "machine.machine").string;
  if (m != arch) diff.push_back("machine: engine " + m + ", here " + arch);
  std::vector<std::string> want;
  for (const json::Value& v : f.get(machine, "flags", json::Type::array, "machine.flags").array)
    if (v.is_string()) want.push_back(v.string);
  std::sort(want.begin(), want.end());
  const std::vector<std::string> here = cpu_flags();
  if (want != here) {
    std::string missing, extra;
    for (const auto& w : want)
      if (!std::binary_search(here.begin(), here.end(), w)) missing += " " + w;
    for (const auto& h : here)
      if (!std::binary_search(want.begin(), want.end(), h)) extra += " " + h;
    diff.push_back("CPU flags: engine has" + (missing.empty() ? std::string(" no others") : missing) +
                   " that this CPU lacks; this CPU has" + (extra.empty() ? std::string(" no others") : extra));
  }
  const std::int64_t blocks = f.integer(machine, "blocks", "machine.blocks", 0, 1 << 20);
  if (blocks != kBlocksVersion)
    diff.push_back("blocks version: engine " + std::to_string(blocks) + ", this scorer " + std::to_string(kBlocksVersion));
  if (!diff.empty()) {
    std::string joined;
    for (const auto& d : diff) joined += (joined.empty() ? "" : "; ") + d;
    fail(ScorerCode::unsupported, f.where() + ": compiled for another machine (" + joined +
                                      "); re-export it here with codescaler export --format aoti");
  }
}

Arch read_arch(const std::string& text, const Fields& f) {
  json::Value v;
  const std::string problem = json::parse(text, v);
  if (!problem.empty() || !v.is_object()) fail(ScorerCode::bad_engine, f.where() + ": field arch is not a JSON object " + problem);
  Arch a;
  const std::int64_t big = std::int64_t{1} << 24;
  a.hidden = f.integer(v, "hidden", "arch.hidden", 1, big);
  a.intermediate = f.integer(v, "intermediate", "arch.intermediate", 1, big);
  a.heads = f.integer(v, "heads", "arch.heads", 1, 4096);
  a.kv_heads = f.integer(v, "kv_heads", "arch.kv_heads", 1, 4096);
  a.head_dim = f.integer(v, "head_dim", "arch.head_dim", 2, 4096);
  a.eps = f.get(v, "eps", json::Type::number, "arch.eps").number;
  if (!(a.eps > 0 && a.eps < 1))  // rsqrt(variance + eps) of the score head: NaN scores otherwise
    fail(ScorerCode::bad_engine, f.where() + ": arch.eps is " + shortest(a.eps) + ", expected a number in (0, 1)");
  a.qk_norm = f.get(v, "qk_norm", json::Type::boolean, "arch.qk_norm").boolean;
  a.qkv_bias = f.get(v, "qkv_bias", json::Type::boolean, "arch.qkv_bias").boolean;
  a.dtype = f.get(v, "dtype", json::Type::string, "arch.dtype").string;
  if (a.heads % a.kv_heads != 0)
    fail(ScorerCode::bad_engine, f.where() + ": arch.heads is not a multiple of arch.kv_heads");
  if (a.dtype != "float32" && a.dtype != "bfloat16" && a.dtype != "float16")
    fail(ScorerCode::unsupported, f.where() + ": dtype " + a.dtype + " is not float32, bfloat16 or float16");
  return a;
}

Splice read_splice(const json::Value& m, const Fields& f) {
  const json::Value* t = m.find("template");
  if (!t || t->is_null()) {
    const json::Value* why = m.find("template_reason");
    std::string reason = why && why->is_string() ? why->string
                                                 : "the export recorded no splice of the chat template (an older export?)";
    fail(ScorerCode::unsupported, f.where() + ": the chat template cannot be reproduced without Jinja (" + reason +
                                      "); this engine runs in Python only");
  }
  if (!t->is_object()) fail(ScorerCode::bad_engine, f.where() + ": field template is not an object");
  Splice s;
  s.head = f.get(*t, "head", json::Type::string, "template.head").string;
  s.middle = f.get(*t, "middle", json::Type::string, "template.middle").string;
  s.tail = f.get(*t, "tail", json::Type::string, "template.tail").string;
  if (const json::Value* c = t->find("code_lstrip"); c && !c->is_null())
    s.code_lstrip = f.get(*t, "code_lstrip", json::Type::string, "template.code_lstrip").string;
  if (const json::Value* r = t->find("refuse"); r && !r->is_null()) {
    for (const json::Value& v : f.get(*t, "refuse", json::Type::array, "template.refuse").array) {
      if (!v.is_string() || v.string.empty()) fail(ScorerCode::bad_engine, f.where() + ": template.refuse holds a non-string or empty entry");
      s.refuse.push_back(v.string);
    }
  }
  return s;
}

void check_probes(const json::Value& tok, const Tokenizer& tokenizer, const Fields& f, const std::string& path) {
  const json::Value* probes = tok.find("probes");
  if (!probes || !probes->is_object()) return;
  std::vector<std::int32_t> ids;
  for (const auto& [text, want] : probes->object) {
    const TokenizerStatus st = tokenizer.encode(text, &ids, true);
    bool same = st.ok() && want.is_array() && want.array.size() == ids.size();
    for (std::size_t i = 0; same && i < ids.size(); ++i) same = want.array[i].is_number() && want.array[i].number == ids[i];
    if (!same)
      fail(ScorerCode::bad_engine, path + ": does not encode the manifest's probe text as recorded (" +
                                       (st.ok() ? std::to_string(ids.size()) + " ids" : st.message) + "); " + f.where() +
                                       " and tokenizer.json are from different exports");
  }
}

// Lexical JSON scanning, for one member of a large file: `at` moves past the string or value starting
// there. Tokenizer::open has parsed the same file in full, so the text is well-formed.
void skip_string(std::string_view text, std::size_t& at) {
  for (++at; at < text.size() && text[at] != '"'; ++at)
    if (text[at] == '\\') ++at;
  ++at;
}

void skip_value(std::string_view text, std::size_t& at) {
  if (at < text.size() && text[at] == '"') return skip_string(text, at);
  int depth = 0;
  for (; at < text.size(); ++at) {
    const char c = text[at];
    if (c == '"') {
      skip_string(text, at);
      --at;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (depth == 0) return;
      if (--depth == 0) {
        ++at;
        return;
      }
    } else if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
      return;
    }
  }
}

// The text of the top-level member `key` of the JSON object `text` (the last, if repeated, as json::Value
// finds it), or empty. Only that member is parsed afterwards: tokenizer.json's vocabulary and merges
// (tens of MB) are skipped, not parsed a second time.
std::string_view member_text(std::string_view text, std::string_view key) {
  auto blank = [&](std::size_t& at) {
    while (at < text.size() && (text[at] == ' ' || text[at] == '\t' || text[at] == '\n' || text[at] == '\r')) ++at;
  };
  std::size_t at = 0;
  blank(at);
  if (at >= text.size() || text[at] != '{') return {};
  ++at;
  std::string_view found;
  while (true) {
    blank(at);
    if (at >= text.size() || text[at] != '"') return found;
    const std::size_t name = at;
    skip_string(text, at);
    json::Value decoded;  // the member's name, escapes and all
    const bool match = json::parse(text.substr(name, at - name), decoded).empty() && decoded.string == key;
    blank(at);
    if (at >= text.size() || text[at] != ':') return found;
    ++at;
    blank(at);
    const std::size_t value = at;
    skip_value(text, at);
    if (match) found = text.substr(value, at - value);
    blank(at);
    if (at >= text.size() || text[at] != ',') return found;
    ++at;
  }
}

// Python's encode._added_token_ends, last end only: the end in `middle` of the last occurrence of any of
// tokenizer.json's added tokens (special or not), or npos. Python tries earlier ends only for text Jinja
// rendered; every pair scored here is rendered by the splice, which the last end always matches.
std::size_t last_added_token_end(const std::string& middle, const std::string& tokenizer_json, const std::string& path) {
  json::Value added;
  std::size_t last = std::string::npos;
  const std::string_view text = member_text(tokenizer_json, "added_tokens");
  if (text.empty()) return last;
  const std::string problem = json::parse(text, added);
  if (!problem.empty()) fail(ScorerCode::bad_engine, path + ": added_tokens is not valid JSON (" + problem + ")");
  if (!added.is_array()) return last;
  for (const json::Value& t : added.array) {
    const json::Value* content = t.find("content");
    if (!content || !content->is_string() || content->string.empty()) continue;
    const std::string& c = content->string;
    for (std::size_t at = middle.find(c); at != std::string::npos; at = middle.find(c, at + 1))
      if (last == std::string::npos || at + c.size() > last) last = at + c.size();
  }
  return last;
}

// Python's encode._special_tail: how many special tokens the post-processor appends after a text.
std::size_t special_tail(const Tokenizer& tokenizer, const std::string& path) {
  std::vector<std::int32_t> bare, full;
  const TokenizerStatus a = tokenizer.encode("x", &bare, false), b = tokenizer.encode("x", &full, true);
  if (!a.ok() || !b.ok()) fail(ScorerCode::bad_engine, path + ": cannot encode \"x\": " + (a.ok() ? b : a).message);
  if (full.size() < bare.size()) return 0;
  for (std::size_t at = 0; at + bare.size() <= full.size(); ++at)
    if (std::equal(bare.begin(), bare.end(), full.begin() + static_cast<std::ptrdiff_t>(at)))
      return full.size() - at - bare.size();
  return 0;
}

// The path of the file the manifest field `key` names: one of the files it lists (so its size was checked),
// a plain name, and not a link out of the engine directory.
std::string inside(const std::string& dir, const json::Value& m, const char* key, const Fields& f) {
  const std::string& name = f.get(m, key, json::Type::string, key).string;
  const json::Value* listed = m.find("files")->find(name);
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos || !listed)
    fail(ScorerCode::bad_engine, f.where() + ": field " + key + " is \"" + name +
                                     "\", expected the name of a file the manifest lists in the engine directory");
  char* real_dir = ::realpath(dir.c_str(), nullptr);
  char* real_file = ::realpath((dir + "/" + name).c_str(), nullptr);
  const std::string d = real_dir ? real_dir : "", p = real_file ? real_file : "";
  std::free(real_dir);
  std::free(real_file);
  if (d.empty() || p.size() <= d.size() + 1 || p.compare(0, d.size(), d) != 0 || p[d.size()] != '/' ||
      p.find('/', d.size() + 1) != std::string::npos)
    fail(ScorerCode::bad_engine, dir + "/" + name + ": resolves to " + (p.empty() ? "nothing" : p) +
                                     ", outside the engine directory (field " + key + " of " + f.where() + ")");
  return dir + "/" + name;
}

void open_engine(const std::string& dir, std::string_view torch_version, Engine& e) {
  e.dir = dir;
  const std::string mpath = dir + "/manifest.json";
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) fail(ScorerCode::io_error, dir + ": not a directory");
  if (::stat(mpath.c_str(), &st) != 0) fail(ScorerCode::bad_engine, mpath + ": missing; not an engine directory");
  json::Value m;
  const std::string problem = json::parse(read_file(mpath), m);
  if (!problem.empty()) fail(ScorerCode::bad_engine, mpath + ": not valid JSON (" + problem + ")");
  if (!m.is_object()) fail(ScorerCode::bad_engine, mpath + ": expected a JSON object");
  const Fields f(mpath);
  const std::int64_t version = f.integer(m, "format_version", "format_version", 0, 1 << 20);
  if (version > 1) fail(ScorerCode::unsupported, mpath + ": format_version " + std::to_string(version) + " is newer than this scorer reads (1)");
  const json::Value* format = m.find("format");
  const std::string kind = format && format->is_string() ? format->string : "onnx";
  if (kind != "aoti")
    fail(ScorerCode::unsupported, mpath + ": a " + kind + " engine; the C++ scorer runs engines exported with --format aoti");
  for (const auto& [name, meta] : f.get(m, "files", json::Type::object, "files").object) {
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos || !meta.is_object())
      fail(ScorerCode::bad_engine, mpath + ": files lists an invalid entry " + name);
    const std::string path = dir + "/" + name;
    if (::stat(path.c_str(), &st) != 0) fail(ScorerCode::bad_engine, path + ": missing (listed in manifest.json)");
    const std::int64_t size = f.integer(meta, "size", "files." + name + ".size", 0, std::int64_t{1} << 50);
    if (static_cast<std::int64_t>(st.st_size) != size)
      fail(ScorerCode::bad_engine, path + ": " + std::to_string(st.st_size) + " bytes, the manifest says " +
                                       std::to_string(size) + "; truncated or replaced");
  }
  check_machine(f.get(m, "machine", json::Type::object, "machine"), f, torch_version);
  e.arch = read_arch(f.get(m, "arch", json::Type::string, "arch").string, f);
  if (f.get(m, "dtype", json::Type::string, "dtype").string != e.arch.dtype)
    fail(ScorerCode::bad_engine, mpath + ": dtype and arch.dtype differ");
  const json::Value& cfg = f.get(m, "config", json::Type::object, "config");
  const json::Value* text_cfg = cfg.find("text_config");
  const json::Value& text = text_cfg && text_cfg->is_object() ? *text_cfg : cfg;
  e.layers = f.integer(text, "num_hidden_layers", "config.num_hidden_layers", 1, 100000);
  const json::Value* pad = text.find("pad_token_id");
  if (!pad || pad->is_null()) pad = cfg.find("pad_token_id");
  if (pad && !pad->is_null()) {
    if (!pad->is_number() || pad->number != std::floor(pad->number) || pad->number < INT32_MIN ||
        pad->number > INT32_MAX)
      fail(ScorerCode::bad_engine, mpath + ": config.pad_token_id is not a token id (an integer in int32 range)");
    e.pad_id = static_cast<std::int32_t>(pad->number);
  }
  e.max_length = static_cast<std::size_t>(f.integer(m, "max_length", "max_length", 1, std::int64_t{1} << 31));
  if (!m.find("row_tile"))
    fail(ScorerCode::bad_engine, mpath + ": field row_tile is missing (the tokens per call of the compiled blocks, "
                                         "recorded since blocks version 3); re-export the engine with codescaler "
                                         "export --format aoti");
  // At least 2: export specialises a dimension of size 0 or 1.
  e.row_tile = f.integer(m, "row_tile", "row_tile", 2, 1 << 16);
  const json::Value* rope = m.find("rope");
  if (!rope || !rope->is_object())
    fail(ScorerCode::unsupported, mpath + ": no rope table recorded (exported by an older codescaler); re-export the engine");
  e.rope_scaling = f.get(*rope, "scaling", json::Type::number, "rope.scaling").number;
  if (!(e.rope_scaling > 0 && e.rope_scaling <= 1e3))  // multiplies cos and sin, cast to the model dtype
    fail(ScorerCode::bad_engine, mpath + ": rope.scaling is " + shortest(e.rope_scaling) +
                                     ", expected a number in (0, 1000]");
  e.package_path = inside(dir, m, "package", f);
  e.weights_path = inside(dir, m, "weights", f);
  e.splice = read_splice(m, f);
  const std::string tpath = dir + "/tokenizer.json";
  const TokenizerStatus ts = Tokenizer::open(tpath, &e.tokenizer);
  if (!ts.ok()) {
    const ScorerCode code = ts.code == TokenizerCode::unsupported  ? ScorerCode::unsupported
                            : ts.code == TokenizerCode::io_error   ? ScorerCode::io_error
                            : ts.code == TokenizerCode::out_of_memory ? ScorerCode::out_of_memory
                                                                      : ScorerCode::bad_engine;
    fail(code, ts.message);
  }
  check_probes(f.get(m, "tokenizer", json::Type::object, "tokenizer"), *e.tokenizer, f, tpath);
  e.splice.question_end = last_added_token_end(e.splice.middle, read_file(tpath), tpath);
  e.special_tail = special_tail(*e.tokenizer, tpath);
}

}  // namespace

ScorerStatus open(const std::string& dir, std::string_view torch_version, Engine* out) {
  try {
    Engine e;
    open_engine(dir, torch_version, e);
    *out = std::move(e);
    return {};
  } catch (const Failure& f) {
    return f.status;
  } catch (const std::bad_alloc&) {
    return {ScorerCode::out_of_memory, dir + ": out of memory while reading the engine"};
  } catch (const std::exception& ex) {
    return {ScorerCode::internal_error, dir + ": " + ex.what()};
  }
}

}  // namespace codescaler::engine
