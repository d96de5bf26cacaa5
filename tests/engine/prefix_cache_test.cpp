// The prefix cache of the paged KV (engine/kv_cache.h) on the tiny random-weight presets that
// `switchyard-cli make-test-model` writes: Gemma 3 `fixture` (window 8) and Gemma 4
// `gemma-4-tiny-e` (KV sharing, PLE) and `gemma-4-tiny-moe` (K=V, experts), all with sliding
// windows far shorter than the prompts. A sequence that maps cached blocks must compute the very
// same logits, to the bit, as one that prefilled everything; blocks are shared by reference,
// copied before a write, returned when the last user goes and evicted only under pressure.
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/models/model.h"

namespace engine {
namespace {

namespace fs = std::filesystem;
constexpr int kB = KvPool::kBlockSize;

// The presets, written once per test binary into a temporary directory.
class Presets {
 public:
  static Presets& get() {
    static Presets p;
    return p;
  }
  std::unique_ptr<Model> load(const std::string& preset) {
    auto it = dirs_.find(preset);
    if (it == dirs_.end()) {
      const std::string cli = std::string(SY_BINARY_DIR) + "/switchyard-cli";
      if (!fs::exists(cli)) return nullptr;
      const std::string out = (root_ / preset).string();
      const std::string cmd =
          cli + " make-test-model --preset " + preset + " --seed 7 --out " + out + " > /dev/null";
      if (std::system(cmd.c_str()) != 0) return nullptr;
      it = dirs_.emplace(preset, out).first;
    }
    auto m = Model::load(it->second, 2);
    return m.ok() ? std::move(m).value() : nullptr;
  }

 private:
  Presets() : root_(fs::temp_directory_path() / ("sy_prefix_" + std::to_string(::getpid()))) {
    fs::create_directories(root_);
  }
  ~Presets() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  fs::path root_;
  std::map<std::string, std::string> dirs_;
};

std::vector<int32_t> randomIds(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(3, 500);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& t : ids) t = id(rng);
  return ids;
}

int32_t argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// Feeds ids[from ..) in chunks of at most `chunk`, then `decode` greedy tokens; returns the
// logits of the last prompt token and of every decoded one, concatenated.
std::vector<float> feed(Model& m, KvCache& kv, const std::vector<int32_t>& ids, int from, int chunk,
                        int decode) {
  const size_t V = static_cast<size_t>(m.config().vocab);
  std::vector<float> logits(V), out;
  for (int at = from; at < static_cast<int>(ids.size());) {
    const int n = std::min(chunk, static_cast<int>(ids.size()) - at);
    std::vector<SeqBatchItem> batch = {{&kv, ids.data() + at, n, false, logits.data()}};
    EXPECT_TRUE(m.forward(batch).ok());
    at += n;
  }
  out = logits;
  for (int i = 0; i < decode; ++i) {
    const int32_t next = argmax(logits);
    std::vector<SeqBatchItem> batch = {{&kv, &next, 1, false, logits.data()}};
    EXPECT_TRUE(m.forward(batch).ok());
    out.insert(out.end(), logits.begin(), logits.end());
  }
  return out;
}

void expectBitIdentical(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  size_t diffs = 0;
  for (size_t i = 0; i < got.size(); ++i)
    diffs += std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(want[i]);
  EXPECT_EQ(diffs, 0u) << "of " << got.size() << " logits";
}

int64_t held(const KvPool& pool) {
  int64_t n = 0;
  for (int k = 0; k < pool.numKinds(); ++k) n += pool.heldBlocks(k);
  return n;
}

class PrefixCache : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    model_ = Presets::get().load(GetParam());
    ASSERT_NE(model_, nullptr) << "could not write or load preset " << GetParam();
  }
  std::unique_ptr<Model> model_;
};

// A prompt several windows long, run once to fill the cache and again (whole, and diverging
// after 40 tokens) mapping cached blocks: the same logits, prefill and decode, as a cache that
// computed everything. The window is 8 positions and the ring wraps many times, so the sliding
// layers' blocks come from the cache too.
TEST_P(PrefixCache, CachedRunsAreBitIdenticalToUncachedOnes) {
  Model& m = *model_;
  const std::vector<int32_t> prompt = randomIds(75, 1);
  std::vector<int32_t> other = prompt;
  other.resize(40);
  const std::vector<int32_t> tail = randomIds(30, 2);
  other.insert(other.end(), tail.begin(), tail.end());

  auto pool = m.newKvPool(1024, 4, 16);
  const int most = 110;
  {
    auto first = m.newKvCache(*pool, most);
    feed(m, *first, prompt, 0, 16, 3);
  }
  EXPECT_EQ(held(*pool), 0);
  EXPECT_GT(pool->cachedBlocks(), 0);
  for (const auto& ids : {prompt, other}) {
    auto fresh = m.newKvCache(most, 16);  // its own pool: nothing cached
    const std::vector<float> want = feed(m, *fresh, ids, 0, 16, 6);
    auto kv = m.newKvCache(*pool, most);
    const int hit =
        kv->mapPrefix(ids.data(), static_cast<int>(ids.size()), static_cast<int>(ids.size()) - 1);
    EXPECT_EQ(hit, ids == prompt ? 64 : 32);
    EXPECT_EQ(kv->length(), hit);
    expectBitIdentical(feed(m, *kv, ids, hit, 16, 6), want);
  }
  EXPECT_EQ(held(*pool), 0) << "every reference is returned";
}

