// The gateway's quality records: the cascade's escalations and shadow comparisons become
// quality::QualityRecords, and POST /v1/feedback records what users said of an answer.
#include <cmath>
#include <cstdio>

#include "api/openai_json.h"
#include "gateway/accounting.h"
#include "gateway/gateway.h"
#include "gateway/http_util.h"
#include "gateway/quality_hub.h"

namespace gateway {
namespace {

constexpr size_t kMaxFeedbackComment = 4096;
constexpr size_t kMaxFeedbackRequestId = 200;

std::vector<quality::Feature> confidenceFeatures(const routers::ConfidenceMonitor::Features& f) {
  return {{"mean_logprob", f.mean_logprob},
          {"min_window_logprob", f.worst_window_logprob},
          {"mean_entropy", f.mean_entropy}};
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
  r.confidence_features = confidenceFeatures(pair.confidence_features);
  r.local.model = pair.local_route.label;
  r.local.complete = pair.local_complete;
  r.local.finish_reason = pair.local_finish_reason;
  r.local.latency_ms = pair.local_latency_ms;
  r.local.completion_tokens = pair.local_tokens;
  if (pair.local_usage) {
    r.local.prompt_tokens = pair.local_usage->prompt_tokens;
    r.local.completion_tokens = pair.local_usage->completion_tokens;
    r.local.cost_usd = quality_->localCostUsd(*pair.local_usage);
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
                          const policies::TeamPolicy& policy, const std::string& cloud_model,
                          const routers::RouteInfo& local_route,
                          const api::ChatResponse& local_answer, double local_latency_ms) {
  auto route = routes_.find(cloud_model);
  if (!quality_ || route == routes_.end()) return;
  metrics_.recordShadow(facts.team, "sampled");
  quality::QualityRecord base = baseRecord(facts, quality::RecordKind::kShadow);
  base.reason = "shadow";
  base.confidence = local_route.confidence;
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
    base.local.cost_usd = quality_->localCostUsd(*local_answer.usage);
  }

  api::ChatRequest cloud_request = request;
  cloud_request.model = cloud_model;
  cloud_request.stream = false;
  cloud_request.include_usage = false;
  auto account = std::make_shared<Accounting>(ledger_.get(), facts.request_id, facts.team,
                                              facts.key_id, facts.public_model);
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
          account->finish(route, false, nullptr, 0, s.httpStatusCode(), latency_ms / 1000);
          metrics_.recordShadow(team, "failed");
          return;
        }
        const api::ChatResponse& r = *result;
        double cost = 0;
        if (r.usage) {
          const policies::Price* price = config_->prices->find(route.provider, route.model);
          cost = price ? price->cost(*r.usage) : 0;
          metrics_.recordUsage(team, base.model, route.label, r.usage->prompt_tokens,
                               r.usage->cached_prompt_tokens, r.usage->completion_tokens, cost);
          base.cloud.prompt_tokens = r.usage->prompt_tokens;
          base.cloud.completion_tokens = r.usage->completion_tokens;
        }
        account->finish(route, false, r.usage ? &*r.usage : nullptr, cost, 200, latency_ms / 1000);
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
  auto call = startCloud(*route->second.chain, route->second.chain->targets(), cloud_request,
                         policy, facts.team, account, sink, deadline);
  if (!call.ok()) {
    // Refused before it started (the budget): nothing was spent, nothing is recorded.
    metrics_.recordShadow(facts.team, call.status().code() == api::ErrorCode::kQuotaExceeded
                                          ? "skipped_budget"
                                          : "failed");
  }
}

void Gateway::handleFeedback(const Exchange& ex, const std::shared_ptr<Responder>& responder) {
  std::shared_ptr<const Live> live = liveState();
  auto principal = live->auth->authenticate(ex.authorization);
  if (!principal.ok()) return replyError(ex, responder, principal.status(), "", "", "");
  if (principal->admin) {
    return replyError(ex, responder,
                      api::Status(api::ErrorCode::kPermissionDenied,
                                  "Feedback is given with the key of the team that asked."),
                      "", "", "");
  }
  auto bad = [&](const std::string& message, const std::string& param) {
    replyError(ex, responder,
               api::Status(api::ErrorCode::kInvalidRequest, message, param, "invalid_value"),
               principal->team, "", "");
  };
  api::Json body = api::Json::parse(ex.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return bad("The body must be a JSON object: {\"request_id\": ..., \"score\": ..., "
               "\"comment\": ...}.",
               "");
  }
  quality::Feedback f;
  f.team = principal->team;
  f.unix_ms = unixMs();
  auto id = body.find("request_id");
  if (id == body.end() || !id->is_string() || id->get<std::string>().empty() ||
      id->get<std::string>().size() > kMaxFeedbackRequestId) {
    return bad("request_id must be the x-request-id of the answer (a non-empty string of at most " +
                   std::to_string(kMaxFeedbackRequestId) + " bytes).",
               "request_id");
  }
  f.request_id = id->get<std::string>();
  auto score = body.find("score");
  if (score == body.end() || !score->is_number() || !std::isfinite(score->get<double>()) ||
      score->get<double>() < -1 || score->get<double>() > 1) {
    return bad("score must be a number from -1 (bad) to 1 (good).", "score");
  }
  f.score = score->get<double>();
  if (auto c = body.find("comment"); c != body.end() && !c->is_null()) {
    if (!c->is_string() || c->get<std::string>().size() > kMaxFeedbackComment) {
      return bad("comment must be a string of at most " + std::to_string(kMaxFeedbackComment) +
                     " bytes.",
                 "comment");
    }
    f.comment = c->get<std::string>();
  }
  for (const auto& [key, value] : body.items()) {
    if (key != "request_id" && key != "score" && key != "comment") {
      return bad("Unknown field '" + key + "' (expected request_id, score, comment).", key);
    }
  }
  if (!quality_) {
    return replyError(ex, responder,
                      api::Status(api::ErrorCode::kNotFound,
                                  "Feedback is not recorded here: the gateway has no quality "
                                  "store (quality.path).",
                                  {}, "feedback_disabled"),
                      principal->team, "", "");
  }
  api::Json reply = {{"object", "feedback"},
                     {"request_id", f.request_id},
                     {"score", f.score},
                     {"recorded", true}};
  const std::string team = principal->team;
  quality_->feedback(std::move(f), [responder, reply, this, team](api::Status st) {
    if (st.ok()) {
      responder->reply(200, reply.dump(-1, ' ', false, api::Json::error_handler_t::replace), {});
      return;
    }
    api::Status failure(api::ErrorCode::kUnavailable,
                        "The feedback could not be stored: " + st.message());
    responder->reply(failure.httpStatusCode(), api::serializeError(failure), {});
  });
}

}  // namespace gateway
