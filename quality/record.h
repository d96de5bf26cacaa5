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

// The scale a user's feedback score is given on (POST /v1/feedback `scale`). The score is
// stored as sent, with its scale; it is normalised to [-1, 1] only when read (normalized()).
enum class FeedbackScale {
  kUnit,    // "unit": a number in [-1, 1] (-1 bad, 0 neutral, +1 good); the default
  kThumbs,  // "thumbs": -1 (thumbs down) or +1 (thumbs up)
  kStars,   // "stars": a whole number of stars from 1 (bad) to 5 (good); 3 is neutral
};
// "unit", "thumbs", "stars"
std::string_view feedbackScaleName(FeedbackScale scale);
std::optional<FeedbackScale> parseFeedbackScale(std::string_view name);
// The scale's range in words, for errors and docs: "a number from -1 to 1", ...
std::string_view feedbackScaleRange(FeedbackScale scale);
// Whether `score` is a valid score on `scale` (finite, in range; stars whole, thumbs ±1).
bool feedbackScoreValid(FeedbackScale scale, double score);

// What a user said of an answer (POST /v1/feedback): a signal of its own, beside the judge's.
struct Feedback {
  std::string request_id;
  std::string team;
  double score = 0;      // as sent, on `scale`; of the answer the user got
  std::string comment;   // may be empty; at most 4 KB
  int64_t unix_ms = 0;
  FeedbackScale scale = FeedbackScale::kUnit;

  // The score on [-1, 1] (-1 bad, 0 neutral, +1 good): unit as is (clamped), thumbs as its
  // sign, stars as (stars - 3) / 2. NaN when the score is not a number.
  double normalized() const;
};

// Where a record's cloud-over-local delta comes from (QualityRecord::delta()).
enum class DeltaSource {
  kJudge,          // the LLM judge's verdict only; user feedback is a separate signal
  kFeedbackFirst,  // the user's feedback when there is any, else the judge's verdict
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
  // The probability with which this record was made, in (0, 1]: 1 for records made every
  // time (escalations), the team's routing.shadow_rate when it was made (shadow samples).
  // Estimates over a set of records (reports, calibration) weight each by weight() =
  // 1 / sampling_p, so that rarely sampled kinds count for the traffic they stand for.
  // Records stored before the field existed read as 1. Selection that is not random is not
  // in it: shadows skipped while the team's budget is exhausted, records dropped by a full
  // recorder queue. The judge samples stored records uniformly (quality.judge.sample_rate, the
  // same for every record), so judged records keep these weights relative to each other.
  double sampling_p = 1;

  // 1 / sampling_p; 1 when sampling_p is not a probability above 0 (a damaged row).
  double weight() const;

  // The judge's cloud-over-local delta in [-1, 1] when its verdict parsed (kOk), else none.
  std::optional<double> judgeDelta() const;
  // The user's feedback as a cloud-over-local delta in [-1, 1], else none. Feedback rates the
  // answer the user got: the local one for shadow samples (a good local answer means the
  // cloud was not needed: delta = -normalized score), the cloud one for escalations (a good
  // cloud answer means the escalation paid: delta = +normalized score).
  std::optional<double> feedbackDelta() const;
  // The delta that calibration, reports and exports use: the judge's (kJudge, the default),
  // or the feedback's when there is any, else the judge's (kFeedbackFirst, an explicit option).
  std::optional<double> delta(DeltaSource source = DeltaSource::kJudge) const;
  // The feature named `name` of the complexity (confidence) features; nullopt when absent.
  std::optional<double> complexityFeature(std::string_view name) const;
  std::optional<double> confidenceFeature(std::string_view name) const;
};

}  // namespace quality
