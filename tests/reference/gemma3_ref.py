#!/usr/bin/env python3
"""Independent NumPy reference of the Gemma 3 text forward pass.

Written from shared/reference/gemma-spec.md (section numbers below), not from the C++ engine
and not from any other implementation. It reads a Hugging Face checkpoint directory by itself
(config.json + model.safetensors, parsed by hand) and writes a parity fixture:

  reference.json       prompt ids, greedy continuation, shapes, the numerics used
  logits.f32           [S, V] float32 little-endian: logits for every prompt position
  hidden_states.f32    [L+1, S, H] float32 little-endian: the residual stream after the
                       embedding and after each decoder layer (bf16 values, widened)

Numerics follow HF's bf16 model (§6.1): values are rounded to bf16 after the embedding scale,
every norm, every linear layer, the RoPE cos/sin tables and each RoPE op, GeGLU and each
residual add; reductions accumulate in fp32. Attention is "sdpa style": fp32 scores, fp32
softmax, fp32 p·v, one bf16 rounding of the output. The logits are the fp32 GEMM result
(HF rounds them to bf16; bf16(logits) gives HF's values) and greedy decoding takes the argmax
of the fp32 logits, recomputing the whole sequence at each step (no KV cache).

Usage:
  python3 tests/reference/gemma3_ref.py --model DIR --out DIR [--prompt-len 40] [--new 24]
  python3 tests/reference/gemma3_ref.py --model DIR --verify DIR   # recompute and compare
Needs only numpy.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

F32 = np.float32


# ---------------------------------------------------------------- bf16

def bf16(x):
    """Round float32 values to the nearest bf16 (round-to-nearest-even), kept as float32."""
    x = np.ascontiguousarray(x, dtype=F32)
    u = x.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    out = u.astype(np.uint32).view(F32)
    return np.where(np.isnan(x), x, out)


# ---------------------------------------------------------------- checkpoint reading (§4)

def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        begin, end = e["data_offsets"]
        raw = data[base + begin:base + end]
        dt = e["dtype"]
        if dt == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(F32)
        elif dt == "F16":
            a = np.frombuffer(raw, dtype="<f2").astype(F32)
        elif dt == "F32":
            a = np.frombuffer(raw, dtype="<f4").astype(F32)
        else:
            raise ValueError(f"{path}: tensor {name}: dtype {dt} not handled")
        out[name] = a.reshape(e["shape"])
    return out


def canonical(name):
    """§4.3: strip through 'language_model.', then a leading 'model.'; None for vision tensors."""
    key = "language_model."
    if key in name:
        name = name[name.index(key) + len(key):]
    elif name.startswith(("vision_tower.", "multi_modal_projector.", "model.vision_tower.",
                          "model.multi_modal_projector.")):
        return None
    if name.startswith("model."):
        name = name[len("model."):]
    return name


# Gemma3TextConfig defaults (§1.2).
DEFAULTS = dict(vocab_size=262208, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                rms_norm_eps=1e-6, rope_theta=1e6, rope_local_base_freq=1e4,
                query_pre_attn_scalar=256, sliding_window=4096, sliding_window_pattern=6,
                rope_scaling=None)


def read_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        top = json.load(f)
    if top.get("model_type") == "gemma3":
        text = top.get("text_config") or {}
    elif top.get("model_type") == "gemma3_text":
        text = top
    else:
        raise ValueError(f"not a Gemma 3 config: model_type {top.get('model_type')}")
    c = {k: (text[k] if text.get(k) is not None else v) for k, v in DEFAULTS.items()}
    for cap in ("final_logit_softcapping", "attn_logit_softcapping"):
        assert text.get(cap) is None, f"{cap} is not part of Gemma 3"
    L = c["num_hidden_layers"]
    if text.get("layer_types"):  # §1.3
        c["sliding"] = [t == "sliding_attention" for t in text["layer_types"]]
    else:
        p = c["sliding_window_pattern"]
        c["sliding"] = [(i + 1) % p != 0 for i in range(L)]
    # RoPE (§1.4), old format; rope_scaling applies to full layers only.
    c["rope_full"] = (float(c["rope_theta"]), 1.0)
    c["rope_sliding"] = (float(c["rope_local_base_freq"]), 1.0)
    rs = c["rope_scaling"]
    if rs:
        kind = rs.get("rope_type", rs.get("type"))
        if kind == "linear":
            c["rope_full"] = (c["rope_full"][0], float(rs["factor"]))
        elif kind != "default":
            raise ValueError(f"rope type {kind} not handled")
    rp = text.get("rope_parameters")  # new format, keyed by layer type
    if rp:
        for key, slot in (("full_attention", "rope_full"), ("sliding_attention", "rope_sliding")):
            if key in rp:
                d = rp[key]
                factor = float(d.get("factor", 1.0)) if d.get("rope_type") == "linear" else 1.0
                c[slot] = (float(d.get("rope_theta", c[slot][0])), factor)
    return c


def load(model_dir):
    cfg = read_config(model_dir)
    raw = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    w = {}
    for name, a in raw.items():
        cn = canonical(name)
        if cn is not None:
            w[cn] = a
    return cfg, w


# ---------------------------------------------------------------- the forward pass (§2)

def rmsnorm(x, w, eps):
    """§2.2: fp32 normalise, multiply by (1 + w) in fp32, one bf16 rounding."""
    xf = x.astype(F32)
    ms = np.mean(xf * xf, axis=-1, keepdims=True, dtype=F32)
    y = xf * (F32(1.0) / np.sqrt(ms + F32(eps))).astype(F32)
    y = y * (F32(1.0) + w.astype(F32))
    return bf16(y)


def linear(x, weight):
    """y = x · Wᵀ, W stored [out, in]; fp32 accumulation, bf16 output (§6.1)."""
    return bf16(np.matmul(x.astype(F32), weight.T.astype(F32)))


def rope_tables(positions, D, base, factor):
    """§2.3: inv_freq in fp32, angles in fp32, cos/sin rounded to bf16, layout [ang, ang]."""
    exponent = np.arange(0, D, 2, dtype=np.int64).astype(F32) / F32(D)
    inv = (F32(1.0) / (F32(base) ** exponent)).astype(F32)
    inv = (inv / F32(factor)).astype(F32)
    ang = positions.astype(F32)[:, None] * inv[None, :]
    ang = np.concatenate([ang, ang], axis=-1).astype(F32)
    return bf16(np.cos(ang)), bf16(np.sin(ang))


def apply_rope(x, cos, sin):
    """x: [S, heads, D]; rotate_half pairs j with j + D/2; each op rounded to bf16 (§2.3)."""
    half = x.shape[-1] // 2
    rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return bf16(bf16(x * cos[:, None, :]) + bf16(rot * sin[:, None, :]))


def attention(x, lw, cfg, layer, positions, window=True):
    S = x.shape[0]
    Hq, Hkv, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    q = linear(x, lw["self_attn.q_proj.weight"]).reshape(S, Hq, D)
    k = linear(x, lw["self_attn.k_proj.weight"]).reshape(S, Hkv, D)
    v = linear(x, lw["self_attn.v_proj.weight"]).reshape(S, Hkv, D)
    q = rmsnorm(q, lw["self_attn.q_norm.weight"], eps)  # per head, over D
    k = rmsnorm(k, lw["self_attn.k_norm.weight"], eps)
    sliding = cfg["sliding"][layer]
    base, factor = cfg["rope_sliding"] if sliding else cfg["rope_full"]
    cos, sin = rope_tables(positions, D, base, factor)
    q = apply_rope(q, cos, sin)
    k = apply_rope(k, cos, sin)
    # §2.7: key j visible to query i iff pos_j <= pos_i, and on sliding layers pos_j > pos_i - W.
    pi, pj = positions[:, None], positions[None, :]
    visible = pj <= pi
    if sliding and window:
        visible &= pj > pi - cfg["sliding_window"]
    scale = F32(float(cfg["query_pre_attn_scalar"]) ** -0.5)  # §2.3: not head_dim^-0.5 (27b)
    group = Hq // Hkv  # consecutive query heads share one kv head
    out = np.empty((S, Hq, D), dtype=F32)
    for h in range(Hq):
        kh, vh = k[:, h // group, :], v[:, h // group, :]
        scores = np.matmul(q[:, h, :], kh.T).astype(F32) * scale
        scores = np.where(visible, scores, F32(-np.inf))
        scores = scores - scores.max(axis=-1, keepdims=True)
        p = np.exp(scores).astype(F32)
        p = p / p.sum(axis=-1, keepdims=True, dtype=F32)
        out[:, h, :] = np.matmul(p, vh)
    out = bf16(out).reshape(S, Hq * D)
    return linear(out, lw["self_attn.o_proj.weight"])


def gelu_tanh(z):
    z = z.astype(F32)
    c = F32(math.sqrt(2.0 / math.pi))
    return F32(0.5) * z * (F32(1.0) + np.tanh(c * (z + F32(0.044715) * z * z * z)))


def mlp(x, lw):
    """§2.4 GeGLU: gelu_tanh(gate) * up, then down."""
    g = linear(x, lw["mlp.gate_proj.weight"])
    u = linear(x, lw["mlp.up_proj.weight"])
    a = bf16(bf16(gelu_tanh(g)) * u)
    return linear(a, lw["mlp.down_proj.weight"])


def forward(cfg, w, ids, window=True):
    """Returns (fp32 logits [S, V], residual stream states [L+1, S, H])."""
    ids = np.asarray(ids, dtype=np.int64)
    H, eps = cfg["hidden_size"], cfg["rms_norm_eps"]
    E = w["embed_tokens.weight"]
    assert ids.max() < E.shape[0], "token id beyond the embedding rows (§2.6)"
    positions = np.arange(len(ids), dtype=np.int64)  # <bos> at position 0
    embed_scale = bf16(np.array([math.sqrt(H)], dtype=F32))[0]  # §2.1: bf16(sqrt(H))
    h = bf16(E[ids] * embed_scale)
    states = [h]
    for layer in range(cfg["num_hidden_layers"]):  # §2.5
        lw = {k[len(f"layers.{layer}."):]: v for k, v in w.items()
              if k.startswith(f"layers.{layer}.")}
        r = h
        x = rmsnorm(h, lw["input_layernorm.weight"], eps)
        x = attention(x, lw, cfg, layer, positions, window)
        x = rmsnorm(x, lw["post_attention_layernorm.weight"], eps)
        h = bf16(r + x)
        r = h
        x = rmsnorm(h, lw["pre_feedforward_layernorm.weight"], eps)
        x = mlp(x, lw)
        x = rmsnorm(x, lw["post_feedforward_layernorm.weight"], eps)
        h = bf16(r + x)
        states.append(h)
    h = rmsnorm(h, w["norm.weight"], eps)
    logits = np.matmul(h, E.T).astype(F32)  # tied lm_head (§2.6); no softcapping in Gemma 3
    return logits, np.stack(states)


def greedy(cfg, w, prompt, n_new):
    seq, margins = list(prompt), []
    for _ in range(n_new):
        last = forward(cfg, w, seq)[0][-1]
        order = np.argsort(-last, kind="stable")
        margins.append(float(last[order[0]] - last[order[1]]))
        seq.append(int(order[0]))
    return seq[len(prompt):], margins


# ---------------------------------------------------------------- a second formulation

def decode_f64(cfg, w, ids):
    """The same model written differently, as a check on forward(): float64 with no rounding,
    one token at a time against a KV cache, RoPE as a complex rotation of (x_j, x_{j+D/2}),
    GQA by repeating kv heads, the window as a filter on cached positions. Returns logits."""
    H, eps = cfg["hidden_size"], cfg["rms_norm_eps"]
    Hq, Hkv, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    W = {k: v.astype(np.float64) for k, v in w.items()}
    norm = lambda x, g: x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * (1 + g)
    cache = [([], [], []) for _ in range(cfg["num_hidden_layers"])]  # positions, keys, values
    out = []
    for t, tok in enumerate(ids):
        h = W["embed_tokens.weight"][tok] * float(bf16(np.array([math.sqrt(H)], F32))[0])
        for l in range(cfg["num_hidden_layers"]):
            P = lambda n: W[f"layers.{l}.{n}"]
            x = norm(h, P("input_layernorm.weight"))
            q = norm((P("self_attn.q_proj.weight") @ x).reshape(Hq, D), P("self_attn.q_norm.weight"))
            k = norm((P("self_attn.k_proj.weight") @ x).reshape(Hkv, D), P("self_attn.k_norm.weight"))
            v = (P("self_attn.v_proj.weight") @ x).reshape(Hkv, D)
            base, factor = cfg["rope_sliding"] if cfg["sliding"][l] else cfg["rope_full"]
            theta = t / factor * base ** (-np.arange(D // 2) * 2.0 / D)
            rot = lambda a: (a[:, :D // 2] + 1j * a[:, D // 2:]) * np.exp(1j * theta)
            q, k = rot(q), rot(k)
            q = np.concatenate([q.real, q.imag], axis=-1)
            k = np.concatenate([k.real, k.imag], axis=-1)
            pos, keys, vals = cache[l]
            pos.append(t), keys.append(k), vals.append(v)
            keep = [i for i, p in enumerate(pos) if not cfg["sliding"][l] or p > t - cfg["sliding_window"]]
            K = np.repeat(np.stack([keys[i] for i in keep], 1), Hq // Hkv, axis=0)  # [Hq, n, D]
            V = np.repeat(np.stack([vals[i] for i in keep], 1), Hq // Hkv, axis=0)
            s = np.einsum("hd,hnd->hn", q, K) * float(cfg["query_pre_attn_scalar"]) ** -0.5
            a = np.exp(s - s.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            o = np.einsum("hn,hnd->hd", a, V).reshape(Hq * D)
            h = h + norm(P("self_attn.o_proj.weight") @ o, P("post_attention_layernorm.weight"))
            x = norm(h, P("pre_feedforward_layernorm.weight"))
            g, u = P("mlp.gate_proj.weight") @ x, P("mlp.up_proj.weight") @ x
            act = 0.5 * g * (1 + np.tanh(math.sqrt(2 / math.pi) * (g + 0.044715 * g ** 3))) * u
            h = h + norm(P("mlp.down_proj.weight") @ act, P("post_feedforward_layernorm.weight"))
        out.append(W["embed_tokens.weight"] @ norm(h, W["norm.weight"]))
    return np.stack(out)


# ---------------------------------------------------------------- fixture I/O

def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return state, z ^ (z >> 31)


def make_prompt(n, vocab, bos, seed):
    """<bos> then n-1 ids drawn uniformly from [3, vocab) by splitmix64 (stable forever)."""
    ids, state = [bos], seed
    while len(ids) < n:
        state, r = splitmix64(state)
        ids.append(3 + r % (vocab - 3))
    return ids


def write_fixture(args, cfg, w):
    V = w["embed_tokens.weight"].shape[0]
    prompt = make_prompt(args.prompt_len, V, 2, args.prompt_seed)
    logits, states = forward(cfg, w, prompt)
    tokens, margins = greedy(cfg, w, prompt, args.new)
    os.makedirs(args.out, exist_ok=True)
    logits.astype("<f4").tofile(os.path.join(args.out, "logits.f32"))
    states.astype("<f4").tofile(os.path.join(args.out, "hidden_states.f32"))
    ref = {
        "generator": "tests/reference/gemma3_ref.py (independent NumPy implementation of "
                     "gemma-spec §2 with HF's bf16 rounding points, §6.1)",
        "prompt_seed": args.prompt_seed,
        "prompt": prompt,
        "sliding_window": cfg["sliding_window"],
        "layer_types": ["sliding_attention" if s else "full_attention" for s in cfg["sliding"]],
        "logits": {"file": "logits.f32", "dtype": "float32", "byte_order": "little",
                   "shape": list(logits.shape),
                   "meaning": "fp32 logits for every prompt position (before HF's bf16 "
                              "rounding of the logits)"},
        "hidden_states": {"file": "hidden_states.f32", "dtype": "float32",
                          "byte_order": "little", "shape": list(states.shape),
                          "meaning": "residual stream after the scaled embedding (index 0) "
                                     "and after each decoder layer (index l+1); bf16 values"},
        "greedy": {"tokens": tokens, "top1_minus_top2": [round(m, 6) for m in margins],
                   "meaning": "argmax of fp32 last-position logits, recomputing the whole "
                              "sequence each step; margins are fp32 logit gaps"},
        "numerics": "bf16 rounding after embed scale, norms, linears, RoPE tables and ops, "
                    "GeGLU, residual adds; fp32 accumulation; sdpa-style attention "
                    "(fp32 scores and softmax, bf16 output)",
    }
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}: prompt {len(prompt)} ids, logits {list(logits.shape)}, "
          f"greedy {tokens}, smallest margin {min(margins):.4f}")


def verify(args, cfg, w):
    with open(os.path.join(args.verify, "reference.json")) as f:
        ref = json.load(f)
    logits, states = forward(cfg, w, ref["prompt"])
    want = np.fromfile(os.path.join(args.verify, ref["logits"]["file"]), dtype="<f4")
    want = want.reshape(ref["logits"]["shape"])
    diff = float(np.abs(logits - want).max())
    tokens, _ = greedy(cfg, w, ref["prompt"], len(ref["greedy"]["tokens"]))
    same = tokens == ref["greedy"]["tokens"]
    # Another BLAS sums in another order, which flips a few bf16 roundings (about 0.08 at most
    # on this fixture); anything larger means the model or the reference changed.
    ok = diff <= 0.1 and same
    print(f"max |logits - fixture| = {diff}{' (bit-identical)' if diff == 0 else ''}, "
          f"greedy {'matches' if same else 'DIFFERS'}: {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="checkpoint directory")
    ap.add_argument("--out", help="fixture directory to write")
    ap.add_argument("--verify", help="fixture directory to recompute and compare")
    ap.add_argument("--prompt-len", type=int, default=40)
    ap.add_argument("--prompt-seed", type=int, default=9)
    ap.add_argument("--new", type=int, default=24, help="greedy tokens to generate")
    ap.add_argument("--ablate-window", action="store_true",
                    help="print how much the sliding window changes the prompt logits")
    ap.add_argument("--self-check", action="store_true",
                    help="compare forward() with an unrounded float64 token-by-token decode")
    args = ap.parse_args()
    cfg, w = load(args.model)
    if args.self_check:
        V = w["embed_tokens.weight"].shape[0]
        prompt = make_prompt(args.prompt_len, V, 2, args.prompt_seed)
        a = forward(cfg, w, prompt)[0].astype(np.float64)
        b = decode_f64(cfg, w, prompt)
        agree = float(np.mean(a.argmax(-1) == b.argmax(-1)))
        print(f"bf16 batch vs float64 decode: max |diff| {np.abs(a - b).max():.4f}, "
              f"mean |diff| {np.abs(a - b).mean():.4f}, logit std {a.std():.3f}, "
              f"argmax agreement {agree:.3f}")
        return 0
    if args.ablate_window:
        V = w["embed_tokens.weight"].shape[0]
        prompt = make_prompt(args.prompt_len, V, 2, args.prompt_seed)
        a = forward(cfg, w, prompt)[0]
        b = forward(cfg, w, prompt, window=False)[0]
        W = cfg["sliding_window"]
        print(f"max |logit change| without the window: positions < W: "
              f"{np.abs(a[:W] - b[:W]).max():.6f}, positions >= W: {np.abs(a[W:] - b[W:]).max():.6f}")
        return 0
    if args.verify:
        return verify(args, cfg, w)
    if not args.out:
        ap.error("one of --out, --verify or --ablate-window is required")
    write_fixture(args, cfg, w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
