#include "quality/export.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <utility>

namespace quality {
namespace {

// Key order matters to people reading the files ("role" first), not to the formats.
using OJson = nlohmann::ordered_json;

enum class Format { kSft, kDpo };

// ---- messages ------------------------------------------------------------------------------

// The fields each role may carry in OpenAI's chat fine-tuning format (the supervised method's
// input messages); everything else (audio references, client extensions) is dropped.
const std::vector<std::string_view>* keptFields(std::string_view role) {
  static const std::vector<std::string_view> kSystem = {"name", "content"};
  static const std::vector<std::string_view> kAssistant = {"name", "content", "refusal",
                                                           "tool_calls", "function_call"};
  static const std::vector<std::string_view> kTool = {"content", "tool_call_id"};
  if (role == "system" || role == "user" || role == "function") return &kSystem;
  if (role == "assistant") return &kAssistant;
  if (role == "tool") return &kTool;
  return nullptr;
}

// The prompt as training messages; nullopt when it is not a non-empty array of messages.
std::optional<OJson> trainingMessages(const api::Json& prompt) {
  if (!prompt.is_array() || prompt.empty()) return std::nullopt;
  OJson out = OJson::array();
  for (const api::Json& m : prompt) {
    if (!m.is_object()) return std::nullopt;
    auto role_it = m.find("role");
    if (role_it == m.end() || !role_it->is_string()) return std::nullopt;
    std::string role = role_it->get<std::string>();
    // The supervised format predates the developer role; it is the system role renamed.
    if (role == "developer") role = "system";
    const std::vector<std::string_view>* fields = keptFields(role);
    if (fields == nullptr) return std::nullopt;
    OJson o = OJson::object();
    o["role"] = role;
    for (std::string_view key : *fields) {
      auto it = m.find(std::string(key));
      if (it == m.end() || it->is_null()) continue;
      o[std::string(key)] = OJson(*it);
    }
    auto content = o.find("content");
    const bool has_content = content != o.end() && (content->is_string() || content->is_array());
    if (content != o.end() && !has_content) return std::nullopt;
    // Only an assistant turn that called a tool may come without content.
    if (!has_content &&
        !(role == "assistant" && (o.contains("tool_calls") || o.contains("function_call")))) {
      return std::nullopt;
    }
    out.push_back(std::move(o));
  }
  return out;
}

bool isBlank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  });
}

// ---- SimHash ------------------------------------------------------------------------------

