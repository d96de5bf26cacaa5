// Constrained decoding: schema compilation, the byte-level matcher and its token masks over the
// real Gemma 3 vocabulary (random walks that must always end in JSON that validates).
#include "engine/grammar/grammar.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "api/key_order.h"
#include "engine/grammar/matcher.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "gemma_tokenizer_fixture.h"

namespace engine::grammar {
namespace {

using api::Json;

// ---- a validator for the schema subset the compiler accepts ------------------------------------

bool validate(const Json& v, const Json& s, const Json& root, std::string& why);

const Json* resolve(const Json& root, const std::string& ref) {
  if (ref == "#") return &root;
  return &root.at(Json::json_pointer(ref.substr(1)));
}

bool typeMatches(const Json& v, const std::string& t) {
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "string") return v.is_string();
  if (t == "integer") return v.is_number_integer();
  if (t == "number") return v.is_number();
  if (t == "boolean") return v.is_boolean();
  if (t == "null") return v.is_null();
  return false;
}

bool validate(const Json& v, const Json& s, const Json& root, std::string& why) {
  if (s.is_boolean()) return s.get<bool>();
  if (s.contains("$ref")) return validate(v, *resolve(root, s["$ref"]), root, why);
  if (s.contains("const") && v != s["const"]) return why = "const " + v.dump(), false;
  if (s.contains("enum") && std::find(s["enum"].begin(), s["enum"].end(), v) == s["enum"].end()) {
    return why = "enum " + v.dump(), false;
  }
  if (s.contains("anyOf")) {
    for (const auto& alt : s["anyOf"]) {
      std::string ignored;
      if (validate(v, alt, root, ignored)) return true;
    }
    return why = "no anyOf branch fits " + v.dump(), false;
  }
  if (s.contains("type")) {
    std::vector<std::string> types;
    if (s["type"].is_string())
      types.push_back(s["type"]);
    else
      for (const auto& t : s["type"]) types.push_back(t);
    if (std::none_of(types.begin(), types.end(), [&](auto& t) { return typeMatches(v, t); })) {
      return why = "type of " + v.dump(), false;
    }
  }
  if (v.is_object()) {
    const Json props = s.value("properties", Json::object());
    for (const auto& r : s.value("required", Json::array())) {
      if (!v.contains(r.get<std::string>())) return why = "missing " + r.dump(), false;
    }
    for (const auto& [k, x] : v.items()) {
      if (props.contains(k)) {
        if (!validate(x, props[k], root, why)) return false;
      } else if (s.contains("additionalProperties")) {
        if (!validate(x, s["additionalProperties"], root, why)) return why += " (" + k + ")", false;
      }
    }
  }
  if (v.is_array()) {
    if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>()) return why = "few", false;
    if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>())
      return why = "many", false;
    if (s.contains("items")) {
      for (const auto& x : v) {
        if (!validate(x, s["items"], root, why)) return false;
      }
    }
  }
  return true;
}

// ---- the schema suite ---------------------------------------------------------------------------

std::vector<std::pair<std::string, Json>> schemaSuite() {
  return {
      {"flat", Json::parse(R"({"type":"object","properties":{
          "name":{"type":"string"},"age":{"type":"integer"},"score":{"type":"number"},
          "ok":{"type":"boolean"},"none":{"type":"null"}},
          "required":["name","age","score","ok","none"],"additionalProperties":false})")},
      {"nested", Json::parse(R"({"type":"object","properties":{
          "user":{"type":"object","properties":{"id":{"type":"integer"},
            "address":{"type":"object","properties":{"city":{"type":"string"},
              "zip":{"type":["string","null"]}},"required":["city","zip"],
              "additionalProperties":false}},
            "required":["id","address"],"additionalProperties":false},
          "note":{"type":"string"}},"required":["user"],"additionalProperties":false})")},
      {"arrays", Json::parse(R"({"type":"object","properties":{
          "tags":{"type":"array","items":{"type":"string"}},
          "matrix":{"type":"array","items":{"type":"array","items":{"type":"number"},
            "minItems":1,"maxItems":3}},
          "pairs":{"type":"array","items":{"type":"object","properties":{
            "k":{"type":"string"},"v":{"type":"integer"}},"required":["k","v"],
            "additionalProperties":false},"minItems":2}},
          "required":["tags","matrix","pairs"],"additionalProperties":false})")},
      {"enums", Json::parse(R"({"type":"object","properties":{
          "color":{"type":"string","enum":["red","green","blue","réd \"q\""]},
          "size":{"enum":[1,12,123,"1",null,true]},
          "kind":{"const":"fixed"},
          "mood":{"enum":[{"a":[1,2]},[],"x"]}},
          "required":["color","size","kind","mood"],"additionalProperties":false})")},
      {"recursive", Json::parse(R"({"$defs":{"node":{"type":"object","properties":{
          "value":{"type":"integer"},
          "children":{"type":"array","items":{"$ref":"#/$defs/node"}}},
          "required":["value","children"],"additionalProperties":false}},
          "$ref":"#/$defs/node"})")},
      {"anyof", Json::parse(R"({"type":"object","properties":{
          "shape":{"anyOf":[
            {"type":"object","properties":{"type":{"const":"circle"},"r":{"type":"number"}},
             "required":["type","r"],"additionalProperties":false},
            {"type":"object","properties":{"type":{"const":"rect"},"w":{"type":"number"},
             "h":{"type":"number"}},"required":["type","w","h"],"additionalProperties":false},
            {"type":"string"},{"type":"null"}]}},
          "required":["shape"],"additionalProperties":false})")},
      {"optional", Json::parse(R"({"type":"object","properties":{
          "a":{"type":"string"},"b":{"type":"integer"},"c":{"type":"boolean"}},
          "required":["b"]})")},
      {"any_object", Json::parse(R"({"type":"object"})")},
      {"tree_by_root_ref", Json::parse(R"({"type":"object","properties":{
          "name":{"type":"string"},"next":{"anyOf":[{"$ref":"#"},{"type":"null"}]}},
          "required":["name","next"],"additionalProperties":false})")},
  };
}

std::shared_ptr<const VocabIndex> gemmaVocabPtr(const Tokenizer& tok) {
  static const std::shared_ptr<const VocabIndex> vocab =
      VocabIndex::fromTokenizer(tok, {tok.eosId(), tok.endOfTurnId()});
  return vocab;
}

std::vector<int32_t> allowedIds(const std::vector<uint64_t>& mask) {
  std::vector<int32_t> ids;
  for (size_t w = 0; w < mask.size(); ++w) {
    for (uint64_t bits = mask[w]; bits != 0; bits &= bits - 1) {
      ids.push_back(static_cast<int32_t>(w * 64 + __builtin_ctzll(bits)));
    }
  }
  return ids;
}

bool bit(const std::vector<uint64_t>& mask, int32_t id) { return (mask[id / 64] >> (id % 64)) & 1; }

struct Walk {
  std::vector<int32_t> ids;
  bool ended = false;
};

// One random generation: each step draws uniformly among the allowed tokens (half the time only
// among the ones that are not plain string content, so that strings end), and checks the mask
// against the one-token path for a few ids.
Walk randomWalk(Matcher& m, const VocabIndex& vocab, std::mt19937_64& rng, int max_steps) {
  Walk walk;
  std::vector<uint64_t> mask(vocab.maskWords());
  for (int step = 0; step < max_steps; ++step) {
    m.fillMask(mask);
    std::vector<int32_t> ids = allowedIds(mask);
    EXPECT_FALSE(ids.empty()) << "dead end after " << walk.ids.size() << " tokens";
    if (ids.empty()) return walk;
    for (int probe = 0; probe < 3; ++probe) {
      int32_t id = static_cast<int32_t>(rng() % vocab.vocabSize());
      EXPECT_EQ(bit(mask, id), m.allows(id)) << "token " << id << " '" << vocab.bytes(id) << "'";
    }
    std::vector<int32_t> structural;
    for (int32_t id : ids) {
      if (vocab.isEnd(id) || vocab.bytes(id).find_first_of("\"\\{}[],:") != std::string::npos ||
          vocab.bytes(id).find_first_not_of("0123456789") == std::string::npos) {
        structural.push_back(id);
      }
    }
    const auto& pool = (!structural.empty() && rng() % 2 == 0) ? structural : ids;
    int32_t id = pool[rng() % pool.size()];
    if (m.canEnd() && rng() % 3 == 0) id = vocab.endIds()[0];
    EXPECT_TRUE(m.accept(id)) << "the mask allowed " << id << " but accept refused it";
    if (vocab.isEnd(id)) {
      walk.ended = true;
      return walk;
    }
    walk.ids.push_back(id);
  }
  return walk;
}

