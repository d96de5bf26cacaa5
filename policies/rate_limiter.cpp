#include "policies/rate_limiter.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>

namespace policies {
namespace {

// Slack for float rounding in refills: a level this close to what is needed counts as enough.
constexpr double kEpsilon = 1e-9;

std::string teamMapKey(const std::string& team) {
  std::string k("t");
  k.push_back('\0');
  k += team;
  return k;
}

std::string keyMapKey(const std::string& team, const std::string& key_id) {
  std::string k("k");
  k.push_back('\0');
  k += team;
  k.push_back('\0');
  k += key_id;
  return k;
}

// A replica's share of a limit for messages: "200", "85.71", "0.33", "0.0012".
std::string shareText(double share) {
  char buf[32];
  std::snprintf(buf, sizeof buf, share < 1 ? "%.2g" : "%.2f", share);
  std::string s(buf);
  if (s.find('.') == std::string::npos || s.find('e') != std::string::npos) return s;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

}  // namespace

void RateLimiter::setReplicas(int replicas) {
  replicas_.store(std::max(1, replicas), std::memory_order_relaxed);
}

RateLimiter::Shard& RateLimiter::shardFor(const std::string& team) {
  return shards_[std::hash<std::string>{}(team) % kShards];
}

void RateLimiter::refill(Bucket& b, Clock::time_point now) {
  if (now <= b.last) return;
  // In nanoseconds times capacity, so that whole fractions of a minute refill exactly.
  const double ns = static_cast<double>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(now - b.last).count());
  b.last = now;
  for (Level* l : {&b.requests, &b.tokens}) {
    if (l->capacity > 0) l->level = std::min(l->capacity, l->level + ns * l->capacity / 60e9);
  }
}

RateLimiter::Bucket& RateLimiter::bucket(Shard& shard, const std::string& map_key,
                                         const RateLimit& limit, double replicas,
                                         Clock::time_point now) {
  auto [it, inserted] = shard.buckets.try_emplace(map_key);
  Bucket& b = it->second;
  if (inserted) {
    b.last = now;
  } else {
    refill(b, now);
  }
  // The policy or the replica count may have changed since the bucket was made (a reload, a
  // replica joining or leaving): follow it. The refill above ran at the old rate; what is left
  // stays (capped), so a larger share never fills the bucket at once.
  auto apply = [replicas](Level& l, const std::optional<int64_t>& cap) {
    if (!cap.has_value()) {
      l = Level{};
      return;
    }
    const double share = static_cast<double>(*cap) / replicas;
    if (l.capacity <= 0) {
      l.level = share;  // newly limited: starts full
    } else {
      l.level = std::min(l.level, share);
    }
    l.capacity = share;
    l.limit = *cap;
  };
  apply(b.requests, limit.requests_per_minute);
  apply(b.tokens, limit.tokens_per_minute);
  return b;
}

bool RateLimiter::isFull(const Bucket& b) {
  for (const Level* l : {&b.requests, &b.tokens}) {
    if (l->capacity > 0 && l->level < l->capacity - kEpsilon) return false;
  }
  return true;
}

void RateLimiter::sweep(Shard& shard, Clock::time_point now) {
  for (auto it = shard.buckets.begin(); it != shard.buckets.end();) {
    refill(it->second, now);
    it = isFull(it->second) ? shard.buckets.erase(it) : std::next(it);
  }
  shard.last_sweep = std::max(shard.last_sweep, now);
}

api::Status RateLimiter::admit(const std::string& team, const std::string& key_id,
                               const RateLimitPolicy& p, int64_t estimated_tokens,
                               Clock::time_point now) {
  if (p.empty()) return api::Status();
  const int replicas = this->replicas();
  const double tokens = static_cast<double>(std::max<int64_t>(0, estimated_tokens));
  Shard& shard = shardFor(team);
  std::lock_guard<std::mutex> lock(shard.mu);
  if (now - shard.last_sweep >= kSweepInterval) sweep(shard, now);

  // One entry per limit that applies, most specific first.
  struct Take {
    Level* level;
    double amount;
    bool per_key;
    bool is_tokens;
  };
  Take takes[4];
  int n = 0;
  if (!p.per_key.empty()) {
    Bucket& b = bucket(shard, keyMapKey(team, key_id), p.per_key, replicas, now);
    takes[n++] = {&b.requests, 1, true, false};
    takes[n++] = {&b.tokens, tokens, true, true};
  }
  if (!p.team.empty()) {
    Bucket& b = bucket(shard, teamMapKey(team), p.team, replicas, now);
    takes[n++] = {&b.requests, 1, false, false};
    takes[n++] = {&b.tokens, tokens, false, true};
  }

  const Take* worst = nullptr;
  double worst_wait = 0;
  for (int i = 0; i < n; ++i) {
    const Level& l = *takes[i].level;
    if (l.capacity <= 0) continue;
    // More than a whole bucket is admitted from a full one (see the header).
    const double need = std::min(takes[i].amount, l.capacity);
    const double deficit = need - l.level;
    if (deficit <= kEpsilon) continue;
    const double wait = deficit * 60 / l.capacity;
    if (wait > worst_wait) {
      worst_wait = wait;
      worst = &takes[i];
    }
  }
  if (worst == nullptr) {
    for (int i = 0; i < n; ++i) {
      if (takes[i].level->capacity > 0) takes[i].level->level -= takes[i].amount;
    }
    return api::Status();
  }

  std::string who;
  if (!worst->per_key) {
    who = "team '" + team + "'";
  } else if (key_id.empty()) {
    who = "unauthenticated callers of team '" + team + "'";
  } else {
    who = "key '" + key_id + "' of team '" + team + "'";
  }
  std::string message = "rate limit exceeded: " + who + ": " + std::to_string(worst->level->limit) +
                        (worst->is_tokens ? " tokens per minute" : " requests per minute");
  std::string notes;
  if (replicas > 1) {
    notes = shareText(worst->level->capacity) + " on each of " + std::to_string(replicas) +
            " gateway replicas";
  }
  if (worst->is_tokens) {
    notes += (notes.empty() ? "" : "; ") + std::string("this request: an estimated ") +
             std::to_string(static_cast<int64_t>(tokens)) + " tokens";
  }
  if (!notes.empty()) message += " (" + notes + ")";
  message += "; try again in " +
             std::to_string(std::max<int64_t>(1, static_cast<int64_t>(std::ceil(worst_wait)))) +
             " s";
  api::Status refused(api::ErrorCode::kRateLimited, std::move(message), {}, "rate_limit_exceeded");
  refused.withRetryAfter(worst_wait);
  return refused;
}

void RateLimiter::adjustTokens(const std::string& team, const std::string& key_id,
                               const RateLimitPolicy& p, int64_t delta, Clock::time_point now) {
  if (delta == 0) return;
  const int replicas = this->replicas();
  Shard& shard = shardFor(team);
  std::lock_guard<std::mutex> lock(shard.mu);
  auto apply = [&](const std::string& map_key, const RateLimit& limit) {
    if (!limit.tokens_per_minute.has_value()) return;
    // An absent bucket is full: giving tokens back to it changes nothing.
    if (delta < 0 && shard.buckets.find(map_key) == shard.buckets.end()) return;
    Level& l = bucket(shard, map_key, limit, replicas, now).tokens;
    l.level = std::min(l.capacity, l.level - static_cast<double>(delta));
  };
  apply(keyMapKey(team, key_id), p.per_key);
  apply(teamMapKey(team), p.team);
}

void RateLimiter::evictIdle(Clock::time_point now) {
  for (Shard& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard.mu);
    sweep(shard, now);
  }
}

size_t RateLimiter::bucketCount() const {
  size_t n = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard.mu);
    n += shard.buckets.size();
  }
  return n;
}

}  // namespace policies
