// ResponseStore: the Responses API's stored responses (store: true, the default), kept in a
// SQLite file beside the ledger (`responses.db` in the ledger's directory; in memory without a
// ledger) and scoped to the team that created them: every read and delete names the team, so
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
// Writes happen as an answer finishes (WAL, synchronous=NORMAL: no fsync per response).
// Thread-safe: one connection under a mutex.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "api/status.h"
#include "policies/sqlite.h"

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

  // Opens (creating) the store at `path` (":memory:" for one in memory); kIo naming the path.
  static api::StatusOr<std::unique_ptr<ResponseStore>> open(
      const std::string& path, int64_t max_bytes_per_team = kMaxBytesPerTeam);
  ~ResponseStore();

  // Keeps `r` (replacing a row of the same team and id), then removes what the bounds exclude
  // (`now`: unix seconds).
  api::Status put(const StoredResponse& r, int64_t now);
  // The team's response `id`; nullopt when it has none of that id.
  api::StatusOr<std::optional<StoredResponse>> get(const std::string& team, const std::string& id);
  // Deletes the team's response `id`; false when it had none.
  api::StatusOr<bool> remove(const std::string& team, const std::string& id);

 private:
  ResponseStore(std::string path, sqlite3* db, int64_t max_bytes);
  api::Status error(const std::string& what) const;
  api::Status exec(const char* sql, const std::string& what);

  const std::string path_;
  policies::sqlite::Db db_;
  const int64_t max_bytes_;
  std::mutex mu_;
};

}  // namespace gateway
