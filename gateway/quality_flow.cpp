// The gateway's quality records: the cascade's escalations and shadow comparisons become
// quality::QualityRecords (POST /v1/feedback is in gateway/feedback.cpp).
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "api/openai_json.h"
#include "gateway/gateway.h"
#include "gateway/http_util.h"
#include "gateway/quality_hub.h"
#include "policies/spend.h"

namespace gateway {
namespace {

std::vector<quality::Feature> confidenceFeatures(
    const std::vector<std::pair<std::string_view, double>>& named) {
  std::vector<quality::Feature> out;
  for (const auto& [name, value] : named) out.push_back({std::string(name), value});
  return out;
}

// Collects a shadow call's cloud answer, then books it and records the pair.
class ShadowSink : public routers::ChatSink {
 public:
  using Done = std::function<void(const routers::RouteInfo& route,
                                  api::StatusOr<api::ChatResponse> result, double latency_ms)>;
  explicit ShadowSink(Done done) : done_(std::move(done)), started_(Clock::now()) {}
  void onRoute(const routers::RouteInfo& route) override { route_ = route; }
  void onChunk(api::ChatChunk) override {}
  void onFinish(api::StatusOr<api::ChatResponse> result) override {
    Done done = std::move(done_);
    if (done) done(route_, std::move(result), secondsSince(started_) * 1000);
  }

