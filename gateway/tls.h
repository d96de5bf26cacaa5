// TLS for the main listener (`server.tls`): the OpenSSL context the sessions handshake with,
// and the holder that swaps it when the certificates are re-read (SIGHUP).
//
// Only TLS 1.2 and 1.3 are offered; TLS 1.2 is limited to ECDHE key exchange with AEAD
// ciphers (AES-GCM, ChaCha20-Poly1305). With client_ca_file set, a client that presents no
// certificate signed by that CA fails the handshake (mutual TLS).
#pragma once

#include <memory>
#include <mutex>

#include "api/status.h"
#include "gateway/config.h"

namespace boost::asio::ssl {
class context;
}

namespace gateway {

using TlsContext = boost::asio::ssl::context;

// Reads the files of `tls` and builds a server context. Fails with kConfig naming the key and
// the file: "server.tls.cert_file: 'server.pem': not a PEM certificate chain (...)".
api::StatusOr<std::shared_ptr<TlsContext>> makeTlsContext(const TlsConfig& tls);

// The context new connections use. Thread-safe.
class TlsContextHolder {
 public:
  explicit TlsContextHolder(TlsConfig tls) : tls_(std::move(tls)) {}

  // Builds the first context; the server does not start without it.
  api::Status load();
  // Re-reads the files: on success new connections use the new context (connections already
  // open keep theirs); on failure nothing changes and the reason is returned.
  api::Status reload() { return load(); }
  std::shared_ptr<TlsContext> current() const;

 private:
  const TlsConfig tls_;
  mutable std::mutex mu_;
  std::shared_ptr<TlsContext> ctx_;
};

}  // namespace gateway
