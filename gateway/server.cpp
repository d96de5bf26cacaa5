#include "gateway/server.h"

#include <array>
#include <atomic>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "api/openai_json.h"
#include "api/status.h"
#include "gateway/tls.h"
#include "gateway/worker_pool.h"

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

// Runs the handler; one backstop turns an escaped exception into a 500.
void invokeHandler(const RequestHandler& handler, Exchange ex, std::shared_ptr<Responder> r) {
  try {
    handler(std::move(ex), r);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "{\"level\":\"error\",\"msg\":\"handler threw\",\"what\":\"%s\"}\n",
                 e.what());
    r->reply(500, errorBody(api::ErrorCode::kInternal, "Internal error."), {});
  }
}

constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

}  // namespace

// What the server's registry of connections sees of a session, whatever its transport: the
// bytes buffered for its client, and a way to drop it when the process holds too many.
class SessionBase : public std::enable_shared_from_this<SessionBase> {
 public:
  virtual ~SessionBase() = default;
  // Posts the drop to the session's strand.
  virtual void dropSlowClient() = 0;

  std::atomic<size_t> pending_bytes_{0};  // written by the handler, not yet sent
  std::atomic<bool> dropping_{false};     // chosen by the buffered-bytes cap
};

class Server::Impl {
 public:
  Impl(ServerConfig config, Metrics& metrics, RequestHandler handler)
      : config_(std::move(config)),
        metrics_(metrics),
        handler_(std::move(handler)),
        iocs_(makeContexts(config_.threads)),
        acceptor_(net::make_strand(*iocs_[0])),
        drain_timer_(acceptor_.get_executor()),
        pool_(config_.worker_threads, static_cast<size_t>(config_.worker_queue)) {
    if (config_.tls.enabled) tls_ = std::make_unique<TlsContextHolder>(config_.tls);
  }

  api::StatusOr<int> listen();
  void run();
  // Runs one I/O thread's context, with its ThreadService when there is one.
  void runContext(net::io_context& ioc);
  void beginShutdown();
  void doAccept();
  void onAccept(beast::error_code ec, tcp::socket socket);
  void checkDrained();

  // The process-wide cap on buffered bytes.
  void addBuffered(size_t n) {
    int64_t total = buffered_.fetch_add(static_cast<int64_t>(n)) + static_cast<int64_t>(n);
    // One scan at a time: while over the cap every write lands here.
    if (total > config_.max_buffered_bytes && !shedding_.exchange(true)) {
      shedSlowest();
      shedding_ = false;
    }
  }
  void releaseBuffered(size_t n) { buffered_.fetch_sub(static_cast<int64_t>(n)); }
  void shedSlowest();
  void registerSession(const std::shared_ptr<SessionBase>& s) {
    std::lock_guard<std::mutex> lock(sessions_mu_);
    sessions_.emplace(s.get(), s);
  }
  void unregisterSession(SessionBase* s) {
    std::lock_guard<std::mutex> lock(sessions_mu_);
    sessions_.erase(s);
  }

  const ServerConfig config_;
  Metrics& metrics_;
  RequestHandler handler_;
  ThreadServiceFactory thread_service_;  // set before run()
  std::atomic<bool> draining_{false};
  std::atomic<int> in_flight_{0};
  std::atomic<int> connections_{0};
  std::atomic<int64_t> buffered_{0};
  std::atomic<bool> shedding_{false};
  std::chrono::steady_clock::time_point drain_deadline_;
  std::unique_ptr<TlsContextHolder> tls_;  // null without server.tls
  std::mutex sessions_mu_;
  std::unordered_map<SessionBase*, std::weak_ptr<SessionBase>> sessions_;
  // One io_context per I/O thread, each connection on one of them: a request is read, handed
  // on and answered by the same thread, never bounced between threads sharing a queue.
  static std::vector<std::unique_ptr<net::io_context>> makeContexts(int threads) {
    std::vector<std::unique_ptr<net::io_context>> out;
    for (int i = 0; i < std::max(1, threads); ++i) {
      out.push_back(std::make_unique<net::io_context>(1));
    }
    return out;
  }
  std::vector<std::unique_ptr<net::io_context>> iocs_;
  size_t next_ioc_ = 0;  // round robin of accepted connections (the acceptor's strand)
  tcp::acceptor acceptor_;
  net::steady_timer drain_timer_;
  // Last: its jobs hold sessions, which need everything above while they are destroyed.
  WorkerPool pool_;
};

