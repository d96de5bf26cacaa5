// Internals shared by the GGUF Gemma files (engine/gguf_gemma.cpp: the names, Gemma 3, the
// tokenizer keys; engine/gguf_gemma4.cpp: Gemma 4). Not part of the engine's API.
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"
#include "engine/gguf.h"
#include "engine/model_config.h"

namespace engine::gguf::internal {

api::Status configError(std::string message);
// "<arch>.<name>".
std::string key(std::string_view arch, std::string_view name);

// Reads "<arch>.*" keys with the ranges parseGemmaConfig applies to config.json.
class MetaReader {
 public:
  MetaReader(const GgufFile& f, std::string_view arch) : f_(f), arch_(arch) {}

  std::string full(std::string_view name) const { return key(arch_, name); }
  bool has(std::string_view name) const { return f_.has(full(name)); }
  const Value* find(std::string_view name) const { return f_.find(full(name)); }

  // Required (def == nullopt) or defaulted integer in [lo, hi].
  api::Status integer(std::string_view name, std::optional<int64_t> def, int64_t lo, int64_t hi,
                 int64_t* out) const {
    const std::string k = full(name);
    if (!f_.has(k) && def) {
      *out = *def;
      return api::Status();
    }
    if (const Value* v = f_.find(k); v != nullptr && v->isArray()) {
      return configError(f_.path() + ": key '" + k +
                         "' is a per-layer array; one value for all layers is expected");
    }
    auto v = f_.getI64(k);
    if (!v.ok()) return v.status();
    if (*v < lo || *v > hi) {
      return configError(f_.path() + ": key '" + k + "' is " + std::to_string(*v) + ", outside [" +
                         std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    *out = *v;
    return api::Status();
  }
  api::Status integer(std::string_view name, std::optional<int64_t> def, int64_t lo, int64_t hi,
                 int* out) const {
    int64_t x = 0;
    if (api::Status s = integer(name, def, lo, hi, &x); !s.ok()) return s;
    *out = static_cast<int>(x);
    return api::Status();
  }
  // A finite real in (lo, hi].
  api::Status real(std::string_view name, std::optional<double> def, double lo, double hi,
              double* out) const {
    const std::string k = full(name);
    if (!f_.has(k) && def) {
      *out = *def;
      return api::Status();
    }
    auto v = f_.getF64(k);
    if (!v.ok()) return v.status();
    if (!std::isfinite(*v) || *v <= lo || *v > hi) {
      return configError(f_.path() + ": key '" + k + "' is " + std::to_string(*v) + ", outside (" +
                         std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    *out = *v;
    return api::Status();
  }

 private:
  const GgufFile& f_;
  std::string_view arch_;
};

// Layer types: the bool array attention.sliding_window_pattern when present, else llama.cpp's
// Gemma 3 pattern of 6; no sliding layers at all without attention.sliding_window (or with 0).
api::Status readLayerTypes(const GgufFile& f, const MetaReader& k, GemmaConfig* c);
// bos / eos / pad from tokenizer.ggml.*, and the eos set completed by text (gguf_gemma.cpp).
api::Status readSpecialIds(const GgufFile& f, GemmaConfig* c);
// The keys every Gemma writer starts with: general.architecture, general.quantization_version,
// and "<arch>." context_length, embedding_length, block_count.
std::vector<KeyValue> headMetadata(std::string_view arch, const GemmaConfig& c);
// The special ids llama.cpp reads from the model side (the tokenizer's own are merged later).
void specialIdMetadata(const GemmaConfig& c, std::vector<KeyValue>* m);

// Gemma 4 (engine/gguf_gemma4.cpp).
api::StatusOr<std::vector<KeyValue>> gemma4Metadata(const GemmaConfig& c);
api::StatusOr<GemmaConfig> gemma4ConfigFromGguf(const GgufFile& f);

}  // namespace engine::gguf::internal
