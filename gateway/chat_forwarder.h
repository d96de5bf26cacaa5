// ChatForwarder: streams (or collects) one chat answer back to the client in its entrance's
// format (gateway/entrance.h: OpenAI's, Anthropic's),
// with headers that say which target answered, after how many attempts and what it cost, and
// ends the request's ledger row (routers::Account) with the status that says what happened.
// Streams pause their upstream while the client reads slowly (Responder backpressure).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "api/chat.h"
#include "gateway/entrance.h"
#include "gateway/exchange.h"
#include "gateway/http_util.h"
#include "gateway/live_stats.h"
#include "gateway/metrics.h"
#include "routers/provider.h"
#include "routers/spend.h"

namespace gateway {

class ChatForwarder : public routers::ChatSink,
                      public std::enable_shared_from_this<ChatForwarder> {
 public:
  // Called once after a successful answer reached the client, with the target that answered
  // and the answer (streamed answers assembled): shadow comparisons start here.
  using AnswerTap = std::function<void(const routers::RouteInfo& route, bool local_route,
                                       const api::ChatResponse& answer)>;

  struct Context {
    std::string team, model;  // the model as the client named it
    bool stream = false;
    Clock::time_point received;
    const Entrance* entrance = &openaiEntrance();  // errors' status and body
    std::shared_ptr<AnswerWriter> writer;          // answers and stream events
    std::string request_id;
    std::string route_hint;  // the client's hint as applied ("" when none): a response header
  };

  ChatForwarder(std::shared_ptr<Responder> out, Metrics& metrics,
                const std::set<std::string>& local_providers, LiveStats& live,
                std::shared_ptr<routers::Account> account, Context context);

  // Wires the client's departure and drain notifications to this forwarder.
  void attach();

  void onRoute(const routers::RouteInfo& route) override;
  // Used before any answer exists (a refusal after planning): the scores the plan saw.
  void setDecision(std::optional<double> complexity, std::string note);
  void setTap(AnswerTap tap) { tap_ = std::move(tap); }
  void setCall(std::shared_ptr<routers::ProviderCall> call);
  void cancel();

  void onChunk(api::ChatChunk chunk) override;
  void onFinish(api::StatusOr<api::ChatResponse> result) override;

 private:
  void finishError(const api::Status& s, double duration);
  void finishStream(api::ChatResponse& r, double duration);
  void pause();
  void resume();
  Headers headers() const;
  std::string answeringModel() const;

  std::shared_ptr<Responder> out_;
  Metrics& metrics_;
  const std::set<std::string>& local_providers_;
  LiveStats& live_;
  const std::shared_ptr<routers::Account> account_;
  const Context ctx_;
  AnswerTap tap_;
  std::string streamed_text_, streamed_finish_;
  routers::RouteInfo route_;
  bool started_ = false;
  double ttft_ = -1;

  std::mutex mu_;
  std::shared_ptr<routers::ProviderCall> call_;
  bool cancel_requested_ = false;
  bool paused_ = false;
  bool finished_ = false;
};

}  // namespace gateway
