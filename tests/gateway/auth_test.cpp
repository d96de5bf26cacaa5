#include "gateway/auth.h"

#include <gtest/gtest.h>

#include <string>

#include "api/ascii.h"
#include "gateway/config.h"
#include "policies/policy_set.h"

namespace gateway {
namespace {

const std::string kAlphaKey = "sk-alpha-auth-test";
const std::string kAdminKey = "sk-admin-auth-test";

// Team alpha's key in switchyard.yaml, an admin key, and a policies file (read as p.yaml)
// whose text the test gives.
std::shared_ptr<const Config> configWith(const std::string& policies_text, bool ledger = false) {
  std::string yaml =
      "auth: {admin_keys: [{id: ops, sha256: " + sha256Hex(kAdminKey) + "}]}\n"
      "teams:\n  - name: alpha\n    keys: [{id: a1, sha256: " + sha256Hex(kAlphaKey) + "}]\n"
      "providers: {up: {type: openai, base_url: \"http://127.0.0.1:1/v1\"}}\n"
      "models: [{name: m1, provider: up}]\n"
      "pricing: {up: {m1: {input: 1, output: 1}}}\n"
      "policies: p.yaml\n" +
      std::string(ledger ? "ledger: {path: l.db}\n" : "");
  auto c = parseConfig(yaml, "t.yaml", [policies_text](const std::string&) {
    return api::StatusOr<std::string>(policies_text);
  });
  EXPECT_TRUE(c.ok()) << c.status().message();
  return c.ok() ? *c : nullptr;
}

std::shared_ptr<const policies::PolicySet> mustPolicies(const std::string& text) {
  auto p = policies::PolicySet::parse(text, "p.yaml");
  EXPECT_TRUE(p.ok()) << p.status().message();
  return p.ok() ? *p : nullptr;
}

const std::string kRouting =
    "defaults:\n  routing: {mode: cloud_only, local_model: m1, cloud_models: [m1]}\n";

std::string teamWithKey(const std::string& team, const std::string& id, const std::string& key) {
  return "  " + team + ":\n    keys: [{id: " + id + ", sha256: " + sha256Hex(key) + "}]\n";
}

TEST(AsciiCase, MapsOnlyAsciiLettersAndLeavesEveryOtherByte) {
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    const bool upper = b >= 'A' && b <= 'Z', lower = b >= 'a' && b <= 'z';
    EXPECT_EQ(api::asciiLower(c), upper ? static_cast<char>(b + 32) : c) << b;
    EXPECT_EQ(api::asciiUpper(c), lower ? static_cast<char>(b - 32) : c) << b;
  }
  EXPECT_EQ(api::asciiLower(std::string_view("X-Request-ID \xC3\x89t\xC3\xA9")),
            "x-request-id \xC3\x89t\xC3\xA9");
  EXPECT_TRUE(api::equalsIgnoringAsciiCase("Content-Type", "content-TYPE"));
  EXPECT_FALSE(api::equalsIgnoringAsciiCase("\xC3\x89", "\xC3\xA9"));  // É and é: not ASCII
  EXPECT_FALSE(api::equalsIgnoringAsciiCase("abc", "abcd"));
}

TEST(Authenticator, TheBearerSchemeIsCaseInsensitiveAsciiOnly) {
  auto config = configWith(kRouting + "teams: {}\n");
  ASSERT_NE(config, nullptr);
  Authenticator auth(*config);
  for (const std::string scheme : {"Bearer ", "bearer ", "BEARER ", "bEaReR "}) {
    auto p = auth.authenticate(scheme + kAlphaKey);
    ASSERT_TRUE(p.ok()) << scheme << ": " << p.status().message();
    EXPECT_EQ(p->team, "alpha");
  }
  // Bytes above 0x7F never match a letter of the scheme, whatever the locale.
  for (const std::string scheme : {"B\xC3\xA9" "arer ", "Bear\xC9r ", "\xC2\xA0" "earer "}) {
    auto p = auth.authenticate(scheme + kAlphaKey);
    ASSERT_FALSE(p.ok()) << scheme;
    EXPECT_EQ(p.status().code(), api::ErrorCode::kUnauthenticated);
  }
}

TEST(Authenticator, AnyKeyIsAnonymousOnlyWhileNoKeyIsConfigured) {
  auto keyless = [](const std::string& auth_yaml) {
    auto c = parseConfig(auth_yaml +
                             "providers: {up: {type: openai, base_url: \"http://127.0.0.1:1/v1\"}}\n"
                             "models: [{name: m1, provider: up}]\n"
                             "pricing: {up: {m1: {input: 1, output: 1}}}\n",
                         "t.yaml");
    EXPECT_TRUE(c.ok()) << c.status().message();
    return c.ok() ? *c : nullptr;
  };
  // The default config's shape: unauthenticated use, no keys. An SDK's placeholder key is
  // served as the anonymous team.
  auto open = keyless("auth: {allow_unauthenticated: true, anonymous_team: local}\n");
  ASSERT_NE(open, nullptr);
  Authenticator anonymous(*open);
  for (const std::string header : {"Bearer sk-anything", "Bearer EMPTY", "Basic dXNlcg=="}) {
    auto p = anonymous.authenticate(header);
    ASSERT_TRUE(p.ok()) << header << ": " << p.status().message();
    EXPECT_EQ(p->team, "local");
    EXPECT_EQ(p->key_id, "");
    EXPECT_FALSE(p->admin);
  }
  // Unauthenticated use off: a key is always checked.
  auto closed = keyless("auth: {allow_unauthenticated: false}\n");
  ASSERT_NE(closed, nullptr);
  EXPECT_EQ(Authenticator(*closed).authenticate("Bearer sk-anything").status().code(),
            api::ErrorCode::kUnauthenticated);
  // Once a key exists (a team's or an operator's), an unknown key is a 401 again.
  auto with_keys = configWith(kRouting + "teams: {}\n");
  ASSERT_NE(with_keys, nullptr);
  Config team_key_only = *with_keys, admin_key_only = *with_keys;
  team_key_only.auth.allow_unauthenticated = admin_key_only.auth.allow_unauthenticated = true;
  team_key_only.auth.admin_keys.clear();
  admin_key_only.teams.clear();
  for (const Config* c : {&team_key_only, &admin_key_only}) {
    Authenticator auth(*c);
    EXPECT_EQ(auth.authenticate("Bearer sk-anything").status().code(),
              api::ErrorCode::kUnauthenticated);
    EXPECT_EQ(auth.authenticate("")->team, c->auth.anonymous_team);
  }
}

TEST(BindPolicies, JoinsTheFilesTeamsAndKeysToSwitchyardYamls) {
  auto config = configWith(kRouting + "teams:\n" + teamWithKey("beta", "b1", "sk-beta"));
  ASSERT_NE(config, nullptr);
  std::vector<Team> own = switchyardTeams(*config);
  ASSERT_EQ(own.size(), 2u);  // alpha, and beta (from the file) without its key
  EXPECT_EQ(own[0].name, "alpha");
  EXPECT_EQ(own[0].keys.size(), 1u);
  EXPECT_TRUE(own[1].keys.empty());

  auto next = mustPolicies(kRouting + "teams:\n" + teamWithKey("beta", "b2", "sk-beta-2") +
                           teamWithKey("gamma", "g1", "sk-gamma"));
  ASSERT_NE(next, nullptr);
  auto teams = bindPolicies(*config, own, *next, false);
  ASSERT_TRUE(teams.ok()) << teams.status().message();
  Config joined = *config;
  joined.teams = *teams;
  Authenticator auth(joined);
  EXPECT_EQ(auth.authenticate("Bearer sk-beta-2")->team, "beta");
  EXPECT_EQ(auth.authenticate("Bearer sk-gamma")->team, "gamma");
  EXPECT_EQ(auth.authenticate("Bearer " + kAlphaKey)->team, "alpha");
  // The old file's key is gone with it.
  EXPECT_FALSE(auth.authenticate("Bearer sk-beta").ok());
}

TEST(BindPolicies, RefusesAKeyThatSwitchyardYamlAlreadyGives) {
  auto config = configWith(kRouting + "teams: {}\n");
  ASSERT_NE(config, nullptr);
  for (const auto& [key, owner] : {std::pair<std::string, std::string>{kAlphaKey, "alpha/a1"},
                                   {kAdminKey, "admin/ops"}}) {
    auto next = mustPolicies(kRouting + "teams:\n" + teamWithKey("thief", "t1", key));
    ASSERT_NE(next, nullptr);
    auto teams = bindPolicies(*config, switchyardTeams(*config), *next, false);
    ASSERT_FALSE(teams.ok()) << owner;
    EXPECT_EQ(teams.status().code(), api::ErrorCode::kConfig);
    EXPECT_NE(teams.status().message().find("gives team 'thief' key 't1', which is already used "
                                            "by " + owner),
              std::string::npos)
        << teams.status().message();
  }
}

TEST(BindPolicies, RefusesUnknownModelsAndBudgetsNoLedgerKeeps) {
  auto config = configWith(kRouting + "teams: {}\n");
  ASSERT_NE(config, nullptr);
  auto unknown = mustPolicies(
      "defaults:\n  routing: {mode: cloud_only, local_model: m1, cloud_models: [m9]}\n");
  ASSERT_NE(unknown, nullptr);
  auto teams = bindPolicies(*config, switchyardTeams(*config), *unknown, true);
  ASSERT_FALSE(teams.ok());
  EXPECT_NE(teams.status().message().find("unknown model 'm9'"), std::string::npos)
      << teams.status().message();

  // The defaults' budget as well as a team's: the check a start makes.
  for (const std::string& text :
       {kRouting + "  budget: {daily_usd: 1}\n",
        kRouting + "teams:\n  beta:\n    budget: {monthly_usd: 5}\n"}) {
    auto budgeted = mustPolicies(text);
    ASSERT_NE(budgeted, nullptr);
    auto refused = bindPolicies(*config, switchyardTeams(*config), *budgeted, false);
    ASSERT_FALSE(refused.ok()) << text;
    EXPECT_NE(refused.status().message().find("no ledger"), std::string::npos)
        << refused.status().message();
    EXPECT_TRUE(bindPolicies(*config, switchyardTeams(*config), *budgeted, true).ok()) << text;
  }
}

}  // namespace
}  // namespace gateway
