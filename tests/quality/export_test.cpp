// Fine-tuning exports (quality/export.h): which records become SFT examples and DPO pairs, in
// which shape, under each filter, with near-duplicate prompts dropped; every line parsed back.
#include "quality/export.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using quality::Answer;
using quality::ExportFilter;
using quality::ExportStats;
using quality::QualityRecord;

api::Json userPrompt(const std::string& text) {
  return api::Json::array({{{"role", "user"}, {"content", text}}});
}

// A record the judge scored `delta` (agreeing in both orders), with distinct answers.
QualityRecord record(int64_t id, const std::string& prompt, double delta) {
  QualityRecord r;
  r.id = id;
  r.request_id = "req-" + std::to_string(id);
  r.unix_ms = 1'700'000'000'000 + id * 1000;
  r.team = "research";
  r.model = "auto";
  r.prompt = userPrompt(prompt);
  r.local.model = "local/gemma-3-local";
  r.local.text = "local answer " + std::to_string(id);
  r.cloud.model = "openai/gpt-4o-mini";
  r.cloud.text = "cloud answer " + std::to_string(id);
  quality::JudgeResult j;
  j.status = quality::JudgeStatus::kOk;
  j.delta = delta;
  j.agreement = true;
  r.judge = j;
  return r;
}

ExportFilter noDedup() {
  ExportFilter f;
  f.dedup = false;
  return f;
}

// Parses every line of `out` (each must be one JSON object) and fails the test otherwise.
std::vector<api::Json> lines(const std::string& out) {
  std::vector<api::Json> parsed;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    api::Json j = api::Json::parse(line, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << line;
    EXPECT_TRUE(j.is_object()) << line;
    parsed.push_back(j);
  }
  if (!out.empty()) {
    EXPECT_EQ(out.back(), '\n');
  }
  return parsed;
}

struct Exported {
  ExportStats stats;
  std::vector<api::Json> lines;
};

Exported sft(const std::vector<QualityRecord>& records, const ExportFilter& f) {
  std::ostringstream out;
  Exported run;
  run.stats = quality::exportSft(records, f, out);
  run.lines = lines(out.str());
  EXPECT_EQ(run.stats.written, run.lines.size());
  return run;
}

Exported dpo(const std::vector<QualityRecord>& records, const ExportFilter& f) {
  std::ostringstream out;
  Exported run;
  run.stats = quality::exportDpo(records, f, out);
  run.lines = lines(out.str());
  EXPECT_EQ(run.stats.written, run.lines.size());
  return run;
}

size_t skipped(const ExportStats& s, const std::string& reason) {
  auto it = s.skipped.find(reason);
  return it == s.skipped.end() ? 0 : it->second;
}

void expectAccounted(const ExportStats& s) {
  size_t total = s.written;
  for (const auto& [reason, n] : s.skipped) total += n;
  EXPECT_EQ(total, s.records);
}

std::string lastContent(const api::Json& messages) {
  return messages.back().at("content").get<std::string>();
}

// A long prompt of `n` words drawn from a fixed vocabulary with `rng`.
std::vector<std::string> randomWords(std::mt19937_64& rng, size_t n) {
  static const std::vector<std::string> kVocab = [] {
    std::vector<std::string> v;
    for (int i = 0; i < 3000; ++i) v.push_back("term" + std::to_string(i));
    return v;
  }();
  std::vector<std::string> words;
  for (size_t i = 0; i < n; ++i) words.push_back(kVocab[rng() % kVocab.size()]);
  return words;
}

std::string join(const std::vector<std::string>& words) {
  std::string s;
  for (const std::string& w : words) {
    if (!s.empty()) s += ' ';
    s += w;
  }
  return s;
}

// ---- SFT and DPO shapes ---------------------------------------------------------------------

