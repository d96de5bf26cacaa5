#include "gateway/server.h"

#include <atomic>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "api/openai_json.h"
#include "api/status.h"

namespace gateway {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

std::chrono::milliseconds toMs(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

std::string newRequestId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char kHex[] = "0123456789abcdef";
  std::string id = "req_";
  for (int i = 0; i < 2; ++i) {
    uint64_t v = rng();
    for (int j = 0; j < 12; ++j) {
      id += kHex[v & 15];
      v >>= 4;
    }
  }
  return id;
}

// A client's x-request-id is echoed only when it is short and plain.
bool saneRequestId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
          c == ':')) {
      return false;
    }
  }
  return true;
}

std::string errorBody(api::ErrorCode code, std::string message) {
  return api::serializeError(api::Status(code, std::move(message)));
}

}  // namespace

class Session;

class Server::Impl {
 public:
  Impl(ServerConfig config, Metrics& metrics, RequestHandler handler)
      : config_(std::move(config)),
        metrics_(metrics),
        handler_(std::move(handler)),
        ioc_(config_.threads),
        acceptor_(net::make_strand(ioc_)),
        drain_timer_(acceptor_.get_executor()) {}

  api::StatusOr<int> listen();
  void run();
  void beginShutdown();
  void doAccept();
  void onAccept(beast::error_code ec, tcp::socket socket);
  void checkDrained();

  const ServerConfig config_;
  Metrics& metrics_;
  RequestHandler handler_;
  std::atomic<bool> draining_{false};
  std::atomic<int> in_flight_{0};
  std::atomic<int> connections_{0};
  std::chrono::steady_clock::time_point drain_deadline_;
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  net::steady_timer drain_timer_;
};

// One client connection. Reads requests one at a time, hands each to the handler, writes
// the answer (whole or streamed), and meanwhile watches the socket so that a client that
// goes away cancels the work done for it.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, Server::Impl& server)
      : stream_(std::move(socket)), server_(server) {
    server_.metrics_.connections().Increment();
  }
  ~Session() {
    server_.metrics_.connections().Decrement();
    server_.connections_.fetch_sub(1);
  }

  void start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->doRead(); });
  }

  // Responder operations, always on the strand.
  void reply(int status, std::string body, Headers headers, std::string content_type);
  void startStream(Headers headers);
  void write(std::string data);
  void finish();
  void setGoneHandler(std::function<void()> fn);
  std::atomic<size_t> pending_bytes_{0};

 private:
  class Channel;

  void doRead();
  void onRead(beast::error_code ec, size_t bytes);
  void dispatchRequest();
  void doWatch();
  void onWatch(beast::error_code ec, size_t bytes);
  void onReplyWritten(beast::error_code ec, bool keep_alive);
  void doStreamWrite();
  void onStreamWritten(beast::error_code ec);
  void responseComplete(bool keep_alive);
  void rejectAndClose(int status, api::ErrorCode code, std::string message,
                      const std::string& reason);
  void clientGone();
  void completeIfIdle();
  void close();
  void baseHeaders(http::fields& f);

  beast::tcp_stream stream_;
  Server::Impl& server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool first_request_ = true;
  unsigned http_version_ = 11;
  bool request_keep_alive_ = true;

  // The request being answered.
  bool responding_ = false;
  bool counted_in_flight_ = false;
  std::string request_id_;
  std::shared_ptr<Channel> channel_;
  std::function<void()> gone_handler_;
  bool gone_ = false;

  // Watching for a disconnect while answering.
  bool watching_ = false;
  bool resume_after_watch_ = false;

  // Whole replies.
  std::shared_ptr<http::response<http::string_body>> reply_;

  // Streams.
  std::unique_ptr<http::response<http::empty_body>> stream_head_;
  std::unique_ptr<http::response_serializer<http::empty_body>> stream_serializer_;
  std::deque<std::string> stream_queue_;
  bool stream_started_ = false;
  bool stream_head_written_ = false;
  bool stream_writing_ = false;
  bool stream_finish_requested_ = false;
  bool stream_done_ = false;
};

// The Responder handed to handlers: posts every call onto the session's strand, and ignores
// calls once the answer is complete.
class Session::Channel : public Responder, public std::enable_shared_from_this<Channel> {
 public:
  explicit Channel(std::shared_ptr<Session> session) : session_(std::move(session)) {}