GrammarOptions smallOptions() {
  GrammarOptions o;
  o.max_string_bytes = 24;
  o.max_items = 4;
  o.max_depth = 7;
  o.max_number_digits = 6;
  return o;
}

TEST(GrammarWalk, RandomGenerationsEndAndValidate) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto vocab = gemmaVocabPtr(*tok);
  std::mt19937_64 rng(20261207);
  int total = 0;
  for (const auto& [name, schema] : schemaSuite()) {
    auto g = compileSchema(schema, smallOptions(), "schema");
    ASSERT_TRUE(g.ok()) << name << ": " << g.status().toString();
    for (int i = 0; i < 24; ++i, ++total) {
      Matcher m(g.value(), vocab);
      Walk walk = randomWalk(m, *vocab, rng, 4000);
      ASSERT_TRUE(walk.ended) << name << " #" << i
                              << " did not end: " << tok->decode(walk.ids, true);
      EXPECT_TRUE(m.finished());
      const std::string text = tok->decode(walk.ids, /*skip_special=*/true);
      Json value = Json::parse(text, nullptr, /*allow_exceptions=*/false);
      ASSERT_FALSE(value.is_discarded()) << name << ": does not parse: " << text;
      std::string why;
      EXPECT_TRUE(validate(value, schema, schema, why)) << name << ": " << why << " in " << text;
    }
  }
  EXPECT_GE(total, 200);
}

TEST(GrammarWalk, JsonObjectModeGivesObjects) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto vocab = gemmaVocabPtr(*tok);
  auto g = compileResponseFormat(Json{{"type", "json_object"}}, smallOptions());
  ASSERT_TRUE(g.ok());
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20; ++i) {
    Matcher m(g.value(), vocab);
    Walk walk = randomWalk(m, *vocab, rng, 4000);
    ASSERT_TRUE(walk.ended);
    Json value = Json::parse(tok->decode(walk.ids, true), nullptr, false);
    ASSERT_TRUE(value.is_object()) << tok->decode(walk.ids, true);
  }
}

// ---- token-level behaviour ----------------------------------------------------------------------

std::shared_ptr<const Grammar> compileOrDie(const char* schema, GrammarOptions o = {}) {
  auto g = compileSchema(Json::parse(schema), o, "schema");
  EXPECT_TRUE(g.ok()) << g.status().toString();
  return g.ok() ? g.value() : nullptr;
}

TEST(GrammarMatcher, TokenClosingAStringAndOpeningTheNextKey) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto vocab = gemmaVocabPtr(*tok);
  auto quote_comma = tok->idOf("\",");
  auto quote_brace = tok->idOf("\"}");
  ASSERT_TRUE(quote_comma && quote_brace);
  const char* two = R"({"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},
      "required":["a","b"],"additionalProperties":false})";
  Matcher m(compileOrDie(two), vocab);
  ASSERT_TRUE(m.acceptBytes(R"({"a":"x)"));
  std::vector<uint64_t> mask(vocab->maskWords());
  m.fillMask(mask);
  EXPECT_TRUE(bit(mask, *quote_comma));   // closes "a" and goes on to the next key
  EXPECT_FALSE(bit(mask, *quote_brace));  // "b" is required
  ASSERT_TRUE(m.accept(*quote_comma));
  EXPECT_TRUE(m.acceptBytes(R"("b":"y"})"));
  EXPECT_TRUE(m.mustEnd());

  const char* one = R"({"type":"object","properties":{"a":{"type":"string"}},
      "required":["a"],"additionalProperties":false})";
  Matcher last(compileOrDie(one), vocab);
  ASSERT_TRUE(last.acceptBytes(R"({"a":"x)"));
  last.fillMask(mask);
  EXPECT_FALSE(bit(mask, *quote_comma));  // no key is left to open
  EXPECT_TRUE(bit(mask, *quote_brace));
  // A token that spans a key, its colon and the start of a value (`":"` when Gemma has one).
  if (auto colon = tok->idOf("\":\"")) {
    Matcher k(compileOrDie(two), vocab);
    ASSERT_TRUE(k.acceptBytes(R"({"a)"));
    k.fillMask(mask);
    EXPECT_TRUE(bit(mask, *colon));
  }
}

// The mask's shortcuts (plain-content bitmaps, string rests, plain subtrees) against the plain
// byte-by-byte check of every token of the vocabulary, in states that use each of them.
TEST(GrammarMatcher, MaskAgreesWithEveryTokenCheckedAlone) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto vocab = gemmaVocabPtr(*tok);
  const char* schema = R"({"type":"object","properties":{"a":{"type":"string"},
      "n":{"type":"number"},"e":{"enum":["x","y z"]},"o":{"type":"object"}},
      "required":["a","n"],"additionalProperties":false})";
  GrammarOptions o;
  o.max_string_bytes = 64;
  const std::string long_text(40, 'w');
  const std::vector<std::string> prefixes = {
      "",
      "{",
      R"({"a":)",
      R"({"a":")",
      R"({"a":"hello)",
      R"({"a":"hello\)",
      R"({"a":"hello\u)",
      R"({"a":"hello\uD)",
      R"({"a":")" + long_text,  // less budget left than the longest token
      R"({"a":")" + long_text + "wwwww",
      "{\"a\":\"\xE2",
      R"({"a":"x","n":-1)",
      R"({"a":"x","n":1.5e)",
      R"({"a":"x","e":"y)",  // no key order given: keys in sorted order
      R"({"a":"x","n":2,"o":{"k":[1,{"z":")",
  };
  std::vector<uint64_t> mask(vocab->maskWords());
  for (const auto& prefix : prefixes) {
    Matcher m(compileOrDie(schema, o), vocab);
    ASSERT_TRUE(m.acceptBytes(prefix)) << prefix;
    m.fillMask(mask);
    int allowed = 0;
    for (int32_t id = 0; id < vocab->vocabSize(); ++id) {
      ASSERT_EQ(bit(mask, id), m.allows(id))
          << "after " << prefix << ": token " << id << " '" << vocab->bytes(id) << "'";
      allowed += bit(mask, id);
    }
    EXPECT_GT(allowed, 0) << prefix;
  }
}