TEST(ExportSft, WritesOnlyCloudWinsWithTheCloudAnswerAsTarget) {
  std::vector<QualityRecord> records = {
      record(1, "prove that there are infinitely many primes", 0.8),
      record(2, "say hi", -0.6),
      record(3, "what is two plus two", 0),
      record(4, "write a haiku about the sea", 0.25),
  };
  Exported run = sft(records, noDedup());
  ASSERT_EQ(run.lines.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const api::Json& messages = run.lines[i].at("messages");
    ASSERT_EQ(run.lines[i].size(), 2u);  // nothing but "messages" and "sampling_p"
    EXPECT_EQ(run.lines[i].at("sampling_p"), 1.0);
    ASSERT_EQ(messages.size(), 2u);
    EXPECT_EQ(messages[0].at("role"), "user");
    EXPECT_EQ(messages[1].at("role"), "assistant");
  }
  EXPECT_EQ(run.lines[0]["messages"][0]["content"], "prove that there are infinitely many primes");
  EXPECT_EQ(lastContent(run.lines[0]["messages"]), "cloud answer 1");
  EXPECT_EQ(lastContent(run.lines[1]["messages"]), "cloud answer 4");
  EXPECT_EQ(skipped(run.stats, "below_min_delta"), 2u);
  expectAccounted(run.stats);
}

TEST(ExportDpo, ChosenIsTheSideTheDeltaFavours) {
  std::vector<QualityRecord> records = {
      record(1, "prove that there are infinitely many primes", 0.8),
      record(2, "say hi", -0.6),
      record(3, "what is two plus two", 0),
  };
  Exported run = dpo(records, noDedup());
  ASSERT_EQ(run.lines.size(), 2u);
  const api::Json& cloud_won = run.lines[0];
  EXPECT_EQ(cloud_won.at("prompt"), userPrompt("prove that there are infinitely many primes"));
  EXPECT_EQ(cloud_won.at("chosen"),
            api::Json::array({{{"role", "assistant"}, {"content", "cloud answer 1"}}}));
  EXPECT_EQ(cloud_won.at("rejected"),
            api::Json::array({{{"role", "assistant"}, {"content", "local answer 1"}}}));
  const api::Json& local_won = run.lines[1];
  EXPECT_EQ(local_won.at("chosen")[0].at("content"), "local answer 2");
  EXPECT_EQ(local_won.at("rejected")[0].at("content"), "cloud answer 2");
  EXPECT_EQ(skipped(run.stats, "below_min_delta"), 1u);  // the tie
  expectAccounted(run.stats);
}

