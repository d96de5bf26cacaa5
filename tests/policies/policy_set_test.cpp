#include "policies/policy_set.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace policies {
namespace {

const std::string kHashA(64, 'a');
const std::string kHashB(64, 'b');
const std::string kHashC(64, 'c');

std::shared_ptr<const PolicySet> parseOk(std::string_view yaml) {
  auto set = PolicySet::parse(yaml, "p.yaml");
  EXPECT_TRUE(set.ok()) << set.status().message();
  if (!set.ok()) return *PolicySet::parse("", "p.yaml");
  return *set;
}

// The message of a failed parse, which must be kConfig.
std::string parseError(std::string_view yaml) {
  auto set = PolicySet::parse(yaml, "p.yaml");
  if (set.ok()) {
    ADD_FAILURE() << "parsed:\n" << yaml;
    return "";
  }
  EXPECT_EQ(set.status().code(), api::ErrorCode::kConfig) << set.status().message();
  return set.status().message();
}

// ---- the shipped file and defaults -------------------------------------------------------------

TEST(PolicySet, ParsesTheShippedFile) {
  auto set = PolicySet::load(std::string(SY_SOURCE_DIR) + "/configs/policies.yaml");
  ASSERT_TRUE(set.ok()) << set.status().message();
  const PolicySet& p = **set;
  ASSERT_EQ(p.teams().size(), 1u);
  const TeamPolicy* local = p.team("local");
  ASSERT_NE(local, nullptr);
  EXPECT_EQ(local->name, "local");
  EXPECT_TRUE(local->keys.empty());
  EXPECT_EQ(local->allowed_models, std::vector<std::string>{"*"});
  EXPECT_TRUE(local->allow_cloud);
  EXPECT_FALSE(local->budget.limited());
  EXPECT_EQ(local->budget.alert_thresholds, (std::vector<double>{0.5, 0.8, 1.0}));
  EXPECT_EQ(local->budget.when_exhausted, WhenExhausted::kLocalOnly);
  EXPECT_TRUE(local->rate_limits.empty());
  EXPECT_EQ(local->routing.mode, RoutingMode::kCascade);
  EXPECT_EQ(local->routing.local_model, "gemma-3-local");
  EXPECT_EQ(local->routing.cloud_models, std::vector<std::string>{"gpt-4o-mini"});
  ASSERT_NE(local->routing.trigger, nullptr);
  EXPECT_EQ(local->routing.trigger->text(), "confidence_rank < 0.15 OR complexity > 0.9");
  EXPECT_EQ(local->routing.rank.window, 1000);
  EXPECT_EQ(local->routing.rank.warmup, 50);
  EXPECT_EQ(local->routing.hold_tokens, 16);
  EXPECT_EQ(local->routing.min_tokens, 8);
  EXPECT_EQ(local->routing.local_latency_budget_ms, 2000);
  EXPECT_EQ(local->routing.shadow_rate, 0.02);
  EXPECT_EQ(local->routing.draft, RoutingPolicy::Draft::kComplete);
  EXPECT_EQ(local->routing.draft_gpu_seconds_per_hour, 60);
  EXPECT_FALSE(local->redact_prompts);
  EXPECT_EQ(p.alerts().webhook_url, "");
  EXPECT_EQ(p.alerts().webhook_retries, 3);

  std::vector<std::string> models;
  for (const ModelReference& m : p.referencedModels()) models.push_back(m.team + ":" + m.model);
  EXPECT_EQ(models, (std::vector<std::string>{":gemma-3-local", ":gpt-4o-mini",
                                              "local:gemma-3-local", "local:gpt-4o-mini"}));
}

TEST(PolicySet, AnEmptyFileGivesTheBuiltInDefaults) {
  for (std::string_view text : {"", "# nothing\n", "defaults:\nteams:\nalerts:\n"}) {
    auto set = parseOk(text);
    EXPECT_TRUE(set->teams().empty());
    const TeamPolicy& d = set->defaults();
    EXPECT_EQ(d.name, "");
    EXPECT_EQ(d.allowed_models, std::vector<std::string>{"*"});
    EXPECT_TRUE(d.allow_cloud);
    EXPECT_EQ(d.routing.mode, RoutingMode::kCascade);
    EXPECT_EQ(d.routing.local_model, "gemma-3-local");
    EXPECT_EQ(d.routing.cloud_models, std::vector<std::string>{"gpt-4o-mini"});
    ASSERT_NE(d.routing.trigger, nullptr);
    EXPECT_EQ(d.routing.trigger->describe(), "confidence_rank < 0.15 OR complexity > 0.9");
    EXPECT_EQ(d.routing.rank.window, 1000);
    EXPECT_EQ(d.routing.rank.warmup, 50);
    EXPECT_EQ(set->alerts().webhook_retries, 3);
    // A team the file does not list gets the defaults.
    EXPECT_EQ(set->team("anyone"), nullptr);
    EXPECT_EQ(&set->policyFor("anyone"), &set->defaults());
  }
}

// ---- inheritance ------------------------------------------------------------------------------

constexpr std::string_view kInheriting = R"(defaults:
  allowed_models: ["gpt-*", gemma-3-local]
  budget:
    monthly_usd: 100
    daily_usd: 10
    alert_thresholds: [0.5, 1.0]
    when_exhausted: reject
  rate_limits:
    requests_per_minute: 600
    tokens_per_minute: 200000
    per_key: {requests_per_minute: 120, tokens_per_minute: 50000}
  routing:
    mode: cascade
    local_model: gemma-small
    cloud_models: [gpt-4o-mini, gpt-4o]
    trigger: "confidence < 0.85"
    hold_tokens: 32
    shadow_rate: 0.25
  redact_prompts: true
teams:
  research:
    budget: {monthly_usd: 500}
    rate_limits:
      per_key: {requests_per_minute: 60}
    routing:
      cloud_models: [claude-sonnet]
      trigger: "confidence < 0.9 OR has_tools"
  plain: {}
  unlimited:
    budget: {monthly_usd: ~, daily_usd: null}
    rate_limits: {tokens_per_minute: ~, per_key: {requests_per_minute: ~}}
)";