TEST(GrammarMatcher, Gemma4StringMaskAgreesWithEveryTokenCheckedAlone) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto vocab = gemmaVocabPtr(*tok);
  GrammarOptions o;
  o.max_string_bytes = 64;
  auto g = compileSchema(Json::parse(R"({"type":"object","properties":{"a":{"type":"string"},
      "n":{"type":"integer"}},"required":["a","n"],"additionalProperties":false})"),
                         o, "schema", ValueSyntax::kGemma4);
  ASSERT_TRUE(g.ok()) << g.status().toString();
  const std::string q = std::string(kGemma4Quote);
  const std::string long_text(40, 'w');
  const std::vector<std::string> prefixes = {
      "{a:" + q,
      "{a:" + q + "hello",
      "{a:" + q + "say \"hi\" \\ <b>",
      "{a:" + q + "hello<",
      "{a:" + q + "hello<|\"",
      "{a:" + q + long_text,  // less budget left than the longest token
      "{a:" + q + long_text + "wwwwwwwwwwwwwwwwwwwwwww",
      "{a:" + q + "\xE2",
  };
  // The default bound leaves room for any token: the string's own mask, not the JSON one.
  auto roomy = compileSchema(Json::parse(R"({"type":"object","properties":{"a":{"type":"string"},
      "n":{"type":"integer"}},"required":["a","n"],"additionalProperties":false})"),
                             GrammarOptions{}, "schema", ValueSyntax::kGemma4);
  ASSERT_TRUE(roomy.ok()) << roomy.status().toString();
  std::vector<std::pair<std::shared_ptr<const Grammar>, std::string>> cases;
  for (const auto& prefix : prefixes) cases.emplace_back(g.value(), prefix);
  for (const std::string tail : {"", "line\n\"x\" \\", "a<", "a<|", "\xF0\x9F", "tab\t"}) {
    cases.emplace_back(roomy.value(), "{a:" + q + tail);
  }
  std::vector<uint64_t> mask(vocab->maskWords());
  for (const auto& [grammar, prefix] : cases) {
    Matcher m(grammar, vocab);
    ASSERT_TRUE(m.acceptBytes(prefix)) << prefix;
    m.fillMask(mask);
    int allowed = 0;
    for (int32_t id = 0; id < vocab->vocabSize(); ++id) {
      ASSERT_EQ(bit(mask, id), m.allows(id))
          << "after " << prefix << ": token " << id << " '" << vocab->bytes(id) << "'";
      allowed += bit(mask, id);
    }
    EXPECT_GT(allowed, 0) << prefix;
  }
}

TEST(GrammarMatcher, Utf8AndEscapesInsideStrings) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto vocab = gemmaVocabPtr(*tok);
  const char* s = R"({"type":"string"})";
  auto lead = tok->idOf("<0xE2>");
  auto cont = tok->idOf("<0x82>");
  auto cont2 = tok->idOf("<0xAC>");
  auto quote = tok->idOf("\"");
  ASSERT_TRUE(lead && cont && cont2 && quote);
  Matcher m(compileOrDie(s), vocab);
  ASSERT_TRUE(m.acceptBytes("\"a"));
  std::vector<uint64_t> mask(vocab->maskWords());
  ASSERT_TRUE(m.accept(*lead));
  m.fillMask(mask);
  EXPECT_FALSE(bit(mask, *quote));  // a character is half written
  EXPECT_TRUE(bit(mask, *cont));
  for (int32_t id : allowedIds(mask)) {  // only continuation bytes may follow
    uint8_t b = static_cast<uint8_t>(vocab->bytes(id)[0]);
    EXPECT_TRUE(b >= 0x80 && b <= 0xBF) << id;
  }
  ASSERT_TRUE(m.accept(*cont));
  ASSERT_TRUE(m.accept(*cont2));  // U+20AC
  m.fillMask(mask);
  EXPECT_TRUE(bit(mask, *quote));

  Matcher esc(compileOrDie(s), vocab);
  EXPECT_TRUE(esc.acceptBytes(R"("\n\"\\\u00e9\uD7FF)"));
  EXPECT_FALSE(esc.acceptBytes(R"(\uD800)"));  // a lone surrogate would not parse
  EXPECT_FALSE(esc.acceptBytes("\x01"));       // raw control characters must be escaped
  EXPECT_FALSE(esc.acceptBytes(R"(\x)"));
  EXPECT_TRUE(esc.acceptBytes("\"") && esc.mustEnd());
}

TEST(GrammarMatcher, SpecialTokensNeverAndEndOnlyWhenComplete) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto vocab = gemmaVocabPtr(*tok);
  Matcher m(compileOrDie(R"({"type":"integer"})"), vocab);
  std::vector<uint64_t> mask(vocab->maskWords());
  m.fillMask(mask);
  const int32_t specials[] = {tok->bosId(), tok->eosId(), tok->endOfTurnId(), tok->padId(),
                              *tok->idOf("<start_of_turn>")};
  for (int32_t id : specials) EXPECT_FALSE(bit(mask, id)) << id;
  ASSERT_TRUE(m.acceptBytes("12"));
  m.fillMask(mask);
  EXPECT_TRUE(bit(mask, tok->eosId()));
  EXPECT_TRUE(bit(mask, tok->endOfTurnId()));
  EXPECT_FALSE(bit(mask, *tok->idOf("<start_of_turn>")));
  EXPECT_TRUE(bit(mask, *tok->idOf("3")));
  EXPECT_FALSE(m.mustEnd());
  EXPECT_TRUE(m.accept(tok->endOfTurnId()));
  EXPECT_TRUE(m.finished());
  EXPECT_FALSE(m.accept(*tok->idOf("3")));
}

TEST(GrammarMatcher, BoundsKeepEveryPathFinite) {
  GrammarOptions o;
  o.max_string_bytes = 3;
  o.max_whitespace = 1;
  o.max_number_digits = 2;
  std::vector<std::string> bytes = {"\"", "a", "é", " ", "1", "{", "}", ":", ","};
  auto vocab = std::make_shared<const VocabIndex>(bytes, std::vector<int32_t>{});
  Matcher s(compileOrDie(R"({"type":"string"})", o), vocab);
  EXPECT_TRUE(s.acceptBytes("\"aé"));  // 3 bytes
  EXPECT_FALSE(s.acceptBytes("a"));
  EXPECT_TRUE(s.acceptBytes("\""));
  Matcher n(compileOrDie(R"({"type":"number"})", o), vocab);
  EXPECT_TRUE(n.acceptBytes("-12.34e+56"));
  EXPECT_FALSE(n.acceptBytes("7"));
  Matcher w(compileOrDie(R"({"type":"object"})", o), vocab);
  EXPECT_TRUE(w.acceptBytes("{ \"a\" : 1 ,"));
  EXPECT_FALSE(w.acceptBytes("  "));
  Matcher top(compileOrDie(R"({"type":"object"})", o), vocab);
  EXPECT_FALSE(top.acceptBytes(" {"));  // nothing before the value
  EXPECT_TRUE(top.acceptBytes("{}"));
  EXPECT_FALSE(top.acceptBytes(" "));  // nor after it
}

TEST(GrammarMatcher, DepthLimitOffersOnlyWhatFits) {
  GrammarOptions o;
  o.max_depth = 3;
  std::vector<std::string> bytes = {"[", "]", ","};
  auto vocab = std::make_shared<const VocabIndex>(bytes, std::vector<int32_t>{});
  const char* nested = R"({"$defs":{"l":{"type":"array","items":{"$ref":"#/$defs/l"}}},
      "$ref":"#/$defs/l"})";
  Matcher m(compileOrDie(nested, o), vocab);
  EXPECT_TRUE(m.acceptBytes("[[[]"));
  EXPECT_FALSE(m.acceptBytes("[")) << "a fourth level would not fit";
  EXPECT_TRUE(m.acceptBytes("]]"));
  EXPECT_TRUE(m.mustEnd());
}

