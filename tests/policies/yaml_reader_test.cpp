#include "policies/yaml_reader.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace policies {
namespace {

// An environment of fixed variables, so that most tests do not depend on the process's.
EnvLookup fakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

YamlReader parseOk(std::string_view text, EnvLookup env = fakeEnv({})) {
  auto r = YamlReader::parse(text, "t.yaml", std::move(env));
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : YamlReader(YAML::Node(), "t.yaml");
}

// A kConfig error whose message starts with `prefix` ("t.yaml:3: a.b: ") and contains `needle`.
testing::AssertionResult isConfigError(const api::Status& s, std::string_view prefix,
                                       std::string_view needle = "") {
  if (s.ok()) return testing::AssertionFailure() << "status is ok";
  if (s.code() != api::ErrorCode::kConfig) {
    return testing::AssertionFailure()
           << "code is " << api::codeName(s.code()) << ": " << s.message();
  }
  if (!s.message().starts_with(prefix)) {
    return testing::AssertionFailure()
           << "message '" << s.message() << "' does not start with '" << prefix << "'";
  }
  if (s.message().find(needle) == std::string::npos) {
    return testing::AssertionFailure()
           << "message '" << s.message() << "' lacks '" << needle << "'";
  }
  return testing::AssertionSuccess();
}

// ---- parsing ---------------------------------------------------------------------------------

TEST(YamlReader, EmptyAndCommentOnlyTextIsANullDocument) {
  for (std::string_view text : {"", "# nothing here\n\n", "---\n"}) {
    YamlReader r = parseOk(text);
    EXPECT_TRUE(r.isNull()) << text;
    EXPECT_TRUE(r.checkNoUnknownKeys({"a"}).ok());
    std::string s = "default";
    EXPECT_TRUE(r.readString("a", &s).ok());
    EXPECT_EQ(s, "default");
  }
}

TEST(YamlReader, SyntaxErrorNamesLineAndColumn) {
  auto r = YamlReader::parse("a: 1\nb: [1, 2\nc: 3\n", "t.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(isConfigError(r.status(), "t.yaml:", "invalid YAML"));
  EXPECT_NE(r.status().message().find("t.yaml:3:"), std::string::npos) << r.status().message();

  auto tab = YamlReader::parse("a:\n\tb: 1\n", "t.yaml");
  ASSERT_FALSE(tab.ok());
  EXPECT_TRUE(isConfigError(tab.status(), "t.yaml:2:", "invalid YAML"));
}

TEST(YamlReader, RejectsMoreThanOneDocument) {
  auto r = YamlReader::parse("a: 1\n---\nb: 2\n", "t.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(isConfigError(r.status(), "t.yaml:3: ", "more than one YAML document"));
}

TEST(YamlReader, DeepNestingIsAnErrorNotACrash) {
  std::string deep(20000, '[');
  deep += std::string(20000, ']');
  auto r = YamlReader::parse(deep, "t.yaml");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), api::ErrorCode::kConfig);
}

TEST(YamlReader, ErrorAtTheTopHasNoPath) {
  YamlReader r = parseOk("- 1\n");
  EXPECT_TRUE(isConfigError(r.expectMap(), "t.yaml:1: expected a map, got a list"));
}

// ---- strings ---------------------------------------------------------------------------------

TEST(YamlReader, ReadsStringsAndKeepsDefaultsForAbsentKeys) {
  YamlReader r = parseOk("a: hello\nb: 'quoted'\nc: 123\nd: \"\"\n");
  std::string a, b, c, d = "x", e = "default";
  ASSERT_TRUE(r.readString("a", &a).ok());
  ASSERT_TRUE(r.readString("b", &b).ok());
  ASSERT_TRUE(r.readString("c", &c).ok());
  ASSERT_TRUE(r.readString("d", &d).ok());
  ASSERT_TRUE(r.readString("e", &e).ok());
  EXPECT_EQ(a, "hello");
  EXPECT_EQ(b, "quoted");
  EXPECT_EQ(c, "123");
  EXPECT_EQ(d, "");
  EXPECT_EQ(e, "default");
}

TEST(YamlReader, RequiredKeyMissingNamesPathAndParentLine) {
  YamlReader r = parseOk("x: 1\nsection:\n  other: 2\nlist:\n  - a: 1\n    b: 2\n");
  std::string out;
  EXPECT_TRUE(isConfigError(r.section("section").readString("name", &out, Presence::kRequired),
                            "t.yaml:2: section.name: is required"));
  EXPECT_TRUE(isConfigError(r.section("absent").readString("name", &out, Presence::kRequired),
                            "t.yaml:1: absent.name: is required"));
  api::Status s = r.forEachItem("list", [&](const YamlReader& item) {
    return item.readString("name", &out, Presence::kRequired);
  });
  EXPECT_TRUE(isConfigError(s, "t.yaml:5: list[0].name: is required"));
}

TEST(YamlReader, NullWhereAScalarIsExpectedIsAnError) {
  YamlReader r = parseOk("a:\nb: ~\nc: null\nd: 'null'\n");
  std::string out;
  EXPECT_TRUE(isConfigError(r.readString("a", &out), "t.yaml:1: a: expected a string, got null",
                            "write \"\""));
  EXPECT_TRUE(isConfigError(r.readString("b", &out), "t.yaml:2: b: expected a string, got null"));
  EXPECT_TRUE(isConfigError(r.readString("c", &out), "t.yaml:3: c: "));
  ASSERT_TRUE(r.readString("d", &out).ok());
  EXPECT_EQ(out, "null");
}

TEST(YamlReader, MapOrListWhereAScalarIsExpected) {
  YamlReader r = parseOk("a: {x: 1}\nb:\n  - 1\n");
  std::string out = "keep";
  EXPECT_TRUE(isConfigError(r.readString("a", &out), "t.yaml:1: a: expected a string, got a map"));
  EXPECT_TRUE(isConfigError(r.readString("b", &out), "t.yaml:3: b: expected a string, got a list"));
  EXPECT_EQ(out, "keep");
}

TEST(YamlReader, ReadNameRejectsEmptyAndWhitespace) {
  YamlReader r = parseOk("a: ''\nb: 'two words'\nc: meta-llama/Llama-3:8b\n");
  std::string out;
  EXPECT_TRUE(isConfigError(r.readName("a", &out), "t.yaml:1: a: must not be empty"));
  EXPECT_TRUE(isConfigError(r.readName("b", &out), "t.yaml:2: b: must not contain whitespace"));
  ASSERT_TRUE(r.readName("c", &out).ok());
  EXPECT_EQ(out, "meta-llama/Llama-3:8b");
}

TEST(YamlReader, ReadChoiceSuggestsTheNearestChoice) {
  YamlReader r = parseOk("type: opneai\nother: zzz\nok: cloud\n");
  std::string out;
  EXPECT_TRUE(isConfigError(r.readChoice("type", &out, {"openai", "local"}),
                            "t.yaml:1: type: must be one of 'openai', 'local', got 'opneai'",
                            "did you mean 'openai'?"));
  api::Status s = r.readChoice("other", &out, {"openai", "local"});
  EXPECT_TRUE(isConfigError(s, "t.yaml:2: other: must be one of"));
  EXPECT_EQ(s.message().find("did you mean"), std::string::npos);
  ASSERT_TRUE(r.readChoice("ok", &out, {"local", "cloud"}).ok());
  EXPECT_EQ(out, "cloud");
}

// ---- numbers and booleans --------------------------------------------------------------------

TEST(YamlReader, ReadsIntegers) {
  YamlReader r = parseOk("a: 42\nb: -7\nc: '8080'\nd: +3\ne: 9223372036854775807\n");
  int a = 0, b = 0, c = 0, d = 0;
  int64_t e = 0;
  ASSERT_TRUE(r.readInt("a", &a, 0, 100).ok());
  ASSERT_TRUE(r.readInt("b", &b, -10, 10).ok());
  ASSERT_TRUE(r.readInt("c", &c, 0, 65535).ok());
  ASSERT_TRUE(r.readInt("d", &d, 0, 10).ok());
  ASSERT_TRUE(r.readInt("e", &e, 0, INT64_MAX).ok());
  EXPECT_EQ(a, 42);
  EXPECT_EQ(b, -7);
  EXPECT_EQ(c, 8080);
  EXPECT_EQ(d, 3);
  EXPECT_EQ(e, INT64_MAX);
}

TEST(YamlReader, RejectsNonIntegers) {
  YamlReader r = parseOk(
      "a: abc\nb: 1.5\nc: 1e3\nd: 0x10\ne: 99999999999999999999\nf: ''\ng: '+-1'\nh: 1 2\n");
  int out = 5;
  EXPECT_TRUE(
      isConfigError(r.readInt("a", &out, 0, 10), "t.yaml:1: a: expected an integer, got 'abc'"));
  EXPECT_TRUE(
      isConfigError(r.readInt("b", &out, 0, 10), "t.yaml:2: b: expected an integer, got '1.5'"));
  EXPECT_TRUE(isConfigError(r.readInt("c", &out, 0, 10), "t.yaml:3: c: expected an integer"));
  EXPECT_TRUE(isConfigError(r.readInt("d", &out, 0, 10), "t.yaml:4: d: expected an integer"));
  EXPECT_TRUE(isConfigError(r.readInt("e", &out, 0, 10), "t.yaml:5: e: ", "out of range"));
  EXPECT_TRUE(isConfigError(r.readInt("f", &out, 0, 10), "t.yaml:6: f: expected an integer"));
  EXPECT_TRUE(isConfigError(r.readInt("g", &out, 0, 10), "t.yaml:7: g: expected an integer"));
  EXPECT_TRUE(isConfigError(r.readInt("h", &out, 0, 10), "t.yaml:8: h: expected an integer"));
  EXPECT_EQ(out, 5);
}

TEST(YamlReader, IntegerRangeNamesTheBound) {
  YamlReader r = parseOk("low: 0\nhigh: 300\nbig: 3000000000\n");
  int out = 0;
  EXPECT_TRUE(isConfigError(r.readInt("low", &out, 1, 256), "t.yaml:1: low: must be >= 1, got 0"));
  EXPECT_TRUE(
      isConfigError(r.readInt("high", &out, 1, 256), "t.yaml:2: high: must be <= 256, got 300"));
  // An int output clamps the range to what an int holds.
  EXPECT_TRUE(
      isConfigError(r.readInt("big", &out, 0, INT64_MAX), "t.yaml:3: big: must be <= 2147483647"));
}

TEST(YamlReader, ReadsFiniteNumbersInRange) {
  YamlReader r = parseOk("a: 1.5\nb: 30\nc: 1e3\nd: -0.25\ne: .5\n");
  double a = 0, b = 0, c = 0, d = 0, e = 0;
  ASSERT_TRUE(r.readDouble("a", &a, NumberRange::positive()).ok());
  ASSERT_TRUE(r.readDouble("b", &b, NumberRange::positive(600)).ok());
  ASSERT_TRUE(r.readDouble("c", &c, {}).ok());
  ASSERT_TRUE(r.readDouble("d", &d, {}).ok());
  ASSERT_TRUE(r.readDouble("e", &e, {}).ok());
  EXPECT_DOUBLE_EQ(a, 1.5);
  EXPECT_DOUBLE_EQ(b, 30);
  EXPECT_DOUBLE_EQ(c, 1000);
  EXPECT_DOUBLE_EQ(d, -0.25);
  EXPECT_DOUBLE_EQ(e, 0.5);
}

TEST(YamlReader, RejectsBadNumbers) {
  YamlReader r =
      parseOk("a: 0\nb: -1\nc: 900\nd: .inf\ne: nan\nf: inf\ng: ten\nh: 1e999\ni: 0.5\n");
  double out = 7;
  EXPECT_TRUE(isConfigError(r.readDouble("a", &out, NumberRange::positive()),
                            "t.yaml:1: a: must be > 0, got 0"));
  EXPECT_TRUE(isConfigError(r.readDouble("b", &out, NumberRange::atLeast(0)),
                            "t.yaml:2: b: must be >= 0, got -1"));
  EXPECT_TRUE(isConfigError(r.readDouble("c", &out, NumberRange::positive(600)),
                            "t.yaml:3: c: must be <= 600, got 900"));
  EXPECT_TRUE(isConfigError(r.readDouble("d", &out, {}), "t.yaml:4: d: expected a finite number"));
  EXPECT_TRUE(isConfigError(r.readDouble("e", &out, {}), "t.yaml:5: e: expected a finite number"));
  EXPECT_TRUE(isConfigError(r.readDouble("f", &out, {}), "t.yaml:6: f: expected a finite number"));
  EXPECT_TRUE(isConfigError(r.readDouble("g", &out, {}), "t.yaml:7: g: expected a finite number"));
  EXPECT_TRUE(isConfigError(r.readDouble("h", &out, {}), "t.yaml:8: h: expected a finite number"));
  EXPECT_TRUE(isConfigError(r.readDouble("i", &out, NumberRange::atLeast(1)),
                            "t.yaml:9: i: must be >= 1, got 0.5"));
  EXPECT_EQ(out, 7);
}

TEST(YamlReader, BooleansAreTrueOrFalseOnly) {
  YamlReader r = parseOk("a: true\nb: False\nc: TRUE\nd: yes\ne: off\nf: 1\ng: 'false'\n");
  bool a = false, b = true, c = false, g = true;
  ASSERT_TRUE(r.readBool("a", &a).ok());
  ASSERT_TRUE(r.readBool("b", &b).ok());
  ASSERT_TRUE(r.readBool("c", &c).ok());
  ASSERT_TRUE(r.readBool("g", &g).ok());
  EXPECT_TRUE(a);
  EXPECT_FALSE(b);
  EXPECT_TRUE(c);
  EXPECT_FALSE(g);
  bool out = false;
  EXPECT_TRUE(isConfigError(r.readBool("d", &out), "t.yaml:4: d: expected true or false, got 'yes'",
                            "YAML 1.1"));
  EXPECT_TRUE(isConfigError(r.readBool("e", &out), "t.yaml:5: e: ", "YAML 1.1"));
  api::Status one = r.readBool("f", &out);
  EXPECT_TRUE(isConfigError(one, "t.yaml:6: f: expected true or false, got '1'"));
  EXPECT_EQ(one.message().find("YAML 1.1"), std::string::npos);
}

// ---- keys ------------------------------------------------------------------------------------

TEST(YamlReader, UnknownKeySuggestsTheClosestAllowedKey) {
  YamlReader r = parseOk("server:\n  port: 1\n  thread: 2\n");
  EXPECT_TRUE(isConfigError(r.section("server").checkNoUnknownKeys({"port", "threads", "listen"}),
                            "t.yaml:3: server.thread: unknown key; did you mean 'threads'?"));
}

TEST(YamlReader, UnknownKeyWithoutSuggestionListsAllowedKeys) {
  YamlReader r = parseOk("a: 1\ncompletely_different: 2\n");
  EXPECT_TRUE(
      isConfigError(r.checkNoUnknownKeys({"a", "b"}),
                    "t.yaml:2: completely_different: unknown key (expected one of 'a', 'b')"));
}

TEST(YamlReader, DuplicateKeyNamesBothLines) {
  YamlReader r = parseOk("a: 1\nb: 2\na: 3\n");
  EXPECT_TRUE(isConfigError(r.checkNoUnknownKeys({"a", "b"}),
                            "t.yaml:3: a: duplicate key (first at line 1)"));
  int out = 0;
  EXPECT_TRUE(isConfigError(r.readInt("b", &out, 0, 9), "t.yaml:3: a: duplicate key"));
}

TEST(YamlReader, NonScalarKeyIsAnError) {
  YamlReader r = parseOk("? [a, b]\n: 1\n");
  EXPECT_TRUE(isConfigError(r.checkNoUnknownKeys({"a"}), "t.yaml:1: ", "map keys must be"));
}

TEST(YamlReader, CheckNoUnknownKeysRequiresAMap) {
  YamlReader r = parseOk("s: [1]\nt: x\nu:\n");
  EXPECT_TRUE(isConfigError(r.section("s").checkNoUnknownKeys({"a"}),
                            "t.yaml:1: s: expected a map, got a list"));
  EXPECT_TRUE(isConfigError(r.section("t").checkNoUnknownKeys({"a"}),
                            "t.yaml:2: t: expected a map, got 'x'"));
  EXPECT_TRUE(r.section("u").checkNoUnknownKeys({"a"}).ok());
  EXPECT_TRUE(r.section("absent").checkNoUnknownKeys({"a"}).ok());
}

TEST(YamlReader, KeysWithDotsAreQuotedInPaths) {
  YamlReader r = parseOk("models:\n  gpt-4.1: x\n");
  api::Status s = r.forEachEntry(
      "models", [](const std::string&, const YamlReader& v) { return v.error("bad"); });
  EXPECT_TRUE(isConfigError(s, "t.yaml:2: models[\"gpt-4.1\"]: bad"));
}

TEST(YamlReader, ErrorAtAbsentKeyUsesTheParentKeyLine) {
  YamlReader r = parseOk("a: 1\nb:\n  c: 2\n");
  EXPECT_TRUE(isConfigError(r.section("b").errorAt("d", "oops"), "t.yaml:2: b.d: oops"));
  EXPECT_TRUE(isConfigError(r.section("b").errorAt("c", "oops"), "t.yaml:3: b.c: oops"));
}

// ---- lists and maps --------------------------------------------------------------------------

TEST(YamlReader, NestedListPathsAndLines) {
  YamlReader r = parseOk(
      "teams:\n"
      "  - name: a\n"
      "    keys: []\n"
      "  - name: b\n"
      "    keys:\n"
      "      - id: k\n"
      "        sha256: nope\n");
  api::Status s = r.forEachItem("teams", [](const YamlReader& team) {
    return team.forEachItem(
        "keys", [](const YamlReader& key) { return key.errorAt("sha256", "bad hash"); });
  });
  EXPECT_TRUE(isConfigError(s, "t.yaml:7: teams[1].keys[0].sha256: bad hash"));
}

TEST(YamlReader, ForEachItemVisitsInOrderAndStopsAtFirstError) {
  YamlReader r = parseOk("xs: [1, 2, 3, 4]\n");
  std::vector<int64_t> seen;
  api::Status s = r.forEachItem("xs", [&](const YamlReader& item) -> api::Status {
    auto v = item.asInt();
    if (!v.ok()) return v.status();
    seen.push_back(*v);
    return *v == 3 ? item.error("three") : api::Status();
  });
  EXPECT_TRUE(isConfigError(s, "t.yaml:1: xs[2]: three"));
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 2, 3}));
}

