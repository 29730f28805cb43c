#include "model.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/headeronly/version.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <new>

#include "codescaler/json.hpp"
#include "blocks.hpp"
#include "failure.hpp"

namespace codescaler::model {

namespace {

// Closes a file descriptor on every path out.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void read_exact(int fd, void* dst, std::size_t n, std::uint64_t offset, const std::string& path) {
  auto* p = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t got = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (got <= 0) fail(ScorerCode::io_error, path + ": read error at byte " + std::to_string(offset));
    p += got;
    n -= static_cast<std::size_t>(got);
    offset += static_cast<std::uint64_t>(got);
  }
}

// The tensors of one safetensors file (8-byte header length, JSON header, raw little-endian data), every
// offset and size checked against the file. The tensors are views of one private, copy-on-write mapping
// of the file (as Python's safetensors gives them): loading costs page faults, not a copy.
std::map<std::string, at::Tensor> read_safetensors(const std::string& path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) fail(ScorerCode::io_error, path + ": cannot open");
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) fail(ScorerCode::io_error, path + ": cannot stat");
  const std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
  unsigned char len_bytes[8];
  if (size < 8) fail(ScorerCode::bad_engine, path + ": " + std::to_string(size) + " bytes; not a safetensors file");
  read_exact(f.fd, len_bytes, 8, 0, path);
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > size - 8 || header_len > (std::uint64_t{1} << 30))
    fail(ScorerCode::bad_engine, path + ": header length " + std::to_string(header_len) + " exceeds the file");
  std::string header(header_len, '\0');
  read_exact(f.fd, header.data(), header_len, 8, path);
  json::Value root;
  const std::string problem = json::parse(header, root);
  if (!problem.empty() || !root.is_object()) fail(ScorerCode::bad_engine, path + ": header is not a JSON object " + problem);
  const std::uint64_t data_start = 8 + header_len, data_size = size - data_start;
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, f.fd, 0);
  if (base == MAP_FAILED) fail(ScorerCode::io_error, path + ": cannot map the file");
  // Every tensor holds the mapping; it is unmapped when the last one goes.
  std::shared_ptr<void> mapping(base, [size](void* p) { ::munmap(p, size); });
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, info] : root.object) {
    if (name == "__metadata__") continue;
    const json::Value* dtype = info.find("dtype");
    const json::Value* shape = info.find("shape");
    const json::Value* offsets = info.find("data_offsets");
    if (!dtype || !dtype->is_string() || !shape || !shape->is_array() || !offsets || !offsets->is_array() ||
        offsets->array.size() != 2)
      fail(ScorerCode::bad_engine, path + ": tensor " + name + " has no dtype, shape or data_offsets");
    at::ScalarType type;
    if (dtype->string == "F32") type = at::kFloat;
    else if (dtype->string == "BF16") type = at::kBFloat16;
    else if (dtype->string == "F16") type = at::kHalf;
    else if (dtype->string == "I64") type = at::kLong;
    else fail(ScorerCode::unsupported, path + ": tensor " + name + " has dtype " + dtype->string);
    std::vector<std::int64_t> dims;
    std::uint64_t numel = 1;
    for (const json::Value& d : shape->array) {
      if (!d.is_number() || d.number < 0 || d.number > 1e12 || d.number != std::floor(d.number))
        fail(ScorerCode::bad_engine, path + ": tensor " + name + " has an invalid shape");
      dims.push_back(static_cast<std::int64_t>(d.number));
      const auto dim = static_cast<std::uint64_t>(d.number);
      // Checked before multiplying: [2^20, 2^20, 2^24] must not wrap to 0 elements.
      if (dim != 0 && numel > (std::uint64_t{1} << 40) / dim)
        fail(ScorerCode::bad_engine, path + ": tensor " + name + " is too large");
      numel *= dim;
    }
    const double b = offsets->array[0].is_number() ? offsets->array[0].number : -1;
    const double e = offsets->array[1].is_number() ? offsets->array[1].number : -1;
    const std::uint64_t bytes = numel * c10::elementSize(type);
    if (b < 0 || e < b || e > static_cast<double>(data_size) || static_cast<std::uint64_t>(e - b) != bytes)
      fail(ScorerCode::bad_engine, path + ": tensor " + name + "'s data_offsets do not match its shape or lie outside the file");
    void* at_data = static_cast<char*>(mapping.get()) + data_start + static_cast<std::uint64_t>(b);
    at::Tensor t = at::from_blob(at_data, dims, [mapping](void*) {}, at::TensorOptions().dtype(type));
    out.emplace(name, std::move(t));
  }
  return out;
}

// The per-layer weight names, in the order the compiled blocks take them (Python's Arch.pre_names(),
// Arch.post_names()), with the shape each must have.
struct Name {
  const char* name;
  std::vector<std::int64_t> shape;
};