  void reply(int status, std::string body, Headers headers,
             std::string_view content_type) override {
    post([status, body = std::move(body), headers = std::move(headers),
          ct = std::string(content_type)](Session& s) mutable {
      s.reply(status, std::move(body), std::move(headers), std::move(ct));
    });
  }
  void startStream(Headers headers) override {
    post([headers = std::move(headers)](Session& s) mutable {
      s.startStream(std::move(headers));
    });
  }
  void write(std::string data) override {
    session_->pending_bytes_.fetch_add(data.size());
    post([data = std::move(data)](Session& s) mutable { s.write(std::move(data)); });
  }
  void finish() override {
    post([](Session& s) { s.finish(); });
  }
  void onClientGone(std::function<void()> fn) override {
    post([fn = std::move(fn)](Session& s) mutable { s.setGoneHandler(std::move(fn)); });
  }
  size_t pendingBytes() const override { return session_->pending_bytes_.load(); }

  // Detaches the channel from its session once the answer is complete.
  bool closed = false;

 private:
  template <typename F>
  void post(F&& f) {
    // `closed` is only read and written on the strand.
    net::post(session_->stream_.get_executor(),
              [channel = shared_from_this(), f = std::forward<F>(f)]() mutable {
                if (channel->closed) return;
                f(*channel->session_);
              });
  }

  std::shared_ptr<Session> session_;
};

void Session::baseHeaders(http::fields& f) {
  f.set(http::field::server, "switchyard");
  f.set("x-request-id", request_id_);
}

void Session::doRead() {
  parser_.emplace();
  parser_->body_limit(static_cast<uint64_t>(server_.config_.max_body_bytes));
  parser_->header_limit(static_cast<uint32_t>(server_.config_.max_header_bytes));
  stream_.expires_after(first_request_ ? toMs(server_.config_.read_timeout_s)
                                       : toMs(server_.config_.idle_timeout_s));
  http::async_read(stream_, buffer_, *parser_,
                   beast::bind_front_handler(&Session::onRead, shared_from_this()));
}

void Session::onRead(beast::error_code ec, size_t) {
  if (ec == http::error::end_of_stream || ec == net::error::eof ||
      ec == net::error::connection_reset) {
    return close();
  }
  if (ec == beast::error::timeout) {
    if (buffer_.size() > 0 || parser_->got_some()) server_.metrics_.recordRejected("read_timeout");
    return close();
  }
  if (ec == http::error::body_limit) {
    return rejectAndClose(413, api::ErrorCode::kPayloadTooLarge,
                          "Request body exceeds the limit of " +
                              std::to_string(server_.config_.max_body_bytes) + " bytes.",
                          "body_too_large");
  }
  if (ec == http::error::header_limit) {
    return rejectAndClose(431, api::ErrorCode::kPayloadTooLarge,
                          "Request headers exceed the limit of " +
                              std::to_string(server_.config_.max_header_bytes) + " bytes.",
                          "headers_too_large");
  }
  if (ec) {
    if (ec == net::error::operation_aborted) return close();
    return rejectAndClose(400, api::ErrorCode::kInvalidRequest,
                          "Malformed HTTP request: " + ec.message(), "malformed_http");
  }
  first_request_ = false;
  dispatchRequest();
}

void Session::dispatchRequest() {
  http::request<http::string_body> req = parser_->release();
  http_version_ = req.version();
  request_keep_alive_ = req.keep_alive();

  Exchange ex;
  ex.method = std::string(req.method_string());
  ex.target = std::string(req.target());
  ex.authorization = std::string(req[http::field::authorization]);
  ex.body = std::move(req.body());
  std::string_view client_id = req["x-request-id"];
  ex.request_id = saneRequestId(client_id) ? std::string(client_id) : newRequestId();
  ex.received = std::chrono::steady_clock::now();

  request_id_ = ex.request_id;
  responding_ = true;
  gone_ = false;
  gone_handler_ = nullptr;
  stream_started_ = stream_head_written_ = stream_writing_ = false;
  stream_finish_requested_ = stream_done_ = false;
  stream_queue_.clear();
  pending_bytes_ = 0;
  server_.in_flight_.fetch_add(1);
  server_.metrics_.inFlight().Increment();
  counted_in_flight_ = true;

  stream_.expires_never();
  channel_ = std::make_shared<Channel>(shared_from_this());
  doWatch();
  try {
    server_.handler_(std::move(ex), channel_);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "{\"level\":\"error\",\"msg\":\"handler threw\",\"what\":\"%s\"}\n",
                 e.what());
    reply(500, errorBody(api::ErrorCode::kInternal, "Internal error."), {}, "application/json");
  }
}

void Session::doWatch() {
  if (watching_) return;
  watching_ = true;
  // Reads into the same buffer the next request is parsed from, so a pipelined request is
  // not lost.
  stream_.async_read_some(buffer_.prepare(4096),
                          beast::bind_front_handler(&Session::onWatch, shared_from_this()));
}

