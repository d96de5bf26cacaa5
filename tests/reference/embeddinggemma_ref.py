#!/usr/bin/env python3
"""Independent NumPy reference of an EmbeddingGemma encoder (Gemma 3 text model with
bidirectional attention, pooling, Dense layers, Normalize).

Written from shared/reference/gemma-spec.md (§2 for the layers, §2.8 for the encoder) and the
sentence-transformers checkpoint layout, not from the C++ engine. The layer arithmetic
(norms, linears, RoPE, GeGLU, bf16 rounding points) is gemma3_ref.py's; what is new here:

  * attention is bidirectional: on full layers every token of the input sees every other; on
    sliding layers HF replaces the configured window W by W//2 + 1 and a key is visible iff
    |pos_k - pos_q| < W//2 + 1 (its causal sliding mask OR the bidirectional overlay);
  * no lm_head: the final norm's output is pooled over the input's tokens (modules.json ->
    the Pooling folder's config.json; mean for EmbeddingGemma), as a bf16 model does it:
    bf16(bf16(sum) / n);
  * the Dense folders (config.json in/out_features, Identity, no bias; model.safetensors
    linear.weight [out, in]) each give bf16(x · Wᵀ);
  * Normalize: x / max(||x||, 1e-12) in float64; Matryoshka truncation to d keeps the first d
    values of the Dense output and normalises them.

It writes a parity fixture:
  reference.json           inputs (token ids), the embeddings (full and truncated), pooled
                           vectors, shapes and the numerics used
  hidden_states_<i>.f32    [L+1, n_i, H] float32 little-endian per input: the residual stream
                           after the embedding and after each decoder layer

Usage:
  python3 tests/reference/embeddinggemma_ref.py --model DIR --out DIR
  python3 tests/reference/embeddinggemma_ref.py --model DIR --verify DIR
Needs only numpy.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gemma3_ref import (F32, apply_rope, bf16, canonical, linear, make_prompt, mlp,  # noqa: E402
                        read_config, read_safetensors, rmsnorm, rope_tables)


# ---------------------------------------------------------------- checkpoint reading

def load(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        top = json.load(f)
    assert top.get("use_bidirectional_attention") is True, "not an EmbeddingGemma config"
    cfg = read_config(model_dir)
    raw = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    w = {canonical(n): a for n, a in raw.items() if canonical(n) is not None}
    assert "lm_head.weight" not in w
    with open(os.path.join(model_dir, "modules.json")) as f:
        modules = sorted(json.load(f), key=lambda m: m["idx"])
    chain = []  # ("pool", mode) / ("dense", W) / ("normalize",)
    for m in modules:
        kind = m["type"].rsplit(".", 1)[-1]
        sub = os.path.join(model_dir, m["path"])
        if kind == "Transformer":
            continue
        if kind == "Pooling":
            with open(os.path.join(sub, "config.json")) as f:
                pc = json.load(f)
            modes = [k for k in ("pooling_mode_mean_tokens", "pooling_mode_cls_token",
                                 "pooling_mode_lasttoken") if pc.get(k)]
            assert len(modes) == 1, f"pooling {pc}"
            chain.append(("pool", modes[0]))
        elif kind == "Dense":
            with open(os.path.join(sub, "config.json")) as f:
                dc = json.load(f)
            assert dc.get("bias") is False
            assert dc["activation_function"].endswith("Identity")
            W = read_safetensors(os.path.join(sub, "model.safetensors"))["linear.weight"]
            assert list(W.shape) == [dc["out_features"], dc["in_features"]]
            chain.append(("dense", W))
        elif kind == "Normalize":
            chain.append(("normalize",))
        else:
            raise ValueError(f"module {kind} not handled")
    return cfg, w, chain


# ---------------------------------------------------------------- the encoder

def attention(x, lw, cfg, layer, positions):
    """§2.3 with the encoder mask of §2.8 (see the module docstring)."""
    S = x.shape[0]
    Hq, Hkv, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    q = rmsnorm(linear(x, lw["self_attn.q_proj.weight"]).reshape(S, Hq, D),
                lw["self_attn.q_norm.weight"], eps)
    k = rmsnorm(linear(x, lw["self_attn.k_proj.weight"]).reshape(S, Hkv, D),
                lw["self_attn.k_norm.weight"], eps)
    v = linear(x, lw["self_attn.v_proj.weight"]).reshape(S, Hkv, D)
    sliding = cfg["sliding"][layer]
    base, factor = cfg["rope_sliding"] if sliding else cfg["rope_full"]
    cos, sin = rope_tables(positions, D, base, factor)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    pi, pj = positions[:, None], positions[None, :]
    if sliding:
        Wb = cfg["sliding_window"] // 2 + 1
        causal_window = (pj <= pi) & (pj > pi - Wb)
        visible = causal_window | (np.abs(pi - pj) < Wb)
    else:
        visible = np.ones((S, S), dtype=bool)
    scale = F32(float(cfg["query_pre_attn_scalar"]) ** -0.5)
    group = Hq // Hkv
    out = np.empty((S, Hq, D), dtype=F32)
    for h in range(Hq):
        kh, vh = k[:, h // group, :], v[:, h // group, :]
        s = np.where(visible, np.matmul(q[:, h, :], kh.T).astype(F32) * scale, F32(-np.inf))
        p = np.exp(s - s.max(axis=-1, keepdims=True)).astype(F32)
        p = p / p.sum(axis=-1, keepdims=True, dtype=F32)
        out[:, h, :] = np.matmul(p, vh)
    return linear(bf16(out).reshape(S, Hq * D), lw["self_attn.o_proj.weight"])


def encode(cfg, w, ids):
    """Returns (last_hidden_state [S, H] after the final norm, residual states [L+1, S, H])."""
    ids = np.asarray(ids, dtype=np.int64)
    H, eps = cfg["hidden_size"], cfg["rms_norm_eps"]
    E = w["embed_tokens.weight"]
    positions = np.arange(len(ids), dtype=np.int64)
    h = bf16(E[ids] * bf16(np.array([math.sqrt(H)], dtype=F32))[0])
    states = [h]
    for layer in range(cfg["num_hidden_layers"]):
        lw = {k[len(f"layers.{layer}."):]: v for k, v in w.items()
              if k.startswith(f"layers.{layer}.")}
        x = rmsnorm(attention(rmsnorm(h, lw["input_layernorm.weight"], eps), lw, cfg, layer,
                              positions), lw["post_attention_layernorm.weight"], eps)
        h = bf16(h + x)
        x = rmsnorm(mlp(rmsnorm(h, lw["pre_feedforward_layernorm.weight"], eps), lw),
                    lw["post_feedforward_layernorm.weight"], eps)
        h = bf16(h + x)
        states.append(h)
    return rmsnorm(h, w["norm.weight"], eps), np.stack(states)


def head(chain, last, dims=None):
    """Pooling, Dense, then (optionally truncated) Normalize. Returns (pooled, embedding)."""
    pooled, x, normalize = None, None, False
    for step in chain:
        if step[0] == "pool":
            mode = step[1]
            if mode == "pooling_mode_mean_tokens":
                s = bf16(np.sum(last.astype(F32), axis=0, dtype=F32))
                x = bf16(s / F32(last.shape[0]))
            elif mode == "pooling_mode_cls_token":
                x = last[0]
            else:
                x = last[-1]
            pooled = x
        elif step[0] == "dense":
            x = linear(x[None, :], step[1])[0]
        else:
            normalize = True
    if dims is not None:
        x = x[:dims]
    x = x.astype(np.float64)
    if normalize:
        x = x / max(np.linalg.norm(x), 1e-12)
    return pooled, x


# ---------------------------------------------------------------- fixture I/O

INPUTS = [(20, 11), (7, 12), (13, 13)]  # (tokens incl. <bos> and <eos>, seed)
TRUNCATE = 32


def make_inputs(vocab):
    return [make_prompt(n - 1, vocab, 2, seed) + [1] for n, seed in INPUTS]


def compute(cfg, w, chain, inputs):
    out = []
    for ids in inputs:
        last, states = encode(cfg, w, ids)
        pooled, emb = head(chain, last)
        _, emb_t = head(chain, last, TRUNCATE)
        out.append((states, pooled, emb, emb_t))
    return out


def write_fixture(args, cfg, w, chain):
    inputs = make_inputs(w["embed_tokens.weight"].shape[0])
    results = compute(cfg, w, chain, inputs)
    os.makedirs(args.out, exist_ok=True)
    files = []
    for i, (states, _, _, _) in enumerate(results):
        name = f"hidden_states_{i}.f32"
        states.astype("<f4").tofile(os.path.join(args.out, name))
        files.append({"file": name, "shape": list(states.shape)})
    ref = {
        "generator": "tests/reference/embeddinggemma_ref.py (independent NumPy implementation "
                     "of gemma-spec §2 and §2.8 with HF's bf16 rounding points, §6.1)",
        "inputs": inputs,
        "sliding_window": cfg["sliding_window"],
        "bidirectional_window": cfg["sliding_window"] // 2 + 1,
        "layer_types": ["sliding_attention" if s else "full_attention" for s in cfg["sliding"]],
        "hidden_states": {"files": files, "dtype": "float32", "byte_order": "little",
                          "meaning": "residual stream after the scaled embedding (index 0) and "
                                     "after each decoder layer (index l+1); bf16 values"},
        "pooled": [r[1].astype(float).tolist() for r in results],
        "embeddings": [r[2].tolist() for r in results],
        "truncate_dim": TRUNCATE,
        "embeddings_truncated": [r[3].tolist() for r in results],
        "numerics": "bf16 rounding after embed scale, norms, linears, RoPE tables and ops, "
                    "GeGLU, residual adds, the pooled sum and mean, each Dense; fp32 "
                    "accumulation; sdpa-style attention; float64 normalisation",
    }
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}: {len(inputs)} inputs of {[len(x) for x in inputs]} tokens, "
          f"embedding width {len(results[0][2])}")


def verify(args, cfg, w, chain):
    with open(os.path.join(args.verify, "reference.json")) as f:
        ref = json.load(f)
    results = compute(cfg, w, chain, ref["inputs"])
    diff = max(float(np.abs(r[2] - np.array(e)).max())
               for r, e in zip(results, ref["embeddings"]))
    ok = diff <= 1e-3
    print(f"max |embedding - fixture| = {diff}: {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="checkpoint directory")
    ap.add_argument("--out", help="fixture directory to write")
    ap.add_argument("--verify", help="fixture directory to recompute and compare")
    args = ap.parse_args()
    cfg, w, chain = load(args.model)
    if args.verify:
        return verify(args, cfg, w, chain)
    if not args.out:
        ap.error("one of --out or --verify is required")
    write_fixture(args, cfg, w, chain)
    return 0


if __name__ == "__main__":
    sys.exit(main())
