// The one SQLite wrapper of the project: owning handles for a connection and a statement, a
// prepare that reports SQLite's message, and Use, one use of a prepared statement (binds,
// steps, reads columns; resets it and clears its bindings when it goes). The ledger, the
// quality store and the stored Responses all go through it; callers word their own errors
// (each names its file) from the connection's error code and message.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "api/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace policies::sqlite {

struct DbCloser {
  void operator()(sqlite3* db) const;  // sqlite3_close_v2
};
struct StmtCloser {
  void operator()(sqlite3_stmt* stmt) const;  // sqlite3_finalize
};
using Db = std::unique_ptr<sqlite3, DbCloser>;
using Stmt = std::unique_ptr<sqlite3_stmt, StmtCloser>;

// Prepares the first statement of `sql` with sqlite3_prepare_v3 and `flags`
// (SQLITE_PREPARE_PERSISTENT for one kept for the connection's life). On failure: kIo with
// SQLite's message, and the connection's error code and message are left as SQLite set them,
// for a caller that words the error itself.
api::StatusOr<Stmt> prepare(sqlite3* db, std::string_view sql, unsigned flags = 0);

// One use of a prepared statement. Not owning: the statement outlives it. Parameters and
// columns are numbered as SQLite numbers them (parameters from 1, columns from 0).
class Use {
 public:
  explicit Use(sqlite3_stmt* s) : s_(s) {}
  ~Use();
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;

  sqlite3_stmt* get() const { return s_; }
  // The index of a named parameter (":team"); 0 when the statement has none of that name.
  int param(const char* name) const;

  void text(int i, std::string_view v);  // copied (SQLITE_TRANSIENT)
  void int64(int i, int64_t v);
  void real(int i, double v);   // a plain REAL: a NaN becomes NULL, -0.0 may come back as 0
  void boolean(int i, bool v);  // 0 or 1
  void null(int i);
  // Any double exactly: a NaN or -0.0, which a SQLite REAL cannot hold, goes in as its 8
  // IEEE-754 bytes, a BLOB; every other value as a REAL. Read back by columnRealExact.
  void realExact(int i, double v);
  void optRealExact(int i, const std::optional<double>& v);  // absent: NULL
  void optBool(int i, const std::optional<bool>& v);         // absent: NULL

  // sqlite3_step's result: SQLITE_ROW, SQLITE_DONE or an error code.
  int step();

  bool isNull(int c) const;
  std::string columnText(int c) const;  // NULL: ""
  int64_t columnInt64(int c) const;
  double columnDouble(int c) const;  // plain: NULL reads 0
  bool columnBool(int c) const;      // nonzero
  // What realExact wrote; a BLOB of another size reads as NaN, other types as columnDouble.
  double columnRealExact(int c) const;
  std::optional<double> columnOptRealExact(int c) const;  // NULL: absent
  std::optional<bool> columnOptBool(int c) const;         // NULL: absent

 private:
  sqlite3_stmt* s_;
};

}  // namespace policies::sqlite
