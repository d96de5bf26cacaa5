#include "routers/cascade.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <vector>

namespace routers {
namespace {

constexpr const char* kUnknownConfidenceNote =
    "confidence unknown: the local target reported no token logprobs";

// One cascade. The local side (the engine's thread) runs first and alone; once it escalates,
// the cloud side (the HTTP thread) takes over the outer sink, while the local answer goes on
// as a hedge until the cloud's first byte: a cloud that fails before answering leaves the
// local answer standing. Every decision about who answers is taken under `mu_`; the outer
// sink is called outside it, by the one side that owns it at that moment.
class CascadeCall : public ProviderCall, public std::enable_shared_from_this<CascadeCall> {
 public:
  CascadeCall(const api::ChatRequest& request, std::shared_ptr<ChatSink> out,
              CascadeOptions options)
      : request_(request),
        out_(std::move(out)),
        options_(std::move(options)),
        monitor_(options_.confidence),
        started_(Clock::now()) {}

  void start(Provider& local, Deadline deadline) {
    // The local side always streams, so that the draft is known as far as it got; a
    // non-streamed client gets the answer assembled from the chunks.
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

  // Backpressure reaches the side that feeds the client: the cloud once it answers (the
  // local engine cannot pause, and its answers are bounded).
  void setPaused(bool paused) override {
    std::lock_guard<std::mutex> lock(mu_);  // pauses and resumes arrive in order
    paused_ = paused;
    if (cloud_call_) cloud_call_->setPaused(paused);
  }

 private:
  enum class Phase { kHolding, kLocal, kEscalated, kDone };

  // ---- the local side -------------------------------------------------------------------------

  void onLocalRoute(const RouteInfo& route) {
    std::lock_guard<std::mutex> lock(mu_);
    local_route_ = route;
  }

  void onLocalTokenStats(const TokenStats& stats) {
    bool early;
    {
      std::lock_guard<std::mutex> lock(mu_);
      monitor_.onToken(stats);
      // Streams decide once, when the held tokens are in (onLocalChunk); a refused escalation
      // is not asked again.
      early = !request_.stream && phase_ == Phase::kHolding && !escalation_tried_ &&
              monitor_.shouldEscalateEarly();
    }
    if (!early) return;
    std::string reason;
    if (decide(false, &reason) == Verdict::kEscalate) {
      escalate("early: " + reason, "confidence", false, true);
    }
  }

  void onLocalChunk(api::ChatChunk chunk) {
    bool forward = false, decide_now = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!background_ && (phase_ == Phase::kDone || (phase_ == Phase::kEscalated && !hedging_))) {
        return;
      }
      for (const auto& c : chunk.choices) {
        if (c.delta.content) {
          draft_ += *c.delta.content;
          if (!c.delta.content->empty()) ++content_chunks_;
        }
        if (c.finish_reason) finish_reason_ = *c.finish_reason;
        if (c.logprobs) logprobs_.insert(logprobs_.end(), c.logprobs->begin(), c.logprobs->end());
      }
      if (chunk_id_.empty()) {
        chunk_id_ = chunk.id;
        chunk_created_ = chunk.created;
        chunk_model_ = chunk.model;
      }
      if (!request_.stream || background_) return;  // assembled at the end; or only recorded
      if (phase_ == Phase::kLocal) {
        forward = true;
      } else {
        held_.push_back(std::move(chunk));
        // A local target that reports no token stats (a server without logprobs) is decided
        // after as many answer chunks, its confidence unknown.
        decide_now = phase_ == Phase::kHolding &&
                     (monitor_.tokens() >= options_.hold_tokens ||
                      (monitor_.tokens() == 0 && content_chunks_ >= options_.hold_tokens));
      }
    }
    if (forward) out_->onChunk(std::move(chunk));
    if (!decide_now) return;
    std::string reason;
    if (decide(false, &reason) == Verdict::kEscalate &&
        escalate(reason, "confidence", false, true)) {
      return;
    }
    commitLocal();
  }

  void onLocalEngineTime(double compute_s) {
    std::lock_guard<std::mutex> lock(mu_);
    draft_compute_s_ = compute_s;
  }