TEST(YamlReader, NullOrAbsentListHasNoItemsButAMapIsAnError) {
  YamlReader r = parseOk("empty:\n  # all commented out\nmap: {a: 1}\n");
  int calls = 0;
  auto count = [&](const YamlReader&) {
    ++calls;
    return api::Status();
  };
  EXPECT_TRUE(r.forEachItem("empty", count).ok());
  EXPECT_TRUE(r.forEachItem("absent", count).ok());
  EXPECT_EQ(calls, 0);
  EXPECT_TRUE(
      isConfigError(r.forEachItem("map", count), "t.yaml:3: map: expected a list, got a map"));
  EXPECT_TRUE(isConfigError(r.forEachItem("absent", count, Presence::kRequired),
                            "t.yaml:1: absent: is required"));
}

TEST(YamlReader, ForEachEntryKeepsFileOrderAndRejectsDuplicates) {
  YamlReader r = parseOk("p:\n  zeta: 1\n  alpha: 2\nq:\n  a: 1\n  a: 2\n");
  std::vector<std::string> names;
  ASSERT_TRUE(r.forEachEntry("p", [&](const std::string& name, const YamlReader& v) {
                 names.push_back(name + "@" + std::to_string(v.line()) + "=" + v.path());
                 return api::Status();
               }).ok());
  EXPECT_EQ(names, (std::vector<std::string>{"zeta@2=p.zeta", "alpha@3=p.alpha"}));
  auto noop = [](const std::string&, const YamlReader&) { return api::Status(); };
  EXPECT_TRUE(
      isConfigError(r.forEachEntry("q", noop), "t.yaml:6: q.a: duplicate key (first at line 5)"));
}

