// The LLM judge of quality records: a configured cloud model reads the conversation and both
// answers and says which is better, or that they tie. Judges of this kind prefer whichever
// answer they are shown first (or second), so every record is judged twice with the answers'
// positions swapped; a verdict that follows the position, not the answer, comes out as a split
// (delta 0, agreement false) instead of a false preference.
//
// Pieces, from pure to running:
//   buildJudgeRequest  the chat request for one order;
//   parseVerdict       the judge's reply -> A, B or tie, or an error (nothing is guessed);
//   combineVerdicts    both orders -> JudgeResult (status, delta, agreement);
//   Judge              runs both orders through a routers::Provider and prices them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "api/chat.h"
#include "api/status.h"
#include "policies/pricing.h"
#include "quality/record.h"
#include "routers/provider.h"

namespace quality {

// The criteria the judge weighs when JudgeConfig::rubric is empty.
extern const char* const kDefaultRubric;

struct JudgeConfig {
  std::string model;  // the judge's model, as the provider knows it
  // Fraction of records to judge, in [0, 1]. Read by whoever picks the records; the Judge
  // judges every record it is given.
  double sample_rate = 0;
  // USD per UTC day. Judge::judge refuses (kError, no call made) once the day's judged calls
  // have cost this much; calls in flight when the cap is reached may overshoot it by their
  // own cost.
  double daily_budget_usd = 1.0;
  std::string rubric;     // the criteria; empty: kDefaultRubric
  int max_tokens = 512;   // max_completion_tokens of each judge call
  double timeout_s = 60;  // each call's deadline, from its start
};

// The request that asks the judge about `r` with one order of the answers: Answer A is the
// local answer, or the cloud answer when `cloud_first`. A system message carries the rubric
// and the required reply, a JSON object {"winner": "A" | "B" | "tie", "reason": "..."}; a
// user message carries the conversation (`r.prompt`: text parts shown, images as "[image]",
// tool calls in one line each) and both answers, each between tags, with a note when an
// answer was cut short. The conversation keeps its last 24 KB and each answer its first
// 16 KB (cut at UTF-8 character boundaries, marked where cut). temperature 0,
// max_completion_tokens = c.max_tokens, model = c.model, not streamed.
api::ChatRequest buildJudgeRequest(const QualityRecord& r, const JudgeConfig& c, bool cloud_first);

enum class Pick { kA, kB, kTie };

// Reads the judge's verdict from its reply. The reply holds a JSON object with a "winner" key
// (any case), alone, inside a ``` fence, or among prose; its value, trimmed and in any case,
// is "A", "B" or "tie" ("draw" and "equal" also read as a tie). When the reply holds several
// such objects they must all name the same winner. Errors (kInvalidRequest, a short message):
// no such object, a winner value outside those, objects that disagree, or a reply over 64 KB.
// At most 256 opening braces are tried, which keeps hostile replies cheap; a real verdict is
// a few hundred bytes.
api::StatusOr<Pick> parseVerdict(std::string_view text);

// "A", "B", "tie"; "" for nullopt.
std::string_view pickName(std::optional<Pick> pick);

// Combines the two orders' verdicts: `local_first` judged with the local answer as A,
// `cloud_first` with the cloud answer as A (nullopt: that order did not parse). Each order
// gives the cloud answer +1 (it won), 0 (tie) or -1 (it lost); delta is their mean and
// agreement says both orders chose the same answer (or both a tie). status is kOk when both
// parsed, else kUnparsed with delta 0 and agreement false. Fills status, delta, agreement,
// verdict_ab and verdict_ba only.
JudgeResult combineVerdicts(std::optional<Pick> local_first, std::optional<Pick> cloud_first);

// Runs the judge through a Provider (a FallbackChain, or a single CloudProvider).
//
// Lifetime: `provider` and `prices` must outlive every call started by judge(); the Judge
// object itself may be destroyed while calls are in flight (the calls keep what they need).
// Thread-safe: judge() may be called from any thread, concurrently.
class Judge {
 public:
  // `prices` may be null (every call then costs 0). `now_unix_ms` is the wall clock (ms since
  // the Unix epoch) for JudgeResult::unix_ms and the daily budget; null: the system clock.
  Judge(routers::Provider& provider, JudgeConfig config, const policies::PriceTable* prices,
        std::function<int64_t()> now_unix_ms = nullptr);

  // Judges `r` in both orders, the two calls running concurrently (non-streamed, each with a
  // deadline of now + timeout_s), then calls `done` exactly once with the result:
  //   kOk        both replies parsed (combineVerdicts);
  //   kUnparsed  both calls answered but a reply did not parse; detail holds the reply text
  //              (both when both failed, "\n---\n" between), cut to 2 KB;
  //   kError     a call failed (timeout, upstream error; detail holds the error), the
  //              record is redacted (nothing to judge), or the daily budget is spent (no
  //              call made).
  // model is the route label that answered (RouteInfo::label from ChatSink::onRoute, else
  // config.model); cost_usd is both calls' usage priced at prices->find(provider, model) of
  // the target that answered (the provider's name() and config.model when the provider
  // reports no route), 0 when there is no price; unix_ms is when the result was made.
  // `done` runs on a provider thread, or on the calling thread before judge() returns when
  // the result is known at once (refusals, requests the provider rejects before sending).
  // It must not block; an exception it throws is swallowed. judge() itself never throws.
  void judge(const QualityRecord& r, std::function<void(JudgeResult)> done);

  const JudgeConfig& config() const;
  // What judged calls have cost so far in the current UTC day, USD.
  double spentTodayUsd() const;

  struct Shared;  // what the calls share with the Judge; defined in judge.cpp

 private:
  routers::Provider& provider_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace quality
