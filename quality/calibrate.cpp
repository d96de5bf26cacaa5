#include "quality/calibrate.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <utility>

namespace quality {
namespace {

using routers::ComplexityWeights;

struct FeatureField {
  std::string_view name;
  double ComplexityWeights::*weight;
};

// The complexity features in the order of routers/complexity.h (and of its YAML keys).
constexpr std::array<FeatureField, 10> kFeatures = {{
    {"length", &ComplexityWeights::length},
    {"turns", &ComplexityWeights::turns},
    {"code", &ComplexityWeights::code},
    {"math", &ComplexityWeights::math},
    {"reasoning", &ComplexityWeights::reasoning},
    {"output_length", &ComplexityWeights::output_length},
    {"tools", &ComplexityWeights::tools},
    {"images", &ComplexityWeights::images},
    {"non_latin", &ComplexityWeights::non_latin},
    {"structured_output", &ComplexityWeights::structured_output},
}};
constexpr size_t kNumFeatures = kFeatures.size();
constexpr size_t kNumConfidence = routers::kConfidenceFeatureFields.size();

// Bounds of ComplexityWeights::read: a feature only ever pushes toward the cloud. The same
// bounds hold the confidence fit, whose features are 1 − each confidence feature ("doubt").
constexpr double kMaxWeight = 20;
constexpr double kMaxAbsBias = 20;
// L2 penalty on the feature weights (not the bias), per row-averaged log loss. Small: it only
// has to keep a feature that separates the training rows perfectly from running to the bound,
// and to pull the weight of a feature that carries no signal to zero.
constexpr double kL2 = 1e-3;
// Decimals of the fitted weights and of the thresholds, as the snippets print them.
constexpr double kScale = 1e4;

// Cloud-share caps of the trade-off curve.
constexpr double kCurveShares[] = {0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1};

using Params = std::vector<double>;  // [0] is the bias, then one weight per feature
using Matrix = std::vector<Params>;

struct Row {
  std::array<double, kNumFeatures> x{};
  // The confidence features (routers/confidence.h), nullopt where the record has none.
  std::array<std::optional<double>, kNumConfidence> conf{};
  bool conf_complete = false;  // every confidence feature present
  bool conf_any = false;       // at least one present
  double confidence = 0;
  double delta = 0;
  bool label = false;
  double local_cost = 0;
  double cloud_cost = 0;
  double complexity = 0;  // with the fitted weights
  double w = 1;           // the record's weight, 1 / sampling_p
};

// A logistic regression's data: features in [0, 1], one row each, labels and row weights.
struct Design {
  std::vector<std::vector<double>> x;
  std::vector<bool> y;
  std::vector<double> w;
  size_t params() const { return x.empty() ? 1 : x[0].size() + 1; }
  double totalWeight() const {
    double t = 0;
    for (double v : w) t += v;
    return t > 0 ? t : 1;
  }
};

double logistic(double z) { return 1 / (1 + std::exp(-z)); }

// log(1 + e^z) without overflow.
double softplus(double z) { return z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z)); }

double margin(const Params& p, const std::vector<double>& x) {
  double z = p[0];
  for (size_t j = 0; j < x.size(); ++j) z += p[j + 1] * x[j];
  return z;
}

double lower(size_t j) { return j == 0 ? -kMaxAbsBias : 0; }
double upper(size_t j) { return j == 0 ? kMaxAbsBias : kMaxWeight; }

Params project(Params p) {
  for (size_t j = 0; j < p.size(); ++j) p[j] = std::clamp(p[j], lower(j), upper(j));
  return p;
}

// The regularised weighted mean log loss.
double objective(const Design& d, const Params& p) {
  double sum = 0;
  for (size_t i = 0; i < d.x.size(); ++i) {
    const double z = margin(p, d.x[i]);
    sum += d.w[i] * (softplus(z) - (d.y[i] ? z : 0));
  }
  double penalty = 0;
  for (size_t j = 1; j < p.size(); ++j) penalty += p[j] * p[j];
  return sum / d.totalWeight() + 0.5 * kL2 * penalty;
}