uint64_t fnv1a(std::string_view s, uint64_t h = 0xcbf29ce484222325ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// FNV's low bits mix poorly; SimHash needs every bit of a shingle's hash to be a fair coin.
uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

void appendWord(std::string& text, std::string_view word) {
  text += ' ';
  text += word;
  text += ' ';
}

// A value that is not text (an image, an audio clip, a file) as one word standing for all of
// it, so that two prompts asking the same about different images stay apart.
void appendOpaque(std::string& text, const api::Json& v) {
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t h = fnv1a(v.dump(-1, ' ', false, api::Json::error_handler_t::replace));
  std::string word = "part";
  for (int i = 60; i >= 0; i -= 4) word += kHex[(h >> i) & 0xf];
  appendWord(text, word);
}

void appendContent(std::string& text, const api::Json& content) {
  if (content.is_string()) {
    appendWord(text, content.get_ref<const std::string&>());
  } else if (content.is_array()) {
    for (const api::Json& part : content) {
      auto t = part.is_object() ? part.find("text") : part.end();
      if (part.is_object() && t != part.end() && t->is_string()) {
        appendWord(text, t->get_ref<const std::string&>());
      } else {
        appendOpaque(text, part);
      }
    }
  } else if (!content.is_null()) {
    appendOpaque(text, content);
  }
}

void appendCall(std::string& text, const api::Json& call) {
  if (!call.is_object()) return appendOpaque(text, call);
  const api::Json* fn = &call;
  if (auto it = call.find("function"); it != call.end() && it->is_object()) fn = &*it;
  for (const char* key : {"name", "arguments"}) {
    auto it = fn->find(key);
    if (it == fn->end()) continue;
    if (it->is_string()) {
      appendWord(text, it->get_ref<const std::string&>());
    } else {
      appendOpaque(text, *it);
    }
  }
}

void appendMessage(std::string& text, const api::Json& m) {
  if (!m.is_object()) return appendOpaque(text, m);
  if (auto it = m.find("role"); it != m.end() && it->is_string()) {
    appendWord(text, it->get_ref<const std::string&>());
  }
  if (auto it = m.find("content"); it != m.end()) appendContent(text, *it);
  if (auto it = m.find("tool_calls"); it != m.end() && it->is_array()) {
    for (const api::Json& call : *it) appendCall(text, call);
  }
  if (auto it = m.find("function_call"); it != m.end()) appendCall(text, *it);
}

bool isUserMessage(const api::Json& m) {
  if (!m.is_object()) return false;
  auto it = m.find("role");
  return it != m.end() && it->is_string() && it->get_ref<const std::string&>() == "user";
}

bool isWordByte(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

// ---- the pipeline ----------------------------------------------------------------------------

struct Candidate {
  const QualityRecord* record = nullptr;
  double delta = 0;
  OJson messages;
  const Answer* chosen = nullptr;
  const Answer* rejected = nullptr;  // dpo only
  PromptFingerprint print;
};

// Why `r` is not exported, or nullopt (with `c` filled in) when it is a candidate.
std::optional<std::string_view> check(const QualityRecord& r, const ExportFilter& f, Format fmt,
                                      Candidate* c) {
  if ((f.team && r.team != *f.team) || (f.since_ms && r.unix_ms < *f.since_ms) ||
      (f.until_ms && r.unix_ms >= *f.until_ms)) {
    return "filtered";
  }
  if (r.redacted || r.prompt.is_null()) return "redacted";
  std::optional<OJson> messages = trainingMessages(r.prompt);
  if (!messages) return "invalid_prompt";
  std::optional<double> delta = r.delta(f.labels);
  if (!delta || std::isnan(*delta)) return "no_delta";
  const bool from_feedback = f.labels == DeltaSource::kFeedbackFirst && r.feedbackDelta();
  if (f.require_agreement && !from_feedback && r.judge && !r.judge->agreement) {
    return "disagreement";
  }
  const double d = *delta;
  const bool passes =
      fmt == Format::kSft ? (d > 0 && d >= f.min_delta) : (d != 0 && std::abs(d) >= f.min_delta);
  if (!passes) return "below_min_delta";
  const Answer* chosen = d > 0 ? &r.cloud : &r.local;
  const Answer* rejected = d > 0 ? &r.local : &r.cloud;
  if (isBlank(chosen->text) || (fmt == Format::kDpo && isBlank(rejected->text))) {
    return "empty_answer";
  }
  // A draft cut short teaches the model to stop mid-sentence: never a target. As the rejected
  // side it is a weaker, but sometimes wanted, signal.
  if (!chosen->complete) return "partial";
  if (fmt == Format::kDpo && !rejected->complete && !f.include_partial) return "partial";
  c->record = &r;
  c->delta = d;
  c->messages = std::move(*messages);
  c->chosen = chosen;
  c->rejected = fmt == Format::kDpo ? rejected : nullptr;
  return std::nullopt;
}

// Keeps, of every group of near-identical prompts, the one with the largest |delta| (ties: the
// newest). Greedy in that order, so each dropped prompt is near one that was kept.
//
// Finding neighbours: two 64-bit hashes within distance d agree exactly on at least one of d+1
// disjoint blocks of bits (pigeonhole), and near-identical prompts are that close on both of
// their hashes. So each kept prompt is indexed under every pair (a block of its whole-prompt
// hash, a block of its question's hash), and only prompts sharing a pair are compared: prompts
// that share a long system prompt but ask different things rarely share one. Past 7 there would
// be too many pairs (and blocks too narrow to tell prompts apart), and every kept prompt is
// compared instead.
std::vector<Candidate> dedup(std::vector<Candidate> cands, int max_distance, size_t* duplicates) {
  const int d = std::max(0, max_distance);
  for (Candidate& c : cands) c.print = promptFingerprint(c.record->prompt);
  std::vector<size_t> order(cands.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const Candidate& x = cands[a];
    const Candidate& y = cands[b];
    if (std::abs(x.delta) != std::abs(y.delta)) return std::abs(x.delta) > std::abs(y.delta);
    if (x.record->unix_ms != y.record->unix_ms) return x.record->unix_ms > y.record->unix_ms;
    return x.record->id > y.record->id;
  });

  const bool indexed = d <= 7;
  const int blocks = indexed ? d + 1 : 0;
  auto block = [&](uint64_t h, int b) {
    const int lo = b * 64 / blocks;
    const int hi = (b + 1) * 64 / blocks;
    const uint64_t mask = hi - lo >= 64 ? ~uint64_t{0} : ((uint64_t{1} << (hi - lo)) - 1);
    return (h >> lo) & mask;
  };
  // The keys of a fingerprint, one per pair of blocks; a collision of two keys only costs a
  // comparison.
  auto keys = [&](const PromptFingerprint& fp) {
    std::vector<uint64_t> out;
    out.reserve(static_cast<size_t>(blocks) * static_cast<size_t>(blocks));
    for (int bw = 0; bw < blocks; ++bw) {
      for (int ba = 0; ba < blocks; ++ba) {
        uint64_t k = mix(block(fp.whole, bw) ^ (static_cast<uint64_t>(bw * blocks + ba) << 58));
        out.push_back(mix(k ^ block(fp.ask, ba)));
      }
    }
    return out;
  };
  std::unordered_map<uint64_t, std::vector<size_t>> index;
  std::vector<size_t> kept;
  for (size_t i : order) {
    const PromptFingerprint& fp = cands[i].print;
    const std::vector<uint64_t> my_keys = indexed ? keys(fp) : std::vector<uint64_t>{};
    bool near = false;
    if (indexed) {
      for (size_t j = 0; j < my_keys.size() && !near; ++j) {
        auto it = index.find(my_keys[j]);
        if (it == index.end()) continue;
        for (size_t k : it->second) {
          if (nearIdentical(fp, cands[k].print, d)) {
            near = true;
            break;
          }
        }
      }
    } else {
      for (size_t k : kept) {
        if (nearIdentical(fp, cands[k].print, d)) {
          near = true;
          break;
        }
      }
    }
    if (near) {
      ++*duplicates;
      continue;
    }
    kept.push_back(i);
    for (uint64_t k : my_keys) index[k].push_back(i);
  }
  std::vector<Candidate> out;
  out.reserve(kept.size());
  for (size_t i : kept) out.push_back(std::move(cands[i]));
  return out;
}

OJson assistantTurn(const Answer& a) {
  OJson turn = OJson::object();
  turn["role"] = "assistant";
  turn["content"] = a.text;
  return turn;
}

ExportStats runExport(const std::vector<QualityRecord>& records, const ExportFilter& f, Format fmt,
                      std::ostream& out) {
  ExportStats stats;
  stats.records = records.size();
  std::vector<Candidate> cands;
  for (const QualityRecord& r : records) {
    Candidate c;
    if (std::optional<std::string_view> why = check(r, f, fmt, &c)) {
      ++stats.skipped[std::string(*why)];
      continue;
    }
    cands.push_back(std::move(c));
  }
  if (f.dedup && !cands.empty()) {
    size_t duplicates = 0;
    cands = dedup(std::move(cands), f.dedup_max_distance, &duplicates);
    if (duplicates > 0) stats.skipped["duplicate"] += duplicates;
  }
  std::sort(cands.begin(), cands.end(), [](const Candidate& a, const Candidate& b) {
    if (a.record->unix_ms != b.record->unix_ms) return a.record->unix_ms < b.record->unix_ms;
    return a.record->id < b.record->id;
  });

  for (Candidate& c : cands) {
    OJson line = OJson::object();
    if (fmt == Format::kSft) {
      c.messages.push_back(assistantTurn(*c.chosen));
      line["messages"] = std::move(c.messages);
    } else {
      line["prompt"] = std::move(c.messages);
      line["chosen"] = OJson::array({assistantTurn(*c.chosen)});
      line["rejected"] = OJson::array({assistantTurn(*c.rejected)});
    }
    if (f.sampling_p_field) line["sampling_p"] = c.record->sampling_p;
    // Recorded text may hold invalid UTF-8 (a draft cut mid-character); replace, never throw.
    out << line.dump(-1, ' ', false, OJson::error_handler_t::replace) << '\n';
    ++stats.written;
  }
  return stats;
}

}  // namespace