// An anyOf forks in place, so an anyOf that reaches itself through $ref alone, or a chain of
// anyOfs whose branches meet again, once made one byte recurse forever or try 2^n paths.
TEST(GrammarMatcher, AnyOfThroughRefsForksEachBranchOnce) {
  std::vector<std::string> bytes;
  for (int b = 0; b < 128; ++b) bytes.emplace_back(1, static_cast<char>(b));
  auto vocab = std::make_shared<const VocabIndex>(bytes, std::vector<int32_t>{});
  Matcher cycle(compileOrDie(R"({"anyOf":[{"$ref":"#"},{"type":"string"}]})"), vocab);
  EXPECT_TRUE(cycle.acceptBytes("\"abcdefghij\""));
  EXPECT_TRUE(cycle.canEnd());

  Json chain = {{"$ref", "#/$defs/a0"}, {"$defs", Json::object()}};
  for (int i = 0; i < 40; ++i) {
    const std::string next = "#/$defs/a" + std::to_string(i + 1);
    chain["$defs"]["a" + std::to_string(i)] = {{"anyOf", {{{"$ref", next}}, {{"$ref", next}}}}};
  }
  chain["$defs"]["a40"] = {{"type", "string"}};
  auto g = compileSchema(chain, {}, "schema");
  ASSERT_TRUE(g.ok()) << g.status().toString();
  EXPECT_EQ((*g)->nodes[(*g)->root].alts.size(), 1u) << "one string at the end of the chain";
  Matcher m(*g, vocab);
  EXPECT_TRUE(m.acceptBytes("\"abc\""));
  EXPECT_TRUE(m.canEnd());

  // Only anyOfs all the way round: no instance, so a clear error naming the schema.
  auto none = compileResponseFormat(
      {{"type", "json_schema"},
       {"json_schema", {{"name", "t"}, {"schema", Json::parse(R"({"anyOf":[{"$ref":"#"}]})")}}}});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_EQ(none.status().param(), "response_format.json_schema.schema");
}

// Object keys are tries as enum values are, and a type array compiles its object once per
// entry: both count against one budget of literal bytes.
TEST(GrammarSchema, PropertyNamesCountAgainstTheLiteralBudget) {
  Json props = Json::object();
  for (int i = 0; i < 30; ++i) {
    props[std::to_string(i) + std::string(1000, 'k')] = {{"type", "null"}};
  }
  Json repeated = {{"type", Json::array()}, {"properties", props}};
  for (int i = 0; i < 40; ++i) repeated["type"].push_back("object");  // 40 x 30 KB of keys
  Json rf = {{"type", "json_schema"}, {"json_schema", {{"name", "t"}, {"schema", repeated}}}};
  auto g = compileResponseFormat(rf);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_EQ(g.status().param(), "response_format.json_schema.schema.properties");
  EXPECT_NE(g.status().message().find("property names"), std::string::npos);
  repeated["type"] = Json::array({"object", "null"});
  rf["json_schema"]["schema"] = repeated;
  EXPECT_TRUE(compileResponseFormat(rf).ok()) << "60 KB of keys fit";
}

// ---- tool calls --------------------------------------------------------------------------------

std::vector<ToolSpec> toolSuite() {
  std::vector<ToolSpec> tools;
  for (const auto& [name, schema] : schemaSuite()) tools.push_back(ToolSpec{"fn_" + name, schema});
  tools.push_back(ToolSpec{"no_params", nullptr});
  return tools;
}

// Gemma 4's argument syntax as JSON, read as the tool-call reader (routers/tool_calls.cpp) does:
// <|"|>...<|"|> strings and bare keys quoted and escaped, the rest as written. "" when malformed.
std::string gemma4ArgsAsJson(std::string_view text) {
  const std::string_view quote = "<|\"|>";
  std::string out;
  auto escaped = [&](char c) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  };
  bool expect_key = false;
  std::string nest;
  for (size_t i = 0; i < text.size();) {
    if (text.substr(i, quote.size()) == quote) {
      const size_t end = text.find(quote, i + quote.size());
      if (end == std::string_view::npos) return "";
      out += '"';
      for (char c : text.substr(i + quote.size(), end - i - quote.size())) escaped(c);
      out += '"';
      i = end + quote.size();
      expect_key = false;
      continue;
    }
    const char c = text[i];
    if (expect_key && std::strchr("{}[],\" \t\r\n", c) == nullptr) {
      const size_t colon = text.find(':', i);
      if (colon == std::string_view::npos) return "";
      out += '"';
      for (char k : text.substr(i, colon - i)) escaped(k);
      out += '"';
      i = colon;
      expect_key = false;
      continue;
    }
    if (c == '{' || c == '[') nest.push_back(c);
    if ((c == '}' || c == ']') && !nest.empty()) nest.pop_back();
    if (std::strchr(" \t\r\n", c) == nullptr) {
      expect_key = c == '{' || (c == ',' && !nest.empty() && nest.back() == '{');
    }
    out += c;
    ++i;
  }
  return out;
}

// Splits a generated call into the tool's name and its arguments (JSON), per syntax.
bool splitCall(const std::string& text, ToolSyntax syntax, std::string& name, Json& args) {
  if (syntax == ToolSyntax::kJson) {
    Json call = Json::parse(text, nullptr, false);
    if (!call.is_object() || call.size() != 2 || !call["name"].is_string()) return false;
    name = call["name"];
    args = call["parameters"];
    return true;
  }
  const std::string open = "<|tool_call>call:", close = "<tool_call|>";
  if (text.rfind(open, 0) != 0 || text.size() < open.size() + close.size() ||
      text.compare(text.size() - close.size(), close.size(), close) != 0) {
    return false;
  }
  size_t brace = text.find('{', open.size());
  if (brace == std::string::npos) return false;
  name = text.substr(open.size(), brace - open.size());
  args = Json::parse(
      gemma4ArgsAsJson(std::string_view(text).substr(brace, text.size() - close.size() - brace)),
      nullptr, false);
  return !args.is_discarded();
}

TEST(GrammarTools, RandomCallsNameAToolAndTheirArgumentsValidate) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto vocab = gemmaVocabPtr(*tok);
  const std::vector<ToolSpec> tools = toolSuite();
  std::mt19937_64 rng(16);
  std::set<std::string> called;
  for (ToolSyntax syntax : {ToolSyntax::kGemma4, ToolSyntax::kJson}) {
    auto g = compileToolCalls(tools, syntax, nullptr, smallOptions());
    ASSERT_TRUE(g.ok()) << g.status().toString();
    for (int i = 0; i < 60; ++i) {
      Matcher m(g.value(), vocab);
      Walk walk = randomWalk(m, *vocab, rng, 4000);
      ASSERT_TRUE(walk.ended);
      const std::string text = tok->decode(walk.ids, true);
      std::string name;
      Json args;
      ASSERT_TRUE(splitCall(text, syntax, name, args)) << text;
      auto tool = std::find_if(tools.begin(), tools.end(),
                               [&](const ToolSpec& t) { return t.name == name; });
      ASSERT_NE(tool, tools.end()) << text;
      called.insert(name);
      const Json schema = tool->parameters.is_null() ? Json{{"type", "object"}} : tool->parameters;
      std::string why;
      EXPECT_TRUE(args.is_object()) << text;
      EXPECT_TRUE(validate(args, schema, schema, why)) << why << " in " << text;
    }
  }
  EXPECT_GE(called.size(), tools.size() / 2) << "the walks should reach most tools";
}

TEST(GrammarTools, CallOrAnswerAndTheMarkersAsSpecialTokens) {
  // Gemma 4's <|tool_call> is one special token: writable only when the vocabulary index says so.
  std::vector<std::string> bytes = {"<|tool_call>", "call:", "f", "{", "}", "<tool_call|>",
                                    "\"",           "a",     ":", "1", "g", "<eos>"};
  auto vocab = std::make_shared<const VocabIndex>(bytes, std::vector<int32_t>{11});
  auto answer = compileSchema(Json::parse(R"({"type":"object","properties":{"a":{"type":
      "integer"}},"required":["a"],"additionalProperties":false})"),
                              {}, "schema");
  ASSERT_TRUE(answer.ok());
  std::vector<ToolSpec> tools = {{"f", nullptr}, {"g", Json::parse(R"({"type":"object",
      "properties":{"a":{"type":"integer"}},"required":["a"]})")}};
  auto g = compileToolCalls(tools, ToolSyntax::kGemma4, answer.value());
  ASSERT_TRUE(g.ok()) << g.status().toString();
  Matcher call(g.value(), vocab);
  EXPECT_TRUE(call.accept(0));
  EXPECT_TRUE(call.accept(1));
  EXPECT_FALSE(call.allows(7));  // "a": no tool is named so
  EXPECT_TRUE(call.accept(10));  // g
  EXPECT_TRUE(call.acceptBytes("{a:1}"));  // Gemma 4's own syntax; the JSON answer is JSON
  EXPECT_FALSE(call.canEnd());
  EXPECT_TRUE(call.accept(5));
  EXPECT_TRUE(call.mustEnd());
  EXPECT_TRUE(call.accept(11));
  Matcher text(g.value(), vocab);
  EXPECT_TRUE(text.acceptBytes("{\"a\":12}"));
  EXPECT_TRUE(text.canEnd());
  Matcher bad(g.value(), vocab);
  EXPECT_FALSE(bad.acceptBytes("<|tool_call>call:h"));
  EXPECT_FALSE(bad.acceptBytes("<|tool_call>call:g{}")) << "g requires a";
}

// Random steps until the call that was just opened is closed (the matcher can end again).
std::vector<int32_t> finishCall(Matcher& m, const VocabIndex& vocab, std::mt19937_64& rng) {
  std::vector<int32_t> ids;
  std::vector<uint64_t> mask(vocab.maskWords());
  for (int step = 0; step < 4000 && !m.canEnd(); ++step) {
    m.fillMask(mask);
    std::vector<int32_t> allowed = allowedIds(mask), structural;
    if (allowed.empty()) break;
    for (int32_t id : allowed) {
      if (vocab.bytes(id).find_first_of("\"{}[],:<") != std::string::npos) structural.push_back(id);
    }
    const auto& pool = (!structural.empty() && rng() % 2 == 0) ? structural : allowed;
    const int32_t id = pool[rng() % pool.size()];
    EXPECT_TRUE(m.accept(id));
    ids.push_back(id);
  }
  return ids;
}

TEST(GrammarTools, FreeTextWhereEachMarkerOpensAValidCall) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto vocab = gemmaVocabPtr(*tok);
  const std::vector<ToolSpec> tools = toolSuite();
  auto g = compileTextWithToolCalls(tools, 2, smallOptions());
  ASSERT_TRUE(g.ok()) << g.status().toString();
  std::mt19937_64 rng(44);
  std::vector<uint64_t> mask(vocab->maskWords());
  for (int i = 0; i < 16; ++i) {
    Matcher m(g.value(), vocab);
    // Free text: any token without '<' is allowed, and the mask agrees with allows().
    for (int step = 0; step < 3; ++step) {
      m.fillMask(mask);
      EXPECT_TRUE(m.canEnd());
      for (int probe = 0; probe < 50; ++probe) {
        const int32_t id = static_cast<int32_t>(rng() % vocab->vocabSize());
        EXPECT_EQ(bit(mask, id), m.allows(id)) << id << " '" << vocab->bytes(id) << "'";
        if (!vocab->bytes(id).empty() && !vocab->isEnd(id) &&
            vocab->bytes(id).find('<') == std::string::npos) {
          EXPECT_TRUE(bit(mask, id)) << vocab->bytes(id);
        }
      }
      std::vector<int32_t> ids = allowedIds(mask);
      ASSERT_TRUE(m.accept(ids[rng() % ids.size()]));
    }
    ASSERT_TRUE(m.acceptBytes(" <b> <|tool <|tool_call>"));
    EXPECT_FALSE(m.canEnd());
    std::vector<int32_t> call = finishCall(m, *vocab, rng);
    ASSERT_TRUE(m.canEnd()) << "the call did not close: " << tok->decode(call, true);
    std::string text = "<|tool_call>" + tok->decode(call, true);
    text.resize(text.rfind("<tool_call|>") + 12);  // the last token may go on with text
    std::string name;
    Json args;
    ASSERT_TRUE(splitCall(text, ToolSyntax::kGemma4, name, args)) << text;
    auto tool = std::find_if(tools.begin(), tools.end(),
                             [&](const ToolSpec& t) { return t.name == name; });
    ASSERT_NE(tool, tools.end()) << text;
    const Json schema = tool->parameters.is_null() ? Json{{"type", "object"}} : tool->parameters;
    std::string why;
    EXPECT_TRUE(validate(args, schema, schema, why)) << why << " in " << text;
  }
  // At most max_calls calls; with none allowed the marker cannot be written at all.
  Matcher two(g.value(), vocab);
  ASSERT_TRUE(two.acceptBytes("<|tool_call>call:no_params{}<tool_call|>x<|tool_call>call:"
                              "no_params{}<tool_call|>"));
  EXPECT_TRUE(two.acceptBytes("<|tool_cal"));
  EXPECT_FALSE(two.acceptBytes("l>"));
  auto none = compileTextWithToolCalls(tools, 0, smallOptions());
  ASSERT_TRUE(none.ok());
  Matcher text(none.value(), vocab);
  EXPECT_TRUE(text.acceptBytes("a < b <|tool_call"));
  EXPECT_FALSE(text.acceptBytes(">"));
  EXPECT_TRUE(text.acceptBytes("!"));
  EXPECT_FALSE(text.acceptBytes("<|tool_call>"));
  EXPECT_FALSE(text.accept(*tok->idOf("<start_of_turn>")));
  EXPECT_TRUE(text.accept(tok->endOfTurnId()));
}

TEST(GrammarTools, SpecialTokensWritableOnlyWhenNamed) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  const int32_t turn = *tok->idOf("<start_of_turn>");
  EXPECT_EQ(gemmaVocabPtr(*tok)->bytes(turn), "");
  auto vocab = VocabIndex::fromTokenizer(*tok, {tok->eosId()}, {"<start_of_turn>"});
  EXPECT_EQ(vocab->bytes(turn), "<start_of_turn>");
  EXPECT_EQ(vocab->bytes(tok->bosId()), "");
}

// Gemma 4's calls are forced in its own argument syntax, as its chat template renders them: bare
// keys, strings between <|"|> tokens (no escapes: quotes and backslashes are plain), enums alike,
// numbers, booleans, null, arrays and nested objects as in JSON. JSON arguments are refused.
TEST(GrammarTools, Gemma4ArgumentsInItsOwnSyntax) {
  std::vector<std::string> bytes;
  for (int b = 1; b < 128; ++b) bytes.push_back(std::string(1, static_cast<char>(b)));
  const int32_t end = static_cast<int32_t>(bytes.size());
  bytes.push_back("<eos>");
  bytes.push_back("<|tool_call>");
  bytes.push_back("<tool_call|>");
  bytes.push_back("<|\"|>");
  auto vocab = std::make_shared<const VocabIndex>(bytes, std::vector<int32_t>{end});
  const Json params = Json::parse(R"({"type":"object","properties":{
      "city":{"type":"string"},"days":{"type":"integer"},"unit":{"enum":["c","f"]},
      "tags":{"type":"array","items":{"type":"string"}},"exact":{"type":"boolean"},
      "where":{"type":"object","properties":{"lat":{"type":"number"},"odd key":{"type":"null"}},
               "required":["lat"]},
      "extra":{"type":"object","additionalProperties":{"type":"integer"}}},
      "required":["city"],"additionalProperties":false})");
  auto g = compileToolCalls({{"weather", params}}, ToolSyntax::kGemma4);
  ASSERT_TRUE(g.ok()) << g.status().toString();
  auto accepts = [&](std::string_view text) {
    Matcher m(g.value(), vocab);
    return m.acceptBytes(text) && m.mustEnd();
  };
  const std::string q = "<|\"|>";
  const std::string call = "<|tool_call>call:weather{city:" + q + "Paris \"Rive\\Gauche\"" + q +
                           ",days:3,exact:false,extra:{" + q + "k" + q + ":1},tags:[" + q + "a" +
                           q + "," + q + "<b|>" + q + "],unit:" + q + "c" + q +
                           ",where:{lat:-1.5," + q + "odd key" + q + ":null}}<tool_call|>";
  EXPECT_TRUE(accepts(call)) << call;
  EXPECT_TRUE(accepts("<|tool_call>call:weather{city:" + q + q + "}<tool_call|>"));
  EXPECT_FALSE(accepts("<|tool_call>call:weather{\"city\":\"Paris\"}<tool_call|>"));
  EXPECT_FALSE(accepts("<|tool_call>call:weather{city:\"Paris\"}<tool_call|>"));
  EXPECT_FALSE(accepts("<|tool_call>call:weather{city :" + q + "x" + q + "}<tool_call|>"))
      << "the reader would take the space into the key";
  EXPECT_FALSE(accepts("<|tool_call>call:weather{city:" + q + "x" + q + ",unit:" + q + "k" + q +
                       "}<tool_call|>"))
      << "not in the enum";
  EXPECT_FALSE(accepts("<|tool_call>call:weather{days:1}<tool_call|>")) << "city is required";
  // What it accepts reads as JSON arguments that validate against the schema.
  const size_t brace = call.find('{');
  const Json args =
      Json::parse(gemma4ArgsAsJson(std::string_view(call).substr(brace, call.size() - brace - 12)),
                  nullptr, false);
  ASSERT_TRUE(args.is_object()) << gemma4ArgsAsJson(call.substr(brace));
  EXPECT_EQ(args["city"], "Paris \"Rive\\Gauche\"");
  EXPECT_EQ(args["tags"], Json::array({"a", "<b|>"}));
  std::string why;
  EXPECT_TRUE(validate(args, params, params, why)) << why;
  // Enum and const values are written as the template writes them.
  EXPECT_EQ(gemma4Value(Json::parse(R"({"b":[1,"x"],"a key":true,"c":null})")),
            "{" + q + "a key" + q + ":true,b:[1," + q + "x" + q + "],c:null}");
  // Free text with calls takes the same syntax.
  auto text = compileTextWithToolCalls({{"weather", params}}, 2);
  ASSERT_TRUE(text.ok());
  Matcher t(text.value(), vocab);
  EXPECT_TRUE(t.acceptBytes("Let me look. <|tool_call>call:weather{city:" + q + "Oslo" + q +
                            "}<tool_call|> done"));
  EXPECT_FALSE(t.acceptBytes("<|tool_call>call:weather{\"city\""));
}

