#include "policies/pg_pool.h"

#include "policies/pg_ledger.h"

namespace policies {

std::string pgPasswordOf(const std::string& url) {
  size_t scheme = url.find("://");
  if (scheme != std::string::npos) {
    size_t start = scheme + 3;
    size_t at = url.find('@', start);
    size_t slash = url.find('/', start);
    if (at == std::string::npos || (slash != std::string::npos && slash < at)) return "";
    size_t colon = url.find(':', start);
    return colon != std::string::npos && colon < at ? url.substr(colon + 1, at - colon - 1) : "";
  }
  size_t p = url.find("password=");
  if (p == std::string::npos) return "";
  size_t end = url.find(' ', p);
  return url.substr(p + 9, end == std::string::npos ? std::string::npos : end - p - 9);
}

std::string pgWithoutSecret(std::string text, const std::string& secret) {
  if (secret.size() < 3) return text;  // a shorter one would blank out ordinary words
  for (size_t p; (p = text.find(secret)) != std::string::npos;)
    text.replace(p, secret.size(), "***");
  return text;
}

std::string pgConnInfo(const std::string& url, std::chrono::seconds connect_timeout) {
  std::string t =
      "connect_timeout=" + std::to_string(std::max<int64_t>(1, connect_timeout.count()));
  if (url.find("://") == std::string::npos) return url + " " + t;
  return url + (url.find('?') == std::string::npos ? "?" : "&") + t;
}

std::string maskPostgresUrl(const std::string& url) {
  std::string pw = pgPasswordOf(url);
  if (pw.empty()) return url;
  if (url.find("://") != std::string::npos) {
    size_t at = url.find('@', url.find("://") + 3);
    size_t colon = at - pw.size() - 1;
    return url.substr(0, colon + 1) + "***" + url.substr(at);
  }
  size_t p = url.find("password=") + 9;
  return url.substr(0, p) + "***" + url.substr(p + pw.size());
}

}  // namespace policies

namespace policies {
namespace {
constexpr int kMaxAttempts = 3;  // of a transaction that hit a deadlock or lost an idle link
}  // namespace

PgDatabase::PgDatabase(std::string label, const std::string& url, const PgDatabaseOptions& o)
    : label_(std::move(label)),
      masked_(maskPostgresUrl(url)),
      password_(pgPasswordOf(url)),
      retry_after_(o.retry_after),
      pool_(pgConnInfo(url, o.connect_timeout), o.pool_size, o.statement_timeout,
            o.application_name) {}

api::Status PgDatabase::failure(api::ErrorCode code, const std::string& what,
                                const std::string& error) const {
  std::string msg =
      label_ + " '" + masked_ + "': " + what + ": " + pgWithoutSecret(error, password_);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return api::Status(code, msg);
}

api::Status PgDatabase::failure(const std::string& what, const std::exception& e) const {
  api::ErrorCode code = api::ErrorCode::kIo;
  if (dynamic_cast<const pqxx::broken_connection*>(&e) ||
      dynamic_cast<const pqxx::in_doubt_error*>(&e) ||
      dynamic_cast<const pqxx::statement_completion_unknown*>(&e) ||
      dynamic_cast<const pqxx::transaction_rollback*>(&e)) {
    code = api::ErrorCode::kUnavailable;
  } else if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    // 57014: the statement timeout; 08xxx, 57Pxx: the link or the server went away.
    const std::string& state = sql->sqlstate();
    if (state == "57014" || state.rfind("08", 0) == 0 || state.rfind("57P", 0) == 0) {
      code = api::ErrorCode::kUnavailable;
    }
  }
  return failure(code, what, e.what());
}

void PgDatabase::markDown(bool down) {
  std::lock_guard<std::mutex> lock(mu_);
  down_until_ = down ? std::chrono::steady_clock::now() + retry_after_
                     : std::chrono::steady_clock::time_point{};
}

api::Status PgDatabase::transact(const std::string& what, const Body& body) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (std::chrono::steady_clock::now() < down_until_) {
      return failure(api::ErrorCode::kUnavailable, what,
                     "the database could not be reached a moment ago: " + down_error_);
    }
  }
  for (int attempt = 1;; ++attempt) {
    bool reused = false;
    std::unique_ptr<pqxx::connection> c;
    try {
      c = pool_.take(&reused);
      api::Status st;
      {
        pqxx::work tx(*c);
        st = body(tx);
        if (st.ok()) tx.commit();
      }
      pool_.give(std::move(c));
      return st;
    } catch (const pqxx::broken_connection& e) {
      if (c) pool_.dropIdle();  // a restarted server broke the idle ones too
      if (c) pool_.give(nullptr);
      if (reused && attempt < kMaxAttempts) continue;  // try a new link
      {
        std::lock_guard<std::mutex> lock(mu_);
        down_error_ = pgWithoutSecret(e.what(), password_);
      }
      markDown(true);
      return failure(what, e);
    } catch (const pqxx::transaction_rollback& e) {
      pool_.give(std::move(c));  // nothing was done; the link is fine
      if (attempt < kMaxAttempts) continue;
      return failure(what, e);
    } catch (const std::exception& e) {
      bool link_lost = dynamic_cast<const pqxx::in_doubt_error*>(&e) ||
                       dynamic_cast<const pqxx::statement_completion_unknown*>(&e);
      if (c) pool_.give(link_lost ? nullptr : std::move(c));
      return failure(what, e);
    }
  }
}

}  // namespace policies