TEST(PolicySet, TeamsInheritDefaultsKeyByKey) {
  auto set = parseOk(kInheriting);
  ASSERT_EQ(set->teams().size(), 3u);
  EXPECT_EQ(set->teams()[0].name, "research");
  EXPECT_EQ(set->teams()[1].name, "plain");
  EXPECT_EQ(set->teams()[2].name, "unlimited");
  EXPECT_EQ(set->teams()[0].line, 21);

  const TeamPolicy& r = *set->team("research");
  EXPECT_EQ(r.budget.monthly_usd, 500);  // overridden
  EXPECT_EQ(r.budget.daily_usd, 10);     // inherited, beside an override in the same map
  EXPECT_EQ(r.budget.alert_thresholds, (std::vector<double>{0.5, 1.0}));
  EXPECT_EQ(r.budget.when_exhausted, WhenExhausted::kReject);
  EXPECT_EQ(r.rate_limits.team.requests_per_minute, 600);
  EXPECT_EQ(r.rate_limits.team.tokens_per_minute, 200000);
  EXPECT_EQ(r.rate_limits.per_key.requests_per_minute, 60);   // overridden two levels down
  EXPECT_EQ(r.rate_limits.per_key.tokens_per_minute, 50000);  // inherited two levels down
  EXPECT_EQ(r.routing.mode, RoutingMode::kCascade);
  EXPECT_EQ(r.routing.local_model, "gemma-small");
  EXPECT_EQ(r.routing.cloud_models, std::vector<std::string>{"claude-sonnet"});  // replaced
  EXPECT_EQ(r.routing.trigger->text(), "confidence < 0.9 OR has_tools");
  EXPECT_EQ(r.routing.hold_tokens, 32);
  EXPECT_EQ(r.routing.min_tokens, 8);  // built-in
  EXPECT_EQ(r.routing.shadow_rate, 0.25);
  EXPECT_TRUE(r.redact_prompts);
  EXPECT_EQ(r.allowed_models, (std::vector<std::string>{"gpt-*", "gemma-3-local"}));

  const TeamPolicy& plain = *set->team("plain");
  EXPECT_EQ(plain.budget.monthly_usd, 100);
  EXPECT_EQ(plain.routing.cloud_models, (std::vector<std::string>{"gpt-4o-mini", "gpt-4o"}));
  EXPECT_EQ(plain.routing.trigger->text(), "confidence < 0.85");
  EXPECT_EQ(plain.routing.trigger, set->defaults().routing.trigger);  // shared, not re-parsed

  const TeamPolicy& u = *set->team("unlimited");
  EXPECT_FALSE(u.budget.monthly_usd.has_value());
  EXPECT_FALSE(u.budget.daily_usd.has_value());
  EXPECT_FALSE(u.budget.limited());
  EXPECT_EQ(u.rate_limits.team.requests_per_minute, 600);
  EXPECT_FALSE(u.rate_limits.team.tokens_per_minute.has_value());
  EXPECT_FALSE(u.rate_limits.per_key.requests_per_minute.has_value());
  EXPECT_EQ(u.rate_limits.per_key.tokens_per_minute, 50000);

  // The defaults themselves are what they say.
  EXPECT_EQ(set->defaults().budget.monthly_usd, 100);
  EXPECT_EQ(set->defaults().rate_limits.per_key.requests_per_minute, 120);
}

