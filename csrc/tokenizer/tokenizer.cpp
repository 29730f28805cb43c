// Reading tokenizer.json into the pipeline, and encode: added tokens, normalizer, pre-tokenizer, BPE,
// post-processor, in Hugging Face's order.
#include "codescaler/tokenizer.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <new>
#include <sstream>
#include <thread>

#include "bpe.hpp"
#include "codescaler/json.hpp"
#include "pretokenize.hpp"
#include "unicode.hpp"

namespace codescaler {

const char* tokenizer_code_name(TokenizerCode code) {
  switch (code) {
    case TokenizerCode::ok: return "ok";
    case TokenizerCode::io_error: return "io_error";
    case TokenizerCode::invalid_json: return "invalid_json";
    case TokenizerCode::unsupported: return "unsupported";
    case TokenizerCode::invalid_utf8: return "invalid_utf8";
    case TokenizerCode::out_of_memory: return "out_of_memory";
    case TokenizerCode::internal_error: return "internal_error";
  }
  return "?";
}

namespace {

TokenizerStatus failure(TokenizerCode code, std::string message) { return {code, std::move(message)}; }

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes for
// U+0100 onwards in byte order. Returns the byte a code point stands for, or -1.
int byte_of_char(std::uint32_t cp) {
  static const auto table = [] {
    std::vector<int> inverse(512, -1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      inverse[printable ? b : 256 + n++] = b;
    }
    return inverse;
  }();
  return cp < table.size() ? table[cp] : -1;
}

// The bytes a byte-level token stands for, or nullopt if a character of it is outside the alphabet.
std::optional<std::string> byte_level_to_bytes(std::string_view token) {
  if (unicode::first_invalid_utf8(token) != std::string_view::npos) return std::nullopt;
  std::string out;
  out.reserve(token.size());
  for (std::size_t i = 0; i < token.size();) {
    std::uint32_t cp;
    i += unicode::decode(token.data(), i, cp);
    const int b = byte_of_char(cp);
    if (b < 0) return std::nullopt;
    out += static_cast<char>(b);
  }
  return out;
}

struct AddedToken {
  std::string content;  // what is matched: the content, or its normalized form when `normalized`
  std::int32_t id = 0;
  bool lstrip = false, rstrip = false;
};

struct Segment {
  std::size_t begin, end;
  std::int32_t id;  // the added token's id, or -1 for text
};

std::size_t leading_space_end(std::string_view text, std::size_t pos) {
  while (pos < text.size()) {
    std::uint32_t cp;
    const std::size_t len = unicode::decode(text.data(), pos, cp);
    if (!(unicode::flags(cp) & unicode::space)) break;
    pos += len;
  }
  return pos;
}

std::size_t trailing_space_begin(std::string_view text, std::size_t end) {
  while (end > 0) {
    std::size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    std::uint32_t cp;
    unicode::decode(text.data(), start, cp);
    if (!(unicode::flags(cp) & unicode::space)) break;
    end = start;
  }
  return end;
}

// Leftmost-longest matching of added tokens, then lstrip/rstrip, as AddedVocabulary::find_matches.
class AddedMatcher {
 public:
  void add(AddedToken token) {
    if (token.content.empty()) return;
    first_[static_cast<unsigned char>(token.content[0])] = true;
    tokens_.push_back(std::move(token));
    std::stable_sort(tokens_.begin(), tokens_.end(),
                     [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  }
  void split(std::string_view text, std::vector<Segment>& out) const {
    std::size_t start_offset = 0;
    for (std::size_t i = 0; i < text.size();) {
      if (!first_[static_cast<unsigned char>(text[i])]) {
        ++i;
        continue;
      }
      const AddedToken* hit = nullptr;
      for (const AddedToken& t : tokens_)
        if (text.compare(i, t.content.size(), t.content) == 0) {
          hit = &t;
          break;
        }
      if (!hit) {
        ++i;
        continue;
      }
      std::size_t start = i, stop = i + hit->content.size();
      i = stop;
      if (hit->lstrip) start = std::max(trailing_space_begin(text, start), start_offset);
      if (hit->rstrip) stop = leading_space_end(text, stop);
      if (start_offset < start) out.push_back({start_offset, start, -1});
      out.push_back({start, stop, hit->id});
      start_offset = stop;
      i = std::max(i, stop);
    }
    if (start_offset < text.size()) out.push_back({start_offset, text.size(), -1});
  }

 private:
  std::vector<AddedToken> tokens_;  // longest first
  bool first_[256] = {};
};

// Field access with messages naming the JSON path.
class Reader {
 public:
  explicit Reader(std::string origin) : origin_(std::move(origin)) {}
  std::string error;
  TokenizerCode code = TokenizerCode::ok;

  bool invalid(const std::string& path, const std::string& what) {
    if (code == TokenizerCode::ok) {
      code = TokenizerCode::invalid_json;
      error = origin_ + ": " + path + " " + what;
    }
    return false;
  }
  bool unsupported(const std::string& path, const std::string& what) {
    if (code == TokenizerCode::ok) {
      code = TokenizerCode::unsupported;
      error = origin_ + ": " + path + " " + what;
    }
    return false;
  }
  bool expect(const json::Value* v, json::Type type, const std::string& path) {
    if (!v) return invalid(path, "is missing");
    if (v->type != type) return invalid(path, std::string("must be ") + json::type_name(type) + ", not " +
                                              json::type_name(v->type));
    return true;
  }
  // An optional boolean: absent or null reads as `fallback`.
  bool flag(const json::Value& obj, const char* key, const std::string& path, bool fallback, bool& out) {
    const json::Value* v = obj.find(key);
    out = fallback;
    if (!v || v->is_null()) return true;
    if (!v->is_bool()) return invalid(path + "." + key, "must be a boolean");
    out = v->boolean;
    return true;
  }
  bool string_or_null(const json::Value& obj, const char* key, const std::string& path, std::string& out,
                      bool& present) {
    const json::Value* v = obj.find(key);
    present = v && !v->is_null();
    if (!present) return true;
    if (!v->is_string()) return invalid(path + "." + key, "must be a string or null");
    out = v->string;
    return true;
  }
  bool type_of(const json::Value& obj, const std::string& path, std::string& out) {
    if (!obj.is_object()) return invalid(path, "must be an object");
    const json::Value* t = obj.find("type");
    if (!expect(t, json::Type::string, path + ".type")) return false;
    out = t->string;
    return true;
  }
  bool id(const json::Value* v, const std::string& path, std::int32_t& out) {
    if (!expect(v, json::Type::number, path)) return false;
    if (v->number < 0 || v->number > INT32_MAX || std::floor(v->number) != v->number)
      return invalid(path, "must be an id (a non-negative integer)");
    out = static_cast<std::int32_t>(v->number);
    return true;
  }

 private:
  std::string origin_;
};

}  // namespace

struct Tokenizer::Impl {
  bool nfc = false;
  std::vector<pretokenize::Pattern> splits;  // applied in order, each to every piece of the one before
  bpe::Model model;
  AddedMatcher raw_tokens, normalized_tokens;
  std::vector<std::pair<std::string, std::int32_t>> added_ids;  // content -> id, for token_to_id
  std::vector<std::int32_t> prefix, suffix;                      // TemplateProcessing, single sequence
  std::int32_t max_id = -1;

