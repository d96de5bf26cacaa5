// Spending: the one execution unit that every path able to reach a cloud provider goes
// through (plain cloud calls, cascade escalations, fallbacks, spill from a full local queue,
// shadow comparisons and judge calls; DESIGN.md "routers/").
//
// For each cloud attempt it
//   1. applies the team's data rules (`allow_cloud`, `allowed_models`): a refusal moves the
//      chain on (to a local target) or ends it with 403;
//   2. clamps the output cap to the model's limit and reserves the worst case (prompt bound +
//      output cap x choices at the target's price, policies/spend.h) durably: the pending row is
//      in the ledger's journal before the call starts, so a crash never loses spend;
//   3. settles what the attempt cost: the provider's usage when it reported some, else a
//      never-lower estimate (the prompt bound plus the output produced so far; the whole
//      reservation for a non-streamed call cut before its answer). An attempt the provider
//      answered with an error status, or that never left the gateway, costs nothing.
// Local targets pass through untouched. One request is one Account and one ledger row.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "api/chat.h"
#include "policies/ledger.h"
#include "policies/policy_set.h"
#include "policies/pricing.h"
#include "routers/fallback.h"
#include "routers/provider.h"
#include "routers/timer.h"

namespace routers {

// Who a request is for, fixed when it is admitted.
struct Payer {
  std::string request_id, team, key_id;
  std::string public_model;  // what the client asked for
  std::shared_ptr<const policies::TeamPolicy> policy;  // never null
};

// One request's ledger bookkeeping: the reservations of its cloud attempts, what they cost,
// and the one row written when the request ends. Thread-safe.
class Account {
 public:
  Account(policies::Ledger* ledger, Payer payer);
  ~Account();  // releases reservations never settled (a bug elsewhere; never leak one)
  Account(const Account&) = delete;
  Account& operator=(const Account&) = delete;

  const Payer& payer() const { return payer_; }
  policies::Ledger* ledger() const { return ledger_; }

  // How the target was chosen (LedgerRow::decision); "cascade" becomes "escalated" when a
  // cloud target answered. Set before calls start.
  void setDecision(std::string decision);
  std::string decisionFor(bool local_route) const;
  std::string decision() const;

  // The engine time (seconds) of a local draft that did not answer (a cascade that escalated
  // after it): added to the row's compute_ms, so that the local work is costed too. Call
  // before finish().
  void addDraftCompute(double compute_s);

  // A cloud attempt holds `reservation` until the request ends.
  void hold(uint64_t reservation);
  // A cloud attempt ended: `cost_usd` is what it cost (estimated or not). When it cost
  // nothing billable, its reservation is released at once.
  void attemptEnded(std::optional<uint64_t> reservation, double cost_usd, bool billed,
                    bool estimated);
  double costUsd() const;
  bool estimated() const;
  bool usedCloud() const;

  // Once, when the answer is complete or failed: writes the row, settling the reservations.
  // `status`: the HTTP status the request ended with (499 client gone, 502 upstream broke,
  // 504 timeout, ...). `local_route`: the answering target was a local engine.
  void finish(const RouteInfo& route, bool local_route, const api::Usage* usage, int status,
              double latency_s);

  // `fn` runs once, when the next cloud attempt has its reservation and its upstream call
  // starts (an escalation is counted there, not where it was wanted).
  void onNextCloudLaunch(std::function<void()> fn);
  // Called by the metered cloud attempt as its upstream call starts.
  void cloudLaunched();

  // `fn` runs when the budget refuses a cloud attempt's reservation, with what the attempt
  // could have cost (USD): budget alerts fire there, since the reservation that would cross
  // 100% never fits. Set before calls start.
  void onBudgetRefused(std::function<void(double worst_usd)> fn) {
    on_budget_refused_ = std::move(fn);
  }
  void budgetRefused(double worst_usd) const {
    if (on_budget_refused_) on_budget_refused_(worst_usd);
  }

