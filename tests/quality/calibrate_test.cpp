// Router calibration (quality/calibrate.h) on synthetic quality records with a planted signal:
// it finds the signal, honours its targets on held-out rows, reports only held-out numbers,
// refuses data it cannot fit, and emits snippets that the real config readers accept.
#include "quality/calibrate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "policies/policy_set.h"
#include "policies/trigger.h"
#include "policies/yaml_reader.h"
#include "routers/confidence.h"

namespace {

using quality::CalibrateOptions;
using quality::Calibration;
using quality::QualityRecord;

constexpr std::string_view kFeatureNames[] = {
    "length",        "turns", "code",   "math",      "reasoning",
    "output_length", "tools", "images", "non_latin", "structured_output"};

struct Synth {
  double confidence = 0;
  std::vector<quality::Feature> features;
  double feature(std::string_view name) const {
    for (const auto& f : features) {
      if (f.name == name) return f.value;
    }
    return 0;
  }
};

// `n` records with uniform random features and confidence; the cloud wins where `cloud_wins`
// says, except for a `noise` share of labels flipped at random. A cloud win has delta in
// [0.3, 1], a local win or a tie in [-0.8, 0].
std::vector<QualityRecord> synthesize(size_t n, uint64_t seed,
                                      const std::function<bool(const Synth&)>& cloud_wins,
                                      double noise = 0.05) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<QualityRecord> out;
  for (size_t i = 0; i < n; ++i) {
    Synth s;
    for (std::string_view name : kFeatureNames) {
      s.features.push_back(quality::Feature{std::string(name), u(rng)});
    }
    s.confidence = u(rng);
    bool win = cloud_wins(s);
    if (u(rng) < noise) win = !win;
    QualityRecord r;
    r.id = static_cast<int64_t>(i + 1);
    r.request_id = "req-" + std::to_string(seed) + "-" + std::to_string(i);
    r.unix_ms = 1'700'000'000'000 + static_cast<int64_t>(i);
    r.team = "research";
    r.complexity_features = s.features;
    r.complexity = 0.5;  // what the old weights said; calibration recomputes it
    r.confidence = s.confidence;
    r.local.cost_usd = 0.0001;
    r.cloud.cost_usd = 0.002;
    quality::JudgeResult j;
    j.status = quality::JudgeStatus::kOk;
    j.delta = win ? 0.3 + 0.7 * u(rng) : -0.8 * u(rng);
    j.agreement = true;
    r.judge = j;
    out.push_back(std::move(r));
  }
  return out;
}

bool lowConfidence(const Synth& s) { return s.confidence < 0.4; }
bool codeHeavy(const Synth& s) { return s.feature("code") > 0.6; }

Calibration calibrateOk(const std::vector<QualityRecord>& records, const CalibrateOptions& o) {
  auto c = quality::calibrate(records, o);
  EXPECT_TRUE(c.ok()) << c.status().message();
  return c.ok() ? *c : Calibration{};
}

// ---- finding the signal ---------------------------------------------------------------------

TEST(Calibrate, FindsTheConfidenceThresholdWhereTheCloudStartsToWin) {
  const auto records = synthesize(4000, 11, lowConfidence);
  const Calibration c = calibrateOk(records, CalibrateOptions{});
  EXPECT_NEAR(c.confidence_threshold, 0.4, 0.05);
  EXPECT_GE(c.heldout_accuracy, 0.9);
  // Complexity is noise here: whatever it adds escalates few rows.
  EXPECT_NEAR(c.chosen.cloud_share, 0.4, 0.06);
  EXPECT_GT(c.heldout_confidence_auc, 0.85);
  EXPECT_NEAR(c.heldout_auc, 0.5, 0.1);
  EXPECT_GT(c.chosen.precision, 0.85);
  EXPECT_GT(c.chosen.recall, 0.85);
}

