// Cheap metrics of how far apart two answers to one prompt are (quality::TextMetrics): exact
// match, token F1, ROUGE-L, length ratio and JSON agreement. They need no model and no network,
// so every quality record gets them; the LLM judge (quality/judge.h) is the expensive opinion.
//
// All of it is total: any bytes (empty, huge, invalid UTF-8) give a result, never an error.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "quality/record.h"

namespace quality {

// ROUGE-L compares at most this many leading tokens of each side: the LCS table is
// O(n * m) time, and 4000 x 4000 cells keep one record's metrics in the milliseconds while
// covering any answer a chat model writes in one turn. Token F1 and the length ratio always
// see every token.
inline constexpr size_t kRougeMaxTokens = 4000;

// JSON nested deeper than this counts as not parsing: comparing two JSON values recurses once
// per level, and a hostile answer must not exhaust the stack.
inline constexpr int kMaxJsonDepth = 512;

// The tokens the metrics compare. ASCII letters and digits form words, ASCII letters
// lowercased; ASCII punctuation, whitespace and control bytes, and Unicode spaces,
// punctuation and symbols (general punctuation, arrows, math operators, box drawing, emoji,
// CJK punctuation, fullwidth punctuation) separate words and are not tokens. Other non-ASCII
// code points (accented Latin, Greek, Cyrillic, Arabic, ...) stay inside words unchanged,
// except Chinese, Japanese and Korean characters (CJK ideographs, kana, Hangul), which are
// one token each since those scripts do not separate words with spaces. Invalid UTF-8 bytes
// are skipped as if absent.
std::vector<std::string> metricTokens(std::string_view text);

// The metrics of a local answer against a cloud answer, as quality::TextMetrics defines them:
//   exact_match   equal after trimming and collapsing ASCII whitespace (case kept);
//   token_f1      F1 of the two bags of tokens (1 when both are empty, 0 when one is);
//   rouge_l       ROUGE-L F-measure (beta = 1) over the first kRougeMaxTokens tokens of each
//                 side (1 when both are empty, 0 when one is);
//   length_ratio  local tokens / cloud tokens, 0 when the cloud answer has none;
//   json_*        set only when a side looks like JSON (after whitespace and an optional
//                 ```json or ``` fence, it starts with { or [): json_both_parse = both sides
//                 parse once the fence is stripped; json_agree = both parse and are equal
//                 JSON values (object key order does not matter, 1 equals 1.0).
TextMetrics computeTextMetrics(std::string_view local, std::string_view cloud);

}  // namespace quality
