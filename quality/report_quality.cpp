// The quality report (quality/report.h): local against cloud, from quality records.
#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "quality/report.h"
#include "quality/svg.h"

namespace quality {
namespace {

using svg::escape;
using svg::format;
using svg::Format;

// Answers and prompts longer than this are cut on the page (the record keeps them whole).
constexpr size_t kMaxShownChars = 6000;
// The threshold sweep of the trade-off curve: 0, 0.05, ..., 1.
constexpr int kThresholdSteps = 20;

const char* const kWinColor = "#59a14f";
const char* const kTieColor = "#bab0ac";
const char* const kLossColor = "#e15759";

// -1 a local win (delta < -kTieMargin), 0 a tie, +1 a local loss (delta > kTieMargin).
int outcome(double delta) { return delta < -kTieMargin ? -1 : delta > kTieMargin ? 1 : 0; }

// Wins, ties and losses: weighted (each record counts QualityRecord::weight(), the requests it
// stands for) and raw (records).
struct Tally {
  double wins = 0, ties = 0, losses = 0;
  int64_t raw_wins = 0, raw_ties = 0, raw_losses = 0;
  double total() const { return wins + ties + losses; }
  int64_t count() const { return raw_wins + raw_ties + raw_losses; }
  void add(double delta, double w) {
    switch (outcome(delta)) {
      case -1:
        wins += w;
        ++raw_wins;
        break;
      case 1:
        losses += w;
        ++raw_losses;
        break;
      default:
        ties += w;
        ++raw_ties;
    }
  }
};

// The record's delta (the judge's verdict) when it is a number.
std::optional<double> deltaOf(const QualityRecord& r) {
  std::optional<double> d = r.delta();
  if (d && !std::isfinite(*d)) return std::nullopt;
  return d;
}

double share(double part, double whole) { return whole > 0 ? part / whole : 0.0; }

std::string count(int64_t n) { return format(static_cast<double>(n), Format::kCount); }

// The bucket of a score in [0, 1]; -1 when absent or not a number.
int scoreBucket(std::optional<double> v) {
  if (!v || !std::isfinite(*v)) return -1;
  int b = static_cast<int>(std::floor(*v * kScoreBuckets));
  return std::clamp(b, 0, kScoreBuckets - 1);
}

std::string scoreBucketLabel(int b) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f–%.1f", static_cast<double>(b) / kScoreBuckets,
                static_cast<double>(b + 1) / kScoreBuckets);
  return buf;
}

std::string card(const std::string& key, const std::string& value, const std::string& sub = "") {
  std::string s = "<div class=\"card\"><div class=\"k\">" + escape(key) +
                  "</div><div class=\"v\">" + escape(value) + "</div>";
  if (!sub.empty()) s += "<div class=\"s\">" + escape(sub) + "</div>";
  return s + "</div>";
}

std::string countAndShare(int64_t n, int64_t whole) {
  return count(n) + " (" +
         format(share(static_cast<double>(n), static_cast<double>(whole)), Format::kPercent) + ")";
}

// A weighted share, with the raw count of records under it: "37.5%" / "12 records".
std::string weightedCard(const std::string& key, double part, double whole, int64_t raw) {
  return card(key, format(share(part, whole), Format::kPercent),
              count(raw) + (raw == 1 ? " record" : " records"));
}

std::string optScore(std::optional<double> v) {
  return v && std::isfinite(*v) ? format(*v, Format::kNumber) : "–";
}

// ---- Sections ----

