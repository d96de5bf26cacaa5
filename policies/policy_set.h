// PolicySet: what each team may do (configs/policies.yaml), parsed and validated once, then
// shared as std::shared_ptr<const PolicySet>; a reload builds a new one and swaps the pointer.
//
// The file has three sections:
//
//     defaults:   a team policy that every team inherits, key by key
//     teams:      a map of team names to their keys and what they override
//     alerts:     where budget alerts go
//
// Inheritance: a team starts as a copy of `defaults` (which starts from the built-in defaults
// documented on the structs below) and overrides only the keys it sets, recursively inside
// `budget`, `rate_limits` (and its `per_key`) and `routing`. A list (allowed_models,
// cloud_models, alert_thresholds, keys) is replaced as a whole, never merged. An optional limit
// (monthly_usd, daily_usd, requests_per_minute, tokens_per_minute) set to null (`~`) removes an
// inherited limit.
//
// A team that policies.yaml does not list (e.g. one that only switchyard.yaml names) gets the
// defaults: see policyFor(). Model names are not checked against switchyard.yaml here; the
// gateway does that with referencedModels().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"
#include "policies/trigger.h"

namespace policies {

enum class WhenExhausted {
  kLocalOnly,  // once a budget is spent, the team is served by the local engine only
  kReject,     // once a budget is spent, cloud-bound requests get 429 insufficient_quota
};

// Cloud spend limits. Windows are calendar UTC days and months.
struct BudgetPolicy {
  std::optional<double> monthly_usd;  // nullopt: no monthly limit; 0: no cloud spend at all
  std::optional<double> daily_usd;    // nullopt: no daily limit
  // Fractions of each budget whose crossing raises an alert; strictly ascending, each in (0, 10].
  std::vector<double> alert_thresholds = {0.5, 0.8, 1.0};
  WhenExhausted when_exhausted = WhenExhausted::kLocalOnly;

  bool limited() const { return monthly_usd.has_value() || daily_usd.has_value(); }
};

// One set of per-minute limits; each is a token bucket whose capacity is the per-minute amount.
struct RateLimit {
  std::optional<int64_t> requests_per_minute;  // nullopt: unlimited
  std::optional<int64_t> tokens_per_minute;    // prompt + completion tokens; nullopt: unlimited

  bool empty() const { return !requests_per_minute.has_value() && !tokens_per_minute.has_value(); }
};

struct RateLimitPolicy {
  RateLimit team;     // shared by every caller of the team
  RateLimit per_key;  // for each API key of the team (unauthenticated callers count as one key)

