// The OpenAI Responses entrance (POST /v1/responses): the chat pipeline with the Responses
// request reader and Response / event-stream writers of api/responses.h, and the stored
// responses (gateway/response_store.h): `store` (default true) keeps each finished response for
// its team; `previous_response_id` prepends the stored conversation (the earlier inputs and
// outputs, not their instructions); GET / DELETE /v1/responses/{id}, its input_items, and
// cancel (refused: no response here runs in the background). Errors keep OpenAI's shape.
#include "api/responses.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "api/openai_json.h"
#include "gateway/entrance.h"
#include "gateway/gateway.h"
#include "gateway/response_store.h"

namespace gateway {
namespace {

std::string dumpJson(const api::Json& j) {
  return j.dump(-1, ' ', false, api::Json::error_handler_t::replace);
}

// A JSON array stored in a row (or the `key` array of a stored object); empty when the row does
// not hold one, so that a damaged row continues as a shorter conversation instead of failing.
api::Json storedArray(const std::string& text, const char* key = nullptr) {
  api::Json j = api::Json::parse(text, nullptr, false);
  if (key != nullptr) j = j.is_object() ? j.value(key, api::Json()) : api::Json();
  return j.is_array() ? j : api::Json::array();
}

int64_t unixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

api::Status responseNotFound(const std::string& id, const std::string& param) {
  return api::Status(api::ErrorCode::kNotFound, "Response with id '" + id + "' not found.", param);
}

// The conversation a request continues (the items before its own input) and its body with
// previous_response_id replaced by that conversation.
struct Continued {
  api::Json body;
  api::Json conversation = api::Json::array();
};

api::StatusOr<Continued> continueFrom(api::Json body, const std::string& team,
                                      ResponseStore* store) {
  Continued c;
  auto prev = body.find("previous_response_id");
  if (prev == body.end() || prev->is_null()) {
    c.body = std::move(body);
    return c;
  }
  if (!prev->is_string()) {
    return api::Status(api::ErrorCode::kInvalidRequest,
                       "Invalid type for 'previous_response_id': expected a string.",
                       "previous_response_id", "invalid_type");
  }
  const std::string id = prev->get<std::string>();
  api::Status not_found(api::ErrorCode::kNotFound,
                        "Previous response with id '" + id + "' not found.", "previous_response_id",
                        "previous_response_not_found");
  if (!store) return not_found;
  auto stored = store->get(team, id);
  if (!stored.ok()) return stored.status();
  if (!stored->has_value()) return not_found;
  const StoredResponse& s = **stored;
  c.conversation = storedArray(s.conversation);
  for (api::Json& item : storedArray(s.input)) c.conversation.push_back(std::move(item));
  for (api::Json& item : storedArray(s.response, "output")) {
    c.conversation.push_back(std::move(item));
  }
  if (auto in = body.find("input"); in != body.end() && (in->is_string() || in->is_array())) {
    api::Json input = c.conversation;
    for (api::Json& item : api::inputItems(*in)) input.push_back(std::move(item));
    *in = std::move(input);
  }
  body.erase("previous_response_id");
  c.body = std::move(body);
  return c;
}

class ResponsesWriter : public AnswerWriter {
 public:
  ResponsesWriter(api::Json request, std::string id, std::string model, int64_t created_at,
                  ResponseStore* store, StoredResponse row)
      : stream_(request, id, model, created_at),
        request_(std::move(request)),
        id_(std::move(id)),
        model_(std::move(model)),
        created_at_(created_at),
        store_(store),
        row_(std::move(row)) {}

  std::string response(const api::ChatResponse& r) override {
    std::string body = api::serializeResponse(r, request_, id_, model_, created_at_);
    keep(body);
    return body;
  }
  std::string chunk(const api::ChatChunk& c) override { return stream_.chunk(c); }
  std::string streamEnd(const api::ChatResponse& r) override {
    std::string out = stream_.finish(r.usage);
    keep(dumpJson(stream_.finalResponse()));
    return out;
  }
  std::string streamError(const api::Status& s) override { return stream_.error(s); }

 private:
  // Stores the finished response (store: true); a store that fails costs the answer nothing.
  void keep(const std::string& response) {
    if (!store_) return;
    row_.response = response;
    if (api::Status st = store_->put(row_, unixSeconds()); !st.ok()) {
      std::fprintf(stderr, "{\"level\":\"error\",\"msg\":\"response not stored\",\"id\":\"%s\"}\n",
                   id_.c_str());
    }
  }

  api::ResponsesStreamWriter stream_;
  api::Json request_;
  std::string id_, model_;
  int64_t created_at_;
  ResponseStore* store_;  // null: not stored
  StoredResponse row_;
};

class ResponsesEntrance : public Entrance {
 public:
  explicit ResponsesEntrance(ResponseStore* store) : store_(store) {}