std::string summarySection(const std::vector<QualityRecord>& records, const Tally& all) {
  int64_t n = static_cast<int64_t>(records.size());
  int64_t escalations = 0, shadows = 0, with_feedback = 0;
  double represented = 0, delta_sum = 0;
  for (const QualityRecord& r : records) {
    (r.kind == RecordKind::kShadow ? shadows : escalations)++;
    if (r.feedback) ++with_feedback;
    represented += r.weight();
    if (auto d = deltaOf(r)) delta_sum += r.weight() * *d;
  }
  const int64_t judged = all.count();
  std::string s = "<section id=\"summary\"><h2>Summary</h2>";
  s += "<div class=\"cards\">";
  s += card("Records", count(n),
            count(escalations) + " escalations, " + count(shadows) + " shadow samples");
  s += card("Requests represented", format(represented, Format::kCount),
            "Σ 1/sampling_p over the records");
  s += card("Judged", count(judged), "judge verdict parsed");
  s += card("With user feedback", count(with_feedback), "a signal of its own, below");
  s += weightedCard("Local wins", all.wins, all.total(), all.raw_wins);
  s += weightedCard("Ties", all.ties, all.total(), all.raw_ties);
  s += weightedCard("Local losses", all.losses, all.total(), all.raw_losses);
  s += card("Mean delta", format(all.total() > 0 ? delta_sum / all.total() : 0, Format::kNumber),
            "judge, cloud over local, in [-1, 1]");
  s += "</div>";
  s += "<p class=\"note\" id=\"weighting\">Rates, shares and means on this page are "
       "<b>weighted</b> estimates: each record counts 1/sampling_p, the requests it stands for "
       "(an escalation, always recorded, counts 1; a shadow sample, drawn at the team's "
       "shadow_rate, counts 1/shadow_rate), so that they describe the traffic, not the sample. "
       "Raw record counts are shown beside them.</p>";
  s += "<p class=\"note\" id=\"outcome-rule\">The delta is the LLM judge's cloud-over-local "
       "preference in [-1, 1], when its verdict parsed; user feedback is reported beside it, "
       "not mixed in. A delta below -" +
       format(kTieMargin, Format::kNumber) + " is a <b>local win</b>, above +" +
       format(kTieMargin, Format::kNumber) +
       " a <b>local loss</b> (the cloud was better), "
       "anything between a <b>tie</b>.</p>";
  int64_t without = n - judged;
  s += "<p class=\"note\" id=\"without-delta\">" + count(without) +
       (without == 1 ? " record has" : " records have") +
       " no delta (no parsed judge verdict) and " + (without == 1 ? "is" : "are") +
       " left out of wins, ties and losses.</p>";
  return s + "</section>";
}

// The judge's verdicts and the users' feedback side by side, and how often they agree where a
// record has both.
std::string signalsSection(const std::vector<QualityRecord>& records) {
  struct Side {
    int64_t raw = 0;
    double w = 0, delta = 0;
    Tally tally;
  };
  Side judge, feedback, both_judge, both_feedback;
  double score_sum = 0, agree = 0;
  int64_t raw_agree = 0;
  std::map<std::string, int64_t> by_scale;
  for (const QualityRecord& r : records) {
    const double w = r.weight();
    std::optional<double> j = deltaOf(r), f = r.feedbackDelta();
    auto add = [w](Side& side, double d) {
      ++side.raw;
      side.w += w;
      side.delta += w * d;
      side.tally.add(d, w);
    };
    if (j) add(judge, *j);
    if (f) {
      add(feedback, *f);
      score_sum += w * r.feedback->normalized();
      ++by_scale[std::string(feedbackScaleName(r.feedback->scale))];
    }
    if (j && f) {
      add(both_judge, *j);
      add(both_feedback, *f);
      if (outcome(*j) == outcome(*f)) {
        agree += w;
        ++raw_agree;
      }
    }
  }
  auto mean = [](const Side& side) { return side.w > 0 ? side.delta / side.w : 0.0; };
  auto row = [&](const std::string& name, const Side& side) {
    return "<tr data-signal=\"" + escape(name) + "\"><td>" + escape(name) +
           "</td><td class=\"num\">" + count(side.raw) + "</td><td class=\"num\">" +
           format(mean(side), Format::kNumber) + "</td><td class=\"num\">" +
           format(share(side.tally.wins, side.tally.total()), Format::kPercent) +
           "</td><td class=\"num\">" +
           format(share(side.tally.losses, side.tally.total()), Format::kPercent) + "</td></tr>";
  };
  std::string s = "<section id=\"judge-and-feedback\"><h2>Judge and user feedback</h2>";
  s += "<p class=\"note\">Two signals, kept apart: the LLM judge's verdict on both answers, and "
       "what users said of the answer they got (an escalation's cloud answer, a shadow sample's "
       "local one), read as a cloud-over-local delta on the same scale. Means and shares are "
       "weighted by 1/sampling_p; records are raw counts.</p>";
  s += "<table id=\"signals\"><thead><tr><th>signal</th><th class=\"num\">records</th><th "
       "class=\"num\">mean delta</th><th class=\"num\">local wins</th><th class=\"num\">local "
       "losses</th></tr></thead><tbody>";
  s += row("judge", judge) + row("user feedback", feedback) + row("judge, where both", both_judge) +
       row("user feedback, where both", both_feedback);
  s += "</tbody></table>";
  std::string scales;
  for (const auto& [name, n] : by_scale) {
    scales += (scales.empty() ? "" : ", ") + count(n) + " on the " + name + " scale";
  }
  s += "<p class=\"note\" id=\"feedback-scores\">" +
       (feedback.raw == 0
            ? std::string("No record has user feedback.")
            : "Mean user score " +
                  format(feedback.w > 0 ? score_sum / feedback.w : 0, Format::kNumber) +
                  " on [-1, 1] (scores normalised from their scale: " + scales + ").") +
       "</p>";
  s += "<p class=\"note\" id=\"agreement\">" +
       (both_judge.raw == 0
            ? std::string("No record has both a judge verdict and user feedback.")
            : "Where a record has both (" + count(both_judge.raw) +
                  "), the judge and the user name the same outcome (local win, tie or local "
                  "loss) for " +
                  format(share(agree, both_judge.w), Format::kPercent) + " (" + count(raw_agree) +
                  " records).") +
       "</p>";
  return s + "</section>";
}

