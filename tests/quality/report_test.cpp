#include "quality/report.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "quality/svg.h"
#include "tests/support/process.h"

namespace {

using policies::LedgerRow;
using quality::QualityRecord;
using quality::RecordKind;

constexpr int64_t kHour = 3'600'000;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kNov3 = 1793664000000;  // 2026-11-03T00:00:00Z
constexpr int64_t kNov1 = 1793491200000;  // 2026-11-01T00:00:00Z
constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// ---- Reading marks back out of the HTML ----

struct Mark {
  std::string label, series, value, x;
};

std::string attr(const std::string& tag, const std::string& name) {
  std::string key = " " + name + "=\"";
  size_t at = tag.find(key);
  if (at == std::string::npos) return "";
  size_t start = at + key.size();
  return tag.substr(start, tag.find('"', start) - start);
}

// The <svg> of the chart whose opening tag has data-chart="<name>" (and, when given, the extra
// attribute `with`, e.g. data-team="research"); "" when there is none.
std::string chartSvg(const std::string& html, const std::string& name,
                     const std::string& with = "") {
  size_t pos = 0;
  std::string key = "data-chart=\"" + name + "\"";
  while ((pos = html.find(key, pos)) != std::string::npos) {
    size_t open = html.rfind("<svg", pos);
    size_t close_tag = html.find('>', pos);
    size_t end = html.find("</svg>", pos);
    if (open == std::string::npos || end == std::string::npos) return "";
    std::string tag = html.substr(open, close_tag - open);
    if (with.empty() || tag.find(with) != std::string::npos) return html.substr(open, end - open);
    pos = end;
  }
  return "";
}

std::vector<Mark> marks(const std::string& svg_text) {
  std::vector<Mark> out;
  static const std::regex kMark("<(rect|circle) class=\"mark\"[^>]*>");
  for (auto it = std::sregex_iterator(svg_text.begin(), svg_text.end(), kMark);
       it != std::sregex_iterator(); ++it) {
    std::string tag = it->str();
    out.push_back({attr(tag, "data-label"), attr(tag, "data-series"), attr(tag, "data-value"),
                   attr(tag, "data-x")});
  }
  return out;
}

// label -> value, or "label|series" -> value for charts with series.
std::map<std::string, double> markValues(const std::string& svg_text) {
  std::map<std::string, double> out;
  for (const Mark& m : marks(svg_text)) {
    out[m.series.empty() ? m.label : m.label + "|" + m.series] = std::stod(m.value);
  }
  return out;
}

size_t countOf(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

// "NaN" and "inf" as words (not inside "information"), in any case.
void expectNoNonFinite(const std::string& html) {
  static const std::regex kBad("(^|[^A-Za-z])(nan|inf|infinity)([^A-Za-z]|$)", std::regex::icase);
  std::smatch m;
  EXPECT_FALSE(std::regex_search(html, m, kBad))
      << "found '" << m.str() << "' near: "
      << html.substr(static_cast<size_t>(std::max<std::ptrdiff_t>(0, m.position() - 80)), 200);
  // Every data-value parses as a finite number.
  static const std::regex kValue("data-(value|x)=\"([^\"]*)\"");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), kValue);
       it != std::sregex_iterator(); ++it) {
    std::string v = (*it)[2].str();
    char* end = nullptr;
    double d = std::strtod(v.c_str(), &end);
    EXPECT_TRUE(end && *end == '\0' && std::isfinite(d)) << v;
  }
}

// ---- Inputs ----

QualityRecord judged(double delta, std::optional<double> complexity,
                     std::optional<double> confidence, int64_t unix_ms) {
  QualityRecord r;
  r.request_id = "req-" + std::to_string(unix_ms);
  r.unix_ms = unix_ms;
  r.team = "research";
  r.kind = RecordKind::kShadow;
  r.model = "auto";
  r.reason = "shadow";
  r.prompt = api::Json::array({{{"role", "system"}, {"content", "Be brief."}},
                               {{"role", "user"}, {"content", "What is 2+2?"}}});
  r.local = {"local/gemma-3-local", "Four.", true, "stop", 20, 3, 0.0001, 120};
  r.cloud = {"openai/gpt-4o", "4", true, "stop", 20, 1, 0.002, 900};
  r.complexity = complexity;
  r.confidence = confidence;
  quality::JudgeResult j;
  j.status = quality::JudgeStatus::kOk;
  j.model = "openai/gpt-4o-mini";
  j.delta = delta;
  j.agreement = true;
  j.verdict_ab = delta > 0.1 ? "B" : delta < -0.1 ? "A" : "tie";
  j.verdict_ba = delta > 0.1 ? "A" : delta < -0.1 ? "B" : "tie";
  j.cost_usd = 0.0003;
  r.judge = j;
  return r;
}

LedgerRow ledgerRow(const std::string& team, const std::string& model, const std::string& kind,
                    const std::string& decision, double cost, double compute_ms, int64_t unix_ms,
                    int status = 200) {
  LedgerRow r;
  r.request_id = "req-" + std::to_string(unix_ms);
  r.team = team;
  r.key_id = "k";
  r.model = model;
  r.route = "auto";
  r.kind = kind;
  r.decision = decision;
  r.compute_ms = compute_ms;
  r.prompt_tokens = 1000;
  r.cached_prompt_tokens = kind == "cloud" ? 200 : 0;
  r.completion_tokens = 500;
  r.cost_usd = cost;
  r.latency_ms = 400;
  r.status = status;
  r.unix_ms = unix_ms;
  return r;
}

// A realistic mix: ten UTC days of three teams' traffic, seeded.
struct Synthetic {
  std::vector<QualityRecord> records;
  std::vector<LedgerRow> rows;
  int64_t losses = 0;  // records with delta > kTieMargin
};