TEST(PolicySet, ReadsKeysAndLowercasesTheirHashes) {
  auto set = parseOk(
      "teams:\n"
      "  research:\n"
      "    keys:\n"
      "      - {id: notebook, sha256: " +
      std::string(64, 'A') +
      "}\n"
      "      - id: ci-bot\n"
      "        sha256: " +
      kHashB +
      "\n"
      "  secure:\n"
      "    keys: [{id: records, sha256: " +
      kHashC +
      "}]\n"
      "    allow_cloud: false\n");
  const TeamPolicy& r = *set->team("research");
  ASSERT_EQ(r.keys.size(), 2u);
  EXPECT_EQ(r.keys[0].id, "notebook");
  EXPECT_EQ(r.keys[0].sha256, kHashA);
  EXPECT_EQ(r.keys[1].id, "ci-bot");
  EXPECT_EQ(r.keys[1].sha256, kHashB);
  const TeamPolicy& s = *set->team("secure");
  ASSERT_EQ(s.keys.size(), 1u);
  EXPECT_FALSE(s.allow_cloud);
  EXPECT_EQ(s.routing.mode, RoutingMode::kCascade);  // cascade without the cloud is fine
}

TEST(PolicySet, AllowsModelsByNameAndPrefix) {
  TeamPolicy t;
  t.allowed_models = {"gpt-*", "gemma-3-local"};
  EXPECT_TRUE(t.allowsModel("gpt-4o"));
  EXPECT_TRUE(t.allowsModel("gpt-"));
  EXPECT_TRUE(t.allowsModel("gemma-3-local"));
  EXPECT_FALSE(t.allowsModel("gemma-3-local-2"));
  EXPECT_FALSE(t.allowsModel("gpt"));
  EXPECT_FALSE(t.allowsModel("GPT-4o"));
  EXPECT_FALSE(t.allowsModel("claude-sonnet"));
  EXPECT_FALSE(t.allowsModel(""));
  t.allowed_models = {"*"};
  EXPECT_TRUE(t.allowsModel("claude-sonnet"));
  EXPECT_TRUE(t.allowsModel(""));
  t.allowed_models = {};
  EXPECT_FALSE(t.allowsModel("gpt-4o"));
}

