#include "routers/http_client.h"

#include <curl/curl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "api/ascii.h"

namespace routers {
namespace {

using std::chrono::milliseconds;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

// The client this thread is driving right now (it holds that client's driver_mu_), or null.
// A call started from inside one of our callbacks must queue: libcurl refuses to be
// re-entered from its own callbacks, and the lock is not recursive.
thread_local const void* tl_driving = nullptr;

class DrivingScope {
 public:
  explicit DrivingScope(const void* client) : previous_(tl_driving) { tl_driving = client; }
  ~DrivingScope() { tl_driving = previous_; }
  DrivingScope(const DrivingScope&) = delete;
  DrivingScope& operator=(const DrivingScope&) = delete;

 private:
  const void* previous_;
};

}  // namespace

class Transfer;

// One libcurl multi handle, its epoll set and the calls on it. Driven either by the client's
// own loop thread (the central driver) or by the thread that owns it (a ThreadDriver: an I/O
// thread that watches epollFd() in its own event loop and calls service()).
class Driver {
 public:
  Driver(const HttpClient::Options& options, std::atomic<size_t>* in_flight, bool owned);
  ~Driver();

  // Any thread. Sends the request from this thread when nobody drives the handle right now.
  void start(const std::shared_ptr<Transfer>& t);
  void requestCancel(const std::shared_ptr<Transfer>& t);
  void requestPause(const std::shared_ptr<Transfer>& t);

  // The central driver's loop, until `stopping` (then every call is cancelled).
  void loop(const std::atomic<bool>& stopping);
  void wake();
  // An owned driver, on its owner thread: handles what is ready without blocking. True when
  // it stopped with events left (call again soon, do not wait for the fd).
  bool service();
  // An owned driver, on its owner thread, when it is about to go: cancels every call.
  void shutdown(const char* why);
  int epollFd() const { return epoll_fd_; }

 private:
  // One round of driving work: queued starts, cancels and pauses, libcurl's timer when due,
  // finished transfers. The caller holds driver_mu_.
  void drive();
  void runDueTimer();
  // Whether the loop, asleep until loop_wakes_at_, must be woken to honour a deadline that
  // driving on another thread created. The caller holds driver_mu_.
  bool loopSleepsTooLong() const;
  // An owned driver: sets its timerfd to the next deadline (libcurl's timer, the timeout
  // checks while calls are in flight). The caller holds driver_mu_.
  void armTimer();
  void handleEvents(const epoll_event* events, int n);
  void drainQueue();
  void activate(const std::shared_ptr<Transfer>& t);
  void finish(Transfer* t, const api::Status& status);
  void applyPause(Transfer* t);
  void checkTimeouts();
  void cancelAll(const char* why);
  CURL* takeEasy();
  void returnEasy(CURL* easy);
  void readCompletions();
  // libcurl's socket and timer callbacks (the multi_socket API: only sockets with events are
  // serviced, so the cost per event does not grow with the number of calls in flight).
  static int onSocket(CURL* easy, curl_socket_t fd, int what, void* user, void* socket_data);
  static int onTimer(CURLM* multi, long timeout_ms, void* user);

  const HttpClient::Options options_;
  std::atomic<size_t>* const in_flight_;
  const bool owned_;  // driven by its owner thread's event loop, not by loop()
  CURLM* multi_ = nullptr;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  int timer_fd_ = -1;  // owned drivers only
  std::atomic<bool> closed_{false};

  // Held by whichever thread drives libcurl: the loop thread, except while it sleeps in
  // epoll_wait, when a thread starting a call may take it (try_lock, never waiting) and send
  // the request itself instead of waking the loop for it; for an owned driver, its owner.
  // libcurl handles may move between threads as long as one thread at a time uses them; this
  // lock is that guarantee, and it guards every member below marked "driver".
  std::mutex driver_mu_;
  Clock::time_point curl_timer_at_ = Clock::time_point::max();  // driver: libcurl's timer
  Clock::time_point loop_wakes_at_ = Clock::time_point::max();  // driver: the loop's alarm
  // driver: the earliest first-byte deadline of a call started while the loop slept.
  Clock::time_point check_by_ = Clock::time_point::max();
  Clock::time_point timer_armed_at_ = Clock::time_point::max();  // driver: owned drivers