  void onSettled(std::function<void(const std::string& team)> fn) { on_settled_ = std::move(fn); }
  void onUsage(std::function<void(int64_t total_tokens)> fn) { on_usage_ = std::move(fn); }

 private:
  policies::Ledger* const ledger_;
  const Payer payer_;
  mutable std::mutex mu_;
  std::string decision_;
  std::vector<uint64_t> reservations_;
  double cost_usd_ = 0;
  double draft_compute_s_ = 0;
  bool estimated_ = false;
  bool used_cloud_ = false;
  std::atomic<bool> done_{false};
  std::function<void(const std::string&)> on_settled_;
  std::function<void(int64_t)> on_usage_;
  std::function<void()> on_launch_;  // under mu_
  std::function<void(double)> on_budget_refused_;
};

// Hooks for metrics; called from provider and ledger threads, must not block.
class SpendObserver {
 public:
  virtual ~SpendObserver() = default;
  // An attempt was settled by estimate (no usage from the provider).
  virtual void onEstimated(const std::string& team, const ChainTarget& target, double usd) {}
  // The gate refused a cloud target: `reason` is the status's OpenAI code.
  virtual void onRefused(const std::string& team, const std::string& reason) {}
};

class Spender {
 public:
  // All pointers/references must outlive the spender and its calls; `ledger` and `observer`
  // may be null (no ledger: calls are gated but not metered).
  Spender(policies::Ledger* ledger, const policies::PriceTable& prices, TimerThread& timer,
          ChainObserver* chain_observer, SpendObserver* observer);

  // The data-rule gate for one target: OK for local targets and for cloud targets the team
  // may use (its allowed_models, or a model its own routing names); else kPermissionDenied with OpenAI code "cloud_not_allowed" or
  // "model_not_allowed" (a gate refusal, see isGateRefusal).
  api::Status admit(const policies::TeamPolicy& policy, const ChainTarget& target) const;

  // Runs `request` on `targets` in order, as a FallbackChain named `name`, with every cloud
  // attempt gated and metered into `account`. Returns at once.
  std::shared_ptr<ProviderCall> run(const std::string& name, std::shared_ptr<Account> account,
                                    std::vector<ChainTarget> targets,
                                    const api::ChatRequest& request,
                                    std::shared_ptr<ChatSink> sink, Deadline deadline);

  // `targets` as a Provider whose calls all belong to `account` (the cascade's local side).
  // The returned provider may go once chat() has returned.
  std::unique_ptr<Provider> bind(std::shared_ptr<Account> account, std::string name,
                                 std::vector<ChainTarget> targets);

  // A Provider for callers that speak the Provider interface (the judge): each chat() is its
  // own request of `payer` with `decision`, run on `targets` and written as its own row.
  std::unique_ptr<Provider> providerFor(std::string name, Payer payer, std::string decision,
                                        std::vector<ChainTarget> targets);

  policies::Ledger* ledger() const { return ledger_; }
  const policies::PriceTable& prices() const { return prices_; }
  SpendObserver* observer() const { return observer_; }
  TimerThread& timer() const { return timer_; }

 private:
  policies::Ledger* const ledger_;
  const policies::PriceTable& prices_;
  TimerThread& timer_;
  ChainObserver* const chain_observer_;
  SpendObserver* const observer_;
};

// The ledger could not be reached or written, so no cloud call can be billed: 503
// ledger_unavailable (retry after 5 s), naming the cause.
api::Status ledgerUnavailable(const api::Status& cause);

// The first step of every metered call (chat and embeddings): a durable reservation of
// `worst_usd` against the budget of `account`'s payer, whose ledger must be set. `on_durable`
// runs once the reservation is durable, or could not be made so. Returns the reservation id,
// which the account then holds, or the refusal as the client hears it (ledgerUnavailable; a
// budget refusal is also noted on the account and the observer).
api::StatusOr<uint64_t> reserveForCall(const Spender& spender, Account& account, double worst_usd,
                                       std::function<void(api::Status)> on_durable);

}  // namespace routers