TEST(PolicySet, ListsReferencedModelsWithWhereTheyWereWritten) {
  auto set = parseOk(R"(defaults:
  routing:
    local_model: gemma-small
    cloud_models: [gpt-4o-mini, gpt-4o]
teams:
  a: {}
  b:
    routing: {cloud_models: [claude-sonnet]}
  c:
    routing: {mode: local_only}
  d:
    routing: {mode: cloud_only, local_model: unused}
  e:
    allow_cloud: false
)");
  std::vector<std::string> got;
  for (const ModelReference& m : set->referencedModels()) {
    got.push_back(m.team + " " + m.model + " @ " + m.location);
  }
  EXPECT_EQ(got, (std::vector<std::string>{
                     " gemma-small @ p.yaml:3: defaults.routing.local_model",
                     " gpt-4o-mini @ p.yaml:4: defaults.routing.cloud_models[0]",
                     " gpt-4o @ p.yaml:4: defaults.routing.cloud_models[1]",
                     "a gemma-small @ p.yaml:3: defaults.routing.local_model",
                     "a gpt-4o-mini @ p.yaml:4: defaults.routing.cloud_models[0]",
                     "a gpt-4o @ p.yaml:4: defaults.routing.cloud_models[1]",
                     "b gemma-small @ p.yaml:3: defaults.routing.local_model",
                     "b claude-sonnet @ p.yaml:8: teams.b.routing.cloud_models[0]",
                     "c gemma-small @ p.yaml:3: defaults.routing.local_model",
                     "d gpt-4o-mini @ p.yaml:4: defaults.routing.cloud_models[0]",
                     "d gpt-4o @ p.yaml:4: defaults.routing.cloud_models[1]",
                     "e gemma-small @ p.yaml:3: defaults.routing.local_model",
                 }));
  // Built-in defaults are located at the file, saying so.
  auto bare = parseOk("teams: {x: {}}\n");
  ASSERT_EQ(bare->referencedModels().size(), 4u);
  EXPECT_EQ(bare->referencedModels()[2].location,
            "p.yaml: defaults.routing.local_model (the built-in default)");
  EXPECT_EQ(bare->referencedModels()[3].location,
            "p.yaml: defaults.routing.cloud_models[0] (the built-in default)");
}

TEST(PolicySet, ReadsAlertsAndEnvironment) {
  setenv("SY_POLICY_TEST_HOOK", "https://hooks.example.com/x", 1);
  auto set = parseOk("alerts:\n  webhook_url: ${SY_POLICY_TEST_HOOK}\n  webhook_retries: 0\n");
  EXPECT_EQ(set->alerts().webhook_url, "https://hooks.example.com/x");
  EXPECT_EQ(set->alerts().webhook_retries, 0);
  EXPECT_EQ(set->source(), "p.yaml");
}

TEST(PolicySet, LoadReportsAMissingFileAsIo) {
  auto set = PolicySet::load("/nonexistent/policies.yaml");
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), api::ErrorCode::kIo);
  EXPECT_NE(set.status().message().find("/nonexistent/policies.yaml"), std::string::npos);
}

// ---- errors ----------------------------------------------------------------------------------

TEST(PolicySetErrors, UnknownKeysSuggestTheClosest) {
  EXPECT_EQ(parseError("defualts: {}\n"),
            "p.yaml:1: defualts: unknown key; did you mean 'defaults'?");
  EXPECT_EQ(parseError("teams:\n  research:\n    budgett: {}\n"),
            "p.yaml:3: teams.research.budgett: unknown key; did you mean 'budget'?");
  EXPECT_EQ(parseError("teams:\n  research:\n    routing:\n      triger: \"true\"\n"),
            "p.yaml:4: teams.research.routing.triger: unknown key; did you mean 'trigger'?");
  EXPECT_EQ(parseError("defaults:\n  rate_limits:\n    per_key: {request_per_minute: 5}\n"),
            "p.yaml:3: defaults.rate_limits.per_key.request_per_minute: unknown key; did you mean "
            "'requests_per_minute'?");
  EXPECT_EQ(parseError("alerts: {webhook: x}\n"),
            "p.yaml:1: alerts.webhook: unknown key; did you mean 'webhook_url'?");
}

