#include "api/embeddings.h"

#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>

#include "api/openai_json.h"

namespace api {
namespace {

Status typeError(const std::string& param, std::string_view expected, const Json& got) {
  return Status(ErrorCode::kInvalidRequest,
                "Invalid type for '" + param + "': expected " + std::string(expected) +
                    ", but got " + std::string(describeJsonType(got)) + " instead.",
                param, "invalid_type");
}

Status invalidInput(std::string message, const std::string& param) {
  return Status(ErrorCode::kInvalidRequest, std::move(message), param, "invalid_value");
}

// The integer `j` when it lies in [lo, hi] (j is an integer).
std::optional<int64_t> intIn(const Json& j, int64_t lo, int64_t hi) {
  if (j.is_number_unsigned()) {
    const uint64_t v = j.get<uint64_t>();
    if (v > static_cast<uint64_t>(hi) || static_cast<int64_t>(v) < lo) return std::nullopt;
    return static_cast<int64_t>(v);
  }
  const int64_t v = j.get<int64_t>();
  if (v < lo || v > hi) return std::nullopt;
  return v;
}

constexpr std::string_view kInputTypes =
    "a string, an array of strings, an array of integers, or an array of arrays of integers";

// A token-id list at `param`; `j` is an array.
Status readTokens(const Json& j, const std::string& param, EmbeddingInput& out) {
  if (j.empty()) return invalidInput("'" + param + "' must not be empty.", param);
  out.is_tokens = true;
  out.tokens.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    const Json& t = j[i];
    const std::string p = param + "[" + std::to_string(i) + "]";
    if (!t.is_number_integer()) return typeError(p, "an integer", t);
    std::optional<int64_t> id = intIn(t, 0, kMaxEmbeddingTokenId);
    if (!id) return invalidInput("'" + p + "' is not a valid token id.", p);
    out.tokens.push_back(*id);
  }
  return Status();
}

Status readInput(const Json& j, EmbeddingRequest& req) {
  if (j.is_string()) {
    if (j.get_ref<const std::string&>().empty()) {
      return invalidInput("'input' must not be an empty string.", "input");
    }
    req.inputs.push_back(EmbeddingInput{j.get<std::string>(), {}, false});
    return Status();
  }
  if (!j.is_array()) return typeError("input", kInputTypes, j);
  if (j.empty()) return invalidInput("'input' must not be an empty array.", "input");
  if (j.size() > kMaxEmbeddingInputs) {
    return invalidInput("'input' has " + std::to_string(j.size()) + " items; at most " +
                            std::to_string(kMaxEmbeddingInputs) + " are allowed.",
                        "input");
  }
  // One list of token ids, or a list of inputs (all strings or all token lists).
  if (j[0].is_number()) {
    EmbeddingInput in;
    if (Status s = readTokens(j, "input", in); !s.ok()) return s;
    req.inputs.push_back(std::move(in));
    return Status();
  }
  const bool strings = j[0].is_string();
  for (size_t i = 0; i < j.size(); ++i) {
    const Json& item = j[i];
    const std::string p = "input[" + std::to_string(i) + "]";
    if (strings != item.is_string() || (!strings && !item.is_array())) {
      return typeError(p, strings ? "a string" : "an array of integers", item);
    }
    EmbeddingInput in;
    if (strings) {
      if (item.get_ref<const std::string&>().empty()) {
        return invalidInput("'" + p + "' must not be an empty string.", p);
      }
      in.text = item.get<std::string>();
    } else if (Status s = readTokens(item, p, in); !s.ok()) {
      return s;
    }
    req.inputs.push_back(std::move(in));
  }
  return Status();
}

Status readField(const std::string& key, const Json& v, EmbeddingRequest& req) {
  if (key == "input") return readInput(v, req);
  if (key == "model") {
    if (!v.is_string()) return typeError("model", "a string", v);
    req.model = v.get<std::string>();
    return Status();
  }
  if (v.is_null()) return Status();  // absent
  if (key == "dimensions") {
    if (!v.is_number_integer()) return typeError("dimensions", "an integer", v);
    req.dimensions = intIn(v, 1, kMaxEmbeddingDimensions);
    if (!req.dimensions) {
      return invalidInput("Invalid value for 'dimensions': expected an integer from 1 to " +
                              std::to_string(kMaxEmbeddingDimensions) + ".",
                          "dimensions");
    }
    return Status();
  }
  if (key == "encoding_format") {
    if (!v.is_string()) return typeError("encoding_format", "a string", v);
    const std::string& f = v.get_ref<const std::string&>();
    if (f == "float") {
      req.encoding_format = EmbeddingEncoding::kFloat;
    } else if (f == "base64") {
      req.encoding_format = EmbeddingEncoding::kBase64;
    } else {
      return invalidInput(
          "Invalid value for 'encoding_format': supported values are 'float' "
          "and 'base64'.",
          "encoding_format");
    }
    return Status();
  }
  if (key == "user") {
    if (!v.is_string()) return typeError("user", "a string", v);
    req.user = v.get<std::string>();
    return Status();
  }
  return Status(ErrorCode::kInvalidRequest, "Unrecognized request argument supplied: " + key, key,
                "unknown_parameter");
}

StatusOr<EmbeddingRequest> parseRequest(std::string_view body) {
  auto parsed = parseBoundedJson(body);
  if (!parsed.ok()) return parsed.status();
  const Json& root = *parsed;
  if (!root.is_object()) {
    return Status(ErrorCode::kInvalidRequest,
                  "Invalid type for the request body: expected an object, but got " +
                      std::string(describeJsonType(root)) + " instead.",
                  {}, "invalid_type");
  }
  EmbeddingRequest req;
  bool saw_input = false, saw_model = false;
  for (const auto& [key, value] : root.items()) {
    if (key == "input" && !value.is_null()) saw_input = true;
    if (key == "model" && !value.is_null()) saw_model = true;
    if ((key == "input" || key == "model") && value.is_null()) continue;
    if (Status s = readField(key, value, req); !s.ok()) return s;
  }
  if (!saw_model || req.model.empty()) {
    return Status(ErrorCode::kInvalidRequest, "you must provide a model parameter", "model",
                  "missing_required_parameter");
  }
  if (!saw_input) {
    return Status(ErrorCode::kInvalidRequest, "Missing required parameter: 'input'.", "input",
                  "missing_required_parameter");
  }
  return req;
}

Json inputToJson(const EmbeddingInput& in) {
  if (!in.is_tokens) return in.text;
  return Json(in.tokens);
}

void appendFloat(std::string& out, float f) {
  if (!std::isfinite(f)) f = 0;  // JSON has no NaN or infinity
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, f);
  out.append(buf, r.ptr);
}

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

