// Accounting: one request's ledger bookkeeping (a reservation while a cloud call runs, then
// the row), shared by the chat handler, shadow comparisons and judge calls.
#pragma once

#include <atomic>
#include <cstdio>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "api/chat.h"
#include "gateway/http_util.h"
#include "policies/ledger.h"
#include "routers/provider.h"

namespace gateway {

// One request's ledger bookkeeping: a reservation while a cloud call runs, and the row.
class Accounting {
 public:
  Accounting(policies::Ledger* ledger, std::string request_id, std::string team,
             std::string key_id, std::string model)
      : ledger_(ledger),
        request_id_(std::move(request_id)),
        team_(std::move(team)),
        key_id_(std::move(key_id)),
        model_(std::move(model)) {}

  ~Accounting() {
    // A reservation whose call never reported back (it cannot happen, but never leak one).
    if (reservation_ && ledger_) ledger_->release(*reservation_);
  }

  void setReservation(uint64_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    reservation_ = id;
  }

  // How the target was chosen (LedgerRow::decision); "cascade" becomes "escalated" when a
  // cloud target answered.
  void setDecision(std::string decision) { decision_ = std::move(decision); }
  // The decision as it stands for an answer from `route` (a local target or not).
  std::string decisionFor(bool local_route) const {
    return decision_ == "cascade" && !local_route ? "escalated" : decision_;
  }

  // Once: writes the row, settling the reservation when there is one. `local_route`: the
  // answering target is a local engine.
  void finish(const routers::RouteInfo& route, bool local_route, const api::Usage* usage,
              double cost, int status, double latency_s) {
    if (done_.exchange(true)) return;
    if (usage && on_usage_) on_usage_(usage->prompt_tokens + usage->completion_tokens);
    if (!ledger_) return;
    policies::LedgerRow row;
    row.request_id = request_id_;
    row.team = team_;
    row.key_id = key_id_;
    row.model = model_;
    row.route = route.label.empty() ? "none" : route.label;
    row.kind = route.label.empty() ? (cost > 0 || reservation_ ? "cloud" : "local")
                                   : (local_route ? "local" : "cloud");
    row.decision = decisionFor(local_route);
    if (usage) {
      row.prompt_tokens = usage->prompt_tokens;
      row.cached_prompt_tokens = usage->cached_prompt_tokens;
      row.completion_tokens = usage->completion_tokens;
      if (local_route) row.compute_ms = usage->engine_compute_s * 1000;
    }
    row.cost_usd = cost;
    row.latency_ms = latency_s * 1000;
    row.status = status;
    row.unix_ms = unixMs();
    std::optional<uint64_t> reservation;
    {
      std::lock_guard<std::mutex> lock(mu_);
      reservation.swap(reservation_);
    }
    api::Status st = reservation ? ledger_->settle(*reservation, row) : ledger_->record(row);
    if (!st.ok()) {
      std::fprintf(stderr, "{\"level\":\"error\",\"msg\":\"ledger write failed\",\"what\":\"%s\"}\n",
                   st.message().c_str());
    }
    if (on_settled_) on_settled_(team_);
  }

  void onSettled(std::function<void(const std::string& team)> fn) { on_settled_ = std::move(fn); }
  void onUsage(std::function<void(int64_t total_tokens)> fn) { on_usage_ = std::move(fn); }

 private:
  policies::Ledger* ledger_;
  const std::string request_id_, team_, key_id_, model_;
  std::string decision_;  // set before the call starts
  std::mutex mu_;
  std::optional<uint64_t> reservation_;
  std::atomic<bool> done_{false};
  std::function<void(const std::string&)> on_settled_;
  std::function<void(int64_t)> on_usage_;
};

}  // namespace gateway
