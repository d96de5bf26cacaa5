// QualityHub: the gateway's side of the quality room. It owns the Recorder (records written off
// the request path), samples stored records for the LLM judge within the judge's daily budget
// (kept in the ledger as team `judge`), and prices local answers per GPU hour.
//
// The judge reads a record's prompt and answers, so it is a path of the team's data to the
// judge's provider: when the judge runs on a cloud model, only records of teams whose policy
// lets their data go there (allow_cloud, and the judge's model in allowed_models) are judged;
// the others are stored with a judge result that says so (see skippedByPolicy()).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>

#include "gateway/config.h"
#include "gateway/metrics.h"
#include "policies/ledger.h"
#include "policies/policy_set.h"
#include "policies/rate_limiter.h"
#include "quality/judge.h"
#include "quality/recorder.h"
#include "routers/fallback.h"
#include "routers/spend.h"

namespace gateway {

class QualityHub {
 public:
  static constexpr const char* kJudgeTeam = "judge";
  // POST /v1/feedback per team: a bucket of this many, refilled over a minute.
  static constexpr int64_t kFeedbackPerMinute = 120;
  // Feedback waiting for the writer (its own queue: a flood never crowds records out).
  static constexpr size_t kFeedbackQueue = 256;
  // The detail of the judge result of a record kept from the judge by its team's policy.
  static constexpr const char* kSkippedPolicy = "skipped_policy";

  // Opens the store of `config.quality.path` (creating its directory) or `config.quality.url`.
  // `judge_chain` is the route of the judge's model (null without a judge); its calls run
  // through `spender` as team `judge`, whose daily budget is quality.judge.daily_budget_usd in
  // the ledger. `ledger`, `spender`, `judge_chain` and `metrics` must outlive the hub.
  static api::StatusOr<std::unique_ptr<QualityHub>> open(const Config& config, Metrics& metrics,
                                                         policies::Ledger* ledger,
                                                         routers::Spender* spender,
                                                         routers::FallbackChain* judge_chain);
  ~QualityHub();

  // Queues a record (text metrics are computed on the writer thread). Never blocks: a full
  // queue drops it and counts the drop.
  void record(quality::QualityRecord r);
  // Takes one from the team's feedback bucket; kRateLimited with a Retry-After when empty.
  // Across replicas that share a PostgreSQL ledger each one enforces its share of the limit
  // (divided by Ledger::liveReplicas(), like the request limits).
  api::Status admitFeedback(const std::string& team);
  // Queues feedback; `done` gets the write's status (from the writer thread): kNotFound when
  // the team has no record of the request, kUnavailable when the feedback queue is full.
  void feedback(quality::Feedback f, std::function<void(api::Status)> done);
  // The policies that decide which teams' records the judge may read (a reload swaps them).
  void setPolicies(std::shared_ptr<const policies::PolicySet> policies);
  // No judge call starts after this (the gateway stops before its HTTP client goes).
  void stop() { stopping_ = true; }

  quality::RecorderStats stats() const { return recorder_->stats(); }
  // What a local answer of `provider` cost: its share of the engine's busy time (a `tier:
  // local` server's: the call's wall time) at that provider's GPU-hour price.
  double localCostUsd(const api::Usage& usage, const std::string& provider) const {
    auto it = provider_gpu_hour_usd_.find(provider);
    return usage.engine_compute_s / 3600.0 *
           (it == provider_gpu_hour_usd_.end() ? gpu_hour_usd_ : it->second);
  }
  void flush() { recorder_->flush(); }

 private:
  QualityHub(const Config& config, Metrics& metrics, policies::Ledger* ledger,
             routers::Spender* spender, routers::FallbackChain* judge_chain);
  // On the writer thread, after a record is stored: maybe judge it.
  void maybeJudge(const quality::QualityRecord& r);
  // True when the team's policy keeps its data from the judge's provider.
  bool judgeForbiddenFor(const std::string& team) const;
  // The judge result stored on such a team's records: not judged, and why.
  quality::JudgeResult skippedByPolicy(const std::string& team) const;

  Metrics& metrics_;
  policies::Ledger* ledger_;
  routers::FallbackChain* judge_chain_;
  std::shared_ptr<const policies::TeamPolicy> judge_policy_;  // team `judge`: its daily budget
  std::unique_ptr<routers::Provider> judge_provider_;  // the judge's chain, metered
  const std::shared_ptr<const policies::PriceTable> prices_;
  const double gpu_hour_usd_;
  std::map<std::string, double> provider_gpu_hour_usd_;  // `tier: local` servers' own prices
  quality::JudgeConfig judge_config_;
  std::unique_ptr<quality::Judge> judge_;
  std::unique_ptr<quality::Recorder> recorder_;
  // Whether any target of the judge's chain is a cloud provider.
  bool judge_is_cloud_ = false;
  mutable std::mutex policies_mu_;
  std::shared_ptr<const policies::PolicySet> policies_;
  policies::RateLimiter feedback_limiter_;
  std::atomic<bool> stopping_{false};
  std::mutex rng_mu_;
  std::mt19937_64 rng_;
};

}  // namespace gateway
