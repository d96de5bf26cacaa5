#include "tests/support/http_client.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <mutex>

namespace sytest {
namespace {

using Clock = std::chrono::steady_clock;

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

void globalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct TransferState {
  HttpResponse* response;
  const ChunkCallback* on_piece;
};

size_t onHeader(char* data, size_t size, size_t n, void* user) {
  auto* st = static_cast<TransferState*>(user);
  std::string_view line(data, size * n);
  if (line.substr(0, 5) == "HTTP/") {
    st->response->headers.clear();  // a new response head (after a 100 Continue, say)
  } else if (auto colon = line.find(':'); colon != std::string_view::npos) {
    std::string name = lower(trim(line.substr(0, colon)));
    std::string value(trim(line.substr(colon + 1)));
    auto [it, inserted] = st->response->headers.emplace(name, value);
    if (!inserted) it->second += ", " + value;
  }
  return size * n;
}

size_t onBody(char* data, size_t size, size_t n, void* user) {
  auto* st = static_cast<TransferState*>(user);
  std::string_view piece(data, size * n);
  st->response->body.append(piece);
  if (st->on_piece && !(*st->on_piece)(piece)) {
    st->response->aborted = true;
    return 0;  // makes libcurl fail the transfer and close the connection
  }
  return size * n;
}

}  // namespace

bool HttpResponse::hasHeader(std::string_view name) const { return headers.count(lower(name)) > 0; }

std::string HttpResponse::header(std::string_view name) const {
  auto it = headers.find(lower(name));
  return it == headers.end() ? std::string() : it->second;
}

Json HttpResponse::json() const {
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? Json(nullptr) : j;
}

HttpClient::HttpClient() {
  globalInit();
  curl_ = curl_easy_init();
}

HttpClient::~HttpClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

HttpResponse HttpClient::request(const std::string& method, const std::string& url,
                                 const HeaderList& headers, const std::string& body,
                                 std::chrono::milliseconds timeout) {
  return perform(method, url, headers, body, nullptr, timeout);
}

HttpResponse HttpClient::stream(const std::string& method, const std::string& url,
                                const HeaderList& headers, const std::string& body,
                                const ChunkCallback& on_piece, std::chrono::milliseconds timeout) {
  return perform(method, url, headers, body, &on_piece, timeout);
}

HttpResponse HttpClient::perform(const std::string& method, const std::string& url,
                                 const HeaderList& headers, const std::string& body,
                                 const ChunkCallback* on_piece, std::chrono::milliseconds timeout) {
  CURL* c = static_cast<CURL*>(curl_);
  curl_easy_reset(c);  // options only; live connections stay in the handle's cache
  HttpResponse response;
  TransferState st{&response, on_piece};
  char errbuf[CURL_ERROR_SIZE] = {0};

  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &onHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &st);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &onBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &st);
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  // Bodies arrive exactly as sent; an encoding the test did not ask for stays visible.
  curl_easy_setopt(c, CURLOPT_HTTP_CONTENT_DECODING, 0L);

  bool has_body = !body.empty() || method == "POST" || method == "PUT" || method == "PATCH";
  if (method == "GET" && !has_body) {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else if (method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else {
    if (method != "POST") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (has_body) {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    }
  }

  curl_slist* list = curl_slist_append(nullptr, "Expect:");
  bool has_content_type = false;
  for (const auto& [name, value] : headers) {
    if (lower(name) == "content-type") has_content_type = true;
    // "Name;" is libcurl's way to send a header with an empty value.
    std::string line = value.empty() ? name + ";" : name + ": " + value;
    list = curl_slist_append(list, line.c_str());
  }
  if (has_body && !has_content_type) {
    list = curl_slist_append(list, "Content-Type: application/json");
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);

  auto start = Clock::now();
  CURLcode rc = curl_easy_perform(c);
  response.elapsed_s = std::chrono::duration<double>(Clock::now() - start).count();
  curl_slist_free_all(list);

  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  response.status = static_cast<int>(status);
  long connects = 0;
  curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects);
  response.reused_connection = rc == CURLE_OK && connects == 0;
  if (rc != CURLE_OK) {
    response.error = errbuf[0] ? errbuf : curl_easy_strerror(rc);
  }
  return response;
}

HttpResponse httpGet(const std::string& url, const HeaderList& headers,
                     std::chrono::milliseconds timeout) {
  HttpClient client;
  return client.request("GET", url, headers, {}, timeout);
}

HttpResponse httpPost(const std::string& url, const std::string& body, const HeaderList& headers,
                      std::chrono::milliseconds timeout) {
  HttpClient client;
  return client.request("POST", url, headers, body, timeout);
}

// ---------------------------------------------------------------------------------------
// RawConnection

RawConnection::RawConnection(int port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    connect_errno_ = errno;
    ::close(fd_);
    fd_ = -1;
    return;
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

RawConnection::~RawConnection() { close(); }

void RawConnection::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool RawConnection::send(std::string_view bytes) {
  if (fd_ < 0) return false;
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string RawConnection::readUntil(const std::function<bool(const std::string&)>& done,
                                     std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  char buf[16384];
  while (fd_ >= 0 && !closed_by_peer_ && !done(received_)) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      closed_by_peer_ = true;
      break;
    }
    received_.append(buf, static_cast<size_t>(n));
  }
  return received_;
}

