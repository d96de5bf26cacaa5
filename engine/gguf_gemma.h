// Gemma in GGUF: the one place that knows how llama.cpp's converter writes a Gemma 3 (and
// Gemma 4) text model, used both by the loader (Checkpoint::open on a .gguf) and by the tools
// that write such files, so the two directions share one table.
//
// What llama.cpp does (read in convert_hf_to_gguf.py classes Gemma3Model / Gemma4Model,
// gguf-py/gguf/constants.py and tensor_mapping.py, src/llama-model.cpp's Gemma 3 hparams):
//
// Architecture. general.architecture is "gemma3" for Gemma3ForCausalLM and the text part of
// Gemma3ForConditionalGeneration (the vision tower goes to a separate mmproj file), "gemma4"
// for Gemma4ForConditionalGeneration. Every key below is "<arch>.<name>".
//
// Tensors (HF canonical text name -> GGUF name; ".weight" kept):
//   embed_tokens                       token_embd
//   norm                               output_norm
//   layers.N.input_layernorm           blk.N.attn_norm
//   layers.N.self_attn.{q,k,v}_proj    blk.N.attn_{q,k,v}
//   layers.N.self_attn.o_proj          blk.N.attn_output
//   layers.N.self_attn.{q,k}_norm      blk.N.attn_{q,k}_norm
//   layers.N.post_attention_layernorm  blk.N.post_attention_norm
//   layers.N.pre_feedforward_layernorm blk.N.ffn_norm
//   layers.N.mlp.{gate,up,down}_proj   blk.N.ffn_{gate,up,down}
//   layers.N.post_feedforward_layernorm blk.N.post_ffw_norm
// A GGUF matrix has ne = {in, out}: the same bytes as HF's row-major [out, in]. Gemma's Q and K
// are NOT permuted (only the Llama family's converter permutes them for its RoPE layout; Gemma
// uses the NeoX/rotate_half layout as-is). The converter drops lm_head (tied) and, for Gemma 3,
// truncates token_embd to the tokenizer's real vocabulary (262144 of HF's 262208 rows), so the
// vocabulary is token_embd's row count, not a key. 1-D tensors are always stored F32.
//
// Values. Gemma 3's RMSNorm multiplies by (1 + w); the converter adds 1 to every tensor whose
// HF name ends in "norm.weight" (the four layer norms, q_norm, k_norm and the final norm), in
// fp32, so GGUF holds fl32(1 + w). The loader stores fl32(stored - 1), which is exact, so our
// forward pass's 1 + w gives back exactly fl32(1 + w). Gemma 4's norms multiply by w and are not
// shifted (its converter's norm_shift is 0).
//
// Metadata the converter writes for Gemma 3 and llama.cpp reads:
//   context_length (max_position_embeddings), embedding_length (hidden_size), block_count,
//   feed_forward_length (intermediate_size), attention.head_count, attention.head_count_kv,
//   attention.key_length = attention.value_length (head_dim), attention.layer_norm_rms_epsilon,
//   rope.freq_base (rope_theta of the full-attention layers), attention.sliding_window,
//   rope.scaling.type "linear" + rope.scaling.factor when rope_scaling is linear,
//   final_logit_softcapping only when set (never for Gemma 3).
// Not in the file, fixed by llama.cpp's Gemma 3 loader: the sliding layers' RoPE base is 10000
// without scaling; the layer pattern is 6 (layer l is full iff (l + 1) % 6 == 0; newer
// llama.cpp makes every layer full when attention.sliding_window is absent or 0); the attention
// scale is 1/sqrt(hidden / heads) for the 62-layer (27B) model and 1/sqrt(key_length) otherwise,
// which is query_pre_attn_scalar for every released size. Special ids are tokenizer.ggml.
// bos_token_id, eos_token_id, padding_token_id (u32) and eot_token_id where given.
//
// Where our config differs from those fixed choices (small test models: another layer pattern,
// query_pre_attn_scalar, local RoPE base), gemmaMetadata() adds keys that llama.cpp's Gemma 3
// loader does not read and gemmaConfigFromGguf() prefers when present:
//   attention.sliding_window_pattern (bool array, one per layer, true = sliding; the spelling
//   llama.cpp uses for Gemma 4), attention.scale (f32, the attention scale itself), and
//   rope.freq_base_swa (f32). A file made from a released Gemma 3 carries none of them.
//
// Gemma 4 (convert_hf_to_gguf.py Gemma4Model, llama.cpp src/models/gemma4.cpp), arch "gemma4":
//   keys: block_count, context_length, embedding_length, attention.head_count,
//   feed_forward_length and attention.head_count_kv (u32, or an INT32 array per layer when the
//   layers differ: E2B's double-wide KV-shared layers, the full layers' KV heads of 26B/31B),
//   attention.key_length = value_length = global_head_dim (full layers) and
//   attention.key_length_swa = value_length_swa = head_dim, attention.sliding_window,
//   attention.sliding_window_pattern (bool per layer, true = sliding), attention.shared_kv_layers,
//   embedding_length_per_layer_input (0 = no PLE), rope.freq_base / rope.freq_base_swa,
//   rope.dimension_count(_swa) = the whole head dims, final_logit_softcapping, and for the expert
//   block expert_count, expert_used_count, expert_feed_forward_length. Not in the file, fixed by
//   llama.cpp: attention scale 1.0; K=V is a full layer without attn_v.
//   tensors: the Gemma 3 names plus per_layer_token_embd, per_layer_model_proj,
//   per_layer_proj_norm, blk.N.{inp_gate, proj, post_norm} (PLE), blk.N.layer_output_scale,
//   blk.N.ffn_gate_inp (router, F32) and .scale, blk.N.ffn_gate_up_exps (gate rows first, fused
//   as in HF), blk.N.ffn_down_exps and its .scale (per_expert_scale), blk.N.{pre_ffw_norm_2,
//   post_ffw_norm_1, post_ffw_norm_2}; and rope_freqs (kRopeFreqsTensor) for the proportional
//   RoPE. Norms are not shifted. The KV-shared layers' leftover attn_k/attn_v may be present and
//   are ignored. A reader turns the keys into the config.json of a Gemma4ForCausalLM (so the
//   per-layer resolution is parseGemmaConfig's); separate ffn_gate_exps/ffn_up_exps (Ollama's
//   other spelling) are not read.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"
#include "engine/chat_template.h"
#include "engine/gguf.h"
#include "engine/model_config.h"
#include "engine/tokenizer.h"
#include "engine/tokenizer_gguf.h"

