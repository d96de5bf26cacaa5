#include "gateway/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>

namespace gateway {
namespace {

namespace ssl = boost::asio::ssl;

// TLS 1.2 suites: forward secrecy (ECDHE) and AEAD only. TLS 1.3 suites are all AEAD and
// OpenSSL's defaults are kept.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

api::Status tlsError(std::string_view key, const std::string& file, std::string_view problem,
                     const boost::system::error_code& ec = {}) {
  std::string msg = "server.tls." + std::string(key) + ": '" + file + "': " + std::string(problem);
  if (ec) msg += " (" + ec.message() + ")";
  return api::Status(api::ErrorCode::kConfig, msg);
}

api::StatusOr<std::string> readTlsFile(const TlsConfig& tls, std::string_view key,
                                       const std::string& file) {
  auto text = tls.read_file ? tls.read_file(file)
                            : api::StatusOr<std::string>(api::Status(
                                  api::ErrorCode::kIo, "no file reader configured"));
  if (!text.ok()) {
    return api::Status(api::ErrorCode::kConfig,
                       "server.tls." + std::string(key) + ": " + text.status().message());
  }
  if (text->find("-----BEGIN ") == std::string::npos) {
    return tlsError(key, file, "not a PEM file (no -----BEGIN line)");
  }
  return text;
}

api::Status loadFiles(const TlsConfig& tls, ssl::context& ctx) {
  boost::system::error_code ec;
  auto cert = readTlsFile(tls, "cert_file", tls.cert_file);
  if (!cert.ok()) return cert.status();
  ctx.use_certificate_chain(boost::asio::buffer(*cert), ec);
  if (ec) return tlsError("cert_file", tls.cert_file, "not a valid PEM certificate chain", ec);
  auto key = readTlsFile(tls, "key_file", tls.key_file);
  if (!key.ok()) return key.status();
  ctx.use_private_key(boost::asio::buffer(*key), ssl::context::pem, ec);
  if (ec) return tlsError("key_file", tls.key_file, "not a valid PEM private key", ec);
  if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
    ERR_clear_error();
    return tlsError("key_file", tls.key_file, "does not match the certificate of cert_file");
  }
  if (tls.client_ca_file.empty()) return api::Status();
  auto ca = readTlsFile(tls, "client_ca_file", tls.client_ca_file);
  if (!ca.ok()) return ca.status();
  ctx.add_certificate_authority(boost::asio::buffer(*ca), ec);
  if (ec) return tlsError("client_ca_file", tls.client_ca_file, "not a valid PEM CA bundle", ec);
  ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert, ec);
  if (ec) return tlsError("client_ca_file", tls.client_ca_file, "cannot require client certs", ec);
  return api::Status();
}

}  // namespace

api::StatusOr<std::shared_ptr<TlsContext>> makeTlsContext(const TlsConfig& tls) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  int min = tls.min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION;
  if (SSL_CTX_set_min_proto_version(native, min) != 1 ||
      SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1) {
    ERR_clear_error();
    return api::Status(api::ErrorCode::kConfig, "server.tls: OpenSSL refused the protocol "
                                                "settings (min_version " + tls.min_version + ")");
  }
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression |
                   ssl::context::single_dh_use);
  // Renegotiation is an old source of CPU exhaustion; nothing modern needs it.
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (api::Status st = loadFiles(tls, *ctx); !st.ok()) {
    ERR_clear_error();
    return st;
  }
  return ctx;
}

api::Status TlsContextHolder::load() {
  auto ctx = makeTlsContext(tls_);
  if (!ctx.ok()) return ctx.status();
  std::lock_guard<std::mutex> lock(mu_);
  ctx_ = std::move(ctx).value();
  return api::Status();
}

std::shared_ptr<TlsContext> TlsContextHolder::current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ctx_;
}

}  // namespace gateway
