// openPostgresLedger: the Ledger (ledger.h) on a PostgreSQL database that many gateway
// replicas share, so that budgets hold across them. Reached through Debian's libpqxx.
//
// Budget state is in the database, not in memory: a per-team row (ledger_teams: the sum and
// count of the team's open reservations) and a per-team, per-period row (ledger_periods: the
// settled spend of a day "2026-11-23" or a month "2026-11"). A reservation is one transaction:
// it locks the team's row, then a conditional
//     UPDATE ledger_teams SET reserved_usd = reserved_usd + amount
//     WHERE spent(day) + reserved_usd + amount <= daily limit AND ... monthly ...
// (each statement under READ COMMITTED reads what committed before the lock was taken, so no
// concurrent settle is half seen), and the pending row that makes it durable, in the same
// transaction. So N replicas under a storm never overshoot a limit. A settle rewrites the
// pending row in place and moves its money from reserved to the periods' spent in one
// transaction; a release deletes the row and gives the reservation back. As in the SQLite
// ledger, a reservation counts in every period until it is settled or released.
//
// Crash recovery: each ledger registers a replica id with a heartbeat row (ledger_replicas,
// times on the database's clock). Pending rows of a replica whose heartbeat is older than
// `stale_after` (and, when a ledger opens, those of its own replica id: its previous life's)
// are billed as crashed at their reserved amount by whichever replica notices first: one
// UPDATE ... WHERE state = 'pending' moves them, so each is billed exactly once, with the
// totals in the same transaction. In-memory reservations (reserve()) leave a 'held' row so
// that their money can be given back when their replica dies; recovery deletes those.
// Replica ids must be unique among running replicas: a ledger opening with the id of a live
// one bills that one's calls in flight.
//
// Reservations are a round trip to the database on the caller's thread (a pooled connection,
// a statement timeout): reserveDurable calls on_durable inline once its transaction committed.
// Settles, releases and rows (record) are queued for the ledger's writer thread, which
// writes them in batches (one transaction each), and never wait; they count at once in this replica's view: spent() adds its queued writes to what it
// reads, and a reservation counts them on top of the database's sums (those whose row the
// database still holds as pending), so a settle's refund is available at once and nothing is
// counted twice. Another replica counts a settled call's
// reservation until the writer wrote the settle (settled plus reserved may then read above a
// limit for a moment; the money settled never does). flush() waits for the queue. While the
// database cannot be reached, reserveDurable answers kUnavailable at once (cloud calls fail
// closed), the queue keeps the writes and the background thread retries them, and spent()
// answers from the last values it read with the writes since counted. The background thread
// also beats the heart, probes the database while it is down, runs crash recovery, and reads
// again every team's spend that was read before, so that cachedSpent() answers without a
// round trip: the values of the last read (that refresh, a spent() or a reservation) with this
// replica's writes since counted, while that read is at most three heartbeat intervals old
// (nullopt after that).
//
// A reservation's commit waits for the database's WAL flush: it survives kill -9 of the
// gateway and a crash of the database server. Other writes (settles, releases, rows, alerts,
// heartbeats) do not wait for it (synchronous_commit = off): a crash of the database server
// may undo its last ~0.6 s of them, which leaves those reservations pending, so that recovery
// bills them at their reserved amount (more than they cost, never less); a local answer's row
// may be lost then.
//
// Errors name the URL with its password masked ("postgresql://app:***@db:5432/ledger").
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "api/status.h"
#include "policies/ledger.h"

namespace policies {

struct PostgresLedgerOptions {
  // This replica's id; "" makes one from the host name, the process id and a random suffix
  // (then only other replicas bill its calls in flight after a crash, once its heartbeat is
  // stale). A stable id (a StatefulSet pod name) lets a restart bill them at once.
  std::string replica_id;
  int pool_size = 8;                                   // connections, at most
  std::chrono::milliseconds statement_timeout{5000};   // per statement
  std::chrono::seconds connect_timeout{5};             // per connection attempt
  std::chrono::milliseconds heartbeat_interval{2000};  // heartbeat, recovery and retries
  std::chrono::milliseconds stale_after{15000};        // a replica silent this long is dead
};

// "postgresql://user:***@host/db": the password of a URL (or a key=value connection
// string's password=...) replaced by ***.
std::string maskPostgresUrl(const std::string& url);

// Connects, creates or checks the schema (version 1, tables prefixed ledger_), registers the
// replica, bills the pending rows of its own replica id and of dead replicas, and starts the
// background thread. kIo naming the masked URL when the database cannot be reached or the
// schema cannot be made; kConfig when the database holds a ledger schema of another version.
api::StatusOr<std::unique_ptr<Ledger>> openPostgresLedger(const std::string& url,
                                                          const PostgresLedgerOptions& options);

}  // namespace policies
