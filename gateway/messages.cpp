// The Anthropic Messages entrance: POST /v1/messages runs the chat pipeline (handleChat) with
// the Messages entrance's parser and writers (gateway/entrance.h, api/anthropic_messages.h);
// POST /v1/messages/count_tokens counts a request's prompt without generating: with the local
// engine's own chat template and tokenizer when the model is local, else as the budget's
// prompt bound (policies::promptTokenBound: at most one token per byte of text, images at
// their provider's largest size), which no provider's count exceeds.
#include "api/anthropic_messages.h"
#include "gateway/gateway.h"
#include "gateway/http_util.h"
#include "policies/spend.h"
#include "routers/local_provider.h"

namespace gateway {

void Gateway::handleMessages(Exchange& ex, const std::shared_ptr<Responder>& responder,
                             std::string_view path) {
  if (path == "/v1/messages/count_tokens") return handleCountTokens(ex, responder);
  handleChat(ex, responder, messagesEntrance());
}

void Gateway::handleCountTokens(const Exchange& ex, const std::shared_ptr<Responder>& responder) {
  const Entrance& entrance = messagesEntrance();
  auto fail = [&](const api::Status& st, const std::string& team) {
    replyError(ex, responder, st, team, "", "", entrance);
  };
  std::shared_ptr<const Live> live = liveState();
  auto principal = live->auth->authenticate(entrance.credentials(ex));
  if (!principal.ok()) return fail(principal.status(), "");
  if (ex.anthropic_version.empty()) {
    return fail(api::invalidRequest("anthropic-version: header is required", "anthropic-version"),
                principal->team);
  }
  auto request = api::parseCountTokensRequest(ex.body);
  if (!request.ok()) return fail(request.status(), principal->team);
  const policies::TeamPolicy& policy = live->policies->policyFor(principal->team);
  const bool routed = request->model == routers::kAutoModel ||
                      request->model == policy.routing.local_model;
  const std::string model = routed ? policy.routing.local_model : request->model;
  if (!routes_.count(model)) {
    return fail(api::Status(api::ErrorCode::kNotFound, "model: " + request->model, "model"),
                principal->team);
  }
  if (!policy.allowsModel(model)) {
    return fail(api::Status(api::ErrorCode::kPermissionDenied,
                            "Team '" + principal->team + "' may not use the model `" +
                                request->model + "`.",
                            "model"),
                principal->team);
  }
  const routers::ChainTarget target = targetsOf(model).front();
  int64_t tokens = 0;
  if (auto* local = dynamic_cast<routers::LocalProvider*>(target.provider)) {
    auto it = chat_templates_.find(local->name());
    auto generation = routers::toGenerationRequest(
        *request, local->engine(), routers::Deadline::max(),
        it == chat_templates_.end() ? nullptr : it->second.get());
    if (!generation.ok()) return fail(generation.status(), principal->team);
    tokens = static_cast<int64_t>(generation->prompt.size());
  } else {
    tokens = policies::promptTokenBound(*request, target.api, target.upstream_model);
  }
  responder->reply(200, api::Json{{"input_tokens", tokens}}.dump(), commonHeaders(target.label));
}

}  // namespace gateway
