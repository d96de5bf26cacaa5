// End-to-end: the process and the connection around a request. Clients that go away,
// graceful shutdown on SIGTERM/SIGINT, invalid configs, broken and slow HTTP clients.
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "tests/e2e/e2e_fixture.h"

namespace sytest {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// --- clients that go away -----------------------------------------------------------------

TEST_F(GatewayE2E, ClientDisconnectMidStreamCancelsTheUpstreamCall) {
  fake_.pushFault(Fault::endless(milliseconds(50)));
  int events = 0;
  HttpClient client;
  HttpResponse r = client.stream(
      "POST", url("/v1/chat/completions"), auth(), streamedChat("never ending", false).dump(),
      [&](std::string_view piece) {
        for (size_t p = piece.find("\n\n"); p != std::string::npos; p = piece.find("\n\n", p + 2)) {
          ++events;
        }
        return events < 4;  // hang up after a few chunks
      },
      milliseconds(8000));
  ASSERT_TRUE(r.aborted) << "the stream ended by itself: " << r.error << "\n" << r.body;
  auto hung_up = Clock::now();
  auto up = fake_.lastChatRequest();
  ASSERT_TRUE(up);
  EXPECT_TRUE(fake_.server().waitForPeerClose(up->connection_id, milliseconds(2000)))
      << "the upstream still streams to a client that left";
  EXPECT_LT(secondsSince(hung_up), 2.0);
  // The gateway itself carries on.
  EXPECT_EQ(chat(userChat("still here")).status, 200);
}

TEST_F(GatewayE2E, ClientGivingUpBeforeTheFirstByteCancelsTheUpstreamCall) {
  fake_.pushFault(Fault::hang());
  HttpResponse r = chat(userChat("impatient"), auth(), milliseconds(400));
  EXPECT_EQ(r.status, 0) << "expected a client-side timeout";
  ASSERT_TRUE(fake_.server().waitForRequests(1, milliseconds(1000)));
  auto up = fake_.lastChatRequest();
  ASSERT_TRUE(up);
  EXPECT_TRUE(fake_.server().waitForPeerClose(up->connection_id, milliseconds(2000)))
      << "the upstream call outlived its client";
}

// --- graceful shutdown ---------------------------------------------------------------------

TEST_F(GatewayE2E, SigtermLetsAStreamInFlightFinishThenExitsZero) {
  fake_.setDefaultInterval(milliseconds(150));
  Json req = streamedChat("drain me gently please one two", true);

  // A keep-alive connection opened before the signal.
  RawConnection idle(gw_->port());
  ASSERT_TRUE(idle.send("GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"));
  ASSERT_EQ(statusOf(idle.readResponse(milliseconds(3000))), 200);

  std::mutex mu;
  std::condition_variable cv;
  bool first_chunk = false;
  HttpResponse streamed;
  Clock::time_point stream_end;
  std::thread client([&] {
    HttpClient c;
    streamed = c.stream(
        "POST", url("/v1/chat/completions"), auth(), req.dump(),
        [&](std::string_view piece) {
          if (piece.find("echo:") != std::string_view::npos) {
            std::lock_guard<std::mutex> lock(mu);
            first_chunk = true;
            cv.notify_all();
          }
          return true;
        },
        milliseconds(10000));
    stream_end = Clock::now();
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, milliseconds(5000), [&] { return first_chunk; }))
        << "the stream never started";
  }

  auto signalled = Clock::now();
  ASSERT_TRUE(gw_->process().signal(SIGTERM));

  // New connections are refused soon after the signal, while the stream still runs.
  bool refused = waitUntil([&] { return connectRefused(gw_->port()); }, milliseconds(1000));
  EXPECT_TRUE(refused) << "still accepting connections while draining";

  // A request on the connection opened before the signal is not served as usual.
  if (idle.send("GET /readyz HTTP/1.1\r\nHost: gw\r\n\r\n")) {
    std::string resp = idle.readResponse(milliseconds(3000));
    int status = statusOf(resp);
    EXPECT_TRUE(status == 503 || (status == 0 && idle.closedByPeer()))
        << "a request after SIGTERM got: " << resp;
  }

  client.join();
  ASSERT_EQ(streamed.status, 200) << streamed.error;
  EXPECT_TRUE(streamed.error.empty()) << streamed.error;
  bool saw_done = false, done_last = false;
  auto chunks = jsonEvents(streamed.body, &saw_done, &done_last);
  EXPECT_TRUE(saw_done && done_last) << "the stream was cut by the shutdown:\n" << streamed.body;
  std::string text;
  for (const auto& c : chunks) {
    if (!c["choices"].empty() && c["choices"][0]["delta"].contains("content")) {
      text += c["choices"][0]["delta"].value("content", "");
    }
  }
  EXPECT_EQ(text, FakeOpenAI::replyFor(req));
  EXPECT_GT(std::chrono::duration<double>(stream_end - signalled).count(), 0.3)
      << "the test meant the stream to outlive the signal";

