#include "tests/support/loopback_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>

namespace sytest {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct ConnectionState {
  int id = 0;
  int fd = -1;                    // guarded by LoopbackServer::mu_; -1 once closed
  std::atomic<bool> gone{false};  // closed, by either side
  ConnectionInfo info;            // guarded by LoopbackServer::mu_
};

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// The smallest SyncReadStream over a connected socket, so that Beast's parser reads the
// requests while answers are written with plain send() (and closes stay under our control).
class FdReadStream {
 public:
  explicit FdReadStream(int fd) : fd_(fd) {}

  template <class MutableBuffers>
  size_t read_some(const MutableBuffers& buffers, beast::error_code& ec) {
    ec = {};
    for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers);
         ++it) {
      asio::mutable_buffer b = *it;
      if (b.size() == 0) continue;
      for (;;) {
        ssize_t n = ::recv(fd_, b.data(), b.size(), 0);
        if (n > 0) return static_cast<size_t>(n);
        if (n == 0) {
          ec = asio::error::eof;
        } else if (errno == EINTR) {
          continue;
        } else {
          ec = beast::error_code(errno, boost::system::system_category());
        }
        return 0;
      }
    }
    return 0;
  }

  template <class MutableBuffers>
  size_t read_some(const MutableBuffers& buffers) {
    beast::error_code ec;
    size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

 private:
  int fd_;
};

bool sendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool isPeerCloseError(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == http::error::partial_message ||
         ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe;
}

}  // namespace

std::string Request::header(std::string_view name) const {
  auto it = headers.find(lower(name));
  return it == headers.end() ? std::string() : it->second;
}

std::string Request::path() const {
  auto q = target.find('?');
  return q == std::string::npos ? target : target.substr(0, q);
}

bool waitUntil(const std::function<bool()>& pred, Millis timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(Millis(5));
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// ResponseWriter

std::string ResponseWriter::head(int status, const Headers& headers, std::string_view content_type,
                                 std::string_view framing) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " ";
  out += std::string(http::obsolete_reason(static_cast<http::status>(status)));
  out += "\r\n";
  if (!content_type.empty()) {
    out += "Content-Type: ";
    out += content_type;
    out += "\r\n";
  }
  for (const auto& [name, value] : headers) out += name + ": " + value + "\r\n";
  out += framing;
  if (close_after_) out += "Connection: close\r\n";
  out += "\r\n";
  return out;
}

bool ResponseWriter::writeAll(std::string_view bytes) {
  if (conn_->gone.load()) return false;
  int fd;
  {
    std::lock_guard<std::mutex> lock(server_.mu_);
    fd = conn_->fd;
  }
  if (fd < 0) return false;
  if (!sendAll(fd, bytes)) {
    server_.markClosed(*conn_, /*by_peer=*/!server_.stopping());
    return false;
  }
  return true;
}

bool ResponseWriter::send(int status, std::string_view body, const Headers& headers,
                          std::string_view content_type) {
  std::string out = head(status, headers, content_type,
                         "Content-Length: " + std::to_string(body.size()) + "\r\n");
  out += body;
  head_sent_ = true;
  if (!writeAll(out)) return false;
  complete_ = !raw_;
  return true;
}

bool ResponseWriter::sendHead(int status, const Headers& headers, std::string_view content_type) {
  head_sent_ = true;
  return writeAll(head(status, headers, content_type, "Transfer-Encoding: chunked\r\n"));
}

bool ResponseWriter::chunk(std::string_view data) {
  if (data.empty()) return !conn_->gone.load();
  char size[32];
  std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  std::string out = size;
  out += data;
  out += "\r\n";
  return writeAll(out);
}

bool ResponseWriter::end() {
  if (!writeAll("0\r\n\r\n")) return false;
  complete_ = !raw_;
  return true;
}

bool ResponseWriter::sendRaw(std::string_view bytes) {
  raw_ = true;
  complete_ = false;
  return writeAll(bytes);
}

bool ResponseWriter::pause(Millis d) {
  if (conn_->gone.load()) return false;
  if (server_.waitPeerOrStop(*conn_, d)) return false;
  return !server_.stopping() && !conn_->gone.load();
}

bool ResponseWriter::hangUntilPeerGone(Millis max) { return server_.waitPeerOrStop(*conn_, max); }