TEST(Calibrate, PlantedComplexitySignalDominatesTheFittedWeights) {
  const auto records = synthesize(4000, 12, codeHeavy);
  const Calibration c = calibrateOk(records, CalibrateOptions{});
  const routers::ComplexityWeights& w = c.weights;
  for (double other : {w.length, w.turns, w.math, w.reasoning, w.output_length, w.tools, w.images,
                       w.non_latin, w.structured_output}) {
    EXPECT_GT(w.code, 5 * other + 1) << "code " << w.code << " vs " << other;
  }
  EXPECT_LT(w.bias, -1);  // a request with no code stays local
  EXPECT_GT(c.heldout_auc, 0.9);
  EXPECT_GE(c.heldout_accuracy, 0.9);
  // The rule is a complexity rule now: the fitted score crosses Tc where code crosses 0.6.
  EXPECT_LT(c.complexity_threshold, 1);
  const double tc_logit = std::log(c.complexity_threshold / (1 - c.complexity_threshold));
  EXPECT_NEAR((tc_logit - w.bias) / w.code, 0.6, 0.1);
}

TEST(Calibrate, FittedWeightsStayInTheRangesTheConfigReaderAccepts) {
  // Perfectly separable: without the bounds the weight would run off to infinity.
  const auto records = synthesize(2000, 13, codeHeavy, /*noise=*/0);
  const Calibration c = calibrateOk(records, CalibrateOptions{});
  EXPECT_LE(c.weights.code, 20);
  EXPECT_GE(c.weights.bias, -20);
  for (double v : {c.weights.length, c.weights.turns, c.weights.code, c.weights.math,
                   c.weights.reasoning, c.weights.output_length, c.weights.tools, c.weights.images,
                   c.weights.non_latin, c.weights.structured_output}) {
    EXPECT_GE(v, 0);
    EXPECT_LE(v, 20);
  }
}

// ---- targets ------------------------------------------------------------------------------

TEST(Calibrate, TargetCloudShareIsRespectedOnHeldOutRows) {
  const auto records = synthesize(4000, 21, lowConfidence);
  CalibrateOptions o;
  o.target_cloud_share = 0.2;
  const Calibration c = calibrateOk(records, o);
  EXPECT_LE(c.chosen.cloud_share, 0.2 + 0.04);
  EXPECT_GE(c.chosen.cloud_share, 0.2 - 0.05);  // it uses the share it was given
  // The share goes to the rows most likely to be cloud wins: the lowest confidence.
  EXPECT_NEAR(c.confidence_threshold, 0.2, 0.05);
  EXPECT_GT(c.chosen.precision, 0.85);

  // Never escalating loses more; escalating 20% well loses less than escalating 20% at random.
  double never_loss = 0;
  for (const auto& t : c.curve) {
    if (t.cloud_share == 0) never_loss = t.quality_loss;
  }
  EXPECT_GT(never_loss, 0);
  EXPECT_LT(c.chosen.quality_loss, 0.75 * never_loss);
}

TEST(Calibrate, TargetQualityLossFindsTheLeastShareThatMeetsIt) {
  const auto records = synthesize(4000, 22, lowConfidence);
  CalibrateOptions o;
  o.target_quality_loss = 0.05;
  const Calibration c = calibrateOk(records, o);
  EXPECT_LE(c.chosen.quality_loss, 0.05 + 0.02);
  // Meeting the target needs most of the cloud wins (40% of rows), no more than that by much.
  EXPECT_GT(c.chosen.cloud_share, 0.25);
  EXPECT_LT(c.chosen.cloud_share, 0.5);

  // No loss on the training rows takes escalating every row up to the most confident cloud
  // win among them; held out, a rare win above that one is still lost.
  o.target_quality_loss = 0;
  const Calibration all = calibrateOk(records, o);
  EXPECT_LT(all.chosen.quality_loss, 0.005);
  EXPECT_GT(all.chosen.cloud_share, 0.9);
  EXPECT_GT(all.chosen.cost_per_1k_usd, c.chosen.cost_per_1k_usd);
}

