// switchyard.yaml keys of the server's limits, server.tls and metrics: defaults, ranges and
// the errors that name key and line. (TLS files themselves are checked end to end, in
// tests/e2e/tls_e2e_test.cpp, with certificates made at test time.)
#include <gtest/gtest.h>

#include <string>

#include "gateway/config.h"

namespace gateway {
namespace {

const char* const kAdminKey = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

api::StatusOr<std::shared_ptr<const Config>> parse(const std::string& text) {
  return parseConfig(text, "t.yaml", [](const std::string& path) -> api::StatusOr<std::string> {
    return api::Status(api::ErrorCode::kIo, "cannot read " + path);
  });
}

std::string errorOf(const std::string& text) {
  auto r = parse(text);
  return r.ok() ? "<parsed>" : r.status().message();
}

TEST(ServerConfig, DefaultsBoundLargeBodiesAndBufferedBytes) {
  auto c = parse("");
  ASSERT_TRUE(c.ok()) << c.status().message();
  const ServerConfig& s = (*c)->server;
  EXPECT_EQ(s.inline_body_bytes, 64 << 10);
  EXPECT_GE(s.worker_threads, 1);
  EXPECT_GE(s.worker_queue, 1);
  EXPECT_EQ(s.max_buffered_bytes, int64_t{256} << 20);
  EXPECT_FALSE(s.tls.enabled);
  EXPECT_FALSE((*c)->metrics.require_admin_key);
  EXPECT_EQ((*c)->metrics.port, -1);
}

TEST(ServerConfig, ReadsPoolAndBufferLimits) {
  auto c = parse(
      "server: {inline_body_bytes: 1000, worker_threads: 3, worker_queue: 7, "
      "max_buffered_bytes: 2097152}\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ((*c)->server.inline_body_bytes, 1000);
  EXPECT_EQ((*c)->server.worker_threads, 3);
  EXPECT_EQ((*c)->server.worker_queue, 7);
  EXPECT_EQ((*c)->server.max_buffered_bytes, 2097152);
}

TEST(ServerConfig, RejectsOutOfRangeLimits) {
  EXPECT_NE(errorOf("server: {worker_threads: 0}\n").find("t.yaml:1: server.worker_threads"),
            std::string::npos);
  EXPECT_NE(errorOf("server: {max_buffered_bytes: 10}\n").find("server.max_buffered_bytes"),
            std::string::npos);
}

TEST(ServerConfig, TlsNeedsCertAndKeyFiles) {
  std::string err = errorOf("server:\n  tls: {key_file: k.pem}\n");
  EXPECT_NE(err.find("server.tls.cert_file"), std::string::npos) << err;
  err = errorOf("server:\n  tls: {cert_file: c.pem, key_file: k.pem, min_version: \"1.0\"}\n");
  EXPECT_NE(err.find("t.yaml:2: server.tls.min_version"), std::string::npos) << err;
  err = errorOf("server:\n  tls: {cert_file: c.pem, key_file: k.pem, ciphers: all}\n");
  EXPECT_NE(err.find("server.tls.ciphers"), std::string::npos) << err;
}

TEST(ServerConfig, UnreadableTlsFileNamesTheKeyAndLine) {
  std::string err = errorOf(
      "server:\n"
      "  tls:\n"
      "    cert_file: missing.pem\n"
      "    key_file: k.pem\n");
  EXPECT_NE(err.find("t.yaml:3: server.tls.cert_file"), std::string::npos) << err;
  EXPECT_NE(err.find("missing.pem"), std::string::npos) << err;
}

TEST(MetricsConfig, ReadsTheSeparateListener) {
  auto c = parse("metrics: {listen: 127.0.0.1, port: 9091}\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ((*c)->metrics.listen, "127.0.0.1");
  EXPECT_EQ((*c)->metrics.port, 9091);
}

TEST(MetricsConfig, RequireAdminKeyNeedsAnAdminKey) {
  std::string err = errorOf("metrics: {require_admin_key: true}\n");
  EXPECT_NE(err.find("metrics.require_admin_key"), std::string::npos) << err;
  EXPECT_NE(err.find("auth.admin_keys"), std::string::npos) << err;
  auto c = parse(std::string("auth:\n  admin_keys: [{id: ops, sha256: ") + kAdminKey +
                 "}]\nmetrics: {require_admin_key: true}\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_TRUE((*c)->metrics.require_admin_key);
}

TEST(MetricsConfig, ListenWithoutPortOrNotAnAddressIsAnError) {
  EXPECT_NE(errorOf("metrics: {listen: 127.0.0.1}\n").find("metrics.listen"), std::string::npos);
  EXPECT_NE(errorOf("metrics: {listen: localhost, port: 1}\n").find("metrics.listen"),
            std::string::npos);
  EXPECT_NE(errorOf("metrics: {port: 70000}\n").find("metrics.port"), std::string::npos);
}

}  // namespace
}  // namespace gateway