TEST(YamlReader, IteratesItsOwnListOrMap) {
  YamlReader r = parseOk("list:\n  - a\n  - b\nmap:\n  k1: v1\n  k2:\n    deep: 1\n");
  std::vector<std::string> seen;
  ASSERT_TRUE(r.section("list")
                  .forEachItem([&](const YamlReader& item) -> api::Status {
                    auto text = item.asString();
                    if (!text.ok()) return text.status();
                    seen.push_back(item.path() + "=" + *text);
                    return api::Status();
                  })
                  .ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"list[0]=a", "list[1]=b"}));
  api::Status s = r.section("map").forEachEntry([](const std::string& name, const YamlReader& v) {
    return name == "k2" ? v.keyError("bad name") : api::Status();
  });
  // The value of k2 starts on line 7; the key is on line 6.
  EXPECT_TRUE(isConfigError(s, "t.yaml:6: map.k2: bad name"));
  EXPECT_EQ(r.section("map").section("k2").line(), 7);
  EXPECT_EQ(r.section("map").section("k2").keyLine(), 6);
  EXPECT_TRUE(r.section("absent")
                  .forEachItem([](const YamlReader&) {
                    return api::Status(api::ErrorCode::kInternal, "never called");
                  })
                  .ok());
}

TEST(YamlReader, NullHintOnlyForStrings) {
  YamlReader r = parseOk("n:\n");
  int i = 0;
  api::Status s = r.readInt("n", &i, 0, 1);
  EXPECT_TRUE(isConfigError(s, "t.yaml:1: n: expected an integer, got null"));
  EXPECT_EQ(s.message().find("write"), std::string::npos);
}