  bool empty() const { return team.empty() && per_key.empty(); }
};

enum class RoutingMode {
  kCascade,     // local first; escalate to cloud_models when the trigger fires
  kLocalOnly,   // never the cloud
  kCloudOnly,   // cloud_models only
  kCloudFirst,  // cloud_models first; the local engine when they fail or the budget is spent
};

std::string_view routingModeName(RoutingMode mode);  // "cascade", "local_only", ...

// `routing.rank`: the windows behind the trigger variables confidence_rank and complexity_rank
// (routers/rank_window.h): the last `window` scores of the team's local model are kept, and a
// rank is unknown until `warmup` of them are in.
struct RankPolicy {
  int window = 1000;  // 10..100000 scores
  int warmup = 50;    // 1..window scores
};

struct RoutingPolicy {
  RoutingMode mode = RoutingMode::kCascade;
  std::string local_model = "gemma-3-local";                // a model of switchyard.yaml, local
  std::vector<std::string> cloud_models = {"gpt-4o-mini"};  // escalation targets, in order
  // When a cascade escalates; never null after parsing. Built-in default:
  // "confidence_rank < 0.15 OR complexity > 0.9" (the least confident 15% of local answers and
  // the hardest requests).
  std::shared_ptr<const Trigger> trigger;
  int hold_tokens = 16;  // streamed cascade: local tokens held back until confidence is known
  int min_tokens = 8;    // tokens the local answer needs before confidence is known
  // Spill to the cloud when the local queue's expected wait exceeds this (and the budget
  // allows); 0 disables spilling.
  int64_t local_latency_budget_ms = 2000;
  // [0, 1]: fraction of local answers also sent to the cloud, so that the quality records
  // are not only the cascade's escalations (records carry it as their sampling probability).
  double shadow_rate = 0.02;
  // After an escalation, the local draft is kComplete: finished in the background (the client
  // gets the cloud's answer at once), so that the recorded pair compares two whole answers; or
  // kCut: cancelled at the cloud's first byte. Complete drafts are capped per team at
  // draft_gpu_seconds_per_hour of engine time in the last hour; over it, drafts are cut.
  enum class Draft { kComplete, kCut };
  Draft draft = Draft::kComplete;
  double draft_gpu_seconds_per_hour = 60;  // [0, 3600]; 0 cuts every draft
  RankPolicy rank;
};

struct TeamKey {
  std::string id;      // a public name for logs and ledgers ("notebook"); never the key
  std::string sha256;  // lowercase hex SHA-256 of the key (64 digits)
};

struct TeamPolicy {
  std::string name;  // "" for defaults()
  std::vector<TeamKey> keys;
  // Model names clients may ask for: exact names, "*" for any, or prefixes ending in '*'
  // ("gpt-*"). Never empty.
  std::vector<std::string> allowed_models = {"*"};
  bool allow_cloud = true;  // false: this team's data never leaves the local engine
  BudgetPolicy budget;
  RateLimitPolicy rate_limits;
  RoutingPolicy routing;
  bool redact_prompts = false;  // keep prompts out of logs and quality records
  int line = 0;                 // where the team is defined in the file (0: not in a file)

  // True when a client of this team may ask for `model` (see allowed_models).
  bool allowsModel(std::string_view model) const;
};

struct AlertsPolicy {
  std::string webhook_url;  // JSON POST on budget threshold crossings; "" = log + metric only
  int webhook_retries = 3;  // further tries after a failed POST, 0..10
};

// A model name that a policy routes to, with where it was written, so that the gateway can
// check it against switchyard.yaml and report "<location>: unknown model 'x'".
struct ModelReference {
  std::string model;     // the model name
  std::string team;      // the team whose routing uses it; "" for defaults
  std::string location;  // "policies.yaml:12: teams.research.routing.cloud_models[0]"
};

class PolicySet {
 public:
  // Parses policies.yaml text; `source_name` starts every error message. Errors are kConfig
  // reading "<source>:<line>: <key.path>: <problem>", e.g.
  // "policies.yaml:9: teams.research.routing.trigger: column 14: unknown variable ...".
  static api::StatusOr<std::shared_ptr<const PolicySet>> parse(std::string_view yaml,
                                                               std::string_view source_name);
  // Reads and parses a file (kIo when it cannot be read).
  static api::StatusOr<std::shared_ptr<const PolicySet>> load(const std::string& path);

  // The team called `name`; nullptr when the file does not list it.
  const TeamPolicy* team(std::string_view name) const;
  // The team called `name`, or defaults() for a team the file does not list.
  const TeamPolicy& policyFor(std::string_view name) const;
  const std::vector<TeamPolicy>& teams() const { return teams_; }  // in file order
  const TeamPolicy& defaults() const { return defaults_; }
  const AlertsPolicy& alerts() const { return alerts_; }
  const std::string& source() const { return source_; }

  // Every local_model and cloud_models entry of defaults() and of each team, in file order.
  const std::vector<ModelReference>& referencedModels() const { return models_; }

 private:
  friend class PolicySetParser;

  TeamPolicy defaults_;
  std::vector<TeamPolicy> teams_;
  AlertsPolicy alerts_;
  std::vector<ModelReference> models_;
  std::string source_;
};

}  // namespace policies
