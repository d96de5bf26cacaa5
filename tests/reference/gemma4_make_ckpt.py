#!/usr/bin/env python3
"""Writes a small random-weight Gemma 4 checkpoint in the Hugging Face layout, in NumPy.

For checking tests/reference/gemma4_ref.py without the C++ tools, and for the reference's
own layout checks (the same weights written flat or nested, single-file or sharded, under
`model.language_model.*` or `model.*`). Shapes follow the gemma-4-tiny-* presets:

  tiny-e    vocab 512, hidden 64, 6 layers [s, s, F, s, s, F], 4 heads, 2 kv heads, head_dim 16,
            global_head_dim 32 (proportional RoPE, partial 0.25), window 8, intermediate 128
            double-wide (layers 4-5: 256), 2 KV-shared layers (their leftover k_proj / v_proj /
            k_norm are written, as real checkpoints carry them), PLE with P = 8, softcap 30
  tiny-moe  the same without PLE and KV sharing, intermediate 64, attention_k_eq_v with one
            global kv head, 8 experts, top-2, moe_intermediate_size 32

Usage:
  python3 tests/reference/gemma4_make_ckpt.py --preset tiny-e --out DIR [--seed 0]
      [--layout conditional|causal] [--shards N]
Needs only numpy.
"""
import argparse
import json
import os
import sys

import numpy as np

PRESETS = {
    "tiny-e": dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                   global_head_dim=32, num_global_key_value_heads=None, sliding_window=8,
                   use_double_wide_mlp=True, num_kv_shared_layers=2,
                   hidden_size_per_layer_input=8, vocab_size_per_layer_input=512,
                   attention_k_eq_v=False, enable_moe_block=False, num_experts=None,
                   top_k_experts=None, moe_intermediate_size=None),
    "tiny-moe": dict(vocab_size=512, hidden_size=64, intermediate_size=64, num_hidden_layers=6,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                     global_head_dim=32, num_global_key_value_heads=1, sliding_window=8,
                     use_double_wide_mlp=False, num_kv_shared_layers=0,
                     hidden_size_per_layer_input=0, vocab_size_per_layer_input=512,
                     attention_k_eq_v=True, enable_moe_block=True, num_experts=8,
                     top_k_experts=2, moe_intermediate_size=32),
}
LAYER_TYPES = ["sliding_attention", "sliding_attention", "full_attention",
               "sliding_attention", "sliding_attention", "full_attention"]


def text_config(p):
    c = dict(model_type="gemma4_text", **p)
    c.update(layer_types=LAYER_TYPES[:p["num_hidden_layers"]], rms_norm_eps=1e-6,
             max_position_embeddings=128, hidden_activation="gelu_pytorch_tanh",
             final_logit_softcapping=30.0, tie_word_embeddings=True, attention_bias=False,
             bos_token_id=2, eos_token_id=1, pad_token_id=0, dtype="bfloat16",
             rope_parameters={
                 "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                 "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                    "rope_theta": 1000000.0}})
    return c


