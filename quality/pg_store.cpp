#include "quality/pg_store.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>
#include <vector>

#include "policies/pg_ledger.h"
#include "quality/store_codec.h"

namespace quality {
namespace {

using namespace codec;

constexpr int64_t kPruneChunkRows = 5'000;  // as the SQLite store: records per prune transaction
constexpr int64_t kMsPerDay = 86'400'000;
// The advisory lock under which replicas create the schema (another than the ledger's).
constexpr const char* kSchemaLock = "SELECT pg_advisory_xact_lock(7365792796173)";
constexpr const char* kVersionKey = "quality_schema_version";

const char* const kSchema = R"sql(
CREATE SCHEMA IF NOT EXISTS switchyard;
CREATE TABLE IF NOT EXISTS switchyard.meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS switchyard.quality_records(
  id BIGSERIAL PRIMARY KEY,
  request_id BYTEA NOT NULL,
  unix_ms BIGINT NOT NULL,
  team BYTEA NOT NULL,
  kind TEXT NOT NULL,
  model BYTEA NOT NULL,
  reason BYTEA NOT NULL,
  prompt TEXT,
  redacted BOOLEAN NOT NULL,
  local_model BYTEA NOT NULL, local_text BYTEA NOT NULL, local_complete BOOLEAN NOT NULL,
  local_finish_reason BYTEA NOT NULL, local_prompt_tokens BIGINT NOT NULL,
  local_completion_tokens BIGINT NOT NULL, local_cost_usd DOUBLE PRECISION NOT NULL,
  local_latency_ms DOUBLE PRECISION NOT NULL,
  cloud_model BYTEA NOT NULL, cloud_text BYTEA NOT NULL, cloud_complete BOOLEAN NOT NULL,
  cloud_finish_reason BYTEA NOT NULL, cloud_prompt_tokens BIGINT NOT NULL,
  cloud_completion_tokens BIGINT NOT NULL, cloud_cost_usd DOUBLE PRECISION NOT NULL,
  cloud_latency_ms DOUBLE PRECISION NOT NULL,
  complexity DOUBLE PRECISION,
  complexity_features TEXT NOT NULL,
  confidence DOUBLE PRECISION,
  confidence_features TEXT NOT NULL,
  metrics_exact_match BOOLEAN, metrics_token_f1 DOUBLE PRECISION,
  metrics_rouge_l DOUBLE PRECISION, metrics_length_ratio DOUBLE PRECISION,
  metrics_json_both_parse BOOLEAN, metrics_json_agree BOOLEAN,
  judge_status TEXT, judge_model BYTEA, judge_delta DOUBLE PRECISION, judge_agreement BOOLEAN,
  judge_verdict_ab BYTEA, judge_verdict_ba BYTEA, judge_detail BYTEA,
  judge_cost_usd DOUBLE PRECISION, judge_unix_ms BIGINT,
  sampling_p DOUBLE PRECISION NOT NULL DEFAULT 1,
  bytes BIGINT GENERATED ALWAYS AS (400 + octet_length(request_id) + octet_length(team) +
    octet_length(model) + octet_length(reason) + coalesce(octet_length(prompt), 0) +
    octet_length(local_text) + octet_length(cloud_text) + octet_length(complexity_features) +
    octet_length(confidence_features) + coalesce(octet_length(judge_detail), 0)) STORED);
CREATE INDEX IF NOT EXISTS quality_records_team_time
  ON switchyard.quality_records(team, unix_ms);
CREATE INDEX IF NOT EXISTS quality_records_time ON switchyard.quality_records(unix_ms, id);
CREATE INDEX IF NOT EXISTS quality_records_request ON switchyard.quality_records(request_id);
CREATE TABLE IF NOT EXISTS switchyard.quality_feedback(
  id BIGSERIAL PRIMARY KEY,
  team BYTEA NOT NULL,
  request_id BYTEA NOT NULL,
  score DOUBLE PRECISION NOT NULL,
  comment BYTEA NOT NULL,
  unix_ms BIGINT NOT NULL,
  scale TEXT NOT NULL DEFAULT 'unit');
CREATE INDEX IF NOT EXISTS quality_feedback_request
  ON switchyard.quality_feedback(team, request_id, unix_ms);
)sql";

// From schema version 1 to 2 (a no-op on tables made by version 2): the columns version 2
// added, with the values version 1 meant (every record made always, every feedback score on
// the unit scale). Run under the schema lock, with the version's update.
const char* const kMigrateV1 = R"sql(
ALTER TABLE switchyard.quality_records
  ADD COLUMN IF NOT EXISTS sampling_p DOUBLE PRECISION NOT NULL DEFAULT 1;
ALTER TABLE switchyard.quality_feedback
  ADD COLUMN IF NOT EXISTS scale TEXT NOT NULL DEFAULT 'unit';
UPDATE switchyard.meta SET value = '2' WHERE key = 'quality_schema_version' AND value = '1';
)sql";