TEST(Calibrate, CurveRunsFromLowToHighCloudShareAndCostFollowsShare) {
  const auto records = synthesize(3000, 23, lowConfidence);
  const Calibration c = calibrateOk(records, CalibrateOptions{});
  ASSERT_GE(c.curve.size(), 5u);
  EXPECT_EQ(c.curve.front().cloud_share, 0);
  EXPECT_GT(c.curve.back().cloud_share, 0.9);
  for (size_t i = 1; i < c.curve.size(); ++i) {
    EXPECT_LE(c.curve[i - 1].cloud_share, c.curve[i].cloud_share);
    EXPECT_LE(c.curve[i - 1].cost_per_1k_usd, c.curve[i].cost_per_1k_usd + 1e-12);
  }
  // Local cost on every row, cloud cost on escalated rows: 0.1 + 2 × share USD per 1k.
  for (const auto& t : c.curve) {
    EXPECT_NEAR(t.cost_per_1k_usd, 0.1 + 2 * t.cloud_share, 1e-9);
  }
}

// ---- held-out discipline --------------------------------------------------------------------

TEST(Calibrate, ReportsOnlyHeldOutRows) {
  auto records = synthesize(4000, 31, lowConfidence, /*noise=*/0);
  CalibrateOptions o;
  o.seed = 7;
  size_t held_out = 0;
  // Turn the held-out rows' world upside down: there the cloud wins iff confidence >= 0.4.
  for (QualityRecord& r : records) {
    if (!quality::isHeldOut(r.request_id, o.holdout, o.seed)) continue;
    ++held_out;
    r.judge->delta = *r.confidence >= 0.4 ? 0.6 : -0.6;
  }
  const Calibration c = calibrateOk(records, o);
  EXPECT_EQ(c.test_rows, held_out);
  EXPECT_EQ(c.train_rows + c.test_rows + c.skipped_rows, records.size());
  // The rule is fitted on the training rows' world...
  EXPECT_NEAR(c.confidence_threshold, 0.4, 0.05);
  // ...and every number is measured in the held-out one, where that rule is nearly always wrong.
  EXPECT_LT(c.heldout_accuracy, 0.1);
  EXPECT_LT(c.chosen.precision, 0.1);
  EXPECT_LT(c.heldout_confidence_auc, 0.1);
  EXPECT_NE(quality::formatCalibration(c).find("held-out rows only"), std::string::npos);
}

TEST(Calibrate, TheSplitFollowsTheSeedAndTheHoldoutShare) {
  const auto records = synthesize(2000, 32, lowConfidence);
  CalibrateOptions o;
  const Calibration a = calibrateOk(records, o);
  o.seed = 2;
  const Calibration b = calibrateOk(records, o);
  EXPECT_NEAR(static_cast<double>(a.test_rows) / 2000, 0.25, 0.04);
  EXPECT_NEAR(static_cast<double>(b.test_rows) / 2000, 0.25, 0.04);
  size_t moved = 0;
  for (const QualityRecord& r : records) {
    moved += quality::isHeldOut(r.request_id, 0.25, 1) != quality::isHeldOut(r.request_id, 0.25, 2);
  }
  EXPECT_GT(moved, 300u);  // a different seed is a different split, not a relabelling
  o.holdout = 0.5;
  const Calibration half = calibrateOk(records, o);
  EXPECT_NEAR(static_cast<double>(half.test_rows) / 2000, 0.5, 0.04);
}

TEST(Calibrate, IsDeterministic) {
  const auto records = synthesize(1500, 33, codeHeavy);
  CalibrateOptions o;
  o.target_cloud_share = 0.3;
  const Calibration a = calibrateOk(records, o);
  std::vector<QualityRecord> shuffled = records;
  std::reverse(shuffled.begin(), shuffled.end());
  const Calibration b = calibrateOk(shuffled, o);
  EXPECT_EQ(quality::formatCalibration(a), quality::formatCalibration(b));
  EXPECT_EQ(a.router_snippet, b.router_snippet);
  EXPECT_EQ(a.policies_snippet, b.policies_snippet);
}