TEST(GrammarTools, RejectsParametersItCannotEnforceByPath) {
  std::vector<ToolSpec> tools = {
      {"ok", nullptr},
      {"bad", Json::parse(R"({"type":"object","properties":{"s":{"type":"string",
          "pattern":"^a"}}})")}};
  auto g = compileToolCalls(tools, ToolSyntax::kJson);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().param(), "tools[1].function.parameters.properties.s.pattern");
  auto scalar = compileToolCalls({{"s", Json{{"type", "string"}}}}, ToolSyntax::kJson);
  ASSERT_FALSE(scalar.ok());
  EXPECT_EQ(scalar.status().param(), "tools[0].function.parameters");
  EXPECT_FALSE(compileToolCalls({}, ToolSyntax::kJson).ok());
}

// ---- compile errors and the cache ---------------------------------------------------------------

TEST(GrammarSchema, RejectsUnsupportedKeywordsByPath) {
  struct Case {
    const char* schema;
    const char* param;
  };
  const Case cases[] = {
      {R"({"type":"object","properties":{"name":{"type":"string","pattern":"^a"}}})",
       "response_format.json_schema.schema.properties.name.pattern"},
      {R"({"type":"object","properties":{"n":{"type":"number","minimum":0}}})",
       "response_format.json_schema.schema.properties.n.minimum"},
      {R"({"oneOf":[{"type":"string"}]})", "response_format.json_schema.schema.oneOf"},
      {R"({"allOf":[{"type":"string"}]})", "response_format.json_schema.schema.allOf"},
      {R"({"type":"array","items":[{"type":"string"}]})",
       "response_format.json_schema.schema.items"},
      {R"({"type":"string","format":"date"})", "response_format.json_schema.schema.format"},
      {R"({"anyOf":[{"type":"string"},{"not":{}}]})",
       "response_format.json_schema.schema.anyOf[1].not"},
      {R"({"$ref":"https://example.com/s.json"})", "response_format.json_schema.schema.$ref"},
      {R"({"type":"object","properties":{"a":{"type":"string"}},"required":["b"]})",
       "response_format.json_schema.schema.required"},
      // strict: every schema names its type (OpenAI's strict mode).
      {R"({"type":"object","properties":{"a":{"description":"any value"}},"required":["a"]})",
       "response_format.json_schema.schema.properties.a"},
      {R"({"properties":{"a":{"type":"string"}}})", "response_format.json_schema.schema"},
      {R"({"type":"thing"})", "response_format.json_schema.schema.type"},
      {R"({"$defs":{"x":{"type":"object","properties":{"y":{"$ref":"#/$defs/x"}},
           "required":["y"]}},"$ref":"#/$defs/x"})",
       "response_format.json_schema.schema"},
  };
  for (const auto& c : cases) {
    Json rf = {
        {"type", "json_schema"},
        {"json_schema", {{"name", "t"}, {"schema", Json::parse(c.schema)}, {"strict", true}}}};
    auto g = compileResponseFormat(rf);
    ASSERT_FALSE(g.ok()) << c.schema;
    EXPECT_EQ(g.status().code(), api::ErrorCode::kInvalidRequest);
    EXPECT_EQ(g.status().param(), c.param) << g.status().message();
  }
  auto bad = compileResponseFormat(Json{{"type", "yaml"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().param(), "response_format.type");
  auto text = compileResponseFormat(Json{{"type", "text"}});
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text.value(), nullptr);
}