uint32_t littleEndian(uint32_t v) {
  if constexpr (std::endian::native == std::endian::big) return __builtin_bswap32(v);
  return v;
}

Status upstreamError(std::string message) {
  return Status(ErrorCode::kUpstreamError, std::move(message));
}

StatusOr<std::vector<float>> vectorOf(const Json& e, size_t index) {
  const std::string where = "data[" + std::to_string(index) + "].embedding";
  if (e.is_string()) {
    auto v = floatsFromBase64(e.get_ref<const std::string&>());
    if (!v.ok()) return upstreamError("sent an invalid base64 " + where);
    return v;
  }
  if (!e.is_array()) return upstreamError("sent no numeric " + where);
  std::vector<float> v;
  v.reserve(e.size());
  for (const Json& x : e) {
    if (!x.is_number()) return upstreamError("sent a non-numeric value in " + where);
    v.push_back(x.get<float>());
  }
  return v;
}

}  // namespace

StatusOr<EmbeddingRequest> parseEmbeddingRequest(std::string_view body) {
  try {
    return parseRequest(body);
  } catch (const std::exception& e) {
    // Only a bug or memory exhaustion gets here; the client still gets a clean error.
    return Status(ErrorCode::kInternal, std::string("failed to read the request: ") + e.what());
  }
}

Json embeddingRequestToJson(const EmbeddingRequest& request) {
  Json body = Json::object();
  body["model"] = request.model;
  if (request.inputs.size() == 1) {
    body["input"] = inputToJson(request.inputs[0]);
  } else {
    Json arr = Json::array();
    for (const EmbeddingInput& in : request.inputs) arr.push_back(inputToJson(in));
    body["input"] = std::move(arr);
  }
  if (request.dimensions) body["dimensions"] = *request.dimensions;
  if (request.user) body["user"] = *request.user;
  body["encoding_format"] = "float";
  return body;
}

