// A minimal, fast OpenAI-compatible upstream for benchmarks: answers every POST with the same
// small chat.completion (or a short SSE stream when the body asks for "stream":true), on one
// thread, keep-alive. It exists to measure what the gateway adds, so it must not be the
// bottleneck itself.
//
//   sy_bench_upstream [--port N]     prints {"port":N} on stdout when ready
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

const std::string kCompletion =
    R"({"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,)"
    R"("model":"bench-model","choices":[{"index":0,"message":{"role":"assistant",)"
    R"("content":"Hello from the benchmark upstream.","refusal":null},"logprobs":null,)"
    R"("finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":7,)"
    R"("total_tokens":19},"system_fingerprint":null})";

std::string streamBody() {
  std::string head = R"({"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-model","system_fingerprint":null,"choices":[{"index":0,"delta":)";
  std::string out;
  out += "data: " + head + R"({"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]})" + "\n\n";
  for (const char* w : {"Hello", " from", " the", " benchmark", " upstream."}) {
    out += "data: " + head + R"({"content":")" + w + R"("},"logprobs":null,"finish_reason":null}]})" + "\n\n";
  }
  out += "data: " + head + R"({},"logprobs":null,"finish_reason":"stop"}]})" + "\n\n";
  out += R"(data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-model","system_fingerprint":null,"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}})" "\n\n";
  out += "data: [DONE]\n\n";
  return out;
}

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  explicit Conn(tcp::socket s) : stream_(std::move(s)) {}
  void read() {
    req_ = {};
    http::async_read(stream_, buf_, req_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return;
                       self->respond();
                     });
  }

 private:
  void respond() {
    static const std::string kStream = streamBody();
    bool stream = req_.body().find("\"stream\":true") != std::string::npos;
    res_ = {};
    res_.version(req_.version());
    res_.result(http::status::ok);
    res_.set(http::field::content_type, stream ? "text/event-stream" : "application/json");
    res_.keep_alive(req_.keep_alive());
    res_.body() = stream ? kStream : kCompletion;
    res_.prepare_payload();
    http::async_write(stream_, res_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec || !self->res_.keep_alive()) return;
      self->read();
    });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buf_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
};

void accept(tcp::acceptor& acceptor) {
  acceptor.async_accept([&acceptor](beast::error_code ec, tcp::socket s) {
    if (!ec) {
      s.set_option(tcp::no_delay(true), ec);
      std::make_shared<Conn>(std::move(s))->read();
    }
    accept(acceptor);
  });
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--port") == 0) port = std::atoi(argv[i + 1]);
  }
  net::io_context ioc(1);
  tcp::acceptor acceptor(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"),
                                            static_cast<unsigned short>(port)));
  std::printf("{\"port\":%d}\n", acceptor.local_endpoint().port());
  std::fflush(stdout);
  accept(acceptor);
  ioc.run();
}
