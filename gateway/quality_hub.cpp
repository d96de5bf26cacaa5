#include "gateway/quality_hub.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "gateway/http_util.h"
#include "policies/spend.h"
#include "quality/text_metrics.h"

namespace gateway {

api::StatusOr<std::unique_ptr<QualityHub>> QualityHub::open(const Config& config,
                                                            Metrics& metrics,
                                                            policies::Ledger* ledger,
                                                            routers::Spender* spender,
                                                            routers::FallbackChain* judge_chain) {
  const QualityConfig& q = config.quality;
  if (!q.path.empty()) {
    std::error_code ec;
    auto parent = std::filesystem::path(q.path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  }
  auto store = quality::QualityStore::open(q.location());
  if (!store.ok()) return store.status();
  if (judge_chain && !ledger) {
    return api::Status(api::ErrorCode::kConfig,
                       "quality.judge needs a ledger to keep its daily budget (add `ledger: "
                       "{path: ...}`)");
  }
  std::unique_ptr<QualityHub> hub(new QualityHub(config, metrics, ledger, spender, judge_chain));
  quality::RecorderOptions options;
  options.queue_capacity = static_cast<size_t>(q.queue_size);
  options.feedback_queue_capacity = kFeedbackQueue;
  options.retention.max_age_days = q.max_age_days;
  options.retention.max_rows = q.max_rows;
  options.retention.max_bytes = q.max_mb << 20;
  QualityHub* self = hub.get();
  options.annotate = [self](quality::QualityRecord& r) {
    if (!r.redacted) r.metrics = quality::computeTextMetrics(r.local.text, r.cloud.text);
    // Stored with the reason, so that a report tells "kept from the judge" from "not sampled".
    if (self->judge_ && !r.judge && self->judgeForbiddenFor(r.team)) {
      r.judge = self->skippedByPolicy(r.team);
      self->metrics_.recordJudgeVerdict(kSkippedPolicy);
    }
  };
  options.on_stored = [self](const quality::QualityRecord& r) {
    self->metrics_.recordQualityRecord(std::string(quality::kindName(r.kind)));
    self->maybeJudge(r);
  };
  hub->recorder_ = std::make_unique<quality::Recorder>(std::move(store).value(), options);
  return hub;
}

QualityHub::QualityHub(const Config& config, Metrics& metrics, policies::Ledger* ledger,
                       routers::Spender* spender, routers::FallbackChain* judge_chain)
    : metrics_(metrics),
      ledger_(ledger),
      judge_chain_(judge_chain),
      prices_(config.prices),
      gpu_hour_usd_(config.quality.gpu_hour_usd),
      policies_(config.policies),
      rng_(std::random_device{}()) {
  for (const auto& [name, p] : config.providers) {
    if (p.gpu_hour_usd) provider_gpu_hour_usd_[name] = *p.gpu_hour_usd;
  }
  const QualityJudgeConfig& j = config.quality.judge;
  judge_config_.model = j.model;
  judge_config_.sample_rate = j.sample_rate;
  judge_config_.daily_budget_usd = j.daily_budget_usd;
  judge_config_.rubric = j.rubric;
  judge_config_.max_tokens = j.max_tokens;
  judge_config_.timeout_s = j.timeout_s;
  if (judge_chain_ && spender) {
    // The judge's calls are the gateway's own spend: one ledger row each, team `judge`.
    auto policy = std::make_shared<policies::TeamPolicy>();
    policy->name = kJudgeTeam;
    policy->budget.daily_usd = j.daily_budget_usd;
    policy->budget.when_exhausted = policies::WhenExhausted::kReject;
    judge_policy_ = policy;
    judge_provider_ = spender->providerFor(
        "judge", routers::Payer{"judge", kJudgeTeam, "judge", j.model, judge_policy_}, "judge",
        judge_chain_->targets());
    judge_ = std::make_unique<quality::Judge>(*judge_provider_, judge_config_, prices_.get());
    // The judge's model and its fallbacks: one cloud target makes the judge a cloud path.
    std::vector<std::string> models = {j.model};
    if (const ModelRoute* m = config.findModel(j.model)) {
      models.insert(models.end(), m->fallbacks.begin(), m->fallbacks.end());
    }
    for (const std::string& name : models) {
      const ModelRoute* m = config.findModel(name);
      auto p = m ? config.providers.find(m->provider) : config.providers.end();
      if (p == config.providers.end() || !p->second.isLocal()) judge_is_cloud_ = true;
    }
  }
}

void QualityHub::setPolicies(std::shared_ptr<const policies::PolicySet> policies) {
  std::lock_guard<std::mutex> lock(policies_mu_);
  policies_ = std::move(policies);
}

bool QualityHub::judgeForbiddenFor(const std::string& team) const {
  if (!judge_is_cloud_) return false;
  std::shared_ptr<const policies::PolicySet> set;
  {
    std::lock_guard<std::mutex> lock(policies_mu_);
    set = policies_;
  }
  if (!set) return true;  // no policy to say yes
  const policies::TeamPolicy& p = set->policyFor(team);
  return !p.allow_cloud || !p.allowsModel(judge_config_.model);
}

quality::JudgeResult QualityHub::skippedByPolicy(const std::string& team) const {
  quality::JudgeResult j;
  j.status = quality::JudgeStatus::kSkippedPolicy;
  j.model = judge_config_.model;
  j.detail = std::string(kSkippedPolicy) + ": the policy of team '" + team +
             "' keeps its data from the judge's model '" + judge_config_.model +
             "' (allow_cloud, allowed_models)";
  j.unix_ms = unixMs();
  return j;
}

api::Status QualityHub::admitFeedback(const std::string& team) {
  // Replicas sharing a ledger share the limit: each takes its share, as for requests.
  feedback_limiter_.setReplicas(ledger_ ? ledger_->liveReplicas() : 1);
  policies::RateLimitPolicy limit;
  limit.team.requests_per_minute = kFeedbackPerMinute;
  api::Status st =
      feedback_limiter_.admit(team, "", limit, 0, policies::RateLimiter::Clock::now());
  if (st.ok()) return st;
  api::Status refused(api::ErrorCode::kRateLimited,
                      "Too much feedback from team '" + team + "': at most " +
                          std::to_string(kFeedbackPerMinute) + " per minute.",
                      {}, "rate_limit_exceeded");
  if (auto after = st.retryAfterSeconds()) refused.withRetryAfter(*after);
  return refused;
}

QualityHub::~QualityHub() {
  stopping_ = true;
  recorder_.reset();  // drains the queue; no judge starts while stopping
}

void QualityHub::record(quality::QualityRecord r) {
  if (!recorder_->submit(std::move(r))) metrics_.setQualityDropped(recorder_->stats().dropped);
}

void QualityHub::feedback(quality::Feedback f, std::function<void(api::Status)> done) {
  metrics_.recordFeedback();
  recorder_->submitFeedback(std::move(f), std::move(done));
}

void QualityHub::maybeJudge(const quality::QualityRecord& r) {
  if (!judge_ || stopping_ || r.redacted || judge_config_.sample_rate <= 0) return;
  if (r.judge) return;  // skipped by policy when annotated
  if (judgeForbiddenFor(r.team)) {  // the policy changed since (a reload)
    metrics_.recordJudgeVerdict(kSkippedPolicy);
    recorder_->submitJudge(r.id, skippedByPolicy(r.team));
    return;
  }
  if (r.local.text.empty() && r.cloud.text.empty()) return;
  {
    std::lock_guard<std::mutex> lock(rng_mu_);
    if (std::uniform_real_distribution<double>(0, 1)(rng_) >= judge_config_.sample_rate) return;
  }
  // The judge's budget is a daily limit of team `judge` in the ledger: each of its calls
  // reserves its worst case and settles what it cost (routers::Spender). An exhausted budget
  // skips the record without a call.
  if (ledger_ && judge_policy_ &&
      policies::budgetState(*ledger_, kJudgeTeam, judge_policy_->budget, unixMs()).exhausted) {
    metrics_.recordJudgeVerdict("skipped_budget");
    return;
  }
  const int64_t id = r.id;
  judge_->judge(r, [this, id](quality::JudgeResult result) {
    metrics_.recordJudgeVerdict(std::string(quality::judgeStatusName(result.status)));
    recorder_->submitJudge(id, std::move(result));
  });
}

}  // namespace gateway