TEST(Calibrate, SkipsRowsWithoutDeltaFeaturesOrConfidence) {
  auto records = synthesize(400, 34, lowConfidence);
  records[0].judge->status = quality::JudgeStatus::kError;
  records[1].confidence.reset();
  records[2].complexity_features.clear();
  records[3].confidence = std::nan("");
  records[4].local.complete = false;  // a draft cut short by its escalation
  const Calibration c = calibrateOk(records, CalibrateOptions{});
  EXPECT_EQ(c.skipped_rows, 5u);
  EXPECT_EQ(c.train_rows + c.test_rows, 395u);
}

TEST(Calibrate, WinMarginMovesTheLabel) {
  // Every row: cloud better by 0.3 to 1 where confidence < 0.4, else by 0.1.
  auto records = synthesize(3000, 35, lowConfidence, /*noise=*/0);
  for (QualityRecord& r : records) {
    if (r.judge->delta <= 0) r.judge->delta = 0.1;
  }
  CalibrateOptions o;
  auto all_wins = quality::calibrate(records, o);  // margin 0: every row is a cloud win
  ASSERT_FALSE(all_wins.ok());
  EXPECT_EQ(all_wins.status().code(), api::ErrorCode::kInvalidRequest);
  o.win_margin = 0.2;  // a 0.1 edge is not worth a cloud call
  const Calibration c = calibrateOk(records, o);
  EXPECT_NEAR(c.confidence_threshold, 0.4, 0.05);
}

// ---- refusals -----------------------------------------------------------------------------

TEST(Calibrate, RefusesTooFewUsableRowsNamingTheCounts) {
  auto records = synthesize(19, 41, lowConfidence);
  auto extra = synthesize(5, 42, lowConfidence);
  for (QualityRecord& r : extra) r.judge.reset();  // no delta: skipped
  records.insert(records.end(), extra.begin(), extra.end());
  auto c = quality::calibrate(records, CalibrateOptions{});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_NE(c.status().message().find("19 of 24"), std::string::npos) << c.status().message();
  EXPECT_NE(c.status().message().find("5 skipped"), std::string::npos) << c.status().message();
  EXPECT_FALSE(quality::calibrate({}, CalibrateOptions{}).ok());
}

TEST(Calibrate, RefusesTrainingRowsOfOneLabel) {
  auto records = synthesize(
      200, 43, [](const Synth&) { return false; }, /*noise=*/0);
  auto c = quality::calibrate(records, CalibrateOptions{});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_NE(c.status().message().find("0 where the cloud was better"), std::string::npos)
      << c.status().message();
}

TEST(Calibrate, RefusesContradictoryOrOutOfRangeOptions) {
  const auto records = synthesize(200, 44, lowConfidence);
  CalibrateOptions both;
  both.target_cloud_share = 0.2;
  both.target_quality_loss = 0.02;
  auto c = quality::calibrate(records, both);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), api::ErrorCode::kInvalidRequest);
  for (auto bad : std::vector<std::function<void(CalibrateOptions&)>>{
           [](CalibrateOptions& o) { o.holdout = 0; }, [](CalibrateOptions& o) { o.holdout = 1; },
           [](CalibrateOptions& o) { o.holdout = std::nan(""); },
           [](CalibrateOptions& o) { o.target_cloud_share = 1.5; },
           [](CalibrateOptions& o) { o.target_quality_loss = -0.1; },
           [](CalibrateOptions& o) { o.win_margin = 1; }}) {
    CalibrateOptions o;
    bad(o);
    EXPECT_EQ(quality::calibrate(records, o).status().code(), api::ErrorCode::kInvalidRequest);
  }
}

// ---- the confidence weights -----------------------------------------------------------------

// Planted confidence weights (routers/confidence.h order: top1, margin, certainty, top1_tail,
// margin_tail, certainty_tail), summing to 1.
constexpr double kPlanted[] = {0.1, 0.3, 0.0, 0.4, 0.0, 0.2};

double plantedConfidence(const QualityRecord& r) {
  double s = 0;
  for (size_t j = 0; j < routers::kConfidenceFeatureFields.size(); ++j) {
    s += kPlanted[j] * *r.confidenceFeature(routers::kConfidenceFeatureFields[j].name);
  }
  return s;
}

