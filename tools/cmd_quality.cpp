// switchyard-cli export, calibrate and report: what the quality store and the ledger are for.
//
//   export sft|dpo     fine-tuning data from the quality records (JSONL)
//   calibrate          complexity weights and trigger thresholds fitted on the records
//   report quality     one HTML file: wins/losses by score bucket, trade-off, worst losses
//   report cost        one HTML file: spend by team/model/route, burn-down, savings
//
// Stores are opened read-only, so they may be read while the gateway runs. --store and --ledger
// take a file or a postgresql:// URL (the store or ledger that replicas share: the whole
// cluster's records and rows).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "gateway/config.h"
#include "policies/ledger_reader.h"
#include "quality/calibrate.h"
#include "quality/export.h"
#include "quality/report.h"
#include "quality/store.h"
#include "tools/cli.h"
#include "tools/options.h"

namespace {

using tools::Options;

int usageError(const char* cmd, const std::string& message) {
  std::fprintf(stderr, "%s: %s (see --help)\n", cmd, message.c_str());
  return 2;
}

int failure(const char* cmd, const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", cmd, message.c_str());
  return 1;
}

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The records of --store matching --team/--since/--until.
api::StatusOr<std::vector<quality::QualityRecord>> readRecords(const Options& o) {
  auto path = o.get("store");
  if (!path) {
    return api::Status(api::ErrorCode::kInvalidRequest,
                       "--store is required (the quality store, e.g. data/quality.db or "
                       "postgresql://host/db)");
  }
  auto store = quality::QualityStore::open(*path, /*read_only=*/true);
  if (!store.ok()) return store.status();
  quality::RecordFilter f;
  if (auto t = o.get("team")) f.team = *t;
  auto since = o.time("since");
  if (!since.ok()) return since.status();
  auto until = o.time("until");
  if (!until.ok()) return until.status();
  f.since_ms = *since;
  f.until_ms = *until;
  return (*store)->query(f);
}

// --labels judge|feedback-first: where a record's delta comes from (QualityRecord::delta).
api::StatusOr<quality::DeltaSource> labelsOption(const Options& o) {
  auto v = o.get("labels");
  if (!v || *v == "judge") return quality::DeltaSource::kJudge;
  if (*v == "feedback-first") return quality::DeltaSource::kFeedbackFirst;
  return api::Status(api::ErrorCode::kInvalidRequest,
                     "--labels must be judge or feedback-first, got '" + *v + "'");
}

// Writes to --out, or stdout without it.
int writeOut(const char* cmd, const Options& o, const std::string& text) {
  auto out = o.get("out");
  if (!out || *out == "-") {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
  }
  std::ofstream f(*out, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) return failure(cmd, "cannot write '" + *out + "'");
  return 0;
}

// ---- export ----------------------------------------------------------------------------------

int runExport(int argc, char** argv) {
  const char* cmd = "export";
  if (argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::printf(
        "usage: switchyard-cli export sft|dpo --store FILE|URL [options]\n\n"
        "Writes fine-tuning data from the quality records as JSONL.\n"
        "  sft   prompts where the cloud answer won, with it as the assistant target\n"
        "        (OpenAI chat fine-tuning format: {\"messages\": [...]})\n"
        "  dpo   preference pairs {\"prompt\", \"chosen\", \"rejected\"} as TRL's DPOTrainer\n"
        "        reads them (conversational format)\n\n"
        "  --store FILE|URL       the quality store (quality.path or quality.url)\n"
        "  --out FILE             where to write (default stdout)\n"
        "  --team NAME            only this team's records\n"
        "  --since T, --until T   time range [since, until): YYYY-MM-DD, ...THH:MM:SSZ, or ms\n"
        "  --min-delta X          sft: delta >= X; dpo: |delta| >= X (delta in [-1, 1])\n"
        "  --require-agreement    only records whose judge agreed in both answer orders\n"
        "  --labels judge|feedback-first\n"
        "                         the delta from the judge (default), or from user feedback\n"
        "                         where there is any, else the judge\n"
        "  --no-sampling-p        leave out each line's \"sampling_p\" field\n"
        "  --no-dedup             keep near-identical prompts\n"
        "  --dedup-distance N     SimHash bits at or below which prompts are near-identical (3)\n"
        "  --include-partial      dpo: allow local drafts cut short as 'rejected'\n");
    return 0;
  }
  auto o = Options::parse(
      argc, argv,
      {"store", "out", "team", "since", "until", "min-delta", "dedup-distance", "labels"},
      {"require-agreement", "no-dedup", "include-partial", "no-sampling-p"});
  if (!o.ok()) return usageError(cmd, o.status().message());
  if (o->positional().size() != 1 || (o->positional()[0] != "sft" && o->positional()[0] != "dpo")) {
    return usageError(cmd, "say what to export: sft or dpo");
  }
  quality::ExportFilter f;
  auto min_delta = o->number("min-delta", -1, 1);
  if (!min_delta.ok()) return usageError(cmd, min_delta.status().message());
  if (*min_delta) f.min_delta = **min_delta;
  auto distance = o->number("dedup-distance", 0, 64);
  if (!distance.ok()) return usageError(cmd, distance.status().message());
  if (*distance) f.dedup_max_distance = static_cast<int>(**distance);
  f.require_agreement = o->flag("require-agreement");
  f.dedup = !o->flag("no-dedup");
  f.include_partial = o->flag("include-partial");
  f.sampling_p_field = !o->flag("no-sampling-p");
  auto export_labels = labelsOption(*o);
  if (!export_labels.ok()) return usageError(cmd, export_labels.status().message());
  f.labels = *export_labels;
  auto records = readRecords(*o);
  if (!records.ok()) {
    return records.status().code() == api::ErrorCode::kInvalidRequest
               ? usageError(cmd, records.status().message())
               : failure(cmd, records.status().message());
  }
  std::ostringstream out;
  quality::ExportStats stats = o->positional()[0] == "sft" ? quality::exportSft(*records, f, out)
                                                           : quality::exportDpo(*records, f, out);
  if (int rc = writeOut(cmd, *o, out.str()); rc != 0) return rc;
  std::string skipped;
  for (const auto& [reason, n] : stats.skipped) {
    skipped += (skipped.empty() ? "" : ", ") + reason + " " + std::to_string(n);
  }
  std::fprintf(stderr, "export %s: %zu of %zu records written%s%s\n", o->positional()[0].c_str(),
               stats.written, stats.records, skipped.empty() ? "" : "; skipped: ",
               skipped.c_str());
  return 0;
}

// ---- calibrate -------------------------------------------------------------------------------

int runCalibrate(int argc, char** argv) {
  const char* cmd = "calibrate";
  if (argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::printf(
        "usage: switchyard-cli calibrate --store FILE [options]\n\n"
        "Fits, from the quality records, the complexity weights, the confidence weights (on\n"
        "records that carry the confidence features) and the confidence and complexity\n"
        "thresholds that best predict when the cloud answer is better. Every number printed\n"
        "is measured on held-out records, never on the rows the fit was trained on. Prints\n"
        "the trade-off table and writes a policies snippet (trigger) and a router snippet\n"
        "(complexity and confidence weights).\n\n"
        "  --store FILE               the quality store\n"
        "  --out FILE                 write the YAML snippets here (default: printed)\n"
        "  --team NAME, --since T, --until T   which records\n"
        "  --target-cloud-share X     least quality loss with at most this share escalated\n"
        "  --target-quality-loss X    least cloud share with at most this mean quality loss\n"
        "                             (neither: best accuracy at predicting a cloud win)\n"
        "  --win-margin X             the cloud wins when delta > X (default 0)\n"
        "  --holdout X                share of records held out for evaluation (0.25)\n"
        "  --seed N                   which records are held out (1)\n"
        "  --labels judge|feedback-first\n"
        "                             label rows by the judge's verdict (default), or by user\n"
        "                             feedback where there is any, else the judge\n"
        "Every row counts 1/sampling_p (shadow samples stand for the traffic they were drawn\n"
        "from).\n");
    return 0;
  }
  auto o = Options::parse(argc, argv,
                          {"store", "out", "team", "since", "until", "target-cloud-share",
                           "target-quality-loss", "win-margin", "holdout", "seed", "labels"},
                          {});
  if (!o.ok()) return usageError(cmd, o.status().message());
  if (!o->positional().empty()) return usageError(cmd, "unexpected '" + o->positional()[0] + "'");
  quality::CalibrateOptions c;
  auto share = o->number("target-cloud-share", 0, 1);
  auto loss = o->number("target-quality-loss", 0, 1);
  auto margin = o->number("win-margin", -1, 1);
  auto holdout = o->number("holdout", 0.05, 0.9);
  auto seed = o->number("seed", 0, 1e15);
  for (const auto* s : {&share, &loss, &margin, &holdout, &seed}) {
    if (!s->ok()) return usageError(cmd, s->status().message());
  }
  c.target_cloud_share = *share;
  c.target_quality_loss = *loss;
  if (*margin) c.win_margin = **margin;
  if (*holdout) c.holdout = **holdout;
  if (*seed) c.seed = static_cast<uint64_t>(**seed);
  auto calibrate_labels = labelsOption(*o);
  if (!calibrate_labels.ok()) return usageError(cmd, calibrate_labels.status().message());
  c.labels = *calibrate_labels;
  auto records = readRecords(*o);
  if (!records.ok()) {
    return records.status().code() == api::ErrorCode::kInvalidRequest
               ? usageError(cmd, records.status().message())
               : failure(cmd, records.status().message());
  }
  auto result = quality::calibrate(*records, c);
  if (!result.ok()) return failure(cmd, result.status().message());
  std::string table = quality::formatCalibration(*result);
  std::fwrite(table.data(), 1, table.size(), stdout);
  std::string snippets = result->policies_snippet + "\n" + result->router_snippet;
  if (auto out = o->get("out")) {
    if (int rc = writeOut(cmd, *o, snippets); rc != 0) return rc;
    std::printf("\nSnippets written to %s\n", out->c_str());
    return 0;
  }
  std::printf("\n%s", snippets.c_str());
  return 0;
}

// ---- report ----------------------------------------------------------------------------------

int runReport(int argc, char** argv) {
  const char* cmd = "report";
  if (argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::printf(
        "usage: switchyard-cli report quality --store FILE|URL [--ledger FILE|URL] --out F.html\n"
        "       switchyard-cli report cost --ledger FILE|URL [--config FILE] --out F.html\n\n"
        "Writes one self-contained HTML file (inline SVG charts, no network).\n\n"
        "  --store FILE|URL      the quality store (quality report)\n"
        "  --ledger FILE|URL     the ledger (cost report; the quality report's escalation rate);\n"
        "                        a postgresql:// URL reads the database that replicas share\n"
        "  --config FILE         switchyard.yaml: budgets, prices and quality.gpu_hour_usd\n"
        "  --gpu-hour-usd X      price of an accelerator hour (overrides the config)\n"
        "  --compare-model M     the cloud model savings are measured against: a model of the\n"
        "                        config, or provider/model of its pricing table (default: the\n"
        "                        first cloud model of the default routing)\n"
        "  --team NAME, --since T, --until T   which records and rows\n"
        "  --out FILE            where to write (default stdout)\n");
    return 0;
  }
  auto o = Options::parse(argc, argv,
                          {"store", "ledger", "config", "gpu-hour-usd", "compare-model", "team",
                           "since", "until", "out"},
                          {});
  if (!o.ok()) return usageError(cmd, o.status().message());
  if (o->positional().size() != 1 ||
      (o->positional()[0] != "quality" && o->positional()[0] != "cost")) {
    return usageError(cmd, "say which report: quality or cost");
  }
  auto since = o->time("since");
  auto until = o->time("until");
  if (!since.ok()) return usageError(cmd, since.status().message());
  if (!until.ok()) return usageError(cmd, until.status().message());
  auto readLedger = [&]() -> api::StatusOr<std::vector<policies::LedgerRow>> {
    auto rows = policies::readLedgerRows(*o->get("ledger"), *since, *until);
    if (!rows.ok()) return rows.status();
    if (auto team = o->get("team")) {
      std::erase_if(*rows, [&](const policies::LedgerRow& r) { return r.team != *team; });
    }
    return rows;
  };

  if (o->positional()[0] == "quality") {
    auto records = readRecords(*o);
    if (!records.ok()) {
      return records.status().code() == api::ErrorCode::kInvalidRequest
                 ? usageError(cmd, records.status().message())
                 : failure(cmd, records.status().message());
    }
    std::optional<std::vector<policies::LedgerRow>> ledger;
    if (o->has("ledger")) {
      auto rows = readLedger();
      if (!rows.ok()) return failure(cmd, rows.status().message());
      ledger = std::move(rows).value();
    }
    quality::QualityReportOptions options;
    options.now_ms = nowMs();
    return writeOut(cmd, *o,
                    quality::renderQualityReport(*records, ledger ? &*ledger : nullptr, options));
  }

  if (!o->has("ledger")) return usageError(cmd, "--ledger is required for the cost report");
  quality::CostReportOptions options;
  options.now_ms = nowMs();
  std::shared_ptr<const gateway::Config> config;
  if (auto path = o->get("config")) {
    auto loaded = gateway::loadConfigFile(*path);
    if (!loaded.ok()) return failure(cmd, loaded.status().message());
    config = *loaded;
    options.gpu_hour_usd = config->quality.gpu_hour_usd;
    for (const auto& [name, p] : config->providers) {
      if (p.gpu_hour_usd) options.provider_gpu_hour_usd[name] = *p.gpu_hour_usd;
    }
    for (const gateway::Team& t : config->teams) {
      options.budgets[t.name] = config->policies->policyFor(t.name).budget;
    }
    for (const policies::TeamPolicy& t : config->policies->teams()) {
      options.budgets[t.name] = t.budget;
    }
  }
  auto gpu = o->number("gpu-hour-usd", 0, 1e6);
  if (!gpu.ok()) return usageError(cmd, gpu.status().message());
  if (*gpu) options.gpu_hour_usd = **gpu;
  std::string compare = o->get("compare-model").value_or("");
  if (compare.empty() && config && !config->policies->defaults().routing.cloud_models.empty()) {
    compare = config->policies->defaults().routing.cloud_models[0];
  }
  if (!compare.empty()) {
    if (!config) return usageError(cmd, "--compare-model needs --config (for its prices)");
    std::string provider, model;
    if (const gateway::ModelRoute* m = config->findModel(compare)) {
      provider = m->provider;
      model = m->upstream_model;
    } else if (auto slash = compare.find('/'); slash != std::string::npos) {
      provider = compare.substr(0, slash);
      model = compare.substr(slash + 1);
    }
    const policies::Price* price = config->prices->find(provider, model);
    if (!price) {
      return failure(cmd, "no price for the compare model '" + compare +
                              "' (name a model of the config, or provider/model of its pricing)");
    }
    options.compare_model = provider + "/" + model;
    options.compare_price = *price;
  }
  auto rows = readLedger();
  if (!rows.ok()) return failure(cmd, rows.status().message());
  return writeOut(cmd, *o, quality::renderCostReport(*rows, options));
}

const bool kExport = tools::registerCommand(
    "export", "fine-tuning data from quality records (sft, dpo) as JSONL", &runExport);
const bool kCalibrate = tools::registerCommand(
    "calibrate", "fit router weights and thresholds on quality records", &runCalibrate);
const bool kReport = tools::registerCommand(
    "report", "write the quality or cost report as one HTML file", &runReport);

}  // namespace