// A double as PostgreSQL reads it back exactly: the shortest text that round-trips.
std::string realText(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

// The parameters of one statement ($1, $2, ...), with the codec's binding verbs (store_codec.h):
// `text` is any bytes (a BYTEA, sent in its hex form), `name` is UTF-8 text.
class Params {
 public:
  void text(int i, std::string_view v) {
    static const char kHex[] = "0123456789abcdef";
    std::string out = "\\x";
    out.reserve(2 + 2 * v.size());
    for (unsigned char c : v) {
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
    set(i, std::move(out));
  }
  void name(int i, std::string_view v) { set(i, std::string(v)); }
  void int64(int i, int64_t v) { set(i, std::to_string(v)); }
  void boolean(int i, bool v) { set(i, v ? "t" : "f"); }
  void null(int i) { slot(i).reset(); }
  void realExact(int i, double v) { set(i, realText(v)); }
  void optRealExact(int i, const std::optional<double>& v) { v ? realExact(i, *v) : null(i); }
  void optBool(int i, const std::optional<bool>& v) { v ? boolean(i, *v) : null(i); }
  int next() const { return static_cast<int>(values_.size()) + 1; }  // the next free $n

  pqxx::result exec(pqxx::transaction_base& tx, const std::string& sql) const {
    std::vector<const char*> p;
    p.reserve(values_.size());
    for (const auto& v : values_) p.push_back(v ? v->c_str() : nullptr);
    return tx.exec_params(sql, pqxx::prepare::make_dynamic_params(p));
  }

 private:
  std::optional<std::string>& slot(int i) {
    if (values_.size() < static_cast<size_t>(i)) values_.resize(i);
    return values_[i - 1];
  }
  void set(int i, std::string v) { slot(i) = std::move(v); }
  std::vector<std::optional<std::string>> values_;
};

// One result row with the codec's reading verbs.
class Row {
 public:
  explicit Row(const pqxx::row& row) : row_(row) {}
  bool isNull(int c) const { return row_[c].is_null(); }
  std::string columnText(int c) const {
    return isNull(c) ? std::string() : pqxx::binarystring(row_[c]).str();
  }
  std::string columnName(int c) const { return isNull(c) ? std::string() : row_[c].c_str(); }
  int64_t columnInt64(int c) const {
    return isNull(c) ? 0 : std::strtoll(row_[c].c_str(), nullptr, 10);
  }
  bool columnBool(int c) const { return !isNull(c) && row_[c].c_str()[0] == 't'; }
  double columnRealExact(int c) const {
    return isNull(c) ? 0 : std::strtod(row_[c].c_str(), nullptr);  // also NaN, Infinity, -0
  }
  std::optional<double> columnOptRealExact(int c) const {
    return isNull(c) ? std::nullopt : std::optional<double>(columnRealExact(c));
  }
  std::optional<bool> columnOptBool(int c) const {
    return isNull(c) ? std::nullopt : std::optional<bool>(columnBool(c));
  }

 private:
  const pqxx::row& row_;
};

class PgQualityStore final : public QualityStore {
 public:
  PgQualityStore(const std::string& url, const policies::PgDatabaseOptions& o, bool read_only)
      : QualityStore(policies::maskPostgresUrl(url), read_only), db_("quality store", url, o) {}

  api::Status init();
  api::StatusOr<int64_t> insert(const QualityRecord& r) override;
  api::Status setMetrics(int64_t id, const TextMetrics& m) override;
  api::Status setJudge(int64_t id, const JudgeResult& j) override;
  api::Status addFeedback(const Feedback& f) override;
  api::Status transaction(const std::function<api::Status()>& body) override;
  api::StatusOr<std::vector<QualityRecord>> query(const RecordFilter& f) const override;
  api::StatusOr<int64_t> prune(const Retention& r, int64_t now_ms) override;
  api::StatusOr<StoreStats> stats() const override;

 private:
  // A write: refused on a read-only store; under write_mu_, inside transaction()'s when one is
  // open on this thread, else in a transaction of its own.
  api::Status write(const std::string& what, const policies::PgDatabase::Body& body);
  // Deletes up to `n` records that `victims` (a SELECT of ids, oldest first, with $1 = `arg`
  // and $2 = n) chooses, with the feedback of their (team, request_id); returns how many went.
  api::StatusOr<int64_t> deleteChunk(const std::string& victims, int64_t arg, int64_t n);
  api::Status notFound(int64_t id) const {
    return api::Status(api::ErrorCode::kNotFound,
                       "quality store '" + path_ + "': no record " + std::to_string(id));
  }

  mutable policies::PgDatabase db_;
  std::recursive_mutex write_mu_;
  pqxx::transaction_base* tx_ = nullptr;  // transaction()'s, while its body runs
  int schema_version_ = kSchemaVersion;   // 1: a version 1 store opened read_only
  bool tx_failed_ = false;                // a write inside it failed: it cannot commit
};

api::Status PgQualityStore::init() {
  if (!read_only_) {
    api::Status st = db_.transact("creating the schema", [](pqxx::transaction_base& tx) {
      // Replicas starting together: one creates, the others then find it.
      tx.exec("SET LOCAL synchronous_commit = on");
      tx.exec(kSchemaLock);
      tx.exec(kSchema);
      tx.exec_params(
          "INSERT INTO switchyard.meta(key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
          std::string(kVersionKey), std::to_string(kSchemaVersion));
      // Tables of version 1 (made before this build): migrate them. A newer version's are
      // left alone and refused below.
      auto v = tx.exec_params("SELECT value FROM switchyard.meta WHERE key = $1",
                              std::string(kVersionKey));
      if (!v.empty() && v[0][0].as<std::string>() == "1") tx.exec(kMigrateV1);
      return api::Status();
    });
    if (!st.ok()) return api::Status(api::ErrorCode::kIo, st.message());
  }
  std::optional<std::string> version;
  api::Status st = db_.transact("reading the schema version", [&](pqxx::transaction_base& tx) {
    auto exists = tx.exec("SELECT to_regclass('switchyard.meta') IS NOT NULL");
    if (exists[0][0].as<bool>()) {
      auto r = tx.exec_params("SELECT value FROM switchyard.meta WHERE key = $1",
                              std::string(kVersionKey));
      if (!r.empty()) version = r[0][0].as<std::string>();
    }
    return api::Status();
  });
  if (!st.ok()) return api::Status(api::ErrorCode::kIo, st.message());
  if (!version) {
    return api::Status(api::ErrorCode::kConfig,
                       "quality store '" + path_ + "': the database holds no quality store");
  }
  if (*version == "1" && read_only_) {
    schema_version_ = 1;  // read as it is (store_codec.h selectColumns)
    return {};
  }
  if (*version != std::to_string(kSchemaVersion)) {
    return api::Status(api::ErrorCode::kConfig,
                       "quality store '" + path_ + "': schema version '" + *version +
                           "' is not supported (this build reads version " +
                           std::to_string(kSchemaVersion) + ")");
  }
  return {};
}

api::Status PgQualityStore::write(const std::string& what, const policies::PgDatabase::Body& body) {
  if (read_only_) return readOnlyError();
  std::lock_guard<std::recursive_mutex> lock(write_mu_);
  if (!tx_) return db_.transact(what, body);
  if (tx_failed_) {
    return api::Status(api::ErrorCode::kIo, "quality store '" + path_ +
                                                "': the transaction was rolled back by an "
                                                "earlier error");
  }
  try {
    return body(*tx_);
  } catch (const std::exception& e) {
    tx_failed_ = true;  // PostgreSQL refuses the transaction's next statements
    return db_.failure(what, e);
  }
}

api::Status PgQualityStore::transaction(const std::function<api::Status()>& body) {
  if (read_only_) return readOnlyError();
  std::lock_guard<std::recursive_mutex> lock(write_mu_);
  if (tx_) return api::Status(api::ErrorCode::kInternal, "nested transaction()");
  return db_.transact("committing", [&](pqxx::transaction_base& tx) -> api::Status {
    tx_ = &tx;
    tx_failed_ = false;
    api::Status st = body();
    tx_ = nullptr;
    if (st.ok() && tx_failed_) {
      return api::Status(api::ErrorCode::kIo, "quality store '" + path_ +
                                                  "': the transaction was rolled back by an "
                                                  "earlier error");
    }
    return st;
  });
}

api::StatusOr<int64_t> PgQualityStore::insert(const QualityRecord& r) {
  static const std::string sql = [] {
    std::string s =
        std::string("INSERT INTO switchyard.quality_records(") + kRecordColumns + ") VALUES(";
    for (int i = 1; i <= kRecordColumnCount; ++i) s += (i > 1 ? ", $" : "$") + std::to_string(i);
    return s + ") RETURNING id";
  }();
  int64_t id = 0;
  api::Status st = write("writing the record of request '" + r.request_id + "'",
                         [&](pqxx::transaction_base& tx) {
                           Params p;
                           bindRecord(p, r);
                           id = p.exec(tx, sql)[0][0].as<int64_t>();
                           return api::Status();
                         });
  if (!st.ok()) return st;
  return id;
}

api::Status PgQualityStore::setMetrics(int64_t id, const TextMetrics& m) {
  bool found = false;
  api::Status st =
      write("writing metrics of record " + std::to_string(id), [&](pqxx::transaction_base& tx) {
        Params p;
        p.int64(1, id);
        bindMetrics(p, 2, std::optional<TextMetrics>(m));
        found = p.exec(tx,
                       "UPDATE switchyard.quality_records SET "
                       "metrics_exact_match = $2, metrics_token_f1 = $3, "
                       "metrics_rouge_l = $4, metrics_length_ratio = $5, "
                       "metrics_json_both_parse = $6, "
                       "metrics_json_agree = $7 WHERE id = $1")
                    .affected_rows() > 0;
        return api::Status();
      });
  return st.ok() && !found ? notFound(id) : st;
}

api::Status PgQualityStore::setJudge(int64_t id, const JudgeResult& j) {
  bool found = false;
  api::Status st =
      write("writing the judge of record " + std::to_string(id), [&](pqxx::transaction_base& tx) {
        Params p;
        p.int64(1, id);
        bindJudge(p, 2, std::optional<JudgeResult>(j));
        found = p.exec(tx,
                       "UPDATE switchyard.quality_records SET "
                       "judge_status = $2, judge_model = $3, "
                       "judge_delta = $4, judge_agreement = $5, "
                       "judge_verdict_ab = $6, judge_verdict_ba = $7, "
                       "judge_detail = $8, judge_cost_usd = $9, "
                       "judge_unix_ms = $10 WHERE id = $1")
                    .affected_rows() > 0;
        return api::Status();
      });
  return st.ok() && !found ? notFound(id) : st;
}

api::Status PgQualityStore::addFeedback(const Feedback& f) {
  bool found = false;
  api::Status st =
      write("writing feedback on request '" + f.request_id + "'", [&](pqxx::transaction_base& tx) {
        Params key;
        key.text(1, f.team);
        key.text(2, f.request_id);
        // One writer per (team, request_id) across replicas: one row stays.
        key.exec(tx,
                 "SELECT pg_advisory_xact_lock(hashtextextended(encode($1::bytea, 'hex') || "
                 "':' || encode($2::bytea, 'hex'), 0))");
        found = key.exec(tx,
                         "SELECT EXISTS(SELECT 1 FROM switchyard.quality_records WHERE "
                         "request_id = $2 AND team = $1)")[0][0]
                    .as<bool>();
        if (!found) return api::Status();
        Params p = key;
        p.int64(3, f.unix_ms);
        // A feedback replaces those not newer than itself and is kept only when none newer
        // is left.
        p.exec(tx,
               "DELETE FROM switchyard.quality_feedback WHERE team = $1 AND request_id = $2 "
               "AND unix_ms <= $3");
        p.realExact(4, f.score);
        p.text(5, f.comment);
        p.name(6, feedbackScaleName(f.scale));
        p.exec(tx,
               "INSERT INTO switchyard.quality_feedback(team, request_id, score, comment, "
               "unix_ms, scale) SELECT $1::bytea, $2::bytea, $4::float8, $5::bytea, $3::bigint, "
               "$6::text WHERE "
               "NOT EXISTS (SELECT 1 FROM switchyard.quality_feedback WHERE team = $1 AND "
               "request_id = $2)");
        return api::Status();
      });
  if (st.ok() && !found) {
    return api::Status(api::ErrorCode::kNotFound, "quality store '" + path_ + "': team '" + f.team +
                                                      "' has no record of request '" +
                                                      f.request_id + "'");
  }
  return st;
}

api::StatusOr<std::vector<QualityRecord>> PgQualityStore::query(const RecordFilter& f) const {
  if (f.limit < 0) {
    return api::invalidRequest("limit must be >= 0 (0: all), got " + std::to_string(f.limit),
                               "limit");
  }
  Params p;
  // The latest feedback of the record's (team, request_id), one index seek per record.
  const std::string scale = schema_version_ < kFirstSamplingVersion ? "" : ", scale";
  std::string sql = "SELECT r.id, " + selectColumns("r", schema_version_) + ", " +
                    feedbackColumns("f", schema_version_) +
                    " FROM switchyard.quality_records r "
                    "LEFT JOIN LATERAL (SELECT id, score, comment, unix_ms" +
                    scale +
                    " FROM switchyard.quality_feedback WHERE team = r.team AND request_id = "
                    "r.request_id ORDER BY unix_ms DESC, id DESC LIMIT 1) f ON true WHERE true";
  auto param = [&](auto bind) {
    int n = p.next();
    bind(n);
    return "$" + std::to_string(n);
  };
  if (f.team) sql += " AND r.team = " + param([&](int n) { p.text(n, *f.team); });
  if (f.since_ms) sql += " AND r.unix_ms >= " + param([&](int n) { p.int64(n, *f.since_ms); });
  if (f.until_ms) sql += " AND r.unix_ms < " + param([&](int n) { p.int64(n, *f.until_ms); });
  if (f.kind) sql += " AND r.kind = " + param([&](int n) { p.name(n, kindName(*f.kind)); });
  sql += f.newest_first ? " ORDER BY r.unix_ms DESC, r.id DESC" : " ORDER BY r.unix_ms, r.id";
  if (f.limit > 0) sql += " LIMIT " + param([&](int n) { p.int64(n, f.limit); });

  std::vector<QualityRecord> out;
  api::Status st = db_.transact("reading records", [&](pqxx::transaction_base& tx) {
    pqxx::result rows = p.exec(tx, sql);
    out.reserve(rows.size());
    for (const pqxx::row& row : rows) {
      Row q(row);
      QualityRecord r;
      r.id = q.columnInt64(0);
      if (std::optional<std::string> wrong = readRecord(q, 1, &r)) {
        return api::Status(api::ErrorCode::kIo, "quality store '" + path_ + "': record " +
                                                    std::to_string(r.id) + " has " + *wrong);
      }
      if (std::optional<std::string> wrong = readFeedback(q, kRecordColumnCount + 1, &r)) {
        return api::Status(api::ErrorCode::kIo, "quality store '" + path_ + "': record " +
                                                    std::to_string(r.id) + " has " + *wrong);
      }
      out.push_back(std::move(r));
    }
    return api::Status();
  });
  if (!st.ok()) return st;
  return out;
}

api::StatusOr<StoreStats> PgQualityStore::stats() const {
  StoreStats s;
  api::Status st = db_.transact("reading statistics", [&](pqxx::transaction_base& tx) {
    auto r = tx.exec(
        "SELECT (SELECT COUNT(*) FROM switchyard.quality_records), "
        "(SELECT COUNT(*) FROM switchyard.quality_feedback), "
        "pg_total_relation_size('switchyard.quality_records') + "
        "pg_total_relation_size('switchyard.quality_feedback')");
    s.records = r[0][0].as<int64_t>();
    s.feedback = r[0][1].as<int64_t>();
    s.bytes = r[0][2].as<int64_t>();
    return api::Status();
  });
  if (!st.ok()) return st;
  return s;
}

api::StatusOr<int64_t> PgQualityStore::deleteChunk(const std::string& victims, int64_t arg,
                                                   int64_t n) {
  int64_t deleted = 0;
  // The victims' feedback and the victims in one statement: one snapshot chooses both.
  const std::string sql =
      "WITH v AS (SELECT id, team, request_id FROM switchyard.quality_records WHERE id IN (" +
      victims +
      ")), f AS (DELETE FROM switchyard.quality_feedback fb USING v WHERE fb.team = v.team AND "
      "fb.request_id = v.request_id) DELETE FROM switchyard.quality_records r USING v WHERE "
      "r.id = v.id";
  api::Status st = write("deleting old records", [&](pqxx::transaction_base& tx) {
    Params p;
    p.int64(1, arg);
    p.int64(2, n);
    deleted = static_cast<int64_t>(p.exec(tx, sql).affected_rows());
    return api::Status();
  });
  if (!st.ok()) return st;
  return deleted;
}

api::StatusOr<int64_t> PgQualityStore::prune(const Retention& r, int64_t now_ms) {
  if (api::Status s = checkRetention(r); !s.ok()) return s;
  if (read_only_) return readOnlyError();
  std::lock_guard<std::recursive_mutex> lock(write_mu_);
  constexpr int64_t kNoCutoff = std::numeric_limits<int64_t>::max();
  const std::string oldest =
      "SELECT id FROM switchyard.quality_records WHERE unix_ms < $1 ORDER BY unix_ms, id "
      "LIMIT $2";
  int64_t deleted = 0;
  // Deletes chunks of `victims` until one comes back short (or `budget` records went).
  auto drain = [&](const std::string& victims, int64_t arg, int64_t budget) -> api::Status {
    while (budget > 0) {
      int64_t n = std::min(budget, kPruneChunkRows);
      auto got = deleteChunk(victims, arg, n);
      if (!got.ok()) return got.status();
      deleted += *got;
      budget -= *got;
      if (*got < n) break;
    }
    return {};
  };
  constexpr int64_t kAll = std::numeric_limits<int64_t>::max();

  if (r.max_age_days > 0) {
    // Saturating: an age beyond the clock's range keeps everything.
    int64_t cutoff = std::numeric_limits<int64_t>::min();
    if (r.max_age_days <= std::numeric_limits<int64_t>::max() / kMsPerDay) {
      int64_t age_ms = r.max_age_days * kMsPerDay;
      if (now_ms >= std::numeric_limits<int64_t>::min() + age_ms) cutoff = now_ms - age_ms;
    }
    if (api::Status s = drain(oldest, cutoff, kAll); !s.ok()) return s;
    if (api::Status s = write(
            "deleting old feedback",
            [&](pqxx::transaction_base& tx) {
              tx.exec_params("DELETE FROM switchyard.quality_feedback WHERE unix_ms < $1", cutoff);
              return api::Status();
            });
        !s.ok()) {
      return s;
    }
  }

  // Feedback whose record is gone is bounded by nothing else.
  if (api::Status s = write("deleting feedback without a record",
                            [&](pqxx::transaction_base& tx) {
                              tx.exec(
                                  "DELETE FROM switchyard.quality_feedback f WHERE NOT EXISTS "
                                  "(SELECT 1 FROM switchyard.quality_records r WHERE "
                                  "r.request_id = f.request_id AND r.team = f.team)");
                              return api::Status();
                            });
      !s.ok()) {
    return s;
  }

  if (r.max_rows > 0) {
    int64_t count = 0;
    api::Status s = write("counting records", [&](pqxx::transaction_base& tx) {
      count = tx.exec("SELECT COUNT(*) FROM switchyard.quality_records")[0][0].as<int64_t>();
      return api::Status();
    });
    if (!s.ok()) return s;
    if (count > r.max_rows) {
      if (s = drain(oldest, kNoCutoff, count - r.max_rows); !s.ok()) return s;
    }
  }

  if (r.max_bytes > 0) {
    // The oldest records beyond the newest ones whose estimated bytes sum to max_bytes.
    const std::string beyond =
        "SELECT id FROM (SELECT id, unix_ms, SUM(bytes) OVER (ORDER BY unix_ms DESC, id DESC) "
        "AS total FROM switchyard.quality_records) t WHERE total > $1 ORDER BY unix_ms, id "
        "LIMIT $2";
    if (api::Status s = drain(beyond, r.max_bytes, kAll); !s.ok()) return s;
  }
  return deleted;
}

}  // namespace

api::StatusOr<std::unique_ptr<QualityStore>> openPostgresQualityStore(
    const std::string& url, const policies::PgDatabaseOptions& options, bool read_only) {
  policies::PgDatabaseOptions o = options;
  o.application_name = "switchyard-quality";
  auto store = std::make_unique<PgQualityStore>(url, o, read_only);
  if (api::Status s = store->init(); !s.ok()) return s;
  return std::unique_ptr<QualityStore>(std::move(store));
}

}  // namespace quality