TEST(GrammarCache, ReusesCompiledGrammarsAndEvictsTheOldest) {
  GrammarCache cache(2);
  auto rf = [](const char* type) {
    return Json{{"type", "json_schema"}, {"json_schema", {{"schema", {{"type", type}}}}}};
  };
  auto a = cache.get(rf("string"));
  auto a2 = cache.get(rf("string"));
  ASSERT_TRUE(a.ok() && a2.ok());
  EXPECT_EQ(a.value(), a2.value());
  EXPECT_EQ(cache.hits(), 1u);
  ASSERT_TRUE(cache.get(rf("number")).ok());
  ASSERT_TRUE(cache.get(rf("integer")).ok());
  EXPECT_EQ(cache.size(), 2u);
  auto a3 = cache.get(rf("string"));  // evicted: compiled again
  EXPECT_NE(a3.value(), a.value());
  EXPECT_EQ(cache.hits(), 1u);
  EXPECT_FALSE(cache.get(rf("thing")).ok());
}

// ---- property order, untyped tool parameters, the tool grammar cache ----------------------------

// A schema whose properties are declared out of alphabetical order, in objects nested directly,
// through $defs/$ref, and in an item schema.
constexpr const char* kOrderedSchema = R"({"type":"object","properties":{
    "zeta":{"type":"integer"},
    "alpha":{"type":"object","properties":{"z2":{"type":"boolean"},"a2":{"type":"null"}},
      "required":["z2","a2"],"additionalProperties":false},
    "mid":{"$ref":"#/$defs/point"},
    "list":{"type":"array","items":{"type":"object","properties":{"q":{"type":"null"},
      "b":{"type":"boolean"}},"required":["q","b"],"additionalProperties":false},"maxItems":2}},
  "required":["zeta","alpha","mid","list"],"additionalProperties":false,
  "$defs":{"point":{"type":"object","properties":{"y":{"type":"integer"},"x":{"type":"integer"}},
    "required":["y","x"],"additionalProperties":false}}})";

api::KeyOrder orderOf(const char* text) { return api::captureKeyOrders(text, {""})[""]; }

std::vector<std::string> keysOf(const nlohmann::ordered_json& object) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : object.items()) keys.push_back(k);
  return keys;
}

using Keys = std::vector<std::string>;

