// PgPool and the URL helpers of the PostgreSQL ledger (pg_ledger.cpp): a few libpqxx
// connections made on demand and reused, and connection strings with their password kept out
// of messages. PgDatabase: the same pool with one transaction per call and its errors as a
// Status, for the other stores that replicas share (quality records, stored responses).
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "api/status.h"

namespace policies {

// The password of a connection URL ("postgresql://user:pw@host/db") or key=value string
// ("password=pw"), "" when it has none.
std::string pgPasswordOf(const std::string& url);
// `text` with every occurrence of `secret` replaced by *** (unchanged for a secret shorter
// than 3 bytes).
std::string pgWithoutSecret(std::string text, const std::string& secret);
// The URL with connect_timeout added (to a URI's query, or to a key=value string).
std::string pgConnInfo(const std::string& url, std::chrono::seconds connect_timeout);

// A few connections, made on demand and reused; a broken one is dropped.
class PgPool {
 public:
  PgPool(std::string conninfo, int size, std::chrono::milliseconds statement_timeout,
         std::string application_name = "switchyard-ledger")
      : conninfo_(std::move(conninfo)),
        size_(std::max(1, size)),
        statement_timeout_ms_(statement_timeout.count()),
        application_name_(std::move(application_name)) {}

  // A connection for one transaction (waits while `size` are in use); throws what libpqxx
  // throws when a new one cannot be made. `reused` says it was idle before.
  std::unique_ptr<pqxx::connection> take(bool* reused) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !idle_.empty() || open_ < size_; });
    *reused = !idle_.empty();
    if (*reused) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
    ++open_;
    lock.unlock();
    try {
      auto c = std::make_unique<pqxx::connection>(conninfo_);
      pqxx::nontransaction setup(*c);
      setup.exec("SET statement_timeout = " + std::to_string(statement_timeout_ms_));
      setup.exec("SET application_name = " + setup.quote(application_name_));
      // Commits do not wait for the WAL flush by default: a settle, a release or a row lost
      // to a crash of the database server leaves its reservation pending, and recovery bills
      // that at its reserved amount (never less than it cost). Reservations and the schema
      // ask for the flush in their own transactions (SET LOCAL synchronous_commit = on).
      setup.exec("SET synchronous_commit = off");
      return c;
    } catch (...) {
      give(nullptr);
      throw;
    }
  }
  // Back to the pool (nullptr or a closed one: the slot is freed).
  void give(std::unique_ptr<pqxx::connection> c) {
    std::lock_guard<std::mutex> lock(mu_);
    if (c && c->is_open()) {
      idle_.push_back(std::move(c));
    } else {
      --open_;
    }
    cv_.notify_one();
  }
  // After a broken link: the idle ones are likely broken too (a restarted server).
  void dropIdle() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ -= static_cast<int>(idle_.size());
    idle_.clear();
    cv_.notify_all();
  }

 private:
  const std::string conninfo_;
  const int size_;
  const int64_t statement_timeout_ms_;
  const std::string application_name_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  int open_ = 0;
};

struct PgDatabaseOptions {
  int pool_size = 4;                                  // connections, at most
  std::chrono::milliseconds statement_timeout{5000};  // per statement
  std::chrono::seconds connect_timeout{5};            // per connection attempt
  // After the database could not be reached, calls fail at once for this long (then one
  // tries again), so that a writer with a queue does not wait a connect timeout per item.
  std::chrono::milliseconds retry_after{1000};
  std::string application_name = "switchyard";
};

// A PostgreSQL database used one transaction at a time from any thread. Errors read
// "<label> '<masked url>': <what>: <error>", the password never in them.
class PgDatabase {
 public:
  using Body = std::function<api::Status(pqxx::transaction_base&)>;

  PgDatabase(std::string label, const std::string& url, const PgDatabaseOptions& o);

  // Runs `body` in one transaction on a pooled connection and commits when it returns OK (its
  // error otherwise, rolled back). A broken link that was idle in the pool is retried once on
  // a new one, a deadlock or serialization failure up to 3 times (so `body` may run again).
  // kUnavailable when the database cannot be reached (and during retry_after after that), the
  // link broke, or a statement ran past its timeout; kIo for any other error.
  api::Status transact(const std::string& what, const Body& body);
  // The Status for an exception thrown by libpqxx while `what` ran (as transact() reports
  // it), for a caller that runs statements inside a transaction of its own.
  api::Status failure(const std::string& what, const std::exception& e) const;
  api::Status failure(api::ErrorCode code, const std::string& what, const std::string& error) const;

  const std::string& masked() const { return masked_; }  // the URL, password masked

 private:
  void markDown(bool down);

  const std::string label_, masked_, password_;
  const std::chrono::milliseconds retry_after_;
  PgPool pool_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point down_until_{};  // calls fail at once before this
  std::string down_error_;
};

}  // namespace policies