TEST(PolicySetErrors, WrongTypes) {
  EXPECT_EQ(parseError("defaults: {allow_cloud: yes}\n"),
            "p.yaml:1: defaults.allow_cloud: expected true or false, got 'yes' (YAML 1.1 words "
            "such as yes/no/on/off are not booleans here)");
  EXPECT_EQ(parseError("defaults:\n  budget: 100\n"),
            "p.yaml:2: defaults.budget: expected a map, got '100'");
  EXPECT_EQ(parseError("defaults:\n  budget: {monthly_usd: lots}\n"),
            "p.yaml:2: defaults.budget.monthly_usd: expected a finite number, got 'lots'");
  EXPECT_EQ(parseError("defaults:\n  rate_limits: {requests_per_minute: 1.5}\n"),
            "p.yaml:2: defaults.rate_limits.requests_per_minute: expected an integer, got '1.5'");
  EXPECT_EQ(parseError("defaults:\n  routing: {cloud_models: gpt-4o}\n"),
            "p.yaml:2: defaults.routing.cloud_models: expected a list, got 'gpt-4o'");
  EXPECT_EQ(parseError("defaults:\n  routing: {mode: cascde}\n"),
            "p.yaml:2: defaults.routing.mode: must be one of 'cascade', 'local_only', "
            "'cloud_only', 'cloud_first', got 'cascde'; did you mean 'cascade'?");
  EXPECT_EQ(parseError("defaults:\n  budget: {when_exhausted: block}\n"),
            "p.yaml:2: defaults.budget.when_exhausted: must be one of 'local_only', 'reject', "
            "got 'block'");
  EXPECT_EQ(parseError("teams: [research]\n"),
            "p.yaml:1: teams: expected a map of team names to their policies (research: {keys: "
            "...}), got a list");
  EXPECT_EQ(parseError("teams:\n  research: 5\n"),
            "p.yaml:2: teams.research: expected a map with the team's keys and overrides, got '5'");
  EXPECT_EQ(parseError("- a\n"),
            "p.yaml:1: expected a map of sections (defaults, teams, alerts) at the top level, "
            "got a list");
}

TEST(PolicySet, RankWindowIsInheritedKeyByKey) {
  auto set = parseOk(
      "defaults:\n"
      "  routing:\n"
      "    rank: {window: 200, warmup: 20}\n"
      "teams:\n"
      "  a:\n"
      "    routing: {rank: {warmup: 100}}\n"
      "  b: {}\n");
  EXPECT_EQ(set->defaults().routing.rank.window, 200);
  EXPECT_EQ(set->team("a")->routing.rank.window, 200);
  EXPECT_EQ(set->team("a")->routing.rank.warmup, 100);
  EXPECT_EQ(set->team("b")->routing.rank.warmup, 20);
}

TEST(PolicySetErrors, RejectsABadRankWindow) {
  EXPECT_EQ(parseError("defaults:\n  routing:\n    rank: {window: 5}\n"),
            "p.yaml:3: defaults.routing.rank.window: must be >= 10, got 5");
  EXPECT_EQ(parseError("defaults:\n  routing:\n    rank: {window: 100001}\n"),
            "p.yaml:3: defaults.routing.rank.window: must be <= 100000, got 100001");
  EXPECT_EQ(parseError("defaults:\n  routing:\n    rank: {warmup: 0}\n"),
            "p.yaml:3: defaults.routing.rank.warmup: must be >= 1, got 0");
  EXPECT_EQ(parseError("defaults:\n  routing:\n    rank:\n      windw: 10\n"),
            "p.yaml:4: defaults.routing.rank.windw: unknown key; did you mean 'window'?");
  // The warm-up of the window it fills, inherited or not.
  EXPECT_EQ(parseError("defaults:\n  routing:\n    rank:\n      window: 100\n"
                       "      warmup: 101\n"),
            "p.yaml:5: defaults.routing.rank.warmup: warmup (101) exceeds window (100): the "
            "rank would never be known");
  EXPECT_EQ(parseError("teams:\n  t:\n    routing:\n      rank: {window: 20}\n"),
            "p.yaml:4: teams.t.routing.rank.window: warmup (50) exceeds window (20): the rank "
            "would never be known");
}

TEST(PolicySet, DraftModeIsInheritedAndStrict) {
  auto set = parseOk(
      "defaults:\n  routing: {draft: cut, draft_gpu_seconds_per_hour: 120}\n"
      "teams:\n  a: {}\n  b:\n    routing: {draft: complete}\n");
  EXPECT_EQ(set->team("a")->routing.draft, RoutingPolicy::Draft::kCut);
  EXPECT_EQ(set->team("a")->routing.draft_gpu_seconds_per_hour, 120);
  EXPECT_EQ(set->team("b")->routing.draft, RoutingPolicy::Draft::kComplete);
  EXPECT_EQ(set->team("b")->routing.draft_gpu_seconds_per_hour, 120);
  EXPECT_EQ(RoutingPolicy().draft, RoutingPolicy::Draft::kComplete);  // built-in
  EXPECT_EQ(RoutingPolicy().shadow_rate, 0.02);
  EXPECT_EQ(parseError("defaults:\n  routing: {draft: partial}\n"),
            "p.yaml:2: defaults.routing.draft: must be one of 'complete', 'cut', got 'partial'");
  EXPECT_EQ(parseError("teams:\n  a:\n    routing: {draft_gpu_seconds_per_hour: 4000}\n"),
            "p.yaml:3: teams.a.routing.draft_gpu_seconds_per_hour: must be <= 3600, got 4000");
}

