// ReservationJournal: where a durable reservation becomes durable. Internal to policies/.
//
// Committing a pending row to SQLite costs a write transaction (tens of microseconds, and a
// hop to the writer thread) before every cloud call. Instead, reserveDurable appends the
// pending row to this journal with one write() on the caller's thread (about a microsecond)
// and the call starts at once; the writer commits the row to SQLite later, in a batch, usually
// together with its settle (see ledger.cpp). A record survives kill -9 of the process as soon
// as write() has returned (it is in the kernel's page cache), exactly like a SQLite commit
// under WAL with synchronous=NORMAL: a power loss may lose the last ones of both.
//
// Opening the ledger reads the journal before anything else: a record whose seq is above the
// file's last committed write ('last_seq') is a reservation whose pending row never reached
// SQLite, so it is inserted as pending and then settled as crashed like any pending row. A
// record at or below 'last_seq' is stale (its row, or its settle, is in the file already).
//
// Two files, `<ledger>-pending.0` and `<ledger>-pending.1` (mode 0600), so that one can be
// emptied while the other takes appends: appends go to the active file; once every record of
// the other one is committed to SQLite, that one is truncated and becomes the active one.
// Each record is framed (magic, length, FNV-1a checksum), so a torn tail is recognized and
// ignored. Not thread-safe: the Ledger calls it under its mutex.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "api/status.h"
#include "policies/ledger.h"

namespace policies {

struct JournalRecord {
  int64_t seq = 0;  // the pending row's write seq
  int64_t id = 0;   // its row id
  LedgerRow row;    // request_id, team, key_id, model, decision, cost_usd (reserved), unix_ms
};

class ReservationJournal {
 public:
  // Opens (creating when absent, mode 0600) both files of the ledger at `ledger_path` and
  // reads their valid records into `found` (in file order; a torn or corrupt tail ends a
  // file). kIo naming the file when one cannot be opened or read.
  static api::StatusOr<std::unique_ptr<ReservationJournal>> open(const std::string& ledger_path,
                                                                 std::vector<JournalRecord>* found);
  ~ReservationJournal();
  ReservationJournal(const ReservationJournal&) = delete;
  ReservationJournal& operator=(const ReservationJournal&) = delete;

  // Appends one pending reservation to the active file. kUnavailable "cannot write
  // '<file>': <reason>" when the write fails or is short (the file is cut back to its last
  // whole record, so later appends stay readable).
  api::Status append(const JournalRecord& record);

  // After the ledger's writer committed every write up to `committed_seq`: empties the file
  // that takes no appends when all its records are committed, and makes an empty one the
  // active file. At most two ftruncate() calls; a failure is retried after the next commit.
  void retire(int64_t committed_seq);

  // Empties both files (every record is committed or was recovered).
  api::Status clear();

  // The files' names (for messages and tests).
  std::string fileName(int i) const;
  // Bytes currently in file i (0 or 1).
  uint64_t bytes(int i) const { return files_[i].size; }

 private:
  struct File {
    int fd = -1;
    uint64_t size = 0;    // bytes of whole records
    int64_t max_seq = 0;  // highest seq written to it since it was last emptied
  };
  explicit ReservationJournal(std::string ledger_path) : base_(std::move(ledger_path)) {}
  bool truncate(int i);

  std::string base_;
  File files_[2];
  int active_ = 0;
};

}  // namespace policies