// Wins, ties and losses per score bucket, as a stacked chart and a table.
std::string outcomesSection(const std::vector<QualityRecord>& records, bool by_complexity) {
  std::array<Tally, kScoreBuckets> tallies{};
  int64_t missing = 0;
  for (const QualityRecord& r : records) {
    auto d = deltaOf(r);
    if (!d) continue;
    int b = scoreBucket(by_complexity ? r.complexity : r.confidence);
    if (b < 0) {
      ++missing;
      continue;
    }
    tallies[static_cast<size_t>(b)].add(*d, r.weight());
  }
  std::string what = by_complexity ? "complexity" : "confidence";
  std::string id = "outcomes-by-" + what;
  std::vector<std::string> categories;
  svg::Series wins{"local wins", {}, kWinColor}, ties{"ties", {}, kTieColor},
      losses{"local losses", {}, kLossColor};
  int64_t plotted = 0;
  for (int b = 0; b < kScoreBuckets; ++b) {
    const Tally& t = tallies[static_cast<size_t>(b)];
    categories.push_back(scoreBucketLabel(b));
    wins.values.push_back(static_cast<double>(t.wins));
    ties.values.push_back(static_cast<double>(t.ties));
    losses.values.push_back(static_cast<double>(t.losses));
    plotted += t.count();
  }
  std::string s = "<section id=\"" + id + "\"><h2>Outcomes by " + what + "</h2>";
  s += by_complexity
           ? "<p class=\"note\">The router's complexity score of the prompt (0: simple, 1: "
             "hard) when it chose.</p>"
           : "<p class=\"note\">The local engine's confidence in its answer (0: none, 1: "
             "certain).</p>";
  svg::Chart c;
  c.name = id;
  c.title = "Local wins, ties and losses by " + what;
  c.x_label = what;
  c.y_label = "requests (weighted)";
  c.y_format = Format::kCount;
  s += "<figure>";
  s += plotted > 0 ? svg::stackedBarChart(c, categories, {wins, ties, losses})
                   : svg::stackedBarChart(c, {}, {});
  s += "</figure>";
  s += "<table><thead><tr><th>" + escape(what) +
       "</th><th class=\"num\">records</th><th class=\"num\">local wins</th><th "
       "class=\"num\">ties</th><th class=\"num\">local losses</th><th class=\"num\">loss "
       "rate (weighted)</th></tr></thead><tbody>";
  for (int b = 0; b < kScoreBuckets; ++b) {
    const Tally& t = tallies[static_cast<size_t>(b)];
    s += "<tr><td>" + escape(categories[static_cast<size_t>(b)]) + "</td><td class=\"num\">" +
         count(t.count()) + "</td><td class=\"num\">" + count(t.raw_wins) +
         "</td><td class=\"num\">" + count(t.raw_ties) + "</td><td class=\"num\">" +
         count(t.raw_losses) + "</td><td class=\"num\">" +
         format(share(t.losses, t.total()), Format::kPercent) + "</td></tr>";
  }
  s += "</tbody></table>";
  s += "<p class=\"note\">The chart stacks the requests the records stand for (each weighted by "
       "1/sampling_p); the table counts records, its loss rate is weighted.</p>";
  if (missing > 0) {
    s += "<p class=\"note\">" + format(static_cast<double>(missing), Format::kCount) +
         (missing == 1 ? " record with a delta has no " : " records with a delta have no ") + what +
         " score and " + (missing == 1 ? "is" : "are") + " not in this chart.</p>";
  }
  return s + "</section>";
}

