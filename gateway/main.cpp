// switchyard: the gateway server.
//
//   switchyard serve [--config FILE] [--port N] [--listen ADDR] [--engine-only]
//
// Without --config it runs on the embedded default config (configs/switchyard.yaml, compiled
// in). --engine-only serves the config's embedded engines alone (gateway::engineOnlyConfig: no
// cloud providers, policies, ledger or quality store) and only the endpoints another gateway
// needs to use this box as a `tier: local` provider: POST /v1/chat/completions (logprobs
// included), GET /v1/models, /healthz, /readyz and /metrics. When ready it prints one JSON line on stdout, {"event":"listening",...}; logs go to
// stderr. SIGTERM or SIGINT drains in-flight answers and exits 0.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include <pthread.h>

#include "gateway/config.h"
#include "gateway/gateway.h"
#include "gateway/metrics.h"
#include "api/openai_json.h"
#include "gateway/server.h"

namespace gateway {
extern const char* const kDefaultConfigYaml;
extern const char* const kDefaultPricingYaml;
extern const char* const kDefaultPoliciesYaml;
}

namespace {

void usage(FILE* out) {
  std::fprintf(out,
               "usage: switchyard serve [--config FILE] [--port N] [--listen ADDR] "
               "[--engine-only]\n"
               "       switchyard check-config [--config FILE]\n"
               "       switchyard --version\n\n"
               "Without --config the embedded default config is used. --engine-only serves\n"
               "only the embedded engine's OpenAI endpoints (for gateways that route to this\n"
               "machine as a `tier: local` provider).\n");
}

std::string_view pathOf(std::string_view target) {
  return target.substr(0, target.find('?'));
}

void replyNotFound(const gateway::Exchange& ex, gateway::Responder& r) {
  api::Status st(api::ErrorCode::kNotFound,
                 "Unknown request URL: " + ex.method + " " + std::string(pathOf(ex.target)) + ".",
                 {}, "unknown_url");
  r.reply(st.httpStatusCode(), api::serializeError(st), {});
}

// What `serve --engine-only` answers; everything else is 404.
bool engineOnlyPath(std::string_view path) {
  return path == "/v1/chat/completions" || path == "/v1/models" ||
         path.rfind("/v1/models/", 0) == 0 || path == "/healthz" || path == "/readyz" ||
         path == "/metrics";
}

// The separate /metrics listener (`metrics.port`): the main listener's limits, one thread,
// plain HTTP (it is meant for a private network or loopback), and no other endpoint.
std::unique_ptr<gateway::Server> makeMetricsServer(const gateway::Config& config,
                                                   gateway::Metrics& metrics,
                                                   gateway::Gateway& app) {
  gateway::ServerConfig sc = config.server;
  sc.listen = config.metrics.listen;
  sc.port = config.metrics.port;
  sc.threads = 1;
  sc.worker_threads = 1;
  sc.tls = gateway::TlsConfig{};
  return std::make_unique<gateway::Server>(
      sc, metrics, [&app](gateway::Exchange ex, std::shared_ptr<gateway::Responder> r) {
        if (pathOf(ex.target) != "/metrics") return replyNotFound(ex, *r);
        app.handle(std::move(ex), std::move(r));
      });
}

// SIGHUP: re-reads the certificates; bad new files keep the old ones (and say why).
void reloadTls(gateway::Server& server, gateway::Metrics& metrics) {
  api::Status st = server.reloadTls();
  metrics.recordTlsReload(st.ok());
  if (!st.ok()) {
    std::fprintf(stderr,
                 "{\"level\":\"error\",\"msg\":\"TLS certificates not reloaded; the old ones "
                 "still apply\",\"why\":%s}\n",
                 api::Json(st.message()).dump().c_str());
  } else {
    std::fprintf(stderr, "{\"level\":\"info\",\"msg\":\"TLS certificates reloaded\"}\n");
  }
}

// Binds the main listener and the metrics one, then announces them: one JSON line on stdout
// (what scripts and tests wait for) and the same on stderr. False (and why) on failure.
bool listenAll(const gateway::Config& config, const std::string& config_path,
               gateway::Server& server, gateway::Server* metrics_server) {
  auto bound = server.listen();
  if (!bound.ok()) {
    std::fprintf(stderr, "switchyard: %s\n", bound.status().message().c_str());
    return false;
  }
  std::string extra = config.server.tls.enabled ? ",\"tls\":true" : "";
  if (metrics_server) {
    auto m = metrics_server->listen();
    if (!m.ok()) {
      std::fprintf(stderr, "switchyard: metrics: %s\n", m.status().message().c_str());
      return false;
    }
    extra += ",\"metrics_port\":" + std::to_string(*m);
  }
  std::printf("{\"event\":\"listening\",\"address\":\"%s\",\"port\":%d%s}\n",
              config.server.listen.c_str(), *bound, extra.c_str());
  std::fflush(stdout);
  std::fprintf(stderr,
               "{\"level\":\"info\",\"msg\":\"listening\",\"address\":\"%s\",\"port\":%d,"
               "\"config\":\"%s\"%s}\n",
               config.server.listen.c_str(), *bound,
               config_path.empty() ? "<embedded>" : config_path.c_str(), extra.c_str());
  return true;
}

// Runs the gateway on `frozen` until SIGTERM/SIGINT has drained it; `signals` are blocked in
// every thread and taken by one watcher. Returns the exit code.
int serve(std::shared_ptr<const gateway::Config> frozen, const std::string& config_path,
          sigset_t signals, bool engine_only) {
  gateway::Metrics metrics;
  auto created = gateway::Gateway::create(frozen, metrics);
  if (!created.ok()) {
    std::fprintf(stderr, "switchyard: %s\n", created.status().message().c_str());
    return 2;
  }
  gateway::Gateway& app = **created;
  const bool separate_metrics = frozen->metrics.port >= 0;
  gateway::Server server(
      frozen->server, metrics,
      [&app, separate_metrics, engine_only](gateway::Exchange ex,
                                            std::shared_ptr<gateway::Responder> r) {
        if (separate_metrics && pathOf(ex.target) == "/metrics") return replyNotFound(ex, *r);
        if (engine_only && !engineOnlyPath(pathOf(ex.target))) return replyNotFound(ex, *r);
        app.handle(std::move(ex), std::move(r));
      });
  app.setDrainingProbe([&server] { return server.draining(); });
  server.setThreadService([&app] { return app.upstreamThreadService(); });
  std::unique_ptr<gateway::Server> metrics_server;
  if (separate_metrics) metrics_server = makeMetricsServer(*frozen, metrics, app);

  if (!listenAll(*frozen, config_path, server, metrics_server.get())) return 1;

  std::atomic<bool> stopped{false};
  std::thread watcher([&] {
    timespec tick{0, 200 * 1000 * 1000};
    while (!stopped.load()) {
      int sig = sigtimedwait(&signals, nullptr, &tick);
      if (sig == SIGTERM || sig == SIGINT) {
        std::fprintf(stderr, "{\"level\":\"info\",\"msg\":\"draining\",\"signal\":%d}\n", sig);
        server.beginShutdown();
        if (metrics_server) metrics_server->beginShutdown();
      } else if (sig == SIGHUP) {
        if (frozen->server.tls.enabled) reloadTls(server, metrics);
        if (engine_only) continue;  // an engine box has no policies to re-read
        // Re-read the policies; an invalid file keeps the old ones (and says why).
        if (api::Status st = app.reloadPolicies(); !st.ok()) {
          std::fprintf(stderr,
                       "{\"level\":\"error\",\"msg\":\"policies not reloaded; the old ones "
                       "still apply\",\"why\":%s}\n",
                       api::Json(st.message()).dump().c_str());
        }
      }
    }
  });

  std::thread metrics_thread;
  if (metrics_server) metrics_thread = std::thread([&] { metrics_server->run(); });
  server.run();
  if (metrics_server) {
    metrics_server->beginShutdown();
    metrics_thread.join();
  }
  stopped = true;
  watcher.join();
  std::fprintf(stderr, "{\"level\":\"info\",\"msg\":\"stopped\"}\n");
  return 0;
}

bool parseInt(const char* s, int& out) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < 0 || v > 65535) return false;
  out = static_cast<int>(v);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  std::string command = argv[1];
  if (command == "--version") {
    std::printf("switchyard 0.1.0\n");
    return 0;
  }
  if (command == "--help" || command == "-h" || command == "help") {
    usage(stdout);
    return 0;
  }
  if (command != "serve" && command != "check-config") {
    std::fprintf(stderr, "switchyard: unknown command '%s'\n", command.c_str());
    usage(stderr);
    return 2;
  }
  std::string config_path;
  int port = -1;
  std::string listen;
  bool engine_only = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "switchyard: %s needs a value\n", name);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--config") {
      config_path = value("--config");
    } else if (a == "--port") {
      if (!parseInt(value("--port"), port)) {
        std::fprintf(stderr, "switchyard: --port must be 0..65535\n");
        return 2;
      }
    } else if (a == "--listen") {
      listen = value("--listen");
    } else if (a == "--engine-only") {
      engine_only = true;
    } else {
      std::fprintf(stderr, "switchyard: unknown option '%s'\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }

  // The embedded config names "pricing.yaml" and "policies.yaml", which are embedded too.
  auto embedded_files = [](const std::string& name) -> api::StatusOr<std::string> {
    if (name == "pricing.yaml") return std::string(gateway::kDefaultPricingYaml);
    if (name == "policies.yaml") return std::string(gateway::kDefaultPoliciesYaml);
    return api::Status(api::ErrorCode::kIo,
                       "the embedded config has no file '" + name + "'; use --config");
  };
  auto loaded = config_path.empty()
                    ? gateway::parseConfig(gateway::kDefaultConfigYaml,
                                           "<embedded switchyard.yaml>", embedded_files)
                    : gateway::loadConfigFile(config_path);
  if (!loaded.ok()) {
    std::fprintf(stderr, "switchyard: invalid config: %s\n", loaded.status().message().c_str());
    return 2;
  }
  if (engine_only) {
    loaded = gateway::engineOnlyConfig(**loaded);
    if (!loaded.ok()) {
      std::fprintf(stderr, "switchyard: %s\n", loaded.status().message().c_str());
      return 2;
    }
  }
  if (command == "check-config") {
    std::printf("config ok\n");
    return 0;
  }
  auto config = std::make_shared<gateway::Config>(**loaded);
  if (port >= 0) config->server.port = port;
  if (!listen.empty()) config->server.listen = listen;
  std::shared_ptr<const gateway::Config> frozen = config;

  // Signals are taken by one watcher thread; every other thread blocks them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  return serve(frozen, config_path, signals, engine_only);
}