void ResponseWriter::close(bool reset) {
  std::lock_guard<std::mutex> lock(server_.mu_);
  if (conn_->fd < 0) return;
  if (reset) {
    linger lg{1, 0};
    ::setsockopt(conn_->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  } else {
    ::shutdown(conn_->fd, SHUT_WR);
  }
  ::close(conn_->fd);
  conn_->fd = -1;
  conn_->gone = true;
  if (!conn_->info.closed) {
    conn_->info.closed = true;
    conn_->info.closed_at = std::chrono::steady_clock::now();
  }
  server_.cv_.notify_all();
}

bool ResponseWriter::peerGone() const {
  return conn_->gone.load() || server_.waitPeerOrStop(*conn_, Millis(0));
}

// ---------------------------------------------------------------------------------------
// LoopbackServer

LoopbackServer::LoopbackServer(Handler handler) : handler_(std::move(handler)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error("LoopbackServer: socket() failed");
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(listen_fd_, 128) != 0) {
    ::close(listen_fd_);
    throw std::runtime_error(std::string("LoopbackServer: bind/listen: ") + std::strerror(errno));
  }
  socklen_t len = sizeof(addr);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  acceptor_ = std::thread([this] { acceptLoop(); });
}

LoopbackServer::~LoopbackServer() { stop(); }

std::string LoopbackServer::url() const { return "http://127.0.0.1:" + std::to_string(port_); }

void LoopbackServer::stop() {
  if (stopping_.exchange(true)) return;
  uint64_t one = 1;
  // Never read back, so it stays readable: every poll() on it wakes from now on.
  [[maybe_unused]] ssize_t n = ::write(stop_fd_, &one, sizeof(one));
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& c : connections_) {
      if (c->fd >= 0) ::shutdown(c->fd, SHUT_RDWR);  // unblocks reads and writes
    }
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
  ::close(listen_fd_);
  ::close(stop_fd_);
  cv_.notify_all();
}

void LoopbackServer::setLimits(size_t max_header_bytes, size_t max_body_bytes) {
  max_header_bytes_ = max_header_bytes;
  max_body_bytes_ = max_body_bytes;
}

void LoopbackServer::acceptLoop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    int r = ::poll(fds, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (stopping_.load() || (fds[1].revents & POLLIN)) return;
    if (!(fds[0].revents & POLLIN)) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto conn = std::make_shared<ConnectionState>();
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_.load()) {
      ::close(fd);
      return;
    }
    conn->fd = fd;
    conn->id = static_cast<int>(connections_.size()) + 1;
    conn->info.id = conn->id;
    conn->info.opened = std::chrono::steady_clock::now();
    connections_.push_back(conn);
    threads_.emplace_back([this, conn] { serveConnection(conn); });
  }
}

bool LoopbackServer::markClosed(ConnectionState& conn, bool by_peer) {
  std::lock_guard<std::mutex> lock(mu_);
  conn.gone = true;
  if (!conn.info.closed) {
    conn.info.closed = true;
    conn.info.closed_by_peer = by_peer;
    conn.info.closed_at = std::chrono::steady_clock::now();
  }
  cv_.notify_all();
  return conn.info.closed_by_peer;
}

bool LoopbackServer::waitPeerOrStop(ConnectionState& conn, Millis max, bool from_outside) {
  int fd;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (conn.fd < 0) return conn.info.closed_by_peer;
    fd = from_outside ? ::fcntl(conn.fd, F_DUPFD_CLOEXEC, 0) : conn.fd;
    if (fd < 0) return false;
  }
  auto deadline = std::chrono::steady_clock::now() + max;
  bool peer_gone = false;
  for (;;) {
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    // POLLRDHUP only: data the client sends (a pipelined request) must not wake us; a FIN
    // sets POLLRDHUP and a reset sets POLLERR/POLLHUP, which poll always reports.
    pollfd fds[2] = {{fd, POLLRDHUP, 0}, {stop_fd_, POLLIN, 0}};
    int r = ::poll(fds, 2, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (r < 0 && errno == EINTR) continue;
    if (fds[1].revents & POLLIN) break;
    if (fds[0].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
      peer_gone = markClosed(conn, /*by_peer=*/true);
      break;
    }
    if (r < 0 || (fds[0].revents & POLLNVAL) || left.count() <= 0) {
      std::lock_guard<std::mutex> lock(mu_);
      peer_gone = conn.info.closed && conn.info.closed_by_peer;
      break;
    }
  }
  if (from_outside) ::close(fd);
  return peer_gone;
}