  std::mutex mu_;  // guards the pending_ queues
  std::deque<std::shared_ptr<Transfer>> pending_start_;
  std::deque<std::shared_ptr<Transfer>> pending_cancel_;
  std::deque<std::shared_ptr<Transfer>> pending_pause_;  // want_paused_ changed

  // Driver only below.
  std::unordered_set<std::shared_ptr<Transfer>> active_;
  std::vector<CURL*> easy_pool_;
};

class HttpClient::Impl {
 public:
  explicit Impl(Options options);
  ~Impl();

  std::shared_ptr<HttpCall> start(HttpRequest request, HttpCallbacks callbacks);
  size_t inFlight() const { return in_flight_.load(); }
  std::unique_ptr<Driver> newOwnedDriver() {
    return std::make_unique<Driver>(options_, &in_flight_, true);
  }

 private:
  Options options_;
  std::atomic<size_t> in_flight_{0};
  std::atomic<bool> stopping_{false};
  Driver central_;
  std::thread thread_;
};

namespace {

// The drivers bound to this thread, one per client (HttpClient::ThreadDriver).
thread_local std::vector<std::pair<const HttpClient::Impl*, Driver*>> tl_bound;

Driver* boundDriver(const HttpClient::Impl* client) {
  for (auto& [c, d] : tl_bound) {
    if (c == client) return d;
  }
  return nullptr;
}

}  // namespace

class Transfer : public HttpCall, public std::enable_shared_from_this<Transfer> {
 public:
  Transfer(Driver* owner, HttpRequest request, HttpCallbacks callbacks)
      : owner_(owner), request_(std::move(request)), callbacks_(std::move(callbacks)) {}

  void cancel() override {
    // A finished call never reaches its driver again: an I/O thread's driver may be gone.
    if (done_.load() || cancelled_.exchange(true)) return;
    owner_->requestCancel(shared_from_this());
  }

  // curl_easy_pause must run on the thread driving the multi handle, so the wish is posted
  // there; onWrite also honours it at once, before handing over another byte.
  void setPaused(bool paused) override {
    if (done_.load() || want_paused_.exchange(paused) == paused) return;
    owner_->requestPause(shared_from_this());
  }

  // Driver state.
  Driver* owner_;
  HttpRequest request_;
  HttpCallbacks callbacks_;
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> want_paused_{false};
  std::atomic<bool> done_{false};  // finished: onDone has run or is running
  CURL* easy_ = nullptr;
  curl_slist* header_list_ = nullptr;
  char errbuf_[CURL_ERROR_SIZE] = {0};
  HttpResponseHead head_;
  bool head_delivered_ = false;
  bool aborted_by_callback_ = false;
  bool finished_ = false;
  bool paused_ = false;          // libcurl holds the transfer paused (receive side)
  Clock::time_point started_;    // the first-byte timer's start (moved on resume)
  Clock::time_point last_data_;  // the idle timer's start (moved on resume)
  Clock::time_point total_deadline_;

  void deliverHead() {
    if (head_delivered_) return;
    head_delivered_ = true;
    long code = 0;
    curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &code);
    head_.status = static_cast<int>(code);
    if (callbacks_.on_head) callbacks_.on_head(head_);
  }

  static size_t onHeader(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    std::string_view line(data, size * n);
    if (line.rfind("HTTP/", 0) == 0) {
      t->head_.headers.clear();  // a new header block (after 1xx)
      return size * n;
    }
    auto colon = line.find(':');
    if (colon != std::string_view::npos) {
      t->head_.headers[api::asciiLower(trim(line.substr(0, colon)))] =
          std::string(trim(line.substr(colon + 1)));
    }
    return size * n;
  }

  static size_t onWrite(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    if (t->cancelled_.load(std::memory_order_relaxed)) return 0;
    if (t->want_paused_.load(std::memory_order_relaxed)) {
      // libcurl keeps this piece and hands it over again on resume.
      t->paused_ = true;
      return CURL_WRITEFUNC_PAUSE;
    }
    t->last_data_ = Clock::now();
    t->deliverHead();
    if (t->callbacks_.on_data && !t->callbacks_.on_data(std::string_view(data, size * n))) {
      t->aborted_by_callback_ = true;
      return 0;
    }
    return size * n;
  }
};