std::string serializeEmbeddingResponse(const EmbeddingResponse& r, EmbeddingEncoding encoding) {
  std::string out = R"({"object":"list","data":[)";
  for (size_t i = 0; i < r.embeddings.size(); ++i) {
    if (i > 0) out += ',';
    out += R"({"object":"embedding","index":)" + std::to_string(i) + R"(,"embedding":)";
    if (encoding == EmbeddingEncoding::kBase64) {
      out += '"' + base64Floats(r.embeddings[i]) + '"';
    } else {
      out += '[';
      for (size_t k = 0; k < r.embeddings[i].size(); ++k) {
        if (k > 0) out += ',';
        appendFloat(out, r.embeddings[i][k]);
      }
      out += ']';
    }
    out += '}';
  }
  out += R"(],"model":)";
  appendJsonString(out, r.model);
  const std::string tokens = std::to_string(std::max<int64_t>(0, r.prompt_tokens));
  out += R"(,"usage":{"prompt_tokens":)" + tokens + R"(,"total_tokens":)" + tokens + "}}";
  return out;
}

StatusOr<EmbeddingResponse> parseEmbeddingResponse(std::string_view body, size_t expected_inputs) {
  Json root = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return upstreamError("sent an embeddings response that is not a JSON object");
  }
  auto data = root.find("data");
  if (data == root.end() || !data->is_array()) {
    return upstreamError("sent an embeddings response without a 'data' array");
  }
  if (data->size() != expected_inputs) {
    return upstreamError("sent " + std::to_string(data->size()) + " embeddings for " +
                         std::to_string(expected_inputs) + " inputs");
  }
  EmbeddingResponse r;
  r.embeddings.resize(expected_inputs);
  std::vector<bool> seen(expected_inputs, false);
  for (size_t i = 0; i < data->size(); ++i) {
    const Json& item = (*data)[i];
    if (!item.is_object()) return upstreamError("sent a data entry that is not an object");
    size_t index = i;
    if (auto ix = item.find("index"); ix != item.end() && !ix->is_null()) {
      if (!ix->is_number_unsigned() || ix->get<uint64_t>() >= expected_inputs) {
        return upstreamError("sent an embedding index out of range");
      }
      index = ix->get<size_t>();
    }
    if (seen[index]) return upstreamError("sent two embeddings for index " + std::to_string(index));
    seen[index] = true;
    auto e = item.find("embedding");
    if (e == item.end()) return upstreamError("sent no data[" + std::to_string(i) + "].embedding");
    auto v = vectorOf(*e, i);
    if (!v.ok()) return v.status();
    r.embeddings[index] = std::move(v).value();
  }
  if (auto m = root.find("model"); m != root.end() && m->is_string()) r.model = *m;
  if (auto u = root.find("usage"); u != root.end() && u->is_object()) {
    auto p = u->find("prompt_tokens");
    if (p != u->end() && p->is_number_unsigned()) {
      r.prompt_tokens = static_cast<int64_t>(std::min<uint64_t>(p->get<uint64_t>(), INT64_MAX));
      r.usage_reported = true;
    }
  }
  return r;
}

std::string base64Floats(const std::vector<float>& v) {
  std::string bytes(v.size() * 4, '\0');
  for (size_t i = 0; i < v.size(); ++i) {
    const uint32_t le = littleEndian(std::bit_cast<uint32_t>(v[i]));
    std::memcpy(&bytes[i * 4], &le, 4);
  }
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t n = (uint32_t(uint8_t(bytes[i])) << 16) |
                       (uint32_t(uint8_t(bytes[i + 1])) << 8) | uint32_t(uint8_t(bytes[i + 2]));
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t n = uint32_t(uint8_t(bytes[i])) << 16;
    if (rest == 2) n |= uint32_t(uint8_t(bytes[i + 1])) << 8;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += rest == 2 ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

StatusOr<std::vector<float>> floatsFromBase64(std::string_view text) {
  const Status bad(ErrorCode::kInvalidRequest, "not base64 of float32 values");
  if (text.size() % 4 != 0) return bad;
  std::string bytes;
  bytes.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = text[i + k];
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad > 0) return bad;  // data after padding
      v[k] = base64Value(c);
      if (v[k] < 0) return bad;
    }
    const uint32_t n =
        (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) | (uint32_t(v[2]) << 6) | uint32_t(v[3]);
    bytes += static_cast<char>((n >> 16) & 0xFF);
    if (pad < 2) bytes += static_cast<char>((n >> 8) & 0xFF);
    if (pad < 1) bytes += static_cast<char>(n & 0xFF);
  }
  if (bytes.size() % 4 != 0) return bad;
  std::vector<float> out(bytes.size() / 4);
  for (size_t i = 0; i < out.size(); ++i) {
    uint32_t le;
    std::memcpy(&le, &bytes[i * 4], 4);
    out[i] = std::bit_cast<float>(littleEndian(le));
  }
  return out;
}

}  // namespace api