void LoopbackServer::serveConnection(std::shared_ptr<ConnectionState> conn) {
  // Only this thread and ResponseWriter::close() (called from this thread's handler) close
  // the descriptor, so reading it unlocked here is safe.
  int fd;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fd = conn->fd;
  }
  FdReadStream socket(fd);
  beast::flat_buffer buffer;
  beast::error_code ec;

  while (!stopping_.load() && !conn->gone.load()) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(max_header_bytes_.load()));
    parser.body_limit(max_body_bytes_.load());
    http::read_header(socket, buffer, parser, ec);
    if (!ec && parser.get()[http::field::expect] == "100-continue") {
      if (!sendAll(fd, "HTTP/1.1 100 Continue\r\n\r\n")) ec = asio::error::broken_pipe;
    }
    if (!ec && !parser.is_done()) http::read(socket, buffer, parser, ec);
    if (ec) {
      if (!stopping_.load() && isPeerCloseError(ec)) {
        markClosed(*conn, /*by_peer=*/true);
      } else if (!stopping_.load() && !conn->gone.load()) {
        sendAll(fd, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      }
      break;
    }
    auto& msg = parser.get();
    Request req;
    req.connection_id = conn->id;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    for (const auto& field : msg) {
      std::string name = lower(field.name_string());
      auto [it, inserted] = req.headers.emplace(name, std::string(field.value()));
      if (!inserted) it->second += ", " + std::string(field.value());
    }
    req.body = std::move(msg.body());
    req.received = std::chrono::steady_clock::now();
    bool keep_alive = msg.keep_alive();
    {
      std::lock_guard<std::mutex> lock(mu_);
      req.index = static_cast<int>(requests_.size());
      requests_.push_back(req);
      ++conn->info.requests;
      cv_.notify_all();
    }

    ResponseWriter writer(*this, conn, req);
    if (!keep_alive) writer.closeAfterResponse();
    try {
      handler_(req, writer);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "LoopbackServer: handler threw: %s\n", e.what());
      break;
    } catch (...) {
      std::fprintf(stderr, "LoopbackServer: handler threw\n");
      break;
    }
    if (!writer.complete() || writer.close_after_) break;
  }

  std::lock_guard<std::mutex> lock(mu_);
  if (conn->fd >= 0) {
    ::shutdown(conn->fd, SHUT_WR);
    ::close(conn->fd);
    conn->fd = -1;
  }
  conn->gone = true;
  if (!conn->info.closed) {
    conn->info.closed = true;
    conn->info.closed_at = std::chrono::steady_clock::now();
  }
  cv_.notify_all();
}

std::vector<Request> LoopbackServer::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

int LoopbackServer::requestCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(requests_.size());
}

std::optional<Request> LoopbackServer::lastRequest() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (requests_.empty()) return std::nullopt;
  return requests_.back();
}

bool LoopbackServer::waitForRequests(int n, Millis timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return static_cast<int>(requests_.size()) >= n; });
}

int LoopbackServer::connectionCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(connections_.size());
}

std::optional<ConnectionInfo> LoopbackServer::connection(int id) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (id < 1 || id > static_cast<int>(connections_.size())) return std::nullopt;
  return connections_[id - 1]->info;
}

bool LoopbackServer::waitForPeerClose(int id, Millis timeout) {
  std::shared_ptr<ConnectionState> conn;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (id < 1 || id > static_cast<int>(connections_.size())) return false;
    conn = connections_[id - 1];
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (conn->info.closed) return conn->info.closed_by_peer;
    }
    // A connection whose handler is busy writing notices a close only on its next write or
    // pause; look at the socket from here too.
    if (waitPeerOrStop(*conn, Millis(20), /*from_outside=*/true)) return true;
    if (std::chrono::steady_clock::now() >= deadline || stopping_.load()) {
      std::lock_guard<std::mutex> lock(mu_);
      return conn->info.closed && conn->info.closed_by_peer;
    }
  }
}

}  // namespace sytest