Driver::Driver(const HttpClient::Options& options, std::atomic<size_t>* in_flight, bool owned)
    : options_(options), in_flight_(in_flight), owned_(owned) {
  static CurlGlobal global;
  multi_ = curl_multi_init();
  curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS,
                    static_cast<long>(options_.max_connections_per_host));
  curl_multi_setopt(multi_, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                    static_cast<long>(options_.max_total_connections));
  curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS,
                    static_cast<long>(options_.max_total_connections));
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &Driver::onSocket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &Driver::onTimer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake_fd_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  if (owned_) {
    timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    ev.data.fd = timer_fd_;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, timer_fd_, &ev);
  }
}

Driver::~Driver() {
  for (CURL* e : easy_pool_) curl_easy_cleanup(e);
  curl_multi_cleanup(multi_);
  close(wake_fd_);
  if (timer_fd_ >= 0) close(timer_fd_);
  close(epoll_fd_);
}

HttpClient::Impl::Impl(Options options)
    : options_(options), central_(options_, &in_flight_, false) {
  thread_ = std::thread([this] { central_.loop(stopping_); });
}

HttpClient::Impl::~Impl() {
  stopping_ = true;
  central_.wake();
  thread_.join();
}

std::shared_ptr<HttpCall> HttpClient::Impl::start(HttpRequest request, HttpCallbacks callbacks) {
  // A thread with a driver of its own (an I/O thread) runs its calls itself: their answers
  // arrive in its own event loop, and no other thread is woken for them.
  Driver* driver = boundDriver(this);
  if (driver == nullptr) driver = &central_;
  auto t = std::make_shared<Transfer>(driver, std::move(request), std::move(callbacks));
  in_flight_.fetch_add(1);
  driver->start(t);
  return t;
}

void Driver::start(const std::shared_ptr<Transfer>& t) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_start_.push_back(t);
  }
  // When the loop is asleep, send the request from this thread: waking the loop thread only
  // to write a few hundred bytes costs a context switch, which on a busy machine is most of
  // what the gateway adds to a call. Its answer still arrives on the loop thread (an owned
  // driver: on its owner thread, the only one that starts calls on it).
  if (tl_driving != this && !closed_.load() && driver_mu_.try_lock()) {
    bool wake_loop;
    {
      DrivingScope scope(this);
      drive();
      wake_loop = !owned_ && loopSleepsTooLong();
      if (owned_) armTimer();
    }
    driver_mu_.unlock();
    if (wake_loop) wake();
    return;
  }
  wake();
}

bool Driver::service() {
  std::lock_guard<std::mutex> lock(driver_mu_);
  DrivingScope scope(this);
  epoll_event events[64];
  bool more = true;
  // A bounded number of rounds, so that one busy driver cannot hold its thread's other work.
  for (int round = 0; round < 8 && more; ++round) {
    int n = epoll_wait(epoll_fd_, events, 64, 0);
    more = n > 0;
    if (n > 0) handleEvents(events, n);
    drive();
  }
  checkTimeouts();
  armTimer();
  return more;
}

void Driver::armTimer() {
  auto now = Clock::now();
  auto want = curl_timer_at_;
  if (!active_.empty()) want = std::min(want, now + milliseconds(50));  // timeout checks
  // An alarm already set no later than needed is kept (service() recomputes on waking).
  if (timer_armed_at_ > now && timer_armed_at_ <= want) return;
  if (want == Clock::time_point::max()) {
    if (timer_armed_at_ == Clock::time_point::max()) return;
    itimerspec off{};
    timerfd_settime(timer_fd_, 0, &off, nullptr);
    timer_armed_at_ = Clock::time_point::max();
    return;
  }
  auto in = std::max(std::chrono::duration_cast<std::chrono::nanoseconds>(want - now),
                     std::chrono::nanoseconds(1000));
  itimerspec spec{};
  spec.it_value.tv_sec = static_cast<time_t>(in.count() / 1'000'000'000);
  spec.it_value.tv_nsec = static_cast<long>(in.count() % 1'000'000'000);
  timerfd_settime(timer_fd_, 0, &spec, nullptr);
  timer_armed_at_ = now + in;
}

void Driver::shutdown(const char* why) {
  closed_ = true;
  std::lock_guard<std::mutex> lock(driver_mu_);
  DrivingScope scope(this);
  cancelAll(why);
}

void Driver::cancelAll(const char* why) {
  drainQueue();
  std::vector<Transfer*> left;
  for (const auto& t : active_) left.push_back(t.get());
  for (Transfer* t : left) finish(t, api::Status(api::ErrorCode::kCancelled, why));
}

void Driver::drive() {
  drainQueue();
  runDueTimer();
  readCompletions();
}

void Driver::runDueTimer() {
  int running = 0;
  // Adding a handle asks for a timer of 0, which is what sends its request. libcurl may ask
  // for 0 again at once; a few rounds are enough, the loop catches anything left.
  for (int i = 0; i < 4 && Clock::now() >= curl_timer_at_; ++i) {
    curl_timer_at_ = Clock::time_point::max();
    curl_multi_socket_action(multi_, CURL_SOCKET_TIMEOUT, 0, &running);
  }
}

bool Driver::loopSleepsTooLong() const {
  return std::min(curl_timer_at_, check_by_) < loop_wakes_at_;
}

void Driver::requestCancel(const std::shared_ptr<Transfer>& t) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_cancel_.push_back(t);
  }
  wake();
}