TEST(PolicySetErrors, RejectsOutOfRangeNumbers) {
  EXPECT_EQ(parseError("teams:\n  research:\n    budget: {monthly_usd: -5}\n"),
            "p.yaml:3: teams.research.budget.monthly_usd: must be >= 0, got -5");
  EXPECT_EQ(parseError("defaults:\n  budget: {daily_usd: -0.01}\n"),
            "p.yaml:2: defaults.budget.daily_usd: must be >= 0, got -0.01");
  EXPECT_EQ(parseError("defaults:\n  routing: {shadow_rate: 1.5}\n"),
            "p.yaml:2: defaults.routing.shadow_rate: must be <= 1, got 1.5");
  EXPECT_EQ(parseError("defaults:\n  routing: {shadow_rate: -0.1}\n"),
            "p.yaml:2: defaults.routing.shadow_rate: must be >= 0, got -0.1");
  EXPECT_EQ(parseError("defaults:\n  routing: {hold_tokens: -1}\n"),
            "p.yaml:2: defaults.routing.hold_tokens: must be >= 0, got -1");
  EXPECT_EQ(parseError("defaults:\n  routing: {min_tokens: 0}\n"),
            "p.yaml:2: defaults.routing.min_tokens: must be >= 1, got 0");
  EXPECT_EQ(parseError("defaults:\n  rate_limits: {tokens_per_minute: 0}\n"),
            "p.yaml:2: defaults.rate_limits.tokens_per_minute: must be >= 1, got 0");
  EXPECT_EQ(parseError("alerts: {webhook_retries: 11}\n"),
            "p.yaml:1: alerts.webhook_retries: must be <= 10, got 11");
  // Zero is a budget (no cloud spend), not an error.
  EXPECT_EQ(parseOk("defaults: {budget: {monthly_usd: 0}}\n")->defaults().budget.monthly_usd, 0);
}

TEST(PolicySetErrors, RejectsBadAlertThresholds) {
  EXPECT_EQ(parseError("defaults:\n  budget:\n    alert_thresholds: [0.5, 0.5]\n"),
            "p.yaml:3: defaults.budget.alert_thresholds[1]: repeats 0.5");
  EXPECT_EQ(parseError("defaults:\n  budget:\n    alert_thresholds: [0.8, 0.5]\n"),
            "p.yaml:3: defaults.budget.alert_thresholds[1]: must be greater than the threshold "
            "before it (0.8): list thresholds in ascending order");
  EXPECT_EQ(parseError("defaults:\n  budget:\n    alert_thresholds: [0, 0.5]\n"),
            "p.yaml:3: defaults.budget.alert_thresholds[0]: must be > 0, got 0");
  EXPECT_EQ(parseError("defaults:\n  budget:\n    alert_thresholds:\n      - 0.5\n      - 11\n"),
            "p.yaml:5: defaults.budget.alert_thresholds[1]: must be <= 10, got 11");
  // An empty list means no alerts; 10 is the largest threshold.
  EXPECT_TRUE(parseOk("defaults: {budget: {alert_thresholds: []}}\n")
                  ->defaults()
                  .budget.alert_thresholds.empty());
  EXPECT_EQ(parseOk("defaults: {budget: {alert_thresholds: [1, 2, 10]}}\n")
                ->defaults()
                .budget.alert_thresholds,
            (std::vector<double>{1, 2, 10}));
}