std::vector<Name> pre_names(const engine::Arch& a) {
  const std::int64_t qd = a.heads * a.head_dim, kvd = a.kv_heads * a.head_dim;
  std::vector<Name> n = {{"input_layernorm.weight", {a.hidden}},
                         {"self_attn.q_proj.weight", {qd, a.hidden}},
                         {"self_attn.k_proj.weight", {kvd, a.hidden}},
                         {"self_attn.v_proj.weight", {kvd, a.hidden}}};
  if (a.qkv_bias) {
    n.push_back({"self_attn.q_proj.bias", {qd}});
    n.push_back({"self_attn.k_proj.bias", {kvd}});
    n.push_back({"self_attn.v_proj.bias", {kvd}});
  }
  if (a.qk_norm) {
    n.push_back({"self_attn.q_norm.weight", {a.head_dim}});
    n.push_back({"self_attn.k_norm.weight", {a.head_dim}});
  }
  return n;
}

std::vector<Name> post_names(const engine::Arch& a) {
  return {{"self_attn.o_proj.weight", {a.hidden, a.heads * a.head_dim}},
          {"post_attention_layernorm.weight", {a.hidden}},
          {"mlp.gate_proj.weight", {a.intermediate, a.hidden}},
          {"mlp.up_proj.weight", {a.intermediate, a.hidden}},
          {"mlp.down_proj.weight", {a.hidden, a.intermediate}}};
}

at::ScalarType scalar_type(const std::string& dtype) {
  if (dtype == "float32") return at::kFloat;
  if (dtype == "bfloat16") return at::kBFloat16;
  return at::kHalf;
}

}  // namespace

struct Model::Impl {
  engine::Arch arch;
  at::ScalarType dtype;
  at::Tensor embed, norm, score, inv_freq;
  std::vector<std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>>> layers;
  double rope_scaling = 1.0, scaling = 1.0;
  std::int64_t row_tile = 0;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> pre, post;

  at::Tensor forward(const plan::Plan& plan, const std::vector<plan::Unit>& pack);
  void attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const plan::Plan& plan,
              const std::vector<plan::Unit>& pack, std::int64_t pad, std::vector<at::Tensor>& halves);
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

const char* Model::torch_version() { return TORCH_VERSION; }

void Model::set_threads(unsigned threads) {
  if (threads > 0) at::set_num_threads(static_cast<int>(threads));
}

ScorerStatus Model::open(const engine::Engine& e, std::unique_ptr<Model>* out) {
  try {
    auto impl = std::make_unique<Impl>();
    Impl& m = *impl;
    m.arch = e.arch;
    m.dtype = scalar_type(e.arch.dtype);
    m.rope_scaling = e.rope_scaling;
    m.row_tile = e.row_tile;
    m.scaling = std::pow(static_cast<double>(e.arch.head_dim), -0.5);
    std::map<std::string, at::Tensor> state = read_safetensors(e.weights_path);
    const std::string prefix = state.count("model.embed_tokens.weight") ? "model." : "";
    auto take = [&](const std::string& key, const std::vector<std::int64_t>& shape, at::ScalarType type) {
      auto it = state.find(key);
      if (it == state.end()) fail(ScorerCode::bad_engine, e.weights_path + ": tensor " + key + " is missing");
      if (it->second.scalar_type() != type)
        fail(ScorerCode::bad_engine, e.weights_path + ": tensor " + key + " is " +
                                         std::string(c10::toString(it->second.scalar_type())) + ", the engine's dtype is " + e.arch.dtype);
      if (!shape.empty() && it->second.sizes() != at::IntArrayRef(shape))
        fail(ScorerCode::bad_engine, e.weights_path + ": tensor " + key + " has shape " + c10::str(it->second.sizes()) +
                                         ", the engine's arch needs " + c10::str(at::IntArrayRef(shape)));
      return it->second;
    };
    m.embed = take(prefix + "embed_tokens.weight", {}, m.dtype);
    if (m.embed.dim() != 2 || m.embed.size(1) != e.arch.hidden)
      fail(ScorerCode::bad_engine, e.weights_path + ": embed_tokens.weight is not (vocabulary, hidden)");
    if (static_cast<std::size_t>(m.embed.size(0)) < e.tokenizer->vocab_size())
      fail(ScorerCode::bad_engine, e.weights_path + ": " + std::to_string(m.embed.size(0)) + " embeddings for a tokenizer of " +
                                       std::to_string(e.tokenizer->vocab_size()) + " ids");
    m.norm = take(prefix + "norm.weight", {e.arch.hidden}, m.dtype);
    m.score = take("score.weight", {1, e.arch.hidden}, m.dtype);
    m.inv_freq = take("codescaler.rope.inv_freq", {e.arch.head_dim / 2}, at::kFloat);
    for (std::int64_t i = 0; i < e.layers; ++i) {
      const std::string layer = prefix + "layers." + std::to_string(i) + ".";
      std::vector<at::Tensor> pre, post;
      for (const Name& n : pre_names(e.arch)) pre.push_back(take(layer + n.name, n.shape, m.dtype));
      for (const Name& n : post_names(e.arch)) post.push_back(take(layer + n.name, n.shape, m.dtype));
      m.layers.emplace_back(std::move(pre), std::move(post));
    }
    std::string unpacked;
    if (ScorerStatus s = blocks::unpack(e.package_path, &unpacked); !s.ok()) return s;
    try {
      m.pre = std::make_unique<torch::inductor::AOTIModelPackageLoader>(unpacked, "pre", false, 1, -1);
      m.post = std::make_unique<torch::inductor::AOTIModelPackageLoader>(unpacked, "post", false, 1, -1);
    } catch (const std::exception& ex) {
      fail(ScorerCode::bad_engine, e.package_path + ": cannot load the compiled blocks (" + std::string(ex.what()).substr(0, 500) + ")");
    }
    out->reset(new Model(std::move(impl)));
    return {};
  } catch (const Failure& f) {
    return f.status;
  } catch (const std::bad_alloc&) {
    return {ScorerCode::out_of_memory, e.weights_path + ": out of memory loading the weights"};
  } catch (const std::exception& ex) {
    return {ScorerCode::model_error, e.dir + ": " + std::string(ex.what()).substr(0, 1000)};
  }
}

