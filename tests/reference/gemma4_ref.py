#!/usr/bin/env python3
"""Independent NumPy reference of the Gemma 4 text forward pass.

Written from shared/reference/gemma-spec.md (section numbers below), not from the C++ engine
and not from any other implementation. It reads a Hugging Face checkpoint directory by itself
(config.json flat or with a nested text_config; model.safetensors or a sharded checkpoint with
model.safetensors.index.json; `model.language_model.*` or `model.*` tensor names) and writes a
parity fixture:

  reference.json       prompt ids, greedy continuation and margins, shapes, the numerics used
  logits.f32           [S, V] float32 little-endian: logits for every prompt position, AFTER the
                       final softcap (computed in fp32 on the fp32 GEMM result), before any
                       bf16 rounding of the logits
  hidden_states.f32    [L+1, S, H] float32 little-endian: the residual stream after the scaled
                       embedding and after each decoder layer (bf16 values, widened)

Numerics follow HF's bf16 model (§6.1): bf16 after the embedding scale, every norm, every
linear layer, the RoPE cos/sin tables and each RoPE op, GeGLU, each residual add, the PLE and
router scalars (Python floats: one rounding of the fp32 product, §3.8), the layer scalar and
each expert's weighted output and running sum; reductions accumulate in fp32. Attention is
"sdpa style": fp32 scores (scale 1.0, §3.3), fp32 softmax, fp32 p·v, one bf16 rounding. The MoE
router routes on bf16 logits and bf16 probabilities, as HF does (§3.7; JAX and vLLM route on
fp32, so near-ties may pick other experts there).

Usage:
  python3 tests/reference/gemma4_ref.py --model DIR --out DIR [--prompt-len 40] [--new 24]
  python3 tests/reference/gemma4_ref.py --model DIR --verify DIR   # recompute and compare
  python3 tests/reference/gemma4_ref.py --model DIR --self-check   # checks on the reference
Needs only numpy.
"""
import argparse
import contextlib
import copy
import json
import math
import os
import re
import struct
import sys

import numpy as np

F32 = np.float32
_ROUND = [True]  # bf16 rounding on (HF's bf16 model) or off (plain fp32), for the self-check


# ---------------------------------------------------------------- bf16

def bf16(x):
    """Round float32 values to the nearest bf16 (round-to-nearest-even), kept as float32.
    With rounding switched off (unrounded()), only converts to float32."""
    x = np.ascontiguousarray(x, dtype=F32)
    if not _ROUND[0]:
        return x
    u = x.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    out = u.astype(np.uint32).view(F32)
    return np.where(np.isnan(x), x, out)