TEST(PolicySetErrors, ReportsTriggerErrorsWithLineKeyAndColumn) {
  EXPECT_EQ(parseError("teams:\n"
                       "  research:\n"
                       "    routing:\n"
                       "      trigger: \"has_tools OR confidnce < 0.85\"\n"),
            "p.yaml:4: teams.research.routing.trigger: column 14: unknown variable 'confidnce'; "
            "did you mean 'confidence'?");
  EXPECT_EQ(parseError("defaults:\n  routing:\n    trigger: \"(has_tools\"\n"),
            "p.yaml:3: defaults.routing.trigger: column 1: unbalanced parenthesis: '(' is never "
            "closed");
  EXPECT_EQ(parseError("defaults:\n  routing:\n    trigger: \"\"\n"),
            "p.yaml:3: defaults.routing.trigger: column 1: empty expression; write 'false' for a "
            "trigger that never fires");
}

TEST(PolicySetErrors, RejectsDuplicateTeamsKeysAndHashes) {
  EXPECT_EQ(parseError("teams:\n  research: {}\n  ops: {}\n  research: {}\n"),
            "p.yaml:4: teams.research: duplicate key (first at line 2)");
  EXPECT_EQ(parseError("teams:\n"
                       "  a:\n"
                       "    keys: [{id: bot, sha256: " +
                       kHashA +
                       "}]\n"
                       "  b:\n"
                       "    keys: [{id: bot, sha256: " +
                       kHashB + "}]\n"),
            "p.yaml:5: teams.b.keys[0].id: duplicate key id 'bot' (first defined at line 3)");
  EXPECT_EQ(parseError("teams:\n"
                       "  a:\n"
                       "    keys: [{id: one, sha256: " +
                       kHashA +
                       "}]\n"
                       "  b:\n"
                       "    keys: [{id: two, sha256: " +
                       std::string(64, 'A') + "}]\n"),
            "p.yaml:5: teams.b.keys[0].sha256: the same key is already used by a/one");
}

TEST(PolicySetErrors, RejectsMalformedKeys) {
  EXPECT_EQ(parseError("teams:\n  a:\n    keys: [{id: one, sha256: abc123}]\n"),
            "p.yaml:3: teams.a.keys[0].sha256: must be the 64 hex digits of the key's SHA-256 "
            "(from `switchyard-cli hash-key`), got 6 characters");
  EXPECT_EQ(
      parseError("teams:\n  a:\n    keys: [{id: one, sha256: " + std::string(63, 'a') + "g}]\n"),
      "p.yaml:3: teams.a.keys[0].sha256: must be the 64 hex digits of the key's SHA-256 "
      "(from `switchyard-cli hash-key`), got 64 characters");
  EXPECT_EQ(parseError("teams:\n  a:\n    keys: [{sha256: " + kHashA + "}]\n"),
            "p.yaml:3: teams.a.keys[0].id: is required");
  EXPECT_EQ(parseError("teams:\n  a:\n    keys: [{id: \"my key\", sha256: " + kHashA + "}]\n"),
            "p.yaml:3: teams.a.keys[0].id: must be 1 to 64 letters, digits, '_', '-' or '.', got "
            "'my key'");
  EXPECT_EQ(parseError("defaults:\n  keys: []\n"),
            "p.yaml:2: defaults.keys: keys belong to a team: list them under teams.<name>.keys");
  EXPECT_EQ(parseError("teams:\n  \"bad name\": {}\n"),
            "p.yaml:2: teams[\"bad name\"]: team names must be 1 to 64 letters, digits, '_', '-' "
            "or '.'");
}

TEST(PolicySetErrors, RejectsCloudModesForATeamThatMustStayLocal) {
  EXPECT_EQ(parseError("teams:\n"
                       "  secure:\n"
                       "    allow_cloud: false\n"
                       "    routing: {mode: cloud_only}\n"),
            "p.yaml:4: teams.secure.routing.mode: allow_cloud is false but routing.mode "
            "'cloud_only' sends requests to the cloud; use mode local_only or cascade (which "
            "stays local for this team)");
  // The mode inherited: reported at the team's own allow_cloud, saying where the mode came from.
  EXPECT_EQ(parseError("defaults:\n"
                       "  routing: {mode: cloud_first}\n"
                       "teams:\n"
                       "  secure:\n"
                       "    allow_cloud: false\n"),
            "p.yaml:5: teams.secure.allow_cloud: allow_cloud is false but routing.mode "
            "'cloud_first' (inherited from defaults) sends requests to the cloud; use mode "
            "local_only or cascade (which stays local for this team)");
  // Both inherited: the defaults are wrong themselves.
  EXPECT_EQ(parseError("defaults:\n  allow_cloud: false\n  routing: {mode: cloud_only}\n"),
            "p.yaml:3: defaults.routing.mode: allow_cloud is false but routing.mode "
            "'cloud_only' sends requests to the cloud; use mode local_only or cascade (which "
            "stays local for this team)");
  // Fine: a local team in cascade or local_only mode.
  auto ok = parseOk(
      "teams:\n"
      "  a: {allow_cloud: false}\n"
      "  b: {allow_cloud: false, routing: {mode: local_only}}\n");
  EXPECT_EQ(ok->team("a")->routing.mode, RoutingMode::kCascade);
  EXPECT_EQ(ok->team("b")->routing.mode, RoutingMode::kLocalOnly);
}

