#include "policies/pricing.h"

#include <algorithm>

namespace policies {

double Price::cost(const api::Usage& u) const {
  // In doubles: an upstream's usage is untrusted and int64 differences could overflow.
  double cached = std::max(0.0, static_cast<double>(u.cached_prompt_tokens));
  double written = std::max(0.0, static_cast<double>(u.cache_write_prompt_tokens));
  double written_1h =
      std::min(written, std::max(0.0, static_cast<double>(u.cache_write_1h_prompt_tokens)));
  double plain = std::max(0.0, static_cast<double>(u.prompt_tokens) - cached - written);
  double completion = std::max(0.0, static_cast<double>(u.completion_tokens));
  double tokens = (plain * input + cached * cached_input + (written - written_1h) * cache_write +
                   written_1h * cache_write_1h + completion * output) /
                  1e6;
  double calls = 0;
  for (const auto& [type, n] : u.server_tool_calls) {
    if (auto it = tool_calls.find(type); it != tool_calls.end()) {
      calls += it->second * std::max(0.0, static_cast<double>(n));
    }
  }
  return tokens * tierMultiplier(u.service_tier) + calls;
}

double Price::tierMultiplier(std::string_view tier) const {
  auto it = service_tiers.find(tier);
  return it == service_tiers.end() ? 1.0 : it->second;
}

namespace {

// A map of names to non-negative numbers (service_tiers, tool_calls) under `key`.
api::Status readNumberMap(const YamlReader& p, std::string_view key, NumberRange range,
                          std::map<std::string, double, std::less<>>& out) {
  std::optional<YamlReader> m = p.child(key);
  if (!m || m->isNull()) return api::Status();
  if (!m->isMap()) return m->error("expected a map of names to numbers, got " + m->describe());
  return m->forEachEntry([&](const std::string& name, const YamlReader& v) -> api::Status {
    auto x = v.asDouble(range);
    if (!x.ok()) return x.status();
    out[name] = *x;
    return api::Status();
  });
}

}  // namespace

api::StatusOr<PriceTable> PriceTable::read(const YamlReader& r) {
  PriceTable table;
  table.source_ = r.sourceName();
  // USD per million tokens: a price above $100,000 is surely a unit mistake.
  const NumberRange price = NumberRange::atLeast(0, 100000);
  api::Status st = r.forEachEntry([&](const std::string& provider,
                                      const YamlReader& models) -> api::Status {
    if (!models.isMap() && !models.isNull()) {
      return models.error("expected a map of model names to prices, got " + models.describe());
    }
    auto& by_model = table.prices_[provider];
    return models.forEachEntry([&](const std::string& model,
                                   const YamlReader& p) -> api::Status {
      if (!p.isMap()) {
        return p.error("expected {input: ..., output: ...} in USD per million tokens, got " +
                       p.describe());
      }
      if (api::Status s = p.checkNoUnknownKeys(
                                     {"input", "cached_input", "cache_write", "cache_write_1h",
                                      "output", "max_output", "context_window", "service_tiers",
                                      "tool_calls", "embedding"});
          !s.ok()) {
        return s;
      }
      Price out;
      if (api::Status s = p.readDouble("input", &out.input, price, Presence::kRequired); !s.ok()) {
        return s;
      }
      // An embedding model is priced by its input only; a chat model needs `output` too.
      if (api::Status s = p.readBool("embedding", &out.embedding); !s.ok()) return s;
      if (out.embedding) {
        for (std::string_view k :
             {"output", "cached_input", "cache_write", "cache_write_1h", "max_output"}) {
          if (p.has(k)) {
            return p.errorAt(k, "an embedding model is priced by `input` only");
          }
        }
      } else if (api::Status s = p.readDouble("output", &out.output, price, Presence::kRequired);
                 !s.ok()) {
        return s;
      }
      out.cached_input = out.input;
      out.cache_write = out.input;
      if (api::Status s = p.readDouble("cached_input", &out.cached_input, price); !s.ok()) {
        return s;
      }
      if (api::Status s = p.readDouble("cache_write", &out.cache_write, price); !s.ok()) {
        return s;
      }
      // Anthropic bills a 1-hour cache write at twice the input price.
      out.cache_write_1h = std::max(out.cache_write, 2 * out.input);
      if (api::Status s = p.readDouble("cache_write_1h", &out.cache_write_1h, price); !s.ok()) {
        return s;
      }
      int64_t max_output = 0;
      if (api::Status s = p.readInt("max_output", &max_output, 1, int64_t{1} << 30); !s.ok()) {
        return s;
      }
      if (max_output > 0) out.max_output_tokens = max_output;
      int64_t context = 0;
      if (api::Status s = p.readInt("context_window", &context, 1, int64_t{1} << 30); !s.ok()) {
        return s;
      }
      if (context > 0) out.context_window = context;
      if (api::Status s = readNumberMap(p, "service_tiers", NumberRange::atLeast(0, 100),
                                        out.service_tiers);
          !s.ok()) {
        return s;
      }
      // USD per call: above $100 a call is surely a unit mistake.
      if (api::Status s =
              readNumberMap(p, "tool_calls", NumberRange::atLeast(0, 100), out.tool_calls);
          !s.ok()) {
        return s;
      }
      by_model[model] = out;
      return api::Status();
    });
  });
  if (!st.ok()) return st;
  return table;
}

api::StatusOr<PriceTable> PriceTable::parse(std::string_view yaml_text,
                                            std::string_view source_name) {
  auto root = YamlReader::parse(yaml_text, source_name);
  if (!root.ok()) return root.status();
  if (!root->isMap() && !root->isNull()) {
    return root->error("expected a map of provider names to model prices, got " +
                       root->describe());
  }
  return read(*root);
}

const Price* PriceTable::find(const std::string& provider, const std::string& model) const {
  auto p = prices_.find(provider);
  if (p == prices_.end()) return nullptr;
  auto m = p->second.find(model);
  return m == p->second.end() ? nullptr : &m->second;
}

}  // namespace policies
