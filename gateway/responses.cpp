// The OpenAI Responses entrance (POST /v1/responses): the chat pipeline with the Responses
// request reader and Response / event-stream writers of api/responses.h, and the stored
// responses (gateway/response_store.h): `store` (default true) keeps each finished response for
// its team; `previous_response_id` prepends the stored conversation (the earlier inputs and
// outputs, not their instructions); GET / DELETE /v1/responses/{id}, its input_items, and
// POST .../cancel of a background response. Errors keep OpenAI's shape.
//
// Background responses (`background: true`, stored, not streamed): the request is admitted as
// any other (keys, parsing, policies, rate limits answer the client at once when they refuse);
// then the client gets the Response with status "queued" while the pipeline runs on with a
// BackgroundRun in place of the client's connection: the stored row goes in_progress, then
// completed (or incomplete), failed (with the error the client would have got) or cancelled
// (POST .../cancel cancels the call, whose budget reservation is settled as for a client that
// went away). A gateway stopped mid-run leaves the row in_progress.
#include "api/responses.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "api/json_text.h"
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

// False for an output item the Responses API cannot take back from the conversation: a
// reasoning item without its encrypted_content (the client did not include
// "reasoning.encrypted_content"), which the upstream could only find in its own store, and
// the gateway sends store false (routers/openai_wire.h).
bool replayable(const api::Json& item) {
  if (!item.is_object() || item.value("type", api::Json()) != "reasoning") return true;
  const api::Json content = item.value("encrypted_content", api::Json());
  return content.is_string() && !content.get_ref<const std::string&>().empty();
}

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
    if (replayable(item)) c.conversation.push_back(std::move(item));
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

bool isBackground(const api::Json& body) {
  auto b = body.find("background");
  return b != body.end() && b->is_boolean() && b->get<bool>();
}

// What is stored of a response beside its Response object: its own input items and, when it
// continues another, the conversation before them.
StoredResponse rowFor(const api::Json& request, const std::string& id, const std::string& team,
                      ResponseStore* store) {
  StoredResponse row{id, team, unixSeconds(), "", "", ""};
  row.input = dumpJson(api::inputItems(request.value("input", api::Json())));
  auto continued = continueFrom(request, team, store);
  row.conversation = continued.ok() ? dumpJson(continued->conversation) : "[]";
  return row;
}

std::string responseIdFor(const std::string& request_id) {
  return "resp_" + (request_id.rfind("req_", 0) == 0 ? request_id.substr(4) : request_id);
}