void gradientAndHessian(const Design& d, const Params& p, Params* g, Matrix* h) {
  const size_t k = p.size();
  g->assign(k, 0);
  h->assign(k, Params(k, 0));
  Params v(k, 0);
  v[0] = 1;
  for (size_t i = 0; i < d.x.size(); ++i) {
    const double q = logistic(margin(p, d.x[i]));
    const double e = d.w[i] * (q - (d.y[i] ? 1 : 0));
    const double w = d.w[i] * q * (1 - q);
    for (size_t j = 0; j + 1 < k; ++j) v[j + 1] = d.x[i][j];
    for (size_t a = 0; a < k; ++a) {
      (*g)[a] += e * v[a];
      for (size_t b = 0; b <= a; ++b) (*h)[a][b] += w * v[a] * v[b];
    }
  }
  const double n = d.totalWeight();
  for (size_t a = 0; a < k; ++a) {
    (*g)[a] /= n;
    for (size_t b = 0; b <= a; ++b) {
      (*h)[a][b] /= n;
      (*h)[b][a] = (*h)[a][b];
    }
    if (a > 0) {
      (*g)[a] += kL2 * p[a];
      (*h)[a][a] += kL2;
    }
  }
}

// Solves m·x = rhs over the indices in `free_idx` by Gaussian elimination with partial
// pivoting; false when the system is singular.
bool solve(const Matrix& m, const Params& rhs, const std::vector<size_t>& free_idx, Params* x) {
  const size_t k = free_idx.size();
  std::vector<std::vector<double>> a(k, std::vector<double>(k + 1));
  for (size_t i = 0; i < k; ++i) {
    for (size_t j = 0; j < k; ++j) a[i][j] = m[free_idx[i]][free_idx[j]];
    a[i][k] = rhs[free_idx[i]];
    a[i][i] += 1e-10;  // a saturated logistic leaves the bias' curvature at ~0
  }
  for (size_t c = 0; c < k; ++c) {
    size_t piv = c;
    for (size_t i = c + 1; i < k; ++i) {
      if (std::abs(a[i][c]) > std::abs(a[piv][c])) piv = i;
    }
    if (std::abs(a[piv][c]) < 1e-300) return false;
    std::swap(a[c], a[piv]);
    for (size_t i = c + 1; i < k; ++i) {
      const double f = a[i][c] / a[c][c];
      for (size_t j = c; j <= k; ++j) a[i][j] -= f * a[c][j];
    }
  }
  x->assign(rhs.size(), 0);
  for (size_t c = k; c-- > 0;) {
    double s = a[c][k];
    for (size_t j = c + 1; j < k; ++j) s -= a[c][j] * (*x)[free_idx[j]];
    (*x)[free_idx[c]] = s / a[c][c];
  }
  return true;
}

// Projected Newton with an Armijo search along the projection arc; the variables held at a
// bound by their gradient are left out of the Newton system. Falls back to a projected
// gradient step when the Newton step does not descend.
Params fitLogistic(const Design& d) {
  const size_t k = d.params();
  double positives = 0;
  for (size_t i = 0; i < d.y.size(); ++i) positives += d.y[i] ? d.w[i] : 0;
  const double base = (positives + 0.5) / (d.totalWeight() + 1);
  Params p(k, 0);
  p[0] = std::clamp(std::log(base / (1 - base)), -kMaxAbsBias, kMaxAbsBias);

  double f = objective(d, p);
  for (int iter = 0; iter < 100; ++iter) {
    Params g;
    Matrix h;
    gradientAndHessian(d, p, &g, &h);
    std::vector<size_t> free_idx;
    double pg = 0;  // the projected gradient's largest component
    for (size_t j = 0; j < k; ++j) {
      const bool held = (p[j] <= lower(j) && g[j] > 0) || (p[j] >= upper(j) && g[j] < 0);
      if (!held) {
        free_idx.push_back(j);
        pg = std::max(pg, std::abs(g[j]));
      }
    }
    if (pg < 1e-9) break;

    auto search = [&](const Params& dir) -> bool {
      for (double t = 1; t > 1e-12; t /= 2) {
        Params q = p;
        for (size_t j : free_idx) q[j] += t * dir[j];
        q = project(q);
        double decrease = 0;
        for (size_t j = 0; j < k; ++j) decrease += g[j] * (q[j] - p[j]);
        if (decrease >= 0) continue;
        const double fq = objective(d, q);
        if (fq <= f + 1e-4 * decrease) {
          const bool converged = f - fq < 1e-13 * (1 + std::abs(f));
          p = q;
          f = fq;
          return !converged;
        }
      }
      return false;
    };

    Params neg_g(k, 0);
    for (size_t j : free_idx) neg_g[j] = -g[j];
    Params step;
    if (solve(h, neg_g, free_idx, &step) && search(step)) continue;
    if (!search(neg_g)) break;
  }
  return p;
}

double roundTo(double v) { return std::round(v * kScale) / kScale; }

