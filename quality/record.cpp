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

std::optional<double> QualityRecord::delta() const {
  if (feedback && std::isfinite(feedback->score)) {
    double s = std::clamp(feedback->score, -1.0, 1.0);
    return kind == RecordKind::kShadow ? -s : s;
  }
  if (judge && judge->status == JudgeStatus::kOk && std::isfinite(judge->delta)) {
    return std::clamp(judge->delta, -1.0, 1.0);
  }
  return std::nullopt;
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
