// `tier: local` providers (an OpenAI-compatible server counted as local) and the config that
// `switchyard serve --engine-only` runs on (gateway/config.h).
#include <gtest/gtest.h>

#include <string>

#include "gateway/config.h"

namespace gateway {
namespace {

api::StatusOr<std::shared_ptr<const Config>> parse(const std::string& text) {
  return parseConfig(text, "t.yaml");
}

// A config with one OpenAI-compatible server whose extra keys are `extra` (indented 4).
std::string withServer(const std::string& extra, const std::string& type = "openai_compatible") {
  return "providers:\n"
         "  gpu-box:\n"
         "    type: " + type + "\n"
         "    base_url: http://10.0.0.7:8000/v1\n" + extra +
         "models:\n"
         "  - name: llama-local\n"
         "    provider: gpu-box\n";
}

testing::AssertionResult failsWith(const std::string& text, const std::string& prefix,
                                   const std::string& needle) {
  auto r = parse(text);
  if (r.ok()) return testing::AssertionFailure() << "parsed";
  const std::string& m = r.status().message();
  if (r.status().code() != api::ErrorCode::kConfig || !m.starts_with(prefix) ||
      m.find(needle) == std::string::npos) {
    return testing::AssertionFailure() << "got: " << m;
  }
  return testing::AssertionSuccess();
}

TEST(RemoteLocalConfig, ProvidersAreCloudTierByDefault) {
  auto c = parse(withServer("") + "pricing: {gpu-box: {llama-local: {input: 1, output: 1}}}\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  const ProviderConfig& p = (*c)->providers.at("gpu-box");
  EXPECT_EQ(p.tier, "cloud");
  EXPECT_FALSE(p.isLocal());
  EXPECT_FALSE(p.isRemoteLocal());
  EXPECT_FALSE(p.gpu_hour_usd);
  EXPECT_EQ(p.max_in_flight, 0);
}

TEST(RemoteLocalConfig, TierLocalNeedsNoPriceAndTakesItsGpuPriceAndLoadLimit) {
  auto c = parse(withServer("    tier: local\n    gpu_hour_usd: 1.8\n    max_in_flight: 32\n"));
  ASSERT_TRUE(c.ok()) << c.status().message();
  const ProviderConfig& p = (*c)->providers.at("gpu-box");
  EXPECT_EQ(p.tier, "local");
  EXPECT_TRUE(p.isLocal());
  EXPECT_TRUE(p.isRemoteLocal());
  EXPECT_EQ(p.type, "openai");
  ASSERT_TRUE(p.gpu_hour_usd);
  EXPECT_DOUBLE_EQ(*p.gpu_hour_usd, 1.8);
  EXPECT_EQ(p.max_in_flight, 32);

  auto plain = parse(withServer("    tier: local\n", "openai"));
  ASSERT_TRUE(plain.ok()) << plain.status().message();
  EXPECT_FALSE((*plain)->providers.at("gpu-box").gpu_hour_usd);  // quality.gpu_hour_usd then
}

TEST(RemoteLocalConfig, ACloudTierModelStillNeedsAPrice) {
  EXPECT_TRUE(failsWith(withServer("    tier: cloud\n"), "t.yaml:", "no price for 'llama-local'"));
}

TEST(RemoteLocalConfig, ErrorsNameTheKey) {
  EXPECT_TRUE(failsWith(withServer("    tier: edge\n"), "t.yaml:5: providers.gpu-box.tier:", "edge"));
  EXPECT_TRUE(failsWith(withServer("    tier: local\n    gpu_hour_usd: -1\n"),
                        "t.yaml:6: providers.gpu-box.gpu_hour_usd:", ">= 0"));
  EXPECT_TRUE(failsWith(withServer("    tier: local\n    max_in_flight: -2\n"),
                        "t.yaml:6: providers.gpu-box.max_in_flight:", ""));
  EXPECT_TRUE(failsWith(withServer("    tier: local\n    api_key: k\n", "anthropic"),
                        "t.yaml:5: providers.gpu-box.tier:",
                        "needs an OpenAI-compatible server"));
  EXPECT_TRUE(failsWith(withServer("    tier: local\n", "gemini"),
                        "t.yaml:5: providers.gpu-box.tier:", "got type 'gemini'"));
  EXPECT_TRUE(failsWith(withServer("    gpu_hour_usd: 2\n"),
                        "t.yaml:5: providers.gpu-box.gpu_hour_usd:", "tier: local"));
  EXPECT_TRUE(failsWith(withServer("    max_in_flight: 2\n"),
                        "t.yaml:5: providers.gpu-box.max_in_flight:", "tier: local"));
  EXPECT_TRUE(failsWith(withServer("    tier: local\n    retry: {max_attempts: 2}\n"),
                        "t.yaml:6: providers.gpu-box.retry:", "tried once"));
  EXPECT_TRUE(failsWith(withServer("    tier: local\n    max_waiting: 4\n"),
                        "t.yaml:6: providers.gpu-box.max_waiting:", "needs metrics_url"));
  EXPECT_TRUE(failsWith(withServer("    tier: local\n    metrics_url: gpu:8000/metrics\n"),
                        "t.yaml:6: providers.gpu-box.metrics_url:", "http://"));
  EXPECT_TRUE(failsWith(withServer("    metrics_url: http://gpu:8000/metrics\n"),
                        "t.yaml:5: providers.gpu-box.metrics_url:", "tier: local"));
}

TEST(RemoteLocalConfig, TierLocalMayReadTheServersQueue) {
  auto c = parse(withServer("    tier: local\n    metrics_url: http://10.0.0.7:8000/metrics\n"
                            "    max_waiting: 16\n"));
  ASSERT_TRUE(c.ok()) << c.status().message();
  const ProviderConfig& p = (*c)->providers.at("gpu-box");
  EXPECT_EQ(p.metrics_url, "http://10.0.0.7:8000/metrics");
  EXPECT_EQ(p.max_waiting, 16);
}

TEST(RemoteLocalConfig, TheEmbeddedEngineTakesNoTier) {
  EXPECT_TRUE(failsWith("providers:\n"
                        "  local:\n"
                        "    type: local\n"
                        "    model_dir: m\n"
                        "    tier: local\n",
                        "t.yaml:", "tier"));
}

const char* const kMixed =
    "server: {port: 0}\n"
    "providers:\n"
    "  local: {type: local, model_dir: models/tiny}\n"
    "  openai: {type: openai, api_key: sk}\n"
    "  gpu-box: {type: openai_compatible, base_url: 'http://10.0.0.7:8000/v1', tier: local}\n"
    "models:\n"
    "  - {name: gemma-local, provider: local, fallbacks: [gpt-4o-mini, llama-local]}\n"
    "  - {name: gpt-4o-mini, provider: openai}\n"
    "  - {name: llama-local, provider: gpu-box}\n"
    "pricing: {openai: {gpt-4o-mini: {input: 0.15, output: 0.6}}}\n"
    "ledger: {path: data/ledger.db}\n"
    "quality: {path: data/quality.db, gpu_hour_usd: 2, judge: {model: gpt-4o-mini}}\n";

TEST(EngineOnlyConfig, KeepsTheEmbeddedEnginesAndDropsTheRest) {
  auto full = parse(kMixed);
  ASSERT_TRUE(full.ok()) << full.status().message();
  auto c = engineOnlyConfig(**full);
  ASSERT_TRUE(c.ok()) << c.status().message();
  const Config& e = **c;
  ASSERT_EQ(e.providers.size(), 1u);
  EXPECT_EQ(e.providers.count("local"), 1u);
  ASSERT_EQ(e.models.size(), 1u);
  EXPECT_EQ(e.models[0].name, "gemma-local");
  EXPECT_TRUE(e.models[0].fallbacks.empty()) << "fallbacks to other machines are dropped";
  EXPECT_TRUE(e.ledger_path.empty());
  EXPECT_TRUE(e.quality.path.empty());
  EXPECT_TRUE(e.quality.judge.model.empty());
  EXPECT_EQ(e.server.port, 0);
  const policies::TeamPolicy& p = e.policies->policyFor("anyone");
  EXPECT_FALSE(p.allow_cloud);
  EXPECT_EQ(p.routing.mode, policies::RoutingMode::kLocalOnly);
  EXPECT_EQ(p.routing.local_model, "gemma-local");
  EXPECT_TRUE(p.routing.cloud_models.empty());
  EXPECT_FALSE(p.budget.limited());
}

TEST(EngineOnlyConfig, NeedsAnEmbeddedEngine) {
  auto full = parse(withServer("    tier: local\n"));
  ASSERT_TRUE(full.ok());
  auto c = engineOnlyConfig(**full);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), api::ErrorCode::kConfig);
  EXPECT_NE(c.status().message().find("--engine-only needs a model served by a provider of type "
                                      "local"),
            std::string::npos)
      << c.status().message();
}

}  // namespace
}  // namespace gateway