// `n` records whose six confidence features are uniform in [0, 1] and whose label is drawn with
// P(cloud better) = logistic(sharpness · (0.5 − planted confidence)). The recorded confidence is
// noise, so that only the features carry the signal; the complexity features carry none.
std::vector<QualityRecord> synthesizeConfidence(size_t n, uint64_t seed, double sharpness = 14) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<QualityRecord> out;
  for (size_t i = 0; i < n; ++i) {
    QualityRecord r;
    r.id = static_cast<int64_t>(i + 1);
    r.request_id = "conf-" + std::to_string(seed) + "-" + std::to_string(i);
    r.team = "research";
    for (std::string_view name : kFeatureNames) {
      r.complexity_features.push_back(quality::Feature{std::string(name), u(rng)});
    }
    for (const auto& f : routers::kConfidenceFeatureFields) {
      r.confidence_features.push_back(quality::Feature{std::string(f.name), u(rng)});
    }
    r.confidence_features.push_back(quality::Feature{"mean_entropy", 3 * u(rng)});
    r.confidence = u(rng);
    r.complexity = 0.5;
    r.local.cost_usd = 0.0001;
    r.cloud.cost_usd = 0.002;
    const double p = 1 / (1 + std::exp(-sharpness * (0.5 - plantedConfidence(r))));
    quality::JudgeResult j;
    j.status = quality::JudgeStatus::kOk;
    j.delta = u(rng) < p ? 0.3 + 0.7 * u(rng) : -0.8 * u(rng);
    j.agreement = true;
    r.judge = j;
    out.push_back(std::move(r));
  }
  return out;
}

// Area under the ROC curve of `score` for `label` (ties count half).
double aucOf(const std::vector<std::pair<double, bool>>& scored) {
  double pos = 0, neg = 0, wins = 0;
  for (const auto& a : scored) (a.second ? pos : neg) += 1;
  for (const auto& a : scored) {
    if (!a.second) continue;
    for (const auto& b : scored) {
      if (b.second) continue;
      wins += a.first > b.first ? 1 : a.first == b.first ? 0.5 : 0;
    }
  }
  return wins / (pos * neg);
}

TEST(Calibrate, RecoversPlantedConfidenceWeightsOnHeldOutRows) {
  const std::vector<QualityRecord> records = synthesizeConfidence(8000, 61);
  const Calibration c = calibrateOk(records, CalibrateOptions{});
  ASSERT_TRUE(c.confidence) << c.confidence_note;
  EXPECT_EQ(c.confidence_fit_rows, c.train_rows);
  for (size_t j = 0; j < routers::kConfidenceFeatureFields.size(); ++j) {
    const auto& f = routers::kConfidenceFeatureFields[j];
    EXPECT_NEAR(c.confidence.value().*f.weight, kPlanted[j], 0.06) << f.name;
  }
  // On the held-out rows, the fitted confidence separates the labels as well as the planted one
  // does (the recorded confidence, noise here, would give 0.5).
  std::vector<std::pair<double, bool>> planted;
  for (const QualityRecord& r : records) {
    if (!quality::isHeldOut(r.request_id, 0.25, 1)) continue;
    planted.emplace_back(1 - plantedConfidence(r), *r.delta() > 0);
  }
  ASSERT_EQ(planted.size(), c.test_rows);
  const double best = aucOf(planted);
  EXPECT_GT(best, 0.8);
  EXPECT_NEAR(c.heldout_confidence_auc, best, 0.01);
  // The snippet carries the weights in the form the router reads.
  auto root = policies::YamlReader::parse(c.router_snippet, "switchyard.yaml",
                                          [](const std::string&) { return std::nullopt; });
  ASSERT_TRUE(root.ok()) << root.status().message();
  auto read = routers::ConfidenceConfig::read(root->section("router").section("confidence"));
  ASSERT_TRUE(read.ok()) << read.status().message() << "\n" << c.router_snippet;
  for (const auto& f : routers::kConfidenceFeatureFields) {
    EXPECT_EQ(read.value().*f.weight, c.confidence.value().*f.weight) << f.name;
  }
  const std::string text = quality::formatCalibration(c);
  EXPECT_NE(text.find("confidence weights: top1_tail 0.4"), std::string::npos) << text;
}

