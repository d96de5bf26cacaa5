#include "routers/cascade.h"

#include <atomic>
#include <mutex>
#include <vector>

namespace routers {
namespace {

std::string responseText(const api::ChatResponse& r) {
  return r.choices.empty() ? std::string() : r.choices[0].message.content.joinedText();
}

class CascadeCall : public ProviderCall, public std::enable_shared_from_this<CascadeCall> {
 public:
  CascadeCall(const api::ChatRequest& request, std::shared_ptr<ChatSink> out,
              CascadeOptions options)
      : request_(request),
        out_(std::move(out)),
        options_(std::move(options)),
        monitor_(options_.confidence) {}

  void start(Provider& local, Deadline deadline) {
    // The local side always streams, so that an early escalation keeps the draft as far as
    // it got; a non-streamed client gets the answer assembled from the chunks.
    api::ChatRequest streamed = request_;
    streamed.stream = true;
    streamed.include_usage = true;
    auto call = local.chat(streamed, std::make_shared<LocalSink>(shared_from_this()), deadline);
    std::lock_guard<std::mutex> lock(mu_);
    local_call_ = call;
    if (cancelled_) call->cancel();
  }

  void cancel() override {
    std::shared_ptr<ProviderCall> local, cloud;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
      local = local_call_;
      cloud = cloud_call_;
    }
    if (cloud) cloud->cancel();
    if (local) local->cancel();
  }

 private:
  enum class Phase { kHolding, kLocal, kEscalated, kDone };

  // ---- the local side (engine thread) ---------------------------------------------------------

  void onLocalRoute(const RouteInfo& route) { local_route_ = route; }

  void onLocalTokenStats(double logprob, double entropy) {
    monitor_.onToken(logprob, entropy);
    // Streams decide once, when the held tokens are in (onLocalChunk).
    if (request_.stream || phase_ != Phase::kHolding || !monitor_.shouldEscalateEarly()) return;
    std::string reason;
    if (decide(false, &reason) == Verdict::kEscalate) escalate("early: " + reason, false);
  }

  void onLocalChunk(api::ChatChunk chunk) {
    if (phase_ == Phase::kEscalated || phase_ == Phase::kDone) return;  // the draft is frozen
    for (const auto& c : chunk.choices) {
      if (c.delta.content) draft_ += *c.delta.content;
      if (c.finish_reason) finish_reason_ = *c.finish_reason;
      if (c.logprobs) logprobs_.insert(logprobs_.end(), c.logprobs->begin(), c.logprobs->end());
    }
    if (chunk_id_.empty()) {
      chunk_id_ = chunk.id;
      chunk_created_ = chunk.created;
      chunk_model_ = chunk.model;
    }
    if (!request_.stream) {
      // Non-streamed: nothing goes out before the end (early escalation aside).
      return;
    }
    if (phase_ == Phase::kLocal) {
      out_->onChunk(std::move(chunk));
      return;
    }
    if (phase_ != Phase::kHolding) return;  // escalated: the draft is only recorded
    held_.push_back(std::move(chunk));
    if (monitor_.tokens() < options_.hold_tokens) return;
    std::string reason;
    if (decide(false, &reason) == Verdict::kEscalate && escalate(reason, false)) return;
    commitLocal();
  }

  void onLocalFinish(api::StatusOr<api::ChatResponse> result) {
    if (phase_ == Phase::kEscalated || phase_ == Phase::kDone) return;
    if (!result.ok()) {
      const api::Status& s = result.status();
      bool committed = phase_ == Phase::kLocal;
      if (s.code() != api::ErrorCode::kCancelled && !committed &&
          escalate("local engine failed: " + s.message(), false)) {
        return;
      }
      if (!committed) announce(escalation_note_);
      finish(std::move(result));
      return;
    }
    local_finished_ = true;
    if (!request_.stream) {
      // Assemble the non-streamed answer from the streamed pieces.
      api::ChatResponse& r = *result;
      if (r.id.empty()) r.id = chunk_id_;
      if (r.created == 0) r.created = chunk_created_;
      if (r.model.empty()) r.model = chunk_model_;
      api::Choice choice;
      choice.message.role = api::Role::kAssistant;
      choice.message.content = api::Content::ofText(draft_);
      choice.finish_reason = finish_reason_.empty() ? "stop" : finish_reason_;
      if (request_.logprobs) choice.logprobs = logprobs_;
      r.choices = {std::move(choice)};
      local_result_ = r;  // stands in if the escalation fails before answering
    }
    if (phase_ == Phase::kHolding) {
      std::string reason;
      if (decide(true, &reason) == Verdict::kEscalate && escalate(reason, true)) return;
      if (!request_.stream) {
        announce(escalation_note_);
        finish(std::move(result));
        return;
      }
      commitLocal();
    }
    finish(std::move(result));
  }

  // ---- decisions ------------------------------------------------------------------------------

  Verdict decide(bool final, std::string* reason) {
    if (!options_.decide) return Verdict::kKeepLocal;
    return options_.decide(monitor_.score(), final, reason);
  }

  // Streams out what was held and lets the rest of the local answer through.
  void commitLocal() {
    phase_ = Phase::kLocal;
    announce(escalation_note_);
    for (auto& c : held_) out_->onChunk(std::move(c));
    held_.clear();
  }