// Checks a generated instance of kOrderedSchema, read with its key order kept.
void expectSchemaOrder(const std::string& text, bool ordered) {
  const auto v = nlohmann::ordered_json::parse(text, nullptr, false);
  ASSERT_TRUE(v.is_object()) << text;
  EXPECT_EQ(keysOf(v), ordered ? Keys({"zeta", "alpha", "mid", "list"})
                               : Keys({"alpha", "list", "mid", "zeta"}))
      << text;
  EXPECT_EQ(keysOf(v["alpha"]), ordered ? Keys({"z2", "a2"}) : Keys({"a2", "z2"})) << text;
  EXPECT_EQ(keysOf(v["mid"]), ordered ? Keys({"y", "x"}) : Keys({"x", "y"})) << text;
  for (const auto& item : v["list"]) {
    EXPECT_EQ(keysOf(item), ordered ? Keys({"q", "b"}) : Keys({"b", "q"})) << text;
  }
}

TEST(GrammarOrder, PropertiesInTheOrderTheBodyDeclaredThem) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto vocab = gemmaVocabPtr(*tok);
  const Json schema = Json::parse(kOrderedSchema);
  const api::KeyOrder order = orderOf(kOrderedSchema);
  ASSERT_FALSE(order.empty());
  std::mt19937_64 rng(3);
  for (bool ordered : {true, false}) {
    Json rf = {{"type", "json_schema"}, {"json_schema", {{"name", "o"}, {"schema", schema}}}};
    auto g = compileResponseFormat(rf, smallOptions(), ordered ? &order : nullptr);
    ASSERT_TRUE(g.ok()) << g.status().toString();
    for (int i = 0; i < 12; ++i) {
      Matcher m(g.value(), vocab);
      Walk walk = randomWalk(m, *vocab, rng, 4000);
      ASSERT_TRUE(walk.ended);
      const std::string text = tok->decode(walk.ids, true);
      std::string why;
      EXPECT_TRUE(validate(Json::parse(text), schema, schema, why)) << why << " in " << text;
      expectSchemaOrder(text, ordered);
    }
  }
}

TEST(GrammarOrder, ToolArgumentsInDeclaredOrderInBothSyntaxes) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto vocab = gemmaVocabPtr(*tok);
  std::vector<ToolSpec> tools = {{"f", Json::parse(kOrderedSchema), orderOf(kOrderedSchema)}};
  std::mt19937_64 rng(4);
  for (ToolSyntax syntax : {ToolSyntax::kGemma4, ToolSyntax::kJson}) {
    auto g = compileToolCalls(tools, syntax, nullptr, smallOptions());
    ASSERT_TRUE(g.ok()) << g.status().toString();
    for (int i = 0; i < 8; ++i) {
      Matcher m(g.value(), vocab);
      Walk walk = randomWalk(m, *vocab, rng, 4000);
      ASSERT_TRUE(walk.ended);
      const std::string text = tok->decode(walk.ids, true);
      std::string args;
      if (syntax == ToolSyntax::kJson) {
        args = nlohmann::ordered_json::parse(text)["parameters"].dump();
      } else {
        const size_t brace = text.find('{');
        const size_t close = text.rfind("<tool_call|>");
        ASSERT_TRUE(brace != std::string::npos && close != std::string::npos) << text;
        args = gemma4ArgsAsJson(std::string_view(text).substr(brace, close - brace));
      }
      expectSchemaOrder(args, true);
    }
  }
}

TEST(GrammarOrder, OrderIsPartOfTheCacheKey) {
  const char* a = R"({"type":"object","properties":{"b":{"type":"null"},"a":{"type":"null"}},
      "required":["a","b"],"additionalProperties":false})";
  const char* b = R"({"type":"object","properties":{"a":{"type":"null"},"b":{"type":"null"}},
      "required":["a","b"],"additionalProperties":false})";
  const Json rf = {{"type", "json_schema"}, {"json_schema", {{"schema", Json::parse(a)}}}};
  ASSERT_EQ(Json::parse(a), Json::parse(b));  // the same value; only the order differs
  const api::KeyOrder oa = orderOf(a), ob = orderOf(b);
  GrammarCache cache;
  auto ga = cache.get(rf, {}, &oa);
  auto gb = cache.get(rf, {}, &ob);
  ASSERT_TRUE(ga.ok() && gb.ok());
  EXPECT_NE(ga.value(), gb.value());
  EXPECT_EQ(cache.hits(), 0u);
  auto vocab = std::make_shared<const VocabIndex>(std::vector<std::string>{"x", "<eos>"},
                                                  std::vector<int32_t>{1});
  Matcher ma(ga.value(), vocab), mb(gb.value(), vocab);
  EXPECT_TRUE(ma.acceptBytes(R"({"b":null,"a":null})"));
  EXPECT_TRUE(mb.acceptBytes(R"({"a":null,"b":null})"));
  Matcher wrong(ga.value(), vocab);
  EXPECT_FALSE(wrong.acceptBytes(R"({"a":null,"b":null})"));
  auto again = cache.get(rf, {}, &oa);
  EXPECT_EQ(again.value(), ga.value());
  EXPECT_EQ(cache.hits(), 1u);
}

TEST(GrammarTools, ParametersWithoutTypeAreObjectsAndUntypedPropertiesAnyValue) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto vocab = gemmaVocabPtr(*tok);
  const std::vector<ToolSpec> tools = {
      {"implied", Json::parse(R"({"properties":{"n":{"type":"integer"},"ok":{"type":"boolean"}},
           "required":["n","ok"]})")},
      {"empty", Json::object()},
      {"untyped", Json::parse(R"({"type":"object","properties":{
           "v":{"description":"any value"}},"required":["v"]})")}};
  std::mt19937_64 rng(5);
  for (ToolSyntax syntax : {ToolSyntax::kGemma4, ToolSyntax::kJson}) {
    for (const ToolSpec& tool : tools) {
      auto g = compileToolCalls({tool}, syntax, nullptr, smallOptions());
      ASSERT_TRUE(g.ok()) << tool.name << ": " << g.status().toString();
      for (int i = 0; i < 10; ++i) {
        Matcher m(g.value(), vocab);
        Walk walk = randomWalk(m, *vocab, rng, 4000);
        ASSERT_TRUE(walk.ended);
        const std::string text = tok->decode(walk.ids, true);
        std::string name;
        Json args;
        ASSERT_TRUE(splitCall(text, syntax, name, args)) << text;
        EXPECT_EQ(name, tool.name);
        ASSERT_TRUE(args.is_object()) << text;
        std::string why;
        EXPECT_TRUE(validate(args, tool.parameters, tool.parameters, why)) << why << " " << text;
        if (tool.name == "implied") EXPECT_TRUE(args["n"].is_number_integer()) << text;
        if (tool.name == "untyped") EXPECT_TRUE(args.contains("v")) << text;
      }
    }
  }
  // Outside strict mode a response_format schema may leave types out too.
  Json rf = {{"type", "json_schema"},
             {"json_schema",
              {{"name", "t"}, {"schema", tools[2].parameters}, {"strict", false}}}};
  EXPECT_TRUE(compileResponseFormat(rf).ok());
  // A function with strict: true is held to OpenAI's strict mode: an untyped property is a 400
  // naming it (and the same tools without strict compile, under another cache key).
  ToolSpec strict = tools[2];
  strict.strict = true;
  auto refused = compileToolCalls({strict}, ToolSyntax::kJson, nullptr, smallOptions());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_NE(refused.status().param().find("tools[0].function.parameters.properties.v"),
            std::string::npos)
      << refused.status().param();
  EXPECT_NE(toolGrammarKey({strict}, ToolSyntax::kJson, 1, "", {}),
            toolGrammarKey({tools[2]}, ToolSyntax::kJson, 1, "", {}));
}