void logNotStored(const std::string& id) {
  std::fprintf(stderr, "{\"level\":\"error\",\"msg\":\"response not stored\",\"id\":\"%s\"}\n",
               id.c_str());
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

  // An answer passed through from the Responses API (r.native) is the upstream's Response
  // object with the gateway's id, model, store and previous_response_id; it is stored as
  // such, so that a follow-up carries its output items (reasoning included) as they came.
  std::string response(const api::ChatResponse& r) override {
    std::string body;
    if (!r.native.empty()) {
      auto owned = api::ownedResponse(r.native, request_, id_, model_);
      if (owned.ok()) body = std::move(owned).value();
    }
    if (body.empty()) body = api::serializeResponse(r, request_, id_, model_, created_at_);
    keep(body);
    return body;
  }
  std::string chunk(const api::ChatChunk& c) override { return stream_.chunk(c); }
  std::string streamEnd(const api::ChatResponse& r) override {
    std::string out = stream_.finish(r.usage, r.native);
    if (stream_.finalResponse().is_object()) keep(dumpJson(stream_.finalResponse()));
    return out;
  }
  std::string streamError(const api::Status& s) override { return stream_.error(s); }

 private:
  // Stores the finished response (store: true); a store that fails costs the answer nothing.
  void keep(const std::string& response) {
    if (!store_) return;
    row_.response = response;
    if (api::Status st = store_->put(row_, unixSeconds()); !st.ok()) logNotStored(id_);
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
    if (!body.contains("previous_response_id")) return parse(ex);
    auto continued = continueFrom(std::move(body), team, store_);
    if (!continued.ok()) return continued.status();
    // Only `input` and previous_response_id change; every other member keeps its bytes, so
    // that a schema's property order (text.format, tools) is the client's.
    std::vector<api::MemberEdit> edits;
    if (!continued->body.contains("previous_response_id")) {
      edits.push_back({"previous_response_id", std::nullopt});
    }
    if (auto in = continued->body.find("input"); in != continued->body.end()) {
      edits.push_back({"input", *in});
    }
    auto text = api::editTopLevelMembers(ex.body, edits);
    if (!text.ok()) return api::parseResponsesRequest(dumpJson(continued->body));
    return api::parseResponsesRequest(*text);
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
    auto store_field = request.find("store");  // absent or null: stored, as OpenAI does
    const bool store_on = store_field == request.end() || !store_field->is_boolean() ||
                          store_field->get<bool>();
    // A background response is stored by its run (BackgroundRun), which knows whether it was
    // cancelled or deleted meanwhile.
    ResponseStore* store = store_on && !team.empty() && !isBackground(request) ? store_ : nullptr;
    std::string response_id = responseIdFor(ex.request_id);
    StoredResponse row = store ? rowFor(request, response_id, team, store_)
                               : StoredResponse{response_id, team, unixSeconds(), "", "", ""};
    const int64_t created_at = row.created_at;
    return std::make_unique<ResponsesWriter>(std::move(request), std::move(response_id), model,
                                             created_at, store, std::move(row));
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

class BackgroundRun;

// The background runs in progress on this gateway, by team and response id, for POST
// .../cancel; at most kMaxPerTeam per team.
class BackgroundRuns {
 public:
  static constexpr int kMaxPerTeam = 64;

  // kRateLimited when the team has kMaxPerTeam runs, kInvalidRequest when a run of that id is
  // in progress (a client's x-request-id used twice).
  api::Status add(const std::string& team, const std::string& id,
                  std::weak_ptr<BackgroundRun> run) {
    std::lock_guard<std::mutex> lock(mu_);
    if (runs_.count({team, id})) {
      return api::invalidRequest("A background response with id '" + id + "' is in progress.",
                                 "x-request-id");
    }
    if (per_team_[team] >= kMaxPerTeam) {
      return api::Status(api::ErrorCode::kRateLimited,
                         "Team '" + team + "' has " + std::to_string(kMaxPerTeam) +
                             " background responses in progress; wait for one to finish.");
    }
    ++per_team_[team];
    runs_[{team, id}] = std::move(run);
    return {};
  }
  void remove(const std::string& team, const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    if (runs_.erase({team, id}) && --per_team_[team] == 0) per_team_.erase(team);
  }
  std::shared_ptr<BackgroundRun> find(const std::string& team, const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find({team, id});
    return it == runs_.end() ? nullptr : it->second.lock();
  }

 private:
  std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::weak_ptr<BackgroundRun>> runs_;
  std::map<std::string, int> per_team_;
};

// One background response: the Responder the pipeline answers instead of the client. Until
// detach() it hands every answer to the client (a refusal at admission, or an answer that came
// before the request was detached; a finished one is stored too); after, it keeps the outcome
// in the stored row, unless the row was cancelled or deleted meanwhile (here or, with a shared
// store, through another replica: the row is read before it is replaced).
class BackgroundRun : public Responder {
 public:
  BackgroundRun(std::shared_ptr<Responder> client, ResponseStore* store, StoredResponse row,
                api::Json request, std::string model, std::shared_ptr<BackgroundRuns> runs)
      : client_(std::move(client)),
        store_(store),
        row_(std::move(row)),
        request_(std::move(request)),
        model_(std::move(model)),
        runs_(std::move(runs)) {}

  // The request was admitted and handed to the pipeline: the client gets it as queued, unless
  // it was already answered. The client's connection is not held after that.
  void detach() {
    std::shared_ptr<Responder> client;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!answered_) {
        keepLocked("in_progress", api::Json());
        detached_ = true;
      }
      client = std::move(client_);
    }
    if (!client) return runs_->remove(row_.team, row_.id);
    client->reply(200, pending("queued"), {});
  }

  // POST .../cancel: the call is cancelled and the row says so; `drop` (DELETE): the row is
  // not written again. False when the run had ended.
  bool cancel(bool drop = false) {
    std::vector<std::function<void()>> gone;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (ended_) return false;
      cancelled_ = true;
      if (!drop) keepLocked("cancelled", api::Json());
      dropped_ = drop;
      gone.swap(gone_);
    }
    for (auto& fn : gone) fn();
    return true;
  }

  void reply(int status, std::string body, Headers headers,
             std::string_view content_type) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (!detached_) {
      answered_ = true;
      if (status == 200) {
        row_.response = body;  // answered before it was detached: still a stored response
        putLocked();
      }
      std::shared_ptr<Responder> client = std::move(client_);
      lock.unlock();
      if (client) client->reply(status, std::move(body), std::move(headers), content_type);
      return;
    }
    ended_ = true;
    if (cancelled_) {
      keepLocked("cancelled", api::Json());
    } else if (stillRunningElsewhere()) {
      if (status == 200) {
        row_.response = std::move(body);  // the finished Response object
        putLocked();
      } else {
        keepLocked("failed", errorOf(body));
      }
    }
    lock.unlock();
    runs_->remove(row_.team, row_.id);
  }
  // Background responses are never streamed (refused before they start).
  void startStream(Headers) override {}
  void write(std::string) override {}
  void finish() override { reply(500, "{}", {}, "application/json"); }
  void onClientGone(std::function<void()> fn) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cancelled_) {
      gone_.push_back(std::move(fn));
      return;
    }
    lock.unlock();
    fn();
  }
  size_t pendingBytes() const override { return 0; }

 private:
  std::string pending(std::string_view status, const api::Json& error = {}) const {
    return api::pendingResponse(request_, row_.id, model_, row_.created_at, status, error);
  }
  // {code, message} of an error body in OpenAI's shape (server_error when it is not one).
  static api::Json errorOf(const std::string& body) {
    const api::Json j = api::Json::parse(body, nullptr, false);
    const api::Json e = j.is_object() ? j.value("error", api::Json()) : api::Json();
    auto text = [&](const char* key, const char* fallback) {
      return e.is_object() && e.contains(key) && e[key].is_string() ? e[key].get<std::string>()
                                                                   : std::string(fallback);
    };
    return api::Json{{"code", text("code", "server_error")}, {"message", text("message", "")}};
  }
  // False when the stored row was deleted or cancelled (through another replica sharing the
  // store); then the outcome is not written.
  bool stillRunningElsewhere() {
    auto stored = store_->get(row_.team, row_.id);
    if (!stored.ok()) return true;  // write anyway: a store error must not lose the answer
    if (!stored->has_value()) return false;
    const api::Json r = api::Json::parse((*stored)->response, nullptr, false);
    return !r.is_object() || r.value("status", api::Json()) != api::Json("cancelled");
  }
  void keepLocked(std::string_view status, const api::Json& error) {
    row_.response = pending(status, error);
    putLocked();
  }
  void putLocked() {
    if (!dropped_ && !store_->put(row_, unixSeconds()).ok()) logNotStored(row_.id);
  }

  std::shared_ptr<Responder> client_;  // until detach(): the client's connection
  ResponseStore* const store_;
  StoredResponse row_;
  const api::Json request_;
  const std::string model_;
  const std::shared_ptr<BackgroundRuns> runs_;
  std::mutex mu_;
  bool answered_ = false;   // the client was answered before detach()
  bool detached_ = false;   // the client has the queued response; answers go to the row
  bool cancelled_ = false;
  bool ended_ = false;      // the pipeline answered after detach()
  bool dropped_ = false;    // deleted while it ran: the row stays deleted
  std::vector<std::function<void()>> gone_;  // the pipeline's cancellation
};