ComplexityWeights toWeights(const Params& p) {
  ComplexityWeights w;
  w.bias = std::clamp(roundTo(p[0]), -kMaxAbsBias, kMaxAbsBias);
  for (size_t j = 0; j < kNumFeatures; ++j) {
    w.*kFeatures[j].weight = std::clamp(roundTo(p[j + 1]), 0.0, kMaxWeight);
  }
  return w;
}

double score(const ComplexityWeights& w, const Row& r) {
  double z = w.bias;
  for (size_t j = 0; j < kNumFeatures; ++j) z += w.*kFeatures[j].weight * r.x[j];
  return logistic(z);
}

Design complexityDesign(const std::vector<Row>& rows) {
  Design d;
  for (const Row& r : rows) {
    d.x.emplace_back(r.x.begin(), r.x.end());
    d.y.push_back(r.label);
    d.w.push_back(r.w);
  }
  return d;
}

// The confidence weights (routers/confidence.h) fitted on the training rows that carry every
// confidence feature: the logistic regression of the label on 1 − each feature, whose weights
// (>= 0) normalised to sum 1 give a score that ranks rows as the regression does (the score is
// 1 − Σ w·(1 − f) / Σ w, monotone in its logit). nullopt, with the reason in `note`, when there
// are too few such rows, they are all one label, or no feature predicts the label.
std::optional<routers::ConfidenceConfig> fitConfidence(const std::vector<Row>& train,
                                                      size_t* rows_used, std::string* note) {
  Design d;
  size_t pos = 0;
  for (const Row& r : train) {
    if (!r.conf_complete) continue;
    std::vector<double> doubt;
    for (const std::optional<double>& f : r.conf) doubt.push_back(1 - std::clamp(*f, 0.0, 1.0));
    d.x.push_back(std::move(doubt));
    d.y.push_back(r.label);
    d.w.push_back(r.w);
    pos += r.label ? 1 : 0;
  }
  *rows_used = d.x.size();
  if (d.x.size() < kMinUsableRows || pos == 0 || pos == d.x.size()) {
    *note = std::to_string(d.x.size()) + " training rows carry every confidence feature (" +
            std::to_string(pos) + " where the cloud was better); the fit needs " +
            std::to_string(kMinUsableRows) + " with both labels";
    return std::nullopt;
  }
  const Params p = fitLogistic(d);
  double sum = 0;
  for (size_t j = 1; j < p.size(); ++j) sum += p[j];
  if (!(sum > 1e-6)) {
    *note = "no confidence feature predicts where the cloud is better on the " +
            std::to_string(d.x.size()) + " training rows that carry them";
    return std::nullopt;
  }
  routers::ConfidenceConfig c;
  for (size_t j = 0; j < kNumConfidence; ++j) {
    c.*routers::kConfidenceFeatureFields[j].weight = roundTo(p[j + 1] / sum);
  }
  return c;
}

// The row's confidence under `c`, from its features; its recorded confidence when it has none
// (a record made before the confidence features existed).
double confidenceOf(const routers::ConfidenceConfig& c, const Row& r) {
  if (!r.conf_any) return r.confidence;
  return routers::confidenceScore(c, r.conf).value_or(r.confidence);
}

// ---- operating points ---------------------------------------------------------------------

// Every sum is over the rows' weights (1 / sampling_p): a row stands for weight requests.
struct Counts {
  double n = 0, pos = 0, esc = 0, esc_pos = 0;
  double kept_loss = 0;       // Σ w·max(0, delta) over rows kept local
  double local_cost = 0;      // Σ w·local cost over all rows
  double esc_cloud_cost = 0;  // Σ w·cloud cost over escalated rows

  double correct() const { return esc_pos + (n - esc) - (pos - esc_pos); }
  double share() const { return n > 0 ? esc / n : 0; }
  double loss() const { return n > 0 ? kept_loss / n : 0; }
  double cost() const { return n > 0 ? (local_cost + esc_cloud_cost) / n : 0; }
};

// Weighted sums of different rows, compared: equal within rounding.
constexpr double kSumEps = 1e-9;

struct Point {
  double tc = 1, tf = 0;
  Counts counts;
};

bool escalates(const Row& r, double tc, double tf) {
  return r.complexity > tc || r.confidence < tf;
}

Counts evaluate(const std::vector<Row>& rows, double tc, double tf) {
  Counts c;
  for (const Row& r : rows) {
    c.n += r.w;
    c.pos += r.label ? r.w : 0;
    c.local_cost += r.w * r.local_cost;
    if (escalates(r, tc, tf)) {
      c.esc += r.w;
      c.esc_pos += r.label ? r.w : 0;
      c.esc_cloud_cost += r.w * r.cloud_cost;
    } else {
      c.kept_loss += r.w * std::max(0.0, r.delta);
    }
  }
  return c;
}