 private:
  Done done_;
  routers::RouteInfo route_;
  const Clock::time_point started_;
};

}  // namespace

quality::QualityRecord Gateway::baseRecord(const RequestFacts& facts,
                                           quality::RecordKind kind) const {
  quality::QualityRecord r;
  r.request_id = facts.request_id;
  r.unix_ms = unixMs();
  r.team = facts.team;
  r.kind = kind;
  r.model = facts.public_model;
  r.redacted = facts.redact;
  if (!facts.redact) r.prompt = facts.prompt;
  r.complexity = facts.complexity;
  for (const auto& f : facts.complexity_features) {
    r.complexity_features.push_back({std::string(f.name), f.value});
  }
  return r;
}

void Gateway::recordPair(const RequestFacts& facts, const routers::CascadePair& pair) {
  if (!quality_) return;
  quality::QualityRecord r = baseRecord(facts, quality::RecordKind::kEscalation);
  r.reason = pair.reason;
  r.confidence = pair.confidence;
  r.confidence_features = confidenceFeatures(pair.confidence_features.named());
  r.local.model = pair.local_route.label;
  r.local.complete = pair.local_complete;
  r.local.finish_reason = pair.local_finish_reason;
  r.local.latency_ms = pair.local_latency_ms;
  r.local.completion_tokens = pair.local_tokens;
  if (pair.local_usage) {
    r.local.prompt_tokens = pair.local_usage->prompt_tokens;
    r.local.completion_tokens = pair.local_usage->completion_tokens;
    r.local.cost_usd = quality_->localCostUsd(*pair.local_usage, pair.local_route.provider);
  } else {
    api::Usage cut;  // a draft cut short: its engine time until the cut
    cut.engine_compute_s = pair.local_compute_s;
    r.local.cost_usd = quality_->localCostUsd(cut, pair.local_route.provider);
  }
  r.cloud.model = pair.cloud_route;
  r.cloud.finish_reason = pair.cloud_finish_reason;
  r.cloud.latency_ms = pair.cloud_latency_ms;
  if (pair.cloud_usage) {
    r.cloud.prompt_tokens = pair.cloud_usage->prompt_tokens;
    r.cloud.completion_tokens = pair.cloud_usage->completion_tokens;
    const policies::Price* price =
        config_->prices->find(pair.cloud_route_info.provider, pair.cloud_route_info.model);
    r.cloud.cost_usd = price ? price->cost(*pair.cloud_usage) : 0;
  }
  if (!facts.redact) {
    r.local.text = pair.local_text;
    r.cloud.text = pair.cloud_text;
  }
  quality_->record(std::move(r));
}

void Gateway::startShadow(const RequestFacts& facts, const api::ChatRequest& request,
                          std::shared_ptr<const policies::TeamPolicy> policy,
                          const std::string& cloud_model, const routers::RouteInfo& local_route,
                          const api::ChatResponse& local_answer, double local_latency_ms) {
  std::vector<routers::ChainTarget> targets;
  for (const routers::ChainTarget& t : targetsOf(cloud_model)) {
    if (t.cloud()) targets.push_back(t);  // a comparison with the cloud, never another local
  }
  if (!quality_ || targets.empty()) return;
  if (ledger_ && policy->budget.limited() &&
      policies::budgetState(*ledger_, facts.team, policy->budget, unixMs()).exhausted) {
    metrics_.recordShadow(facts.team, "skipped_budget");
    return;
  }
  metrics_.recordShadow(facts.team, "sampled");
  quality::QualityRecord base = baseRecord(facts, quality::RecordKind::kShadow);
  base.reason = "shadow";
  // The chance this local answer had of being compared (Gateway::sampleShadow with the same
  // policy's rate); reports and calibration weight the record by its inverse.
  base.sampling_p = std::clamp(policy->routing.shadow_rate, 0.0, 1.0);
  base.confidence = local_route.confidence;
  base.confidence_features = confidenceFeatures(local_route.confidence_features);
  base.local.model = local_route.label;
  base.local.latency_ms = local_latency_ms;
  if (!local_answer.choices.empty()) {
    const api::Choice& c = local_answer.choices[0];
    if (!facts.redact) base.local.text = c.message.content.joinedText();
    base.local.finish_reason = c.finish_reason;
  }
  if (local_answer.usage) {
    base.local.prompt_tokens = local_answer.usage->prompt_tokens;
    base.local.completion_tokens = local_answer.usage->completion_tokens;
    base.local.cost_usd = quality_->localCostUsd(*local_answer.usage, local_route.provider);
  }

  api::ChatRequest cloud_request = request;
  cloud_request.model = cloud_model;
  cloud_request.stream = false;
  cloud_request.include_usage = false;
  auto account = std::make_shared<routers::Account>(
      ledger_.get(),
      routers::Payer{facts.request_id, facts.team, facts.key_id, facts.public_model, policy});
  account->setDecision("shadow");
  std::shared_ptr<const Live> live = liveState();
  account->onSettled([this, live](const std::string& t) { checkAlerts(*live, t); });
  const std::string team = facts.team;
  const bool redact = facts.redact;
  auto sink = std::make_shared<ShadowSink>(
      [this, account, base = std::move(base), team, redact](
          const routers::RouteInfo& route, api::StatusOr<api::ChatResponse> result,
          double latency_ms) mutable {
        if (!result.ok()) {
          const api::Status& s = result.status();
          int status = s.code() == api::ErrorCode::kCancelled ? 499 : s.httpStatusCode();
          account->finish(route, false, nullptr, status, latency_ms / 1000);
          metrics_.recordShadow(team, routers::isGateRefusal(s) ? "skipped_budget" : "failed");
          return;
        }
        const api::ChatResponse& r = *result;
        account->finish(route, false, r.usage ? &*r.usage : nullptr, 200, latency_ms / 1000);
        const double cost = account->costUsd();
        if (r.usage) {
          metrics_.recordUsage(team, base.model, route.label, r.usage->prompt_tokens,
                               r.usage->cached_prompt_tokens, r.usage->completion_tokens, cost);
          base.cloud.prompt_tokens = r.usage->prompt_tokens;
          base.cloud.completion_tokens = r.usage->completion_tokens;
        }
        base.cloud.model = route.label;
        base.cloud.cost_usd = cost;
        base.cloud.latency_ms = latency_ms;
        if (!r.choices.empty()) {
          if (!redact) base.cloud.text = r.choices[0].message.content.joinedText();
          base.cloud.finish_reason = r.choices[0].finish_reason;
        }
        metrics_.recordShadow(team, "recorded");
        quality_->record(std::move(base));
      });
  const auto deadline = Clock::now() + ms(config_->server.request_timeout_s);
  spender_->run(cloud_model, account, std::move(targets), cloud_request, sink, deadline);
}

}  // namespace gateway
