// The cascade (DESIGN.md "routers/"): answer on the local engine first, watch its confidence
// token by token, and escalate to the cloud when the team's trigger says the local answer is
// not good enough. The client gets one answer, and for streams one coherent stream:
//
//   - non-streamed: the local answer is generated whole (or cut short by an early
//     escalation), scored, and either returned or replaced by the cloud's;
//   - streamed: the first `hold_tokens` local tokens are held back until the confidence is
//     known; then either they and the rest stream out, or the local call is cancelled and the
//     cloud's stream is what the client sees, from its first byte.
//
// The confidence comes from the local side's ChatSink::onTokenStats: the embedded engine's, or
// a `tier: local` server's logprobs (routers/remote_engine.h). A local side that reports none
// (a server that returns no logprobs) leaves it unknown: `decide` gets nullopt, a stream is
// decided after `hold_tokens` answer chunks instead, an undecided trigger keeps the local
// answer as always, and the route's note says "confidence unknown".
//
// When the cascade escalates after a local draft, both answers exist: `on_pair` hands them to
// the quality recorder, and `on_draft_compute` the draft's engine time to the request's
// account. A draft still running when the cloud answers is either cut or completed:
//
//   - cut (`complete_draft` unset or false): cancelled at the cloud's first byte. It reports
//     its engine time when it ends (at the engine's next step), so the escalated request ends
//     only after its draft has, and the pair holds the draft as far as it got;
//   - completed (`complete_draft` true): it goes on in the background, its tokens no longer
//     reaching the client, so that the pair compares two whole answers. The client's answer
//     never waits for it: a draft that ends before the cloud's answer is costed in the
//     request's account (`on_draft_compute`) as a cut one is; one that ends after it is
//     reported to `on_background_draft` and in the pair (local_compute_s, local_usage) only,
//     the request's account being settled by then. `on_pair` comes when both have ended. A
//     cancel of the call (the client went away) cancels the background draft too.
//
// The gateway supplies how to reach the cloud (`escalate`, which reserves budget and may
// refuse) and how to judge (`decide`, the team's trigger).
#pragma once

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "routers/confidence.h"
#include "routers/provider.h"

namespace routers {

enum class Verdict {
  kKeepLocal,  // the local answer stands
  kEscalate,   // go to the cloud
  kUndecided,  // not known yet (more tokens may tell); at the end it keeps the local answer
};

// Both answers to one prompt, when an escalation happened after a local draft.
struct CascadePair {
  std::string local_text;      // the draft as far as it got
  bool local_complete = false; // the draft ran to its end (false: cut short by escalation)
  bool local_background = false;  // the draft went on after the cloud answered
  std::optional<double> confidence;
  ConfidenceMonitor::Features confidence_features;
  int local_tokens = 0;
  RouteInfo local_route;            // the local target that drafted
  std::string local_finish_reason;  // "" when the draft was cut short
  std::optional<api::Usage> local_usage;  // when the draft finished (engine_compute_s set)
  double local_latency_ms = 0;      // cascade start to the draft's end (or its cut)
  double local_compute_s = 0;       // the draft's engine time, complete or cut
  std::string cloud_text;
  std::string cloud_route;          // label of the target that answered
  RouteInfo cloud_route_info;       // provider and model, to price cloud_usage
  std::string cloud_finish_reason;
  std::optional<api::Usage> cloud_usage;
  double cloud_latency_ms = 0;      // escalation to the cloud's last byte
  std::string reason;               // why it escalated
};

struct CascadeOptions {
  int hold_tokens = 16;  // streamed: local tokens held back before the decision
  ConfidenceConfig confidence;
  std::optional<double> complexity;  // reported in RouteInfo
  // The team's judgement given the confidence so far (nullopt before any token); `final` when
  // the local answer is complete. Returns the verdict and, for kEscalate, the reason.
  using Decide =
      std::function<Verdict(std::optional<double> confidence, bool final, std::string* reason)>;
  Decide decide;
  // Starts the cloud call for `request` into `sink`, or says why it may not (budget
  // exhausted, data rules): the local answer then stands, and the reason is reported.
  // `reason_code` is a bounded label of why: "confidence" (the trigger fired on the local
  // answer's scores) or "local_failure" (the local engine failed). Asked at most once per
  // request: a refused escalation is final.
  using Escalate = std::function<api::StatusOr<std::shared_ptr<ProviderCall>>(
      const api::ChatRequest& request, std::shared_ptr<ChatSink> sink,
      const std::string& reason_code)>;
  Escalate escalate;
  // Runs `escalate` elsewhere than the caller's thread (the local side calls from the engine's
  // thread, which must never wait on a ledger or a connection). Unset: run in place.
  std::function<void(std::function<void()>)> post;
  // Called once when both answers exist (from a provider thread; must not block).
  std::function<void(const CascadePair& pair)> on_pair;
  // Called once when the cloud answered after a local draft, before the outer sink's
  // onFinish: the draft's engine time (seconds, ChatSink::onEngineTime), which the answer's
  // usage does not hold, so that the request's ledger row costs it.
  std::function<void(double compute_s)> on_draft_compute;
  // Asked once, when the cloud answers while the local draft is still running: true lets the
  // draft finish in the background (see above), false or unset cuts it. Called under the
  // cascade's lock: must not block (the gateway asks the team's draft mode and DraftTimeCap).
  std::function<bool()> complete_draft;
  // Called once when a draft that went on in the background ends (complete, failed or
  // cancelled), with its engine time in seconds: what the team's cap counts. From the local
  // side's thread; must not block.
  std::function<void(double compute_s)> on_background_draft;
};

// The engine time that background drafts spent per team over the last hour, against each
// team's cap (routing.draft_gpu_seconds_per_hour). Thread-safe and bounded: one-minute
// buckets, 60 per team, for at most kMaxTeams teams (teams come from the policies; past the
// bound, a team not yet tracked is refused, and its drafts are cut). A draft is charged when
// it ends, so drafts running at once may overshoot the cap by their own time.
class DraftTimeCap {
 public:
  static constexpr size_t kMaxTeams = 4096;
  // Whether `team` spent less than `cap_s` in the hour before `now` (cap 0: never).
  bool allows(const std::string& team, double cap_s, Clock::time_point now);
  void spend(const std::string& team, double compute_s, Clock::time_point now);
  double spentLastHour(const std::string& team, Clock::time_point now);

 private:
  struct Window {
    std::array<int64_t, 60> minute{};  // the minute each bucket holds (since the clock's epoch)
    std::array<double, 60> seconds{};
  };
  double sumLocked(const Window& w, int64_t now_minute) const;
  std::mutex mu_;
  std::map<std::string, Window> teams_;
};

// Runs `request` through the cascade on `local` (a provider or a fallback chain ending in the
// local engine). The returned call cancels whichever side is running.
std::shared_ptr<ProviderCall> startCascade(Provider& local, const api::ChatRequest& request,
                                           std::shared_ptr<ChatSink> sink, Deadline deadline,
                                           CascadeOptions options);

}  // namespace routers
