// Complexity: a fast score in [0, 1] of how hard a chat request looks, from the request alone,
// before any model has seen it. The Router compares it with the team's trigger to choose the
// local engine, a cloud model, or the cascade.
//
// The score is a logistic model over features that are each normalized to [0, 1]:
//
//     score = 1 / (1 + exp(-(bias + Σ wᵢ·fᵢ)))
//
// Every feature is cheap: one linear pass over the bytes of the message text (no regex, no
// tokenizer, no copies of the text), with phrase tables dispatched on the first byte, so a
// typical request scores in a few microseconds and a 10 MB prompt in 20-160 ms.
//
// Which text counts. Only what the caller wrote reaches the features: system, developer, user
// and tool (and the legacy function) messages. Assistant messages are the model's own earlier
// output; they count as turns and nothing else. For the content features (code, math,
// reasoning, non_latin) the last user message is what is being asked now, so it counts in full
// and every other counted message at half strength:
//
//     f = max(f(last user message), 0.5 · f(all other counted text))
//
// so that the last user turn always weighs at least as much as any older turn, and a long
// system prompt that happens to say "analyze" cannot by itself make every request hard. Length
// and turns are measured over the whole conversation.
//
// The features (names are also the YAML keys of their weights):
//   length             estimated prompt tokens t ≈ bytes/4 of the counted text, log-scaled:
//                      clamp(log2(t) / log2(32768)); 0 up to 1 token, 0.67 at 1k, 1 from 32k.
//   turns              user, assistant and tool messages n: clamp(log2(n) / 4); 0 for a single
//                      message, 0.5 at 4, 1 from 16.
//   code               0.4·[a ``` fence is present] + 0.3·punct + 0.3·min(1, keywords/6), where
//                      punct is the density of code punctuation ({}[]();=<>_|&`\^~#) above the
//                      1.5% of ordinary prose, saturating at 6.5% (texts shorter than 200 bytes
//                      count as 200 bytes, so "f(x)" alone is not code), and keywords counts
//                      whole-word tokens such as `def `, `#include`, `function `, `SELECT `,
//                      `::`, `return `, `if (`.
//   math               0.4·density + 0.6·min(1, markup/4): density of digits and the operators
//                      + - * / ^ = < > % above 3%, saturating at 15%; markup counts LaTeX
//                      commands (\frac, \sum, \int, ...), $...$ and $$...$$ spans, Unicode math
//                      operators (∑ ∫ √ ≤ ...) and words such as "equation", "integral",
//                      "theorem", "eigen...", "probabilit...".
//   reasoning          min(1, hits/4) over case-insensitive phrases at a word start: "step by
//                      step", "prove", "proof", "explain why", "analy...", "compar...",
//                      "derive", "trade-off", "design a", "evaluate", "pros and cons", ...
//   output_length      the requested output cap m (max_completion_tokens, else max_tokens),
//                      log-scaled: clamp(log2(m/256) / log2(32768/256)); 0 when absent or up to
//                      256, 1 from 32k.
//   tools              0 without tools, else 0.5 + 0.5·min(1, (n-1)/7) for n tool definitions.
//   images             0 without images, else 0.5 + 0.5·min(1, (n-1)/3) for n image parts.
//   non_latin          the share of letters (code points) outside the Latin script (CJK, kana,
//                      Hangul, Cyrillic, Greek, Arabic, Hebrew, Indic, Thai, ...) among all
//                      letters; digits, punctuation, symbols and emoji are neutral. At least 0.6
//                      when the text asks for such a language ("into Japanese", "in Russian").
//                      Invalid UTF-8 bytes are skipped.
//   structured_output  response_format json_schema: 0.5 + 0.5·min(1, schema nodes/100);
//                      json_object: 0.25; text or absent: 0.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "api/chat.h"
#include "api/status.h"
#include "policies/yaml_reader.h"

namespace routers {

// The weights of the logistic model, in logits per unit of feature. The defaults are hand-set
// (no router has been trained on quality records yet) against these targets, which
// tests/routers/complexity_test.cpp holds them to:
//   - "hi" scores logistic(bias) ≈ 0.05 and a short factual question ≈ 0.06 (< 0.1, < 0.3);
//   - one signal on its own lands in the middle: a translation into Japanese ≈ 0.18, an agent
//     turn with a long system prompt, six tools and a json_schema ≈ 0.57, a code review with a
//     fenced block ≈ 0.61, a request for a rigorous proof ≈ 0.74;
//   - a long multi-part proof and design request with code scores ≈ 0.98 (> 0.8).
// Reasoning (3.0) and code (2.5) weigh most: they are where a small local model falls short
// first, and either one saturated moves a request from the bias to about 0.5. Math (2.0) is a
// notch lower because arithmetic-looking text (tables, prices) is common in easy requests too.
// Images, non-Latin text, tools and structured output (1.5 each) are real weaknesses of a
// small local model but say little about the difficulty of the question itself; length (1.5)
// and requested output length (1.0) matter mostly through long-context quality; turns (0.5)
// the least, since a long chat is usually a chain of easy steps.
struct ComplexityWeights {
  double bias = -3.0;  // logistic(-3) ≈ 0.047: what a request with no signal at all scores
  double length = 1.5;
  double turns = 0.5;
  double code = 2.5;
  double math = 2.0;
  double reasoning = 3.0;
  double output_length = 1.0;
  double tools = 1.5;
  double images = 1.5;
  double non_latin = 1.5;
  double structured_output = 1.5;

  // Reads an optional map {bias: ..., length: ..., turns: ..., code: ..., math: ...,
  // reasoning: ..., output_length: ..., tools: ..., images: ..., non_latin: ...,
  // structured_output: ...}; absent keys keep their defaults, a null node is all defaults.
  // `bias` is in [-20, 20], every weight in [0, 20] (a feature only ever pushes toward the
  // cloud; 0 turns it off). Unknown keys, non-numbers and values out of range are kConfig
  // errors naming "<file>:<line>: <key.path>: ...".
  static api::StatusOr<ComplexityWeights> read(const policies::YamlReader& r);
};

struct ComplexityScore {
  struct Feature {
    std::string_view name;    // one of the YAML keys above; static storage
    double value = 0;         // the feature, in [0, 1]
    double contribution = 0;  // weight · value, in logits
  };

  double score = 0;               // in [0, 1]
  std::vector<Feature> features;  // every feature, in the order of the table above

  // The `n` features with the largest |contribution|, largest first (ties in table order);
  // features that contribute nothing are left out, so fewer than `n` may come back.
  std::vector<Feature> top(size_t n) const;
  // The top `n` as "reasoning=+1.20, length=+0.80, code=+0.65" (contributions in logits, two
  // decimals); "" when no feature contributes.
  std::string explain(size_t n = 3) const;
  // The feature named `name`; nullptr when there is none.
  const Feature* find(std::string_view name) const;
};

// Scores `r` with weights `w`. Never fails: any text (empty, huge, invalid UTF-8) gives a score
// in [0, 1]. Linear in the size of the request's text.
ComplexityScore scoreComplexity(const api::ChatRequest& r, const ComplexityWeights& w);

}  // namespace routers