  // Tries the cloud. False when it may not (the local answer then stands).
  bool escalate(const std::string& reason, bool local_complete) {
    if (!options_.escalate) return false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (cancelled_) return false;
    }
    phase_ = Phase::kEscalated;  // from here on the local side never touches `out_`
    reason_ = reason;
    local_finished_ = local_complete;
    auto started = options_.escalate(request_, std::make_shared<CloudSink>(shared_from_this()));
    if (!started.ok()) {
      phase_ = Phase::kHolding;
      escalation_note_ = "wanted (" + reason + ") but " + started.status().message();
      return false;
    }
    std::shared_ptr<ProviderCall> local;
    bool cancelled;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cloud_call_ = *started;
      local = local_call_;
      cancelled = cancelled_;
    }
    if (cancelled) (*started)->cancel();
    if (local && !local_complete) local->cancel();
    return true;
  }

  // ---- the cloud side (provider threads) ------------------------------------------------------

  // The chain reports its route before its first chunk or its end; it is passed on then,
  // unless a failed escalation leaves the finished local answer standing.
  void onCloudRoute(const RouteInfo& route) { cloud_route_ = route; }

  void announceCloud() {
    if (announced_) return;
    announced_ = true;
    RouteInfo r = cloud_route_;
    r.complexity = options_.complexity;
    r.confidence = monitor_.score();
    r.escalation = reason_;
    out_->onRoute(r);
  }

  void onCloudChunk(api::ChatChunk chunk) {
    announceCloud();
    for (const auto& c : chunk.choices) {
      if (c.delta.content) cloud_text_ += *c.delta.content;
    }
    out_->onChunk(std::move(chunk));
  }

  void onCloudFinish(api::StatusOr<api::ChatResponse> result) {
    if (!result.ok() && !announced_ && local_result_ &&
        result.status().code() != api::ErrorCode::kCancelled) {
      // The cloud failed before a byte reached the client: the finished local answer stands.
      announce("wanted (" + reason_ + ") but the cloud failed: " + result.status().message());
      finish(std::move(*local_result_));
      return;
    }
    announceCloud();
    if (result.ok()) {
      if (!request_.stream) cloud_text_ = responseText(*result);
      if (options_.on_pair) {
        CascadePair pair;
        pair.local_text = draft_;
        pair.local_complete = local_finished_;
        pair.confidence = monitor_.score();
        pair.local_tokens = monitor_.tokens();
        pair.cloud_text = cloud_text_;
        pair.cloud_route = cloud_route_.label;
        pair.reason = reason_;
        options_.on_pair(pair);
      }
    }
    finish(std::move(result));
  }

  // ---- the outer sink -----------------------------------------------------------------------

  void announce(const std::string& note) {
    RouteInfo r = local_route_;
    r.complexity = options_.complexity;
    r.confidence = monitor_.score();
    r.escalation = note;
    out_->onRoute(r);
  }

  void finish(api::StatusOr<api::ChatResponse> result) {
    if (phase_ == Phase::kDone) return;
    phase_ = Phase::kDone;
    {
      std::lock_guard<std::mutex> lock(mu_);
      local_call_.reset();
      cloud_call_.reset();
    }
    out_->onFinish(std::move(result));
  }

  class LocalSink : public ChatSink {
   public:
    explicit LocalSink(std::shared_ptr<CascadeCall> c) : c_(std::move(c)) {}
    void onRoute(const RouteInfo& route) override { c_->onLocalRoute(route); }
    void onTokenStats(double lp, double h) override { c_->onLocalTokenStats(lp, h); }
    void onChunk(api::ChatChunk chunk) override { c_->onLocalChunk(std::move(chunk)); }
    void onFinish(api::StatusOr<api::ChatResponse> r) override {
      auto c = std::move(c_);
      c->onLocalFinish(std::move(r));
    }

   private:
    std::shared_ptr<CascadeCall> c_;
  };

  class CloudSink : public ChatSink {
   public:
    explicit CloudSink(std::shared_ptr<CascadeCall> c) : c_(std::move(c)) {}
    void onRoute(const RouteInfo& route) override { c_->onCloudRoute(route); }
    void onChunk(api::ChatChunk chunk) override { c_->onCloudChunk(std::move(chunk)); }
    void onFinish(api::StatusOr<api::ChatResponse> r) override {
      auto c = std::move(c_);
      c->onCloudFinish(std::move(r));
    }

   private:
    std::shared_ptr<CascadeCall> c_;
  };

  const api::ChatRequest request_;
  const std::shared_ptr<ChatSink> out_;
  const CascadeOptions options_;

  // The local side runs first and alone; once escalated, only the cloud side acts on the
  // outer sink. `phase_` moves forward only, each step taken by the side that owns it.
  std::atomic<Phase> phase_{Phase::kHolding};
  ConfidenceMonitor monitor_;
  RouteInfo local_route_;
  std::vector<api::ChatChunk> held_;
  std::string draft_;
  std::atomic<bool> local_finished_{false};
  std::string cloud_text_;
  std::string reason_;
  std::string escalation_note_;
  std::optional<api::ChatResponse> local_result_;  // non-streamed: the finished local answer
  std::string finish_reason_, chunk_id_, chunk_model_;
  int64_t chunk_created_ = 0;
  std::vector<api::TokenLogprob> logprobs_;
  RouteInfo cloud_route_;
  bool announced_ = false;  // the cloud route was passed on

  std::mutex mu_;  // what cancel() touches
  std::shared_ptr<ProviderCall> local_call_, cloud_call_;
  bool cancelled_ = false;
};

}  // namespace

std::shared_ptr<ProviderCall> startCascade(Provider& local, const api::ChatRequest& request,
                                           std::shared_ptr<ChatSink> sink, Deadline deadline,
                                           CascadeOptions options) {
  auto call = std::make_shared<CascadeCall>(request, std::move(sink), std::move(options));
  call->start(local, deadline);
  return call;
}

}  // namespace routers