TEST(Calibrate, RecordsWithoutConfidenceFeaturesKeepTheirRecordedConfidence) {
  // Records made before the confidence features: nothing to fit, the recorded scores are used.
  const Calibration c = calibrateOk(synthesize(1000, 62, lowConfidence), CalibrateOptions{});
  EXPECT_FALSE(c.confidence);
  EXPECT_NE(c.confidence_note.find("0 training rows carry every confidence feature"),
            std::string::npos)
      << c.confidence_note;
  EXPECT_NEAR(c.confidence_threshold, 0.4, 0.05);
  EXPECT_EQ(c.router_snippet.find("  confidence:"), std::string::npos) << c.router_snippet;
  EXPECT_NE(quality::formatCalibration(c).find("confidence weights: not fitted"),
            std::string::npos);
}

TEST(Calibrate, ConfidenceFeaturesWithoutSignalAreNotFitted) {
  // Labels from the complexity features only: no confidence weight survives the fit, or if the
  // fit keeps a sliver of one, the held-out confidence carries no signal either way.
  std::vector<QualityRecord> records = synthesizeConfidence(3000, 63);
  for (QualityRecord& r : records) {
    const bool win = r.complexityFeature("code").value() > 0.6;
    r.judge->delta = win ? 0.5 : -0.5;
  }
  const Calibration c = calibrateOk(records, CalibrateOptions{});
  EXPECT_NE(c.trigger.find("complexity >"), std::string::npos) << c.trigger;
  if (c.confidence) {
    EXPECT_NEAR(c.heldout_confidence_auc, 0.5, 0.06);
  } else {
    EXPECT_NE(c.confidence_note.find("no confidence feature predicts"), std::string::npos);
  }
}

// ---- snippets ------------------------------------------------------------------------------

// The trigger string of a policies snippet, read as YAML.
std::string triggerOf(const std::string& snippet) {
  auto root = policies::YamlReader::parse(snippet, "snippet.yaml",
                                          [](const std::string&) { return std::nullopt; });
  EXPECT_TRUE(root.ok()) << root.status().message() << "\n" << snippet;
  if (!root.ok()) return "";
  EXPECT_TRUE(root->checkNoUnknownKeys({"routing"}).ok());
  std::string trigger;
  EXPECT_TRUE(root->section("routing").readString("trigger", &trigger).ok());
  return trigger;
}

std::string indent(const std::string& text) {
  std::string out = "  ";
  for (char ch : text) {
    out += ch;
    if (ch == '\n') out += "  ";
  }
  return out;
}