TradeoffRow toTradeoff(double tc, double tf, const Counts& c) {
  TradeoffRow t;
  t.complexity_threshold = tc;
  t.confidence_threshold = tf;
  t.cloud_share = c.share();
  t.cost_per_1k_usd = 1000 * c.cost();
  t.quality_loss = c.loss();
  t.precision = c.esc > 0 ? c.esc_pos / c.esc : 0;
  t.recall = c.pos > 0 ? c.esc_pos / c.pos : 0;
  return t;
}

// Thresholds to try: every 0.01 in [0, 1] and the percentiles of `values`, at four decimals.
std::vector<double> thresholdGrid(std::vector<double> values) {
  std::vector<double> grid;
  for (int k = 0; k <= 100; ++k) grid.push_back(k / 100.0);
  std::sort(values.begin(), values.end());
  if (!values.empty()) {
    for (size_t q = 1; q < 100; ++q) {
      const double v = values[q * (values.size() - 1) / 100];
      grid.push_back(std::clamp(roundTo(v), 0.0, 1.0));
    }
  }
  std::sort(grid.begin(), grid.end());
  grid.erase(std::unique(grid.begin(), grid.end()), grid.end());
  return grid;
}

// Every (Tc, Tf) of the grids on `rows`. Tc runs from high to low and Tf from low to high, so
// that among rules that split the rows alike the one that escalates least eagerly comes first.
std::vector<Point> sweep(const std::vector<Row>& rows, const std::vector<double>& tcs,
                         const std::vector<double>& tfs) {
  std::vector<size_t> by_conf(rows.size());
  for (size_t i = 0; i < by_conf.size(); ++i) by_conf[i] = i;
  std::stable_sort(by_conf.begin(), by_conf.end(),
                   [&](size_t a, size_t b) { return rows[a].confidence < rows[b].confidence; });
  std::vector<Point> points;
  points.reserve(tcs.size() * tfs.size());
  for (auto tc = tcs.rbegin(); tc != tcs.rend(); ++tc) {
    Counts c = evaluate(rows, *tc, 0);
    size_t next = 0;
    for (double tf : tfs) {
      for (; next < by_conf.size() && rows[by_conf[next]].confidence < tf; ++next) {
        const Row& r = rows[by_conf[next]];
        if (r.complexity > *tc) continue;  // already escalated by complexity
        c.esc += r.w;
        c.esc_pos += r.label ? r.w : 0;
        c.esc_cloud_cost += r.w * r.cloud_cost;
        c.kept_loss -= r.w * std::max(0.0, r.delta);
      }
      points.push_back(Point{*tc, tf, c});
    }
  }
  return points;
}

// The least kept loss with at most `share` escalated; ties: fewer escalations, lower cost.
const Point* leastLoss(const std::vector<Point>& points, double share) {
  const Point* best = nullptr;
  for (const Point& p : points) {
    if (p.counts.share() > share + 1e-12) continue;
    if (best == nullptr) {
      best = &p;
      continue;
    }
    const Counts& a = p.counts;
    const Counts& b = best->counts;
    // Compare sums, not means: the rows are the same, and sums of the same terms in a
    // different order may differ in the last bit.
    if (a.kept_loss < b.kept_loss - 1e-9 ||
        (std::abs(a.kept_loss - b.kept_loss) <= 1e-9 &&
         (a.esc < b.esc - kSumEps ||
          (std::abs(a.esc - b.esc) <= kSumEps && a.esc_cloud_cost < b.esc_cloud_cost - 1e-12)))) {
      best = &p;
    }
  }
  return best;
}

// The fewest escalations with a mean loss of at most `loss`; ties: lower loss, lower cost.
const Point* leastShare(const std::vector<Point>& points, double loss) {
  const Point* best = nullptr;
  for (const Point& p : points) {
    if (p.counts.loss() > loss + 1e-12) continue;
    if (best == nullptr) {
      best = &p;
      continue;
    }
    const Counts& a = p.counts;
    const Counts& b = best->counts;
    if (a.esc < b.esc - kSumEps ||
        (std::abs(a.esc - b.esc) <= kSumEps &&
         (a.kept_loss < b.kept_loss - 1e-9 || (std::abs(a.kept_loss - b.kept_loss) <= 1e-9 &&
                                               a.esc_cloud_cost < b.esc_cloud_cost - 1e-12)))) {
      best = &p;
    }
  }
  return best;
}