void Session::onWatch(beast::error_code ec, size_t bytes) {
  watching_ = false;
  if (ec) {
    if (responding_) return clientGone();
    return close();
  }
  buffer_.commit(bytes);
  if (resume_after_watch_) {
    resume_after_watch_ = false;
    doRead();
  }
  // Otherwise: a pipelined request arrived while answering; it waits in buffer_ and is read
  // when the answer is complete. The disconnect watch ends here.
}

void Session::setGoneHandler(std::function<void()> fn) {
  if (gone_) {
    fn();
    return;
  }
  gone_handler_ = std::move(fn);
}

void Session::clientGone() {
  if (gone_) return;
  gone_ = true;
  if (gone_handler_) {
    auto fn = std::move(gone_handler_);
    gone_handler_ = nullptr;
    fn();
  }
  close();  // cancels any pending write; its handler finishes the answer
  completeIfIdle();
}

// After the client went away: ends the answer once no write still uses its buffers.
void Session::completeIfIdle() {
  if (responding_ && gone_ && !stream_writing_ && !reply_) responseComplete(false);
}

void Session::reply(int status, std::string body, Headers headers, std::string content_type) {
  if (!responding_ || stream_started_ || reply_) return;
  bool keep_alive = request_keep_alive_ && !server_.draining_.load();
  auto res = std::make_shared<http::response<http::string_body>>(
      static_cast<http::status>(status), http_version_);
  baseHeaders(res->base());
  res->set(http::field::content_type, content_type);
  for (auto& [k, v] : headers) res->set(k, v);
  res->body() = std::move(body);
  res->keep_alive(keep_alive);
  res->prepare_payload();
  if (gone_) return responseComplete(false);
  reply_ = res;
  stream_.expires_after(toMs(server_.config_.idle_timeout_s));
  http::async_write(stream_, *res,
                    [self = shared_from_this(), res, keep_alive](beast::error_code ec, size_t) {
                      self->onReplyWritten(ec, keep_alive);
                    });
}

void Session::onReplyWritten(beast::error_code ec, bool keep_alive) {
  reply_.reset();
  if (ec || gone_) {
    clientGone();
    return completeIfIdle();
  }
  responseComplete(keep_alive);
}

void Session::startStream(Headers headers) {
  if (!responding_ || stream_started_ || reply_) return;
  stream_started_ = true;
  stream_head_ = std::make_unique<http::response<http::empty_body>>(http::status::ok,
                                                                    http_version_);
  baseHeaders(stream_head_->base());
  stream_head_->set(http::field::content_type, "text/event-stream");
  stream_head_->set(http::field::cache_control, "no-cache");
  stream_head_->set("x-accel-buffering", "no");
  for (auto& [k, v] : headers) stream_head_->set(k, v);
  stream_head_->keep_alive(request_keep_alive_ && !server_.draining_.load());
  stream_head_->chunked(true);
  stream_serializer_ = std::make_unique<http::response_serializer<http::empty_body>>(*stream_head_);
  if (gone_) return completeIfIdle();
  stream_writing_ = true;
  stream_.expires_after(toMs(server_.config_.idle_timeout_s));
  http::async_write_header(stream_, *stream_serializer_,
                           [self = shared_from_this()](beast::error_code ec, size_t) {
                             self->stream_head_written_ = true;
                             self->onStreamWritten(ec);
                           });
}

void Session::write(std::string data) {
  if (!stream_started_ || stream_done_ || stream_finish_requested_) {
    pending_bytes_.fetch_sub(data.size());
    return;
  }
  stream_queue_.push_back(std::move(data));
  doStreamWrite();
}

void Session::finish() {
  if (!stream_started_ || stream_finish_requested_) return;
  stream_finish_requested_ = true;
  doStreamWrite();
}

void Session::doStreamWrite() {
  if (gone_) return completeIfIdle();
  if (stream_writing_ || !stream_head_written_) return;
  stream_.expires_after(toMs(server_.config_.idle_timeout_s));
  if (!stream_queue_.empty()) {
    stream_writing_ = true;
    net::async_write(stream_, http::make_chunk(net::buffer(stream_queue_.front())),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (!self->stream_queue_.empty()) {
                         self->pending_bytes_.fetch_sub(self->stream_queue_.front().size());
                         self->stream_queue_.pop_front();
                       }
                       self->onStreamWritten(ec);
                     });
    return;
  }
  if (stream_finish_requested_ && !stream_done_) {
    stream_done_ = true;
    stream_writing_ = true;
    net::async_write(stream_, http::make_chunk_last(),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->stream_writing_ = false;
                       if (ec || self->gone_) {
                         self->clientGone();
                         return self->completeIfIdle();
                       }
                       self->responseComplete(self->stream_head_->keep_alive());
                     });
  }
}