Synthetic synthetic() {
  Synthetic s;
  std::mt19937 rng(20261103);
  std::uniform_real_distribution<double> u(0, 1);
  std::normal_distribution<double> noise(0, 0.25);
  const std::vector<std::string> teams = {"research", "support", "data-eng"};
  for (int i = 0; i < 160; ++i) {
    int64_t t = kNov3 + static_cast<int64_t>(i) * (10 * kDay - 1) / 159;
    double complexity = u(rng), confidence = u(rng);
    double delta = std::clamp(0.9 * (complexity - confidence) + noise(rng), -1.0, 1.0);
    QualityRecord r = judged(delta, complexity, confidence, t);
    r.team = teams[static_cast<size_t>(i) % teams.size()];
    r.kind = i % 3 == 0 ? RecordKind::kShadow : RecordKind::kEscalation;
    r.reason = r.kind == RecordKind::kShadow ? "shadow" : "confidence < 0.85";
    r.prompt = api::Json::array(
        {{{"role", "user"},
          {"content", "Summarise report #" + std::to_string(i) + " in one line."}}});
    r.local.text = "Report " + std::to_string(i) + " says revenue grew; <script>alert(1)</script>";
    r.local.complete = r.kind == RecordKind::kShadow;
    r.cloud.text = "Report " + std::to_string(i) + ": revenue grew 4% on new contracts.";
    if (r.team == "data-eng" && i % 2 == 0) {
      r.redacted = true;
      r.prompt = nullptr;
      r.local.text.clear();
      r.cloud.text.clear();
    }
    if (i % 17 == 0) {
      r.judge->status = quality::JudgeStatus::kUnparsed;
      r.judge->detail = "I think both are fine";
    } else if (i % 23 == 0) {
      r.judge->status = quality::JudgeStatus::kError;
      r.judge->detail = "timeout";
    }
    if (i % 29 == 0) r.feedback = quality::Feedback{r.request_id, r.team, -0.5, "meh", t};
    if (auto d = r.delta(); d && *d > quality::kTieMargin) ++s.losses;
    s.records.push_back(std::move(r));
  }
  // The escalation rate and the traffic mix drift from day to day.
  std::uniform_int_distribution<size_t> team_of(0, teams.size() - 1);
  for (int i = 0; i < 400; ++i) {
    int64_t t = kNov3 + static_cast<int64_t>(i) * (10 * kDay - 1) / 399;
    double day = static_cast<double>((t - kNov3) / kDay);
    const std::string& team = teams[team_of(rng)];
    double pick = u(rng);
    if (pick < 0.65) {
      if (u(rng) < 0.12 + 0.03 * day) {
        s.rows.push_back(ledgerRow(team, "openai/gpt-4o-mini", "cloud", "escalated",
                                   0.0006 + 0.001 * u(rng), 0, t));
      } else {
        s.rows.push_back(
            ledgerRow(team, "gemma-3-local", "local", "cascade", 0, 40 + u(rng) * 400, t));
      }
    } else if (pick < 0.75) {
      s.rows.push_back(ledgerRow(team, "anthropic/claude-sonnet-4-5", "cloud", "direct",
                                 0.004 + 0.02 * u(rng), 0, t, u(rng) < 0.15 ? 502 : 200));
    } else if (pick < 0.82) {
      s.rows.push_back(ledgerRow(team, "openai/gpt-4o-mini", "cloud", "shadow", 0.0009, 0, t));
    } else {
      s.rows.push_back(ledgerRow(team, "gemma-3-local", "local", "local", 0, 60 + 60 * u(rng), t,
                                 u(rng) < 0.1 ? 429 : 200));
    }
  }
  return s;
}

quality::CostReportOptions costOptions() {
  quality::CostReportOptions o;
  o.now_ms = kNov1 + 11 * kDay + 18 * kHour;  // 2026-11-12T18:00Z
  o.gpu_hour_usd = 2.5;
  o.compare_model = "openai/gpt-4o";
  o.compare_price = policies::Price{2.5, 1.25, 2.5, 10.0};
  policies::BudgetPolicy research, support;
  research.monthly_usd = 1.0;
  research.daily_usd = 0.2;
  support.monthly_usd = 0.5;
  o.budgets = {{"research", research}, {"support", support}};
  return o;
}

// ---- Chart helpers ----

