// ResponseStore: the Responses API's stored responses (store: true, the default), kept in a
// SQLite file beside the ledger (`responses.db` in the ledger's directory; in memory without a
// ledger), or, with a PostgreSQL ledger, in its database (table switchyard.responses, created on
// first use), so that a previous_response_id written through one replica is found through
// any other. Scoped to the team that created them: every read and delete names the team, so
// that one team's id is unknown to another.
//
// One row per response: the Response object as sent, its own input items, and the conversation
// it continued (the earlier responses' inputs and outputs, oldest first), so that a
// previous_response_id needs one read, however long the chain.
//
// Bounds: a response older than kMaxAgeSeconds (30 days, as OpenAI keeps them) is removed at
// the next write; a team's rows are bounded to max_bytes_per_team of stored text, its oldest
// responses going first.
//
// Writes happen as an answer finishes. SQLite: WAL, synchronous=NORMAL (no fsync per
// response), one connection under a mutex. PostgreSQL: one transaction per call on a few
// pooled connections (the ledger's pool, policies/pg_pool.h), commits not waiting for the WAL
// flush; errors name the URL with its password masked. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "api/status.h"

namespace gateway {

struct StoredResponse {
  std::string id;            // "resp_..."
  std::string team;          // the team that created it
  int64_t created_at = 0;    // unix seconds
  std::string response;      // the Response object (JSON text)
  std::string input;         // its input items (a JSON array)
  std::string conversation;  // the items before its input, from the chain (a JSON array)
};

class ResponseStore {
 public:
  static constexpr int64_t kMaxAgeSeconds = 30 * 86400;
  static constexpr int64_t kMaxBytesPerTeam = 64LL << 20;

  // Opens (creating) the SQLite store at `path` (":memory:" for one in memory); kIo naming the
  // path.
  static api::StatusOr<std::unique_ptr<ResponseStore>> open(
      const std::string& path, int64_t max_bytes_per_team = kMaxBytesPerTeam);
  // Opens the store in the PostgreSQL database at `url` (creating its table when absent, under
  // an advisory lock: replicas may start together); kIo naming the masked URL.
  static api::StatusOr<std::unique_ptr<ResponseStore>> openPostgres(
      const std::string& url, int64_t max_bytes_per_team = kMaxBytesPerTeam);
  virtual ~ResponseStore() = default;

  // Keeps `r` (replacing a row of the same team and id), then removes what the bounds exclude
  // (`now`: unix seconds).
  virtual api::Status put(const StoredResponse& r, int64_t now) = 0;
  // The team's response `id`; nullopt when it has none of that id.
  virtual api::StatusOr<std::optional<StoredResponse>> get(const std::string& team,
                                                           const std::string& id) = 0;
  // Deletes the team's response `id`; false when it had none.
  virtual api::StatusOr<bool> remove(const std::string& team, const std::string& id) = 0;
};

}  // namespace gateway