  api::StatusOr<api::ChatRequest> parse(const Exchange& ex) const override {
    return api::parseResponsesRequest(ex.body);
  }
  api::StatusOr<api::ChatRequest> parseFor(const Exchange& ex,
                                           const std::string& team) const override {
    api::Json body = api::Json::parse(ex.body, nullptr, false);
    if (!body.is_object()) return parse(ex);  // its error, as the parser words it
    auto continued = continueFrom(std::move(body), team, store_);
    if (!continued.ok()) return continued.status();
    return api::parseResponsesRequest(dumpJson(continued->body));
  }
  int errorStatus(const api::Status& s) const override { return s.httpStatusCode(); }
  std::string errorBody(const api::Status& s, std::string_view) const override {
    return api::serializeError(s);
  }
  std::unique_ptr<AnswerWriter> writer(const api::ChatRequest& r, const std::string& model,
                                       const Exchange& ex) const override {
    return writerFor(r, model, ex, "");
  }
  std::unique_ptr<AnswerWriter> writerFor(const api::ChatRequest&, const std::string& model,
                                          const Exchange& ex,
                                          const std::string& team) const override {
    // The body parsed already (parseFor() above), so this cannot fail.
    api::Json request = api::Json::parse(ex.body, nullptr, false);
    std::string id = ex.request_id;
    if (id.rfind("req_", 0) == 0) id = id.substr(4);
    const int64_t now = unixSeconds();
    StoredResponse row{"resp_" + id, team, now, "", "", ""};
    auto store_field = request.find("store");  // absent or null: stored, as OpenAI does
    const bool store_on = store_field == request.end() || !store_field->is_boolean() ||
                          store_field->get<bool>();
    ResponseStore* store = store_on && !team.empty() ? store_ : nullptr;
    if (store) {
      row.input = dumpJson(api::inputItems(request.value("input", api::Json())));
      auto continued = continueFrom(request, team, store_);
      row.conversation = continued.ok() ? dumpJson(continued->conversation) : "[]";
    }
    std::string response_id = row.id;
    return std::make_unique<ResponsesWriter>(std::move(request), std::move(response_id), model, now,
                                             store, std::move(row));
  }

 private:
  ResponseStore* store_;
};

// The input_items list of a stored response: newest first unless ?order=asc.
api::Json inputItemsList(const StoredResponse& s, std::string_view target) {
  api::Json items = api::Json::parse(s.input, nullptr, false);
  if (!items.is_array()) items = api::Json::array();
  if (target.find("order=asc") == std::string_view::npos) {
    std::reverse(items.begin(), items.end());
  }
  api::Json list = {{"object", "list"}, {"data", items}, {"has_more", false}};
  list["first_id"] = items.empty() ? api::Json() : items.front().value("id", api::Json());
  list["last_id"] = items.empty() ? api::Json() : items.back().value("id", api::Json());
  return list;
}

}  // namespace

std::unique_ptr<Entrance> makeResponsesEntrance(ResponseStore* store) {
  return std::make_unique<ResponsesEntrance>(store);
}

void Gateway::handleStoredResponse(const Exchange& ex, const std::shared_ptr<Responder>& responder,
                                   std::string_view path) {
  auto principal = liveState()->auth->authenticate(ex.authorization);
  if (!principal.ok()) return replyError(ex, responder, principal.status(), "", "", "");
  const std::string team = principal->team;
  std::string id(path.substr(std::string_view("/v1/responses/").size()));
  std::string action;
  if (size_t slash = id.find('/'); slash != std::string::npos) {
    action = id.substr(slash + 1);
    id.resize(slash);
  }
  const bool known_action = action.empty() || action == "cancel" || action == "input_items";
  const std::string method = action == "cancel"                        ? "POST"
                             : ex.method == "DELETE" && action.empty() ? "DELETE"
                                                                       : "GET";
  if (!known_action || id.empty()) {
    return replyError(
        ex, responder,
        api::Status(api::ErrorCode::kNotFound,
                    "Unknown request URL: " + ex.method + " " + std::string(path) + ".", {},
                    "unknown_url"),
        team, "", "");
  }
  if (ex.method != method) {
    return replyError(
        ex, responder,
        api::Status(api::ErrorCode::kMethodNotAllowed,
                    "Method " + ex.method + " is not allowed for " + std::string(path) + ".", {},
                    "method_not_allowed"),
        team, "", "");
  }
  auto stored = response_store_ ? response_store_->get(team, id)
                                : api::StatusOr<std::optional<StoredResponse>>(std::nullopt);
  if (!stored.ok()) return replyError(ex, responder, stored.status(), team, "", "");
  if (!stored->has_value()) {
    return replyError(ex, responder, responseNotFound(id, "response_id"), team, "", "");
  }
  if (action == "cancel") {
    // Only background responses can be cancelled; every response here ran in the foreground.
    return replyError(
        ex, responder,
        api::Status(api::ErrorCode::kInvalidRequest, "Cannot cancel a synchronous response.", {}),
        team, "", "");
  }
  std::string body;
  if (action == "input_items") {
    body = dumpJson(inputItemsList(**stored, ex.target));
  } else if (method == "DELETE") {
    auto removed = response_store_->remove(team, id);
    if (!removed.ok()) return replyError(ex, responder, removed.status(), team, "", "");
    body = dumpJson(api::Json{{"id", id}, {"object", "response.deleted"}, {"deleted", true}});
  } else {
    body = (*stored)->response;
  }
  responder->reply(200, std::move(body), {});
}

}  // namespace gateway
