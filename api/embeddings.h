// The OpenAI embeddings wire format (POST /v1/embeddings): the request and response as C++
// types, the strict reading of a client's body, our response in OpenAI's exact shape, and the
// lenient reading of an OpenAI-compatible upstream's answer.
//
// `input` is a string, an array of strings, an array of token ids or an array of arrays of
// token ids, as OpenAI takes it; `encoding_format` "base64" is the little-endian float32
// bytes of each vector in base64, as OpenAI sends it (the official SDKs ask for it by default
// and decode it themselves). None of these functions throws.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/chat.h"
#include "api/status.h"

namespace api {

// Most inputs in one request (OpenAI's own limit).
inline constexpr size_t kMaxEmbeddingInputs = 2048;
// Largest `dimensions` accepted (above every published embedding size).
inline constexpr int64_t kMaxEmbeddingDimensions = 65536;
// Largest token id accepted in a token-id input.
inline constexpr int64_t kMaxEmbeddingTokenId = (int64_t{1} << 31) - 1;

enum class EmbeddingEncoding { kFloat, kBase64 };

// One input: text, or token ids (`is_tokens`).
struct EmbeddingInput {
  std::string text;
  std::vector<int64_t> tokens;
  bool is_tokens = false;
};

struct EmbeddingRequest {
  std::string model;
  std::vector<EmbeddingInput> inputs;  // at least one, at most kMaxEmbeddingInputs
  std::optional<int64_t> dimensions;   // > 0; the output size asked for
  EmbeddingEncoding encoding_format = EmbeddingEncoding::kFloat;
  std::optional<std::string> user;
};

struct EmbeddingResponse {
  std::string model;
  std::vector<std::vector<float>> embeddings;  // [inputs, dimensions], in the inputs' order
  int64_t prompt_tokens = 0;    // billed input tokens (the provider's, or the gateway's bound)
  bool usage_reported = false;  // false: the provider reported none and prompt_tokens is the bound
  double compute_s = 0;         // a local engine's time on the request (compute_ms in the ledger)
};

// Parses and validates a POST /v1/embeddings body. kInvalidRequest naming the field as OpenAI
// does ("input", "input[3]", "dimensions") with OpenAI's codes ("invalid_type",
// "missing_required_parameter"): malformed JSON or over the JSON bounds (parseBoundedJson), a
// top level that is not an object, a missing or mistyped field, an empty input (string,
// array or token list), more than kMaxEmbeddingInputs inputs, mixed input kinds, a token id
// out of [0, kMaxEmbeddingTokenId], dimensions out of [1, kMaxEmbeddingDimensions], an
// unknown encoding_format, or an unknown top-level field.
StatusOr<EmbeddingRequest> parseEmbeddingRequest(std::string_view body);

// The body for an OpenAI-compatible upstream: `model`, `input` in the form it arrived
// (a single input as a string or token list), `dimensions` and `user` when set, and always
// "encoding_format": "float" (the gateway encodes base64 itself).
Json embeddingRequestToJson(const EmbeddingRequest& request);

// Our response body: {"object":"list","data":[{"object":"embedding","index":i,"embedding":
// [...] or "<base64>"}],"model":...,"usage":{"prompt_tokens":n,"total_tokens":n}}.
std::string serializeEmbeddingResponse(const EmbeddingResponse& r, EmbeddingEncoding encoding);

// Reads an OpenAI-compatible upstream's 200 body (embeddings as float arrays or base64
// strings, placed by `index`). kUpstreamError naming what is wrong: not JSON, no `data`
// array, an entry without a numeric vector, an index out of range or repeated, or
// `expected_inputs` entries not all present. usage_reported when usage.prompt_tokens is a
// non-negative integer.
StatusOr<EmbeddingResponse> parseEmbeddingResponse(std::string_view body, size_t expected_inputs);

// Base64 (RFC 4648, padded) of the little-endian float32 bytes of `v`.
std::string base64Floats(const std::vector<float>& v);
// The reverse; kInvalidRequest for text that is not padded base64 of whole float32 values.
StatusOr<std::vector<float>> floatsFromBase64(std::string_view text);

}  // namespace api
