#include "gateway/chat_forwarder.h"

#include <cstdio>

namespace gateway {
namespace {

// A client this far behind is dropped even though its upstream is paused (the local engine
// cannot pause, and a paused upstream may still deliver what it had in flight).
constexpr size_t kMaxPendingStreamBytes = 16u << 20;

// The ledger row's status for a failed request: what happened, even after a 200 stream began.
int rowStatus(const api::Status& s) {
  return s.code() == api::ErrorCode::kCancelled ? 499 : s.httpStatusCode();
}

}  // namespace

ChatForwarder::ChatForwarder(std::shared_ptr<Responder> out, Metrics& metrics,
                             const std::set<std::string>& local_providers, LiveStats& live,
                             std::shared_ptr<routers::Account> account, Context context)
    : out_(std::move(out)),
      metrics_(metrics),
      local_providers_(local_providers),
      live_(live),
      account_(std::move(account)),
      ctx_(std::move(context)) {}

void ChatForwarder::attach() {
  std::weak_ptr<ChatForwarder> weak = weak_from_this();
  out_->onClientGone([weak] {
    if (auto self = weak.lock()) self->cancel();
  });
  out_->onDrained([weak] {
    if (auto self = weak.lock()) self->resume();
  });
}

void ChatForwarder::onRoute(const routers::RouteInfo& route) {
  // Keep the planner's scores when the answering target reports none of its own.
  std::optional<double> complexity = route_.complexity;
  std::string escalation = route_.escalation;
  route_ = route;
  if (!route_.complexity) route_.complexity = complexity;
  if (route_.escalation.empty()) route_.escalation = std::move(escalation);
}

void ChatForwarder::setDecision(std::optional<double> complexity, std::string note) {
  route_.complexity = complexity;
  route_.escalation = std::move(note);
}

void ChatForwarder::setCall(std::shared_ptr<routers::ProviderCall> call) {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;  // it answered already (a refusal inside chat())
  call_ = std::move(call);
  if (cancel_requested_) call_->cancel();
  if (paused_) call_->setPaused(true);
}

void ChatForwarder::cancel() {
  std::shared_ptr<routers::ProviderCall> call;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancel_requested_ = true;
    call = call_;
  }
  if (call) call->cancel();
}

void ChatForwarder::resume() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!paused_) return;
  paused_ = false;
  if (call_) call_->setPaused(false);
}

void ChatForwarder::pause() {
  {
    // setPaused under mu_: a resume() racing this pause must not overtake it.
    std::lock_guard<std::mutex> lock(mu_);
    if (paused_) return;
    paused_ = true;
    if (call_) call_->setPaused(true);
  }
  // The client may have drained between the reading of pendingBytes() and `paused_`: its
  // drain notification then found nothing to resume. From here on one will (paused_ is set).
  if (out_->pendingBytes() <= Responder::kPauseAboveBytes) resume();
}

void ChatForwarder::onChunk(api::ChatChunk chunk) {
  if (!started_) {
    started_ = true;
    ttft_ = secondsSince(ctx_.received);
    out_->startStream(headers());
  }
  const size_t pending = out_->pendingBytes();
  if (pending > kMaxPendingStreamBytes) {
    metrics_.recordRejected("slow_client");
    cancel();
    return;
  }
  if (pending > Responder::kPauseAboveBytes) pause();
  if (tap_) {
    for (const api::ChunkChoice& c : chunk.choices) {
      if (c.delta.content) streamed_text_ += *c.delta.content;
      if (c.finish_reason) streamed_finish_ = *c.finish_reason;
    }
  }
  chunk.model = answeringModel();
  std::string framed = ctx_.writer->chunk(chunk);
  if (!framed.empty()) out_->write(std::move(framed));
}

std::string ChatForwarder::answeringModel() const {
  // The model that answered, as clients name it (an `auto` request, a fallback, a refused
  // cloud call served locally); x-switchyard-route and x-switchyard-escalation say why.
  return route_.entry.empty() ? ctx_.model : route_.entry;
}

