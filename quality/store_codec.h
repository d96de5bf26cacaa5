// The columns of a quality record and how its fields go in and out of them, shared by the
// SQLite store (store.cpp) and the PostgreSQL one (pg_store.cpp), so that both keep the same
// fields the same way. Internal to quality/.
//
// The helpers are templates over a statement `Q` with the binding and reading verbs of
// policies::sqlite::Use: text, int64, boolean, null, realExact, optRealExact, optBool (bind,
// 1-based like ?1 / $1) and isNull, columnText, columnInt64, columnBool, columnRealExact,
// columnOptRealExact, columnOptBool (read, 0-based), plus name / columnName for text that is
// always valid UTF-8 (the kind, the judge status, JSON), where `text` is any bytes.
#pragma once

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "api/openai_json.h"
#include "quality/record.h"

namespace quality::codec {

// The record columns after `id`, in the order bindRecord binds them (1..44) and readRecord
// reads them (first .. first+43).
inline constexpr const char* kRecordColumns =
    "request_id, unix_ms, team, kind, model, reason, prompt, redacted, "
    "local_model, local_text, local_complete, local_finish_reason, local_prompt_tokens, "
    "local_completion_tokens, local_cost_usd, local_latency_ms, "
    "cloud_model, cloud_text, cloud_complete, cloud_finish_reason, cloud_prompt_tokens, "
    "cloud_completion_tokens, cloud_cost_usd, cloud_latency_ms, "
    "complexity, complexity_features, confidence, confidence_features, "
    "metrics_exact_match, metrics_token_f1, metrics_rouge_l, metrics_length_ratio, "
    "metrics_json_both_parse, metrics_json_agree, "
    "judge_status, judge_model, judge_delta, judge_agreement, judge_verdict_ab, "
    "judge_verdict_ba, judge_detail, judge_cost_usd, judge_unix_ms, sampling_p";
inline constexpr int kRecordColumnCount = 44;
inline constexpr int kMetricsColumn = 29;  // first metrics_* column (1-based after id)
inline constexpr int kJudgeColumn = 35;    // first judge_* column
inline constexpr int kSamplingColumn = 44;  // sampling_p (schema version 2)

// Schema versions: 1 had no records.sampling_p and no feedback.scale; 2 added both. A store of
// version 1 opened read-only is read as if every record had sampling_p = 1 and every feedback
// the "unit" scale (selectColumns, feedbackColumns); a writer migrates it to 2 on open.
inline constexpr int kFirstSamplingVersion = 2;

// kRecordColumns with each name qualified by `table` ("r.request_id, r.unix_ms, ...").
inline std::string qualifiedColumns(const std::string& table) {
  std::string out = table + ".";
  for (const char* c = kRecordColumns; *c != '\0'; ++c) {
    out += *c;
    if (*c == ' ') out += table + ".";
  }
  return out;
}

// What a query selects for kRecordColumns from a store of schema `version`: qualifiedColumns,
// with the constant 1 in place of sampling_p before version 2.
inline std::string selectColumns(const std::string& table, int version) {
  std::string out = qualifiedColumns(table);
  if (version < kFirstSamplingVersion) {
    const std::string col = table + ".sampling_p";
    out.replace(out.rfind(col), col.size(), "1.0");
  }
  return out;
}

// The feedback columns a query selects after the records' (id, score, scale, comment, unix_ms),
// qualified by `table`; before version 2 the scale is the constant 'unit'.
inline std::string feedbackColumns(const std::string& table, int version) {
  const std::string t = table + ".";
  return t + "id, " + t + "score, " +
         (version < kFirstSamplingVersion ? std::string("'unit'") : t + "scale") + ", " + t +
         "comment, " + t + "unix_ms";
}

// ---- Features as JSON: [[name, value], ...]; a non-finite value as "NaN"/"Infinity"/...

inline api::Json numberJson(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  return v;
}

inline std::optional<double> jsonNumber(const api::Json& j) {
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    if (s == "NaN") return std::nan("");
    if (s == "Infinity") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
  }
  return std::nullopt;
}