// The most rows labelled right; ties: fewer escalations, lower loss.
const Point* mostAccurate(const std::vector<Point>& points) {
  const Point* best = nullptr;
  for (const Point& p : points) {
    if (best == nullptr) {
      best = &p;
      continue;
    }
    const Counts& a = p.counts;
    const Counts& b = best->counts;
    if (a.correct() > b.correct() + kSumEps ||
        (std::abs(a.correct() - b.correct()) <= kSumEps &&
         (a.esc < b.esc - kSumEps ||
          (std::abs(a.esc - b.esc) <= kSumEps && a.kept_loss < b.kept_loss - 1e-9)))) {
      best = &p;
    }
  }
  return best;
}

// A scored row: its score, its label and its weight.
struct Scored {
  double score;
  bool label;
  double w;
};

// Area under the ROC curve of `score` for `label`, each row counting its weight: the weighted
// share of (positive, negative) pairs the score orders right (ties count half); NaN with one
// class only.
double auc(std::vector<Scored> scored) {
  std::sort(scored.begin(), scored.end(),
            [](const Scored& a, const Scored& b) { return a.score < b.score; });
  double pos = 0, neg = 0, right = 0;  // right: Σ w_pos · (negative weight below it)
  for (size_t i = 0; i < scored.size();) {
    size_t j = i;
    double group_pos = 0, group_neg = 0;
    for (; j < scored.size() && scored[j].score == scored[i].score; ++j) {
      (scored[j].label ? group_pos : group_neg) += scored[j].w;
    }
    right += group_pos * (neg + group_neg / 2);
    pos += group_pos;
    neg += group_neg;
    i = j;
  }
  if (!(pos > 0) || !(neg > 0)) return std::numeric_limits<double>::quiet_NaN();
  return right / (pos * neg);
}

// ---- text ----------------------------------------------------------------------------------

// `v` with at most `decimals` decimals, trailing zeros dropped ("0.4", "-3.25", "20").
std::string num(double v, int decimals = 4) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  std::string s = buf;
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s;
}

std::string triggerText(double tc, double tf) {
  const bool by_complexity = tc < 1;
  const bool by_confidence = tf > 0;
  if (by_complexity && by_confidence) {
    return "complexity > " + num(tc) + " OR confidence < " + num(tf);
  }
  if (by_complexity) return "complexity > " + num(tc);
  if (by_confidence) return "confidence < " + num(tf);
  return "false";
}

std::string percent(double share) { return num(100 * share, 1) + "%"; }

std::string orNa(double v, int decimals) { return std::isnan(v) ? "n/a" : num(v, decimals); }

std::string policiesSnippet(const Calibration& c, const std::string& label) {
  const TradeoffRow& t = c.chosen;
  std::string s;
  s += "# Calibrated on " + std::to_string(c.train_rows) + " quality records (" +
       std::to_string(c.test_rows) + " more held out, " + std::to_string(c.skipped_rows) +
       " unusable).\n";
  s += "# Label: " + label + ". Objective: " + c.objective + ".\n";
  s += "# Held out: cloud share " + percent(t.cloud_share) + ", quality loss " +
       num(t.quality_loss) + ", " + num(t.cost_per_1k_usd) + " USD per 1k requests,\n";
  s += "# accuracy " + num(c.heldout_accuracy, 3) + ", precision " + num(t.precision, 3) +
       ", recall " + num(t.recall, 3) + ".\n";
  s += "# The thresholds hold only with the router.complexity (and, when fitted, confidence)\n";
  s += "# weights fitted with them (the switchyard.yaml snippet beside this one). Paste under\n";
  s += "# `defaults:` or a team.\n";
  s += "routing:\n";
  s += "  trigger: \"" + c.trigger + "\"\n";
  return s;
}