// The last prompt token is always prefilled, so a prompt of whole blocks maps one block less.
TEST_P(PrefixCache, TheLastPromptTokenIsNeverMapped) {
  Model& m = *model_;
  const std::vector<int32_t> prompt = randomIds(64, 3);
  auto pool = m.newKvPool(512, 2, 16);
  { feed(m, *m.newKvCache(*pool, 100), prompt, 0, 16, 0); }
  auto kv = m.newKvCache(*pool, 100);
  EXPECT_EQ(kv->mapPrefix(prompt.data(), 64, 63), 48);
  auto none = m.newKvCache(*pool, 100);
  const std::vector<int32_t> different = randomIds(64, 4);
  EXPECT_EQ(none->mapPrefix(different.data(), 64, 63), 0);
}

// Mapped blocks are shared by reference; a fork shares every block, the partial last one
// included, and each side copies a shared block before writing into it. Both then compute what
// independent caches compute, and when all are gone no block is referenced.
TEST_P(PrefixCache, ForksShareBlocksAndCopyOnWrite) {
  Model& m = *model_;
  const std::vector<int32_t> prompt = randomIds(37, 5);  // two whole blocks and 5 positions
  auto pool = m.newKvPool(512, 4, 16);
  auto leader = m.newKvCache(*pool, 90);
  const std::vector<float> prompt_logits = feed(m, *leader, prompt, 0, 16, 0);
  auto fork = leader->fork();
  EXPECT_EQ(fork->length(), leader->length());
  for (int k = 0; k < pool->numKinds(); ++k) {
    for (int b = 0; b < leader->blocksHeld(k); ++b) {
      EXPECT_EQ(fork->block(k, b), leader->block(k, b));
      EXPECT_EQ(pool->refCount(k, leader->block(k, b)), 2);
    }
  }
  // Different continuations: each must match a cache that never shared anything.
  std::vector<int32_t> a = prompt, b = prompt;
  a.push_back(argmax(prompt_logits));
  b.push_back(7);
  const std::vector<float> got_a = feed(m, *leader, a, 37, 16, 5);
  const std::vector<float> got_b = feed(m, *fork, b, 37, 16, 5);
  for (int k = 0; k < pool->numKinds(); ++k) {
    if (leader->blocksHeld(k) <= 2) continue;  // a sliding ring of 2 blocks, wrapped
    EXPECT_NE(fork->block(k, 2), leader->block(k, 2)) << "the partial block was copied";
  }
  auto alone_a = m.newKvCache(90, 16), alone_b = m.newKvCache(90, 16);
  expectBitIdentical(got_a, feed(m, *alone_a, a, 0, 16, 5));
  expectBitIdentical(got_b, feed(m, *alone_b, b, 0, 16, 5));
  leader.reset();
  EXPECT_GT(held(*pool), 0);
  fork.reset();
  EXPECT_EQ(held(*pool), 0);
}

// Cached blocks stay while the pool has free ones, and are evicted, oldest first, only when a
// sequence needs them; a prefix whose blocks were evicted is computed again, correctly.
TEST_P(PrefixCache, EvictionOnlyUnderPoolPressure) {
  Model& m = *model_;
  auto pool = m.newKvPool(96, 3, 16);  // 6 blocks per kind
  const std::vector<int32_t> p1 = randomIds(48, 6), p2 = randomIds(80, 7);
  { feed(m, *m.newKvCache(*pool, 96), p1, 0, 16, 0); }
  const int64_t cached = pool->cachedBlocks();
  EXPECT_GT(cached, 0);
  {
    auto kv = m.newKvCache(*pool, 96);
    ASSERT_TRUE(kv->reserve(16));  // one block: taken from the free ones
    EXPECT_EQ(pool->cachedBlocks(), cached) << "nothing evicted while free blocks remain";
  }
  { feed(m, *m.newKvCache(*pool, 96), p2, 0, 16, 0); }  // needs p1's blocks
  auto again = m.newKvCache(*pool, 96);
  EXPECT_LT(again->mapPrefix(p1.data(), 48, 47), 32) << "p1's blocks were evicted";
  auto fresh = m.newKvCache(96, 16);
  const int hit = again->length();
  expectBitIdentical(feed(m, *again, p1, hit, 16, 3), feed(m, *fresh, p1, 0, 16, 3));
  again.reset();
  EXPECT_EQ(held(*pool), 0);
}

INSTANTIATE_TEST_SUITE_P(Presets, PrefixCache,
                         ::testing::Values("fixture", "gemma-4-tiny-e", "gemma-4-tiny-moe"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (c == '-') c = '_';
                           return name;
                         });

}  // namespace
}  // namespace engine