void Driver::requestPause(const std::shared_ptr<Transfer>& t) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_pause_.push_back(t);
  }
  wake();
}

// Brings libcurl's pause state in line with the latest wish (several requests may have
// queued up; only the last one counts).
void Driver::applyPause(Transfer* t) {
  if (t->finished_ || t->easy_ == nullptr) return;
  bool want = t->want_paused_.load();
  if (want == t->paused_) return;
  t->paused_ = want;
  if (want) {
    curl_easy_pause(t->easy_, CURLPAUSE_RECV);
    return;
  }
  // The client caused the pause, so the upstream gets its full first-byte and idle time again.
  auto now = Clock::now();
  t->last_data_ = now;
  if (!t->head_delivered_) t->started_ = now;
  // Resuming hands over what libcurl held back, on this thread, possibly calling on_data (which
  // may ask for a pause again: onWrite honours that).
  CURLcode rc = curl_easy_pause(t->easy_, CURLPAUSE_CONT);
  if (rc != CURLE_OK && !t->finished_) {
    if (t->cancelled_ || t->aborted_by_callback_) {
      finish(t, api::Status(api::ErrorCode::kCancelled, "cancelled"));
    } else {
      finish(t,
             api::Status(api::ErrorCode::kUpstreamError,
                         std::string("upstream call failed on resume: ") + curl_easy_strerror(rc)));
    }
  }
}

CURL* Driver::takeEasy() {
  if (easy_pool_.empty()) return curl_easy_init();
  CURL* e = easy_pool_.back();
  easy_pool_.pop_back();
  curl_easy_reset(e);
  return e;
}

void Driver::returnEasy(CURL* easy) {
  if (easy_pool_.size() < 256) {
    easy_pool_.push_back(easy);
  } else {
    curl_easy_cleanup(easy);
  }
}

void Driver::activate(const std::shared_ptr<Transfer>& t) {
  HttpRequest& r = t->request_;
  t->started_ = Clock::now();
  t->last_data_ = t->started_;
  t->total_deadline_ = std::min(r.deadline, t->started_ + r.timeouts.total);
  check_by_ = std::min({check_by_, t->started_ + r.timeouts.first_byte, t->total_deadline_});
  if (t->cancelled_) {
    finish(t.get(), api::Status(api::ErrorCode::kCancelled, "cancelled before start"));
    return;
  }
  if (t->total_deadline_ <= t->started_) {
    finish(t.get(), api::Status(api::ErrorCode::kUpstreamTimeout,
                                "the request's deadline passed before the upstream call"));
    return;
  }
  CURL* e = takeEasy();
  t->easy_ = e;
  curl_easy_setopt(e, CURLOPT_URL, r.url.c_str());
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf_);
  curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Transfer::onHeader);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, t.get());
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Transfer::onWrite);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(r.timeouts.connect.count()));
  auto total_ms = std::chrono::duration_cast<milliseconds>(t->total_deadline_ - t->started_);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, std::max<long>(1, static_cast<long>(total_ms.count())));
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  if (r.method == "POST") {
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r.body.data());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
  } else if (r.method != "GET") {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method.c_str());
    if (!r.body.empty()) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, r.body.data());
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
    }
  }
  curl_slist* list = curl_slist_append(nullptr, "Expect:");  // no 100-continue round trip
  for (const auto& [name, value] : r.headers) {
    std::string line = name + ": " + value;
    list = curl_slist_append(list, line.c_str());
  }
  t->header_list_ = list;
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, list);
  active_.insert(t);
  curl_multi_add_handle(multi_, e);
}

