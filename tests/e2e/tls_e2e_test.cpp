// HTTPS through the real binary (server.tls): a test CA and certificates made with the openssl
// CLI for each test, libcurl as the client. Chat (whole and streamed) over TLS, a plain-HTTP
// client on the TLS port, min_version, mutual TLS, certificates re-read on SIGHUP (a bad new
// file keeps the old ones), and config errors that name the key and the file.
#include <curl/curl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "tests/e2e/e2e_fixture.h"

namespace sytest {
namespace {

using std::chrono::milliseconds;

// `name` on $PATH, or "" when it is not there.
std::string findProgram(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Certificates for one test, made in a temp dir with the openssl CLI (EC P-256 keys).
class TestPki {
 public:
  TestPki() : openssl_(findProgram("openssl")) {}
  bool available() const { return !openssl_.empty(); }
  std::string path(const std::string& name) const { return dir_.file(name); }

  // <name>.pem and <name>.key: a self-signed CA.
  void makeCa(const std::string& name) {
    run({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", path(name + ".key"), "-out", path(name + ".pem"), "-days", "2", "-subj",
         "/CN=" + name});
  }
  // <name>.pem and <name>.key: a certificate signed by the CA `ca`, valid for 127.0.0.1.
  void makeLeaf(const std::string& name, const std::string& ca) {
    run({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
         path(name + ".key"), "-out", path(name + ".csr"), "-subj", "/CN=" + name});
    dir_.write("san.cnf", "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
    run({"x509", "-req", "-in", path(name + ".csr"), "-CA", path(ca + ".pem"), "-CAkey",
         path(ca + ".key"), "-set_serial", std::to_string(++serial_), "-out",
         path(name + ".pem"), "-days", "2", "-extfile", path("san.cnf")});
  }

 private:
  void run(const std::vector<std::string>& args) {
    RunResult r = runCommand(openssl_, args);
    ASSERT_TRUE(r.status.exited && r.status.code == 0) << "openssl failed: " << r.err;
  }

  std::string openssl_;
  TempDir dir_;
  int serial_ = 1000;
};

struct TlsCall {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::string body;
  std::string error;
};

struct TlsOptions {
  std::string ca;           // CA file the client trusts
  std::string cert, key;    // client certificate (mutual TLS)
  bool max_tls12 = false;   // offer TLS 1.2 at most
  std::string body;         // POST when set
};

size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

TlsCall httpsCall(const std::string& url, const TlsOptions& o) {
  TlsCall call;
  CURL* curl = curl_easy_init();
  char error[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = curl_slist_append(nullptr, "content-type: application/json");
  headers = curl_slist_append(headers, (std::string("authorization: Bearer ") + kClientKey).c_str());
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_CAINFO, o.ca.c_str());
  curl_easy_setopt(curl, CURLOPT_CAPATH, nullptr);
  if (!o.cert.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLCERT, o.cert.c_str());
    curl_easy_setopt(curl, CURLOPT_SSLKEY, o.key.c_str());
  }
  if (o.max_tls12) {
    curl_easy_setopt(curl, CURLOPT_SSLVERSION,
                     static_cast<long>(CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2));
  }
  if (!o.body.empty()) curl_easy_setopt(curl, CURLOPT_POSTFIELDS, o.body.c_str());
  curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &call.body);
  call.code = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &call.status);
  call.error = error;
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return call;
}

class TlsE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!pki_.available()) GTEST_SKIP() << "no openssl CLI on PATH";
    key_hash_ = hashKey(kClientKey);
    ASSERT_EQ(key_hash_.size(), 64u);
    ASSERT_NO_FATAL_FAILURE(pki_.makeCa("ca"));
    ASSERT_NO_FATAL_FAILURE(pki_.makeLeaf("server", "ca"));
  }
  void TearDown() override {
    if (HasFailure() && gw_) std::cerr << "--- switchyard stderr ---\n" << gw_->stderrText();
  }

  // The e2e config with `tls_yaml` (the body of server.tls) inserted.
  std::string configYaml(const std::string& tls_yaml) const {
    GatewayConfig cfg;
    cfg.upstream_url = fake_.baseUrl();
    std::string yaml = cfg.yaml(key_hash_);
    yaml.replace(yaml.find("server:\n"), 8, "server:\n  tls: {" + tls_yaml + "}\n");
    return yaml;
  }
  std::string serverFiles() const {
    return "cert_file: " + pki_.path("server.pem") + ", key_file: " + pki_.path("server.key");
  }
  void start(const std::string& tls_yaml) {
    std::string error;
    gw_ = SwitchyardServer::start(configYaml(tls_yaml), {}, &error);
    ASSERT_TRUE(gw_) << error;
  }
  std::string url(const std::string& path) const {
    return "https://127.0.0.1:" + std::to_string(gw_->port()) + path;
  }
  double metric(const std::string& ca, const std::string& name,
                const std::map<std::string, std::string>& labels) {
    TlsCall m = httpsCall(url("/metrics"), {.ca = ca});
    return metricValue(m.body, name, labels).value_or(0);
  }

  TestPki pki_;
  FakeOpenAI fake_;
  std::string key_hash_;
  std::unique_ptr<SwitchyardServer> gw_;
};