// Chooses the connection with the most bytes waiting for its client and drops it, unless the
// drops already under way bring the total back under the cap.
void Server::Impl::shedSlowest() {
  std::weak_ptr<SessionBase> chosen;
  int64_t being_dropped = 0;
  {
    // A session being destroyed waits on this mutex to unregister, so every one listed is
    // whole while it is held. No shared_ptr is made (or released) under it: releasing the
    // last one would destroy a session here, which takes the mutex again.
    std::lock_guard<std::mutex> lock(sessions_mu_);
    size_t most = 0;
    for (auto& [raw, weak] : sessions_) {
      size_t pending = raw->pending_bytes_.load();
      if (raw->dropping_.load()) {
        being_dropped += static_cast<int64_t>(pending);
      } else if (pending > most) {
        most = pending;
        chosen = weak;
      }
    }
  }
  if (buffered_.load() - being_dropped <= config_.max_buffered_bytes) return;
  std::shared_ptr<SessionBase> victim = chosen.lock();
  if (!victim) return;
  if (victim->dropping_.exchange(true)) return;
  metrics_.recordRejected("buffered_bytes_limit");
  std::fprintf(stderr,
               "{\"level\":\"warn\",\"msg\":\"dropping the slowest client: buffered bytes over "
               "server.max_buffered_bytes\",\"pending_bytes\":%zu}\n",
               victim->pending_bytes_.load());
  victim->dropSlowClient();
}

// One client connection over `Stream` (plain TCP or TLS). Reads requests one at a time, hands
// each to the handler, writes the answer (whole or streamed), and meanwhile watches the socket
// so that a client that goes away cancels the work done for it.
template <class Stream>
class Session : public SessionBase {
 public:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  template <class... Args>
  Session(Server::Impl& server, Args&&... args)
      : stream_(std::forward<Args>(args)...), server_(server) {
    server_.metrics_.connections().Increment();
  }
  ~Session() override {
    server_.unregisterSession(this);
    server_.releaseBuffered(pending_bytes_.load());
    server_.metrics_.connections().Decrement();
    server_.connections_.fetch_sub(1);
  }

  void start() {
    server_.registerSession(shared_from_this());
    net::dispatch(stream_.get_executor(), [self = self()] {
      if constexpr (kTls) {
        self->doHandshake();
      } else {
        self->doRead();
      }
    });
  }

  void dropSlowClient() override {
    net::post(stream_.get_executor(), [self = self()] { self->clientGone(); });
  }

  // Responder operations, always on the strand.
  void reply(int status, std::string body, Headers headers, std::string content_type);
  void startStream(Headers headers);
  void write(std::string data);
  void finish();
  void setGoneHandler(std::function<void()> fn);
  // A producer may register after its bytes already drained: then it hears at once.
  void setDrainedHandler(std::function<void()> fn) {
    drained_handler_ = std::move(fn);
    releasePending(0);
  }
  // Counts bytes the handler queued and the cap across connections.
  void addPending(size_t n) {
    if (pending_bytes_.fetch_add(n) + n > Responder::kPauseAboveBytes) over_pause_ = true;
    server_.addBuffered(n);
  }
  // Bytes sent or discarded; runs the drained handler once below the resume mark.
  void releasePending(size_t n);

 private:
  class Channel;

  std::shared_ptr<Session> self() {
    return std::static_pointer_cast<Session>(shared_from_this());
  }
  beast::tcp_stream& tcp() { return beast::get_lowest_layer(stream_); }

  void doHandshake();
  void doRead();
  void onHeader(beast::error_code ec, size_t bytes);
  void onRead(beast::error_code ec, size_t bytes);
  bool readFailed(beast::error_code ec);
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
  void lingerThenClose(std::shared_ptr<std::array<char, 16384>> scratch, size_t drained);
  void baseHeaders(http::fields& f);