TEST(YamlReader, ReadsStringMapsAndLists) {
  YamlReader r = parseOk(
      "h: {X-A: one, X-B: '${TOKEN}'}\n"
      "l: [a, '${TOKEN}', 3]\n"
      "bad_map: {x: [1]}\n"
      "bad_list: [a, {b: c}]\n"
      "empty_map:\n",
      fakeEnv({{"TOKEN", "t0k"}}));
  std::map<std::string, std::string> h = {{"old", "gone"}};
  ASSERT_TRUE(r.readStringMap("h", &h).ok());
  EXPECT_EQ(h, (std::map<std::string, std::string>{{"X-A", "one"}, {"X-B", "t0k"}}));
  std::vector<std::string> l;
  ASSERT_TRUE(r.readStringList("l", &l).ok());
  EXPECT_EQ(l, (std::vector<std::string>{"a", "t0k", "3"}));
  EXPECT_TRUE(isConfigError(r.readStringMap("bad_map", &h),
                            "t.yaml:3: bad_map.x: expected a string, got a list"));
  EXPECT_TRUE(isConfigError(r.readStringList("bad_list", &l),
                            "t.yaml:4: bad_list[1]: expected a string, got a map"));
  ASSERT_TRUE(r.readStringMap("empty_map", &h).ok());
  EXPECT_TRUE(h.empty());
  std::map<std::string, std::string> untouched = {{"k", "v"}};
  ASSERT_TRUE(r.readStringMap("absent", &untouched).ok());
  EXPECT_EQ(untouched.size(), 1u);
}