inline std::string dumpJson(const api::Json& j) {
  // `replace`: a string that is not UTF-8 must not throw out of a write.
  return j.dump(-1, ' ', false, api::Json::error_handler_t::replace);
}

inline std::string featuresJson(const std::vector<Feature>& features) {
  api::Json a = api::Json::array();
  for (const Feature& f : features) a.push_back(api::Json::array({f.name, numberJson(f.value)}));
  return dumpJson(a);
}

inline bool parseFeatures(const std::string& text, std::vector<Feature>* out) {
  api::Json a = api::Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!a.is_array()) return false;
  for (const api::Json& e : a) {
    if (!e.is_array() || e.size() != 2 || !e[0].is_string()) return false;
    std::optional<double> v = jsonNumber(e[1]);
    if (!v) return false;
    out->push_back(Feature{e[0].get<std::string>(), *v});
  }
  return true;
}

// ---- Binding and reading

template <typename Q>
void bindAnswer(Q& q, int first, const Answer& a) {
  q.text(first, a.model);
  q.text(first + 1, a.text);
  q.boolean(first + 2, a.complete);
  q.text(first + 3, a.finish_reason);
  q.int64(first + 4, a.prompt_tokens);
  q.int64(first + 5, a.completion_tokens);
  q.realExact(first + 6, a.cost_usd);
  q.realExact(first + 7, a.latency_ms);
}

template <typename Q>
Answer readAnswer(const Q& q, int first) {
  Answer a;
  a.model = q.columnText(first);
  a.text = q.columnText(first + 1);
  a.complete = q.columnBool(first + 2);
  a.finish_reason = q.columnText(first + 3);
  a.prompt_tokens = q.columnInt64(first + 4);
  a.completion_tokens = q.columnInt64(first + 5);
  a.cost_usd = q.columnRealExact(first + 6);
  a.latency_ms = q.columnRealExact(first + 7);
  return a;
}

template <typename Q>
void bindMetrics(Q& q, int first, const std::optional<TextMetrics>& m) {
  if (!m) {
    for (int i = 0; i < 6; ++i) q.null(first + i);
    return;
  }
  q.boolean(first, m->exact_match);
  q.realExact(first + 1, m->token_f1);
  q.realExact(first + 2, m->rouge_l);
  q.realExact(first + 3, m->length_ratio);
  q.optBool(first + 4, m->json_both_parse);
  q.optBool(first + 5, m->json_agree);
}

template <typename Q>
std::optional<TextMetrics> readMetrics(const Q& q, int first) {
  if (q.isNull(first)) return std::nullopt;
  TextMetrics m;
  m.exact_match = q.columnBool(first);
  m.token_f1 = q.columnRealExact(first + 1);
  m.rouge_l = q.columnRealExact(first + 2);
  m.length_ratio = q.columnRealExact(first + 3);
  m.json_both_parse = q.columnOptBool(first + 4);
  m.json_agree = q.columnOptBool(first + 5);
  return m;
}

template <typename Q>
void bindJudge(Q& q, int first, const std::optional<JudgeResult>& j) {
  if (!j) {
    for (int i = 0; i < 9; ++i) q.null(first + i);
    return;
  }
  q.name(first, judgeStatusName(j->status));
  q.text(first + 1, j->model);
  q.realExact(first + 2, j->delta);
  q.boolean(first + 3, j->agreement);
  q.text(first + 4, j->verdict_ab);
  q.text(first + 5, j->verdict_ba);
  q.text(first + 6, j->detail);
  q.realExact(first + 7, j->cost_usd);
  q.int64(first + 8, j->unix_ms);
}

// False when the status name is unknown (a damaged or hand-edited row).
template <typename Q>
bool readJudge(const Q& q, int first, std::optional<JudgeResult>* out) {
  if (q.isNull(first)) return true;
  std::optional<JudgeStatus> status = parseJudgeStatus(q.columnName(first));
  if (!status) return false;
  JudgeResult j;
  j.status = *status;
  j.model = q.columnText(first + 1);
  j.delta = q.columnRealExact(first + 2);
  j.agreement = q.columnBool(first + 3);
  j.verdict_ab = q.columnText(first + 4);
  j.verdict_ba = q.columnText(first + 5);
  j.detail = q.columnText(first + 6);
  j.cost_usd = q.columnRealExact(first + 7);
  j.unix_ms = q.columnInt64(first + 8);
  *out = std::move(j);
  return true;
}

