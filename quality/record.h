// A quality record (DESIGN.md "quality/"): two answers to one prompt, the local engine's and a
// cloud model's, with what the router knew when it chose and what each side cost. Records come
// from cascade escalations (the local draft, complete or as far as it got, and the cloud answer
// that replaced it) and from shadow samples (the client got the local answer; the cloud call ran
// afterwards, off the request path). Judges, user feedback, exports, calibration and reports all
// read these.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/chat.h"

namespace quality {

enum class RecordKind {
  kEscalation,  // the cascade escalated after a local draft
  kShadow,      // sampled: the local answer was served, the cloud answered afterwards
};
std::string_view kindName(RecordKind kind);  // "escalation", "shadow"
std::optional<RecordKind> parseKind(std::string_view name);

// One side of the pair.
struct Answer {
  std::string model;           // the target that answered, "<provider>/<model>"
  std::string text;            // the answer's text ("" when redacted)
  bool complete = true;        // false: cut short (a local draft stopped by the escalation)
  std::string finish_reason;   // "stop", "length", "tool_calls", ... ("" when unknown)
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  // USD. Cloud: the provider-reported usage at the configured prices. Local: the answer's share
  // of the accelerator's busy time at the configured price per GPU hour.
  double cost_usd = 0;
  double latency_ms = 0;       // from the start of this side's call to its last byte
};

// A named input of a score: a complexity feature (routers/complexity.h) or a confidence feature
// (routers/confidence.h: "top1", "margin", "certainty", "top1_tail", "margin_tail",
// "certainty_tail", each in [0, 1], and "mean_entropy" in nats; records made before these carry
// "mean_logprob", "min_window_logprob" and "mean_entropy", of the sampled tokens).
struct Feature {
  std::string name;
  double value = 0;
};

// Cheap metrics of how far apart the two answers are (quality/text_metrics.h).
struct TextMetrics {
  bool exact_match = false;  // equal after trimming and collapsing whitespace
  double token_f1 = 0;       // in [0, 1]
  double rouge_l = 0;        // in [0, 1], ROUGE-L F-measure over tokens
  double length_ratio = 0;   // local tokens / cloud tokens (0 when the cloud answer is empty)
  // Set only when at least one side looks like JSON (starts with { or [ after whitespace and
  // an optional ``` fence): whether both parse, and whether they are equal as JSON values.
  std::optional<bool> json_both_parse;
  std::optional<bool> json_agree;
};

// The LLM judge's verdict (quality/judge.h).
enum class JudgeStatus {
  kOk,        // both orders parsed
  kUnparsed,  // the judge answered, but at least one answer did not parse; nothing guessed
  kError,     // a call failed (timeout, upstream error) or was refused (judge budget)
  kSkippedPolicy,  // not sent: the record's team keeps its data from the judge's model
};
// "ok", "unparsed", "error", "skipped_policy"
std::string_view judgeStatusName(JudgeStatus status);
std::optional<JudgeStatus> parseJudgeStatus(std::string_view name);

struct JudgeResult {
  JudgeStatus status = JudgeStatus::kError;
  std::string model;          // the judge's model
  // Cloud-over-local preference in [-1, 1], the mean of both orders (+1: cloud better in both,
  // 0: tie or a split). Only meaningful with kOk.
  double delta = 0;
  bool agreement = false;     // both orders named the same winner (or both a tie)
  std::string verdict_ab;     // "A", "B", "tie" or "" (unparsed), local shown as A
  std::string verdict_ba;     // the same with the order swapped (cloud shown as A)
  std::string detail;         // unparsed judge text (cut to 2 KB) or the error message
  double cost_usd = 0;
  int64_t unix_ms = 0;
};

// What a user said of an answer (POST /v1/feedback).
struct Feedback {
  std::string request_id;
  std::string team;
  double score = 0;      // in [-1, 1]: -1 bad, 0 neutral, +1 good; of the answer the user got
  std::string comment;   // may be empty; at most 4 KB
  int64_t unix_ms = 0;
};

struct QualityRecord {
  int64_t id = 0;           // the store's row id (0 before insertion)
  std::string request_id;
  int64_t unix_ms = 0;      // when the record was made (ms since the Unix epoch, UTC)
  std::string team;
  RecordKind kind = RecordKind::kEscalation;
  std::string model;        // the model the client asked for ("auto", "gemma-3-local", ...)
  std::string reason;       // why it escalated / "shadow"
  // The request's messages as OpenAI chat messages (a JSON array), or null when the team's
  // policy redacts prompts; `redacted` then holds and both answers' texts are empty.
  api::Json prompt;
  bool redacted = false;
  Answer local;
  Answer cloud;
  std::optional<double> complexity;          // [0, 1]
  std::vector<Feature> complexity_features;  // every feature's value in [0, 1]
  std::optional<double> confidence;          // [0, 1]
  std::vector<Feature> confidence_features;
  std::optional<TextMetrics> metrics;
  std::optional<JudgeResult> judge;
  std::optional<Feedback> feedback;  // the latest, when the team's user sent any

  // The cloud-over-local delta in [-1, 1]: from user feedback when present, else from the
  // judge when it parsed (kOk), else none. Feedback rates the answer the user got: the local
  // one for shadow samples (a good local answer means the cloud was not needed: delta =
  // -score), the cloud one for escalations (a good cloud answer means the escalation paid:
  // delta = +score).
  std::optional<double> delta() const;
  // The feature named `name` of the complexity (confidence) features; nullopt when absent.
  std::optional<double> complexityFeature(std::string_view name) const;
  std::optional<double> confidenceFeature(std::string_view name) const;
};

}  // namespace quality