uint64_t simHash(std::string_view input) {
  std::string text(input);
  std::vector<std::string_view> words;
  for (size_t i = 0; i < text.size();) {
    if (!isWordByte(static_cast<unsigned char>(text[i]))) {
      ++i;
      continue;
    }
    size_t j = i;
    for (; j < text.size() && isWordByte(static_cast<unsigned char>(text[j])); ++j) {
      if (text[j] >= 'A' && text[j] <= 'Z') text[j] = static_cast<char>(text[j] - 'A' + 'a');
    }
    words.emplace_back(text.data() + i, j - i);
    i = j;
  }
  if (words.empty()) return 0;

  std::vector<uint64_t> shingles;
  const size_t n = words.size() < 3 ? 1 : words.size() - 2;
  const size_t width = std::min<size_t>(3, words.size());
  shingles.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t k = 0; k < width; ++k) {
      h = fnv1a(words[i + k], h);
      h = fnv1a("\x1f", h);  // so that "ab c" and "a bc" differ
    }
    shingles.push_back(mix(h));
  }
  std::sort(shingles.begin(), shingles.end());
  shingles.erase(std::unique(shingles.begin(), shingles.end()), shingles.end());

  std::array<int64_t, 64> votes{};
  for (uint64_t h : shingles) {
    for (int b = 0; b < 64; ++b) votes[b] += ((h >> b) & 1) ? 1 : -1;
  }
  uint64_t out = 0;
  for (int b = 0; b < 64; ++b) {
    if (votes[b] > 0) out |= uint64_t{1} << b;
  }
  return out;
}

