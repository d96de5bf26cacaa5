// Parsing and validation of configs/policies.yaml into a PolicySet.
//
// One function per section, each of which applies the keys present in its YAML node on top of
// the struct it is given: `defaults:` is applied to the built-in defaults, then each team's
// section to a copy of the result, which is how inheritance works (see policy_set.h).
// Cross-field rules run on the merged policy, and are reported at the most specific key the
// team itself wrote, saying which values it inherited.
//
// Decisions beyond the header's contract:
//   - Team names and key ids are identifiers (letters, digits, '_', '-', '.', at most 64
//     bytes), as in switchyard.yaml: they appear in logs, metric labels and ledgers.
//   - Key ids and key hashes are unique across all teams (one key maps to one team).
//   - `defaults:` may not hold `keys`.
//   - allowed_models may not be empty; '*' may only end a pattern.
//   - A team that may use the cloud, in a mode other than local_only, needs at least one
//     cloud model.
//   - Budgets are capped at $1e9 and rates at 1e9 requests / 1e13 tokens per minute, to catch
//     unit mistakes; hold_tokens is 0..4096, min_tokens 1..4096, local_latency_budget_ms at
//     most an hour; rank.window 10..100000 and rank.warmup 1..window.
#include "policies/policy_set.h"

#include <algorithm>
#include <cassert>
#include <cctype>
#include <charconv>
#include <map>
#include <utility>

#include "policies/yaml_reader.h"

