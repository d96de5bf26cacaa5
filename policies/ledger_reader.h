// readLedgerRows: a read-only look at a ledger file, for reports and tools that run beside the
// gateway (switchyard-cli reports) while the gateway keeps the file open for writing.
//
// It opens the file through SQLite with SQLITE_OPEN_READONLY and nothing else: it never takes
// the flock() that marks the owning Ledger (ledger.h: one owner per file), never writes and
// never checkpoints, so the gateway neither notices it nor waits for it. In WAL mode a reader
// sees the rows committed when its query starts; rows the gateway still holds in its write
// queue are not there yet.
// On a file that no process has open, SQLite may leave empty -wal and -shm files beside it
// (a read-only connection cannot remove them); the next owner uses them as usual.
//
// Files written before the `decision` and `compute_ms` columns existed are read too: those
// fields are then "" and 0. Before `state` (schema version 3) every row is "settled".
//
// Pending rows (durable reservations whose calls are in flight) are returned too, with state
// "pending" and cost_usd their reserved amount: an upper bound of what the call will cost,
// money that is reserved rather than spent. A report that wants spend only skips them; one
// that wants the worst case keeps them. Crashed rows (state "crashed") are spend.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "api/status.h"
#include "policies/ledger.h"

namespace policies {

// A postgresql:// or postgres:// URL reads the PostgreSQL ledger (pg_ledger.h) that replicas
// share instead: the whole cluster's rows, committed when the query starts, in one read-only
// transaction (held rows, in-memory reservations of a running replica, are not returned).
// Errors then name the URL with its password masked: kIo when the database cannot be reached,
// kConfig when it holds no ledger.
//
// The committed rows with since_ms <= unix_ms < until_ms (an absent bound: no bound), ordered by
// unix_ms and then by insertion order. Errors name the path:
//   kIo      the file is missing, a directory, unreadable, or not a SQLite database;
//   kConfig  a SQLite database that is not a Switchyard ledger (no meta or requests table, or
//            a requests table without the columns every ledger has).
api::StatusOr<std::vector<LedgerRow>> readLedgerRows(const std::string& path,
                                                     std::optional<int64_t> since_ms,
                                                     std::optional<int64_t> until_ms);

}  // namespace policies