  Stream stream_;
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
  std::function<void()> drained_handler_;
  std::atomic<bool> over_pause_{false};  // pending bytes went above kPauseAboveBytes
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
template <class Stream>
class Session<Stream>::Channel : public Responder,
                                 public std::enable_shared_from_this<Channel> {
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
    session_->addPending(data.size());
    // Unlike the other calls, a write after the answer is complete still releases its bytes.
    net::post(session_->stream_.get_executor(),
              [channel = this->shared_from_this(), data = std::move(data)]() mutable {
                if (channel->closed) return channel->session_->releasePending(data.size());
                channel->session_->write(std::move(data));
              });
  }
  void finish() override {
    post([](Session& s) { s.finish(); });
  }
  void onClientGone(std::function<void()> fn) override {
    post([fn = std::move(fn)](Session& s) mutable { s.setGoneHandler(std::move(fn)); });
  }
  void onDrained(std::function<void()> fn) override {
    post([fn = std::move(fn)](Session& s) mutable { s.setDrainedHandler(std::move(fn)); });
  }
  size_t pendingBytes() const override { return session_->pending_bytes_.load(); }

  // Detaches the channel from its session once the answer is complete.
  bool closed = false;

 private:
  template <typename F>
  void post(F&& f) {
    // `closed` is only read and written on the strand.
    net::post(session_->stream_.get_executor(),
              [channel = this->shared_from_this(), f = std::forward<F>(f)]() mutable {
                if (channel->closed) return;
                f(*channel->session_);
              });
  }

  std::shared_ptr<Session> session_;
};

template <class Stream>
void Session<Stream>::releasePending(size_t n) {
  size_t left = pending_bytes_.fetch_sub(n) - n;
  server_.releaseBuffered(n);
  if (left <= Responder::kResumeBelowBytes && drained_handler_ && over_pause_.exchange(false)) {
    auto fn = drained_handler_;  // may replace itself
    fn();
  }
}

template <class Stream>
void Session<Stream>::baseHeaders(http::fields& f) {
  f.set(http::field::server, "switchyard");
  f.set("x-request-id", request_id_);
}

template <class Stream>
void Session<Stream>::doHandshake() {
  if constexpr (kTls) {
    tcp().expires_after(toMs(server_.config_.read_timeout_s));
    stream_.async_handshake(net::ssl::stream_base::server, [self = self()](beast::error_code ec) {
      if (ec) {
        // Not TLS (a plain HTTP client), no acceptable protocol or cipher, or no valid client
        // certificate: nothing can be said to the client, so close.
        self->server_.metrics_.recordRejected("tls_handshake");
        return self->close();
      }
      self->doRead();
    });
  }
}

template <class Stream>
void Session<Stream>::doRead() {
  parser_.emplace();
  parser_->body_limit(static_cast<uint64_t>(server_.config_.max_body_bytes));
  parser_->header_limit(static_cast<uint32_t>(server_.config_.max_header_bytes));
  tcp().expires_after(first_request_ ? toMs(server_.config_.read_timeout_s)
                                     : toMs(server_.config_.idle_timeout_s));
  http::async_read_header(stream_, buffer_, *parser_,
                          beast::bind_front_handler(&Session::onHeader, self()));
}

// Headers are in: a client that waits for `100 Continue` gets it before the body is read.
template <class Stream>
void Session<Stream>::onHeader(beast::error_code ec, size_t) {
  if (readFailed(ec)) return;
  tcp().expires_after(toMs(server_.config_.read_timeout_s));
  const auto& req = parser_->get();
  bool wants_continue = req.version() >= 11 && !parser_->is_done() &&
                        beast::iequals(req[http::field::expect], "100-continue");
  if (!wants_continue) {
    return http::async_read(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::onRead, self()));
  }
  net::async_write(stream_, net::buffer(kContinue.data(), kContinue.size()),
                   [self = self()](beast::error_code ec, size_t) {
                     if (ec) return self->close();
                     http::async_read(self->stream_, self->buffer_, *self->parser_,
                                      beast::bind_front_handler(&Session::onRead, self));
                   });
}

template <class Stream>
void Session<Stream>::onRead(beast::error_code ec, size_t) {
  if (readFailed(ec)) return;
  first_request_ = false;
  dispatchRequest();
}