PromptFingerprint promptFingerprint(const api::Json& prompt) {
  std::string whole;
  std::string ask;
  if (prompt.is_array()) {
    const api::Json* last_user = nullptr;
    for (const api::Json& m : prompt) {
      appendMessage(whole, m);
      if (isUserMessage(m)) last_user = &m;
    }
    if (last_user == nullptr && !prompt.empty()) last_user = &prompt.back();
    if (last_user != nullptr) appendMessage(ask, *last_user);
  } else if (!prompt.is_null()) {
    appendOpaque(whole, prompt);
  }
  return PromptFingerprint{simHash(whole), simHash(ask)};
}

bool nearIdentical(const PromptFingerprint& a, const PromptFingerprint& b, int max_distance) {
  const int d = std::max(0, max_distance);
  return hammingDistance(a.whole, b.whole) <= d && hammingDistance(a.ask, b.ask) <= d;
}

int hammingDistance(uint64_t a, uint64_t b) { return std::popcount(a ^ b); }

ExportStats exportSft(const std::vector<QualityRecord>& records, const ExportFilter& f,
                      std::ostream& out) {
  return runExport(records, f, Format::kSft, out);
}

ExportStats exportDpo(const std::vector<QualityRecord>& records, const ExportFilter& f,
                      std::ostream& out) {
  return runExport(records, f, Format::kDpo, out);
}

}  // namespace quality