std::shared_ptr<BackgroundRuns> makeBackgroundRuns() { return std::make_shared<BackgroundRuns>(); }

void Gateway::handleResponses(Exchange& ex, const std::shared_ptr<Responder>& responder) {
  const api::Json body = api::Json::parse(ex.body, nullptr, false);
  if (!body.is_object() || !isBackground(body)) {
    return handleChat(ex, responder, *responses_entrance_);
  }
  auto principal = liveState()->auth->authenticate(ex.authorization);
  if (!principal.ok()) return handleChat(ex, responder, *responses_entrance_);  // its 401
  auto refuse = [&](const std::string& message, const std::string& param) {
    replyError(ex, responder, api::invalidRequest(message, param), principal->team, "", "",
               *responses_entrance_);
  };
  if (body.value("stream", api::Json(false)) == api::Json(true)) {
    return refuse("Background responses are not streamed here; poll GET /v1/responses/{id}.",
                  "stream");
  }
  if (body.value("store", api::Json(true)) == api::Json(false)) {
    return refuse("Background mode requires store=true.", "store");
  }
  if (principal->team.empty()) {
    return refuse("Background responses are stored per team; use a team's key.", "background");
  }
  const std::string id = responseIdFor(ex.request_id);
  const std::string model = body.value("model", api::Json("")).is_string()
                                ? body.value("model", std::string())
                                : std::string();
  auto run = std::make_shared<BackgroundRun>(
      responder, response_store_.get(),
      rowFor(body, id, principal->team, response_store_.get()), body, model, background_runs_);
  if (api::Status added = background_runs_->add(principal->team, id, run); !added.ok()) {
    return replyError(ex, responder, added, principal->team, "", "", *responses_entrance_);
  }
  handleChat(ex, run, *responses_entrance_);
  run->detach();
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
    const api::Json response = api::Json::parse((*stored)->response, nullptr, false);
    if (!response.is_object() || !isBackground(response)) {
      return replyError(ex, responder,
                        api::Status(api::ErrorCode::kInvalidRequest,
                                    "Cannot cancel a synchronous response.", {}),
                        team, "", "");
    }
    // A run in progress is cancelled; a finished one is answered as it stands, as OpenAI does.
    // A run of another replica sharing the store is marked cancelled in its row: that replica
    // then keeps its outcome out of the row (its call runs to its end).
    if (auto run = background_runs_->find(team, id); run && run->cancel()) {
      stored = response_store_->get(team, id);
      if (!stored.ok() || !stored->has_value()) {
        return replyError(ex, responder, responseNotFound(id, "response_id"), team, "", "");
      }
    } else if (const api::Json status = response.value("status", api::Json());
               status == "queued" || status == "in_progress") {
      api::Json cancelled = response;
      cancelled["status"] = "cancelled";
      StoredResponse row = **stored;
      row.response = dumpJson(cancelled);
      if (api::Status st = response_store_->put(row, unixSeconds()); !st.ok()) {
        return replyError(ex, responder, st, team, "", "");
      }
      return responder->reply(200, row.response, {});
    }
    return responder->reply(200, (*stored)->response, {});
  }
  std::string body;
  if (action == "input_items") {
    body = dumpJson(inputItemsList(**stored, ex.target));
  } else if (method == "DELETE") {
    if (auto run = background_runs_->find(team, id)) run->cancel(/*drop=*/true);
    auto removed = response_store_->remove(team, id);
    if (!removed.ok()) return replyError(ex, responder, removed.status(), team, "", "");
    body = dumpJson(api::Json{{"id", id}, {"object", "response.deleted"}, {"deleted", true}});
  } else {
    body = (*stored)->response;
  }
  responder->reply(200, std::move(body), {});
}

}  // namespace gateway