// Handles a failed read of headers or body; true when it did (the connection is closing).
template <class Stream>
bool Session<Stream>::readFailed(beast::error_code ec) {
  if (!ec) return false;
  if (ec == http::error::end_of_stream || ec == net::error::eof ||
      ec == net::error::connection_reset || ec == net::ssl::error::stream_truncated) {
    close();
  } else if (ec == beast::error::timeout) {
    if (buffer_.size() > 0 || parser_->got_some()) server_.metrics_.recordRejected("read_timeout");
    close();
  } else if (ec == http::error::body_limit) {
    rejectAndClose(413, api::ErrorCode::kPayloadTooLarge,
                   "Request body exceeds the limit of " +
                       std::to_string(server_.config_.max_body_bytes) + " bytes.",
                   "body_too_large");
  } else if (ec == http::error::header_limit) {
    rejectAndClose(431, api::ErrorCode::kPayloadTooLarge,
                   "Request headers exceed the limit of " +
                       std::to_string(server_.config_.max_header_bytes) + " bytes.",
                   "headers_too_large");
  } else if (ec == net::error::operation_aborted) {
    close();
  } else {
    rejectAndClose(400, api::ErrorCode::kInvalidRequest,
                   "Malformed HTTP request: " + ec.message(), "malformed_http");
  }
  return true;
}

template <class Stream>
void Session<Stream>::dispatchRequest() {
  http::request<http::string_body> req = parser_->release();
  http_version_ = req.version();
  request_keep_alive_ = req.keep_alive();

  Exchange ex;
  ex.method = std::string(req.method_string());
  ex.target = std::string(req.target());
  ex.authorization = std::string(req[http::field::authorization]);
  ex.api_key = std::string(req["x-api-key"]);
  ex.anthropic_version = std::string(req["anthropic-version"]);
  ex.anthropic_beta = std::string(req["anthropic-beta"]);
  ex.route_hint = std::string(req["x-switchyard-route-hint"]);
  ex.body = std::move(req.body());
  std::string_view client_id = req["x-request-id"];
  ex.request_id = saneRequestId(client_id) ? std::string(client_id) : newRequestId();
  ex.received = std::chrono::steady_clock::now();

  request_id_ = ex.request_id;
  responding_ = true;
  gone_ = false;
  gone_handler_ = nullptr;
  drained_handler_ = nullptr;
  over_pause_ = false;
  stream_started_ = stream_head_written_ = stream_writing_ = false;
  stream_finish_requested_ = stream_done_ = false;
  stream_queue_.clear();
  server_.in_flight_.fetch_add(1);
  server_.metrics_.inFlight().Increment();
  counted_in_flight_ = true;

  tcp().expires_never();
  channel_ = std::make_shared<Channel>(self());
  doWatch();
  if (static_cast<int64_t>(ex.body.size()) <= server_.config_.inline_body_bytes) {
    return invokeHandler(server_.handler_, std::move(ex), channel_);
  }
  // A large body: parsing it would hold this I/O thread (and every connection on it) for
  // a long while, so a worker handles the whole request.
  bool queued = server_.pool_.tryPost(
      [&server = server_, ex = std::move(ex), channel = channel_]() mutable {
        invokeHandler(server.handler_, std::move(ex), std::move(channel));
      });
  if (!queued) {
    server_.metrics_.recordRejected("worker_queue_full");
    reply(503,
          errorBody(api::ErrorCode::kUnavailable,
                    "The server is busy with other large requests; retry shortly."),
          {{"retry-after", "1"}}, "application/json");
  }
}

template <class Stream>
void Session<Stream>::doWatch() {
  if (watching_) return;
  watching_ = true;
  // Reads into the same buffer the next request is parsed from, so a pipelined request is
  // not lost.
  stream_.async_read_some(buffer_.prepare(4096),
                          beast::bind_front_handler(&Session::onWatch, self()));
}

