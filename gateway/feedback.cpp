// POST /v1/feedback: what a user said of an answer, stored beside its quality record.
#include <cmath>
#include <optional>
#include <string>

#include "api/openai_json.h"
#include "gateway/gateway.h"
#include "gateway/http_util.h"
#include "gateway/quality_hub.h"

namespace gateway {
namespace {

constexpr size_t kMaxFeedbackComment = 4096;
constexpr size_t kMaxFeedbackRequestId = 200;
// A feedback body is one flat object; this leaves room for a comment written all in \u escapes.
constexpr size_t kMaxFeedbackBodyBytes = 8 * kMaxFeedbackComment;
// One object of four scalars: anything deeper or larger is not a feedback.
constexpr api::JsonBounds kFeedbackBounds{4, 64};

api::Status invalid(const std::string& message, const std::string& param) {
  return api::Status(api::ErrorCode::kInvalidRequest, message, param, "invalid_value");
}

// Reads a feedback body (team and time are the caller's). kInvalidRequest names the field at
// fault; kPayloadTooLarge for a body no feedback needs.
api::StatusOr<quality::Feedback> parseFeedback(std::string_view text) {
  if (text.size() > kMaxFeedbackBodyBytes) {
    return api::Status(api::ErrorCode::kPayloadTooLarge,
                       "A feedback body is at most " + std::to_string(kMaxFeedbackBodyBytes) +
                           " bytes.");
  }
  const std::string shape =
      "The body must be a JSON object: {\"request_id\": ..., \"score\": ..., \"scale\": ..., "
      "\"comment\": ...}.";
  auto parsed = api::parseBoundedJson(text, kFeedbackBounds);
  if (!parsed.ok() || !parsed->is_object()) return invalid(shape, "");
  const api::Json& body = *parsed;
  quality::Feedback f;
  auto id = body.find("request_id");
  if (id == body.end() || !id->is_string() || id->get<std::string>().empty() ||
      id->get<std::string>().size() > kMaxFeedbackRequestId) {
    return invalid("request_id must be the x-request-id of the answer (a non-empty string of at "
                   "most " + std::to_string(kMaxFeedbackRequestId) + " bytes).",
                   "request_id");
  }
  f.request_id = id->get<std::string>();
  if (auto sc = body.find("scale"); sc != body.end() && !sc->is_null()) {
    std::optional<quality::FeedbackScale> scale =
        sc->is_string() ? quality::parseFeedbackScale(sc->get<std::string>()) : std::nullopt;
    if (!scale) {
      return invalid(
          "scale must be \"unit\" (the default: score from -1 to 1), \"thumbs\" "
          "(score -1 or 1, or false or true) or \"stars\" (score 1 to 5).",
          "scale");
    }
    f.scale = *scale;
  }
  auto score = body.find("score");
  std::optional<double> value;
  if (score != body.end() && score->is_number()) value = score->get<double>();
  // Thumbs may be sent as a boolean: true up, false down.
  if (score != body.end() && score->is_boolean() && f.scale == quality::FeedbackScale::kThumbs) {
    value = score->get<bool>() ? 1.0 : -1.0;
  }
  if (!value || !quality::feedbackScoreValid(f.scale, *value)) {
    return invalid("score must be " + std::string(quality::feedbackScaleRange(f.scale)) +
                       " on the " + std::string(quality::feedbackScaleName(f.scale)) + " scale.",
                   "score");
  }
  f.score = *value;
  if (auto c = body.find("comment"); c != body.end() && !c->is_null()) {
    if (!c->is_string() || c->get<std::string>().size() > kMaxFeedbackComment) {
      return invalid("comment must be a string of at most " +
                         std::to_string(kMaxFeedbackComment) + " bytes.",
                     "comment");
    }
    f.comment = c->get<std::string>();
  }
  for (const auto& [key, value] : body.items()) {
    if (key != "request_id" && key != "score" && key != "scale" && key != "comment") {
      return invalid("Unknown field '" + key + "' (expected request_id, score, scale, comment).",
                     key);
    }
  }
  return f;
}

}  // namespace

// Feedback is accepted only on an answer that has a quality record of the caller's team (the
// store checks, on its writer, after every record queued before): it rates that record, one
// feedback per record, so that what clients send at will stays bounded by the records.
void Gateway::handleFeedback(const Exchange& ex, const std::shared_ptr<Responder>& responder) {
  std::shared_ptr<const Live> live = liveState();
  auto principal = live->auth->authenticate(ex.authorization);
  if (!principal.ok()) return replyError(ex, responder, principal.status(), "", "", "");
  const std::string team = principal->team;
  if (principal->admin) {
    return replyError(ex, responder,
                      api::Status(api::ErrorCode::kPermissionDenied,
                                  "Feedback is given with the key of the team that asked."),
                      "", "", "");
  }
  if (!quality_) {
    return replyError(ex, responder,
                      api::Status(api::ErrorCode::kNotFound,
                                  "Feedback is not recorded here: the gateway has no quality "
                                  "store (quality.path or quality.url).",
                                  {}, "feedback_disabled"),
                      team, "", "");
  }
  // Before the body is read: a flood of bad bodies costs the team its bucket too.
  if (api::Status st = quality_->admitFeedback(team); !st.ok()) {
    return replyError(ex, responder, st, team, "", "");
  }
  auto f = parseFeedback(ex.body);
  if (!f.ok()) return replyError(ex, responder, f.status(), team, "", "");
  f->team = team;
  f->unix_ms = unixMs();
  api::Json reply = {{"object", "feedback"},
                     {"request_id", f->request_id},
                     {"score", f->score},
                     {"scale", std::string(quality::feedbackScaleName(f->scale))},
                     {"recorded", true}};
  const std::string request_id = f->request_id;
  quality_->feedback(std::move(*f), [responder, reply, team, request_id](api::Status st) {
    if (st.ok()) {
      responder->reply(200, reply.dump(-1, ' ', false, api::Json::error_handler_t::replace), {});
      return;
    }
    api::Status failure =
        st.code() == api::ErrorCode::kNotFound
            ? api::Status(api::ErrorCode::kNotFound,
                          "No answer of team '" + team + "' with request_id '" + request_id +
                              "' is on record: feedback rates answers that have a quality "
                              "record (escalations and shadow comparisons).",
                          "request_id", "request_not_found")
            : api::Status(api::ErrorCode::kUnavailable,
                          "The feedback could not be stored: " + st.message());
    responder->reply(failure.httpStatusCode(), api::serializeError(failure), {});
  });
}

}  // namespace gateway