  auto exit = gw_->process().wait(milliseconds(5000));
  ASSERT_TRUE(exit) << "did not exit after draining";
  EXPECT_TRUE(exit->exited) << "killed by signal " << exit->signal;
  EXPECT_EQ(exit->code, 0);
  EXPECT_LT(secondsSince(signalled), 4.0);
  EXPECT_TRUE(connectRefused(gw_->port()));
}

TEST_F(GatewayE2E, ShutdownDoesNotWaitForIdleKeepAliveConnections) {
  HttpClient client;
  ASSERT_EQ(client.request("GET", url("/healthz")).status, 200);  // stays open, idle
  RawConnection raw(gw_->port());
  ASSERT_TRUE(raw.connected());  // connected, never sends a byte
  auto signalled = Clock::now();
  auto exit = gw_->terminate(milliseconds(5000));
  ASSERT_TRUE(exit) << "idle connections held the shutdown for > 5 s";
  EXPECT_TRUE(exit->exited);
  EXPECT_EQ(exit->code, 0);
  EXPECT_LT(secondsSince(signalled), 1.5) << "nothing was in flight";
}

TEST_F(GatewayE2E, SigintDrainsLikeSigterm) {
  ASSERT_EQ(chat(userChat("before")).status, 200);
  auto signalled = Clock::now();
  ASSERT_TRUE(gw_->process().signal(SIGINT));
  auto exit = gw_->process().wait(milliseconds(5000));
  ASSERT_TRUE(exit);
  EXPECT_TRUE(exit->exited);
  EXPECT_EQ(exit->code, 0);
  EXPECT_LT(secondsSince(signalled), 1.5);
}

TEST_F(GatewayE2E, StdoutCarriesOnlyTheListeningLineAndLogsAreJson) {
  ASSERT_EQ(chat(userChat("log me")).status, 200);
  ASSERT_EQ(chat(userChat("x", "nope")).status, 404);
  auto exit = gw_->terminate(milliseconds(5000));
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->code, 0);
  EXPECT_EQ(gw_->process().readAllStdout(milliseconds(500)), "")
      << "stdout must hold the listening line only";
  std::string err = gw_->stderrText();
  size_t lines = 0;
  for (size_t pos = 0; pos < err.size();) {
    size_t nl = err.find('\n', pos);
    std::string line = err.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? err.size() : nl + 1;
    if (line.empty()) continue;
    ++lines;
    EXPECT_TRUE(Json::parse(line, nullptr, false).is_object()) << "not a JSON log line: " << line;
    EXPECT_EQ(line.find(kClientKey), std::string::npos) << "a key in the logs: " << line;
    EXPECT_EQ(line.find(kUpstreamKey), std::string::npos) << "a key in the logs: " << line;
  }
  EXPECT_GT(lines, 0u);
}

// --- invalid configuration -----------------------------------------------------------------

TEST_F(GatewayE2E, InvalidConfigExitsWithCode2NamingFileLineAndKey) {
  TempDir dir;
  struct Case {
    std::string yaml;
    std::string line;  // "<file>:<line>" expected in stderr
    std::string key;
  };
  const std::string providers =
      "providers:\n  up: {type: openai, base_url: \"" + fake_.baseUrl() + "\"}\n";
  std::vector<Case> cases = {
      {"server:\n  listen: 127.0.0.1\n  threads: 0\n" + providers +
           "models:\n  - {name: m1, provider: up}\n",
       "bad.yaml:3", "threads"},
      {"server:\n  port: 0\n  max_body_byte: 10\n" + providers +
           "models:\n  - {name: m1, provider: up}\n",
       "bad.yaml:3", "max_body_byte"},
      {providers + "models:\n  - name: m1\n    provider: nowhere\n", "bad.yaml:5", "provider"},
      {"teams:\n  - name: t\n    keys: [{id: k, sha256: nothex}]\n" + providers +
           "models:\n  - {name: m1, provider: up}\n",
       "bad.yaml:3", "sha256"},
  };
  for (const auto& c : cases) {
    std::string path = dir.write("bad.yaml", c.yaml);
    RunResult r = runCommand(switchyardBin(), {"serve", "--config", path, "--port", "0"}, {},
                             std::nullopt, milliseconds(5000));
    EXPECT_FALSE(r.timed_out) << "an invalid config must not start a server:\n" << c.yaml;
    EXPECT_TRUE(r.status.exited);
    EXPECT_EQ(r.status.code, 2) << c.yaml << "\nstderr: " << r.err;
    EXPECT_NE(r.err.find(c.line), std::string::npos) << "stderr: " << r.err << "\n" << c.yaml;
    EXPECT_NE(r.err.find(c.key), std::string::npos) << "stderr: " << r.err;
    EXPECT_EQ(r.out.find("listening"), std::string::npos) << r.out;
  }

  RunResult missing =
      runCommand(switchyardBin(), {"serve", "--config", dir.path() + "/absent.yaml", "--port", "0"},
                 {}, std::nullopt, milliseconds(5000));
  EXPECT_EQ(missing.status.code, 2) << missing.err;
  EXPECT_NE(missing.err.find("absent.yaml"), std::string::npos) << missing.err;
}

