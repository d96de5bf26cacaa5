// Router calibration: fits the complexity weights, the confidence weights and a team trigger
//
//     escalate ⇔ complexity > Tc OR confidence < Tf
//
// to quality records, so that the cascade escalates where the cloud answer was actually better.
//
// Every row counts with its record's weight 1 / sampling_p (QualityRecord::weight()): shadow
// samples stand for the share of local answers they were drawn from, so that the fit and every
// number reported are estimates over the traffic, not over the sample. The log loss, the grid
// search's sums and the AUC are all weighted; row counts and the "all one label" check are raw.
//
// A record is usable when it has a delta (QualityRecord::delta(o.labels): the judge's verdict
// unless CalibrateOptions::labels says to prefer user feedback), complexity features, a
// confidence and a complete local draft (one cut short by the escalation would be compared
// with a whole cloud answer, which always looks better); its label is "cloud better": delta >
// win_margin. The usable rows are split by a hash of request_id and the seed into training rows and
// held-out rows (isHeldOut below). On the training rows only:
//   1. the complexity weights are fitted as an L2-regularised logistic regression of the label
//      on the complexity features, with the bounds ComplexityWeights::read enforces (every
//      weight in [0, 20], the bias in [-20, 20]), by projected Newton steps from a fixed start:
//      deterministic. The weights are rounded to the four decimals the snippet prints, so the
//      scores searched below are the ones the router will compute from that snippet;
//   1b. the confidence weights (routers/confidence.h) likewise, on the training rows that carry
//      all six confidence features: the logistic regression of the label on 1 − each feature
//      (weights >= 0: more confidence never argues for the cloud), normalised to sum 1 and
//      rounded to four decimals. The confidence score is linear in its features, so the fitted
//      score ranks rows as the regression does. Every row's confidence is then recomputed from
//      its features with these weights, as the router will compute it (a row without the
//      features, recorded before they existed, keeps its recorded confidence). Skipped, with
//      the recorded confidences used as they are, when fewer than kMinUsableRows training rows
//      carry the features, they are all one label, or no feature predicts the label;
//   2. (Tc, Tf) is chosen by a grid search over the thresholds (each training score and
//      confidence quantile, and 0.01 steps, at four decimals) with the fitted complexity:
//        target_cloud_share   → the least quality loss with cloud share <= target;
//        target_quality_loss  → the least cloud share with quality loss <= target;
//        neither              → the best accuracy at predicting the label.
// Every number reported (chosen, curve, AUC, accuracy) is then measured on the held-out rows,
// which took no part in either step.
//
// Definitions, over a set of rows, each row counting its weight (so "rows" is a sum of weights):
//   cloud share      escalated rows / rows.
//   quality loss     Σ max(0, delta) over the rows the rule keeps local, / all rows: the mean
//                    per-request loss against always asking the cloud.
//   cost per 1k      1000 × mean of (local cost, plus the cloud cost when escalated): a cascade
//                    pays for the local draft either way.
//   precision        escalated rows the cloud won / escalated rows (0 when none escalated).
//   recall           escalated rows the cloud won / rows the cloud won (0 when it won none).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"
#include "quality/record.h"
#include "routers/complexity.h"
#include "routers/confidence.h"

namespace quality {

struct CalibrateOptions {
  std::optional<double> target_cloud_share;   // in [0, 1], e.g. 0.2
  std::optional<double> target_quality_loss;  // >= 0, e.g. 0.02; at most one of the two
  double win_margin = 0;                      // cloud better ⇔ delta > win_margin; in [-1, 1)
  double holdout = 0.25;                      // share of usable rows held out, in (0, 1)
  uint64_t seed = 1;                          // of the held-out split
  // Where a row's delta (and so its label) comes from: the judge (default), or the user's
  // feedback where there is any, else the judge (QualityRecord::delta).
  DeltaSource labels = DeltaSource::kJudge;
};

// One operating point (Tc, Tf) and what it did.
struct TradeoffRow {
  double complexity_threshold = 1;  // Tc; 1 = complexity never escalates
  double confidence_threshold = 0;  // Tf; 0 = confidence never escalates
  double cloud_share = 0;
  double cost_per_1k_usd = 0;
  double quality_loss = 0;
  double precision = 0;
  double recall = 0;
};

struct Calibration {
  routers::ComplexityWeights weights;  // fitted on the training rows
  // The confidence weights fitted on the training rows (1b above; the other settings are the
  // defaults and not fitted); nullopt when not fitted, with the reason in confidence_note.
  std::optional<routers::ConfidenceConfig> confidence;
  size_t confidence_fit_rows = 0;  // training rows that carry every confidence feature
  std::string confidence_note;
  double complexity_threshold = 1, confidence_threshold = 0;
  std::string trigger;    // the rule as a trigger expression (policies/trigger.h)
  std::string objective;  // what the grid search optimised, in words
  size_t train_rows = 0, test_rows = 0, skipped_rows = 0;
  double train_weight = 0, heldout_weight = 0;  // Σ 1/sampling_p of the training (held-out) rows
  DeltaSource labels = DeltaSource::kJudge;
  double heldout_positive_share = 0;  // held-out rows where the cloud was better
  double heldout_auc = 0;             // of the fitted complexity score
  double heldout_confidence_auc = 0;  // of 1 - confidence (fitted when fitted), for comparison
  double heldout_accuracy = 0;        // of the chosen rule
  TradeoffRow chosen;                 // evaluated on the held-out rows
  // Held out as well: the rule the same search picks for a range of cloud-share caps, ordered
  // from low to high held-out cloud share, identical rules once.
  std::vector<TradeoffRow> curve;
  // For policies.yaml: `routing: trigger: "..."` (to paste under `defaults:` or a team), with a
  // comment block saying how it was fitted.
  std::string policies_snippet;
  // For switchyard.yaml: `router: complexity: {...}`, the weights Tc was chosen with, and
  // `confidence: {w_top1: ..., ...}`, the weights Tf was chosen with, when fitted.
  std::string router_snippet;
};

// Fails with kInvalidRequest: both targets set, an option out of range, fewer than
// kMinUsableRows usable rows, no held-out row, or training rows that are all one label (the
// message gives the counts).
api::StatusOr<Calibration> calibrate(const std::vector<QualityRecord>& records,
                                     const CalibrateOptions& o);

inline constexpr size_t kMinUsableRows = 20;

// Whether the row of `request_id` is held out for `holdout` and `seed`: a hash of both, read as
// a uniform number in [0, 1), is below `holdout`. The same request is on the same side every
// run with the same seed.
bool isHeldOut(std::string_view request_id, double holdout, uint64_t seed);

// The human-readable summary the CLI prints: rows, objective, chosen rule, held-out metrics,
// the trade-off table and the fitted weights. Ends with a newline.
std::string formatCalibration(const Calibration& c);

}  // namespace quality