void expectSnippetsLoad(const Calibration& c) {
  // The trigger parses with the real parser and means what the calibration evaluated.
  const std::string text = triggerOf(c.policies_snippet);
  EXPECT_EQ(text, c.trigger);
  auto trigger = policies::Trigger::parse(text);
  ASSERT_TRUE(trigger.ok()) << trigger.status().message() << ": " << text;
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(0, 1);
  for (int i = 0; i < 2000; ++i) {
    policies::TriggerVars v;
    v.complexity = u(rng);
    v.confidence = u(rng);
    const bool want =
        *v.complexity > c.complexity_threshold || *v.confidence < c.confidence_threshold;
    EXPECT_EQ(trigger->evaluate(v), want ? policies::Truth::kTrue : policies::Truth::kFalse)
        << text << " at complexity " << *v.complexity << ", confidence " << *v.confidence;
  }

  // The snippet, comments and all, pasted under `defaults:` of a policies.yaml.
  auto set =
      policies::PolicySet::parse("defaults:\n" + indent(c.policies_snippet), "policies.yaml");
  ASSERT_TRUE(set.ok()) << set.status().message();
  EXPECT_EQ((*set)->defaults().routing.trigger->text(), c.trigger);

  // The router snippet reads back as the same weights.
  auto root = policies::YamlReader::parse(c.router_snippet, "switchyard.yaml",
                                          [](const std::string&) { return std::nullopt; });
  ASSERT_TRUE(root.ok()) << root.status().message();
  auto w = routers::ComplexityWeights::read(root->section("router").section("complexity"));
  ASSERT_TRUE(w.ok()) << w.status().message() << "\n" << c.router_snippet;
  EXPECT_EQ(w->bias, c.weights.bias);
  EXPECT_EQ(w->length, c.weights.length);
  EXPECT_EQ(w->turns, c.weights.turns);
  EXPECT_EQ(w->code, c.weights.code);
  EXPECT_EQ(w->math, c.weights.math);
  EXPECT_EQ(w->reasoning, c.weights.reasoning);
  EXPECT_EQ(w->output_length, c.weights.output_length);
  EXPECT_EQ(w->tools, c.weights.tools);
  EXPECT_EQ(w->images, c.weights.images);
  EXPECT_EQ(w->non_latin, c.weights.non_latin);
  EXPECT_EQ(w->structured_output, c.weights.structured_output);
}

TEST(CalibrateSnippets, LoadWithTheRealReadersForEveryShapeOfRule) {
  // Confidence only, complexity only, both, and the two extremes.
  const auto conf = synthesize(2000, 51, lowConfidence);
  const Calibration by_confidence = calibrateOk(conf, CalibrateOptions{});
  EXPECT_NE(by_confidence.trigger.find("confidence <"), std::string::npos);
  expectSnippetsLoad(by_confidence);

  const Calibration by_code = calibrateOk(synthesize(2000, 52, codeHeavy), CalibrateOptions{});
  EXPECT_NE(by_code.trigger.find("complexity >"), std::string::npos);
  expectSnippetsLoad(by_code);

  const Calibration mixed = calibrateOk(
      synthesize(3000, 53,
                 [](const Synth& s) { return s.confidence < 0.3 || s.feature("code") > 0.8; }),
      CalibrateOptions{});
  EXPECT_NE(mixed.trigger.find(" OR "), std::string::npos) << mixed.trigger;
  expectSnippetsLoad(mixed);

  CalibrateOptions never;
  never.target_cloud_share = 0;
  const Calibration none = calibrateOk(conf, never);
  EXPECT_EQ(none.trigger, "false");
  EXPECT_EQ(none.chosen.cloud_share, 0);
  expectSnippetsLoad(none);

  CalibrateOptions always;
  always.target_quality_loss = 0;
  const Calibration all = calibrateOk(conf, always);
  expectSnippetsLoad(all);
}

TEST(CalibrateSnippets, FormattedSummaryShowsTheRuleAndTheTable) {
  const Calibration c = calibrateOk(synthesize(1000, 54, lowConfidence), CalibrateOptions{});
  const std::string text = quality::formatCalibration(c);
  EXPECT_NE(text.find(c.trigger), std::string::npos);
  EXPECT_NE(text.find("chosen"), std::string::npos);
  EXPECT_NE(text.find("cloud share"), std::string::npos);
  EXPECT_NE(text.find(std::to_string(c.test_rows) + " held-out rows"), std::string::npos);
  EXPECT_EQ(text.back(), '\n');
}

}  // namespace

// ---- weighting by the sampling probability --------------------------------------------------