TEST_F(GatewayE2E, UnsetEnvironmentVariableInConfigIsAnError) {
  TempDir dir;
  std::string path = dir.write(
      "env.yaml", "providers:\n  up:\n    type: openai\n    base_url: \"" + fake_.baseUrl() +
                      "\"\n    api_key: ${SY_E2E_SURELY_UNSET_VAR}\nmodels:\n  - {name: m1, "
                      "provider: up}\n");
  RunResult r = runCommand(switchyardBin(), {"serve", "--config", path, "--port", "0"}, {},
                           std::nullopt, milliseconds(5000));
  EXPECT_EQ(r.status.code, 2) << r.err;
  EXPECT_NE(r.err.find("SY_E2E_SURELY_UNSET_VAR"), std::string::npos) << r.err;
}

// --- broken and slow HTTP clients ----------------------------------------------------------

TEST_F(GatewayE2E, MalformedHttpIsRejectedWithoutHtml) {
  for (const std::string& junk :
       {std::string("BLAH\r\n\r\n"), std::string("GET / HTTP/9.9\r\n\r\n"),
        std::string("POST /v1/chat/completions HTTP/1.1\r\nContent-Length: banana\r\n\r\n"),
        std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11)}) {
    RawConnection c(gw_->port());
    ASSERT_TRUE(c.connected());
    c.send(junk);
    std::string resp = c.readUntilClose(milliseconds(3000));
    int status = statusOf(resp);
    EXPECT_TRUE(status == 0 || (status >= 400 && status < 500)) << resp;
    EXPECT_EQ(resp.find("<html"), std::string::npos) << resp;
    EXPECT_TRUE(c.closedByPeer()) << "the connection stayed open after garbage";
  }
  EXPECT_EQ(httpGet(url("/healthz")).status, 200);
}

TEST_F(GatewayE2E, OversizedHeadersAreRejected) {
  RawConnection c(gw_->port());
  ASSERT_TRUE(c.connected());
  std::string huge(32 * 1024, 'h');
  c.send("GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Huge: " + huge + "\r\n\r\n");
  std::string resp = c.readResponse(milliseconds(3000));
  int status = statusOf(resp);
  EXPECT_TRUE(status == 431 || status == 413) << resp.substr(0, 300);
  EXPECT_EQ(httpGet(url("/healthz")).status, 200);
}

TEST_F(GatewayE2E, SlowClientIsCutOffAfterTheReadTimeout) {
  GatewayConfig cfg;
  cfg.read_timeout_s = 1;
  ASSERT_NO_FATAL_FAILURE(startGateway(cfg));
  RawConnection slow(gw_->port());
  ASSERT_TRUE(slow.connected());
  auto start = Clock::now();
  ASSERT_TRUE(slow.send("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"));
  // Others are served while it dawdles.
  EXPECT_EQ(httpGet(url("/healthz")).status, 200);
  slow.readUntilClose(milliseconds(4000));
  EXPECT_TRUE(slow.closedByPeer()) << "a half-sent request held its connection > 4 s";
  EXPECT_LT(secondsSince(start), 3.0) << "read_timeout_s is 1";
  int status = statusOf(slow.received());
  EXPECT_TRUE(status == 0 || status == 408) << slow.received();
}

TEST_F(GatewayE2E, SlowlyTrickledBodyWithinTheReadTimeoutIsServed) {
  GatewayConfig cfg;
  cfg.read_timeout_s = 3;
  ASSERT_NO_FATAL_FAILURE(startGateway(cfg));
  std::string body = userChat("trickled").dump();
  RawConnection c(gw_->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " +
                     std::string(kClientKey) +
                     "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n"));
  for (size_t i = 0; i < body.size(); i += body.size() / 4 + 1) {
    std::this_thread::sleep_for(milliseconds(100));
    ASSERT_TRUE(c.send(body.substr(i, body.size() / 4 + 1)));
  }
  std::string resp = c.readResponse(milliseconds(3000));
  EXPECT_EQ(statusOf(resp), 200) << resp;
  EXPECT_NE(resp.find("echo: trickled"), std::string::npos) << resp;
}

}  // namespace
}  // namespace sytest