// Attention as two halves per unit (see Python's PackedDecoder.attend): the prefix causally over itself;
// each answer over the prefix (half a) and causally over itself (half b); an answer without a prefix
// causally over itself as half a. Every call covers one prefix or one answer, so a token's attention does
// not depend on what else the pass holds. `pad` neutral rows (half a 0 with lse 0, half b empty) end it.
void Model::Impl::attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const plan::Plan& plan,
                         const std::vector<plan::Unit>& pack, std::int64_t pad, std::vector<at::Tensor>& halves) {
  const std::int64_t heads = q.size(1), d = q.size(3);
  std::vector<at::Tensor> a_out, a_lse, b_out, b_lse;
  auto none = [&](std::int64_t n) {
    b_out.push_back(at::zeros({n, heads, d}, q.options()));
    b_lse.push_back(at::full({1, heads, n}, -std::numeric_limits<float>::infinity(), q.options().dtype(at::kFloat)));
  };
  auto run = [&](std::int64_t qs, std::int64_t qe, std::int64_t ks, std::int64_t ke, bool causal) {
    auto r = at::_scaled_dot_product_flash_attention_for_cpu(q.slice(2, qs, qe), k.slice(2, ks, ke), v.slice(2, ks, ke),
                                                             0.0, causal, std::nullopt, scaling);
    return std::make_pair(std::get<0>(r).transpose(1, 2)[0], std::get<1>(r));
  };
  std::int64_t start = 0;
  for (const plan::Unit& u : pack) {
    const auto p = static_cast<std::int64_t>(u.prefix);
    if (p) {
      auto [o, lse] = run(start, start + p, start, start + p, true);
      a_out.push_back(o);
      a_lse.push_back(lse);
      none(p);
    }
    std::int64_t at = start + p;
    for (std::size_t member : u.members) {
      const std::int64_t n = static_cast<std::int64_t>(plan.seqs[member].size()) - p;
      if (p) {
        auto [o, lse] = run(at, at + n, start, start + p, false);
        a_out.push_back(o);
        a_lse.push_back(lse);
      }
      auto [o, lse] = run(at, at + n, at, at + n, true);
      (p ? b_out : a_out).push_back(o);
      (p ? b_lse : a_lse).push_back(lse);
      if (!p) none(n);
      at += n;
    }
    start = at;
  }
  if (pad) {
    a_out.push_back(at::zeros({pad, heads, d}, q.options()));
    a_lse.push_back(at::zeros({1, heads, pad}, q.options().dtype(at::kFloat)));
    none(pad);
  }
  halves = {at::cat(a_out), at::cat(a_lse, 2).to(at::kFloat), at::cat(b_out), at::cat(b_lse, 2).to(at::kFloat)};
}