TEST_F(TlsE2E, ServesChatWholeAndStreamedOverHttps) {
  ASSERT_NO_FATAL_FAILURE(start(serverFiles()));
  TlsCall whole = httpsCall(url("/v1/chat/completions"),
                            {.ca = pki_.path("ca.pem"), .body = userChat("over tls").dump()});
  ASSERT_EQ(whole.code, CURLE_OK) << whole.error;
  EXPECT_EQ(whole.status, 200) << whole.body;
  EXPECT_EQ(Json::parse(whole.body)["choices"][0]["message"]["content"], "echo: over tls");

  TlsCall streamed =
      httpsCall(url("/v1/chat/completions"),
                {.ca = pki_.path("ca.pem"), .body = streamedChat("streamed tls", true).dump()});
  ASSERT_EQ(streamed.code, CURLE_OK) << streamed.error;
  EXPECT_EQ(streamed.status, 200);
  std::vector<std::string> events = sseEvents(streamed.body);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back(), "[DONE]");
}

TEST_F(TlsE2E, PlainHttpOnTheTlsPortGetsACleanClose) {
  ASSERT_NO_FATAL_FAILURE(start(serverFiles()));
  RawConnection plain(gw_->port());
  ASSERT_TRUE(plain.connected());
  plain.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string got = plain.readUntilClose(milliseconds(5000));
  EXPECT_TRUE(plain.closedByPeer()) << "the server neither answered nor closed";
  EXPECT_EQ(got.find("200 OK"), std::string::npos) << got;
  // Still serving TLS clients, and the refused handshake is counted.
  EXPECT_EQ(httpsCall(url("/healthz"), {.ca = pki_.path("ca.pem")}).status, 200);
  EXPECT_GE(metric(pki_.path("ca.pem"), "switchyard_http_rejected_total",
                   {{"reason", "tls_handshake"}}),
            1);
}

TEST_F(TlsE2E, MinVersion13RefusesTls12Clients) {
  ASSERT_NO_FATAL_FAILURE(start(serverFiles() + ", min_version: \"1.3\""));
  TlsCall old = httpsCall(url("/healthz"), {.ca = pki_.path("ca.pem"), .max_tls12 = true});
  EXPECT_NE(old.code, CURLE_OK);
  EXPECT_EQ(old.status, 0);
  EXPECT_EQ(httpsCall(url("/healthz"), {.ca = pki_.path("ca.pem")}).status, 200);
}

TEST_F(TlsE2E, MutualTlsNeedsAClientCertificateSignedByTheClientCa) {
  ASSERT_NO_FATAL_FAILURE(pki_.makeLeaf("client", "ca"));
  ASSERT_NO_FATAL_FAILURE(pki_.makeCa("rogue-ca"));
  ASSERT_NO_FATAL_FAILURE(pki_.makeLeaf("rogue-client", "rogue-ca"));
  ASSERT_NO_FATAL_FAILURE(start(serverFiles() + ", client_ca_file: " + pki_.path("ca.pem")));
  const std::string ca = pki_.path("ca.pem");

  TlsCall none = httpsCall(url("/healthz"), {.ca = ca});
  EXPECT_EQ(none.status, 0) << "served without a client certificate";
  TlsCall rogue = httpsCall(url("/healthz"), {.ca = ca,
                                              .cert = pki_.path("rogue-client.pem"),
                                              .key = pki_.path("rogue-client.key")});
  EXPECT_EQ(rogue.status, 0) << "served a client certificate of another CA";
  TlsOptions good{.ca = ca, .cert = pki_.path("client.pem"), .key = pki_.path("client.key")};
  TlsCall ok = httpsCall(url("/healthz"), good);
  EXPECT_EQ(ok.code, CURLE_OK) << ok.error;
  EXPECT_EQ(ok.status, 200);
  good.body = userChat("mutual").dump();
  EXPECT_EQ(httpsCall(url("/v1/chat/completions"), good).status, 200);
}