  void onLocalFinish(api::StatusOr<api::ChatResponse> result) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!local_end_) local_end_ = Clock::now();
    local_ended_ = true;
    if (background_) {
      lock.unlock();
      endBackground(std::move(result));
      return;
    }
    if (phase_ == Phase::kDone) {
      // The cloud's answer waited for this draft's end (its engine time): it ends now.
      if (!cloud_result_) return;
      api::StatusOr<api::ChatResponse> cloud = std::move(*cloud_result_);
      cloud_result_.reset();
      lock.unlock();
      endEscalated(std::move(cloud));
      return;
    }
    if (result.ok()) keepLocalResult(*result);
    if (phase_ == Phase::kEscalated) {
      // A hedge ended. If the cloud already failed, this answer (or this error) is the one.
      hedging_ = false;
      local_done_ = result.ok();
      if (!result.ok()) local_error_ = result.status();
      if (!cloud_failure_) return;
      phase_ = Phase::kDone;
      api::Status cloud_failure = *cloud_failure_;
      lock.unlock();
      if (local_done_) {
        deliverLocal("wanted (" + reason_ + ") but the cloud failed: " + cloud_failure.message());
      } else {
        announceCloud();
        finish(cloud_failure);
      }
      return;
    }
    const bool committed = phase_ == Phase::kLocal;
    lock.unlock();
    if (!result.ok()) {
      const api::Status& s = result.status();
      if (s.code() != api::ErrorCode::kCancelled && !committed) {
        {
          std::lock_guard<std::mutex> relock(mu_);
          local_error_ = s;
        }
        if (escalate("local engine failed: " + s.message(), "local_failure", false, false)) return;
      }
      if (!committed) announce(escalation_note_);
      end(std::move(result));
      return;
    }
    if (!committed) {
      std::string reason;
      if (decide(true, &reason) == Verdict::kEscalate &&
          escalate(reason, "confidence", true, false)) {
        return;
      }
      if (!request_.stream) {
        deliverLocal(escalation_note_);
        return;
      }
      commitLocal();
    }
    end(request_.stream ? std::move(result) : api::StatusOr<api::ChatResponse>(*local_result_));
  }

  // Under mu_: remembers the finished local answer (non-streamed: assembled).
  void keepLocalResult(api::ChatResponse r) {
    if (r.id.empty()) r.id = chunk_id_;
    if (r.created == 0) r.created = chunk_created_;
    if (r.model.empty()) r.model = chunk_model_;
    if (!request_.stream) {
      api::Choice choice;
      choice.message.role = api::Role::kAssistant;
      choice.message.content = api::Content::ofText(draft_);
      choice.finish_reason = finish_reason_.empty() ? "stop" : finish_reason_;
      if (request_.logprobs) choice.logprobs = logprobs_;
      r.choices = {std::move(choice)};
    }
    local_result_ = std::move(r);
  }

  // A draft that went on in the background ended: its engine time goes to the team's cap, and
  // if the client's answer is out already, the pair is complete now (otherwise onCloudFinish
  // records it, with the draft costed in the request's account).
  void endBackground(api::StatusOr<api::ChatResponse> result) {
    std::optional<api::ChatResponse> cloud;
    double compute_s;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (result.ok()) {
        keepLocalResult(*result);
        local_done_ = true;
      }
      local_call_.reset();
      compute_s = draft_compute_s_;
      if (phase_ == Phase::kDone) cloud.swap(pending_cloud_);
    }
    if (options_.on_background_draft) options_.on_background_draft(compute_s);
    if (cloud) recordPair(*cloud);
  }

  // Under mu_, when the cloud answers while the hedge runs: the draft goes on in the
  // background (true), or is to be cut (false: the caller cancels it).
  bool keepDraftLocked() {
    hedging_ = false;
    if (!cancelled_ && options_.complete_draft && options_.complete_draft()) {
      background_ = true;
      return true;
    }
    if (!local_end_) local_end_ = Clock::now();
    return false;
  }

  // ---- decisions ------------------------------------------------------------------------------

  // With no token stats after answer text (a local server that returns no logprobs), the
  // confidence is unknown: the trigger decides on what else it knows, and where that leaves it
  // undecided the local answer stands, as it does for any undecided trigger; the note says so.
  Verdict decide(bool final, std::string* reason) {
    if (!options_.decide) return Verdict::kKeepLocal;
    std::optional<double> score;
    {
      std::lock_guard<std::mutex> lock(mu_);
      score = monitor_.score();
      if (!score && content_chunks_ > 0 && escalation_note_.empty()) {
        escalation_note_ = kUnknownConfidenceNote;
      }
    }
    return options_.decide(score, final, reason);
  }

  // Streams out what was held and lets the rest of the local answer through.
  void commitLocal() {
    std::vector<api::ChatChunk> held;
    {
      std::lock_guard<std::mutex> lock(mu_);
      phase_ = Phase::kLocal;
      held.swap(held_);
    }
    announce(escalation_note_);
    for (auto& c : held) out_->onChunk(std::move(c));
  }

  // The local answer is the one after all (non-streamed: whole; streamed: what was held).
  void deliverLocal(const std::string& note) {
    announce(note);
    if (!request_.stream) {
      end(*local_result_);
      return;
    }
    std::vector<api::ChatChunk> held;
    {
      std::lock_guard<std::mutex> lock(mu_);
      held.swap(held_);
    }
    for (auto& c : held) out_->onChunk(std::move(c));
    end(*local_result_);
  }

  // Hands the request to the cloud: from here the local side never touches `out_`, and the
  // cloud call is started by startCloud (off the engine's thread when options_.post is set).
  // `hedge`: the local answer is still being generated and goes on until the cloud answers.
  // False when the cascade may not escalate (no cloud, cancelled, or an escalation was
  // already tried: a request decides once, and a refusal stands).
  bool escalate(const std::string& reason, const std::string& code, bool local_complete,
                bool hedge) {
    if (!options_.escalate) return false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (cancelled_ || escalation_tried_) return false;
      escalation_tried_ = true;
      phase_ = Phase::kEscalated;
      escalated_at_ = Clock::now();
      reason_ = reason;
      local_finished_ = local_complete;
      hedging_ = hedge;
    }
    auto work = [self = shared_from_this(), code] { self->startCloud(code); };
    if (options_.post) {
      options_.post(std::move(work));
    } else {
      work();
    }
    return true;
  }

  void startCloud(const std::string& code) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (phase_ == Phase::kDone) return;
    }
    auto started =
        options_.escalate(request_, std::make_shared<CloudSink>(shared_from_this()), code);
    if (!started.ok()) return onEscalationRefused(started.status());
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == Phase::kDone) return;  // the cloud already answered, or failed, in full
    cloud_call_ = *started;
    if (cancelled_) (*started)->cancel();
    if (paused_) (*started)->setPaused(true);
  }

  // The cloud may not be used: the local answer stands (or, where the local engine failed,
  // its failure is the answer).
  void onEscalationRefused(const api::Status& why) {
    std::unique_lock<std::mutex> lock(mu_);
    if (phase_ == Phase::kDone) return;
    escalation_note_ = "wanted (" + reason_ + ") but " + why.message();
    if (hedging_) {
      // The local answer is still coming: the engine's thread takes it from here, as if no
      // escalation had been wanted (onLocalChunk commits, onLocalFinish delivers).
      hedging_ = false;
      phase_ = Phase::kHolding;
      return;
    }
    if (local_result_ && (local_done_ || local_finished_)) {
      lock.unlock();
      deliverLocal(escalation_note_);
      return;
    }
    api::Status failure = local_error_.value_or(why);
    const std::string note = escalation_note_;
    lock.unlock();
    announce(note);
    finish(failure);
  }

  // ---- the cloud side -------------------------------------------------------------------------

  void onCloudRoute(const RouteInfo& route) {
    std::lock_guard<std::mutex> lock(mu_);
    cloud_route_ = route;
  }

  void onCloudChunk(api::ChatChunk chunk) {
    std::shared_ptr<ProviderCall> stop_local;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (phase_ == Phase::kDone) return;
      // The cloud answers: the local hedge is no longer needed, as an answer.
      if (hedging_ && !keepDraftLocked()) stop_local = local_call_;
      for (const auto& c : chunk.choices) {
        if (c.delta.content) cloud_text_ += *c.delta.content;
        if (c.finish_reason) cloud_finish_reason_ = *c.finish_reason;
      }
    }
    if (stop_local) stop_local->cancel();
    announceCloud();
    out_->onChunk(std::move(chunk));
  }

  void onCloudFinish(api::StatusOr<api::ChatResponse> result) {
    std::shared_ptr<ProviderCall> stop_local;
    bool use_local = false, waiting_draft = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (phase_ == Phase::kDone) return;
      bool before_output = !announced_;
      if (!result.ok() && before_output &&
          result.status().code() != api::ErrorCode::kCancelled) {
        if (local_result_ && (local_done_ || local_finished_)) {
          use_local = true;
        } else if (hedging_) {
          cloud_failure_ = result.status();  // the local answer, when it ends, decides
          return;
        }
      }
      if (hedging_ && !(result.ok() && keepDraftLocked())) {
        hedging_ = false;
        stop_local = local_call_;
      }
      // A failed cloud after output: nothing to compare the draft with.
      if (background_ && !local_ended_ && !result.ok()) stop_local = local_call_;
      phase_ = Phase::kDone;
      cloud_end_ = Clock::now();
    }
    if (stop_local) stop_local->cancel();
    if (use_local) {
      deliverLocal("wanted (" + reason_ + ") but the cloud failed: " + result.status().message());
      return;
    }
    announceCloud();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!local_ended_ && !background_) {  // a cut draft: onLocalFinish ends the request
        cloud_result_ = std::move(result);  // with its cost
        return;
      }
      if (!local_ended_) {
        // A background draft: the client's answer does not wait; endBackground records the
        // pair when the draft ends.
        if (result.ok()) pending_cloud_ = *result;
        waiting_draft = true;
      }
    }
    if (waiting_draft) {
      end(std::move(result));
      return;
    }
    endEscalated(std::move(result));
  }

  // The cloud's answer (or its failure after output began), with the draft costed.
  void endEscalated(api::StatusOr<api::ChatResponse> result) {
    double compute_s;
    {
      std::lock_guard<std::mutex> lock(mu_);
      compute_s = draft_compute_s_;
    }
    if (options_.on_draft_compute && compute_s > 0) options_.on_draft_compute(compute_s);
    if (result.ok()) recordPair(*result);
    end(std::move(result));
  }

  void announceCloud() {
    RouteInfo r;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (announced_) return;
      announced_ = true;
      r = cloud_route_;
      r.confidence = monitor_.score();
    }
    r.complexity = options_.complexity;
    r.escalation = reason_;
    out_->onRoute(r);
  }

  void recordPair(const api::ChatResponse& response) {
    if (!options_.on_pair) return;
    CascadePair pair;
    const auto now = Clock::now();
    auto ms = [](Clock::duration d) {
      return std::chrono::duration<double, std::milli>(d).count();
    };
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!request_.stream && !response.choices.empty()) {
        cloud_text_ = response.choices[0].message.content.joinedText();
        cloud_finish_reason_ = response.choices[0].finish_reason;
      }
      pair.local_text = draft_;
      pair.local_complete = local_finished_ || local_done_;
      pair.local_background = background_;
      pair.confidence = monitor_.score();
      pair.confidence_features = monitor_.features();
      pair.local_tokens = monitor_.tokens();
      pair.local_route = local_route_;
      if (pair.local_complete) {
        pair.local_finish_reason = finish_reason_;
        if (local_result_) pair.local_usage = local_result_->usage;
      }
      pair.local_latency_ms = ms(local_end_.value_or(escalated_at_) - started_);
      pair.local_compute_s = draft_compute_s_;
      pair.cloud_text = cloud_text_;
      pair.cloud_route = cloud_route_.label;
      pair.cloud_route_info = cloud_route_;
      pair.cloud_finish_reason = cloud_finish_reason_;
      pair.cloud_usage = response.usage;
      pair.cloud_latency_ms = ms(cloud_end_.value_or(now) - escalated_at_);
    }
    pair.reason = reason_;
    options_.on_pair(pair);
  }

  // ---- the outer sink -------------------------------------------------------------------------

  void announce(const std::string& note) {
    RouteInfo r;
    {
      std::lock_guard<std::mutex> lock(mu_);
      r = local_route_;
      r.confidence = monitor_.score();
      r.confidence_features = monitor_.features().named();
    }
    r.complexity = options_.complexity;
    r.escalation = note;
    out_->onRoute(r);
  }

  void end(api::StatusOr<api::ChatResponse> result) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      phase_ = Phase::kDone;
      if (!background_ || local_ended_) local_call_.reset();  // a cancel still reaches the draft
      cloud_call_.reset();
    }
    out_->onFinish(std::move(result));
  }
  void finish(api::Status status) { end(api::StatusOr<api::ChatResponse>(std::move(status))); }

  class LocalSink : public ChatSink {
   public:
    explicit LocalSink(std::shared_ptr<CascadeCall> c) : c_(std::move(c)) {}
    void onRoute(const RouteInfo& route) override { c_->onLocalRoute(route); }
    void onTokenStats(const TokenStats& stats) override { c_->onLocalTokenStats(stats); }
    void onEngineTime(double compute_s) override { c_->onLocalEngineTime(compute_s); }
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

  std::mutex mu_;
  Phase phase_ = Phase::kHolding;
  ConfidenceMonitor monitor_;
  const Clock::time_point started_;
  RouteInfo local_route_, cloud_route_;
  std::vector<api::ChatChunk> held_;  // streamed local chunks not sent (yet)
  std::string draft_, finish_reason_, chunk_id_, chunk_model_;
  int content_chunks_ = 0;  // local chunks that carried answer text
  int64_t chunk_created_ = 0;
  std::vector<api::TokenLogprob> logprobs_;
  std::optional<api::ChatResponse> local_result_;  // the finished local answer (or summary)
  bool local_finished_ = false;  // the draft was complete when the cascade escalated
  bool local_done_ = false;      // a hedge ran to its end
  bool hedging_ = false;         // escalated, with the local answer still going
  std::optional<api::Status> cloud_failure_;  // the cloud failed while the hedge ran
  bool announced_ = false;       // the cloud's route was passed on
  std::string cloud_text_, cloud_finish_reason_;
  Clock::time_point escalated_at_;
  std::optional<Clock::time_point> local_end_;  // the draft finished or was cut
  bool local_ended_ = false;     // the local side's onFinish came
  double draft_compute_s_ = 0;   // the local side's engine time (onEngineTime)
  // The cloud's end, held until a cut draft has ended and reported its engine time.
  std::optional<api::StatusOr<api::ChatResponse>> cloud_result_;
  bool background_ = false;  // the draft goes on after the cloud answered (complete_draft)
  std::optional<api::ChatResponse> pending_cloud_;  // answered; the pair awaits the draft
  std::optional<Clock::time_point> cloud_end_;      // the cloud's answer ended
  std::string reason_;           // why it escalated (written before the cloud starts)
  std::string escalation_note_;  // why it did not, when it wanted to
  bool escalation_tried_ = false;  // escalate() was called once: never again for this request
  std::optional<api::Status> local_error_;  // the local engine's failure, when it failed
  std::shared_ptr<ProviderCall> local_call_, cloud_call_;
  bool cancelled_ = false;
  bool paused_ = false;
};

}  // namespace