// The confidence threshold sweep: escalating every record below the threshold, how many go to
// the cloud and how much worse the ones kept local are.
std::string tradeoffSection(const std::vector<QualityRecord>& records) {
  struct Scored {
    double confidence, loss, w;
  };
  std::vector<Scored> scored;
  double total = 0;
  for (const QualityRecord& r : records) {
    auto d = deltaOf(r);
    if (!d || !r.confidence || !std::isfinite(*r.confidence)) continue;
    scored.push_back({*r.confidence, std::max(0.0, *d), r.weight()});
    total += r.weight();
  }
  svg::Line line{"mean loss kept local", {}, kLossColor, false};
  struct Row {
    double threshold, escalated, loss;
    int64_t kept;
  };
  std::vector<Row> table;
  for (int k = 0; k <= kThresholdSteps && !scored.empty(); ++k) {
    double t = static_cast<double>(k) / kThresholdSteps;
    int64_t kept = 0;
    double escalated = 0, kept_w = 0, loss = 0;
    for (const Scored& sc : scored) {
      if (sc.confidence < t) {
        escalated += sc.w;
      } else {
        ++kept;
        kept_w += sc.w;
        loss += sc.w * sc.loss;
      }
    }
    double x = share(escalated, total);
    double y = share(loss, kept_w);
    char label[48];
    std::snprintf(label, sizeof(label), "threshold %.2f", t);
    line.points.push_back({x, y, label});
    if (k % 2 == 0) table.push_back({t, x, y, kept});
  }
  std::string s =
      "<section id=\"threshold-tradeoff\"><h2>Confidence threshold trade-off</h2>"
      "<p class=\"note\">For each confidence threshold from 0 to 1 (steps of 0.05): escalate every "
      "record whose confidence is below it. x: the share of requests escalated; y: the mean "
      "quality loss of the requests kept local, max(0, delta) averaged over them (0 when none is "
      "kept), both weighted by 1/sampling_p. Computed over the " +
      format(static_cast<double>(scored.size()), Format::kCount) +
      " records with both a confidence and a delta; escalation records were already below the "
      "trigger when they were made, so shadow samples give the unbiased picture.</p>";
  svg::Chart c;
  c.name = "threshold-tradeoff";
  c.title = "Share escalated against the quality loss kept local";
  c.x_label = "share escalated";
  c.y_label = "mean loss kept local";
  c.x_format = Format::kPercent;
  c.x_min = 0;
  c.x_max = 1;
  std::vector<svg::Line> lines;
  if (!line.points.empty()) lines.push_back(std::move(line));
  s += "<figure>" + svg::lineChart(c, lines) + "</figure>";
  if (!table.empty()) {
    s += "<table><thead><tr><th class=\"num\">threshold</th><th class=\"num\">escalated</th><th "
         "class=\"num\">kept local</th><th class=\"num\">mean loss kept local</th></tr></thead>"
         "<tbody>";
    for (const Row& r : table) {
      s += "<tr><td class=\"num\">" + format(r.threshold, Format::kNumber) +
           "</td><td class=\"num\">" + format(r.escalated, Format::kPercent) +
           "</td><td class=\"num\">" + format(static_cast<double>(r.kept), Format::kCount) +
           "</td><td class=\"num\">" + format(r.loss, Format::kNumber) + "</td></tr>";
    }
    s += "</tbody></table>";
  }
  return s + "</section>";
}