template <class Stream>
void Session<Stream>::onWatch(beast::error_code ec, size_t bytes) {
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

template <class Stream>
void Session<Stream>::setGoneHandler(std::function<void()> fn) {
  if (gone_) {
    fn();
    return;
  }
  gone_handler_ = std::move(fn);
}

template <class Stream>
void Session<Stream>::clientGone() {
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
template <class Stream>
void Session<Stream>::completeIfIdle() {
  if (responding_ && gone_ && !stream_writing_ && !reply_) responseComplete(false);
}

template <class Stream>
void Session<Stream>::reply(int status, std::string body, Headers headers,
                            std::string content_type) {
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
  tcp().expires_after(toMs(server_.config_.idle_timeout_s));
  http::async_write(stream_, *res,
                    [self = self(), res, keep_alive](beast::error_code ec, size_t) {
                      self->onReplyWritten(ec, keep_alive);
                    });
}

template <class Stream>
void Session<Stream>::onReplyWritten(beast::error_code ec, bool keep_alive) {
  reply_.reset();
  if (ec || gone_) {
    clientGone();
    return completeIfIdle();
  }
  responseComplete(keep_alive);
}

template <class Stream>
void Session<Stream>::startStream(Headers headers) {
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
  tcp().expires_after(toMs(server_.config_.idle_timeout_s));
  http::async_write_header(stream_, *stream_serializer_,
                           [self = self()](beast::error_code ec, size_t) {
                             self->stream_head_written_ = true;
                             self->onStreamWritten(ec);
                           });
}

template <class Stream>
void Session<Stream>::write(std::string data) {
  // A chunk of no bytes is the chunked encoding's terminator ("0\r\n\r\n"): written mid-stream
  // it would end the body early and leave a second terminator for a keep-alive client to parse
  // as the next response.
  if (data.empty()) return;
  if (!stream_started_ || stream_done_ || stream_finish_requested_ || gone_) {
    return releasePending(data.size());
  }
  stream_queue_.push_back(std::move(data));
  doStreamWrite();
}

template <class Stream>
void Session<Stream>::finish() {
  if (!stream_started_ || stream_finish_requested_) return;
  stream_finish_requested_ = true;
  doStreamWrite();
}

template <class Stream>
void Session<Stream>::doStreamWrite() {
  if (gone_) return completeIfIdle();
  if (stream_writing_ || !stream_head_written_) return;
  tcp().expires_after(toMs(server_.config_.idle_timeout_s));
  if (!stream_queue_.empty()) {
    stream_writing_ = true;
    net::async_write(stream_, http::make_chunk(net::buffer(stream_queue_.front())),
                     [self = self()](beast::error_code ec, size_t) {
                       if (!self->stream_queue_.empty()) {
                         size_t n = self->stream_queue_.front().size();
                         self->stream_queue_.pop_front();
                         self->releasePending(n);
                       }
                       self->onStreamWritten(ec);
                     });
    return;
  }
  if (stream_finish_requested_ && !stream_done_) {
    stream_done_ = true;
    stream_writing_ = true;
    net::async_write(stream_, http::make_chunk_last(),
                     [self = self()](beast::error_code ec, size_t) {
                       self->stream_writing_ = false;
                       if (ec || self->gone_) {
                         self->clientGone();
                         return self->completeIfIdle();
                       }
                       self->responseComplete(self->stream_head_->keep_alive());
                     });
  }
}

template <class Stream>
void Session<Stream>::onStreamWritten(beast::error_code ec) {
  stream_writing_ = false;
  if (ec || gone_) {
    clientGone();
    return completeIfIdle();
  }
  doStreamWrite();
}

template <class Stream>
void Session<Stream>::responseComplete(bool keep_alive) {
  if (!responding_) return;
  responding_ = false;
  if (channel_) channel_->closed = true;
  channel_.reset();
  gone_handler_ = nullptr;
  drained_handler_ = nullptr;
  stream_serializer_.reset();
  stream_head_.reset();
  size_t unsent = 0;
  for (const std::string& s : stream_queue_) unsent += s.size();
  stream_queue_.clear();
  if (unsent > 0) releasePending(unsent);
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
    tcp().expires_after(toMs(server_.config_.idle_timeout_s));
    return;
  }
  doRead();
}

template <class Stream>
void Session<Stream>::rejectAndClose(int status, api::ErrorCode code, std::string message,
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
  tcp().expires_after(std::chrono::seconds(5));
  http::async_write(stream_, *res, [self = self(), res](beast::error_code ec, size_t) {
    if (ec) return self->close();
    // The client may still be sending the body we refused: closing with its bytes unread would
    // reset the connection, and a client still writing would see the reset, not our answer.
    // So stop sending, and read and drop what arrives (a bounded time and amount) first.
    beast::error_code ignored;
    self->tcp().socket().shutdown(tcp::socket::shutdown_send, ignored);
    self->tcp().expires_after(std::chrono::seconds(2));
    self->lingerThenClose(std::make_shared<std::array<char, 16384>>(), 0);
  });
}

template <class Stream>
void Session<Stream>::lingerThenClose(std::shared_ptr<std::array<char, 16384>> scratch,
                                      size_t drained) {
  constexpr size_t kMaxDrained = size_t{64} << 20;
  if (drained > kMaxDrained) return close();
  tcp().async_read_some(net::buffer(*scratch), [self = self(), scratch, drained](
                                                   beast::error_code ec, size_t n) {
    if (ec) return self->close();  // end of stream, reset or the 2 s timeout
    self->lingerThenClose(scratch, drained + n);
  });
}

// Closes the TCP connection. Over TLS no close_notify is sent: every answer is framed
// (content-length or chunked), so a client cannot mistake the close for a truncation.
template <class Stream>
void Session<Stream>::close() {
  beast::error_code ec;
  tcp().socket().shutdown(tcp::socket::shutdown_send, ec);
  tcp().close();
}

api::StatusOr<int> Server::Impl::listen() {
  if (tls_) {
    if (api::Status st = tls_->load(); !st.ok()) return st;
  }
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
  net::io_context& ioc = *iocs_[next_ioc_++ % iocs_.size()];
  acceptor_.async_accept(net::make_strand(ioc),
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
      if (tls_) {
        // Each connection keeps the context it started with; a reload affects later ones.
        std::shared_ptr<TlsContext> ctx = tls_->current();
        using TlsSession = Session<beast::ssl_stream<beast::tcp_stream>>;
        std::make_shared<TlsSession>(*this, std::move(socket), *ctx)->start();
      } else {
        std::make_shared<Session<beast::tcp_stream>>(*this, std::move(socket))->start();
      }
    }
  }
  doAccept();
}

