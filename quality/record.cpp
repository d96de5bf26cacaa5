#include "quality/record.h"

#include <algorithm>
#include <cmath>

namespace quality {

std::string_view kindName(RecordKind kind) {
  return kind == RecordKind::kShadow ? "shadow" : "escalation";
}

std::optional<RecordKind> parseKind(std::string_view name) {
  if (name == "escalation") return RecordKind::kEscalation;
  if (name == "shadow") return RecordKind::kShadow;
  return std::nullopt;
}

std::string_view judgeStatusName(JudgeStatus status) {
  switch (status) {
    case JudgeStatus::kOk:
      return "ok";
    case JudgeStatus::kUnparsed:
      return "unparsed";
    case JudgeStatus::kError:
      return "error";
    case JudgeStatus::kSkippedPolicy:
      return "skipped_policy";
  }
  return "error";
}

std::optional<JudgeStatus> parseJudgeStatus(std::string_view name) {
  if (name == "ok") return JudgeStatus::kOk;
  if (name == "unparsed") return JudgeStatus::kUnparsed;
  if (name == "error") return JudgeStatus::kError;
  if (name == "skipped_policy") return JudgeStatus::kSkippedPolicy;
  return std::nullopt;
}

std::string_view feedbackScaleName(FeedbackScale scale) {
  switch (scale) {
    case FeedbackScale::kThumbs:
      return "thumbs";
    case FeedbackScale::kStars:
      return "stars";
    case FeedbackScale::kUnit:
      break;
  }
  return "unit";
}

std::optional<FeedbackScale> parseFeedbackScale(std::string_view name) {
  if (name == "unit") return FeedbackScale::kUnit;
  if (name == "thumbs") return FeedbackScale::kThumbs;
  if (name == "stars") return FeedbackScale::kStars;
  return std::nullopt;
}

std::string_view feedbackScaleRange(FeedbackScale scale) {
  switch (scale) {
    case FeedbackScale::kThumbs:
      return "-1 (thumbs down) or 1 (thumbs up), or false or true";
    case FeedbackScale::kStars:
      return "a whole number of stars from 1 (bad) to 5 (good)";
    case FeedbackScale::kUnit:
      break;
  }
  return "a number from -1 (bad) to 1 (good)";
}

bool feedbackScoreValid(FeedbackScale scale, double score) {
  if (!std::isfinite(score)) return false;
  switch (scale) {
    case FeedbackScale::kThumbs:
      return score == -1 || score == 1;
    case FeedbackScale::kStars:
      return score >= 1 && score <= 5 && score == std::floor(score);
    case FeedbackScale::kUnit:
      break;
  }
  return score >= -1 && score <= 1;
}

double Feedback::normalized() const {
  if (std::isnan(score)) return score;
  switch (scale) {
    case FeedbackScale::kThumbs:
      return score > 0 ? 1 : score < 0 ? -1 : 0;
    case FeedbackScale::kStars:
      return std::clamp((score - 3) / 2, -1.0, 1.0);
    case FeedbackScale::kUnit:
      break;
  }
  return std::clamp(score, -1.0, 1.0);
}

double QualityRecord::weight() const {
  return sampling_p > 0 && sampling_p <= 1 ? 1 / sampling_p : 1;
}

std::optional<double> QualityRecord::judgeDelta() const {
  if (judge && judge->status == JudgeStatus::kOk && std::isfinite(judge->delta)) {
    return std::clamp(judge->delta, -1.0, 1.0);
  }
  return std::nullopt;
}

std::optional<double> QualityRecord::feedbackDelta() const {
  if (!feedback) return std::nullopt;
  const double s = feedback->normalized();
  if (!std::isfinite(s)) return std::nullopt;
  return kind == RecordKind::kShadow ? -s : s;
}

std::optional<double> QualityRecord::delta(DeltaSource source) const {
  if (source == DeltaSource::kFeedbackFirst) {
    if (std::optional<double> d = feedbackDelta()) return d;
  }
  return judgeDelta();
}

namespace {

std::optional<double> findFeature(const std::vector<Feature>& features, std::string_view name) {
  for (const Feature& f : features) {
    if (f.name == name) return f.value;
  }
  return std::nullopt;
}

}  // namespace

std::optional<double> QualityRecord::complexityFeature(std::string_view name) const {
  return findFeature(complexity_features, name);
}

std::optional<double> QualityRecord::confidenceFeature(std::string_view name) const {
  return findFeature(confidence_features, name);
}

}  // namespace quality