def to_bf16_bits(a):
    """float → bf16 bit patterns (round to nearest even), as uint16."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")


def write_safetensors(path, tensors):
    """tensors: {name: float array}, written as BF16 (§4.1), names sorted, data 8-aligned."""
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name])
        raw = to_bf16_bits(a).tobytes()
        header[name] = {"dtype": "BF16", "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for raw in chunks:
            f.write(raw)


def write_checkpoint(out, tcfg, weights, layout="conditional", shards=1):
    """weights: {canonical text name: array}. conditional = Gemma4ForConditionalGeneration
    (nested text_config, model.language_model.*); causal = Gemma4ForCausalLM (flat, model.*)."""
    os.makedirs(out, exist_ok=True)
    if layout == "conditional":
        cfg = {"architectures": ["Gemma4ForConditionalGeneration"], "model_type": "gemma4",
               "text_config": tcfg, "tie_word_embeddings": True, "bos_token_id": 2,
               "eos_token_id": [1, 106], "pad_token_id": 0, "dtype": "bfloat16"}
        prefix = "model.language_model."
    elif layout == "causal":
        cfg = dict(tcfg, architectures=["Gemma4ForCausalLM"], eos_token_id=[1, 106])
        prefix = "model."
    else:
        raise ValueError(f"unknown layout {layout}")
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 2, "eos_token_id": [1, 106], "pad_token_id": 0}, f, indent=2)
        f.write("\n")
    named = {prefix + k: v for k, v in weights.items()}
    if shards <= 1:
        write_safetensors(os.path.join(out, "model.safetensors"), named)
        return
    names = sorted(named)
    weight_map = {}
    for i in range(shards):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: named[n] for n in names[i::shards]}
        write_safetensors(os.path.join(out, file), part)
        weight_map.update({n: file for n in part})
    total = sum(2 * int(np.prod(np.shape(v))) for v in named.values())
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def make_weights(p, seed):
    """Random weights in the §4.4 shapes. Projections have std 1/sqrt(fan_in) so every GEMM
    sees O(1) inputs; norm weights are mean·(1 + N(0, 0.1)) (Gemma 4 norms multiply by w, no
    +1): 1 for the pre-norms; 0.5 for q_norm / k_norm, so that with attention scale 1.0 the
    scores have a std near 1 rather than sqrt(D); 0.15 for the norms that close a branch
    (post-attention, post-feedforward, post-PLE), so that each layer adds to the residual
    stream rather than rewriting it and bf16 rounding is not amplified from layer to layer;
    the final norm N(0, 6) so that the logits spread far enough for the softcap to bend them,
    and with mixed signs so that the tied lm_head does not simply echo the input token's own
    embedding, which dominates the residual stream of so shallow a model; layer
    scalars in [0.6, 1.0]; a sharp router so that expert choices are clear."""
    rng = np.random.default_rng(seed)
    H, L, V = p["hidden_size"], p["num_hidden_layers"], p["vocab_size"]
    Hq, P = p["num_attention_heads"], p["hidden_size_per_layer_input"]
    first_shared = L - p["num_kv_shared_layers"]
    w = {}
    nrm = lambda *s, sd=1.0: rng.standard_normal(s) * sd
    ones = lambda n, sd=0.1, mean=1.0: mean * (1 + rng.standard_normal(n) * sd)
    post = ("post_attention_layernorm", "post_feedforward_layernorm")
    w["embed_tokens.weight"] = nrm(V, H, sd=H ** -0.5)
    w["norm.weight"] = nrm(H, sd=6.0)
    if P:
        w["embed_tokens_per_layer.weight"] = nrm(p["vocab_size_per_layer_input"], L * P, sd=0.35)
        w["per_layer_model_projection.weight"] = nrm(L * P, H, sd=H ** -0.5)
        w["per_layer_projection_norm.weight"] = ones(P)
    for l, t in enumerate(LAYER_TYPES[:L]):
        n, full = f"layers.{l}.", t == "full_attention"
        D = p["global_head_dim"] if full else p["head_dim"]
        k_eq_v = p["attention_k_eq_v"] and full
        Hkv = p["num_global_key_value_heads"] if k_eq_v and p["num_global_key_value_heads"] \
            else p["num_key_value_heads"]
        I = p["intermediate_size"] * (2 if p["use_double_wide_mlp"] and l >= first_shared else 1)
        for norm in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                     "post_feedforward_layernorm"):
            w[n + norm + ".weight"] = ones(H, mean=0.15 if norm in post else 1.0)
        w[n + "self_attn.q_proj.weight"] = nrm(Hq * D, H, sd=H ** -0.5)
        w[n + "self_attn.k_proj.weight"] = nrm(Hkv * D, H, sd=H ** -0.5)
        if not k_eq_v:
            w[n + "self_attn.v_proj.weight"] = nrm(Hkv * D, H, sd=H ** -0.5)
        w[n + "self_attn.o_proj.weight"] = nrm(H, Hq * D, sd=(Hq * D) ** -0.5)
        w[n + "self_attn.q_norm.weight"] = ones(D, mean=0.5)
        w[n + "self_attn.k_norm.weight"] = ones(D, mean=0.5)
        w[n + "mlp.gate_proj.weight"] = nrm(I, H, sd=H ** -0.5)
        w[n + "mlp.up_proj.weight"] = nrm(I, H, sd=H ** -0.5)
        w[n + "mlp.down_proj.weight"] = nrm(H, I, sd=I ** -0.5)
        w[n + "layer_scalar"] = rng.uniform(0.6, 1.0, size=(1,))
        if P:
            w[n + "per_layer_input_gate.weight"] = nrm(P, H, sd=H ** -0.5)
            w[n + "per_layer_projection.weight"] = nrm(H, P, sd=P ** -0.5)
            w[n + "post_per_layer_input_norm.weight"] = ones(H, mean=0.15)
        if p["enable_moe_block"]:
            E, Im = p["num_experts"], p["moe_intermediate_size"]
            w[n + "router.proj.weight"] = nrm(E, H, sd=2.0)
            w[n + "router.scale"] = ones(H)
            w[n + "router.per_expert_scale"] = ones(E, sd=0.3)  # ~ N(1, 0.3)
            w[n + "experts.gate_up_proj"] = nrm(E, 2 * Im, H, sd=H ** -0.5)
            w[n + "experts.down_proj"] = nrm(E, H, Im, sd=Im ** -0.5)
            for norm in ("pre_feedforward_layernorm_2", "post_feedforward_layernorm_1",
                         "post_feedforward_layernorm_2"):
                w[n + norm + ".weight"] = ones(H)
    return w


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", required=True, choices=sorted(PRESETS))
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layout", default="conditional", choices=["conditional", "causal"])
    ap.add_argument("--shards", type=int, default=1)
    args = ap.parse_args()
    p = PRESETS[args.preset]
    write_checkpoint(args.out, text_config(p), make_weights(p, args.seed), args.layout,
                     args.shards)
    print(f"wrote {args.out}: {args.preset}, layout {args.layout}, seed {args.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