namespace {
int64_t minuteOf(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::minutes>(t.time_since_epoch()).count();
}
}  // namespace

double DraftTimeCap::sumLocked(const Window& w, int64_t now_minute) const {
  double sum = 0;
  for (size_t i = 0; i < w.minute.size(); ++i) {
    if (w.minute[i] > now_minute - 60 && w.minute[i] <= now_minute) sum += w.seconds[i];
  }
  return sum;
}

bool DraftTimeCap::allows(const std::string& team, double cap_s, Clock::time_point now) {
  if (cap_s <= 0) return false;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = teams_.find(team);
  if (it == teams_.end()) return teams_.size() < kMaxTeams;
  return sumLocked(it->second, minuteOf(now)) < cap_s;
}

void DraftTimeCap::spend(const std::string& team, double compute_s, Clock::time_point now) {
  if (!(compute_s > 0)) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = teams_.find(team);
  if (it == teams_.end()) {
    if (teams_.size() >= kMaxTeams) return;
    it = teams_.emplace(team, Window{}).first;
  }
  const int64_t m = minuteOf(now);
  Window& w = it->second;
  const size_t i = static_cast<size_t>(((m % 60) + 60) % 60);
  if (w.minute[i] != m) {
    w.minute[i] = m;
    w.seconds[i] = 0;
  }
  w.seconds[i] += compute_s;
}

double DraftTimeCap::spentLastHour(const std::string& team, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = teams_.find(team);
  return it == teams_.end() ? 0 : sumLocked(it->second, minuteOf(now));
}

std::shared_ptr<ProviderCall> startCascade(Provider& local, const api::ChatRequest& request,
                                           std::shared_ptr<ChatSink> sink, Deadline deadline,
                                           CascadeOptions options) {
  auto call = std::make_shared<CascadeCall>(request, std::move(sink), std::move(options));
  call->start(local, deadline);
  return call;
}

}  // namespace routers