std::string overTimeSection(const std::vector<QualityRecord>& records,
                            const std::vector<policies::LedgerRow>* ledger,
                            const QualityReportOptions& o) {
  std::string s = "<section id=\"over-time\"><h2>Escalation over time</h2>";
  if (ledger) {
    std::vector<const policies::LedgerRow*> cascaded;
    for (const policies::LedgerRow& r : *ledger) {
      if (r.decision == "cascade" || r.decision == "escalated") cascaded.push_back(&r);
    }
    svg::Chart c;
    c.name = "escalation-rate";
    c.title = "Escalation rate per time bucket";
    c.y_label = "escalated";
    c.y_format = Format::kPercent;
    if (cascaded.empty()) {
      s += "<p class=\"note\">The ledger has no cascaded requests (decision \"cascade\" or "
           "\"escalated\").</p><figure>" +
           svg::barChart(c, {}) + "</figure>";
      return s + "</section>";
    }
    int64_t lo = cascaded.front()->unix_ms, hi = lo;
    for (const auto* r : cascaded) {
      lo = std::min(lo, r->unix_ms);
      hi = std::max(hi, r->unix_ms);
    }
    svg::TimeBuckets b = svg::makeBuckets(lo, hi, o.bucket_ms);
    std::vector<int64_t> escalated(b.count, 0), total(b.count, 0);
    for (const auto* r : cascaded) {
      size_t i = b.indexOf(r->unix_ms);
      ++total[i];
      if (r->decision == "escalated") ++escalated[i];
    }
    std::vector<svg::Bar> bars;
    for (size_t i = 0; i < b.count; ++i) {
      bars.push_back({b.label(i), share(escalated[i], total[i]),
                      total[i] == 0 ? std::string("no cascaded requests")
                                    : std::to_string(escalated[i]) + " of " +
                                          std::to_string(total[i]) + " cascaded requests"});
    }
    c.x_label = "time (UTC), buckets of " + b.widthText();
    s += "<p class=\"note\">From the ledger: per bucket, requests the cascade escalated to the "
         "cloud over all cascaded requests (decision \"escalated\" over \"cascade\" and "
         "\"escalated\"); a bucket without cascaded requests shows 0.</p>";
    s += "<figure>" + svg::barChart(c, bars, "#f28e2b") + "</figure>";
    return s + "</section>";
  }
  svg::Chart c;
  c.name = "records-over-time";
  c.title = "Quality records per time bucket";
  c.y_label = "records";
  c.y_format = Format::kCount;
  s += "<p class=\"note\">No ledger was given, so this counts quality records per bucket by "
       "kind instead of the escalation rate.</p>";
  if (records.empty())
    return s + "<figure>" + svg::stackedBarChart(c, {}, {}) + "</figure></section>";
  int64_t lo = records.front().unix_ms, hi = lo;
  for (const QualityRecord& r : records) {
    lo = std::min(lo, r.unix_ms);
    hi = std::max(hi, r.unix_ms);
  }
  svg::TimeBuckets b = svg::makeBuckets(lo, hi, o.bucket_ms);
  svg::Series esc{"escalation", std::vector<double>(b.count, 0), "#f28e2b"};
  svg::Series shadow{"shadow", std::vector<double>(b.count, 0), "#4e79a7"};
  for (const QualityRecord& r : records) {
    (r.kind == RecordKind::kShadow ? shadow : esc).values[b.indexOf(r.unix_ms)] += 1;
  }
  std::vector<std::string> labels;
  for (size_t i = 0; i < b.count; ++i) labels.push_back(b.label(i));
  c.x_label = "time (UTC), buckets of " + b.widthText();
  s += "<figure>" + svg::stackedBarChart(c, labels, {esc, shadow}) + "</figure>";
  return s + "</section>";
}

std::string shownText(const std::string& text) {
  std::string cut = svg::truncate(text, kMaxShownChars);
  std::string s = "<pre>" + escape(cut) + "</pre>";
  if (cut.size() != text.size()) {
    s += "<p class=\"meta\">Cut to " + std::to_string(kMaxShownChars) +
         " characters on this page.</p>";
  }
  return s;
}