// "bias -1.96; code 2.59, length 0.3 (the others 0)": the weights that matter, largest first,
// at two decimals.
std::string weightsSummary(const ComplexityWeights& w) {
  std::vector<std::pair<double, std::string_view>> used;
  for (const FeatureField& f : kFeatures) {
    if (w.*f.weight >= 0.005) used.emplace_back(w.*f.weight, f.name);
  }
  std::stable_sort(used.begin(), used.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  std::string s = "bias " + num(w.bias, 2);
  for (size_t i = 0; i < used.size(); ++i) {
    s += i == 0 ? "; " : ", ";
    s += used[i].second;
    s += " " + num(used[i].first, 2);
  }
  if (used.size() < kFeatures.size()) s += used.empty() ? "; every feature 0" : " (the others 0)";
  return s;
}

// "top1_tail 0.41, margin 0.33, top1 0.26 (the others 0)": largest first, at two decimals.
std::string confidenceSummary(const routers::ConfidenceConfig& c) {
  std::vector<std::pair<double, std::string_view>> used;
  for (const routers::ConfidenceFeatureField& f : routers::kConfidenceFeatureFields) {
    if (c.*f.weight >= 0.005) used.emplace_back(c.*f.weight, f.name);
  }
  std::stable_sort(used.begin(), used.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  std::string s;
  for (size_t i = 0; i < used.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::string(used[i].second) + " " + num(used[i].first, 2);
  }
  if (used.size() < routers::kConfidenceFeatureFields.size()) s += " (the others 0)";
  return s;
}

std::string routerSnippet(const Calibration& c) {
  std::string s;
  s += "# Complexity weights fitted on " + std::to_string(c.train_rows) +
       " quality records (L2-regularised logistic regression\n";
  s += "# of \"cloud better\" on the features); held-out AUC " + orNa(c.heldout_auc, 3) + ".\n";
  s += "# Replace router.complexity of switchyard.yaml with it: the calibrated trigger's\n";
  s += "# complexity threshold assumes these weights.\n";
  if (c.confidence) {
    s += "# Confidence weights fitted on the " + std::to_string(c.confidence_fit_rows) +
         " of them that carry the confidence features (the same\n";
    s += "# regression on 1 - each feature, normalised to sum 1); held-out AUC of low confidence " +
         orNa(c.heldout_confidence_auc, 3) + ".\n";
    s += "# Merge them into router.confidence, keeping the tail_fraction and entropy_scale the\n";
    s += "# records were scored with; the calibrated confidence threshold assumes these weights.\n";
  } else {
    s += "# Confidence weights not fitted: " + c.confidence_note + ".\n";
  }
  s += "router:\n";
  s += "  complexity:\n";
  s += "    bias: " + num(c.weights.bias) + "\n";
  for (const FeatureField& f : kFeatures) {
    s += "    ";
    s += f.name;
    s += ": " + num(c.weights.*f.weight) + "\n";
  }
  if (c.confidence) {
    s += "  confidence:\n";
    for (const routers::ConfidenceFeatureField& f : routers::kConfidenceFeatureFields) {
      s += "    w_";
      s += f.name;
      s += ": " + num(c.confidence.value().*f.weight) + "\n";
    }
  }
  return s;
}

std::string pad(std::string s, size_t width) {
  if (s.size() < width) s.insert(0, width - s.size(), ' ');
  return s;
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string tableRow(std::string_view mark, const TradeoffRow& t) {
  std::string s(mark);
  s += pad(t.complexity_threshold >= 1 ? "-" : num(t.complexity_threshold), 12);
  s += pad(t.confidence_threshold <= 0 ? "-" : num(t.confidence_threshold), 14);
  s += pad(fixed(100 * t.cloud_share, 1) + "%", 13);
  s += pad(fixed(t.cost_per_1k_usd, 4), 13);
  s += pad(fixed(t.quality_loss, 4), 14);
  s += pad(fixed(t.precision, 3), 11);
  s += pad(fixed(t.recall, 3), 8);
  return s + "\n";
}

}  // namespace

bool isHeldOut(std::string_view request_id, double holdout, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ull ^ (seed * 0x9e3779b97f4a7c15ull);
  for (unsigned char ch : request_id) {
    h ^= ch;
    h *= 0x100000001b3ull;
  }
  // splitmix64's finaliser, so that every bit of the result depends on every input byte.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  const double u = static_cast<double>(h >> 11) / static_cast<double>(uint64_t{1} << 53);
  return u < holdout;
}

api::StatusOr<Calibration> calibrate(const std::vector<QualityRecord>& records,
                                     const CalibrateOptions& o) {
  if (o.target_cloud_share && o.target_quality_loss) {
    return api::invalidRequest(
        "set at most one of target_cloud_share and target_quality_loss, not both");
  }
  if (o.target_cloud_share && !(*o.target_cloud_share >= 0 && *o.target_cloud_share <= 1)) {
    return api::invalidRequest("target_cloud_share must be in [0, 1], got " +
                               num(*o.target_cloud_share));
  }
  if (o.target_quality_loss && !(*o.target_quality_loss >= 0)) {
    return api::invalidRequest("target_quality_loss must be >= 0, got " +
                               num(*o.target_quality_loss));
  }
  if (!(o.win_margin >= -1 && o.win_margin < 1)) {
    return api::invalidRequest("win_margin must be in [-1, 1), got " + num(o.win_margin));
  }
  if (!(o.holdout > 0 && o.holdout < 1)) {
    return api::invalidRequest("holdout must be in (0, 1), got " + num(o.holdout));
  }

  Calibration c;
  std::vector<Row> train, test;
  for (const QualityRecord& r : records) {
    const std::optional<double> delta = r.delta(o.labels);
    if (!delta || std::isnan(*delta) || !r.confidence || std::isnan(*r.confidence) ||
        r.complexity_features.empty() || !r.local.complete) {
      ++c.skipped_rows;
      continue;
    }
    Row row;
    for (size_t j = 0; j < kNumFeatures; ++j) {
      const std::optional<double> v = r.complexityFeature(kFeatures[j].name);
      // An absent feature (an older scorer) or a broken value contributes nothing.
      row.x[j] = v && !std::isnan(*v) ? std::clamp(*v, 0.0, 1.0) : 0;
    }
    for (size_t j = 0; j < kNumConfidence; ++j) {
      const std::optional<double> v =
          r.confidenceFeature(routers::kConfidenceFeatureFields[j].name);
      if (v && std::isfinite(*v)) row.conf[j] = std::clamp(*v, 0.0, 1.0);
    }
    row.conf_complete = std::all_of(row.conf.begin(), row.conf.end(),
                                    [](const std::optional<double>& v) { return v.has_value(); });
    row.conf_any = std::any_of(row.conf.begin(), row.conf.end(),
                               [](const std::optional<double>& v) { return v.has_value(); });
    row.confidence = *r.confidence;
    row.delta = *delta;
    row.label = *delta > o.win_margin;
    row.local_cost = std::isfinite(r.local.cost_usd) ? r.local.cost_usd : 0;
    row.cloud_cost = std::isfinite(r.cloud.cost_usd) ? r.cloud.cost_usd : 0;
    row.w = r.weight();
    // A record without a request id (none should lack one) is split by its row id instead.
    const std::string key = r.request_id.empty() ? "#" + std::to_string(r.id) : r.request_id;
    (isHeldOut(key, o.holdout, o.seed) ? test : train).push_back(row);
  }
  c.train_rows = train.size();
  c.test_rows = test.size();
  const size_t usable = train.size() + test.size();
  if (usable < kMinUsableRows) {
    return api::invalidRequest(
        "too few usable quality records to calibrate: " + std::to_string(usable) + " of " +
        std::to_string(records.size()) + " have a delta, complexity features, a confidence and a complete draft (" +
        std::to_string(c.skipped_rows) + " skipped); need at least " +
        std::to_string(kMinUsableRows));
  }
  if (test.empty()) {
    return api::invalidRequest("no usable record fell in the held-out share (" + num(o.holdout) +
                               ") of " + std::to_string(usable) + "; raise holdout or add records");
  }
  size_t train_pos = 0;
  for (const Row& r : train) train_pos += r.label ? 1 : 0;
  if (train_pos == 0 || train_pos == train.size()) {
    return api::invalidRequest("the training rows are all one label: " + std::to_string(train_pos) +
                               " where the cloud was better (delta > " + num(o.win_margin) +
                               ") and " + std::to_string(train.size() - train_pos) +
                               " where it was not, of " + std::to_string(train.size()) +
                               " training rows (" + std::to_string(test.size()) +
                               " held out); calibration needs both");
  }

  // 1. The complexity and confidence weights, on the training rows; every row's confidence is
  // then the one the fitted weights give it.
  c.weights = toWeights(fitLogistic(complexityDesign(train)));
  c.confidence = fitConfidence(train, &c.confidence_fit_rows, &c.confidence_note);
  for (std::vector<Row>* rows : {&train, &test}) {
    for (Row& r : *rows) {
      r.complexity = score(c.weights, r);
      if (c.confidence) r.confidence = confidenceOf(*c.confidence, r);
    }
  }

  // 2. The thresholds, on the training rows.
  std::vector<double> scores, confidences;
  for (const Row& r : train) {
    scores.push_back(r.complexity);
    confidences.push_back(r.confidence);
  }
  const std::vector<Point> points =
      sweep(train, thresholdGrid(std::move(scores)), thresholdGrid(std::move(confidences)));
  const Point* best = nullptr;
  if (o.target_cloud_share) {
    best = leastLoss(points, *o.target_cloud_share);
    c.objective = "least quality loss with cloud share <= " + percent(*o.target_cloud_share);
  } else if (o.target_quality_loss) {
    best = leastShare(points, *o.target_quality_loss);
    c.objective = "least cloud share with quality loss <= " + num(*o.target_quality_loss);
  } else {
    best = mostAccurate(points);
    c.objective = "best accuracy at predicting where the cloud is better";
  }
  // The grid holds "never escalate" (share 0) and "always escalate" (loss 0), so every
  // target is met by some point.
  if (best == nullptr) return api::Status(api::ErrorCode::kInternal, "no operating point");
  c.complexity_threshold = best->tc;
  c.confidence_threshold = best->tf;
  c.trigger = triggerText(best->tc, best->tf);

  // 3. Every reported number, on the held-out rows.
  const Counts held = evaluate(test, best->tc, best->tf);
  c.chosen = toTradeoff(best->tc, best->tf, held);
  c.heldout_accuracy = held.correct() / held.n;
  c.heldout_positive_share = held.pos / held.n;
  c.heldout_weight = held.n;
  for (const Row& r : train) c.train_weight += r.w;
  std::vector<Scored> by_complexity, by_confidence;
  for (const Row& r : test) {
    by_complexity.push_back({r.complexity, r.label, r.w});
    by_confidence.push_back({1 - r.confidence, r.label, r.w});
  }
  c.heldout_auc = auc(std::move(by_complexity));
  c.heldout_confidence_auc = auc(std::move(by_confidence));

  std::vector<std::pair<double, double>> rules;
  for (double cap : kCurveShares) {
    const Point* p = leastLoss(points, cap);
    if (p == nullptr) continue;
    const std::pair<double, double> rule{p->tc, p->tf};
    if (std::find(rules.begin(), rules.end(), rule) != rules.end()) continue;
    rules.push_back(rule);
    c.curve.push_back(toTradeoff(p->tc, p->tf, evaluate(test, p->tc, p->tf)));
  }
  std::stable_sort(c.curve.begin(), c.curve.end(), [](const TradeoffRow& a, const TradeoffRow& b) {
    return a.cloud_share < b.cloud_share;
  });

  c.labels = o.labels;
  const std::string label =
      std::string(o.labels == DeltaSource::kJudge ? "judge" : "user feedback, else judge") +
      " says cloud better when delta > " + num(o.win_margin);
  c.policies_snippet = policiesSnippet(c, label);
  c.router_snippet = routerSnippet(c);
  return c;
}

std::string formatCalibration(const Calibration& c) {
  std::string s;
  s += "Router calibration\n";
  s += "  rows:      " + std::to_string(c.train_rows) + " training, " +
       std::to_string(c.test_rows) + " held out, " + std::to_string(c.skipped_rows) +
       " skipped (no delta, complexity features or confidence)\n";
  s += "  labels:    " +
       std::string(c.labels == DeltaSource::kJudge
                       ? "the judge's verdict (user feedback is not used)"
                       : "the user's feedback where there is any, else the judge's verdict") +
       "\n";
  s += "  weighting: each row by 1/sampling_p; the training rows stand for " +
       num(c.train_weight, 1) + " requests, the held-out rows for " + num(c.heldout_weight, 1) +
       "\n";
  s += "  objective: " + c.objective + " (searched on the training rows)\n";
  s += "  trigger:   " + c.trigger + "\n";
  s += "  weights:   " + weightsSummary(c.weights) + "\n";
  s += "  confidence weights: " +
       (c.confidence ? confidenceSummary(*c.confidence) + " (fitted on " +
                           std::to_string(c.confidence_fit_rows) + " training rows)"
                     : "not fitted: " + c.confidence_note + "; the recorded confidences are used") +
       "\n";
  s += "\n";
  s += "Measured on the " + std::to_string(c.test_rows) +
       " held-out rows only (weighted by 1/sampling_p); none of them was used to fit the "
       "weights or choose the rule.\n";
  s += "  cloud better on " + percent(c.heldout_positive_share) +
       " of them; accuracy of the rule " + num(c.heldout_accuracy, 3) +
       "; AUC of the complexity score " + orNa(c.heldout_auc, 3) + ", of low confidence " +
       orNa(c.heldout_confidence_auc, 3) + "\n";
  s += "\n";
  s += "          complexity >  confidence <  cloud share  cost/1k USD  quality loss  precision"
       "  recall\n";
  s += tableRow("  chosen  ", c.chosen);
  for (const TradeoffRow& t : c.curve) s += tableRow("          ", t);
  s += "  (\"-\": that side of the rule never escalates)\n";
  return s;
}

}  // namespace quality