void ChatForwarder::finishError(const api::Status& s, double duration) {
  const bool local_route = local_providers_.count(route_.provider) > 0;
  const std::string decision = account_->decisionFor(local_route);
  account_->finish(route_, local_route, nullptr, rowStatus(s), duration);
  const double cost = account_->costUsd();
  if (cost > 0) metrics_.recordUsage(ctx_.team, ctx_.model, route_.label, 0, 0, 0, cost);
  const int shown = started_ ? 200 : ctx_.entrance->errorStatus(s);
  live_.add(LiveSample{ctx_.team, decision, shown, duration * 1000, cost, unixMs()});
  if (started_) {
    // The stream broke in the middle: the client gets a clean error event and the end.
    out_->write(ctx_.writer->streamError(s));
    out_->finish();
    metrics_.recordRequest(ctx_.team, ctx_.model, route_.label, 200, duration, ttft_);
    return;
  }
  Headers h = headers();
  addRetryAfter(h, s);
  out_->reply(shown, ctx_.entrance->errorBody(s, ctx_.request_id), std::move(h));
  metrics_.recordRequest(ctx_.team, ctx_.model, route_.label, shown, duration, -1);
}

void ChatForwarder::finishStream(api::ChatResponse& r, double duration) {
  if (!started_) {
    started_ = true;
    out_->startStream(headers());
  }
  r.model = answeringModel();
  out_->write(ctx_.writer->streamEnd(r));
  out_->finish();
  metrics_.recordRequest(ctx_.team, ctx_.model, route_.label, 200, duration, ttft_);
}

void ChatForwarder::onFinish(api::StatusOr<api::ChatResponse> result) {
  const double duration = secondsSince(ctx_.received);
  {
    // The call holds this forwarder as its sink: drop the call so that neither outlives the
    // request.
    std::lock_guard<std::mutex> lock(mu_);
    call_.reset();
    finished_ = true;
  }
  if (!result.ok()) return finishError(result.status(), duration);
  api::ChatResponse& r = result.value();
  const bool local_route = local_providers_.count(route_.provider) > 0;
  const std::string decision = account_->decisionFor(local_route);
  if (route_.confidence) metrics_.observeConfidence(*route_.confidence);
  account_->finish(route_, local_route, r.usage ? &*r.usage : nullptr, 200, duration);
  const double cost = account_->costUsd();
  if (r.usage || cost > 0) {
    const api::Usage u = r.usage.value_or(api::Usage{});
    metrics_.recordUsage(ctx_.team, ctx_.model, route_.label, u.prompt_tokens,
                         u.cached_prompt_tokens, u.completion_tokens, cost);
  }
  live_.add(LiveSample{ctx_.team, decision, 200, duration * 1000, cost, unixMs()});
  // The tap sees the answer as the client got it (streams assembled from the chunks), once
  // the client has it.
  std::optional<api::ChatResponse> tapped;
  if (tap_) {
    tapped = r;
    if (ctx_.stream) {
      api::Choice& c = tapped->choices.emplace_back();
      c.message.role = api::Role::kAssistant;
      c.message.content = api::Content::ofText(std::move(streamed_text_));
      if (!streamed_finish_.empty()) c.finish_reason = streamed_finish_;
    }
  }
  if (!ctx_.stream) {
    r.model = answeringModel();
    Headers h = headers();
    if (r.usage || cost > 0) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.8f", cost);
      h.emplace_back("x-switchyard-cost-usd", buf);
    }
    if (account_->estimated()) h.emplace_back("x-switchyard-cost-estimated", "true");
    out_->reply(200, ctx_.writer->response(r), std::move(h));
    metrics_.recordRequest(ctx_.team, ctx_.model, route_.label, 200, duration, -1);
  } else {
    finishStream(r, duration);
  }
  if (tapped) {
    AnswerTap tap = std::move(tap_);
    tap(route_, local_route, *tapped);
  }
}

Headers ChatForwarder::headers() const {
  Headers h = commonHeaders(route_.label);
  h.emplace_back("x-switchyard-attempts", std::to_string(route_.attempts));
  if (!ctx_.route_hint.empty()) h.emplace_back("x-switchyard-route-hint", ctx_.route_hint);
  if (!route_.failed.empty()) {
    std::string from;
    for (const std::string& f : route_.failed) from += (from.empty() ? "" : ", ") + f;
    h.emplace_back("x-switchyard-fallback-from", from);
  }
  char buf[32];
  if (route_.complexity) {
    std::snprintf(buf, sizeof buf, "%.3f", *route_.complexity);
    h.emplace_back("x-switchyard-complexity", buf);
  }
  if (route_.confidence) {
    std::snprintf(buf, sizeof buf, "%.3f", *route_.confidence);
    h.emplace_back("x-switchyard-confidence", buf);
  }
  if (!route_.escalation.empty()) {
    std::string note = route_.escalation.substr(0, 300);
    for (char& c : note) {
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = ' ';
    }
    h.emplace_back("x-switchyard-escalation", note);
  }
  return h;
}

}  // namespace gateway