def bf16_const(v):
    """A model constant rounded to bf16 (bf16(sqrt(H)), §2.1); rounded in every mode."""
    u = np.array([v], dtype=F32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return F32(u.astype(np.uint32).view(F32)[0])


@contextlib.contextmanager
def unrounded():
    _ROUND[0] = False
    try:
        yield
    finally:
        _ROUND[0] = True


# ---------------------------------------------------------------- checkpoint reading (§4)

class CheckpointError(Exception):
    pass


def read_safetensors(path):
    """§4.1, parsed by hand. Returns {name: float32 array}."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise CheckpointError(f"{path}: too short for a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8 or n > 100_000_000:
        raise CheckpointError(f"{path}: header length {n} runs past the file")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base, size = 8 + n, len(data) - 8 - n
    widths = {"BF16": 2, "F16": 2, "F32": 4}
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        dt, shape = e["dtype"], e["shape"]
        begin, end = e["data_offsets"]
        if dt not in widths:
            raise CheckpointError(f"{path}: tensor {name}: dtype {dt} not handled")
        if not 0 <= begin <= end <= size or end - begin != widths[dt] * int(np.prod(shape)):
            raise CheckpointError(f"{path}: tensor {name}: data_offsets {e['data_offsets']} "
                                  f"do not fit shape {shape} {dt} in {size} data bytes")
        raw = data[base + begin:base + end]
        if dt == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(F32)
        elif dt == "F16":
            a = np.frombuffer(raw, dtype="<f2").astype(F32)
        else:
            a = np.frombuffer(raw, dtype="<f4").astype(F32)
        out[name] = a.reshape(shape)
    return out


def read_weights(model_dir):
    """model.safetensors, or the shards named by model.safetensors.index.json (§4.2)."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        out = {}
        for shard in sorted(set(weight_map.values())):
            part = read_safetensors(os.path.join(model_dir, shard))
            out.update({k: v for k, v in part.items() if weight_map.get(k) == shard})
        missing = set(weight_map) - set(out)
        if missing:
            raise CheckpointError(f"{index}: tensors missing from their shards: "
                                  f"{sorted(missing)[:5]}")
        return out
    single = os.path.join(model_dir, "model.safetensors")
    if not os.path.exists(single):
        raise CheckpointError(f"{model_dir}: neither model.safetensors nor "
                              "model.safetensors.index.json")
    return read_safetensors(single)


_SKIP = ("vision_tower.", "audio_tower.", "embed_vision.", "embed_audio.",
         "multi_modal_projector.")


def canonical(name):
    """§4.4: strip through 'language_model.' (or a leading 'model.'); None for other towers."""
    key = "language_model."
    if key in name:
        return name[name.index(key) + len(key):]
    if name.startswith("model."):
        name = name[len("model."):]
    if name.startswith(_SKIP):
        return None
    return name


# Gemma4TextConfig defaults (§1.2).
DEFAULTS = dict(vocab_size=262144, hidden_size=2304, intermediate_size=9216, num_hidden_layers=30,
                num_attention_heads=8, num_key_value_heads=4, head_dim=256, global_head_dim=512,
                num_global_key_value_heads=None, rms_norm_eps=1e-6, sliding_window=512,
                final_logit_softcapping=None, vocab_size_per_layer_input=262144,
                hidden_size_per_layer_input=256, attention_k_eq_v=False, num_kv_shared_layers=0,
                enable_moe_block=False, use_double_wide_mlp=False, num_experts=None,
                top_k_experts=None, moe_intermediate_size=None,
                hidden_activation="gelu_pytorch_tanh", sliding_window_pattern=6)
ROPE_DEFAULTS = {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                 "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                    "rope_theta": 1e6}}


def read_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        top = json.load(f)
    if top.get("model_type") == "gemma4":
        text = top.get("text_config") or {}
    elif top.get("model_type") == "gemma4_text":
        text = top
    else:
        raise CheckpointError(f"not a Gemma 4 config: model_type {top.get('model_type')}")
    # A key that is present wins even when null, as in HF (hidden_size_per_layer_input: null
    # means no PLE; only a missing key takes the default 256, §8 item 14).
    c = {k: (text[k] if k in text else v) for k, v in DEFAULTS.items()}
    for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "head_dim", "sliding_window", "rms_norm_eps"):
        if c[k] is None:
            raise CheckpointError(f"config key {k} is null")
    if c["hidden_activation"] not in ("gelu_pytorch_tanh", "gelu_tanh"):
        raise CheckpointError(f"hidden_activation {c['hidden_activation']} not handled")
    L = c["num_hidden_layers"]
    if text.get("layer_types"):  # §1.3
        types = list(text["layer_types"])
        if len(types) != L:
            raise CheckpointError(f"layer_types has {len(types)} entries for {L} layers")
    else:
        p = c["sliding_window_pattern"]
        types = ["full_attention" if (i + 1) % p == 0 else "sliding_attention" for i in range(L)]
    types[-1] = "full_attention"  # §1.3: Gemma 4 forces the last layer to full attention
    c["layer_types"] = types
    c["rope"] = read_rope(text)
    return c


def read_rope(text):
    """§1.4: rope_parameters keyed by layer type (new format) or rope_theta /
    rope_local_base_freq / rope_scaling (old format, rope_scaling on full layers only)."""
    rope = copy.deepcopy(ROPE_DEFAULTS)
    rp = text.get("rope_parameters")
    if rp and ("full_attention" in rp or "sliding_attention" in rp):
        for t in rope:
            if t in rp:
                rope[t] = dict(rp[t])
    elif rp or text.get("rope_scaling") or text.get("rope_theta"):
        if text.get("rope_theta") is not None:
            rope["full_attention"]["rope_theta"] = text["rope_theta"]
        if text.get("rope_local_base_freq") is not None:
            rope["sliding_attention"]["rope_theta"] = text["rope_local_base_freq"]
        scaling = rp or text.get("rope_scaling")
        if scaling:
            rope["full_attention"] = dict(scaling, rope_theta=scaling.get(
                "rope_theta", rope["full_attention"]["rope_theta"]))
    for t, d in rope.items():
        kind = d.get("rope_type", d.get("type", "default"))
        if kind not in ("default", "linear", "proportional"):
            raise CheckpointError(f"rope_type {kind} ({t}) not handled")
        if kind != "proportional" and float(d.get("partial_rotary_factor", 1.0)) != 1.0:
            raise CheckpointError(f"partial_rotary_factor with rope_type {kind} not handled")
        d["rope_type"] = kind
    return rope


class Model:
    """Config, canonical weights (§4.4) and the per-layer geometry derived from both."""

    def __init__(self, cfg, w):
        self.cfg, self.w = cfg, w
        c, L = cfg, cfg["num_hidden_layers"]
        self.H, self.P = c["hidden_size"], c["hidden_size_per_layer_input"] or 0
        first_shared = L - c["num_kv_shared_layers"]
        self.geo = []
        for l, t in enumerate(c["layer_types"]):
            full = t == "full_attention"
            D = (c["global_head_dim"] or c["head_dim"]) if full else c["head_dim"]
            k_eq_v = bool(c["attention_k_eq_v"]) and full  # §3.3
            Hkv = c["num_global_key_value_heads"] if k_eq_v and c["num_global_key_value_heads"] \
                else c["num_key_value_heads"]
            src = l
            if l >= first_shared:  # §3.5: last non-shared layer of the same type
                same = [m for m in range(first_shared) if c["layer_types"][m] == t]
                if not same:
                    raise CheckpointError(f"layer {l} is KV-shared but no earlier {t} layer exists")
                src = same[-1]
            self.geo.append(dict(full=full, D=D, k_eq_v=k_eq_v, Hkv=Hkv, src=src,
                                 rope=c["rope"][t]))
        self.check()

    def t(self, name):
        if name not in self.w:
            raise CheckpointError(f"tensor {name} missing from the checkpoint")
        return self.w[name]

    def check(self):
        c, H, Hq = self.cfg, self.H, self.cfg["num_attention_heads"]
        want = {"embed_tokens.weight": (None, H), "norm.weight": (H,)}
        if self.P:
            L = c["num_hidden_layers"]
            want["embed_tokens_per_layer.weight"] = (None, L * self.P)
            want["per_layer_model_projection.weight"] = (L * self.P, H)
            want["per_layer_projection_norm.weight"] = (self.P,)
        for l, g in enumerate(self.geo):
            n, D = f"layers.{l}.", g["D"]
            want[n + "self_attn.q_proj.weight"] = (Hq * D, H)
            want[n + "self_attn.o_proj.weight"] = (H, Hq * D)
            want[n + "self_attn.q_norm.weight"] = (D,)
            for norm in ("input_layernorm", "post_attention_layernorm",
                         "pre_feedforward_layernorm", "post_feedforward_layernorm"):
                want[n + norm + ".weight"] = (H,)
            want[n + "mlp.gate_proj.weight"] = (None, H)
            want[n + "mlp.up_proj.weight"] = (None, H)
            want[n + "mlp.down_proj.weight"] = (H, None)
            if self.P:
                want[n + "per_layer_input_gate.weight"] = (self.P, H)
                want[n + "per_layer_projection.weight"] = (H, self.P)
                want[n + "post_per_layer_input_norm.weight"] = (H,)
            if n + "layer_scalar" not in self.w:  # HF keeps the buffer's initial 1 (§3.9)
                print(f"gemma4_ref: {n}layer_scalar missing, using 1", file=sys.stderr)
                self.w[n + "layer_scalar"] = np.ones(1, dtype=F32)
            if g["src"] == l:
                want[n + "self_attn.k_proj.weight"] = (g["Hkv"] * D, H)
                want[n + "self_attn.k_norm.weight"] = (D,)
                if not g["k_eq_v"]:
                    want[n + "self_attn.v_proj.weight"] = (g["Hkv"] * D, H)
            if c["enable_moe_block"]:
                E, I = c["num_experts"], c["moe_intermediate_size"]
                want[n + "router.proj.weight"] = (E, H)
                want[n + "router.scale"] = (H,)
                want[n + "router.per_expert_scale"] = (E,)
                want[n + "experts.gate_up_proj"] = (E, 2 * I, H)
                want[n + "experts.down_proj"] = (E, H, I)
                for norm in ("pre_feedforward_layernorm_2", "post_feedforward_layernorm_1",
                             "post_feedforward_layernorm_2"):
                    want[n + norm + ".weight"] = (H,)
        for name, shape in want.items():
            got = self.t(name).shape
            if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
                raise CheckpointError(f"tensor {name}: shape {list(got)}, expected {list(shape)}")
        for l in range(len(self.geo)):  # §3.6: the MLP width comes from the shapes, consistently
            n = f"layers.{l}.mlp."
            widths = (self.w[n + "gate_proj.weight"].shape[0],
                      self.w[n + "up_proj.weight"].shape[0],
                      self.w[n + "down_proj.weight"].shape[1])
            if len(set(widths)) != 1:
                raise CheckpointError(f"layer {l}: MLP widths gate/up/down {list(widths)} differ")

    def layer(self, l):
        p = f"layers.{l}."
        return {k[len(p):]: v for k, v in self.w.items() if k.startswith(p)}


def load(model_dir):
    cfg = read_config(model_dir)
    w = {}
    for name, a in read_weights(model_dir).items():
        cn = canonical(name)
        if cn is not None:
            w[cn] = a
    return Model(cfg, w)


# ---------------------------------------------------------------- ops (§3.2, §2.4, §3.4)

def rmsnorm(x, w, eps):
    """§3.2 Gemma4RMSNorm: fp32 x * pow(mean(x²) + eps, -0.5), times w (no +1) when w is
    given, one bf16 rounding. w=None is the weightless norm (v_norm, router norm)."""
    xf = x.astype(F32)
    ms = np.mean(xf * xf, axis=-1, keepdims=True, dtype=F32)
    y = xf * np.power(ms + F32(eps), F32(-0.5)).astype(F32)
    if w is not None:
        y = y * w.astype(F32)
    return bf16(y)


def linear(x, weight):
    """y = x · Wᵀ, W stored [out, in]; fp32 accumulation, bf16 output (§6.1)."""
    return bf16(np.matmul(x.astype(F32), weight.T.astype(F32)))


def gelu_tanh(z):
    z = z.astype(F32)
    c = F32(math.sqrt(2.0 / math.pi))
    return F32(0.5) * z * (F32(1.0) + np.tanh(c * (z + F32(0.044715) * z * z * z)))


def geglu(g, u):
    """§2.4: gelu_tanh(gate) → bf16, times up → bf16."""
    return bf16(bf16(gelu_tanh(g)) * u)


def rope_inv_freq(rope, D):
    """§3.4 inverse frequencies for a head of D dims, D/2 pairs (j, j + D/2). default/linear:
    1/θ^(2j/D) for every pair (/factor for linear). proportional: the first
    n_rot = int(partial_rotary_factor * D // 2) pairs get 1/θ^(2j/D), with the FULL head dim D
    in the exponent, and the others 0 (cos 1, sin 0: they pass through)."""
    theta = float(rope["rope_theta"])
    factor = float(rope.get("factor", 1.0)) if rope["rope_type"] != "default" else 1.0
    n_rot = D // 2
    if rope["rope_type"] == "proportional":
        n_rot = int(float(rope.get("partial_rotary_factor", 1.0)) * D // 2)
    exponent = np.arange(0, 2 * n_rot, 2, dtype=np.int64).astype(F32) / F32(D)
    inv = (F32(1.0) / (F32(theta) ** exponent)).astype(F32)
    inv = np.concatenate([inv, np.zeros(D // 2 - n_rot, dtype=F32)])
    return (inv / F32(factor)).astype(F32), n_rot


def rope_tables(positions, rope, D):
    """Angles in fp32, cos/sin rounded to bf16, layout [ang, ang] (§2.3, §3.4)."""
    inv, _ = rope_inv_freq(rope, D)
    ang = positions.astype(F32)[:, None] * inv[None, :]
    ang = np.concatenate([ang, ang], axis=-1).astype(F32)
    return bf16(np.cos(ang)), bf16(np.sin(ang))


def apply_rope(x, cos, sin):
    """x: [S, heads, D]; rotate_half pairs j with j + D/2; each op rounded to bf16."""
    half = x.shape[-1] // 2
    rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return bf16(bf16(x * cos[:, None, :]) + bf16(rot * sin[:, None, :]))


def attend(q, k, v, positions, window):
    """sdpa-style attention, scale 1.0 (§3.3). q [S, Hq, D], k/v [S, Hkv, D]; consecutive query
    heads share a kv head. §2.7: key j visible to query i iff pos_j <= pos_i and, when window
    is set (sliding layers), pos_j > pos_i - window."""
    S, Hq, D = q.shape
    group = Hq // k.shape[1]
    pi, pj = positions[:, None], positions[None, :]
    visible = pj <= pi
    if window:
        visible &= pj > pi - window
    out = np.empty((S, Hq, D), dtype=F32)
    for h in range(Hq):
        scores = np.matmul(q[:, h, :], k[:, h // group, :].T).astype(F32)
        scores = np.where(visible, scores, F32(-np.inf))
        scores = scores - scores.max(axis=-1, keepdims=True)
        p = np.exp(scores).astype(F32)
        p = p / p.sum(axis=-1, keepdims=True, dtype=F32)
        out[:, h, :] = np.matmul(p, v[:, h // group, :])
    return bf16(out).reshape(S, Hq * D)


# ---------------------------------------------------------------- the forward pass (§3)

class Opts:
    """Switches for the self-check ablations; the defaults are the model."""

    def __init__(self, window=True, share=True, ple=True, trace=None):
        self.window, self.share, self.ple = window, share, ple
        self.trace = trace  # dict filled with per-layer K/V and router choices when given


def attention(m, l, x, positions, kv, opts):
    """§3.3–3.5. kv maps a source layer to the (k, v) it stored."""
    g, lw, eps = m.geo[l], m.layer(l), m.cfg["rms_norm_eps"]
    S, Hq, D = x.shape[0], m.cfg["num_attention_heads"], g["D"]
    cos, sin = rope_tables(positions, g["rope"], D)
    q = linear(x, lw["self_attn.q_proj.weight"]).reshape(S, Hq, D)
    q = apply_rope(rmsnorm(q, lw["self_attn.q_norm.weight"], eps), cos, sin)
    if g["src"] == l or not opts.share:
        kraw = linear(x, lw["self_attn.k_proj.weight"]).reshape(S, -1, D)
        vraw = kraw if g["k_eq_v"] else linear(x, lw["self_attn.v_proj.weight"]).reshape(S, -1, D)
        k = apply_rope(rmsnorm(kraw, lw["self_attn.k_norm.weight"], eps), cos, sin)
        v = rmsnorm(vraw, None, eps)  # v_norm: no weight, no RoPE
        kv[l] = (k, v)
    else:
        k, v = kv[g["src"]]  # own k_proj / v_proj / k_norm unused
    if opts.trace is not None:
        opts.trace.setdefault("kv", {})[l] = (k, v)
    window = m.cfg["sliding_window"] if not g["full"] and opts.window else None
    return linear(attend(q, k, v, positions, window), lw["self_attn.o_proj.weight"])


def mlp(x, lw):
    """§3.6: GeGLU; the width (double-wide or not) comes from the tensor shapes."""
    g = linear(x, lw["mlp.gate_proj.weight"])
    u = linear(x, lw["mlp.up_proj.weight"])
    return linear(geglu(g, u), lw["mlp.down_proj.weight"])


def route(m, lw, r):
    """§3.7 router on the un-normalised residual r: weightless norm, × scale (bf16), × H^-0.5
    (Python float, one rounding), bf16 logits, softmax in fp32 rounded to bf16 (HF softmaxes
    the bf16 logits), top-k on the bf16 probabilities (ties: lower index), renormalised (bf16),
    × per_expert_scale (bf16). Returns (idx [S, k], weights [S, k])."""
    eps, k = m.cfg["rms_norm_eps"], m.cfg["top_k_experts"]
    z = rmsnorm(r, None, eps)
    z = bf16(z * lw["router.scale"].astype(F32))
    z = bf16(z * F32(m.H ** -0.5))
    logits = linear(z, lw["router.proj.weight"])
    e = np.exp(logits - logits.max(axis=-1, keepdims=True)).astype(F32)
    p = bf16(e / e.sum(axis=-1, keepdims=True, dtype=F32))
    idx = np.argsort(-p, axis=-1, kind="stable")[:, :k]
    w = np.take_along_axis(p, idx, axis=-1)
    w = bf16(w / bf16(w.sum(axis=-1, keepdims=True, dtype=F32)))
    w = bf16(w * lw["router.per_expert_scale"].astype(F32)[idx])
    return idx, w


def experts(m, lw, x, idx, w):
    """Σ_k w_k · Expert_{idx_k}(x), experts visited in index order, each weighted output and
    the running sum rounded to bf16 (HF accumulates into a bf16 buffer)."""
    I = m.cfg["moe_intermediate_size"]
    gate_up, down = lw["experts.gate_up_proj"], lw["experts.down_proj"]
    out = np.zeros_like(x, dtype=F32)
    for e in range(gate_up.shape[0]):
        tok, slot = np.nonzero(idx == e)
        if len(tok) == 0:
            continue
        gu = linear(x[tok], gate_up[e])
        y = linear(geglu(gu[:, :I], gu[:, I:]), down[e])
        out[tok] = bf16(out[tok] + bf16(y * w[tok, slot][:, None]))
    return out


def per_layer_inputs(m, ids, h):
    """§3.8: the [S, L, P] per-layer inputs from the PLE table and the scaled embedding h."""
    L, P, eps = m.cfg["num_hidden_layers"], m.P, m.cfg["rms_norm_eps"]
    table = m.t("embed_tokens_per_layer.weight")
    if ids.max() >= table.shape[0]:
        raise CheckpointError(f"token id {ids.max()} beyond the {table.shape[0]} PLE rows")
    raw = bf16(table[ids] * bf16_const(math.sqrt(P))).reshape(-1, L, P)
    proj = linear(h, m.t("per_layer_model_projection.weight"))
    proj = bf16(proj * F32(m.H ** -0.5)).reshape(-1, L, P)
    proj = rmsnorm(proj, m.t("per_layer_projection_norm.weight"), eps)
    return bf16(bf16(proj + raw) * F32(2.0 ** -0.5))


def decoder_layer(m, l, h, positions, ple, kv, opts):
    """§3.10, one Gemma 4 decoder layer."""
    lw, eps = m.layer(l), m.cfg["rms_norm_eps"]
    r = h
    x = rmsnorm(h, lw["input_layernorm.weight"], eps)
    x = attention(m, l, x, positions, kv, opts)
    h = bf16(r + rmsnorm(x, lw["post_attention_layernorm.weight"], eps))
    r = h
    x = mlp(rmsnorm(h, lw["pre_feedforward_layernorm.weight"], eps), lw)
    if m.cfg["enable_moe_block"]:  # §3.7: experts beside the dense MLP, on the same residual
        m1 = rmsnorm(x, lw["post_feedforward_layernorm_1.weight"], eps)
        idx, w = route(m, lw, r)
        if opts.trace is not None:
            opts.trace.setdefault("route", {})[l] = (idx, w)
        xe = rmsnorm(r, lw["pre_feedforward_layernorm_2.weight"], eps)
        m2 = rmsnorm(experts(m, lw, xe, idx, w), lw["post_feedforward_layernorm_2.weight"], eps)
        x = bf16(m1 + m2)
    h = bf16(r + rmsnorm(x, lw["post_feedforward_layernorm.weight"], eps))
    if m.P and opts.ple:  # §3.8 PLE injection, after the MLP residual add
        r = h
        g = bf16(gelu_tanh(linear(h, lw["per_layer_input_gate.weight"])))
        g = bf16(g * ple[:, l, :])
        y = linear(g, lw["per_layer_projection.weight"])
        h = bf16(r + rmsnorm(y, lw["post_per_layer_input_norm.weight"], eps))
    return bf16(h * lw["layer_scalar"].astype(F32).reshape(()))  # §3.9


def forward(m, ids, opts=None):
    """Returns (logits [S, V] fp32 after the softcap, residual stream [L+1, S, H])."""
    opts = opts or Opts()
    ids = np.asarray(ids, dtype=np.int64)
    E = m.t("embed_tokens.weight")
    if ids.max() >= E.shape[0] or ids.min() < 0:
        raise CheckpointError(f"token id outside the {E.shape[0]} embedding rows")
    positions = np.arange(len(ids), dtype=np.int64)  # <bos> at position 0
    h = bf16(E[ids] * bf16_const(math.sqrt(m.H)))  # §2.1: bf16(sqrt(H))
    ple = per_layer_inputs(m, ids, h) if m.P else None
    states, kv = [h], {}
    for l in range(m.cfg["num_hidden_layers"]):
        h = decoder_layer(m, l, h, positions, ple, kv, opts)
        states.append(h)
    h = rmsnorm(h, m.t("norm.weight"), m.cfg["rms_norm_eps"])
    logits = np.matmul(h, E.T).astype(F32)  # tied lm_head
    cap = m.cfg["final_logit_softcapping"]
    if cap:
        logits = (F32(cap) * np.tanh(logits / F32(cap))).astype(F32)
    return logits, np.stack(states)


def greedy(m, prompt, n_new):
    seq, margins = list(prompt), []
    for _ in range(n_new):
        last = forward(m, seq)[0][-1]
        order = np.argsort(-last, kind="stable")
        margins.append(float(last[order[0]] - last[order[1]]))
        seq.append(int(order[0]))
    return seq[len(prompt):], margins


# ---------------------------------------------------------------- a second formulation

def decode_f64(m, ids):
    """The same model written differently, as a check on forward(): float64 with no rounding,
    one token at a time against a KV cache (shared layers read their source layer's cache),
    RoPE as a complex rotation of only the rotated pairs (x_j, x_{j+D/2}), GQA by repeating kv
    heads, the window as a filter on cached positions, the router and experts as explicit
    per-token, per-expert loops. Returns logits [S, V]."""
    c, H, P, L = m.cfg, m.H, m.P, m.cfg["num_hidden_layers"]
    eps, Hq = c["rms_norm_eps"], c["num_attention_heads"]
    W = {k: v.astype(np.float64) for k, v in m.w.items()}

    def norm(x, g=None):
        y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
        return y if g is None else y * g

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

    def rot(a, t, rope):
        D = a.shape[-1]
        if rope["rope_type"] == "proportional":
            n = int(float(rope.get("partial_rotary_factor", 1.0)) * D // 2)
        else:
            n = D // 2
        factor = float(rope.get("factor", 1.0)) if rope["rope_type"] != "default" else 1.0
        theta = t / factor * float(rope["rope_theta"]) ** (-2.0 * np.arange(n) / D)
        z = (a[:, :n] + 1j * a[:, D // 2:D // 2 + n]) * np.exp(1j * theta)
        out = a.copy()
        out[:, :n], out[:, D // 2:D // 2 + n] = z.real, z.imag
        return out

    def bf16_scalar(v):  # the embedding scales are bf16 constants (§2.1, §3.8)
        (u,) = struct.unpack("<I", struct.pack("<f", v))
        return struct.unpack("<f", struct.pack("<I", (u + 0x7FFF + ((u >> 16) & 1))
                                               & 0xFFFF0000))[0]

    cache = {}  # source layer -> (positions, keys, values)
    out = []
    for t, tok in enumerate(ids):
        h = W["embed_tokens.weight"][tok] * bf16_scalar(math.sqrt(H))
        if P:
            raw = W["embed_tokens_per_layer.weight"][tok] * bf16_scalar(math.sqrt(P))
            proj = (W["per_layer_model_projection.weight"] @ h) / math.sqrt(H)
            proj = norm(proj.reshape(L, P), W["per_layer_projection_norm.weight"])
            ple = (proj + raw.reshape(L, P)) / math.sqrt(2)
        for l in range(L):
            g = m.geo[l]
            A = lambda n: W[f"layers.{l}.{n}"]
            D = g["D"]
            x = norm(h, A("input_layernorm.weight"))
            q = rot(norm((A("self_attn.q_proj.weight") @ x).reshape(Hq, D),
                         A("self_attn.q_norm.weight")), t, g["rope"])
            if g["src"] == l:
                kr = (A("self_attn.k_proj.weight") @ x).reshape(-1, D)
                vr = kr if g["k_eq_v"] else (A("self_attn.v_proj.weight") @ x).reshape(-1, D)
                pos, keys, vals = cache.setdefault(l, ([], [], []))
                pos.append(t)
                keys.append(rot(norm(kr, A("self_attn.k_norm.weight")), t, g["rope"]))
                vals.append(norm(vr))
            pos, keys, vals = cache[g["src"]]
            keep = [i for i, p in enumerate(pos) if g["full"] or p > t - c["sliding_window"]]
            rep = Hq // keys[0].shape[0]
            K = np.repeat(np.stack([keys[i] for i in keep], 1), rep, axis=0)  # [Hq, n, D]
            V = np.repeat(np.stack([vals[i] for i in keep], 1), rep, axis=0)
            s = np.einsum("hd,hnd->hn", q, K)  # scale 1.0
            a = np.exp(s - s.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            o = np.einsum("hn,hnd->hd", a, V).reshape(-1)
            h = h + norm(A("self_attn.o_proj.weight") @ o, A("post_attention_layernorm.weight"))
            xm = norm(h, A("pre_feedforward_layernorm.weight"))
            y = A("mlp.down_proj.weight") @ (gelu(A("mlp.gate_proj.weight") @ xm)
                                            * (A("mlp.up_proj.weight") @ xm))
            if c["enable_moe_block"]:
                z = norm(h) * A("router.scale") / math.sqrt(H)
                lg = A("router.proj.weight") @ z
                p = np.exp(lg - lg.max())
                p /= p.sum()
                chosen = sorted(range(len(p)), key=lambda e: -p[e])[:c["top_k_experts"]]
                total = sum(p[e] for e in chosen)
                xe = norm(h, A("pre_feedforward_layernorm_2.weight"))
                I = c["moe_intermediate_size"]
                acc = np.zeros(H)
                for e in chosen:
                    gu = A("experts.gate_up_proj")[e] @ xe
                    ye = A("experts.down_proj")[e] @ (gelu(gu[:I]) * gu[I:])
                    acc += (p[e] / total) * A("router.per_expert_scale")[e] * ye
                y = (norm(y, A("post_feedforward_layernorm_1.weight"))
                     + norm(acc, A("post_feedforward_layernorm_2.weight")))
            h = h + norm(y, A("post_feedforward_layernorm.weight"))
            if P:
                gp = gelu(A("per_layer_input_gate.weight") @ h) * ple[l]
                h = h + norm(A("per_layer_projection.weight") @ gp,
                             A("post_per_layer_input_norm.weight"))
            h = h * float(A("layer_scalar").reshape(()))
        lg = W["embed_tokens.weight"] @ norm(h, W["norm.weight"])
        cap = c["final_logit_softcapping"]
        out.append(cap * np.tanh(lg / cap) if cap else lg)
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


def features(m):
    c = m.cfg
    return {"layer_types": c["layer_types"],
            "head_dim": [g["D"] for g in m.geo],
            "kv_heads": [g["Hkv"] for g in m.geo],
            "k_eq_v": [g["k_eq_v"] for g in m.geo],
            "kv_source_layer": [g["src"] for g in m.geo],
            "mlp_width": [int(m.w[f"layers.{l}.mlp.gate_proj.weight"].shape[0])
                          for l in range(c["num_hidden_layers"])],
            "rope": c["rope"], "sliding_window": c["sliding_window"],
            "hidden_size_per_layer_input": m.P, "enable_moe_block": bool(c["enable_moe_block"]),
            "final_logit_softcapping": c["final_logit_softcapping"]}


def write_fixture(args, m):
    V = m.t("embed_tokens.weight").shape[0]
    prompt = make_prompt(args.prompt_len, V, 2, args.prompt_seed)
    trace = {}
    logits, states = forward(m, prompt, Opts(trace=trace))
    tokens, margins = greedy(m, prompt, args.new)
    os.makedirs(args.out, exist_ok=True)
    logits.astype("<f4").tofile(os.path.join(args.out, "logits.f32"))
    states.astype("<f4").tofile(os.path.join(args.out, "hidden_states.f32"))
    ref = {
        "generator": "tests/reference/gemma4_ref.py (independent NumPy implementation of "
                     "gemma-spec §3 with HF's bf16 rounding points, §6.1)",
        "prompt_seed": args.prompt_seed,
        "prompt": prompt,
        "model": features(m),
        "logits": {"file": "logits.f32", "dtype": "float32", "byte_order": "little",
                   "shape": list(logits.shape),
                   "meaning": "logits for every prompt position: fp32 GEMM of the bf16 final "
                              "norm output with the tied embedding, then the final softcap "
                              "cap*tanh(x/cap) in fp32; no bf16 rounding of the logits (HF "
                              "rounds the GEMM output and each softcap op to bf16)"},
        "hidden_states": {"file": "hidden_states.f32", "dtype": "float32",
                          "byte_order": "little", "shape": list(states.shape),
                          "meaning": "residual stream after the scaled embedding (index 0) "
                                     "and after each decoder layer, layer_scalar included "
                                     "(index l+1); bf16 values; no final norm"},
        "greedy": {"tokens": tokens, "top1_minus_top2": [round(x, 6) for x in margins],
                   "meaning": "argmax of the softcapped fp32 last-position logits, "
                              "recomputing the whole sequence each step; margins are gaps "
                              "between the softcapped fp32 logits"},
        **({"routing": {
            "top_k_ids": [trace["route"][l][0].tolist() for l in sorted(trace["route"])],
            "weights": [trace["route"][l][1].tolist() for l in sorted(trace["route"])],
            "meaning": "per layer, per prompt position: the chosen experts in order of "
                       "probability and their weights (renormalised, times per_expert_scale; "
                       "bf16 values), routed on bf16 logits as HF does"}}
           if "route" in trace else {}),
        "numerics": "bf16 rounding after embed scale, norms, linears, RoPE tables and ops, "
                    "GeGLU, residual adds, PLE and router scalars, layer scalar, expert "
                    "outputs and their running sum; fp32 accumulation; sdpa-style attention "
                    "(scale 1.0, fp32 scores and softmax, bf16 output); router top-k on bf16 "
                    "probabilities from bf16 logits (as HF)",
    }
    text = json.dumps(ref, indent=1)
    # Lists of numbers and booleans on one line each.
    text = re.sub(r"\[[-0-9.eE,\s]*[-0-9.eE]\s*\]|\[(?:\s*(?:true|false),?)+\s*\]",
                  lambda mt: "[" + ", ".join(mt.group(0)[1:-1].split()).replace(",,", ",") + "]",
                  text)
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        f.write(text + "\n")
    print(f"wrote {args.out}: prompt {len(prompt)} ids, logits {list(logits.shape)}, "
          f"greedy {tokens}, smallest margin {min(margins):.4f}")


def verify(args, m):
    with open(os.path.join(args.verify, "reference.json")) as f:
        ref = json.load(f)
    logits, states = forward(m, ref["prompt"])
    want = np.fromfile(os.path.join(args.verify, ref["logits"]["file"]), dtype="<f4")
    want = want.reshape(ref["logits"]["shape"])
    hs = np.fromfile(os.path.join(args.verify, ref["hidden_states"]["file"]), dtype="<f4")
    hs = hs.reshape(ref["hidden_states"]["shape"])
    diff = float(np.abs(logits - want).max())
    hdiff = float(np.abs(states - hs).max())
    tokens, _ = greedy(m, ref["prompt"], len(ref["greedy"]["tokens"]))
    same = tokens == ref["greedy"]["tokens"]
    # Another BLAS sums in another order, which flips a few bf16 roundings (float64 sums move
    # the tiny-e logits by 0.22 at most); anything larger means the model or the reference
    # changed.
    ok = diff <= 0.5 and same
    print(f"max |logits - fixture| = {diff}{' (bit-identical)' if diff == 0 else ''}, "
          f"max |hidden - fixture| = {hdiff}, "
          f"greedy {'matches' if same else 'DIFFERS'}: {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="checkpoint directory")
    ap.add_argument("--out", help="fixture directory to write")
    ap.add_argument("--verify", help="fixture directory to recompute and compare")
    ap.add_argument("--self-check", action="store_true",
                    help="check the reference on its own (second formulation and ablations)")
    ap.add_argument("--prompt-len", type=int, default=40)
    ap.add_argument("--prompt-seed", type=int, default=9)
    ap.add_argument("--new", type=int, default=24, help="greedy tokens to generate")
    args = ap.parse_args()
    try:
        m = load(args.model)
        if args.self_check:
            import gemma4_checks  # beside this file
            return gemma4_checks.run_all(sys.modules[__name__], m, args)
        if args.verify:
            return verify(args, m)
        if not args.out:
            ap.error("one of --out, --verify or --self-check is required")
        write_fixture(args, m)
    except (CheckpointError, OSError, ValueError, KeyError) as e:
        print(f"gemma4_ref: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
