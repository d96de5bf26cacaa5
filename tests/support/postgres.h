// A private PostgreSQL server for tests: initdb into a temporary directory, `pg_ctl start` on a
// free loopback port (its unix socket in that directory too), one database per test, stopped
// and removed when the server object goes.
//
// The server binaries are Debian's postgresql-15 (/usr/lib/postgresql/15/bin, or the folder in
// $SY_PG_BIN). initdb refuses to run as root: under euid 0 every server command runs as the
// `postgres` system user (runuser -u postgres --), and the directory is given to that user.
// The cluster is initialized once per machine into a template folder under the temp
// directory (guarded by a lock file) and copied per server, so that a test process pays for a
// copy (~0.1 s), not an initdb (~2 s).
#pragma once

#include <memory>
#include <string>

namespace sytest {

class PostgresServer {
 public:
  // False, with what is missing in `why`, when this machine cannot run a server (no server
  // binaries; under root, no `postgres` user): tests skip then. Otherwise a server that does
  // not start is a failure.
  static bool available(std::string* why);
  // Starts a server of its own; nullptr with `why` set (what is missing, or the server's own
  // words) when it cannot.
  static std::unique_ptr<PostgresServer> start(std::string* why);
  // The test binary's one shared server, started on first use and stopped at exit; nullptr
  // with `why` as start().
  static PostgresServer* shared(std::string* why);
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const { return port_; }
  // Creates database `name` (letters, digits and '_'; a fresh one: dropped first if present)
  // and returns its URL ("postgresql://postgres@127.0.0.1:<port>/<name>"); "" with `why` set
  // on failure.
  std::string createDatabase(const std::string& name, std::string* why);
  // A unique database name for the running test ("<suite>_<test>_<n>", lowercased, at most
  // 63 bytes).
  static std::string databaseNameForTest();
  // Stops the server at once (pg_ctl -m immediate), as if it had gone down; start again with
  // restart(). Both return false with `why` on failure.
  bool stop(std::string* why);
  bool restart(std::string* why);

 private:
  PostgresServer() = default;
  bool launch(std::string* why);

  std::string bin_;  // the folder of initdb, pg_ctl, createdb
  std::string dir_;  // temporary directory: data/, the socket, log
  int port_ = 0;
  bool as_postgres_ = false;  // commands run through runuser -u postgres
  int owner_pid_ = 0;         // a forked child never stops the parent's server
  bool running_ = false;
};

}  // namespace sytest