  bool read(const json::Value& root, Reader& r);
  bool read_normalizer(const json::Value& v, const std::string& path, Reader& r);
  bool read_pre_tokenizer(const json::Value& v, const std::string& path, Reader& r, bool& byte_level);
  bool read_model(const json::Value& v, Reader& r);
  bool read_post_processor(const json::Value& v, const std::string& path, Reader& r);
  void encode(std::string_view text, std::vector<std::int32_t>& ids, bool add_special_tokens) const;
};

bool Tokenizer::Impl::read_normalizer(const json::Value& v, const std::string& path, Reader& r) {
  if (v.is_null()) return true;
  std::string type;
  if (!r.type_of(v, path, type)) return false;
  if (type == "NFC") {
    nfc = true;
    return true;
  }
  if (type == "Sequence") {
    const json::Value* list = v.find("normalizers");
    if (!r.expect(list, json::Type::array, path + ".normalizers")) return false;
    for (std::size_t i = 0; i < list->array.size(); ++i)
      if (!read_normalizer(list->array[i], path + ".normalizers[" + std::to_string(i) + "]", r)) return false;
    return true;
  }
  return r.unsupported(path, "type '" + type + "' is not supported (supported: NFC, a Sequence of NFC)");
}

bool Tokenizer::Impl::read_pre_tokenizer(const json::Value& v, const std::string& path, Reader& r,
                                         bool& byte_level) {
  if (v.is_null()) return true;
  std::string type;
  if (!r.type_of(v, path, type)) return false;
  if (byte_level)
    return r.unsupported(path, "'" + type + "' after ByteLevel is not supported (ByteLevel must come last)");
  if (type == "Sequence") {
    const json::Value* list = v.find("pretokenizers");
    if (!r.expect(list, json::Type::array, path + ".pretokenizers")) return false;
    for (std::size_t i = 0; i < list->array.size(); ++i)
      if (!read_pre_tokenizer(list->array[i], path + ".pretokenizers[" + std::to_string(i) + "]", r,
                              byte_level))
        return false;
    return true;
  }
  if (type == "ByteLevel") {
    bool add_prefix_space = false, use_regex = true;
    if (!r.flag(v, "add_prefix_space", path, true, add_prefix_space) ||
        !r.flag(v, "use_regex", path, true, use_regex))
      return false;
    if (add_prefix_space) return r.unsupported(path + ".add_prefix_space", "true is not supported");
    if (use_regex) splits.push_back(pretokenize::Pattern::gpt2);
    byte_level = true;
    return true;
  }
  if (type == "Split") {
    const json::Value* pattern = v.find("pattern");
    if (!r.expect(pattern, json::Type::object, path + ".pattern")) return false;
    const json::Value* regex = pattern->find("Regex");
    if (!regex) return r.unsupported(path + ".pattern", "must be a Regex (String patterns are not supported)");
    if (!r.expect(regex, json::Type::string, path + ".pattern.Regex")) return false;
    const auto known = pretokenize::pattern_from_regex(regex->string);
    if (!known)
      return r.unsupported(path + ".pattern.Regex",
                           "'" + regex->string + "' is not supported (supported: Qwen2's, cl100k's and GPT-2's)");
    const json::Value* behavior = v.find("behavior");
    if (!r.expect(behavior, json::Type::string, path + ".behavior")) return false;
    if (behavior->string != "Isolated")
      return r.unsupported(path + ".behavior", "'" + behavior->string + "' is not supported (supported: Isolated)");
    bool invert = false;
    if (!r.flag(v, "invert", path, false, invert)) return false;
    if (invert) return r.unsupported(path + ".invert", "true is not supported");
    splits.push_back(*known);
    return true;
  }
  return r.unsupported(path, "type '" + type + "' is not supported (supported: ByteLevel, Split, Sequence)");
}

bool Tokenizer::Impl::read_model(const json::Value& v, Reader& r) {
  std::string type;
  if (!r.type_of(v, "model", type)) return false;
  if (type != "BPE") return r.unsupported("model", "type '" + type + "' is not supported (supported: BPE)");
  if (const json::Value* d = v.find("dropout"); d && !d->is_null() && !(d->is_number() && d->number == 0.0))
    return r.unsupported("model.dropout", "is not supported (encoding would be random)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    std::string s;
    bool present = false;
    if (!r.string_or_null(v, key, "model", s, present)) return false;
    if (present && !s.empty()) return r.unsupported(std::string("model.") + key, "'" + s + "' is not supported");
  }
  bool byte_fallback = false;
  bpe::Model::Options options;
  if (!r.flag(v, "byte_fallback", "model", false, byte_fallback) ||
      !r.flag(v, "ignore_merges", "model", false, options.ignore_merges) ||
      !r.flag(v, "fuse_unk", "model", false, options.fuse_unk))
    return false;
  if (byte_fallback) return r.unsupported("model.byte_fallback", "true is not supported");

  const json::Value* vocab = v.find("vocab");
  if (!r.expect(vocab, json::Type::object, "model.vocab")) return false;
  std::vector<std::pair<std::string, std::int32_t>> entries;
  entries.reserve(vocab->object.size());
  for (const auto& [token, idv] : vocab->object) {
    std::int32_t id;
    if (!r.id(&idv, "model.vocab['" + token + "']", id)) return false;
    auto bytes = byte_level_to_bytes(token);
    if (!bytes)
      return r.unsupported("model.vocab['" + token + "']",
                           "is not a byte-level token (only byte-level BPE is supported)");
    entries.emplace_back(std::move(*bytes), id);
  }

  const json::Value* merges = v.find("merges");
  if (!r.expect(merges, json::Type::array, "model.merges")) return false;
  std::vector<std::pair<std::string, std::string>> pairs;
  pairs.reserve(merges->array.size());
  for (std::size_t i = 0; i < merges->array.size(); ++i) {
    const json::Value& m = merges->array[i];
    const std::string path = "model.merges[" + std::to_string(i) + "]";
    std::string left, right;
    if (m.is_string()) {  // the legacy "a b" form
      const std::size_t space = m.string.find(' ');
      if (space == std::string::npos || m.string.find(' ', space + 1) != std::string::npos)
        return r.invalid(path, "must be two tokens separated by one space");
      left = m.string.substr(0, space);
      right = m.string.substr(space + 1);
    } else if (m.is_array() && m.array.size() == 2 && m.array[0].is_string() && m.array[1].is_string()) {
      left = m.array[0].string;
      right = m.array[1].string;
    } else {
      return r.invalid(path, "must be a pair of strings or an \"a b\" string");
    }
    auto l = byte_level_to_bytes(left), rr = byte_level_to_bytes(right);
    if (!l || !rr) return r.unsupported(path, "is not a pair of byte-level tokens");
    pairs.emplace_back(std::move(*l), std::move(*rr));
  }

  std::string unk;
  bool has_unk = false;
  if (!r.string_or_null(v, "unk_token", "model", unk, has_unk)) return false;
  if (has_unk) {
    const json::Value* id = vocab->find(unk);
    if (!id) return r.invalid("model.unk_token", "'" + unk + "' is not in model.vocab");
    options.unk_id = static_cast<std::int32_t>(id->number);
  }
  const std::string problem = model.build(entries, pairs, options);
  if (!problem.empty()) return r.invalid("model", problem);
  max_id = std::max(max_id, model.max_id());
  return true;
}

bool Tokenizer::Impl::read_post_processor(const json::Value& v, const std::string& path, Reader& r) {
  if (v.is_null()) return true;
  std::string type;
  if (!r.type_of(v, path, type)) return false;
  if (type == "ByteLevel") return true;  // changes offsets only
  if (type == "Sequence") {
    const json::Value* list = v.find("processors");
    if (!r.expect(list, json::Type::array, path + ".processors")) return false;
    for (std::size_t i = 0; i < list->array.size(); ++i)
      if (!read_post_processor(list->array[i], path + ".processors[" + std::to_string(i) + "]", r)) return false;
    return true;
  }
  if (type == "TemplateProcessing") {
    const json::Value* single = v.find("single");
    const json::Value* special = v.find("special_tokens");
    if (!r.expect(single, json::Type::array, path + ".single") ||
        !r.expect(special, json::Type::object, path + ".special_tokens"))
      return false;
    bool seen_sequence = false;
    for (std::size_t i = 0; i < single->array.size(); ++i) {
      const json::Value& piece = single->array[i];
      const std::string at = path + ".single[" + std::to_string(i) + "]";
      if (const json::Value* seq = piece.find("Sequence")) {
        const json::Value* id = seq->find("id");
        if (seen_sequence || !id || !id->is_string() || id->string != "A")
          return r.unsupported(at, "a single-sequence template must hold Sequence A once");
        seen_sequence = true;
        continue;
      }
      const json::Value* tok = piece.find("SpecialToken");
      if (!tok) return r.invalid(at, "must be a Sequence or a SpecialToken");
      const json::Value* name = tok->find("id");
      if (!r.expect(name, json::Type::string, at + ".SpecialToken.id")) return false;
      const json::Value* entry = special->find(name->string);
      if (!entry) return r.invalid(at, "names '" + name->string + "', missing from special_tokens");
      const json::Value* ids = entry->find("ids");
      if (!r.expect(ids, json::Type::array, path + ".special_tokens['" + name->string + "'].ids")) return false;
      for (const json::Value& idv : ids->array) {
        std::int32_t id;
        if (!r.id(&idv, path + ".special_tokens['" + name->string + "'].ids", id)) return false;
        (seen_sequence ? suffix : prefix).push_back(id);
        max_id = std::max(max_id, id);
      }
    }
    if (!seen_sequence) return r.unsupported(path + ".single", "has no Sequence A");
    return true;
  }
  return r.unsupported(path, "type '" + type +
                                 "' is not supported (supported: ByteLevel, TemplateProcessing, Sequence)");
}

bool Tokenizer::Impl::read(const json::Value& root, Reader& r) {
  if (!root.is_object()) return r.invalid("the top level", "must be an object");
  for (const char* key : {"truncation", "padding"})
    if (const json::Value* v = root.find(key); v && !v->is_null())
      return r.unsupported(key, "is set; encode without it (the scorer truncates and pads itself)");
  const json::Value* normalizer = root.find("normalizer");
  const json::Value* pre = root.find("pre_tokenizer");
  const json::Value* model_v = root.find("model");
  const json::Value* post = root.find("post_processor");
  if (normalizer && !read_normalizer(*normalizer, "normalizer", r)) return false;
  bool byte_level = false;
  if (pre && !read_pre_tokenizer(*pre, "pre_tokenizer", r, byte_level)) return false;
  if (!byte_level)
    return r.unsupported("pre_tokenizer", "has no ByteLevel step (only byte-level BPE is supported)");
  if (!model_v) return r.invalid("model", "is missing");
  if (!read_model(*model_v, r)) return false;
  if (post && !read_post_processor(*post, "post_processor", r)) return false;

  if (const json::Value* added = root.find("added_tokens"); added && !added->is_null()) {
    if (!r.expect(added, json::Type::array, "added_tokens")) return false;
    for (std::size_t i = 0; i < added->array.size(); ++i) {
      const json::Value& t = added->array[i];
      const std::string path = "added_tokens[" + std::to_string(i) + "]";
      if (!t.is_object()) return r.invalid(path, "must be an object");
      const json::Value* content = t.find("content");
      if (!r.expect(content, json::Type::string, path + ".content")) return false;
      if (unicode::first_invalid_utf8(content->string) != std::string_view::npos)
        return r.invalid(path + ".content", "is not valid UTF-8");
      AddedToken token;
      bool single_word = false, normalized = true, special = false;
      if (!r.id(t.find("id"), path + ".id", token.id) ||
          !r.flag(t, "single_word", path, false, single_word) || !r.flag(t, "lstrip", path, false, token.lstrip) ||
          !r.flag(t, "rstrip", path, false, token.rstrip) || !r.flag(t, "special", path, false, special) ||
          !r.flag(t, "normalized", path, !special, normalized))
        return false;
      if (single_word) return r.unsupported(path + ".single_word", "true is not supported");
      added_ids.emplace_back(content->string, token.id);
      max_id = std::max(max_id, token.id);
      if (normalized && nfc) {
        token.content.clear();
        unicode::nfc(content->string, token.content);
      } else {
        token.content = content->string;
      }
      (normalized ? normalized_tokens : raw_tokens).add(std::move(token));
    }
  }
  return true;
}

void Tokenizer::Impl::encode(std::string_view text, std::vector<std::int32_t>& ids,
                             bool add_special_tokens) const {
  ids.clear();
  if (add_special_tokens) ids.insert(ids.end(), prefix.begin(), prefix.end());
  std::vector<Segment> raw, inner;
  std::vector<std::pair<std::size_t, std::size_t>> pieces, next;
  std::string normalized;
  raw_tokens.split(text, raw);
  for (const Segment& seg : raw) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    std::string_view part = text.substr(seg.begin, seg.end - seg.begin);
    if (nfc && !unicode::nfc_quick_yes(part)) {
      normalized.clear();
      unicode::nfc(part, normalized);
      part = normalized;
    }
    inner.clear();
    normalized_tokens.split(part, inner);
    for (const Segment& sub : inner) {
      if (sub.id >= 0) {
        ids.push_back(sub.id);
        continue;
      }
      pieces.assign(1, {sub.begin, sub.end});
      for (pretokenize::Pattern p : splits) {
        next.clear();
        for (const auto& [b, e] : pieces) pretokenize::split(p, part.substr(b, e - b), b, next);
        pieces.swap(next);
      }
      for (const auto& [b, e] : pieces) model.encode(part.substr(b, e - b), ids);
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), suffix.begin(), suffix.end());
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

TokenizerStatus Tokenizer::from_json(std::string_view text, std::unique_ptr<Tokenizer>* out,
                                     std::string_view origin) {
  try {
    json::Value root;
    const std::string problem = json::parse(text, root);
    if (!problem.empty()) return failure(TokenizerCode::invalid_json, std::string(origin) + ": " + problem);
    auto impl = std::make_unique<Impl>();
    Reader reader{std::string(origin)};
    if (!impl->read(root, reader)) return failure(reader.code, reader.error);
    out->reset(new Tokenizer(std::move(impl)));
    return {};
  } catch (const std::bad_alloc&) {
    return failure(TokenizerCode::out_of_memory, std::string(origin) + ": out of memory while reading");
  } catch (const std::exception& e) {
    return failure(TokenizerCode::internal_error, std::string(origin) + ": " + e.what());
  } catch (...) {
    return failure(TokenizerCode::internal_error, std::string(origin) + ": unknown exception");
  }
}

TokenizerStatus Tokenizer::open(const std::string& path, std::unique_ptr<Tokenizer>* out) {
  try {
    std::ifstream file(path, std::ios::binary);
    if (!file) return failure(TokenizerCode::io_error, path + ": cannot open");
    std::ostringstream buffer;
    buffer << file.rdbuf();
    if (file.bad()) return failure(TokenizerCode::io_error, path + ": read error");
    return from_json(buffer.str(), out, path);
  } catch (const std::bad_alloc&) {
    return failure(TokenizerCode::out_of_memory, path + ": out of memory while reading");
  } catch (const std::exception& e) {
    return failure(TokenizerCode::internal_error, path + ": " + e.what());
  } catch (...) {
    return failure(TokenizerCode::internal_error, path + ": unknown exception");
  }
}

TokenizerStatus Tokenizer::encode(std::string_view utf8, std::vector<std::int32_t>* ids,
                                  bool add_special_tokens) const {
  try {
    ids->clear();
    if (const std::size_t bad = unicode::first_invalid_utf8(utf8); bad != std::string_view::npos)
      return failure(TokenizerCode::invalid_utf8,
                     "invalid UTF-8 at byte " + std::to_string(bad) + " of " + std::to_string(utf8.size()));
    impl_->encode(utf8, *ids, add_special_tokens);
    return {};
  } catch (const std::bad_alloc&) {
    ids->clear();
    return failure(TokenizerCode::out_of_memory,
                   "out of memory encoding " + std::to_string(utf8.size()) + " bytes");
  } catch (const std::exception& e) {
    ids->clear();
    return failure(TokenizerCode::internal_error, e.what());
  }
}

std::vector<TokenizerStatus> Tokenizer::encode_batch(const std::vector<std::string_view>& texts,
                                                     std::vector<std::vector<std::int32_t>>* ids,
                                                     bool add_special_tokens, unsigned threads) const {
  std::vector<TokenizerStatus> statuses;
  try {
    statuses.resize(texts.size());
    ids->assign(texts.size(), {});
  } catch (const std::bad_alloc&) {
    statuses.clear();
    return statuses;  // the caller sees fewer statuses than texts
  }
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::min<std::size_t>(threads, std::max<std::size_t>(texts.size(), 1)));
  // Interleaved assignment keeps the threads busy when long texts cluster.
  auto work = [&](unsigned t) {
    for (std::size_t i = t; i < texts.size(); i += threads)
      statuses[i] = encode(texts[i], &(*ids)[i], add_special_tokens);
  };
  std::vector<std::thread> pool;
  try {
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work, t);
  } catch (...) {
    // Could not start every thread: this one takes the shares of those that did not start.
    for (unsigned t = static_cast<unsigned>(pool.size()) + 1; t < threads; ++t) work(t);
  }
  work(0);
  for (auto& th : pool) th.join();
  return statuses;
}

void Tokenizer::truncate(std::vector<std::int32_t>* ids, std::size_t max_length, bool add_special_tokens) const {
  if (ids->size() <= max_length) return;
  const std::size_t head = add_special_tokens ? impl_->prefix.size() : 0;
  const std::size_t tail = add_special_tokens ? impl_->suffix.size() : 0;
  const std::size_t keep = max_length > head + tail ? max_length - head - tail : 0;
  ids->erase(ids->begin() + static_cast<std::ptrdiff_t>(head + keep), ids->end() - static_cast<std::ptrdiff_t>(tail));
}

std::optional<std::int32_t> Tokenizer::token_to_id(std::string_view token) const {
  for (const auto& [content, id] : impl_->added_ids)
    if (content == token) return id;
  try {
    if (const auto bytes = byte_level_to_bytes(token)) return impl_->model.find(*bytes);
  } catch (const std::bad_alloc&) {
  }
  return std::nullopt;
}

std::size_t Tokenizer::vocab_size() const { return static_cast<std::size_t>(impl_->max_id + 1); }

const char* Tokenizer::unicode_version() { return unicode::version(); }

}  // namespace codescaler