TEST(ReportSvg, EscapesTextAndReplacesBrokenUtf8) {
  using quality::svg::escape;
  EXPECT_EQ(escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  EXPECT_EQ(escape("caf\xC3\xA9 \xE2\x82\xAC"), "caf\xC3\xA9 \xE2\x82\xAC");  // kept
  EXPECT_EQ(escape("a\xFF"
                   "b"),
            "a\xEF\xBF\xBD"
            "b");                                                             // not UTF-8
  EXPECT_EQ(escape("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong '/'
  EXPECT_EQ(escape("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
  EXPECT_EQ(escape(std::string("x\0y\x01\tz\n", 7)), "x\xEF\xBF\xBDy\xEF\xBF\xBD\tz\n");
  EXPECT_EQ(quality::svg::truncate("h\xC3\xA9llo", 2), "h\xC3\xA9\xE2\x80\xA6");
  EXPECT_EQ(quality::svg::truncate("short", 10), "short");
}

TEST(ReportSvg, FormatsNumbersForPeople) {
  using quality::svg::Format;
  using quality::svg::format;
  EXPECT_EQ(format(1234567.4, Format::kCount), "1,234,567");
  EXPECT_EQ(format(-1234.5, Format::kNumber), "-1,235");
  EXPECT_EQ(format(12.345, Format::kNumber), "12.3");
  EXPECT_EQ(format(0.012345, Format::kNumber), "0.0123");
  EXPECT_EQ(format(1234.5, Format::kUsd), "$1,234.50");
  EXPECT_EQ(format(0.5, Format::kUsd), "$0.50");
  EXPECT_EQ(format(0.004213, Format::kUsd), "$0.00421");
  EXPECT_EQ(format(-2, Format::kUsd), "-$2.00");
  EXPECT_EQ(format(0, Format::kUsd), "$0.00");
  EXPECT_EQ(format(0.125, Format::kPercent), "12.5%");
  EXPECT_EQ(format(0.0625, Format::kPercent), "6.25%");
  EXPECT_EQ(format(kNan, Format::kUsd), "$0.00");
  EXPECT_EQ(format(kInf, Format::kPercent), "0%");
  EXPECT_EQ(quality::svg::attrNumber(0.1), "0.1");
  EXPECT_EQ(quality::svg::attrNumber(-kInf), "0");
}

TEST(ReportSvg, ChartsCarryTheirDataAndSayNoData) {
  quality::svg::Chart c;
  c.name = "demo";
  c.title = "a <demo>";
  c.attributes = {{"data-team", "r&d"}, {"onload", "alert(1)"}};
  std::string bars = quality::svg::barChart(c, {{"a", 1.5, ""}, {"<b>", -2, "note"}});
  EXPECT_EQ(bars.find("onload"), std::string::npos);  // only data- style names pass
  EXPECT_NE(bars.find("data-team=\"r&amp;d\""), std::string::npos);
  auto values = markValues(chartSvg(bars, "demo"));
  ASSERT_EQ(values.size(), 2u);
  EXPECT_EQ(values["a"], 1.5);
  EXPECT_EQ(values["&lt;b&gt;"], -2);
  std::string empty = quality::svg::lineChart(c, {});
  EXPECT_NE(empty.find("No data"), std::string::npos);
  EXPECT_TRUE(marks(empty).empty());
  std::string lines = quality::svg::lineChart(c, {{"s", {{0, 1, ""}, {1, kNan, "p"}}, "", false}},
                                              {{"limit", 3, ""}});
  EXPECT_EQ(marks(lines).size(), 2u);
  EXPECT_NE(lines.find("class=\"ref\""), std::string::npos);
  expectNoNonFinite(lines);
}

TEST(ReportSvg, BucketsAreUtcDaysAndWidenPastTheCap) {
  quality::svg::TimeBuckets b = quality::svg::makeBuckets(kNov3 + kHour, kNov3 + 2 * kDay, kDay);
  EXPECT_EQ(b.start_ms, kNov3);
  EXPECT_EQ(b.count, 3u);
  EXPECT_EQ(b.label(0), "2026-11-03");
  EXPECT_EQ(b.indexOf(kNov3 + kDay + 5), 1u);
  EXPECT_EQ(b.widthText(), "1 day");
  b = quality::svg::makeBuckets(kNov3, kNov3 + 99 * kDay, kDay, 30);
  EXPECT_LE(b.count, 30u);
  EXPECT_EQ(b.width_ms % kDay, 0);
  EXPECT_EQ(b.widthText(), "4 days");
  b = quality::svg::makeBuckets(kNov3, kNov3 + 5 * kHour, kHour);
  EXPECT_EQ(b.count, 6u);
  EXPECT_EQ(b.label(2), "2026-11-03 02:00");
  b = quality::svg::makeBuckets(std::numeric_limits<int64_t>::min(),
                                std::numeric_limits<int64_t>::max(), 1);
  EXPECT_LE(b.count, 60u);
  EXPECT_GT(b.width_ms, 0);
}

// ---- Quality report ----

TEST(QualityReport, HasEverySectionAndStatesTheTieMargin) {
  Synthetic s = synthetic();
  quality::QualityReportOptions o;
  std::string html = quality::renderQualityReport(s.records, &s.rows, o);
  ASSERT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  for (const char* id :
       {"summary", "judge-and-feedback", "outcomes-by-complexity", "outcomes-by-confidence",
        "threshold-tradeoff", "over-time", "worst-losses", "judge"}) {
    EXPECT_NE(html.find("<section id=\"" + std::string(id) + "\""), std::string::npos) << id;
  }
  EXPECT_NE(html.find("A delta below -0.1 is a <b>local win</b>, above +0.1 a <b>local loss</b>"),
            std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(countOf(html, "<div class=\"case\""), std::min<size_t>(20, s.losses));
  expectNoNonFinite(html);
}

TEST(QualityReport, CountsOutcomesPerBucketFromDelta) {
  std::vector<QualityRecord> records = {
      judged(-0.5, 0.05, 0.95, kNov3),  // local win, complexity 0.0-0.2, confidence 0.8-1.0
      judged(-0.1, 0.10, 0.90, kNov3),  // tie (the margin itself is a tie)
      judged(0.1, 0.30, 0.50, kNov3),   // tie
      judged(0.11, 0.30, 0.45, kNov3),  // local loss
      judged(0.9, 0.99, 0.10, kNov3),   // local loss, complexity 0.8-1.0
      judged(1.0, 1.0, 0.0, kNov3),     // 1.0 falls into the last bucket
      judged(0.0, std::nullopt, std::nullopt, kNov3),  // tie, no scores
  };
  QualityRecord no_delta = judged(0.7, 0.5, 0.5, kNov3);
  no_delta.judge->status = quality::JudgeStatus::kUnparsed;
  records.push_back(no_delta);
  // User feedback does not override the judge: a local loss by the judge stays one, whatever
  // the user said of the local answer.
  QualityRecord feedback = judged(0.8, 0.5, 0.5, kNov3);
  feedback.feedback = quality::Feedback{"r", "research", 1.0, "", kNov3};
  records.push_back(feedback);

  std::string html = quality::renderQualityReport(records, nullptr, {});
  auto by_complexity = markValues(chartSvg(html, "outcomes-by-complexity"));
  ASSERT_EQ(by_complexity.size(), 15u);
  EXPECT_EQ(by_complexity["0.0–0.2|local wins"], 1);
  EXPECT_EQ(by_complexity["0.0–0.2|ties"], 1);
  EXPECT_EQ(by_complexity["0.0–0.2|local losses"], 0);
  EXPECT_EQ(by_complexity["0.2–0.4|ties"], 1);
  EXPECT_EQ(by_complexity["0.2–0.4|local losses"], 1);
  EXPECT_EQ(by_complexity["0.4–0.6|local wins"], 0);
  EXPECT_EQ(by_complexity["0.4–0.6|local losses"], 1);  // the feedback record
  EXPECT_EQ(by_complexity["0.4–0.6|ties"], 0);        // the unparsed one has no delta
  EXPECT_EQ(by_complexity["0.8–1.0|local losses"], 2);
  auto by_confidence = markValues(chartSvg(html, "outcomes-by-confidence"));
  ASSERT_EQ(by_confidence.size(), 15u);
  EXPECT_EQ(by_confidence["0.8–1.0|local wins"], 1);
  EXPECT_EQ(by_confidence["0.8–1.0|ties"], 1);
  EXPECT_EQ(by_confidence["0.0–0.2|local losses"], 2);
  EXPECT_EQ(by_confidence["0.4–0.6|local losses"], 2);
  EXPECT_EQ(by_confidence["0.4–0.6|ties"], 1);

  // 9 records, 8 with a delta: 1 win, 4 ties, 3 losses, counted in the summary.
  EXPECT_NE(html.find("1 record has no delta"), std::string::npos);
  EXPECT_NE(html.find("1 record with a delta has no complexity score"), std::string::npos);
  // The judge table: 8 ok, 1 unparsed.
  EXPECT_NE(html.find("<tr data-status=\"ok\"><td>ok</td><td class=\"num\">8</td>"),
            std::string::npos);
  EXPECT_NE(html.find("<tr data-status=\"unparsed\"><td>unparsed</td><td class=\"num\">1</td>"),
            std::string::npos);
}

// The value of the summary card `key` ("Local losses" -> "31.2%").
std::string cardValue(const std::string& html, const std::string& key) {
  std::smatch m;
  std::regex re("<div class=\"k\">" + key +
                "</div><div class=\"v\">([^<]*)</div>"
                "(<div class=\"s\">([^<]*)</div>)?");
  return std::regex_search(html, m, re) ? m[1].str() + "|" + m[3].str() : "";
}

TEST(QualityReport, RatesAreWeightedBySamplingProbabilityAndShowRawCounts) {
  // Planted traffic: local answers below confidence 0.3 escalate and are all recorded (p = 1),
  // the cloud better on 80% of them; the others are shadow-sampled at p = 0.1, the cloud better
  // on 10%. The cloud is better on 0.3 * 0.8 + 0.7 * 0.1 = 31% of the traffic, on about 67% of
  // the records.
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<QualityRecord> records;
  int64_t raw_losses = 0;
  for (int i = 0; i < 20000; ++i) {
    const double confidence = u(rng);
    const bool escalated = confidence < 0.3;
    const bool cloud_better = u(rng) < (escalated ? 0.8 : 0.1);
    if (!escalated && u(rng) >= 0.1) continue;
    QualityRecord r = judged(cloud_better ? 0.6 : -0.6, 0.5, confidence, kNov3 + i);
    r.kind = escalated ? RecordKind::kEscalation : RecordKind::kShadow;
    r.sampling_p = escalated ? 1 : 0.1;
    raw_losses += cloud_better ? 1 : 0;
    records.push_back(std::move(r));
  }
  const std::string html = quality::renderQualityReport(records, nullptr, {});
  const std::string losses = cardValue(html, "Local losses");
  ASSERT_FALSE(losses.empty());
  const double weighted = std::stod(losses.substr(0, losses.find('%'))) / 100;
  EXPECT_NEAR(weighted, 0.31, 0.02);
  // The unweighted share of the same records, which the report does not show, is far off.
  const double raw = static_cast<double>(raw_losses) / static_cast<double>(records.size());
  EXPECT_NEAR(raw, 0.67, 0.03);
  // Beside the estimate: the raw count of records it comes from.
  using quality::svg::Format;
  EXPECT_EQ(losses.substr(losses.find('|') + 1),
            quality::svg::format(static_cast<double>(raw_losses), Format::kCount) + " records");
  EXPECT_NE(html.find("id=\"weighting\""), std::string::npos);
  EXPECT_NE(html.find("<b>weighted</b> estimates"), std::string::npos);
  // The requests the records stand for: about 20000.
  const std::string represented = cardValue(html, "Requests represented");
  ASSERT_FALSE(represented.empty());
  std::string digits;
  for (char c : represented.substr(0, represented.find('|'))) {
    if (std::isdigit(static_cast<unsigned char>(c))) digits += c;
  }
  EXPECT_NEAR(std::stod(digits), 20000, 800);
  expectNoNonFinite(html);
}

TEST(QualityReport, FeedbackScoresAreNormalisedFromTheirScaleWhenRead) {
  using quality::FeedbackScale;
  auto normalized = [](double score, FeedbackScale scale) {
    quality::Feedback f;
    f.score = score;
    f.scale = scale;
    return f.normalized();
  };
  EXPECT_EQ(normalized(-0.25, FeedbackScale::kUnit), -0.25);
  EXPECT_EQ(normalized(1, FeedbackScale::kThumbs), 1);
  EXPECT_EQ(normalized(-1, FeedbackScale::kThumbs), -1);
  EXPECT_EQ(normalized(1, FeedbackScale::kStars), -1);
  EXPECT_EQ(normalized(3, FeedbackScale::kStars), 0);
  EXPECT_EQ(normalized(4, FeedbackScale::kStars), 0.5);
  EXPECT_EQ(normalized(5, FeedbackScale::kStars), 1);
  EXPECT_TRUE(std::isnan(normalized(kNan, FeedbackScale::kStars)));
  for (auto [scale, score, valid] :
       std::vector<std::tuple<FeedbackScale, double, bool>>{{FeedbackScale::kUnit, -1, true},
                                                            {FeedbackScale::kUnit, 1.5, false},
                                                            {FeedbackScale::kUnit, kNan, false},
                                                            {FeedbackScale::kThumbs, 0, false},
                                                            {FeedbackScale::kThumbs, 1, true},
                                                            {FeedbackScale::kStars, 0, false},
                                                            {FeedbackScale::kStars, 2.5, false},
                                                            {FeedbackScale::kStars, 5, true},
                                                            {FeedbackScale::kStars, 6, false},
                                                            {FeedbackScale::kStars, kInf, false}}) {
    EXPECT_EQ(quality::feedbackScoreValid(scale, score), valid)
        << quality::feedbackScaleName(scale) << " " << score;
  }
  // On a shadow sample the user rated the local answer: a good one means the cloud was not
  // needed (a negative cloud-over-local delta); on an escalation, the cloud answer.
  QualityRecord shadow = judged(0.5, 0.5, 0.5, kNov3);
  shadow.feedback = quality::Feedback{"r", "t", 5, "", kNov3};
  shadow.feedback->scale = FeedbackScale::kStars;
  EXPECT_EQ(shadow.feedbackDelta(), -1.0);
  EXPECT_EQ(shadow.delta(), 0.5);  // the judge's
  EXPECT_EQ(shadow.delta(quality::DeltaSource::kFeedbackFirst), -1.0);
  shadow.kind = RecordKind::kEscalation;
  EXPECT_EQ(shadow.feedbackDelta(), 1.0);
}

TEST(QualityReport, JudgeAndFeedbackSideBySideWithTheirAgreement) {
  // Escalations (feedback rates the cloud answer): the judge says cloud better on the first
  // two. The user gives the first 5 stars (agrees), the second a thumbs down (disagrees), the
  // third 3 stars (neutral: a tie, as the judge's 0.05 is). The fourth has feedback only; the
  // fifth a judge verdict only.
  auto escalation = [](double delta, int64_t t) {
    QualityRecord r = judged(delta, 0.5, 0.5, t);
    r.kind = RecordKind::kEscalation;
    return r;
  };
  auto feedback = [](const QualityRecord& r, double score, quality::FeedbackScale scale) {
    quality::Feedback f{r.request_id, r.team, score, "", r.unix_ms};
    f.scale = scale;
    return f;
  };
  std::vector<QualityRecord> records = {escalation(0.8, kNov3), escalation(0.7, kNov3 + 1),
                                        escalation(0.05, kNov3 + 2), escalation(0.9, kNov3 + 3),
                                        escalation(-0.4, kNov3 + 4)};
  records[0].feedback = feedback(records[0], 5, quality::FeedbackScale::kStars);
  records[1].feedback = feedback(records[1], -1, quality::FeedbackScale::kThumbs);
  records[2].feedback = feedback(records[2], 3, quality::FeedbackScale::kStars);
  records[3].judge->status = quality::JudgeStatus::kUnparsed;
  records[3].feedback = feedback(records[3], 0.5, quality::FeedbackScale::kUnit);
  const std::string html = quality::renderQualityReport(records, nullptr, {});
  ASSERT_NE(html.find("<section id=\"judge-and-feedback\""), std::string::npos);
  // judge: 4 verdicts, mean (0.8 + 0.7 + 0.05 - 0.4) / 4 = 0.2875; user feedback: 4 records,
  // deltas 1, -1, 0, 0.5: mean 0.125.
  EXPECT_NE(html.find("<tr data-signal=\"judge\"><td>judge</td><td class=\"num\">4</td>"),
            std::string::npos);
  EXPECT_NE(html.find("<tr data-signal=\"user feedback\"><td>user feedback</td><td "
                      "class=\"num\">4</td>"),
            std::string::npos);
  EXPECT_NE(html.find("<tr data-signal=\"judge, where both\"><td>judge, where both</td><td "
                      "class=\"num\">3</td>"),
            std::string::npos);
  // Both on three records; the same outcome on two of them.
  EXPECT_NE(html.find("Where a record has both (3), the judge and the user name the same "
                      "outcome (local win, tie or local loss) for 66.7% (2 records)."),
            std::string::npos);
  EXPECT_NE(html.find("1 on the thumbs scale"), std::string::npos);
  EXPECT_NE(html.find("2 on the stars scale"), std::string::npos);
  // The judge's verdict decides wins and losses: four judged, two local losses.
  EXPECT_EQ(cardValue(html, "Local losses"), "50%|2 records");
  expectNoNonFinite(html);
}

TEST(QualityReport, ThresholdTradeoffSweepsConfidence) {
  // confidence, delta: losses max(0, delta) are 0.8, 0, 0.2, 0.
  std::vector<QualityRecord> records = {
      judged(0.8, 0.5, 0.1, kNov3),
      judged(-0.4, 0.5, 0.3, kNov3),
      judged(0.2, 0.5, 0.6, kNov3),
      judged(0.0, 0.5, 1.0, kNov3),
  };
  std::string html = quality::renderQualityReport(records, nullptr, {});
  std::vector<Mark> points = marks(chartSvg(html, "threshold-tradeoff"));
  ASSERT_EQ(points.size(), 21u);
  std::map<std::string, std::pair<double, double>> at;
  for (const Mark& m : points) at[m.label] = {std::stod(m.x), std::stod(m.value)};
  // Threshold 0: nothing escalated, the mean loss of all four.
  EXPECT_DOUBLE_EQ(at["threshold 0.00"].first, 0);
  EXPECT_NEAR(at["threshold 0.00"].second, 0.25, 1e-9);
  // 0.35: the first two escalated; kept: losses 0.2 and 0.
  EXPECT_DOUBLE_EQ(at["threshold 0.35"].first, 0.5);
  EXPECT_NEAR(at["threshold 0.35"].second, 0.1, 1e-9);
  // 1.0: all but the confidence-1.0 record escalated; it lost nothing.
  EXPECT_DOUBLE_EQ(at["threshold 1.00"].first, 0.75);
  EXPECT_NEAR(at["threshold 1.00"].second, 0, 1e-9);
}

TEST(QualityReport, EscalationRateFromTheLedgerPerDay) {
  std::vector<QualityRecord> records = {judged(0.5, 0.5, 0.5, kNov3)};
  std::vector<LedgerRow> rows;
  // Day 1: 1 of 4 escalated; day 2: none cascaded (direct only); day 3: 2 of 2.
  for (int i = 0; i < 3; ++i) {
    rows.push_back(ledgerRow("t", "gemma-3-local", "local", "cascade", 0, 10, kNov3 + i * kHour));
  }
  rows.push_back(ledgerRow("t", "openai/gpt-4o", "cloud", "escalated", 0.01, 0, kNov3 + 5 * kHour));
  rows.push_back(ledgerRow("t", "openai/gpt-4o", "cloud", "direct", 0.01, 0, kNov3 + kDay));
  rows.push_back(ledgerRow("t", "openai/gpt-4o", "cloud", "escalated", 0.01, 0, kNov3 + 2 * kDay));
  rows.push_back(
      ledgerRow("t", "openai/gpt-4o", "cloud", "escalated", 0.01, 0, kNov3 + 2 * kDay + 9));
  std::string html = quality::renderQualityReport(records, &rows, {});
  auto rate = markValues(chartSvg(html, "escalation-rate"));
  ASSERT_EQ(rate.size(), 3u);
  EXPECT_DOUBLE_EQ(rate["2026-11-03"], 0.25);
  EXPECT_DOUBLE_EQ(rate["2026-11-04"], 0);
  EXPECT_DOUBLE_EQ(rate["2026-11-05"], 1);
  EXPECT_EQ(chartSvg(html, "records-over-time"), "");

  // Without a ledger: records per bucket, by kind.
  html = quality::renderQualityReport(records, nullptr, {});
  auto counts = markValues(chartSvg(html, "records-over-time"));
  ASSERT_EQ(counts.size(), 2u);
  EXPECT_EQ(counts["2026-11-03|shadow"], 1);
  EXPECT_EQ(counts["2026-11-03|escalation"], 0);
}

TEST(QualityReport, WorstLossesAreEscapedOrderedAndCut) {
  std::vector<QualityRecord> records;
  for (int i = 0; i < 6; ++i) records.push_back(judged(0.2 + 0.1 * i, 0.5, 0.5, kNov3 + i));
  records[5].local.text = "<script>alert('x')</script> & \"quoted\"";
  records[5].prompt = api::Json::array(
      {{{"role", "user"}, {"content", "first question"}},
       {{"role", "assistant"}, {"content", "answer"}},
       {{"role", "user"},
        {"content", api::Json::array({{{"type", "text"}, {"text", "<b>last</b> question"}}})}}});
  records[5].team = "team\"><img src=x>";
  records[4].redacted = true;
  records[4].prompt = nullptr;
  records[4].local.text.clear();
  records[4].cloud.text.clear();
  records.push_back(judged(0.05, 0.5, 0.5, kNov3));  // a tie: never a loss
  quality::QualityReportOptions o;
  o.worst_n = 3;
  std::string html = quality::renderQualityReport(records, nullptr, o);

  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot;"),
            std::string::npos);
  EXPECT_NE(html.find("&lt;b&gt;last&lt;/b&gt; question"), std::string::npos);
  EXPECT_EQ(html.find("first question"), std::string::npos);  // only the last user message
  EXPECT_NE(html.find("redacted by the team's policy"), std::string::npos);
  ASSERT_EQ(countOf(html, "<div class=\"case\""), 3u);
  // Largest delta first: 0.7, 0.6, 0.5.
  size_t a = html.find("data-delta=\"0.7\""), b = html.find("data-delta=\"0.6\""),
         c = html.find("data-delta=\"0.5\"");
  EXPECT_TRUE(a != std::string::npos && b != std::string::npos && c != std::string::npos);
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_NE(html.find("The 3 records with the largest delta (of 6 local losses)"),
            std::string::npos);
}

TEST(QualityReport, EmptyInputSaysSoWithoutNaN) {
  std::string html = quality::renderQualityReport({}, nullptr, {});
  EXPECT_NE(html.find("No records"), std::string::npos);
  EXPECT_NE(html.find("</html>"), std::string::npos);
  expectNoNonFinite(html);
  std::vector<LedgerRow> rows;
  html = quality::renderQualityReport({}, &rows, {});
  EXPECT_NE(html.find("No records"), std::string::npos);
  expectNoNonFinite(html);
}

TEST(QualityReport, NonFiniteInputsNeverShowAsNaN) {
  QualityRecord r = judged(kNan, kNan, kInf, kNov3);
  r.local.latency_ms = kNan;
  r.local.cost_usd = kInf;
  r.judge->cost_usd = kNan;
  QualityRecord f = judged(0.5, 0.5, 0.5, kNov3);
  f.feedback = quality::Feedback{"r", "t", kNan, "", kNov3};
  QualityRecord loss = judged(0.9, 0.5, 0.5, kNov3);
  loss.cloud.latency_ms = -kInf;
  std::string html = quality::renderQualityReport({r, f, loss}, nullptr, {});
  expectNoNonFinite(html);
  // A NaN feedback score is ignored (the judge's delta stands); a NaN judge delta is none.
  EXPECT_NE(html.find("1 record has no delta"), std::string::npos);
}

TEST(QualityReport, LastUserMessageHandlesOddShapes) {
  EXPECT_EQ(quality::lastUserMessage(nullptr), "");
  EXPECT_EQ(quality::lastUserMessage(api::Json::object()), "");
  EXPECT_EQ(quality::lastUserMessage(api::Json::array({1, "x", {{"role", 3}}})), "");
  EXPECT_EQ(quality::lastUserMessage(api::Json::array(
                {{{"role", "user"},
                  {"content", api::Json::array({{{"type", "text"}, {"text", "a"}},
                                                {{"type", "image_url"}},
                                                {{"type", "text"}, {"text", "b"}}})}}})),
            "a\nb");
}

// ---- Cost report ----

TEST(CostReport, SpendSeriesMatchTheRows) {
  std::vector<LedgerRow> rows = {
      ledgerRow("alpha", "openai/gpt-4o", "cloud", "escalated", 0.30, 0, kNov3 + kHour),
      ledgerRow("beta", "openai/gpt-4o", "cloud", "direct", 0.20, 0, kNov3 + 2 * kHour),
      ledgerRow("alpha", "gemma-3-local", "local", "cascade", 0, 7200, kNov3 + kDay),  // 2 GPU h
      ledgerRow("beta", "openai/gpt-4o", "cloud", "escalated", 0.05, 0, kNov3 + kDay, 502),
  };
  quality::CostReportOptions o;
  o.gpu_hour_usd = 1.5;
  std::string html = quality::renderCostReport(rows, o);
  for (const char* id : {"summary", "spend-by-team", "spend-by-model", "spend-by-route", "budgets",
                         "savings", "not-200"}) {
    EXPECT_NE(html.find("<section id=\"" + std::string(id) + "\""), std::string::npos) << id;
  }
  auto team = markValues(chartSvg(html, "spend-by-team"));
  ASSERT_EQ(team.size(), 6u);  // 2 days x (alpha, beta, local GPU)
  EXPECT_DOUBLE_EQ(team["2026-11-03|alpha"], 0.30);
  EXPECT_DOUBLE_EQ(team["2026-11-03|beta"], 0.20);
  EXPECT_DOUBLE_EQ(team["2026-11-04|beta"], 0.05);
  EXPECT_DOUBLE_EQ(team["2026-11-04|local GPU"], 7200 / 3.6e6 * 1.5);
  EXPECT_DOUBLE_EQ(team["2026-11-03|local GPU"], 0);
  auto route = markValues(chartSvg(html, "spend-by-route"));
  ASSERT_EQ(route.size(), 6u);  // 2 days x (escalated, direct, local GPU)
  EXPECT_DOUBLE_EQ(route["2026-11-04|escalated"], 0.05);
  EXPECT_DOUBLE_EQ(route["2026-11-03|direct"], 0.20);
  auto model = markValues(chartSvg(html, "spend-by-model"));
  ASSERT_EQ(model.size(), 4u);  // the local model has no cloud spend: only in the GPU series
  EXPECT_DOUBLE_EQ(model["2026-11-03|openai/gpt-4o"], 0.5);
  // The local cost rule and the refused row are stated.
  EXPECT_NE(html.find("compute_ms / 3,600,000 × $1.50 per GPU hour"), std::string::npos);
  EXPECT_NE(html.find("<td class=\"num\">502</td><td class=\"num\">1</td><td "
                      "class=\"num\">$0.05</td>"),
            std::string::npos);
  EXPECT_NE(html.find("No comparison price was given"), std::string::npos);
  expectNoNonFinite(html);
}

TEST(CostReport, SavingsAgainstTheComparisonModel) {
  std::vector<LedgerRow> rows = {
      // 1000 prompt (200 cached), 500 completion.
      ledgerRow("t", "openai/gpt-4o-mini", "cloud", "escalated", 0.001, 0, kNov3),
      // Local: 1000 prompt (none cached at the comparison model), 500 completion; 1 GPU hour.
      ledgerRow("t", "gemma-3-local", "local", "cascade", 0, 3.6e6, kNov3 + kHour),
      // A shadow call: actual cost only.
      ledgerRow("t", "openai/gpt-4o-mini", "cloud", "shadow", 0.002, 0, kNov3 + 2 * kHour),
      // Not 200: left out.
      ledgerRow("t", "openai/gpt-4o", "cloud", "direct", 5.0, 0, kNov3 + 3 * kHour, 500),
  };
  quality::CostReportOptions o;
  o.gpu_hour_usd = 0.01;
  o.compare_model = "openai/gpt-4o";
  o.compare_price = policies::Price{2.0, 1.0, 2.0, 8.0};
  std::string html = quality::renderCostReport(rows, o);
  double cloud_row = (800 * 2.0 + 200 * 1.0 + 500 * 8.0) / 1e6;  // 0.0058
  double local_row = (1000 * 2.0 + 500 * 8.0) / 1e6;             // 0.006
  double actual = 0.001 + 0.01 + 0.002;
  auto savings = markValues(chartSvg(html, "savings"));
  ASSERT_EQ(savings.size(), 1u);
  EXPECT_NEAR(savings["2026-11-03"], cloud_row + local_row - actual, 1e-12);
  EXPECT_NE(html.find(quality::svg::escape("On openai/gpt-4o")), std::string::npos);
  EXPECT_NE(html.find(quality::svg::format(cloud_row + local_row, quality::svg::Format::kUsd)),
            std::string::npos);
  EXPECT_NE(html.find("id=\"savings-rule\""), std::string::npos);
}

TEST(CostReport, BurnDownAndLinearProjectionForTheCurrentMonth) {
  std::vector<LedgerRow> rows = {
      ledgerRow("research", "openai/gpt-4o", "cloud", "direct", 9.0, 0, kNov1 - kHour),  // October
      ledgerRow("research", "openai/gpt-4o", "cloud", "direct", 1.0, 0, kNov1 + kHour),
      ledgerRow("research", "openai/gpt-4o", "cloud", "direct", 2.0, 0, kNov1 + 4 * kDay),
      ledgerRow("research", "gemma-3-local", "local", "cascade", 0, 3.6e6, kNov1 + 4 * kDay),
      ledgerRow("ops", "openai/gpt-4o", "cloud", "direct", 1.0, 0, kNov1 + 2 * kDay),
  };
  quality::CostReportOptions o;
  o.gpu_hour_usd = 100;             // local GPU cost never counts against a budget
  o.now_ms = kNov1 + 6 * kDay - 1;  // the end of 2026-11-06: 6 of 30 days passed
  policies::BudgetPolicy b;
  b.monthly_usd = 20;
  o.budgets = {{"research", b}};
  std::string html = quality::renderCostReport(rows, o);
  std::string chart = chartSvg(html, "burndown", "data-team=\"research\"");
  ASSERT_NE(chart, "");
  std::vector<Mark> points = marks(chart);
  std::map<std::string, double> spend, projection;
  for (const Mark& m : points) {
    (m.series == "projection" ? projection : spend)[m.label] = std::stod(m.value);
  }
  ASSERT_EQ(spend.size(), 6u);  // days 1..6
  EXPECT_DOUBLE_EQ(spend["2026-11-01"], 1.0);
  EXPECT_DOUBLE_EQ(spend["2026-11-04"], 1.0);
  EXPECT_DOUBLE_EQ(spend["2026-11-05"], 3.0);
  EXPECT_DOUBLE_EQ(spend["2026-11-06"], 3.0);
  ASSERT_EQ(projection.size(), 2u);
  EXPECT_DOUBLE_EQ(projection["today"], 3.0);
  EXPECT_NEAR(projection["month end"], 3.0 / (6.0 / 30.0), 1e-9);  // $15
  EXPECT_NE(chart.find("class=\"ref\""), std::string::npos);
  EXPECT_NE(chart.find("data-label=\"monthly budget\" data-value=\"20\""), std::string::npos);
  EXPECT_NE(html.find("projected month end <b>$15.00</b> (75% of the budget)"), std::string::npos);
  EXPECT_NE(html.find("month-end projection is linear"), std::string::npos);
  EXPECT_NE(html.find("Teams without a budget here: ops."), std::string::npos);
}

TEST(CostReport, EmptyInputSaysSoWithoutNaN) {
  std::string html = quality::renderCostReport({}, {});
  EXPECT_NE(html.find("No records"), std::string::npos);
  expectNoNonFinite(html);
  quality::CostReportOptions o = costOptions();
  html = quality::renderCostReport({}, o);
  EXPECT_NE(html.find("No records"), std::string::npos);
  EXPECT_NE(chartSvg(html, "burndown", "data-team=\"research\""), "");
  expectNoNonFinite(html);
}

TEST(CostReport, NonFiniteAndHostileRowsNeverShowAsNaN) {
  std::vector<LedgerRow> rows = {
      ledgerRow("<script>", "m\"x", "cloud", "escalated", kNan, kInf, kNov3),
      ledgerRow("t", "m", "local", "cascade", -5, -kInf, kNov3 + 1),
      ledgerRow("t", "m", "cloud", "direct", kInf, 0, std::numeric_limits<int64_t>::max()),
      ledgerRow("t", "m", "cloud", "direct", 1, 0, std::numeric_limits<int64_t>::min()),
  };
  rows[1].prompt_tokens = -100;
  quality::CostReportOptions o = costOptions();
  o.gpu_hour_usd = kNan;
  o.bucket_ms = -1;
  std::string html = quality::renderCostReport(rows, o);
  expectNoNonFinite(html);
  EXPECT_EQ(html.find("<script>"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;"), std::string::npos);
}

// ---- In a real browser ----

std::string findOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// Runs the harness on `file`; fills `out` with its JSON. Skips (or, under CI, fails) when node,
// Chromium or puppeteer-core is not there.
struct BrowserTools {
  std::string node, chromium, harness;
  std::string missing;  // why the browser tests cannot run, "" when they can
};

BrowserTools browserTools() {
  BrowserTools t;
  t.node = findOnPath("node");
  const char* env = std::getenv("CHROMIUM");
  t.chromium = env && *env ? env : "/usr/bin/chromium";
  t.harness = std::string(SY_SOURCE_DIR) + "/tests/browser/page_check.mjs";
  if (t.node.empty()) {
    t.missing = "node is not on PATH";
  } else if (::access(t.chromium.c_str(), X_OK) != 0) {
    t.missing = "no Chromium at " + t.chromium + " (set CHROMIUM)";
  } else if (!std::filesystem::exists(std::string(SY_SOURCE_DIR) +
                                      "/node_modules/puppeteer-core/package.json")) {
    t.missing = "puppeteer-core is not installed (npm ci)";
  }
  return t;
}

#define SKIP_WITHOUT_BROWSER(tools)                                                  \
  do {                                                                               \
    if (!(tools).missing.empty()) {                                                  \
      if (std::getenv("CI") != nullptr) FAIL() << (tools).missing << " (CI is set)"; \
      GTEST_SKIP() << (tools).missing;                                               \
    }                                                                                \
  } while (0)

api::Json runHarness(const BrowserTools& t, const std::string& file,
                     const std::vector<std::string>& selectors) {
  std::vector<std::string> args = {t.harness, file, "--wait-for", "main", "--timeout-ms", "60000"};
  for (const std::string& s : selectors) {
    args.push_back("--count");
    args.push_back(s);
  }
  sytest::RunResult r = sytest::runCommand(t.node, args, {{"CHROMIUM", t.chromium}}, std::nullopt,
                                           std::chrono::milliseconds(90000));
  EXPECT_FALSE(r.timed_out) << r.err;
  EXPECT_TRUE(r.status.exited && r.status.code == 0)
      << "exit " << r.status.code << " signal " << r.status.signal << ": " << r.err;
  api::Json j = api::Json::parse(r.out, nullptr, false);
  EXPECT_TRUE(j.is_object()) << "stdout: " << r.out << "\nstderr: " << r.err;
  return j.is_object() ? j : api::Json::object();
}

std::string marksOf(const std::string& chart, const std::string& extra = "") {
  return "svg[data-chart=\"" + chart + "\"]" + extra + " .mark";
}

void expectCleanPage(const api::Json& j) {
  EXPECT_EQ(j.value("ok", false), true) << j.dump(2);
  EXPECT_EQ(j.value("console_errors", api::Json::array()).size(), 0u) << j.dump(2);
  EXPECT_EQ(j.value("page_errors", api::Json::array()).size(), 0u) << j.dump(2);
  EXPECT_EQ(j.value("failed_requests", api::Json::array()).size(), 0u) << j.dump(2);
}

int64_t count(const api::Json& j, const std::string& selector) {
  auto counts = j.value("counts", api::Json::object());
  auto it = counts.find(selector);
  return it != counts.end() && it->is_number_integer() ? it->get<int64_t>() : -1;
}

// The harness itself: a broken page is reported as broken, so the clean results above mean
// something.
TEST(ReportBrowser, HarnessReportsBrokenPages) {
  BrowserTools tools = browserTools();
  SKIP_WITHOUT_BROWSER(tools);
  sytest::TempDir dir;
  std::string file = dir.write(
      "broken.html",
      "<!DOCTYPE html><html><head><title>broken</title><link rel=\"icon\" href=\"data:,\">"
      "</head><body><main><p class=\"x\">1</p><p class=\"x\">2</p></main>"
      "<img src=\"missing.png\" alt=\"\"><script>console.error('boom');"
      "throw new Error('uncaught');</script></body></html>");
  api::Json j = runHarness(tools, file, {".x"});
  EXPECT_EQ(j.value("ok", true), false);
  EXPECT_EQ(j.value("title", ""), "broken");
  EXPECT_EQ(count(j, ".x"), 2);
  EXPECT_FALSE(j.value("console_errors", api::Json::array()).empty());
  ASSERT_EQ(j.value("page_errors", api::Json::array()).size(), 1u) << j.dump(2);
  EXPECT_NE(j["page_errors"][0].get<std::string>().find("uncaught"), std::string::npos);
  ASSERT_EQ(j.value("failed_requests", api::Json::array()).size(), 1u) << j.dump(2);
  EXPECT_NE(j["failed_requests"][0].value("url", "").find("missing.png"), std::string::npos);
}

TEST(ReportBrowser, QualityReportRendersCleanly) {
  BrowserTools tools = browserTools();
  SKIP_WITHOUT_BROWSER(tools);
  Synthetic s = synthetic();
  quality::QualityReportOptions o;
  o.worst_n = 5;
  sytest::TempDir dir;
  std::string file = dir.write("quality.html", quality::renderQualityReport(s.records, &s.rows, o));
  std::vector<std::string> selectors = {
      marksOf("outcomes-by-complexity"),
      marksOf("outcomes-by-confidence"),
      marksOf("threshold-tradeoff"),
      marksOf("escalation-rate"),
      ".case",
      "#judge-status tbody tr",
      "script",
  };
  api::Json j = runHarness(tools, file, selectors);
  expectCleanPage(j);
  EXPECT_EQ(j.value("title", ""), "Switchyard quality report");
  EXPECT_EQ(count(j, selectors[0]), 15);  // 5 buckets x (wins, ties, losses)
  EXPECT_EQ(count(j, selectors[1]), 15);
  EXPECT_EQ(count(j, selectors[2]), 21);  // thresholds 0, 0.05, ..., 1
  EXPECT_EQ(count(j, selectors[3]), 10);  // ten UTC days
  EXPECT_EQ(count(j, selectors[4]), 5);
  EXPECT_EQ(count(j, selectors[5]), 5);  // ok, unparsed, error, skipped_policy, not judged
  EXPECT_EQ(count(j, selectors[6]), 0);
}

TEST(ReportBrowser, CostReportRendersCleanly) {
  BrowserTools tools = browserTools();
  SKIP_WITHOUT_BROWSER(tools);
  Synthetic s = synthetic();
  sytest::TempDir dir;
  std::string file = dir.write("cost.html", quality::renderCostReport(s.rows, costOptions()));
  std::vector<std::string> selectors = {
      marksOf("spend-by-team"),
      marksOf("spend-by-model"),
      marksOf("spend-by-route"),
      marksOf("burndown", "[data-team=\"research\"]"),
      marksOf("burndown", "[data-team=\"support\"]"),
      "svg[data-chart=\"burndown\"] line.ref",
      marksOf("savings"),
      "#status-table tbody tr",
  };
  api::Json j = runHarness(tools, file, selectors);
  expectCleanPage(j);
  EXPECT_EQ(j.value("title", ""), "Switchyard cost report");
  // Ten days; series: the teams with cloud spend, and the local GPU.
  EXPECT_EQ(count(j, selectors[0]), 10 * (3 + 1));
  // gpt-4o-mini and claude-sonnet-4-5 (the local model only has GPU cost).
  EXPECT_EQ(count(j, selectors[1]), 10 * (2 + 1));
  // escalated, direct, shadow; local GPU.
  EXPECT_EQ(count(j, selectors[2]), 10 * (3 + 1));
  // Days 1..12 of November and the two ends of the projection.
  EXPECT_EQ(count(j, selectors[3]), 12 + 2);
  EXPECT_EQ(count(j, selectors[4]), 12 + 2);
  EXPECT_EQ(count(j, selectors[5]), 2);
  EXPECT_EQ(count(j, selectors[6]), 10);
  EXPECT_EQ(count(j, selectors[7]), 2);  // 429 and 502
}

TEST(ReportBrowser, EmptyReportsRenderCleanly) {
  BrowserTools tools = browserTools();
  SKIP_WITHOUT_BROWSER(tools);
  sytest::TempDir dir;
  std::string quality_file = dir.write("q.html", quality::renderQualityReport({}, nullptr, {}));
  api::Json j = runHarness(tools, quality_file, {"#no-records", ".mark"});
  expectCleanPage(j);
  EXPECT_EQ(count(j, "#no-records"), 1);
  EXPECT_EQ(count(j, ".mark"), 0);
  std::string cost_file = dir.write("c.html", quality::renderCostReport({}, {}));
  j = runHarness(tools, cost_file, {"#no-records"});
  expectCleanPage(j);
  EXPECT_EQ(count(j, "#no-records"), 1);
}

}  // namespace
