#include "tests/support/postgres.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <vector>

namespace sytest {
namespace {

namespace fs = std::filesystem;

const char* const kDefaultBin = "/usr/lib/postgresql/15/bin";

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// Runs argv (through runuser -u postgres when `as_postgres`), stdout and stderr into `out`;
// true when it exits 0.
bool run(const std::vector<std::string>& argv, bool as_postgres, std::string* out) {
  std::string cmd = as_postgres ? "runuser -u postgres --" : "";
  for (const std::string& a : argv) cmd += " " + quote(a);
  cmd += " 2>&1";
  out->clear();
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) {
    *out = "cannot run " + argv[0];
    return false;
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  int status = ::pclose(p);
  return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::string tmpRoot() {
  const char* t = std::getenv("TMPDIR");
  return t && *t ? t : "/tmp";
}

// A port that was free a moment ago on 127.0.0.1 (0 when none could be had).
int freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

bool chownToPostgres(const std::string& path, std::string* why) {
  struct passwd* pw = ::getpwnam("postgres");
  if (!pw) {
    *why = "no `postgres` system user to run the server as (initdb refuses to run as root)";
    return false;
  }
  if (::chown(path.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
    *why = "cannot give " + path + " to the postgres user";
    return false;
  }
  return true;
}

// The initialized cluster that servers copy, made once per machine and user.
bool ensureTemplate(const std::string& bin, bool as_postgres, std::string* templ,
                    std::string* why) {
  std::string root = tmpRoot() + "/switchyard-pg15-template-" + std::to_string(::geteuid());
  *templ = root + "/data";
  int lock = ::open((root + ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  if (lock < 0 || ::flock(lock, LOCK_EX) != 0) {
    *why = "cannot lock " + root + ".lock";
    if (lock >= 0) ::close(lock);
    return false;
  }
  bool ok = true;
  if (!fs::exists(root + "/ready")) {
    std::error_code ec;
    fs::remove_all(root, ec);
    fs::create_directories(root, ec);
    ::chmod(root.c_str(), 0700);
    std::string out;
    ok = (!as_postgres || chownToPostgres(root, why)) &&
         run({bin + "/initdb", "-D", *templ, "-U", "postgres", "--auth=trust", "-N", "-E", "UTF8",
              "--no-locale"},
             as_postgres, &out);
    if (ok) {
      std::ofstream ready(root + "/ready");
      ok = ready.good();
    } else if (why->empty()) {
      *why = "initdb failed: " + out;
    }
  }
  ::close(lock);
  return ok;
}

std::string binDir() {
  const char* env = std::getenv("SY_PG_BIN");
  return env && *env ? env : kDefaultBin;
}

}  // namespace

bool PostgresServer::available(std::string* why) {
  const std::string bin = binDir();
  for (const char* tool : {"initdb", "pg_ctl", "createdb", "dropdb"}) {
    if (::access((bin + "/" + tool).c_str(), X_OK) != 0) {
      *why = "PostgreSQL server binaries not found: no " + bin + "/" + tool +
             " (install Debian's postgresql-15: scripts/install-deps.sh)";
      return false;
    }
  }
  if (::geteuid() == 0 && !::getpwnam("postgres")) {
    *why =
        "no `postgres` system user to run the server as (initdb refuses to run as root; "
        "Debian's postgresql-15 creates it)";
    return false;
  }
  return true;
}

std::unique_ptr<PostgresServer> PostgresServer::start(std::string* why) {
  if (!available(why)) return nullptr;
  std::unique_ptr<PostgresServer> s(new PostgresServer());
  s->bin_ = binDir();
  s->as_postgres_ = ::geteuid() == 0;
  s->owner_pid_ = ::getpid();
  std::string templ;
  if (!ensureTemplate(s->bin_, s->as_postgres_, &templ, why)) return nullptr;
  std::string tmpl = tmpRoot() + "/switchyard-pg.XXXXXX";
  if (!::mkdtemp(tmpl.data())) {
    *why = "cannot create a temporary directory under " + tmpRoot();
    return nullptr;
  }
  s->dir_ = tmpl;
  if (s->as_postgres_ && !chownToPostgres(s->dir_, why)) return nullptr;
  std::string out;
  if (!run({"cp", "-a", templ, s->dir_ + "/data"}, s->as_postgres_, &out)) {
    *why = "cannot copy the template cluster: " + out;
    return nullptr;
  }
  if (!s->launch(why)) return nullptr;
  return s;
}

bool PostgresServer::launch(std::string* why) {
  std::string out;
  for (int attempt = 0; attempt < 5; ++attempt) {
    int port = port_ != 0 && attempt == 0 ? port_ : freePort();
    std::string opts = "-p " + std::to_string(port) + " -k " + dir_ +
                       " -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off "
                       "-c max_connections=300";
    if (run({bin_ + "/pg_ctl", "-D", dir_ + "/data", "-w", "-s", "-t", "30", "-o", opts, "-l",
             dir_ + "/server.log", "start"},
            as_postgres_, &out)) {
      port_ = port;
      running_ = true;
      return true;
    }
  }
  std::string log;
  run({"tail", "-n", "20", dir_ + "/server.log"}, false, &log);
  *why = "pg_ctl start failed: " + out + log;
  return false;
}

PostgresServer::~PostgresServer() {
  if (static_cast<int>(::getpid()) != owner_pid_) return;
  std::string out;
  if (running_) stop(&out);
  std::error_code ec;
  if (!dir_.empty()) fs::remove_all(dir_, ec);
}

PostgresServer* PostgresServer::shared(std::string* why) {
  static std::mutex mu;
  static std::unique_ptr<PostgresServer> server;
  static std::string failure;
  std::lock_guard<std::mutex> lock(mu);
  if (!server && failure.empty()) {
    server = start(&failure);
    if (!server && failure.empty()) failure = "cannot start PostgreSQL";
  }
  if (!server) *why = failure;
  return server.get();
}

bool PostgresServer::stop(std::string* why) {
  std::string out;
  bool ok = run({bin_ + "/pg_ctl", "-D", dir_ + "/data", "-m", "immediate", "-w", "-s", "stop"},
                as_postgres_, &out);
  if (!ok) *why = "pg_ctl stop failed: " + out;
  running_ = running_ && !ok;
  return ok;
}

bool PostgresServer::restart(std::string* why) { return launch(why); }

std::string PostgresServer::createDatabase(const std::string& name, std::string* why) {
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') {
      *why = "bad database name '" + name + "'";
      return "";
    }
  }
  std::string port = std::to_string(port_), out;
  std::vector<std::string> common = {"-h", "127.0.0.1", "-p", port, "-U", "postgres"};
  std::vector<std::string> drop = {bin_ + "/dropdb", "--if-exists"};
  std::vector<std::string> create = {bin_ + "/createdb"};
  drop.insert(drop.end(), common.begin(), common.end());
  create.insert(create.end(), common.begin(), common.end());
  drop.push_back(name);
  create.push_back(name);
  if (!run(drop, false, &out) || !run(create, false, &out)) {
    *why = "createdb " + name + " failed: " + out;
    return "";
  }
  return "postgresql://postgres@127.0.0.1:" + port + "/" + name;
}

std::string PostgresServer::databaseNameForTest() {
  static std::atomic<int> n{0};
  const testing::TestInfo* t = testing::UnitTest::GetInstance()->current_test_info();
  std::string raw = t ? std::string(t->test_suite_name()) + "_" + t->name() : "db";
  std::string name;
  for (char c : raw) {
    name += std::isalnum(static_cast<unsigned char>(c))
                ? static_cast<char>(std::tolower(static_cast<unsigned char>(c)))
                : '_';
  }
  std::string suffix = "_" + std::to_string(++n);
  if (name.size() > 63 - suffix.size()) name.resize(63 - suffix.size());
  return name + suffix;
}

}  // namespace sytest