void Session::onStreamWritten(beast::error_code ec) {
  stream_writing_ = false;
  if (ec || gone_) {
    clientGone();
    return completeIfIdle();
  }
  doStreamWrite();
}

void Session::responseComplete(bool keep_alive) {
  if (!responding_) return;
  responding_ = false;
  if (channel_) channel_->closed = true;
  channel_.reset();
  gone_handler_ = nullptr;
  stream_serializer_.reset();
  stream_head_.reset();
  stream_queue_.clear();
  if (counted_in_flight_) {
    counted_in_flight_ = false;
    server_.metrics_.inFlight().Decrement();
    if (server_.in_flight_.fetch_sub(1) == 1 && server_.draining_) {
      net::post(server_.acceptor_.get_executor(), [&server = server_] { server.checkDrained(); });
    }
  }
  if (!keep_alive || gone_ || server_.draining_) return close();
  if (watching_) {
    // The disconnect watch is still pending: the next request starts from its completion.
    resume_after_watch_ = true;
    stream_.expires_after(toMs(server_.config_.idle_timeout_s));
    return;
  }
  doRead();
}

void Session::rejectAndClose(int status, api::ErrorCode code, std::string message,
                             const std::string& reason) {
  server_.metrics_.recordRejected(reason);
  if (request_id_.empty()) request_id_ = newRequestId();
  auto res = std::make_shared<http::response<http::string_body>>(
      static_cast<http::status>(status), 11);
  baseHeaders(res->base());
  res->set(http::field::content_type, "application/json");
  res->body() = errorBody(code, std::move(message));
  res->keep_alive(false);
  res->prepare_payload();
  stream_.expires_after(std::chrono::seconds(5));
  http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code, size_t) {
    self->close();
  });
}

void Session::close() {
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream_.close();
}

api::StatusOr<int> Server::Impl::listen() {
  beast::error_code ec;
  auto address = net::ip::make_address(config_.listen, ec);
  if (ec) {
    return api::Status(api::ErrorCode::kConfig,
                       "server.listen: '" + config_.listen + "' is not an IP address");
  }
  tcp::endpoint endpoint(address, static_cast<unsigned short>(config_.port));
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return api::Status(api::ErrorCode::kIo, "cannot listen on " + config_.listen + ":" +
                                                std::to_string(config_.port) + ": " +
                                                ec.message());
  }
  doAccept();
  return static_cast<int>(acceptor_.local_endpoint().port());
}

void Server::Impl::doAccept() {
  acceptor_.async_accept(net::make_strand(ioc_),
                         beast::bind_front_handler(&Server::Impl::onAccept, this));
}

void Server::Impl::onAccept(beast::error_code ec, tcp::socket socket) {
  if (draining_ || !acceptor_.is_open()) return;
  if (!ec) {
    if (connections_.load() >= config_.max_connections) {
      metrics_.recordRejected("connection_limit");
      beast::error_code ignored;
      socket.close(ignored);
    } else {
      connections_.fetch_add(1);
      socket.set_option(tcp::no_delay(true), ec);
      std::make_shared<Session>(std::move(socket), *this)->start();
    }
  }
  doAccept();
}

void Server::Impl::run() {
  std::vector<std::thread> threads;
  for (int i = 1; i < config_.threads; ++i) threads.emplace_back([this] { ioc_.run(); });
  ioc_.run();
  for (auto& t : threads) t.join();
}

void Server::Impl::beginShutdown() {
  net::post(acceptor_.get_executor(), [this] {
    if (draining_.exchange(true)) return;
    beast::error_code ec;
    acceptor_.close(ec);
    drain_deadline_ = std::chrono::steady_clock::now() + toMs(config_.shutdown_grace_s);
    checkDrained();
  });
}

void Server::Impl::checkDrained() {
  if (in_flight_.load() == 0 || std::chrono::steady_clock::now() >= drain_deadline_) {
    ioc_.stop();
    return;
  }
  drain_timer_.expires_after(std::chrono::milliseconds(50));
  drain_timer_.async_wait([this](beast::error_code ec) {
    if (!ec) checkDrained();
  });
}

Server::Server(ServerConfig config, Metrics& metrics, RequestHandler handler)
    : impl_(std::make_unique<Impl>(std::move(config), metrics, std::move(handler))) {}
Server::~Server() = default;
api::StatusOr<int> Server::listen() { return impl_->listen(); }
void Server::run() { impl_->run(); }
void Server::beginShutdown() { impl_->beginShutdown(); }
bool Server::draining() const { return impl_->draining_.load(); }
int Server::inFlight() const { return impl_->in_flight_.load(); }

}  // namespace gateway
