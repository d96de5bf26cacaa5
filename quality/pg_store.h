// openPostgresQualityStore: the QualityStore (store.h) on a PostgreSQL database that many
// gateway replicas share (`quality: {url: "postgresql://..."}`), so that reports, exports and
// calibration read the whole cluster's records. Reached through the ledger's connection pool
// (policies/pg_pool.h); it may be the ledger's database.
//
// Layout: tables switchyard.quality_records and switchyard.quality_feedback (the SQLite
// store's columns; text as BYTEA, so that any bytes come back as given; doubles as DOUBLE
// PRECISION, which holds NaN, the infinities and -0.0 exactly), their schema version under the
// key 'quality_schema_version' of switchyard.meta (the table the ledger keeps its own in).
// The schema is created on first use, under an advisory lock, so that replicas starting
// together create it once. Ids are a sequence: never reused.
//
// Feedback: one transaction per feedback, under an advisory lock on its (team, request_id),
// so that replicas writing feedback on one answer at once still keep one row.
//
// Retention: as the SQLite store, except that max_bytes is met on an estimate, since a
// table's disk size only shrinks at VACUUM: each record's `bytes` column (a generated column:
// its text, prompt, feature and judge detail bytes plus a fixed 400 bytes for its numbers and
// row header). Indexes, feedback and dead rows are not counted; autovacuum reuses their room.
// Replicas pruning at once delete each row once.
//
// Commits do not wait for the WAL flush (the pool's synchronous_commit = off, as for the
// ledger's rows): a crash of the database server may lose its last ~0.6 s of records.
//
// Errors name the URL with its password masked: "quality store 'postgresql://u:***@db/q':
// ...". While the database cannot be reached every call fails at once with kUnavailable for a
// second after each failed attempt (PgDatabaseOptions::retry_after), so that the Recorder's
// writer drops its queue's records quickly (counted as failed, logged) instead of waiting a
// connect timeout per record; client answers never wait for it.
#pragma once

#include <memory>
#include <string>

#include "api/status.h"
#include "policies/pg_pool.h"
#include "quality/store.h"

namespace quality {

// Connects and creates the schema (version QualityStore::kSchemaVersion) unless read_only;
// tables of version 1 are migrated then (records read sampling_p = 1, feedback the "unit"
// scale), and read as they are when read_only.
// kIo naming the masked URL when the database cannot be reached or the schema cannot be
// made; kConfig when the database holds a quality schema of another version, or (read_only)
// none.
api::StatusOr<std::unique_ptr<QualityStore>> openPostgresQualityStore(
    const std::string& url, const policies::PgDatabaseOptions& options, bool read_only = false);

}  // namespace quality