void Driver::finish(Transfer* t, const api::Status& status) {
  if (t->finished_) return;
  t->finished_ = true;
  t->done_ = true;
  std::shared_ptr<Transfer> keep;
  if (t->easy_) {
    curl_multi_remove_handle(multi_, t->easy_);
    returnEasy(t->easy_);
    t->easy_ = nullptr;
  }
  if (t->header_list_) {
    curl_slist_free_all(t->header_list_);
    t->header_list_ = nullptr;
  }
  for (auto it = active_.begin(); it != active_.end(); ++it) {
    if (it->get() == t) {
      keep = *it;
      active_.erase(it);
      break;
    }
  }
  in_flight_->fetch_sub(1);
  if (t->callbacks_.on_done) t->callbacks_.on_done(status);
  // Drop the callbacks (and what they captured) now rather than when the last handle goes.
  t->callbacks_ = HttpCallbacks{};
}

void Driver::drainQueue() {
  std::deque<std::shared_ptr<Transfer>> starts, cancels, pauses;
  {
    std::lock_guard<std::mutex> lock(mu_);
    starts.swap(pending_start_);
    cancels.swap(pending_cancel_);
    pauses.swap(pending_pause_);
  }
  for (auto& t : starts) activate(t);
  for (auto& t : cancels) {
    if (!t->finished_) finish(t.get(), api::Status(api::ErrorCode::kCancelled, "cancelled"));
  }
  for (auto& t : pauses) applyPause(t.get());
}

void Driver::checkTimeouts() {
  auto now = Clock::now();
  std::vector<Transfer*> expired_first, expired_idle, expired_total;
  for (const auto& t : active_) {
    const HttpTimeouts& to = t->request_.timeouts;
    if (now >= t->total_deadline_) {
      // libcurl enforces this too; checked here as well so that it holds for a paused
      // transfer whatever libcurl does with those.
      expired_total.push_back(t.get());
    } else if (t->paused_) {
      continue;  // the silence is ours, not the upstream's
    } else if (!t->head_delivered_) {
      if (now - t->started_ > to.first_byte) expired_first.push_back(t.get());
    } else if (now - t->last_data_ > to.idle) {
      expired_idle.push_back(t.get());
    }
  }
  for (Transfer* t : expired_first) {
    finish(t, api::Status(api::ErrorCode::kUpstreamTimeout,
                          "no response from upstream within " +
                              std::to_string(t->request_.timeouts.first_byte.count()) + " ms"));
  }
  for (Transfer* t : expired_idle) {
    finish(t, api::Status(api::ErrorCode::kUpstreamTimeout,
                          "upstream went silent for more than " +
                              std::to_string(t->request_.timeouts.idle.count()) + " ms"));
  }
  for (Transfer* t : expired_total) {
    finish(t, api::Status(api::ErrorCode::kUpstreamTimeout,
                          "upstream call exceeded its total time limit"));
  }
}

void Driver::wake() {
  uint64_t one = 1;
  ssize_t n = ::write(wake_fd_, &one, sizeof one);
  (void)n;  // EAGAIN means a wake-up is already pending
}