std::string RawConnection::readUntilClose(std::chrono::milliseconds timeout) {
  return readUntil([](const std::string&) { return false; }, timeout);
}

namespace {

// Length of the first complete HTTP response in `s`, or nullopt when more bytes are needed
// (or the body runs until the connection closes).
std::optional<size_t> responseLength(std::string_view s) {
  auto head_end = s.find("\r\n\r\n");
  if (head_end == std::string_view::npos) return std::nullopt;
  std::string head = lower(s.substr(0, head_end));
  size_t body_start = head_end + 4;
  int status = statusOf(std::string(s.substr(0, head_end)));
  if ((status >= 100 && status < 200) || status == 204 || status == 304) return body_start;
  auto field = [&](std::string_view name) -> std::optional<std::string> {
    auto pos = head.find("\r\n" + std::string(name) + ":");
    if (pos == std::string::npos) return std::nullopt;
    auto start = pos + 3 + name.size();
    auto end = head.find("\r\n", start);
    return std::string(trim(std::string_view(head).substr(start, end - start)));
  };
  if (auto te = field("transfer-encoding"); te && te->find("chunked") != std::string::npos) {
    size_t pos = body_start;
    for (;;) {
      auto line_end = s.find("\r\n", pos);
      if (line_end == std::string_view::npos) return std::nullopt;
      size_t size = std::strtoul(std::string(s.substr(pos, line_end - pos)).c_str(), nullptr, 16);
      if (size == 0) {
        auto trailer_end = s.find("\r\n", line_end + 2);
        if (trailer_end == std::string_view::npos) return std::nullopt;
        return trailer_end + 2;
      }
      pos = line_end + 2 + size + 2;
      if (pos > s.size()) return std::nullopt;
    }
  }
  if (auto cl = field("content-length")) {
    size_t total = body_start + std::strtoul(cl->c_str(), nullptr, 10);
    if (s.size() >= total) return total;
  }
  return std::nullopt;
}

}  // namespace

std::string RawConnection::readResponse(std::chrono::milliseconds timeout) {
  readUntil(
      [this](const std::string& all) {
        return responseLength(std::string_view(all).substr(consumed_)).has_value();
      },
      timeout);
  std::string_view rest = std::string_view(received_).substr(consumed_);
  size_t len = responseLength(rest).value_or(rest.size());
  std::string out(rest.substr(0, len));
  consumed_ += len;
  return out;
}

bool connectRefused(int port) {
  RawConnection c(port);
  return !c.connected() && c.connectError() == ECONNREFUSED;
}

int statusOf(const std::string& raw) {
  if (raw.compare(0, 5, "HTTP/") != 0) return 0;
  auto sp = raw.find(' ');
  if (sp == std::string::npos) return 0;
  return std::atoi(raw.c_str() + sp + 1);
}

std::vector<std::string> sseEvents(std::string_view body) {
  std::vector<std::string> out;
  while (!body.empty()) {
    auto end = body.find("\n\n");
    if (end == std::string_view::npos) {
      out.push_back("<unterminated: " + std::string(body) + ">");
      break;
    }
    std::string_view block = body.substr(0, end);
    body.remove_prefix(end + 2);
    if (block.substr(0, 6) == "data: " && block.find('\n') == std::string_view::npos) {
      out.emplace_back(block.substr(6));
    } else {
      out.push_back("<malformed: " + std::string(block) + ">");
    }
  }
  return out;
}

std::optional<double> metricValue(std::string_view text, std::string_view name,
                                  const std::map<std::string, std::string>& labels) {
  std::optional<double> sum;
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.empty() || line.front() == '#') continue;
    size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string_view::npos || line.substr(0, name_end) != name) continue;
    std::map<std::string, std::string> have;
    size_t pos = name_end;
    if (line[pos] == '{') {
      ++pos;
      while (pos < line.size() && line[pos] != '}') {
        auto eq = line.find('=', pos);
        if (eq == std::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') break;
        std::string key(trim(line.substr(pos, eq - pos)));
        std::string value;
        size_t i = eq + 2;
        for (; i < line.size() && line[i] != '"'; ++i) {
          if (line[i] == '\\' && i + 1 < line.size()) {
            ++i;
            value += line[i] == 'n' ? '\n' : line[i];
          } else {
            value += line[i];
          }
        }
        have[key] = value;
        pos = i + 1;
        if (pos < line.size() && line[pos] == ',') ++pos;
      }
      pos = line.find('}', pos);
      if (pos == std::string_view::npos) continue;
      ++pos;
    }
    bool match = std::all_of(labels.begin(), labels.end(), [&](const auto& kv) {
      auto it = have.find(kv.first);
      return it != have.end() && it->second == kv.second;
    });
    if (!match) continue;
    std::string value(trim(line.substr(pos)));
    if (auto sp = value.find(' '); sp != std::string::npos) value.resize(sp);  // a timestamp
    sum = sum.value_or(0) + std::strtod(value.c_str(), nullptr);
  }
  return sum;
}

}  // namespace sytest