// Serves a ThreadService in an I/O thread's event loop: a wait for its fd to be readable is
// always pending (re-armed before each service(), so that readiness during service() is not
// missed), and a service() that stopped with work left is run again soon.
class ServiceWatch {
 public:
  ServiceWatch(net::io_context& ioc, ThreadService& service)
      : ioc_(ioc), service_(service), fd_(ioc, service.fd()) {
    wait();
  }
  ~ServiceWatch() { fd_.release(); }  // the fd is the service's, not ours to close
  ServiceWatch(const ServiceWatch&) = delete;
  ServiceWatch& operator=(const ServiceWatch&) = delete;

 private:
  void wait() {
    fd_.async_wait(net::posix::stream_descriptor::wait_read, [this](beast::error_code ec) {
      if (ec) return;
      wait();
      serve();
    });
  }
  void serve() {
    if (service_.service()) net::post(ioc_, [this] { serve(); });
  }

  net::io_context& ioc_;
  ThreadService& service_;
  net::posix::stream_descriptor fd_;
};

void Server::Impl::runContext(net::io_context& ioc) {
  std::unique_ptr<ThreadService> service = thread_service_ ? thread_service_() : nullptr;
  std::optional<ServiceWatch> watch;
  if (service) watch.emplace(ioc, *service);
  ioc.run();
  watch.reset();
  service.reset();  // on this thread, after its loop: the service may cancel its work now
}

void Server::Impl::run() {
  // A context without connections must not return from run(): each is kept until shutdown.
  std::vector<net::executor_work_guard<net::io_context::executor_type>> keep;
  for (auto& ioc : iocs_) keep.push_back(net::make_work_guard(*ioc));
  std::vector<std::thread> threads;
  for (size_t i = 1; i < iocs_.size(); ++i) {
    threads.emplace_back([this, i] { runContext(*iocs_[i]); });
  }
  runContext(*iocs_[0]);
  for (auto& t : threads) t.join();
  pool_.stop();
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
    for (auto& ioc : iocs_) ioc->stop();
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
void Server::setThreadService(ThreadServiceFactory factory) {
  impl_->thread_service_ = std::move(factory);
}
void Server::run() { impl_->run(); }
void Server::beginShutdown() { impl_->beginShutdown(); }
bool Server::draining() const { return impl_->draining_.load(); }
int Server::inFlight() const { return impl_->in_flight_.load(); }
api::Status Server::reloadTls() { return impl_->tls_ ? impl_->tls_->reload() : api::Status(); }

}  // namespace gateway