// Python's PackedDecoder.hidden_states and scores: the packed row padded to whole tiles of row_tile tokens
// (token 0 at position 0), the compiled blocks called once per tile (one GEMM shape, so one algorithm
// whatever the pass holds), attention over the whole row, then the score head one pooled row at a time.
at::Tensor Model::Impl::forward(const plan::Plan& plan, const std::vector<plan::Unit>& pack) {
  std::vector<std::int64_t> ids, pos, rows;
  for (const plan::Unit& u : pack) {
    const std::vector<std::int32_t>& first = plan.seqs[u.members.at(0)];
    for (std::size_t i = 0; i < u.prefix; ++i) {
      ids.push_back(first[i]);
      pos.push_back(static_cast<std::int64_t>(i));
    }
    for (std::size_t member : u.members) {
      const std::vector<std::int32_t>& s = plan.seqs[member];
      rows.push_back(static_cast<std::int64_t>(ids.size() + plan.pools[member] - u.prefix));
      for (std::size_t i = u.prefix; i < s.size(); ++i) {
        ids.push_back(s[i]);
        pos.push_back(static_cast<std::int64_t>(i));
      }
    }
  }
  const auto vocab = embed.size(0);
  for (std::int64_t id : ids)
    if (id < 0 || id >= vocab) fail(ScorerCode::internal_error, "token id " + std::to_string(id) + " outside the embeddings");
  const std::int64_t tile = row_tile, n = static_cast<std::int64_t>(ids.size());
  const std::int64_t padded = (n + tile - 1) / tile * tile, pad = padded - n;
  ids.resize(static_cast<std::size_t>(padded), 0);  // padding rows are computed and never read
  pos.resize(static_cast<std::size_t>(padded), 0);
  at::Tensor tid = at::tensor(ids, at::kLong), tpos = at::tensor(pos, at::kLong), trows = at::tensor(rows, at::kLong);
  at::Tensor hidden = embed.index({tid});
  at::Tensor freqs = tpos.unsqueeze(1).to(at::kFloat) * inv_freq.unsqueeze(0);
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  at::Tensor cos = emb.cos(), sin = emb.sin();
  if (rope_scaling != 1.0) {
    cos = cos * rope_scaling;
    sin = sin * rope_scaling;
  }
  cos = cos.to(dtype);
  sin = sin.to(dtype);
  std::vector<at::Tensor> halves, q, k, v, out;
  std::vector<at::Tensor> in;
  for (auto& [pre_w, post_w] : layers) {
    q.clear();
    k.clear();
    v.clear();
    for (std::int64_t t = 0; t < padded; t += tile) {
      in = {hidden.slice(0, t, t + tile), cos.slice(0, t, t + tile), sin.slice(0, t, t + tile)};
      in.insert(in.end(), pre_w.begin(), pre_w.end());
      std::vector<at::Tensor> qkv = pre->run(in);
      q.push_back(qkv.at(0));
      k.push_back(qkv.at(1));
      v.push_back(qkv.at(2));
    }
    attend(at::cat(q, 2), at::cat(k, 2), at::cat(v, 2), plan, pack, pad, halves);
    // The compiled blocks take their inputs contiguous, as exported: slices of the lse's along the token
    // axis are not.
    out.clear();
    for (std::int64_t t = 0; t < padded; t += tile) {
      in = {hidden.slice(0, t, t + tile), halves[0].slice(0, t, t + tile), halves[1].slice(2, t, t + tile).contiguous(),
            halves[2].slice(0, t, t + tile), halves[3].slice(2, t, t + tile).contiguous()};
      in.insert(in.end(), post_w.begin(), post_w.end());
      out.push_back(post->run(in).at(0));
    }
    hidden = at::cat(out);
  }
  // The score head one row per call (its GEMM then has one shape whatever the pass holds), with Hugging
  // Face's rounding points (Python's last_token_pool_reference): float32 statistics, cast back, weight in
  // the model dtype.
  const at::Tensor flat = hidden.reshape({-1, arch.hidden}), head = score.reshape({1, arch.hidden});
  std::vector<at::Tensor> scores;
  for (std::int64_t i = 0; i < trows.size(0); ++i) {
    at::Tensor x = flat.index_select(0, trows.slice(0, i, i + 1));
    at::Tensor xf = x.to(at::kFloat);
    at::Tensor variance = xf.pow(2).mean(-1, true);
    at::Tensor normed = norm * (xf * at::rsqrt(variance + arch.eps)).to(dtype);
    scores.push_back(at::linear(normed, head).reshape(-1).to(at::kFloat));
  }
  return at::cat(scores);
}

ScorerStatus Model::scores(const plan::Plan& plan, const std::vector<plan::Unit>& pack, std::vector<double>* out) {
  try {
    c10::InferenceMode guard;
    at::Tensor s = impl_->forward(plan, pack);
    const float* p = s.contiguous().data_ptr<float>();
    out->assign(p, p + s.numel());
    return {};
  } catch (const Failure& f) {
    return f.status;
  } catch (const std::bad_alloc&) {
    return {ScorerCode::out_of_memory, "out of memory in the forward pass"};
  } catch (const std::exception& ex) {
    return {ScorerCode::model_error, "libtorch: " + std::string(ex.what()).substr(0, 1000)};
  }
}

}  // namespace codescaler::model
