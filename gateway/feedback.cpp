// POST /v1/feedback: what a user said of an answer, stored beside its quality record.
#include <cmath>
#include <string>

#include "api/openai_json.h"
#include "gateway/gateway.h"
#include "gateway/http_util.h"
#include "gateway/quality_hub.h"

namespace gateway {
namespace {

constexpr size_t kMaxFeedbackComment = 4096;
constexpr size_t kMaxFeedbackRequestId = 200;

}  // namespace

void Gateway::handleFeedback(const Exchange& ex, const std::shared_ptr<Responder>& responder) {
  std::shared_ptr<const Live> live = liveState();
  auto principal = live->auth->authenticate(ex.authorization);
  if (!principal.ok()) return replyError(ex, responder, principal.status(), "", "", "");
  if (principal->admin) {
    return replyError(ex, responder,
                      api::Status(api::ErrorCode::kPermissionDenied,
                                  "Feedback is given with the key of the team that asked."),
                      "", "", "");
  }
  auto bad = [&](const std::string& message, const std::string& param) {
    replyError(ex, responder,
               api::Status(api::ErrorCode::kInvalidRequest, message, param, "invalid_value"),
               principal->team, "", "");
  };
  api::Json body = api::Json::parse(ex.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return bad("The body must be a JSON object: {\"request_id\": ..., \"score\": ..., "
               "\"comment\": ...}.",
               "");
  }
  quality::Feedback f;
  f.team = principal->team;
  f.unix_ms = unixMs();
  auto id = body.find("request_id");
  if (id == body.end() || !id->is_string() || id->get<std::string>().empty() ||
      id->get<std::string>().size() > kMaxFeedbackRequestId) {
    return bad("request_id must be the x-request-id of the answer (a non-empty string of at most " +
                   std::to_string(kMaxFeedbackRequestId) + " bytes).",
               "request_id");
  }
  f.request_id = id->get<std::string>();
  auto score = body.find("score");
  if (score == body.end() || !score->is_number() || !std::isfinite(score->get<double>()) ||
      score->get<double>() < -1 || score->get<double>() > 1) {
    return bad("score must be a number from -1 (bad) to 1 (good).", "score");
  }
  f.score = score->get<double>();
  if (auto c = body.find("comment"); c != body.end() && !c->is_null()) {
    if (!c->is_string() || c->get<std::string>().size() > kMaxFeedbackComment) {
      return bad("comment must be a string of at most " + std::to_string(kMaxFeedbackComment) +
                     " bytes.",
                 "comment");
    }
    f.comment = c->get<std::string>();
  }
  for (const auto& [key, value] : body.items()) {
    if (key != "request_id" && key != "score" && key != "comment") {
      return bad("Unknown field '" + key + "' (expected request_id, score, comment).", key);
    }
  }
  if (!quality_) {
    return replyError(ex, responder,
                      api::Status(api::ErrorCode::kNotFound,
                                  "Feedback is not recorded here: the gateway has no quality "
                                  "store (quality.path).",
                                  {}, "feedback_disabled"),
                      principal->team, "", "");
  }
  api::Json reply = {{"object", "feedback"},
                     {"request_id", f.request_id},
                     {"score", f.score},
                     {"recorded", true}};
  const std::string team = principal->team;
  quality_->feedback(std::move(f), [responder, reply, this, team](api::Status st) {
    if (st.ok()) {
      responder->reply(200, reply.dump(-1, ' ', false, api::Json::error_handler_t::replace), {});
      return;
    }
    api::Status failure(api::ErrorCode::kUnavailable,
                        "The feedback could not be stored: " + st.message());
    responder->reply(failure.httpStatusCode(), api::serializeError(failure), {});
  });
}

}  // namespace gateway
