// Fine-tuning exports: quality records turned into training files for the local model, on
// exactly the prompts where it fell short of the cloud.
//
//   exportSft  supervised examples, one JSON object per line in OpenAI's chat fine-tuning
//              format: {"messages": [...the prompt..., {"role": "assistant", "content": cloud}]}.
//              Only prompts where the cloud won (delta > 0) are written; the cloud answer is
//              the target.
//   exportDpo  preference pairs in the conversational format of TRL's DPOTrainer:
//              {"prompt": [...], "chosen": [{"role": "assistant", "content": ...}],
//               "rejected": [{"role": "assistant", "content": ...}]}, chosen being the side the
//              delta favours (cloud when delta > 0, local when delta < 0).
//
// Each line also carries "sampling_p", the probability with which its record was made
// (QualityRecord::sampling_p: 1 for escalations, the shadow rate for shadow samples), so that
// training or evaluation can weight a line by 1 / sampling_p; ExportFilter::sampling_p_field
// leaves it out for a consumer that refuses fields it does not know.
//
// The delta is the judge's (QualityRecord::delta); ExportFilter::labels may prefer the user's
// feedback where there is any.
//
// The prompt messages are passed through as they were recorded (content parts included), with
// only the fields the fine-tuning format accepts for each role: role, content and name for
// system, user and function messages; role, content, name, refusal, tool_calls and
// function_call for assistant messages; role, content and tool_call_id for tool messages.
// Developer messages become system messages, which neither format knows under the newer name.
// A record whose prompt is not an array of such messages is skipped as "invalid_prompt".
//
// Output is valid UTF-8 (invalid bytes become U+FFFD) and deterministic: ordered by unix_ms,
// then id, whatever the order of the input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "quality/record.h"

namespace quality {

struct ExportFilter {
  std::optional<std::string> team;            // only this team's records
  std::optional<int64_t> since_ms, until_ms;  // unix_ms in [since, until)
  // sft: delta >= min_delta and delta > 0; dpo: |delta| >= min_delta and delta != 0.
  double min_delta = 0;
  // Where the delta comes from: the judge (default), or the user's feedback where there is
  // any, else the judge.
  DeltaSource labels = DeltaSource::kJudge;
  // The judge must have named the same winner in both orders. With labels = kFeedbackFirst,
  // deltas from user feedback count as agreed: there is no second order to disagree with.
  bool require_agreement = false;
  // Write "sampling_p" on every line.
  bool sampling_p_field = true;
  // Drop near-identical prompts, keeping the one with the largest |delta| (ties: the newest).
  bool dedup = true;
  // Two prompts are near-identical when the Hamming distances of their SimHashes (64-bit, over
  // the word 3-gram shingles of the normalized prompt text; see PromptFingerprint) are at most
  // this. Read as 0 when negative. At 3, a one-word change is caught about 3 times in 4 in a
  // 300-word prompt and 9 in 10 in a 1000-word one, but only 1 in 8 in a 50-word one (the
  // change touches 3 shingles of fewer); unrelated prompts are ~32 bits apart.
  int dedup_max_distance = 3;
  // dpo: a local draft cut short (complete == false) may stand as the rejected side. A partial
  // answer is never a target or a chosen side.
  bool include_partial = false;
};

struct ExportStats {
  size_t records = 0;  // records given
  size_t written = 0;  // lines written
  // Why the others were left out, each counted once under the first reason that applies:
  // "filtered" (team or time window), "redacted", "invalid_prompt", "no_delta",
  // "disagreement", "below_min_delta" (sft: also a delta <= 0; dpo: also a delta == 0),
  // "empty_answer", "partial", "duplicate". Reasons that never occurred are absent.
  std::map<std::string, size_t> skipped;
};

// Writes one JSON line per exported record to `out`. Never fails on bad records (they are
// skipped and counted); a failing stream is the caller's to check.
ExportStats exportSft(const std::vector<QualityRecord>& records, const ExportFilter& f,
                      std::ostream& out);
ExportStats exportDpo(const std::vector<QualityRecord>& records, const ExportFilter& f,
                      std::ostream& out);

// Near-duplicate detection. A SimHash (64 bits) of a text: ASCII-lowercased, cut into words at
// every byte that is not a letter, a digit or part of a multi-byte UTF-8 sequence (so case,
// punctuation and spacing do not count), and hashed as the set of its word 3-grams (a text of
// fewer than three words is one shingle; no words at all hash to 0).
uint64_t simHash(std::string_view text);

// What the dedup filter compares of a prompt (a JSON array of chat messages): the SimHash of the
// whole conversation (roles, text parts, tool calls; a non-text part as one word standing for
// its whole value) and the SimHash of its last user message alone, the question being asked.
// Two prompts are near-identical when both pairs are within the distance: on the whole prompt
// alone, a long shared system prompt would make different questions look the same (with 500
// shared words, about half of all pairs of different 12-word questions land within 3 bits).
struct PromptFingerprint {
  uint64_t whole = 0;
  uint64_t ask = 0;
};
PromptFingerprint promptFingerprint(const api::Json& prompt);
bool nearIdentical(const PromptFingerprint& a, const PromptFingerprint& b, int max_distance);

// The number of differing bits.
int hammingDistance(uint64_t a, uint64_t b);

}  // namespace quality
