#include "routers/rank_window.h"

#include <algorithm>
#include <cmath>
#include <tuple>

namespace routers {

RankWindow::RankWindow(size_t capacity) : scores_(std::max<size_t>(1, capacity)) {}

std::optional<double> RankWindow::rank(double x, size_t warmup) const {
  if (std::isnan(x) || size_ == 0 || size_ < warmup) return std::nullopt;
  size_t below = 0, equal = 0;
  for (size_t i = 0; i < size_; ++i) {
    below += scores_[i] < x;
    equal += scores_[i] == x;
  }
  return (static_cast<double>(below) + 0.5 * static_cast<double>(equal)) /
         static_cast<double>(size_);
}

void RankWindow::add(double x) {
  if (std::isnan(x)) return;
  scores_[next_] = x;
  next_ = (next_ + 1) % scores_.size();
  size_ = std::min(size_ + 1, scores_.size());
}

namespace {

// A key as views, so that owned and viewed keys compare alike (a tuple of strings and one of
// string_views do not compare with each other under every standard library).
using KeyTuple = std::tuple<std::string_view, std::string_view, RankedScore>;
template <typename K>
KeyTuple viewOf(const K& k) {
  return KeyTuple(k.team, k.model, k.score);
}

}  // namespace

bool RankWindows::Key::operator<(const Key& o) const { return viewOf(*this) < viewOf(o); }

bool RankWindows::Less::operator()(const Key& a, const KeyView& b) const {
  return viewOf(a) < viewOf(b);
}

bool RankWindows::Less::operator()(const KeyView& a, const Key& b) const {
  return viewOf(a) < viewOf(b);
}

namespace {

size_t capacityOf(const RankConfig& c) {
  return static_cast<size_t>(std::clamp(c.window, 1, RankWindows::kMaxWindow));
}

size_t warmupOf(const RankConfig& c) { return static_cast<size_t>(std::max(1, c.warmup)); }

}  // namespace

RankWindow* RankWindows::windowFor(const KeyView& key, const RankConfig& config, bool create) {
  const size_t capacity = capacityOf(config);
  auto it = windows_.find(key);
  if (it != windows_.end()) {
    // A reload that resized the window: the old scores were ranked under another policy.
    if (it->second->capacity() != capacity) it->second = std::make_unique<RankWindow>(capacity);
    return it->second.get();
  }
  if (!create || windows_.size() >= kMaxWindows) return nullptr;
  Key k{std::string(key.team), std::string(key.model), key.score};
  return windows_.emplace(std::move(k), std::make_unique<RankWindow>(capacity))
      .first->second.get();
}

std::optional<double> RankWindows::rank(std::string_view team, std::string_view model,
                                        RankedScore score, double x,
                                        const RankConfig& config) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = windows_.find(KeyView{team, model, score});
  if (it == windows_.end() || it->second->capacity() != capacityOf(config)) return std::nullopt;
  return it->second->rank(x, warmupOf(config));
}

std::optional<double> RankWindows::rankAndAdd(std::string_view team, std::string_view model,
                                              RankedScore score, double x,
                                              const RankConfig& config) {
  std::lock_guard<std::mutex> lock(mu_);
  RankWindow* w = windowFor(KeyView{team, model, score}, config, /*create=*/true);
  if (w == nullptr) return std::nullopt;
  std::optional<double> r = w->rank(x, warmupOf(config));
  w->add(x);
  return r;
}

size_t RankWindows::count(std::string_view team, std::string_view model,
                          RankedScore score) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = windows_.find(KeyView{team, model, score});
  return it == windows_.end() ? 0 : it->second->size();
}

size_t RankWindows::windows() const {
  std::lock_guard<std::mutex> lock(mu_);
  return windows_.size();
}

}  // namespace routers