std::string answerBlock(const std::string& side, const Answer& a) {
  std::string head = side + " · " + (a.model.empty() ? std::string("unknown model") : a.model);
  if (!a.complete) head += " (draft, cut short)";
  std::string s = "<div><h4>" + escape(head) + "</h4>";
  s += a.text.empty() ? "<p class=\"empty\">(empty answer)</p>" : shownText(a.text);
  s += "<p class=\"meta\">" + format(static_cast<double>(a.completion_tokens), Format::kCount) +
       (a.completion_tokens == 1 ? " token · " : " tokens · ") +
       format(a.latency_ms, Format::kCount) + " ms · " + format(a.cost_usd, Format::kUsd) + "</p>";
  return s + "</div>";
}

std::string worstSection(const std::vector<QualityRecord>& records, size_t worst_n) {
  std::vector<std::pair<double, const QualityRecord*>> losses;
  for (const QualityRecord& r : records) {
    auto d = deltaOf(r);
    if (d && *d > kTieMargin) losses.push_back({*d, &r});
  }
  std::stable_sort(losses.begin(), losses.end(), [](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first > b.first;
    return a.second->unix_ms > b.second->unix_ms;  // the newer first among equals
  });
  size_t shown = std::min(losses.size(), worst_n);
  std::string s = "<section id=\"worst-losses\"><h2>Worst local losses</h2>";
  s += "<p class=\"note\">The " + std::to_string(shown) + " records with the largest delta (of " +
       std::to_string(losses.size()) +
       " local losses), the prompt's last user message and both "
       "answers side by side.</p>";
  if (shown == 0) return s + "<p class=\"empty\">No local losses.</p></section>";
  for (size_t i = 0; i < shown; ++i) {
    const QualityRecord& r = *losses[i].second;
    std::string meta =
        "#" + std::to_string(i + 1) + " · delta " + format(losses[i].first, Format::kNumber) +
        " (judge) · " + svg::utcDateTime(r.unix_ms) + " · team " + r.team + " · " +
        std::string(kindName(r.kind)) +
        (r.reason.empty() || r.reason == kindName(r.kind) ? std::string() : " (" + r.reason + ")") +
        " · complexity " + optScore(r.complexity) + " · confidence " + optScore(r.confidence);
    if (r.judge && r.judge->status == JudgeStatus::kOk) {
      meta += " · judge " + r.judge->model + ": " + r.judge->verdict_ab + " / " +
              r.judge->verdict_ba + (r.judge->agreement ? "" : " (orders disagree)");
    }
    if (r.feedback) {
      meta += " · user feedback " + format(r.feedback->score, Format::kNumber) + " (" +
              std::string(feedbackScaleName(r.feedback->scale)) + ")";
    }
    if (r.sampling_p < 1) meta += " · sampled at " + format(r.sampling_p, Format::kNumber);
    if (!r.request_id.empty()) meta += " · request " + r.request_id;
    s += "<div class=\"case\" data-delta=\"" + svg::attrNumber(losses[i].first) + "\">";
    s += "<div class=\"meta\">" + escape(meta) + "</div>";
    if (r.redacted) {
      s += "<p class=\"empty\">Prompt and answers redacted by the team's policy.</p>";
    } else {
      std::string prompt = lastUserMessage(r.prompt);
      s += "<h4>Prompt (last user message)</h4>";
      s += prompt.empty() ? "<p class=\"empty\">(no user message)</p>" : shownText(prompt);
      s += "<div class=\"pair\">" + answerBlock("Local", r.local) + answerBlock("Cloud", r.cloud) +
           "</div>";
    }
    if (r.feedback && !r.feedback->comment.empty()) {
      s += "<p class=\"meta\">User comment: " + escape(svg::truncate(r.feedback->comment, 600)) +
           "</p>";
    }
    s += "</div>";
  }
  return s + "</section>";
}