namespace engine::gguf {

constexpr std::string_view kArchGemma3 = "gemma3";
constexpr std::string_view kArchGemma4 = "gemma4";

// Whether `path` names a GGUF file (ends in ".gguf", any case).
bool isGgufPath(std::string_view path);

// Gemma 4's proportional RoPE in GGUF: F32 [global_head_dim / 2], 1.0 for each rotated pair,
// then kRopeFreqOff (llama.cpp divides a pair's frequency by it, so it does not rotate).
constexpr std::string_view kRopeFreqsTensor = "rope_freqs.weight";
constexpr float kRopeFreqOff = 1e30f;
// Its values for `config` (Gemma 4).
std::vector<float> ropeFreqs(const GemmaConfig& config);

// HF canonical text tensor name (as engine::canonicalTensorName gives it, e.g.
// "layers.3.self_attn.q_proj.weight", "embed_tokens.weight", "norm.weight") -> GGUF name
// ("blk.3.attn_q.weight"); nullopt for a name the table does not have.
std::optional<std::string> ggufTensorName(std::string_view canonical);
// The inverse: "blk.3.attn_q.weight" -> "layers.3.self_attn.q_proj.weight"; nullopt when unknown
// (e.g. rope_freqs.weight, output.weight).
std::optional<std::string> canonicalTensorNameFromGguf(std::string_view gguf_name);

// What the converter adds to the HF values of tensor `canonical` before storing them in GGUF
// (1.0 for Gemma 3 norm weights, else 0). Writers store fl32(w + shift) as F32; the loader
// subtracts it again.
float normShift(ModelFamily family, std::string_view canonical);

// The metadata llama.cpp's converter writes for `config` (general.architecture first, then the
// "<arch>.*" keys above, then tokenizer.ggml.bos/eos/padding/eot ids; no tokenizer vocabulary:
// that is the tokenizer's part, which must not repeat these ids), plus the extension keys where
// the config differs from llama.cpp's fixed choices. Fails with kConfig for a config GGUF
// cannot express: the EmbeddingGemma encoder, RoPE on sliding layers with scaling or a
// non-default type, linear scaling on Gemma 4.
api::StatusOr<std::vector<KeyValue>> gemmaMetadata(const GemmaConfig& config);

// Where llama.cpp would run `config` differently from the engine, written to GGUF (empty when
// it would not): Gemma 3 layer patterns other than every 6th layer full (its gemma3 loader
// ignores attention.sliding_window_pattern), Gemma 4 KV sharing whose source layers are not
// the two layers before the shared tail (llama.cpp takes first_shared - 2 for sliding layers and
// first_shared - 1 for full ones). The tools print it as a note.
std::string llamaCppDifference(const GemmaConfig& config);

// The resolved config of a Gemma 3 or Gemma 4 GGUF: the keys above, the vocabulary from
// token_embd's rows, HF defaults where llama.cpp has them fixed. Fails with kConfig naming the file and key (a
// missing or mistyped key, an unsupported architecture, values out of range).
api::StatusOr<GemmaConfig> gemmaConfigFromGguf(const GgufFile& file);

// The directory a .gguf file sits in ("." for a bare file name): where the chat template
// (tokenizer_config.json, chat_template.jinja) is read from, and tokenizer.json when the file
// carries no vocabulary.
std::string sidecarDir(std::string_view gguf_path);

// The tokenizer.* keys of `file` as engine/tokenizer_gguf.h's plain struct (absent keys stay
// empty / -1 / nullopt). kConfig naming the key for a key of the wrong type.
api::StatusOr<GgufTokenizerData> tokenizerDataFromGguf(const GgufFile& file);
// The other way: `data` as tokenizer.* keys in the converter's order (absent fields left out).
// The special ids it shares with the model metadata are merged by the caller (mergeMetadata).
std::vector<KeyValue> tokenizerMetadata(const GgufTokenizerData& data);

// The tokenizer of a .gguf model: from its tokenizer.ggml.* metadata (importGgufTokenizer) when
// it has tokenizer.ggml.tokens, else Tokenizer::loadDir(sidecarDir(path)).
api::StatusOr<std::unique_ptr<Tokenizer>> loadGgufTokenizer(const std::string& path);

// The chat template of a .gguf model: tokenizer.chat_template when the file carries one (what
// llama.cpp uses too), rendered with the file's own special tokens as bos_token, eos_token,
// unk_token and pad_token; else the files beside it (ChatTemplate::loadDir(sidecarDir(path)));
// nullptr when neither has one. kConfig naming the file for a template that does not parse.
api::StatusOr<std::shared_ptr<const ChatTemplate>> loadGgufChatTemplate(const std::string& path);

// The chat template of any model_dir: loadGgufChatTemplate for a .gguf file, else
// ChatTemplate::loadDir(model_dir).
api::StatusOr<std::shared_ptr<const ChatTemplate>> loadModelChatTemplate(
    const std::string& model_dir);

// Opens `path` (GgufFile::open) and reads its config: what Model::load needs before choosing
// the model class.
api::StatusOr<GemmaConfig> loadGgufGemmaConfig(const std::string& path);

}  // namespace engine::gguf
