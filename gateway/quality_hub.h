// QualityHub: the gateway's side of the quality room. It owns the Recorder (records written off
// the request path), samples stored records for the LLM judge within the judge's daily budget
// (kept in the ledger as team `judge`), and prices local answers per GPU hour.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <random>
#include <string>

#include "gateway/config.h"
#include "gateway/metrics.h"
#include "policies/ledger.h"
#include "quality/judge.h"
#include "quality/recorder.h"
#include "routers/fallback.h"

namespace gateway {

class QualityHub {
 public:
  static constexpr const char* kJudgeTeam = "judge";

  // Opens the store of `config.quality.path` (creating its directory). `judge_chain` is the
  // route of the judge's model (null without a judge); `ledger` keeps the judge's budget and
  // must outlive the hub, as must `judge_chain` and `metrics`.
  static api::StatusOr<std::unique_ptr<QualityHub>> open(const Config& config, Metrics& metrics,
                                                         policies::Ledger* ledger,
                                                         routers::FallbackChain* judge_chain);
  ~QualityHub();

  // Queues a record (text metrics are computed on the writer thread). Never blocks: a full
  // queue drops it and counts the drop.
  void record(quality::QualityRecord r);
  // Queues feedback; `done` gets the write's status (from the writer thread).
  void feedback(quality::Feedback f, std::function<void(api::Status)> done);
  // No judge call starts after this (the gateway stops before its HTTP client goes).
  void stop() { stopping_ = true; }

  quality::RecorderStats stats() const { return recorder_->stats(); }
  // What a local answer cost: its share of the engine's busy time at the GPU-hour price.
  double localCostUsd(const api::Usage& usage) const {
    return usage.engine_compute_s / 3600.0 * gpu_hour_usd_;
  }
  void flush() { recorder_->flush(); }

 private:
  QualityHub(const Config& config, Metrics& metrics, policies::Ledger* ledger,
             routers::FallbackChain* judge_chain);
  // On the writer thread, after a record is stored: maybe judge it.
  void maybeJudge(const quality::QualityRecord& r);

  Metrics& metrics_;
  policies::Ledger* ledger_;
  routers::FallbackChain* judge_chain_;
  const std::shared_ptr<const policies::PriceTable> prices_;
  const double gpu_hour_usd_;
  quality::JudgeConfig judge_config_;
  std::unique_ptr<quality::Judge> judge_;
  std::unique_ptr<quality::Recorder> recorder_;
  std::atomic<bool> stopping_{false};
  std::mutex rng_mu_;
  std::mt19937_64 rng_;
};

}  // namespace gateway