TEST(GrammarCache, ToolGrammarsByTheirCanonicalText) {
  const std::vector<ToolSpec> tools = {
      {"f", Json::parse(R"({"type":"object","properties":{"a":{"type":"integer"}}})")}};
  GrammarCache cache;
  int compiles = 0;
  auto get = [&](const std::vector<ToolSpec>& t, ToolSyntax syntax, int max_calls) {
    return cache.getOrCompile(toolGrammarKey(t, syntax, max_calls, ""), [&] {
      ++compiles;
      return max_calls < 0 ? compileToolCalls(t, syntax) : compileTextWithToolCalls(t, max_calls);
    });
  };
  auto first = get(tools, ToolSyntax::kJson, -1);
  auto second = get(tools, ToolSyntax::kJson, -1);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first.value(), second.value());
  EXPECT_EQ(compiles, 1);
  EXPECT_EQ(cache.hits(), 1u);
  ASSERT_TRUE(get(tools, ToolSyntax::kGemma4, -1).ok());
  ASSERT_TRUE(get(tools, ToolSyntax::kGemma4, 1).ok());
  ASSERT_TRUE(get(tools, ToolSyntax::kGemma4, 16).ok());
  const std::vector<ToolSpec> reordered = {
      {"f", tools[0].parameters,
       orderOf(R"({"type":"object","properties":{"a":{"type":"integer"}}})")}};
  ASSERT_TRUE(get(reordered, ToolSyntax::kJson, -1).ok());
  EXPECT_EQ(compiles, 5) << "syntax, max_calls and the key order are part of the key";
  EXPECT_FALSE(get({{"bad", Json{{"type", "string"}}}}, ToolSyntax::kJson, -1).ok());
  EXPECT_EQ(cache.size(), 5u) << "failures are not kept";
}

// ---- through the sampler ------------------------------------------------------------------------

namespace sampling {

// A small vocabulary where noise logits would write anything: the grammar decides.
struct SmallVocab {
  std::vector<std::string> bytes = {"{", "}", "[", "]", "\"",     ":",   ",",    " ",    "1",
                                    "-", ".", "a", "b", "\"a\":", "\",", "true", "null", "x"};
  int32_t end_id = static_cast<int32_t>(bytes.size());  // bytes "" : never text
  std::shared_ptr<const VocabIndex> index() const {
    std::vector<std::string> b = bytes;
    b.push_back("");
    return std::make_shared<const VocabIndex>(b, std::vector<int32_t>{end_id});
  }
};

TEST(GrammarSampler, NoiseLogitsStillGiveValidJsonAndMaskedLogprobs) {
  SmallVocab sv;
  auto vocab = sv.index();
  const Json schema = Json::parse(R"({"type":"object","properties":{
      "a":{"type":"array","items":{"anyOf":[{"type":"integer"},{"type":"string"}]},"maxItems":3},
      "b":{"type":["boolean","null"]}},"required":["a","b"],"additionalProperties":false})");
  GrammarOptions o;
  o.max_string_bytes = 6;
  auto g = compileSchema(schema, o, "schema");
  ASSERT_TRUE(g.ok()) << g.status().toString();
  const int32_t v = vocab->vocabSize();
  std::mt19937_64 noise(11);
  std::normal_distribution<float> dist(0.0f, 4.0f);
  for (int run = 0; run < 40; ++run) {
    SamplingParams p;
    p.temperature = 1.0f;
    p.has_seed = true;
    p.seed = 100 + run;
    p.top_logprobs = 20;
    p.grammar = g.value();
    p.grammar_vocab = vocab;
    Sampler sampler(p, v);
    std::string text;
    bool ended = false;
    for (int step = 0; step < 500 && !ended; ++step) {
      std::vector<float> logits(v);
      for (float& x : logits) x = dist(noise);
      TokenChoice c = sampler.sample(logits.data(), v);
      ASSERT_TRUE(c.status.ok()) << c.status.toString();
      double mass = 0;
      for (const auto& [id, lp] : c.top) mass += std::exp(lp);
      EXPECT_NEAR(mass, 1.0, 1e-3) << "top logprobs cover the allowed tokens only";
      sampler.accept(c.token);
      if (c.token == sv.end_id) {
        ended = true;
      } else {
        text += sv.bytes[c.token];
      }
    }
    ASSERT_TRUE(ended) << text;
    EXPECT_FALSE(sampler.grammarComplete());  // finished: nothing more may come
    Json value = Json::parse(text, nullptr, false);
    ASSERT_FALSE(value.is_discarded()) << text;
    std::string why;
    EXPECT_TRUE(validate(value, schema, schema, why)) << why << " in " << text;
  }
}

// A mask prepared ahead (on another thread, as the scheduler does during the forward pass) is
// the one sample() would compute: the same seed draws the same tokens with the same logprobs.
TEST(GrammarSampler, PreparedMasksDrawWhatInlineMasksDraw) {
  SmallVocab sv;
  auto vocab = sv.index();
  auto g = compileSchema(Json::parse(R"({"type":"object","properties":{
      "a":{"type":"array","items":{"anyOf":[{"type":"integer"},{"type":"string"}]},"maxItems":3},
      "b":{"type":["boolean","null"]}},"required":["a","b"],"additionalProperties":false})"),
                         GrammarOptions{.max_string_bytes = 6}, "schema");
  ASSERT_TRUE(g.ok()) << g.status().toString();
  const int32_t v = vocab->vocabSize();
  SamplingParams p;
  p.temperature = 1.0f;
  p.has_seed = true;
  p.seed = 7;
  p.grammar = g.value();
  p.grammar_vocab = vocab;
  Sampler inline_masks(p, v), prepared(p, v);
  std::mt19937_64 noise(3);
  std::normal_distribution<float> dist(0.0f, 4.0f);
  int steps = 0;
  for (; steps < 300; ++steps) {
    std::vector<float> logits(v);
    for (float& x : logits) x = dist(noise);
    std::vector<float> copy = logits;
    std::thread([&] { prepared.prepareMask(); }).join();
    TokenChoice a = inline_masks.sample(logits.data(), v);
    TokenChoice b = prepared.sample(copy.data(), v);
    ASSERT_TRUE(a.status.ok() && b.status.ok()) << a.status.toString() << " at step " << steps;
    ASSERT_EQ(a.token, b.token) << "step " << steps;
    EXPECT_EQ(a.logprob, b.logprob);
    inline_masks.accept(a.token);
    prepared.accept(b.token);
    if (a.token == sv.end_id) break;
  }
  EXPECT_LT(steps, 300) << "the value never ended";
  // accept() drops a prepared mask: one prepared before a token is never used after it.
  p.temperature = 0;
  Sampler stale(p, v);
  std::vector<float> logits(v, 0.0f);
  logits[0] = 10;  // "{", allowed only first
  stale.prepareMask();
  TokenChoice first = stale.sample(logits.data(), v);
  ASSERT_TRUE(first.status.ok());
  ASSERT_EQ(sv.bytes[first.token], "{");
  stale.prepareMask();  // allows "{"
  stale.accept(first.token);
  std::fill(logits.begin(), logits.end(), 0.0f);
  logits[0] = 10;
  TokenChoice second = stale.sample(logits.data(), v);
  ASSERT_TRUE(second.status.ok());
  EXPECT_NE(sv.bytes[second.token], "{") << "the mask prepared before '{' was used after it";
}

TEST(GrammarSampler, LogitBiasCannotReviveAMaskedToken) {
  SmallVocab sv;
  auto vocab = sv.index();
  auto g = compileSchema(Json::parse(R"({"type":"boolean"})"), {}, "schema");
  ASSERT_TRUE(g.ok());
  SamplingParams p;
  p.temperature = 0;
  p.logit_bias = {{11, 100.0f}};  // "a"
  p.grammar = g.value();
  p.grammar_vocab = vocab;
  Sampler sampler(p, vocab->vocabSize());
  std::vector<float> logits(vocab->vocabSize(), 0.0f);
  logits[11] = 50.0f;
  TokenChoice c = sampler.sample(logits.data(), vocab->vocabSize());
  ASSERT_TRUE(c.status.ok());
  EXPECT_EQ(sv.bytes[c.token], "true");  // the only allowed token
  EXPECT_NEAR(c.logprob, 0.0f, 1e-5);    // all the masked mass is on it
}

}  // namespace sampling

}  // namespace
}  // namespace engine::grammar