TEST(YamlReader, AliasesAreResolved) {
  YamlReader r = parseOk("base: &b {port: 1}\ncopy: *b\n");
  int port = 0;
  ASSERT_TRUE(r.section("copy").readInt("port", &port, 0, 9).ok());
  EXPECT_EQ(port, 1);
}

// ---- environment -----------------------------------------------------------------------------

TEST(ExpandEnv, ReplacesVariablesAndDefaults) {
  EnvLookup env = fakeEnv({{"A", "alpha"}, {"EMPTY", ""}, {"TRICKY", "${A}"}});
  auto expand = [&](std::string_view text) {
    auto r = expandEnv(text, env);
    EXPECT_TRUE(r.ok()) << text << ": " << r.status().message();
    return r.ok() ? *r : std::string("<error>");
  };
  EXPECT_EQ(expand("${A}"), "alpha");
  EXPECT_EQ(expand("x-${A}-y"), "x-alpha-y");
  EXPECT_EQ(expand("${A:-zzz}"), "alpha");
  EXPECT_EQ(expand("${UNSET:-fallback}"), "fallback");
  EXPECT_EQ(expand("${UNSET:-}"), "");
  EXPECT_EQ(expand("${EMPTY}"), "");
  EXPECT_EQ(expand("${EMPTY:-used}"), "used");
  EXPECT_EQ(expand("${UNSET:-a:b-c}"), "a:b-c");
  EXPECT_EQ(expand("$${A}"), "${A}");
  EXPECT_EQ(expand("cost $5 and $$ and $"), "cost $5 and $$ and $");
  EXPECT_EQ(expand("${TRICKY}"), "${A}");  // values are not expanded again
  EXPECT_EQ(expand("no variables"), "no variables");
}