int Driver::onSocket(CURL*, curl_socket_t fd, int what, void* user, void* socket_data) {
  auto* self = static_cast<Driver*>(user);
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(self->epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    curl_multi_assign(self->multi_, fd, nullptr);
    return 0;
  }
  epoll_event ev{};
  ev.data.fd = fd;
  if (what & CURL_POLL_IN) ev.events |= EPOLLIN;
  if (what & CURL_POLL_OUT) ev.events |= EPOLLOUT;
  if (socket_data == nullptr) {
    // First sight of this socket: remember that it is registered.
    if (epoll_ctl(self->epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST) {
      epoll_ctl(self->epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
    }
    curl_multi_assign(self->multi_, fd, self);
  } else {
    epoll_ctl(self->epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
  }
  return 0;
}

int Driver::onTimer(CURLM*, long timeout_ms, void* user) {
  static_cast<Driver*>(user)->curl_timer_at_ =
      timeout_ms < 0 ? Clock::time_point::max() : Clock::now() + milliseconds(timeout_ms);
  return 0;
}

void Driver::readCompletions() {
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    Transfer* t = nullptr;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
    CURLcode rc = msg->data.result;
    if (rc == CURLE_OK) {
      t->deliverHead();
      finish(t, api::Status());
    } else if (t->cancelled_ || t->aborted_by_callback_) {
      finish(t, api::Status(api::ErrorCode::kCancelled, "cancelled"));
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
      double connect_time = 0;
      curl_easy_getinfo(t->easy_, CURLINFO_CONNECT_TIME, &connect_time);
      finish(t, api::Status(api::ErrorCode::kUpstreamTimeout,
                            connect_time > 0 ? "upstream call exceeded its total time limit"
                                             : "could not connect to upstream in time"));
    } else {
      std::string detail = t->errbuf_[0] ? t->errbuf_ : curl_easy_strerror(rc);
      finish(t, api::Status(api::ErrorCode::kUpstreamError, "upstream call failed: " + detail));
    }
  }
}

void Driver::handleEvents(const epoll_event* events, int n) {
  int running = 0;
  for (int i = 0; i < n; ++i) {
    int fd = events[i].data.fd;
    if (fd == wake_fd_ || fd == timer_fd_) {
      uint64_t count;
      ssize_t r = ::read(fd, &count, sizeof count);
      (void)r;
      if (fd == timer_fd_) timer_armed_at_ = Clock::time_point::max();
      continue;
    }
    int flags = 0;
    if (events[i].events & (EPOLLIN | EPOLLHUP)) flags |= CURL_CSELECT_IN;
    if (events[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
    if (events[i].events & EPOLLERR) flags |= CURL_CSELECT_ERR;
    curl_multi_socket_action(multi_, fd, flags, &running);
  }
}

void Driver::loop(const std::atomic<bool>& stopping) {
  std::unique_lock<std::mutex> driving(driver_mu_);
  DrivingScope scope(this);
  epoll_event events[64];
  while (true) {
    drive();
    checkTimeouts();
    if (stopping) break;
    // Wake at least every 50 ms while calls are in flight, to enforce the first-byte and
    // idle timeouts that libcurl does not know about.
    auto now = Clock::now();
    loop_wakes_at_ = std::min(now + milliseconds(active_.empty() ? 1000 : 50), curl_timer_at_);
    check_by_ = Clock::time_point::max();
    auto wait = std::chrono::ceil<milliseconds>(loop_wakes_at_ - now);
    int wait_ms = static_cast<int>(std::max<int64_t>(0, wait.count()));
    tl_driving = nullptr;
    driving.unlock();
    int n = epoll_wait(epoll_fd_, events, 64, wait_ms);
    driving.lock();
    tl_driving = this;
    if (n > 0) handleEvents(events, n);
  }
  // Shutting down: everything still in flight is cancelled.
  closed_ = true;
  cancelAll("the gateway is shutting down");
}

HttpClient::HttpClient(Options options) : impl_(std::make_unique<Impl>(options)) {}
HttpClient::~HttpClient() = default;

std::shared_ptr<HttpCall> HttpClient::start(HttpRequest request, HttpCallbacks callbacks) {
  return impl_->start(std::move(request), std::move(callbacks));
}

size_t HttpClient::inFlight() const { return impl_->inFlight(); }

std::unique_ptr<HttpClient::ThreadDriver> HttpClient::bindThisThread() {
  return std::unique_ptr<ThreadDriver>(new ThreadDriver(impl_.get(), impl_->newOwnedDriver()));
}

HttpClient::ThreadDriver::ThreadDriver(const void* client, std::unique_ptr<Driver> driver)
    : client_(client), driver_(std::move(driver)) {
  tl_bound.emplace_back(static_cast<const Impl*>(client_), driver_.get());
}

HttpClient::ThreadDriver::~ThreadDriver() {
  for (auto it = tl_bound.begin(); it != tl_bound.end(); ++it) {
    if (it->second == driver_.get()) {
      tl_bound.erase(it);
      break;
    }
  }
  driver_->shutdown("the gateway is shutting down");
}

int HttpClient::ThreadDriver::fd() const { return driver_->epollFd(); }

bool HttpClient::ThreadDriver::service() { return driver_->service(); }

}  // namespace routers