// Binds every column of kRecordColumns (1..44); r.id and r.feedback are not stored there.
template <typename Q>
void bindRecord(Q& q, const QualityRecord& r) {
  q.text(1, r.request_id);
  q.int64(2, r.unix_ms);
  q.text(3, r.team);
  q.name(4, kindName(r.kind));
  q.text(5, r.model);
  q.text(6, r.reason);
  r.prompt.is_null() ? q.null(7) : q.name(7, dumpJson(r.prompt));
  q.boolean(8, r.redacted);
  bindAnswer(q, 9, r.local);
  bindAnswer(q, 17, r.cloud);
  q.optRealExact(25, r.complexity);
  q.name(26, featuresJson(r.complexity_features));
  q.optRealExact(27, r.confidence);
  q.name(28, featuresJson(r.confidence_features));
  bindMetrics(q, kMetricsColumn, r.metrics);
  bindJudge(q, kJudgeColumn, r.judge);
  q.realExact(kSamplingColumn, r.sampling_p);
}

// Reads the columns of kRecordColumns from column `first` on into `r` (all but id and
// feedback); nullopt, or what is wrong with the row ("an unknown kind 'x'").
template <typename Q>
std::optional<std::string> readRecord(const Q& q, int first, QualityRecord* r) {
  const int c = first - 1;  // column c + n holds the n-th (1-based) of kRecordColumns
  r->request_id = q.columnText(c + 1);
  r->unix_ms = q.columnInt64(c + 2);
  r->team = q.columnText(c + 3);
  std::optional<RecordKind> kind = parseKind(q.columnName(c + 4));
  if (!kind) return "an unknown kind '" + q.columnName(c + 4) + "'";
  r->kind = *kind;
  r->model = q.columnText(c + 5);
  r->reason = q.columnText(c + 6);
  if (!q.isNull(c + 7)) {
    r->prompt = api::Json::parse(q.columnName(c + 7), nullptr, /*allow_exceptions=*/false);
    if (r->prompt.is_discarded()) return std::string("a prompt that is not JSON");
  }
  r->redacted = q.columnBool(c + 8);
  r->local = readAnswer(q, c + 9);
  r->cloud = readAnswer(q, c + 17);
  r->complexity = q.columnOptRealExact(c + 25);
  if (!parseFeatures(q.columnName(c + 26), &r->complexity_features)) {
    return std::string("malformed complexity_features");
  }
  r->confidence = q.columnOptRealExact(c + 27);
  if (!parseFeatures(q.columnName(c + 28), &r->confidence_features)) {
    return std::string("malformed confidence_features");
  }
  r->metrics = readMetrics(q, c + kMetricsColumn);
  if (!readJudge(q, c + kJudgeColumn, &r->judge)) {
    return "an unknown judge status '" + q.columnName(c + kJudgeColumn) + "'";
  }
  r->sampling_p = q.columnRealExact(c + kSamplingColumn);
  return std::nullopt;
}

// Reads the feedback columns of feedbackColumns from column `first` on into `r->feedback`
// (none when its id is NULL: the record has no feedback); nullopt, or what is wrong with the
// row ("an unknown feedback scale 'x'").
template <typename Q>
std::optional<std::string> readFeedback(const Q& q, int first, QualityRecord* r) {
  if (q.isNull(first)) return std::nullopt;
  Feedback fb;
  fb.request_id = r->request_id;
  fb.team = r->team;
  fb.score = q.columnRealExact(first + 1);
  std::optional<FeedbackScale> scale = parseFeedbackScale(q.columnName(first + 2));
  if (!scale) return "an unknown feedback scale '" + q.columnName(first + 2) + "'";
  fb.scale = *scale;
  fb.comment = q.columnText(first + 3);
  fb.unix_ms = q.columnInt64(first + 4);
  r->feedback = std::move(fb);
  return std::nullopt;
}

}  // namespace quality::codec