TEST(ExpandEnv, Errors) {
  EnvLookup env = fakeEnv({});
  auto unset = expandEnv("${OPENAI_API_KEY}", env);
  ASSERT_FALSE(unset.ok());
  EXPECT_EQ(unset.status().code(), api::ErrorCode::kConfig);
  EXPECT_NE(unset.status().message().find("environment variable OPENAI_API_KEY is not set"),
            std::string::npos);
  for (std::string_view bad : {"${A", "${}", "${1A}", "${A B}", "${A:-${B}}", "${A-b}"}) {
    auto r = expandEnv(bad, env);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), api::ErrorCode::kConfig) << bad;
  }
}

TEST(YamlReader, InterpolatesScalarValuesFromTheEnvironment) {
  YamlReader r = parseOk(
      "port: ${SY_PORT:-9090}\n"
      "on: ${SY_FLAG}\n"
      "key: Bearer ${SY_KEY}\n"
      "missing: ${SY_MISSING}\n"
      "${SY_KEY}: literal key\n",
      fakeEnv({{"SY_FLAG", "true"}, {"SY_KEY", "secret"}}));
  int port = 0;
  bool on = false;
  std::string key;
  ASSERT_TRUE(r.readInt("port", &port, 0, 65535).ok());
  ASSERT_TRUE(r.readBool("on", &on).ok());
  ASSERT_TRUE(r.readString("key", &key).ok());
  EXPECT_EQ(port, 9090);
  EXPECT_TRUE(on);
  EXPECT_EQ(key, "Bearer secret");
  EXPECT_TRUE(isConfigError(r.readString("missing", &key),
                            "t.yaml:4: missing: environment variable SY_MISSING is not set"));
  // Keys are never interpolated.
  EXPECT_TRUE(r.has("${SY_KEY}"));
  EXPECT_FALSE(r.has("secret"));
}