TEST(ExportSft, KeepsContentPartsAndOnlyTheFieldsTheFormatAccepts) {
  QualityRecord r = record(1, "unused", 0.9);
  r.prompt = api::Json::parse(R"([
    {"role": "developer", "content": "Be terse.", "x_trace": "drop me"},
    {"role": "user", "name": "ana", "content": [
      {"type": "text", "text": "What is in this picture?"},
      {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}}]},
    {"role": "assistant", "content": null, "audio": {"id": "audio_1"},
     "tool_calls": [{"id": "call_1", "type": "function",
                     "function": {"name": "lookup", "arguments": "{\"q\":\"cat\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "name": "lookup", "content": "a cat"}
  ])");
  Exported run = sft({r}, noDedup());
  ASSERT_EQ(run.lines.size(), 1u);
  const api::Json& m = run.lines[0].at("messages");
  ASSERT_EQ(m.size(), 5u);
  EXPECT_EQ(m[0], api::Json({{"role", "system"}, {"content", "Be terse."}}));
  EXPECT_EQ(m[1], r.prompt[1]);  // content parts exactly as recorded
  EXPECT_EQ(m[2], api::Json({{"role", "assistant"}, {"tool_calls", r.prompt[2]["tool_calls"]}}));
  EXPECT_EQ(m[3], api::Json({{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "a cat"}}));
  EXPECT_EQ(m[4], api::Json({{"role", "assistant"}, {"content", "cloud answer 1"}}));
}

TEST(ExportSft, SkipsPromptsThatAreNotChatMessages) {
  std::vector<QualityRecord> records(4, record(1, "x", 0.9));
  records[0].prompt = api::Json::array();
  records[1].prompt = api::Json::parse(R"([{"role": "narrator", "content": "hi"}])");
  records[2].prompt = api::Json::parse(R"({"role": "user", "content": "not an array"})");
  records[3].prompt = api::Json::parse(R"([{"role": "user", "content": 42}])");
  Exported run = sft(records, noDedup());
  EXPECT_EQ(run.stats.written, 0u);
  EXPECT_EQ(skipped(run.stats, "invalid_prompt"), 4u);
}

TEST(ExportSft, WritesValidUtf8WhateverTheRecordHolds) {
  QualityRecord r = record(1, "caf\xc3\xa9 \xff\xfe broken", 0.9);
  r.cloud.text = "ok \xe2\x82 cut mid-character, then \"quotes\"\nand a newline";
  std::ostringstream out;
  quality::exportSft({r}, noDedup(), out);
  std::vector<api::Json> parsed = lines(out.str());
  ASSERT_EQ(parsed.size(), 1u);
  const std::string prompt = parsed[0]["messages"][0]["content"];
  EXPECT_EQ(prompt, "caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd broken");  // U+FFFD per bad byte
  const std::string target = lastContent(parsed[0]["messages"]);
  EXPECT_NE(target.find("\xef\xbf\xbd"), std::string::npos);
  EXPECT_NE(target.find("\"quotes\"\nand a newline"), std::string::npos);
}

TEST(ExportSft, OrdersByTimeThenIdWhateverTheInputOrder) {
  std::vector<QualityRecord> records = {record(5, "e five", 0.5), record(3, "c three", 0.5),
                                        record(4, "d four", 0.5), record(1, "a one", 0.5)};
  records[2].unix_ms = records[1].unix_ms;  // 4 ties with 3 on time: id decides
  Exported run = sft(records, noDedup());
  std::vector<std::string> targets;
  for (const api::Json& l : run.lines) targets.push_back(lastContent(l["messages"]));
  EXPECT_EQ(targets, (std::vector<std::string>{"cloud answer 1", "cloud answer 3", "cloud answer 4",
                                               "cloud answer 5"}));
}

// ---- what is never exported ------------------------------------------------------------------

TEST(ExportSft, NeverExportsRedactedRecordsOrEmptyAnswers) {
  QualityRecord redacted = record(1, "secret", 0.9);
  redacted.prompt = nullptr;
  redacted.redacted = true;
  redacted.local.text.clear();
  redacted.cloud.text.clear();
  QualityRecord empty_cloud = record(2, "a question", 0.9);
  empty_cloud.cloud.text = "  \n";
  QualityRecord no_delta = record(3, "another question", 0.9);
  no_delta.judge->status = quality::JudgeStatus::kUnparsed;

  Exported s = sft({redacted, empty_cloud, no_delta}, noDedup());
  EXPECT_EQ(s.stats.written, 0u);
  EXPECT_EQ(skipped(s.stats, "redacted"), 1u);
  EXPECT_EQ(skipped(s.stats, "empty_answer"), 1u);
  EXPECT_EQ(skipped(s.stats, "no_delta"), 1u);

  QualityRecord empty_local = record(4, "a third question", 0.9);
  empty_local.local.text.clear();
  Exported d = dpo({redacted, empty_cloud, empty_local}, noDedup());
  EXPECT_EQ(d.stats.written, 0u);
  EXPECT_EQ(skipped(d.stats, "redacted"), 1u);
  EXPECT_EQ(skipped(d.stats, "empty_answer"), 2u);  // a pair needs both sides
  expectAccounted(d.stats);
}

TEST(ExportDpo, PartialDraftsAreRejectedSidesOnlyWhenAllowed) {
  QualityRecord cut_loser = record(1, "explain monads", 0.7);
  cut_loser.local.complete = false;  // the escalation stopped the local draft
  QualityRecord cut_winner = record(2, "explain functors", -0.7);
  cut_winner.local.complete = false;

  Exported strict = dpo({cut_loser, cut_winner}, noDedup());
  EXPECT_EQ(strict.stats.written, 0u);
  EXPECT_EQ(skipped(strict.stats, "partial"), 2u);

  ExportFilter f = noDedup();
  f.include_partial = true;
  Exported lenient = dpo({cut_loser, cut_winner}, f);
  ASSERT_EQ(lenient.lines.size(), 1u);  // a cut-short draft is never the chosen side
  EXPECT_EQ(lenient.lines[0]["rejected"][0]["content"], "local answer 1");
  EXPECT_EQ(skipped(lenient.stats, "partial"), 1u);

  // SFT never uses the local draft, so a cut-short one does not matter there.
  Exported s = sft({cut_loser}, noDedup());
  EXPECT_EQ(s.stats.written, 1u);
}

// ---- filters ------------------------------------------------------------------------------

TEST(ExportFilter, TeamAndHalfOpenTimeWindow) {
  std::vector<QualityRecord> records = {record(1, "q one", 0.5), record(2, "q two", 0.5),
                                        record(3, "q three", 0.5), record(4, "q four", 0.5)};
  records[3].team = "ops";
  ExportFilter f = noDedup();
  f.team = "research";
  f.since_ms = records[1].unix_ms;  // inclusive
  f.until_ms = records[2].unix_ms;  // exclusive
  Exported run = sft(records, f);
  ASSERT_EQ(run.lines.size(), 1u);
  EXPECT_EQ(lastContent(run.lines[0]["messages"]), "cloud answer 2");
  EXPECT_EQ(skipped(run.stats, "filtered"), 3u);

  f = noDedup();
  f.team = "ops";
  EXPECT_EQ(dpo(records, f).stats.written, 1u);
}

TEST(ExportFilter, MinDeltaUsesTheSignForSftAndTheSizeForDpo) {
  std::vector<QualityRecord> records = {record(1, "q one", 0.8), record(2, "q two", 0.3),
                                        record(3, "q three", -0.6), record(4, "q four", -0.2),
                                        record(5, "q five", 0.5)};
  ExportFilter f = noDedup();
  f.min_delta = 0.5;
  Exported s = sft(records, f);
  EXPECT_EQ(s.stats.written, 2u);  // 0.8 and 0.5 (inclusive)
  EXPECT_EQ(skipped(s.stats, "below_min_delta"), 3u);
  Exported d = dpo(records, f);
  EXPECT_EQ(d.stats.written, 3u);  // 0.8, -0.6, 0.5
  ASSERT_EQ(d.lines.size(), 3u);
  EXPECT_EQ(d.lines[1]["chosen"][0]["content"], "local answer 3");
}

TEST(ExportFilter, AgreementIsRequiredOfTheJudgeButNotOfFeedback) {
  QualityRecord split = record(1, "q one", 0.5);
  split.judge->agreement = false;
  QualityRecord rated = record(2, "q two", 0.5);
  rated.judge->agreement = false;  // the judge split, but the user spoke
  quality::Feedback fb;
  fb.score = 1;  // a good cloud answer on an escalation: delta +1
  rated.feedback = fb;
  QualityRecord agreed = record(3, "q three", 0.5);

  ExportFilter f = noDedup();
  EXPECT_EQ(sft({split, rated, agreed}, f).stats.written, 3u);
  f.require_agreement = true;
  // The delta is the judge's: the user's feedback does not stand in for a split verdict.
  Exported run = sft({split, rated, agreed}, f);
  EXPECT_EQ(run.stats.written, 1u);
  EXPECT_EQ(skipped(run.stats, "disagreement"), 2u);
  // Unless asked for: then the user's delta needs no second order.
  f.labels = quality::DeltaSource::kFeedbackFirst;
  run = sft({split, rated, agreed}, f);
  EXPECT_EQ(run.stats.written, 2u);
  EXPECT_EQ(skipped(run.stats, "disagreement"), 1u);
}

TEST(ExportFilter, FeedbackDoesNotReplaceTheJudgeUnlessAskedFor) {
  // The judge prefers the cloud; the user rated the cloud answer of this escalation 1 star of
  // 5 (delta -1): with the judge's delta it is an sft line, with the user's it is not.
  QualityRecord r = record(1, "q one", 0.6);
  quality::Feedback fb;
  fb.score = 1;
  fb.scale = quality::FeedbackScale::kStars;
  r.feedback = fb;
  ExportFilter f = noDedup();
  EXPECT_EQ(sft({r}, f).stats.written, 1u);
  f.labels = quality::DeltaSource::kFeedbackFirst;
  Exported run = sft({r}, f);
  EXPECT_EQ(run.stats.written, 0u);
  EXPECT_EQ(skipped(run.stats, "below_min_delta"), 1u);
  Exported pair = dpo({r}, f);
  ASSERT_EQ(pair.lines.size(), 1u);
  EXPECT_EQ(pair.lines[0]["chosen"][0]["content"], "local answer 1");
}

TEST(ExportFilter, EveryLineCarriesItsSamplingProbability) {
  QualityRecord escalation = record(1, "q one", 0.6);
  QualityRecord shadow = record(2, "q two", 0.7);
  shadow.kind = quality::RecordKind::kShadow;
  shadow.sampling_p = 0.02;
  for (bool is_sft : {true, false}) {
    Exported run =
        is_sft ? sft({escalation, shadow}, noDedup()) : dpo({escalation, shadow}, noDedup());
    ASSERT_EQ(run.lines.size(), 2u);
    EXPECT_EQ(run.lines[0]["sampling_p"], 1.0);
    EXPECT_EQ(run.lines[1]["sampling_p"], 0.02);
  }
  ExportFilter f = noDedup();
  f.sampling_p_field = false;
  Exported run = sft({escalation, shadow}, f);
  ASSERT_EQ(run.lines.size(), 2u);
  EXPECT_FALSE(run.lines[0].contains("sampling_p"));
}

// ---- near-duplicate prompts ------------------------------------------------------------------

TEST(ExportDedup, DropsNearIdenticalPromptsKeepingTheStrongestDelta) {
  std::mt19937_64 rng(42);
  std::vector<std::string> words = randomWords(rng, 1000);
  const std::string base = join(words);
  std::vector<std::string> edited = words;
  edited[500] = "substituted";

  std::vector<QualityRecord> records = {
      record(1, base, 0.4),
      record(2, base + " ", 0.9),    // a trailing space
      record(3, base + "?!", 0.6),   // punctuation
      record(4, "  " + base, 0.5),   // leading whitespace
      record(5, join(edited), 0.7),  // one word of a thousand
      record(6, "What is the capital of France?", 0.5),
      record(7, "What is the capital of Spain?", 0.5),
  };
  Exported run = sft(records, ExportFilter{});
  ASSERT_EQ(run.lines.size(), 3u);
  EXPECT_EQ(lastContent(run.lines[0]["messages"]), "cloud answer 2");  // |delta| 0.9 wins
  EXPECT_EQ(lastContent(run.lines[1]["messages"]), "cloud answer 6");
  EXPECT_EQ(lastContent(run.lines[2]["messages"]), "cloud answer 7");
  EXPECT_EQ(skipped(run.stats, "duplicate"), 4u);
  expectAccounted(run.stats);

  ExportFilter off;
  off.dedup = false;
  EXPECT_EQ(sft(records, off).stats.written, 7u);
}

TEST(ExportDedup, TiesGoToTheNewest) {
  std::vector<QualityRecord> records = {record(1, "Summarise this report, please.", -0.5),
                                        record(2, "summarise this report please", 0.5),
                                        record(3, "Summarise this report please!", -0.5)};
  Exported run = dpo(records, ExportFilter{});
  ASSERT_EQ(run.lines.size(), 1u);
  EXPECT_EQ(run.lines[0]["chosen"][0]["content"], "local answer 3");
}

TEST(ExportDedup, CatchesMostOneWordEditsOfLongPromptsAndNoDifferentPrompts) {
  std::mt19937_64 rng(7);
  int caught = 0;
  constexpr int kTrials = 100;
  for (int t = 0; t < kTrials; ++t) {
    std::vector<std::string> words = randomWords(rng, 1000);
    const uint64_t a = quality::simHash(join(words));
    words[rng() % words.size()] = "edited";
    caught += quality::hammingDistance(a, quality::simHash(join(words))) <= 3 ? 1 : 0;
  }
  EXPECT_GE(caught, 80) << "of " << kTrials;

  int confused = 0;
  for (int t = 0; t < kTrials; ++t) {
    const uint64_t a = quality::simHash(join(randomWords(rng, 40)));
    const uint64_t b = quality::simHash(join(randomWords(rng, 40)));
    confused += quality::hammingDistance(a, b) <= 3 ? 1 : 0;
  }
  EXPECT_EQ(confused, 0);
}

TEST(ExportDedup, ASharedSystemPromptDoesNotMakeDifferentQuestionsDuplicates) {
  std::mt19937_64 rng(3);
  const std::string system = join(randomWords(rng, 600));
  std::vector<QualityRecord> records;
  for (int i = 0; i < 40; ++i) {
    QualityRecord r = record(i + 1, "", 0.5);
    r.prompt = api::Json::array({{{"role", "system"}, {"content", system}},
                                 {{"role", "user"}, {"content", join(randomWords(rng, 12))}}});
    records.push_back(r);
  }
  // The whole prompts are mostly the shared system prompt, so their hashes are close...
  int close = 0;
  for (size_t i = 1; i < records.size(); ++i) {
    const uint64_t a = quality::promptFingerprint(records[0].prompt).whole;
    const uint64_t b = quality::promptFingerprint(records[i].prompt).whole;
    close += quality::hammingDistance(a, b) <= 3 ? 1 : 0;
  }
  EXPECT_GT(close, 0);
  // ...but the questions differ, and none is dropped.
  EXPECT_EQ(sft(records, ExportFilter{}).stats.written, records.size());

  // The same question again under the same system prompt is a duplicate.
  QualityRecord again = records[5];
  again.id = 100;
  again.unix_ms += 1;
  records.push_back(again);
  Exported run = sft(records, ExportFilter{});
  EXPECT_EQ(run.stats.written, 40u);
  EXPECT_EQ(skipped(run.stats, "duplicate"), 1u);
}

TEST(ExportDedup, TheIndexFindsWhatComparingEveryPairFinds) {
  // Families of prompts with a few words edited, half under one shared system prompt.
  std::mt19937_64 rng(11);
  const std::string system = join(randomWords(rng, 300));
  std::vector<QualityRecord> records;
  for (int family = 0; family < 30; ++family) {
    const std::vector<std::string> base = randomWords(rng, 150);
    for (int member = 0; member < 8; ++member) {
      std::vector<std::string> words = base;
      for (uint64_t e = rng() % 4; e > 0; --e) words[rng() % words.size()] = "edit";
      const int64_t id = static_cast<int64_t>(records.size()) + 1;
      QualityRecord r = record(id, join(words), 0.1 + 0.1 * static_cast<double>(rng() % 9));
      if (family % 2 == 0) {
        r.prompt = api::Json::array({{{"role", "system"}, {"content", system}},
                                     {{"role", "user"}, {"content", join(words)}}});
      }
      records.push_back(r);
    }
  }
  for (int d : {0, 2, 3, 5, 7, 8, 12}) {
    // The greedy rule, written out: strongest |delta| first (then newest), kept unless near a
    // prompt already kept.
    std::vector<const QualityRecord*> order;
    for (const QualityRecord& r : records) order.push_back(&r);
    std::sort(order.begin(), order.end(), [](const QualityRecord* a, const QualityRecord* b) {
      if (a->judge->delta != b->judge->delta) return a->judge->delta > b->judge->delta;
      if (a->unix_ms != b->unix_ms) return a->unix_ms > b->unix_ms;
      return a->id > b->id;
    });
    std::vector<quality::PromptFingerprint> kept;
    for (const QualityRecord* r : order) {
      const quality::PromptFingerprint fp = quality::promptFingerprint(r->prompt);
      if (std::none_of(kept.begin(), kept.end(), [&](const quality::PromptFingerprint& k) {
            return quality::nearIdentical(fp, k, d);
          })) {
        kept.push_back(fp);
      }
    }
    ExportFilter f;
    f.dedup_max_distance = d;
    Exported run = sft(records, f);
    EXPECT_EQ(run.stats.written, kept.size()) << "distance " << d;
    EXPECT_EQ(skipped(run.stats, "duplicate"), records.size() - kept.size()) << "distance " << d;
  }
}

TEST(ExportDedup, DistanceZeroStillMergesPromptsThatNormalizeAlike) {
  ExportFilter f;
  f.dedup_max_distance = 0;
  std::vector<QualityRecord> records = {record(1, "Hello, World", 0.5),
                                        record(2, "hello world!!", 0.5),
                                        record(3, "hello there world", 0.5)};
  EXPECT_EQ(sft(records, f).stats.written, 2u);
  f.dedup_max_distance = 64;  // everything is near everything
  EXPECT_EQ(sft(records, f).stats.written, 1u);
}

TEST(ExportDedup, NonTextPartsKeepPromptsApart) {
  auto withImage = [](const std::string& url) {
    return api::Json::array(
        {{{"role", "user"},
          {"content",
           api::Json::array({{{"type", "text"}, {"text", "Describe this image."}},
                             {{"type", "image_url"}, {"image_url", {{"url", url}}}}})}}});
  };
  std::vector<QualityRecord> records = {record(1, "", 0.5), record(2, "", 0.5)};
  records[0].prompt = withImage("https://example.com/a.png");
  records[1].prompt = withImage("https://example.com/b.png");
  EXPECT_EQ(sft(records, ExportFilter{}).stats.written, 2u);
  records[1].prompt = withImage("https://example.com/a.png");
  EXPECT_EQ(sft(records, ExportFilter{}).stats.written, 1u);
}

}  // namespace