namespace policies {
namespace {

#define POLICY_TRY(expr)                       \
  do {                                         \
    if (api::Status st_ = (expr); !st_.ok()) { \
      return st_;                              \
    }                                          \
  } while (false)

constexpr std::string_view kDefaultTrigger = "confidence_rank < 0.15 OR complexity > 0.9";

// The keys of a team's section; `defaults:` has the same but `keys`.
const std::vector<std::string_view> kDefaultsKeys = {
    "allowed_models", "allow_cloud", "budget", "rate_limits", "routing", "redact_prompts"};


std::string formatNumber(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, res.ptr);
}

// "policies.yaml:12: teams.research.routing.local_model"
std::string locationOf(const YamlReader& r) {
  return r.sourceName() + ":" + std::to_string(r.line()) + ": " + r.path();
}

// The node at `path` below `r`, when every key along it is present. (Never assign a
// YamlReader: yaml-cpp's Node::operator= rebinds the node inside the document, not the handle.)
std::optional<YamlReader> childAt(const YamlReader& r, const std::string_view* first,
                                  const std::string_view* last) {
  if (first == last) return r;
  std::optional<YamlReader> c = r.child(*first);
  if (!c) return std::nullopt;
  return childAt(*c, first + 1, last);
}

std::optional<YamlReader> childAt(const YamlReader& r,
                                  std::initializer_list<std::string_view> path) {
  return childAt(r, path.begin(), path.end());
}

// An optional limit: absent keeps `*out`, null (`~`) removes it, a value must be in range.
template <typename T, typename Read>
api::Status readLimit(const YamlReader& r, std::string_view key, std::optional<T>* out, Read read) {
  std::optional<YamlReader> c = r.child(key);
  if (!c) return r.expectMap();
  if (c->isNull()) {
    out->reset();
    return api::Status();
  }
  auto value = read(*c);
  if (!value.ok()) return value.status();
  *out = *value;
  return api::Status();
}

api::Status readUsd(const YamlReader& r, std::string_view key, std::optional<double>* out) {
  return readLimit(r, key, out,
                   [](const YamlReader& c) { return c.asDouble(NumberRange::atLeast(0, 1e9)); });
}

api::Status readRate(const YamlReader& r, std::string_view key, int64_t max,
                     std::optional<int64_t>* out) {
  return readLimit(r, key, out, [max](const YamlReader& c) { return c.asInt(1, max); });
}

// ---- sections of a team ----------------------------------------------------------------------

api::Status parseBudget(const YamlReader& r, BudgetPolicy* b) {
  POLICY_TRY(
      r.checkNoUnknownKeys({"monthly_usd", "daily_usd", "alert_thresholds", "when_exhausted"}));
  POLICY_TRY(readUsd(r, "monthly_usd", &b->monthly_usd));
  POLICY_TRY(readUsd(r, "daily_usd", &b->daily_usd));
  if (r.has("alert_thresholds")) {
    std::vector<double> thresholds;
    POLICY_TRY(r.forEachItem("alert_thresholds", [&](const YamlReader& item) -> api::Status {
      auto v = item.asDouble(NumberRange::positive(10));
      if (!v.ok()) return v.status();
      if (!thresholds.empty() && *v == thresholds.back()) {
        return item.error("repeats " + formatNumber(*v));
      }
      if (!thresholds.empty() && *v < thresholds.back()) {
        return item.error("must be greater than the threshold before it (" +
                          formatNumber(thresholds.back()) +
                          "): list thresholds in ascending order");
      }
      thresholds.push_back(*v);
      return api::Status();
    }));
    b->alert_thresholds = std::move(thresholds);
  }
  std::string when = b->when_exhausted == WhenExhausted::kReject ? "reject" : "local_only";
  POLICY_TRY(r.readChoice("when_exhausted", &when, {"local_only", "reject"}));
  b->when_exhausted = when == "reject" ? WhenExhausted::kReject : WhenExhausted::kLocalOnly;
  return api::Status();
}

api::Status parseRateLimit(const YamlReader& r, RateLimit* l) {
  POLICY_TRY(readRate(r, "requests_per_minute", 1'000'000'000, &l->requests_per_minute));
  return readRate(r, "tokens_per_minute", 10'000'000'000'000, &l->tokens_per_minute);
}

api::Status parseRateLimits(const YamlReader& r, RateLimitPolicy* p) {
  POLICY_TRY(r.checkNoUnknownKeys({"requests_per_minute", "tokens_per_minute", "per_key"}));
  POLICY_TRY(parseRateLimit(r, &p->team));
  YamlReader per_key = r.section("per_key");
  POLICY_TRY(per_key.checkNoUnknownKeys({"requests_per_minute", "tokens_per_minute"}));
  return parseRateLimit(per_key, &p->per_key);
}

// A list of model names, each once.
api::Status readModelList(const YamlReader& r, std::string_view key,
                          std::vector<std::string>* out) {
  if (!r.has(key)) return api::Status();
  std::vector<std::string> names;
  POLICY_TRY(r.forEachItem(key, [&](const YamlReader& item) -> api::Status {
    auto name = item.asName();
    if (!name.ok()) return name.status();
    if (std::find(names.begin(), names.end(), *name) != names.end()) {
      return item.error("lists '" + *name + "' twice");
    }
    names.push_back(std::move(name).value());
    return api::Status();
  }));
  *out = std::move(names);
  return api::Status();
}

std::string_view modeName(RoutingMode mode) { return routingModeName(mode); }

std::shared_ptr<const Trigger> defaultTrigger() {
  static const std::shared_ptr<const Trigger> kTrigger = [] {
    auto t = Trigger::parse(kDefaultTrigger);
    assert(t.ok());
    return std::make_shared<const Trigger>(std::move(t).value());
  }();
  return kTrigger;
}

// routing.rank: the warm-up may not exceed the window it fills (checked on the merged values,
// at the key the section wrote).
api::Status parseRank(const YamlReader& r, RankPolicy* p) {
  POLICY_TRY(r.checkNoUnknownKeys({"window", "warmup"}));
  POLICY_TRY(r.readInt("window", &p->window, 10, 100'000));
  POLICY_TRY(r.readInt("warmup", &p->warmup, 1, 100'000));
  if (p->warmup > p->window && (r.has("warmup") || r.has("window"))) {
    return r.errorAt(r.has("warmup") ? "warmup" : "window",
                     "warmup (" + std::to_string(p->warmup) + ") exceeds window (" +
                         std::to_string(p->window) + "): the rank would never be known");
  }
  return api::Status();
}

api::Status parseRouting(const YamlReader& r, RoutingPolicy* p) {
  POLICY_TRY(r.checkNoUnknownKeys({"mode", "local_model", "cloud_models", "trigger", "hold_tokens",
                                   "min_tokens", "local_latency_budget_ms", "shadow_rate",
                                   "rank", "draft", "draft_gpu_seconds_per_hour"}));
  std::string mode(modeName(p->mode));
  POLICY_TRY(r.readChoice("mode", &mode, {"cascade", "local_only", "cloud_only", "cloud_first"}));
  for (RoutingMode m : {RoutingMode::kCascade, RoutingMode::kLocalOnly, RoutingMode::kCloudOnly,
                        RoutingMode::kCloudFirst}) {
    if (modeName(m) == mode) p->mode = m;
  }
  POLICY_TRY(r.readName("local_model", &p->local_model));
  POLICY_TRY(readModelList(r, "cloud_models", &p->cloud_models));
  if (std::optional<YamlReader> node = r.child("trigger")) {
    auto text = node->asString();
    if (!text.ok()) return text.status();
    auto trigger = Trigger::parse(*text);
    if (!trigger.ok()) return node->error(trigger.status().message());
    p->trigger = std::make_shared<const Trigger>(std::move(trigger).value());
  }
  POLICY_TRY(r.readInt("hold_tokens", &p->hold_tokens, 0, 4096));
  POLICY_TRY(r.readInt("min_tokens", &p->min_tokens, 1, 4096));
  POLICY_TRY(r.readInt("local_latency_budget_ms", &p->local_latency_budget_ms, 0, 3'600'000));
  POLICY_TRY(parseRank(r.section("rank"), &p->rank));
  std::string draft = p->draft == RoutingPolicy::Draft::kCut ? "cut" : "complete";
  POLICY_TRY(r.readChoice("draft", &draft, {"complete", "cut"}));
  p->draft = draft == "cut" ? RoutingPolicy::Draft::kCut : RoutingPolicy::Draft::kComplete;
  POLICY_TRY(r.readDouble("draft_gpu_seconds_per_hour", &p->draft_gpu_seconds_per_hour,
                          NumberRange::atLeast(0, 3600)));
  return r.readDouble("shadow_rate", &p->shadow_rate, NumberRange::atLeast(0, 1));
}

api::Status parseAllowedModels(const YamlReader& r, std::vector<std::string>* out) {
  if (!r.has("allowed_models")) return api::Status();
  std::vector<std::string> patterns;
  POLICY_TRY(readModelList(r, "allowed_models", &patterns));
  YamlReader list = *r.child("allowed_models");
  if (patterns.empty()) {
    return list.error("must list at least one model name or pattern (\"*\" allows every model)");
  }
  for (size_t i = 0; i < patterns.size(); ++i) {
    size_t star = patterns[i].find('*');
    if (star != std::string::npos && star + 1 != patterns[i].size()) {
      return list.error("'" + patterns[i] +
                        "': '*' may only end a pattern (\"gpt-*\" allows every name that starts "
                        "with \"gpt-\")");
    }
  }
  *out = std::move(patterns);
  return api::Status();
}

}  // namespace

std::string_view routingModeName(RoutingMode mode) {
  switch (mode) {
    case RoutingMode::kCascade:
      return "cascade";
    case RoutingMode::kLocalOnly:
      return "local_only";
    case RoutingMode::kCloudOnly:
      return "cloud_only";
    case RoutingMode::kCloudFirst:
      return "cloud_first";
  }
  return "cascade";
}

bool TeamPolicy::allowsModel(std::string_view model) const {
  for (const std::string& pattern : allowed_models) {
    if (!pattern.empty() && pattern.back() == '*') {
      if (model.starts_with(std::string_view(pattern).substr(0, pattern.size() - 1))) return true;
    } else if (model == pattern) {
      return true;
    }
  }
  return false;
}

// Fills a PolicySet from the document (a friend of PolicySet).
class PolicySetParser {
 public:
  explicit PolicySetParser(PolicySet* out) : out_(out) {}

  api::Status parseDocument(const YamlReader& root) {
    if (!root.isNull() && !root.isMap()) {
      return root.error(
          "expected a map of sections (defaults, teams, alerts) at the top level, got " +
          root.describe());
    }
    POLICY_TRY(root.checkNoUnknownKeys({"defaults", "teams", "alerts"}));
    out_->source_ = root.sourceName();

    const YamlReader defaults = root.section("defaults");
    out_->defaults_.routing.trigger = defaultTrigger();
    if (defaults.has("keys")) {
      return defaults.errorAt("keys", "keys belong to a team: list them under teams.<name>.keys");
    }
    POLICY_TRY(applyTeam(defaults, &out_->defaults_, /*is_defaults=*/true));
    POLICY_TRY(checkTeam(defaults, defaults, out_->defaults_));
    defaults_node_.emplace(defaults);
    noteModels(defaults, out_->defaults_);

    const YamlReader teams = root.section("teams");
    if (teams.isList()) {
      return teams.error(
          "expected a map of team names to their policies (research: {keys: ...}), "
          "got a list");
    }
    POLICY_TRY(
        teams.forEachEntry([&](const std::string& name, const YamlReader& node) -> api::Status {
          if (!isIdentifier(name)) {
            return node.keyError("team names must be 1 to 64 letters, digits, '_', '-' or '.'");
          }
          if (!node.isNull() && !node.isMap()) {
            return node.error("expected a map with the team's keys and overrides, got " +
                              node.describe());
          }
          TeamPolicy team = out_->defaults_;
          team.name = name;
          team.line = node.keyLine();
          POLICY_TRY(applyTeam(node, &team, /*is_defaults=*/false));
          POLICY_TRY(checkTeam(node, defaults, team));
          noteModels(node, team);
          out_->teams_.push_back(std::move(team));
          return api::Status();
        }));
    return parseAlerts(root.section("alerts"));
  }

 private:
  // Applies the keys present in `r` (a team's section, or defaults) to `t`.
  api::Status applyTeam(const YamlReader& r, TeamPolicy* t, bool is_defaults) {
    if (is_defaults) {
      POLICY_TRY(r.checkNoUnknownKeys(kDefaultsKeys));
    } else {
      std::vector<std::string_view> keys = kDefaultsKeys;
      keys.insert(keys.begin(), "keys");
      POLICY_TRY(r.checkNoUnknownKeys(keys));
      POLICY_TRY(r.forEachItem("keys", [&](const YamlReader& item) -> api::Status {
        TeamKey key;
        POLICY_TRY(parseKey(item, t->name, &key));
        t->keys.push_back(std::move(key));
        return api::Status();
      }));
    }
    POLICY_TRY(parseAllowedModels(r, &t->allowed_models));
    POLICY_TRY(r.readBool("allow_cloud", &t->allow_cloud));
    POLICY_TRY(parseBudget(r.section("budget"), &t->budget));
    POLICY_TRY(parseRateLimits(r.section("rate_limits"), &t->rate_limits));
    POLICY_TRY(parseRouting(r.section("routing"), &t->routing));
    return r.readBool("redact_prompts", &t->redact_prompts);
  }

  api::Status parseKey(const YamlReader& r, const std::string& team, TeamKey* k) {
    POLICY_TRY(r.checkNoUnknownKeys({"id", "sha256"}));
    POLICY_TRY(readIdentifier(r, "id", &k->id, Presence::kRequired));
    if (auto [it, inserted] = key_id_lines_.emplace(k->id, r.child("id")->line()); !inserted) {
      return r.errorAt("id", "duplicate key id '" + k->id + "' (first defined at line " +
                                 std::to_string(it->second) + ")");
    }
    POLICY_TRY(readKeySha256(r, "sha256", &k->sha256));
    if (auto [it, inserted] = key_owner_.emplace(k->sha256, team + "/" + k->id); !inserted) {
      return r.errorAt("sha256", "the same key is already used by " + it->second);
    }
    return api::Status();
  }

  // " (inherited from defaults)" when the team's own section does not set `path`.
  static std::string origin(const YamlReader& team, const YamlReader& defaults,
                            std::initializer_list<std::string_view> path) {
    if (childAt(team, path)) return "";
    return childAt(defaults, path) ? " (inherited from defaults)" : " (the built-in default)";
  }

  // An error at the first of `paths` that the team's own section sets, else at the team's key.
  static api::Status errorAtFirst(
      const YamlReader& team, std::initializer_list<std::initializer_list<std::string_view>> paths,
      std::string_view problem) {
    for (auto path : paths) {
      if (std::optional<YamlReader> node = childAt(team, path)) return node->error(problem);
    }
    return team.keyError(problem);
  }

  // Rules across the keys of one merged policy. `team` is the team's own section (or defaults).
  static api::Status checkTeam(const YamlReader& team, const YamlReader& defaults,
                               const TeamPolicy& t) {
    const RoutingMode mode = t.routing.mode;
    const std::string mode_text = "routing.mode '" + std::string(modeName(mode)) + "'" +
                                  origin(team, defaults, {"routing", "mode"});
    if (!t.allow_cloud && (mode == RoutingMode::kCloudOnly || mode == RoutingMode::kCloudFirst)) {
      return errorAtFirst(
          team, {{"routing", "mode"}, {"allow_cloud"}},
          "allow_cloud is false" + origin(team, defaults, {"allow_cloud"}) + " but " + mode_text +
              " sends requests to the cloud; use mode local_only or cascade (which stays local "
              "for this team)");
    }
    if (t.allow_cloud && mode != RoutingMode::kLocalOnly && t.routing.cloud_models.empty()) {
      return errorAtFirst(team, {{"routing", "cloud_models"}, {"routing", "mode"}},
                          mode_text + " needs at least one model in routing.cloud_models" +
                              origin(team, defaults, {"routing", "cloud_models"}) +
                              "; list one, or use mode local_only");
    }
    return api::Status();
  }

  // Records the models that `t` may route to, located where they were written: in the team's
  // own section, else in defaults, else nowhere (the built-in default).
  void noteModels(const YamlReader& team, const TeamPolicy& t) {
    const RoutingPolicy& r = t.routing;
    auto where = [&](std::initializer_list<std::string_view> path) -> std::optional<YamlReader> {
      if (auto node = childAt(team, path)) return node;
      return childAt(*defaults_node_, path);
    };
    if (r.mode != RoutingMode::kCloudOnly) {
      std::optional<YamlReader> node = where({"routing", "local_model"});
      out_->models_.push_back(
          {r.local_model, t.name,
           node ? locationOf(*node)
                : out_->source_ + ": defaults.routing.local_model (the built-in default)"});
    }
    if (!t.allow_cloud || r.mode == RoutingMode::kLocalOnly) return;
    std::optional<YamlReader> list = where({"routing", "cloud_models"});
    std::vector<std::string> locations;
    if (list) {
      (void)list->forEachItem([&](const YamlReader& item) {
        locations.push_back(locationOf(item));
        return api::Status();
      });
    }
    for (size_t i = 0; i < r.cloud_models.size(); ++i) {
      out_->models_.push_back({r.cloud_models[i], t.name,
                               i < locations.size()
                                   ? locations[i]
                                   : out_->source_ + ": defaults.routing.cloud_models[" +
                                         std::to_string(i) + "] (the built-in default)"});
    }
  }

  api::Status parseAlerts(const YamlReader& r) {
    AlertsPolicy& a = out_->alerts_;
    POLICY_TRY(r.checkNoUnknownKeys({"webhook_url", "webhook_retries"}));
    POLICY_TRY(r.readString("webhook_url", &a.webhook_url));
    const std::string& url = a.webhook_url;
    if (!url.empty()) {
      size_t scheme = url.starts_with("https://") ? 8 : url.starts_with("http://") ? 7 : 0;
      if (scheme == 0 || url.size() == scheme || url[scheme] == '/') {
        return r.errorAt("webhook_url",
                         "must be \"\" (no webhook) or an http:// or https:// URL with a host, "
                         "got '" +
                             url + "'");
      }
      if (std::any_of(url.begin(), url.end(),
                      [](unsigned char c) { return std::isspace(c) || std::iscntrl(c); })) {
        return r.errorAt("webhook_url", "must not contain whitespace or control characters");
      }
    }
    return r.readInt("webhook_retries", &a.webhook_retries, 0, 10);
  }

  PolicySet* out_;
  std::optional<YamlReader> defaults_node_;       // the `defaults:` section, once read
  std::map<std::string, int> key_id_lines_;       // key id -> line it was first defined on
  std::map<std::string, std::string> key_owner_;  // sha256 -> "team/key-id"
};

#undef POLICY_TRY

api::StatusOr<std::shared_ptr<const PolicySet>> PolicySet::parse(std::string_view yaml,
                                                                 std::string_view source_name) {
  try {
    auto root = YamlReader::parse(yaml, source_name);
    if (!root.ok()) return root.status();
    auto set = std::make_shared<PolicySet>();
    PolicySetParser parser(set.get());
    if (api::Status st = parser.parseDocument(*root); !st.ok()) return st;
    return std::shared_ptr<const PolicySet>(std::move(set));
  } catch (const std::exception& e) {
    // The reader returns statuses; this only stops an unexpected exception (e.g. bad_alloc)
    // from escaping the parser.
    return api::Status(api::ErrorCode::kConfig,
                       std::string(source_name) + ": cannot parse: " + e.what());
  }
}

api::StatusOr<std::shared_ptr<const PolicySet>> PolicySet::load(const std::string& path) {
  auto text = readTextFile(path);
  if (!text.ok()) return text.status();
  return parse(*text, path);
}

const TeamPolicy* PolicySet::team(std::string_view name) const {
  for (const TeamPolicy& t : teams_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

const TeamPolicy& PolicySet::policyFor(std::string_view name) const {
  const TeamPolicy* t = team(name);
  return t != nullptr ? *t : defaults_;
}

}  // namespace policies