TEST(PolicySetErrors, RejectsACloudModeWithoutCloudModels) {
  EXPECT_EQ(parseError("teams:\n  a:\n    routing: {cloud_models: []}\n"),
            "p.yaml:3: teams.a.routing.cloud_models: routing.mode 'cascade' (the built-in "
            "default) needs at least one model in routing.cloud_models; list one, or use mode "
            "local_only");
  EXPECT_EQ(parseError("defaults:\n  routing: {cloud_models: []}\nteams:\n  a:\n"
                       "    routing: {mode: cloud_first}\n"),
            "p.yaml:2: defaults.routing.cloud_models: routing.mode 'cascade' (the built-in "
            "default) needs at least one model in routing.cloud_models; list one, or use mode "
            "local_only");
  EXPECT_EQ(parseError("defaults:\n  routing: {mode: local_only, cloud_models: []}\nteams:\n"
                       "  a:\n    routing: {mode: cloud_first}\n"),
            "p.yaml:5: teams.a.routing.mode: routing.mode 'cloud_first' needs at least one model "
            "in routing.cloud_models (inherited from defaults); list one, or use mode local_only");
  // No cloud models is fine where the cloud is never used.
  parseOk("defaults:\n  routing: {mode: local_only, cloud_models: []}\n");
  parseOk("defaults:\n  allow_cloud: false\n  routing: {cloud_models: []}\n");
}

TEST(PolicySetErrors, RejectsBadModelLists) {
  EXPECT_EQ(parseError("defaults: {allowed_models: []}\n"),
            "p.yaml:1: defaults.allowed_models: must list at least one model name or pattern "
            "(\"*\" allows every model)");
  EXPECT_EQ(parseError("defaults: {allowed_models: [\"gpt-*-mini\"]}\n"),
            "p.yaml:1: defaults.allowed_models: 'gpt-*-mini': '*' may only end a pattern "
            "(\"gpt-*\" allows every name that starts with \"gpt-\")");
  EXPECT_EQ(parseError("defaults:\n  routing:\n    cloud_models: [gpt-4o, gpt-4o]\n"),
            "p.yaml:3: defaults.routing.cloud_models[1]: lists 'gpt-4o' twice");
  EXPECT_EQ(parseError("defaults:\n  routing:\n    local_model: \"\"\n"),
            "p.yaml:3: defaults.routing.local_model: must not be empty");
}

TEST(PolicySetErrors, RejectsABadWebhookUrl) {
  EXPECT_EQ(parseError("alerts: {webhook_url: \"ftp://x\"}\n"),
            "p.yaml:1: alerts.webhook_url: must be \"\" (no webhook) or an http:// or https:// "
            "URL with a host, got 'ftp://x'");
  EXPECT_EQ(parseError("alerts: {webhook_url: \"https://\"}\n"),
            "p.yaml:1: alerts.webhook_url: must be \"\" (no webhook) or an http:// or https:// "
            "URL with a host, got 'https://'");
}

TEST(PolicySetErrors, SyntaxErrorsNameLineAndColumn) {
  std::string msg = parseError("teams:\n  a: [1, 2\n");
  EXPECT_TRUE(msg.starts_with("p.yaml:")) << msg;
  EXPECT_NE(msg.find("invalid YAML"), std::string::npos) << msg;
}

}  // namespace
}  // namespace policies