TEST(YamlReader, UsesTheProcessEnvironmentByDefault) {
  ::setenv("SY_YAML_READER_TEST_VAR", "from-env", 1);
  auto r = YamlReader::parse("v: ${SY_YAML_READER_TEST_VAR}\n", "t.yaml");
  ASSERT_TRUE(r.ok());
  std::string v;
  ASSERT_TRUE(r->readString("v", &v).ok());
  EXPECT_EQ(v, "from-env");
  ::unsetenv("SY_YAML_READER_TEST_VAR");
  EXPECT_TRUE(isConfigError(r->readString("v", &v), "t.yaml:1: v: ", "SY_YAML_READER_TEST_VAR"));
}

// ---- suggestions and files -------------------------------------------------------------------

TEST(ClosestMatch, FindsPlausibleTypos) {
  std::vector<std::string_view> keys = {"listen", "port", "threads", "max_body_bytes", "id"};
  EXPECT_EQ(closestMatch("thread", keys), "threads");
  EXPECT_EQ(closestMatch("prot", keys), "port");  // a transposition is one edit
  EXPECT_EQ(closestMatch("PORT", keys), "port");
  EXPECT_EQ(closestMatch("max_body_byte", keys), "max_body_bytes");
  EXPECT_EQ(closestMatch("max_body", keys), "max_body_bytes");  // a prefix
  EXPECT_EQ(closestMatch("x", keys), std::nullopt);
  EXPECT_EQ(closestMatch("po", keys), std::nullopt);  // too short to be a prefix
  EXPECT_EQ(closestMatch("timeout", keys), std::nullopt);
  EXPECT_EQ(closestMatch("anything", {}), std::nullopt);
}