// A planted traffic of `n` requests: those with confidence < 0.3 escalate and are all recorded
// (sampling_p 1), the cloud better on 80% of them; the others are answered locally and one in
// ten is recorded as a shadow sample (sampling_p 0.1), the cloud better on 10% of them. Over the
// traffic the cloud is better on 0.3 * 0.8 + 0.7 * 0.1 = 31% of requests; over the records, on
// about (0.24 + 0.007) / 0.37 = 67%.
std::vector<QualityRecord> sampledTraffic(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<QualityRecord> out;
  for (size_t i = 0; i < n; ++i) {
    const double confidence = u(rng);
    const bool escalated = confidence < 0.3;
    const bool cloud_better = u(rng) < (escalated ? 0.8 : 0.1);
    std::vector<quality::Feature> features;
    for (std::string_view name : kFeatureNames) {
      features.push_back(quality::Feature{std::string(name), u(rng)});
    }
    const double delta = cloud_better ? 0.6 : -0.6;
    if (!escalated && u(rng) >= 0.1) continue;  // not sampled for a shadow comparison
    QualityRecord r;
    r.id = static_cast<int64_t>(i + 1);
    r.request_id = "traffic-" + std::to_string(i);
    r.unix_ms = 1'700'000'000'000 + static_cast<int64_t>(i);
    r.team = "research";
    r.kind = escalated ? quality::RecordKind::kEscalation : quality::RecordKind::kShadow;
    r.sampling_p = escalated ? 1 : 0.1;
    r.complexity_features = std::move(features);
    r.confidence = confidence;
    quality::JudgeResult j;
    j.status = quality::JudgeStatus::kOk;
    j.delta = delta;
    j.agreement = true;
    r.judge = j;
    out.push_back(std::move(r));
  }
  return out;
}

TEST(Calibrate, WeightsRecordsByTheirSamplingProbability) {
  const std::vector<QualityRecord> records = sampledTraffic(30000, 41);
  CalibrateOptions o;
  o.holdout = 0.5;
  const Calibration weighted = calibrateOk(records, o);
  // The same records read as if every one had been recorded always: the estimate of the
  // sample, biased toward the escalations.
  std::vector<QualityRecord> unweighted = records;
  for (QualityRecord& r : unweighted) r.sampling_p = 1;
  const Calibration biased = calibrateOk(unweighted, o);
  EXPECT_NEAR(biased.heldout_positive_share, 0.67, 0.04);
  EXPECT_NEAR(weighted.heldout_positive_share, 0.31, 0.03);
  // The rule the cloud is better under (confidence < 0.3) escalates 30% of the traffic, not
  // the 80% of records it covers.
  EXPECT_NEAR(weighted.confidence_threshold, 0.3, 0.05);
  EXPECT_NEAR(weighted.chosen.cloud_share, 0.3, 0.04);
  EXPECT_GT(biased.chosen.cloud_share, 0.7);
  // The held-out rows stand for about 30000 / 2 requests.
  EXPECT_NEAR(weighted.heldout_weight, 15000, 1000);
  EXPECT_NE(quality::formatCalibration(weighted).find("each row by 1/sampling_p"),
            std::string::npos);
}

TEST(Calibrate, LabelsComeFromTheJudgeUnlessFeedbackIsAskedFor) {
  // The judge says the cloud is better where confidence < 0.4; the users say the opposite
  // everywhere. Feedback does not replace the judge unless asked to.
  std::vector<QualityRecord> records = synthesize(2000, 17, lowConfidence, 0);
  for (QualityRecord& r : records) {
    const bool judge_cloud = r.judge->delta > 0;
    // An escalation's feedback rates the cloud answer: the users call it bad where the judge
    // called it better, and good where the judge called it worse.
    r.feedback = quality::Feedback{r.request_id, r.team, judge_cloud ? -1.0 : 1.0, "", 0};
  }
  const Calibration judge = calibrateOk(records, CalibrateOptions{});
  EXPECT_EQ(judge.labels, quality::DeltaSource::kJudge);
  EXPECT_NEAR(judge.heldout_positive_share, 0.4, 0.05);
  EXPECT_NEAR(judge.confidence_threshold, 0.4, 0.05);
  CalibrateOptions o;
  o.labels = quality::DeltaSource::kFeedbackFirst;
  const Calibration users = calibrateOk(records, o);
  EXPECT_NEAR(users.heldout_positive_share, 0.6, 0.05);
  EXPECT_NE(quality::formatCalibration(users).find("the user's feedback where there is any"),
            std::string::npos);
}
