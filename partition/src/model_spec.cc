#include "lockstep/partition/model_spec.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "lockstep/common/error.h"

namespace lockstep::partition {
namespace {

using nlohmann::json;

// Defaults of the transformers config classes for fields a config may omit.
struct FamilyDefaults {
  const char* model_type;
  double rope_theta;
  double rms_norm_eps;
  int64_t max_position_embeddings;
};

// Sorted by model_type; SupportedModelTypes() lists them in this order.
constexpr FamilyDefaults kFamilies[] = {
    {"llama", 10000.0, 1e-6, 2048},
    {"mistral", 10000.0, 1e-6, 4096 * 32},
    {"mixtral", 1e6, 1e-5, 4096 * 32},
    {"qwen2", 10000.0, 1e-6, 32768},
};

// A JSON value as it appears in a message, kept to one short line.
std::string Show(const json& v) {
  std::string s = v.dump();
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

class Reader {
 public:
  Reader(const json& j, const std::string& source) : j_(j), source_(source) {}

  [[noreturn]] void Fail(const std::string& message) const {
    throw InvalidInput(source_ + ": " + message);
  }

  const json* Find(const char* field) const {
    auto it = j_.find(field);
    if (it == j_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  int64_t PositiveInt(const char* field, std::optional<int64_t> fallback) const {
    const json* v = Find(field);
    if (v == nullptr) {
      if (fallback) return *fallback;
      Fail(std::string("missing required field '") + field + "' (a positive integer)");
    }
    if (!v->is_number_integer() || v->get<int64_t>() <= 0) {
      Fail(std::string("field '") + field + "' must be a positive integer, got " + Show(*v));
    }
    return v->get<int64_t>();
  }

  double PositiveNumber(const char* field, double fallback) const {
    const json* v = Find(field);
    if (v == nullptr) return fallback;
    if (!v->is_number() || !(v->get<double>() > 0.0)) {
      Fail(std::string("field '") + field + "' must be a positive number, got " + Show(*v));
    }
    return v->get<double>();
  }

  bool Bool(const char* field, bool fallback) const {
    const json* v = Find(field);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) {
      Fail(std::string("field '") + field + "' must be true or false, got " + Show(*v));
    }
    return v->get<bool>();
  }

 private:
  const json& j_;
  const std::string& source_;
};

std::optional<RopeScaling> ParseRopeScaling(const Reader& top, const std::string& source) {
  const json* v = top.Find("rope_scaling");
  if (v == nullptr) return std::nullopt;
  if (!v->is_object()) {
    top.Fail("field 'rope_scaling' must be an object or null, got " + Show(*v));
  }
  Reader r(*v, source);
  const json* type = r.Find("rope_type");
  if (type == nullptr) type = r.Find("type");
  if (type == nullptr || !type->is_string()) {
    top.Fail(
        "field 'rope_scaling.rope_type' must be one of default, linear, dynamic, llama3, yarn");
  }
  RopeScaling s;
  s.type = type->get<std::string>();
  if (s.type == "default") return std::nullopt;
  if (s.type != "linear" && s.type != "dynamic" && s.type != "llama3" && s.type != "yarn") {
    top.Fail("rope_scaling type '" + s.type +
             "' is not supported (supported: default, linear, dynamic, llama3, yarn)");
  }
  if (r.Find("factor") == nullptr) top.Fail("missing field 'rope_scaling.factor'");
  s.factor = r.PositiveNumber("factor", 1.0);
  if (s.type == "llama3") {
    for (const char* f : {"low_freq_factor", "high_freq_factor"}) {
      if (r.Find(f) == nullptr) {
        top.Fail(std::string("missing field 'rope_scaling.") + f + "' (required for llama3)");
      }
    }
    s.low_freq_factor = r.PositiveNumber("low_freq_factor", 0.0);
    s.high_freq_factor = r.PositiveNumber("high_freq_factor", 0.0);
    s.original_max_position_embeddings =
        r.PositiveInt("original_max_position_embeddings", std::nullopt);
    if (s.high_freq_factor <= s.low_freq_factor) {
      top.Fail("rope_scaling.high_freq_factor must exceed low_freq_factor");
    }
  }
  return s;
}

std::optional<Dtype> ParseTorchDtype(const Reader& r) {
  const json* v = r.Find("torch_dtype");
  if (v == nullptr) v = r.Find("dtype");
  if (v == nullptr) return std::nullopt;
  if (v->is_string()) {
    const std::string s = v->get<std::string>();
    if (s == "float32") return Dtype::kFp32;
    if (s == "float16") return Dtype::kFp16;
    if (s == "bfloat16") return Dtype::kBf16;
  }
  r.Fail("field 'torch_dtype' must be float32, float16 or bfloat16, got " + Show(*v));
}

}  // namespace

std::vector<std::string> SupportedModelTypes() {
  std::vector<std::string> out;
  for (const FamilyDefaults& f : kFamilies) out.emplace_back(f.model_type);
  return out;
}

ModelSpec ParseModelSpec(std::string_view json_text, const std::string& source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    for (char& c : what) {
      if (c == '\n') c = ' ';
    }
    throw InvalidInput(source + ": not valid JSON: " + what);
  }
  if (!j.is_object()) throw InvalidInput(source + ": expected a JSON object (a config.json)");
  Reader r(j, source);

  std::string supported;
  for (const std::string& t : SupportedModelTypes()) {
    supported += (supported.empty() ? "" : ", ") + t;
  }
  const json* type = r.Find("model_type");
  if (type == nullptr) r.Fail("missing required field 'model_type' (supported: " + supported + ")");
  if (!type->is_string()) r.Fail("field 'model_type' must be a string, got " + Show(*type));
  const FamilyDefaults* family = nullptr;
  for (const FamilyDefaults& f : kFamilies) {
    if (type->get<std::string>() == f.model_type) family = &f;
  }
  if (family == nullptr) {
    r.Fail("model_type '" + type->get<std::string>() +
           "' is not supported (supported: " + supported + ")");
  }

  ModelSpec m;
  m.model_type = family->model_type;
  if (const json* n = r.Find("_name_or_path"); n != nullptr && n->is_string()) {
    m.name = n->get<std::string>();
  }
  m.hidden_size = r.PositiveInt("hidden_size", std::nullopt);
  m.intermediate_size = r.PositiveInt("intermediate_size", std::nullopt);
  m.num_layers = r.PositiveInt("num_hidden_layers", std::nullopt);
  m.num_heads = r.PositiveInt("num_attention_heads", std::nullopt);
  m.num_kv_heads = r.PositiveInt("num_key_value_heads", m.num_heads);
  m.vocab_size = r.PositiveInt("vocab_size", std::nullopt);
  if (m.num_heads % m.num_kv_heads != 0) {
    r.Fail("num_attention_heads (" + std::to_string(m.num_heads) +
           ") must be a multiple of num_key_value_heads (" + std::to_string(m.num_kv_heads) + ")");
  }
  if (r.Find("head_dim") != nullptr) {
    m.head_dim = r.PositiveInt("head_dim", std::nullopt);
  } else if (m.hidden_size % m.num_heads != 0) {
    r.Fail("hidden_size (" + std::to_string(m.hidden_size) +
           ") is not a multiple of num_attention_heads (" + std::to_string(m.num_heads) +
           ") and there is no head_dim field");
  } else {
    m.head_dim = m.hidden_size / m.num_heads;
  }
  m.tie_word_embeddings = r.Bool("tie_word_embeddings", false);

  const std::string t = m.model_type;
  if (t == "llama") {
    m.qkv_bias = m.o_bias = r.Bool("attention_bias", false);
    m.mlp_bias = r.Bool("mlp_bias", false);
  } else if (t == "qwen2") {
    // Qwen2Attention always has q/k/v biases and no o_proj bias; the MLP has none.
    m.qkv_bias = true;
  }
  if (t == "mixtral") {
    m.num_experts = r.PositiveInt("num_local_experts", 8);
    m.experts_per_token = r.PositiveInt("num_experts_per_tok", 2);
    if (m.experts_per_token > m.num_experts) {
      r.Fail("num_experts_per_tok (" + std::to_string(m.experts_per_token) +
             ") exceeds num_local_experts (" + std::to_string(m.num_experts) + ")");
    }
  }

  m.rope_theta = r.PositiveNumber("rope_theta", family->rope_theta);
  m.rope_scaling = ParseRopeScaling(r, source);
  m.rms_norm_eps = r.PositiveNumber("rms_norm_eps", family->rms_norm_eps);
  m.max_position_embeddings =
      r.PositiveInt("max_position_embeddings", family->max_position_embeddings);
  if (t == "mistral" || t == "mixtral") {
    m.sliding_window = r.PositiveInt("sliding_window", 0);
  } else if (t == "qwen2" && r.Bool("use_sliding_window", false)) {
    m.sliding_window = r.PositiveInt("sliding_window", 0);
  }
  m.torch_dtype = ParseTorchDtype(r);
  return m;
}

ModelSpec LoadModelSpec(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path file = path;
  if (fs::is_directory(path, ec)) file = path / "config.json";
  if (!fs::is_regular_file(file, ec)) {
    throw Error(ErrorCode::kNotFound,
                file.string() +
                    ": no such file (want a Hugging Face config.json or a folder "
                    "holding one)");
  }
  std::ifstream in(file, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in && !in.eof()) throw Error(ErrorCode::kNotFound, file.string() + ": cannot read");
  ModelSpec m = ParseModelSpec(text.str(), file.string());
  if (m.name.empty()) {
    fs::path folder = fs::absolute(file, ec).parent_path();
    m.name = folder.filename().string();
  }
  return m;
}

ParameterCounts CountParameters(const ModelSpec& m) {
  ParameterCounts c;
  const int64_t h = m.hidden_size;
  c.embedding = m.vocab_size * h;
  c.attention_per_layer = h * m.q_width() + 2 * h * m.kv_width() + m.q_width() * h;
  if (m.qkv_bias) c.attention_per_layer += m.q_width() + 2 * m.kv_width();
  if (m.o_bias) c.attention_per_layer += h;
  // Gated MLP: gate and up (h -> i), down (i -> h).
  int64_t expert = 3 * h * m.intermediate_size;
  if (m.mlp_bias) expert += 2 * m.intermediate_size + h;
  const int64_t router = m.is_moe() ? h * m.num_experts : 0;
  c.mlp_per_layer = m.is_moe() ? m.num_experts * expert + router : expert;
  c.norms_per_layer = 2 * h;
  c.per_layer = c.attention_per_layer + c.mlp_per_layer + c.norms_per_layer;
  c.final_norm = h;
  c.lm_head = m.tie_word_embeddings ? 0 : m.vocab_size * h;
  c.total = c.embedding + m.num_layers * c.per_layer + c.final_norm + c.lm_head;
  const int64_t active_mlp = m.is_moe() ? m.experts_per_token * expert + router : expert;
  c.active_per_layer = c.attention_per_layer + active_mlp + c.norms_per_layer;
  c.active_total = c.embedding + m.num_layers * c.active_per_layer + c.final_norm + c.lm_head;
  return c;
}

int64_t WeightBytes(const ModelSpec& spec, Dtype dtype) {
  return CountParameters(spec).total * DtypeBytes(dtype);
}

int64_t KvCacheBytesPerToken(const ModelSpec& spec, Dtype dtype) {
  return 2 * spec.num_layers * spec.kv_width() * DtypeBytes(dtype);
}

int64_t DecodeFlopsPerToken(const ModelSpec& spec, int64_t context) {
  const ParameterCounts c = CountParameters(spec);
  // Weights used in products: everything active except norms; the LM head is the embedding
  // matrix again when tied.
  const int64_t layer_matmul = c.active_per_layer - c.norms_per_layer;
  const int64_t head = spec.vocab_size * spec.hidden_size;
  const int64_t attention = 4 * spec.num_heads * spec.head_dim * context;
  return spec.num_layers * (2 * layer_matmul + attention) + 2 * head;
}

}  // namespace lockstep::partition