TEST(ReadTextFile, ReadsAndReportsErrors) {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("sy_yaml_reader_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string file = (dir / "a.yaml").string();
  std::ofstream(file) << "a: 1\n";

  auto ok = readTextFile(file);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(*ok, "a: 1\n");

  auto missing = readTextFile((dir / "missing.yaml").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), api::ErrorCode::kIo);
  EXPECT_NE(missing.status().message().find("missing.yaml"), std::string::npos);

  auto directory = readTextFile(dir.string());
  ASSERT_FALSE(directory.ok());
  EXPECT_EQ(directory.status().code(), api::ErrorCode::kIo);

  auto big = readTextFile(file, 3);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), api::ErrorCode::kConfig);
  std::filesystem::remove_all(dir);
}

TEST(YamlReader, NeverThrowsOnOddInput) {
  const char* docs[] = {
      "a: !!binary aGVsbG8=\n",          "? a\n",   "a: &x [*x]\n",           "[a, b]: c\n",
      "a: {b: {c: {d: [1, {e: ~}]}}}\n", "'': 1\n", "a: |\n  multi\n  line\n"};
  for (const char* doc : docs) {
    auto r = YamlReader::parse(doc, "t.yaml");
    if (!r.ok()) continue;
    std::string s;
    int i = 0;
    bool b = false;
    double d = 0;
    std::map<std::string, std::string> m;
    std::vector<std::string> l;
    EXPECT_NO_THROW({
      (void)r->checkNoUnknownKeys({"a"});
      (void)r->readString("a", &s);
      (void)r->readInt("a", &i, 0, 1);
      (void)r->readBool("a", &b);
      (void)r->readDouble("a", &d, {});
      (void)r->readStringMap("a", &m);
      (void)r->readStringList("a", &l);
      (void)r->forEachItem("a", [](const YamlReader& x) { return x.expectMap(); });
      (void)r->forEachEntry(
          "a", [](const std::string&, const YamlReader& x) { return x.asString().status(); });
      (void)r->describe();
    }) << doc;
  }
}

}  // namespace
}  // namespace policies
