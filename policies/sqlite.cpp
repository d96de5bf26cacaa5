#include "policies/sqlite.h"

#include <sqlite3.h>

#include <cmath>
#include <cstring>

namespace policies::sqlite {

void DbCloser::operator()(sqlite3* db) const { sqlite3_close_v2(db); }
void StmtCloser::operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }

api::StatusOr<Stmt> prepare(sqlite3* db, std::string_view sql, unsigned flags) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), flags, &s, nullptr) !=
      SQLITE_OK) {
    sqlite3_finalize(s);  // null after a failure; finalizing null leaves the error as it is
    return api::Status(api::ErrorCode::kIo, db ? sqlite3_errmsg(db) : "out of memory");
  }
  return Stmt(s);
}

Use::~Use() {
  sqlite3_reset(s_);
  sqlite3_clear_bindings(s_);
}

int Use::param(const char* name) const { return sqlite3_bind_parameter_index(s_, name); }

void Use::text(int i, std::string_view v) {
  sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}
void Use::int64(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
void Use::real(int i, double v) { sqlite3_bind_double(s_, i, v); }
void Use::boolean(int i, bool v) { sqlite3_bind_int(s_, i, v ? 1 : 0); }
void Use::null(int i) { sqlite3_bind_null(s_, i); }

void Use::realExact(int i, double v) {
  // SQLite keeps neither a NaN (stored as NULL) nor the sign of -0.0 (an integral REAL is
  // stored as an integer).
  if (std::isnan(v) || (v == 0 && std::signbit(v))) {
    sqlite3_bind_blob(s_, i, &v, sizeof v, SQLITE_TRANSIENT);
  } else {
    sqlite3_bind_double(s_, i, v);
  }
}
void Use::optRealExact(int i, const std::optional<double>& v) { v ? realExact(i, *v) : null(i); }
void Use::optBool(int i, const std::optional<bool>& v) { v ? boolean(i, *v) : null(i); }

int Use::step() { return sqlite3_step(s_); }

bool Use::isNull(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
std::string Use::columnText(int c) const {
  const unsigned char* t = sqlite3_column_text(s_, c);
  return t ? std::string(reinterpret_cast<const char*>(t),
                         static_cast<size_t>(sqlite3_column_bytes(s_, c)))
           : std::string();
}
int64_t Use::columnInt64(int c) const { return sqlite3_column_int64(s_, c); }
double Use::columnDouble(int c) const { return sqlite3_column_double(s_, c); }
bool Use::columnBool(int c) const { return sqlite3_column_int64(s_, c) != 0; }

double Use::columnRealExact(int c) const {
  double v = std::nan("");
  if (sqlite3_column_type(s_, c) != SQLITE_BLOB) return sqlite3_column_double(s_, c);
  if (sqlite3_column_bytes(s_, c) == sizeof v) {  // see realExact()
    std::memcpy(&v, sqlite3_column_blob(s_, c), sizeof v);
  }
  return v;
}
std::optional<double> Use::columnOptRealExact(int c) const {
  if (isNull(c)) return std::nullopt;
  return columnRealExact(c);
}
std::optional<bool> Use::columnOptBool(int c) const {
  if (isNull(c)) return std::nullopt;
  return columnBool(c);
}

}  // namespace policies::sqlite