TEST_F(TlsE2E, SighupReloadsCertificatesAndKeepsTheOldOnesWhenTheNewAreBad) {
  ASSERT_NO_FATAL_FAILURE(pki_.makeCa("ca2"));
  ASSERT_NO_FATAL_FAILURE(pki_.makeLeaf("server2", "ca2"));
  TempDir live;  // the files the config names, replaced in place
  std::string cert = live.write("live.pem", readFile(pki_.path("server.pem")));
  std::string key = live.write("live.key", readFile(pki_.path("server.key")));
  ASSERT_NO_FATAL_FAILURE(start("cert_file: " + cert + ", key_file: " + key));
  const std::string ca2 = pki_.path("ca2.pem");
  std::string both = live.write("both.pem", readFile(pki_.path("ca.pem")) + readFile(ca2));
  EXPECT_EQ(httpsCall(url("/healthz"), {.ca = ca2}).status, 0) << "ca2 trusted before reload";

  live.write("live.pem", readFile(pki_.path("server2.pem")));
  live.write("live.key", readFile(pki_.path("server2.key")));
  ASSERT_TRUE(gw_->process().signal(SIGHUP));
  ASSERT_TRUE(waitUntil(
      [&] { return metric(both, "switchyard_tls_reloads_total", {{"result", "ok"}}) >= 1; },
      milliseconds(5000)));
  EXPECT_EQ(httpsCall(url("/healthz"), {.ca = ca2}).status, 200);

  live.write("live.pem", "-----BEGIN CERTIFICATE-----\nnot a certificate\n");
  ASSERT_TRUE(gw_->process().signal(SIGHUP));
  ASSERT_TRUE(waitUntil(
      [&] { return metric(both, "switchyard_tls_reloads_total", {{"result", "error"}}) >= 1; },
      milliseconds(5000)));
  EXPECT_EQ(httpsCall(url("/healthz"), {.ca = ca2}).status, 200) << "the old context was lost";
  EXPECT_TRUE(gw_->process().running());
}

TEST_F(TlsE2E, ConfigErrorsNameTheKeyAndTheFile) {
  ASSERT_NO_FATAL_FAILURE(pki_.makeCa("other"));
  TempDir dir;
  auto check = [&](const std::string& tls_yaml) {
    std::string path = dir.write("switchyard.yaml", configYaml(tls_yaml));
    RunResult r = runCommand(switchyardBin(), {"check-config", "--config", path},
                             {{"UP_KEY", kUpstreamKey}});
    EXPECT_EQ(r.status.code, 2) << r.out << r.err;
    return r.err;
  };
  std::string missing = pki_.path("missing.pem");
  std::string err = check("cert_file: " + missing + ", key_file: " + pki_.path("server.key"));
  EXPECT_NE(err.find("server.tls.cert_file"), std::string::npos) << err;
  EXPECT_NE(err.find(missing), std::string::npos) << err;

  err = check("cert_file: " + pki_.path("server.key") + ", key_file: " + pki_.path("server.key"));
  EXPECT_NE(err.find("server.tls.cert_file"), std::string::npos) << err;

  err = check("cert_file: " + pki_.path("server.pem") + ", key_file: " + pki_.path("other.key"));
  EXPECT_NE(err.find("server.tls.key_file"), std::string::npos) << err;
  EXPECT_NE(err.find("other.key"), std::string::npos) << err;

  err = check(serverFiles() + ", min_version: \"1.1\"");
  EXPECT_NE(err.find("server.tls.min_version"), std::string::npos) << err;
}

}  // namespace
}  // namespace sytest