std::string judgeSection(const std::vector<QualityRecord>& records) {
  int64_t ok = 0, unparsed = 0, error = 0, skipped_policy = 0, none = 0, agree = 0;
  double cost = 0;
  for (const QualityRecord& r : records) {
    if (!r.judge) {
      ++none;
      continue;
    }
    cost += std::isfinite(r.judge->cost_usd) ? r.judge->cost_usd : 0;
    switch (r.judge->status) {
      case JudgeStatus::kOk:
        ++ok;
        if (r.judge->agreement) ++agree;
        break;
      case JudgeStatus::kUnparsed:
        ++unparsed;
        break;
      case JudgeStatus::kError:
        ++error;
        break;
      case JudgeStatus::kSkippedPolicy:
        ++skipped_policy;
        break;
    }
  }
  int64_t n = static_cast<int64_t>(records.size());
  auto row = [&](const std::string& name, int64_t v) {
    return "<tr data-status=\"" + escape(name) + "\"><td>" + escape(name) +
           "</td><td class=\"num\">" + format(static_cast<double>(v), Format::kCount) +
           "</td><td class=\"num\">" + format(share(v, n), Format::kPercent) + "</td></tr>";
  };
  std::string s = "<section id=\"judge\"><h2>Judge status</h2>";
  s += "<table id=\"judge-status\"><thead><tr><th>status</th><th class=\"num\">records</th><th "
       "class=\"num\">share</th></tr></thead><tbody>";
  s += row("ok", ok) + row("unparsed", unparsed) + row("error", error) +
       row("skipped_policy", skipped_policy) + row("not judged", none);
  s += "</tbody></table>";
  s += "<p class=\"note\">ok: both orders parsed; unparsed: the judge answered but a verdict did "
       "not parse (nothing is guessed); error: a judge call failed or was refused; "
       "skipped_policy: the record's team keeps its data from the judge's model. Both orders "
       "named the same winner in " +
       countAndShare(agree, ok) + " of the parsed verdicts. Judge calls cost " +
       format(cost, Format::kUsd) + ".</p>";
  return s + "</section>";
}

}  // namespace

std::string lastUserMessage(const api::Json& messages) {
  if (!messages.is_array()) return "";
  for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
    if (!it->is_object()) continue;
    auto role = it->find("role");
    if (role == it->end() || !role->is_string() || role->get_ref<const std::string&>() != "user") {
      continue;
    }
    auto content = it->find("content");
    if (content == it->end()) return "";
    if (content->is_string()) return content->get<std::string>();
    std::string out;
    if (content->is_array()) {
      for (const api::Json& part : *content) {
        if (!part.is_object()) continue;
        auto text = part.find("text");
        if (text == part.end() || !text->is_string()) continue;
        if (!out.empty()) out += "\n";
        out += text->get<std::string>();
      }
    }
    return out;
  }
  return "";
}

std::string renderQualityReport(const std::vector<QualityRecord>& records,
                                const std::vector<policies::LedgerRow>* ledger,
                                const QualityReportOptions& o) {
  Tally all;
  int64_t lo = 0, hi = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    if (auto d = deltaOf(records[i])) all.add(*d, records[i].weight());
    lo = i == 0 ? records[i].unix_ms : std::min(lo, records[i].unix_ms);
    hi = i == 0 ? records[i].unix_ms : std::max(hi, records[i].unix_ms);
  }
  int64_t now = o.now_ms != 0 ? o.now_ms : hi;
  std::string subtitle = "Generated " + svg::utcDateTime(now);
  if (!records.empty()) {
    subtitle += " · records from " + svg::utcDate(lo) + " to " + svg::utcDate(hi);
  }
  std::string s = svg::pageStart(o.title, subtitle);
  if (records.empty()) {
    s += "<section id=\"summary\"><h2>Summary</h2><p class=\"empty\" id=\"no-records\">No "
         "records: there are no quality records to report on yet. Records are made when the "
         "cascade escalates and when shadow sampling is on.</p></section>";
    if (ledger && !ledger->empty()) s += overTimeSection(records, ledger, o);
    return s + svg::pageEnd();
  }
  s += summarySection(records, all);
  s += signalsSection(records);
  s += outcomesSection(records, true);
  s += outcomesSection(records, false);
  s += tradeoffSection(records);
  s += overTimeSection(records, ledger, o);
  s += worstSection(records, o.worst_n);
  s += judgeSection(records);
  return s + svg::pageEnd();
}

}  // namespace quality
