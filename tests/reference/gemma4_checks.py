"""Checks on the Gemma 4 NumPy reference by itself (gemma4_ref.py --self-check).

Each check perturbs the checkpoint or the input and states what must and must not change,
with the measured numbers. A check fails (and the exit status is 1) when something that must
stay bit-identical moves, or something that must move stays put.
"""
import copy
import json
import os
import tempfile

import numpy as np

F32 = np.float32


class Checks:
    def __init__(self, ref, m, prompt):
        self.ref, self.m, self.prompt = ref, m, prompt
        self.failed = []
        self.base_logits, self.base_states = ref.forward(m, prompt)

    def report(self, name, ok, text):
        """ok None: a measurement with nothing to pass or fail."""
        print(f"[{'info' if ok is None else 'ok' if ok else 'FAIL'}] {name}: {text}")
        if ok is False:
            self.failed.append(name)

    def variant(self, edit):
        """A copy of the model whose weights edit(w) changed."""
        w = dict(self.m.w)
        edit(w)
        return self.ref.Model(self.m.cfg, w)

    def change(self, model=None, prompt=None, opts=None):
        logits, states = self.ref.forward(model or self.m, prompt or self.prompt, opts)
        return float(np.abs(logits - self.base_logits).max()), \
            float(np.abs(states - self.base_states).max())


def noise(shape, seed, scale=0.5):
    return np.random.default_rng(seed).standard_normal(shape).astype(F32) * F32(scale)


def check_formulations(c):
    ref, m = c.ref, c.m
    b = ref.decode_f64(m, c.prompt)
    with ref.unrounded():
        a = ref.forward(m, c.prompt)[0].astype(np.float64)
    d = np.abs(a - b)
    r = np.abs(c.base_logits - b)
    agree = float(np.mean(c.base_logits.argmax(-1) == b.argmax(-1)))
    c.report("second formulation, rounding off", d.max() < 1e-3,
             f"fp32 batch pass vs float64 token-by-token decode: max |diff| {d.max():.2e}, "
             f"mean {d.mean():.2e} (logit std {b.std():.3f})")
    c.report("second formulation, rounding on", None,
             f"bf16 batch pass vs float64 decode: max |diff| {r.max():.4f}, mean "
             f"{r.mean():.4f}, argmax agreement {agree:.3f}")


def check_causality(c):
    t = len(c.prompt) // 2
    p2 = list(c.prompt)
    p2[t] = 3 + (p2[t] - 3 + 101) % (c.m.cfg["vocab_size"] - 3)
    logits, states = c.ref.forward(c.m, p2)
    before = float(np.abs(logits[:t] - c.base_logits[:t]).max())
    hs_before = float(np.abs(states[:, :t] - c.base_states[:, :t]).max())
    after = float(np.abs(logits[t:] - c.base_logits[t:]).max())
    c.report("causality", before == 0 and hs_before == 0 and after > 0,
             f"token {t} changed: logits at positions < {t} move by {before} (hidden states "
             f"{hs_before}), at positions >= {t} by {after:.4f}")


def check_window(c):
    ref, m = c.ref, c.m
    S, W = len(c.prompt), m.cfg["sliding_window"]
    i, positions = S - 1, np.arange(S)
    ok, parts = True, []
    for l, g in enumerate(m.geo):
        if g["src"] != l:
            continue  # a shared layer has no keys of its own; the model-level check covers it
        # Without bf16 rounding, so that a key with a small attention weight still shows.
        with ref.unrounded():
            x = ref.rmsnorm(c.base_states[l], m.layer(l)["input_layernorm.weight"],
                            m.cfg["rms_norm_eps"])
            base = ref.attention(m, l, x, positions, {}, ref.Opts())
            moved = []
            for back in (W, W - 1):
                x2 = x.copy()
                x2[i - back] += noise(x.shape[1], l + back, 2.0)
                moved.append(float(np.abs(ref.attention(m, l, x2, positions, {}, ref.Opts())[i]
                                          - base[i]).max()))
        if g["full"]:
            ok &= moved[0] > 0 and moved[1] > 0
        else:
            ok &= moved[0] == 0 and moved[1] > 0
        parts.append(f"L{l} {'full' if g['full'] else 'sliding'} {moved[0]:.3g}/{moved[1]:.3g}")
    c.report("window, per layer", ok,
             f"attention output at position {i} (fp32, unrounded) when the input {W} / {W - 1} "
             f"positions back is perturbed: " + ", ".join(parts))
    logits = ref.forward(m, c.prompt, ref.Opts(window=False))[0]
    lo = float(np.abs(logits[:W] - c.base_logits[:W]).max())
    hi = float(np.abs(logits[W:] - c.base_logits[W:]).max())
    c.report("window, whole model", lo == 0 and hi > 0,
             f"without the window, logits at positions < {W} move by {lo}, at >= {W} by {hi:.4f}")


def check_kv_sharing(c):
    ref, m = c.ref, c.m
    shared = [l for l, g in enumerate(m.geo) if g["src"] != l]
    if not shared:
        c.report("KV sharing", all(g["src"] == l for l, g in enumerate(m.geo)),
                 "num_kv_shared_layers 0: every layer computes its own K/V")
        return

    def spoil_own(w):
        for l in shared:
            for n in ("self_attn.k_proj.weight", "self_attn.v_proj.weight",
                      "self_attn.k_norm.weight"):
                key = f"layers.{l}.{n}"
                if key in w:
                    w[key] = w[key] + noise(w[key].shape, l, 1.0)

    d_own = c.change(c.variant(spoil_own))
    c.report("KV sharing, own projections unused", d_own == (0.0, 0.0),
             f"perturbing k_proj/v_proj/k_norm of shared layers {shared}: logits move by "
             f"{d_own[0]}, hidden states by {d_own[1]}")
    trace = {}
    ref.forward(m, c.prompt, ref.Opts(trace=trace))
    same = all(trace["kv"][l][0] is trace["kv"][m.geo[l]["src"]][0] for l in shared)
    c.report("KV sharing, sources", same,
             ", ".join(f"L{l} reads L{m.geo[l]['src']}" for l in shared))
    for src in sorted({m.geo[l]["src"] for l in shared}):
        key = f"layers.{src}.self_attn.k_proj.weight"
        v = c.variant(lambda w: w.__setitem__(key, w[key] + noise(w[key].shape, src)))
        tr = {}
        logits = ref.forward(v, c.prompt, ref.Opts(trace=tr))[0]
        readers = [l for l in shared if m.geo[l]["src"] == src]
        dk = max(float(np.abs(tr["kv"][l][0] - trace["kv"][l][0]).max()) for l in readers)
        dl = float(np.abs(logits - c.base_logits).max())
        c.report(f"KV sharing, source L{src}", dk > 0 and dl > 0,
                 f"perturbing L{src} k_proj changes the keys layers {readers} attend to by "
                 f"{dk:.3f} and the logits by {dl:.3f}")
    d_off = c.change(opts=ref.Opts(share=False))
    c.report("KV sharing matters", d_off[0] > 0,
             f"shared layers computing their own K/V instead move the logits by {d_off[0]:.3f}")


def check_rope(c):
    ref, m = c.ref, c.m
    S, done = len(c.prompt), set()
    positions = np.arange(S)
    for l, g in enumerate(m.geo):
        rope, D = g["rope"], g["D"]
        key = (json.dumps(rope, sort_keys=True), D)
        if key in done:
            continue
        done.add(key)
        _, n_rot = ref.rope_inv_freq(rope, D)
        rotated = np.zeros(D, bool)
        rotated[:n_rot] = rotated[D // 2:D // 2 + n_rot] = True
        x = ref.bf16(noise((S, 2, D), D))
        cos, sin = ref.rope_tables(positions, rope, D)
        y = ref.apply_rope(x, cos, sin)
        still = bool(np.array_equal(y[:, :, ~rotated], x[:, :, ~rotated]))
        moved = bool(np.all(np.abs(y[1:, :, rotated] - x[1:, :, rotated]).max(axis=(0, 1)) > 0))
        with ref.unrounded():
            cos, sin = ref.rope_tables(positions, rope, D)
            yf = ref.apply_rope(x, cos, sin).astype(np.float64)
        j = np.arange(n_rot)
        z = (yf[:, :, j] + 1j * yf[:, :, j + D // 2]) / (x[:, :, j] + 1j * x[:, :, j + D // 2])
        want = positions[:, None] * float(rope["rope_theta"]) ** (-2.0 * j / D)
        factor = float(rope.get("factor", 1.0)) if rope["rope_type"] != "default" else 1.0
        want = want / factor
        err = float(np.abs(np.angle(z * np.exp(-1j * want[:, None, :]))).max())
        wrong = positions[:, None] * float(rope["rope_theta"]) ** (-2.0 * j / (2 * n_rot))
        werr = float(np.abs(np.angle(z * np.exp(-1j * wrong[:, None, :] / factor))).max())
        ok = still and moved and err < 1e-4 and (n_rot == D // 2 or werr > 1e-2)
        dims = (f"dims 0..{n_rot - 1} and {D // 2}..{D // 2 + n_rot - 1}"
                if n_rot < D // 2 else f"all {D} dims")
        c.report(f"RoPE {rope['rope_type']} D={D} (L{l})", ok,
                 f"{dims} rotate (others bit-identical: {still}); angle error vs "
                 f"p·θ^(-2j/{D}) {err:.1e}" + (f", vs the rotary-dim exponent "
                                               f"p·θ^(-2j/{2 * n_rot}) {werr:.2f}"
                                               if n_rot < D // 2 else ""))


def check_experts(c):
    ref, m = c.ref, c.m
    if not m.cfg["enable_moe_block"]:
        c.report("experts", not any(k.startswith("layers.") and ".experts." in k for k in m.w),
                 "enable_moe_block false: no expert tensors, no routing")
        return
    E = m.cfg["num_experts"]
    # A prefix short enough that some expert goes unused in some layer.
    for n in range(len(c.prompt), 0, -1):
        prompt = c.prompt[:n]
        trace = {}
        ref.forward(m, prompt, ref.Opts(trace=trace))
        unused = [(l, e) for l, (idx, _) in sorted(trace["route"].items())
                  for e in range(E) if not np.any(idx == e)]
        if unused:
            break
    base = ref.forward(m, prompt)[0]
    l, e = unused[0]
    idx, _ = trace["route"][l]
    used = int(idx[-1, 0])
    count = sum(int(np.any(trace["route"][ll][0] == ee)) for ll in trace["route"]
                for ee in range(E))

    def spoil(ll, ee, scale=False):
        def edit(w):
            n = f"layers.{ll}."
            for t in ("experts.gate_up_proj", "experts.down_proj"):
                a = w[n + t].copy()
                a[ee] += noise(a[ee].shape, ee, 1.0)
                w[n + t] = a
            if scale:
                s = w[n + "router.per_expert_scale"].copy()
                s[ee] *= 1.5
                w[n + "router.per_expert_scale"] = s
        return c.variant(edit)

    d_unused = float(np.abs(ref.forward(spoil(l, e, True), prompt)[0] - base).max())
    d_used = float(np.abs(ref.forward(spoil(l, used), prompt)[0] - base).max())
    c.report("experts, selection", d_unused == 0 and d_used > 0,
             f"{prompt.__len__()}-token prompt uses {count} of {E * len(trace['route'])} "
             f"(layer, expert) pairs; perturbing unused expert {e} of L{l} (weights and "
             f"per_expert_scale) moves the logits by {d_unused}, used expert {used} by "
             f"{d_used:.3f}")

    def scale_used(w):
        key = f"layers.{l}.router.per_expert_scale"
        s = w[key].copy()
        s[used] *= 1.5
        w[key] = s

    d_scale = c.change(c.variant(scale_used))[0]
    ones = c.variant(lambda w: [w.__setitem__(k, np.ones_like(v)) for k, v in list(w.items())
                                if k.endswith("router.per_expert_scale")])
    d_ones = c.change(ones)[0]
    c.report("experts, per_expert_scale", d_scale > 0 and d_ones > 0,
             f"x1.5 on used expert {used} of L{l} moves the logits by {d_scale:.3f}; all "
             f"scales set to 1 moves them by {d_ones:.3f}")
    # Routing on bf16 (HF) vs fp32 probabilities: how often the choice differs here.
    tr32 = {}
    with ref.unrounded():
        ref.forward(m, c.prompt, ref.Opts(trace=tr32))
    tr16 = {}
    ref.forward(m, c.prompt, ref.Opts(trace=tr16))
    flips = sum(int(np.sum(np.sort(tr16["route"][ll][0], -1) != np.sort(tr32["route"][ll][0], -1)))
                for ll in tr16["route"])
    total = sum(tr16["route"][ll][0].size for ll in tr16["route"])
    c.report("experts, routing precision", None,
             f"the bf16 pipeline picks a different expert than an fp32 pipeline in {flips} of "
             f"{total} choices on the prompt (the residuals differ too, not only the router)")


PLE_LAYER = ("per_layer_input_gate.weight", "per_layer_projection.weight",
             "post_per_layer_input_norm.weight")
PLE_TOP = ("embed_tokens_per_layer.weight", "per_layer_model_projection.weight",
           "per_layer_projection_norm.weight")


def is_ple(name):
    return name in PLE_TOP or name.endswith(PLE_LAYER)


def check_ple(c):
    ref, m = c.ref, c.m
    if m.P:
        def zero_rows(w):
            t = w["embed_tokens_per_layer.weight"].copy()
            t[sorted(set(c.prompt))] = 0
            w["embed_tokens_per_layer.weight"] = t

        d_zero = c.change(c.variant(zero_rows))[0]
        d_off = c.change(opts=ref.Opts(ple=False))[0]
        # The same weights written as a checkpoint with hidden_size_per_layer_input 0 and no
        # PLE tensors: it loads, and equals this checkpoint with the PLE path switched off.
        import gemma4_make_ckpt as mk
        with tempfile.TemporaryDirectory() as tmp:
            mk.write_checkpoint(tmp, dict(text_config(c.model_dir),
                                          hidden_size_per_layer_input=0),
                                {k: v for k, v in m.w.items() if not is_ple(k)})
            m0 = ref.load(tmp)
            l0 = ref.forward(m0, c.prompt)[0]
        same = m0.P == 0 and bool(
            np.array_equal(l0, ref.forward(m, c.prompt, ref.Opts(ple=False))[0]))
        c.report("PLE", d_zero > 0 and d_off > 0 and same,
                 f"zeroing the PLE rows of the prompt's ids moves the logits by {d_zero:.3f}; "
                 f"no PLE at all by {d_off:.3f}; the same weights saved with "
                 f"hidden_size_per_layer_input 0 and no PLE tensors load and equal the "
                 f"no-PLE pass bit for bit: {same}")
    else:
        present = sorted(k for k in m.w if is_ple(k))
        L, H = m.cfg["num_hidden_layers"], m.H

        def add_ple(w):  # stray PLE tensors in a P = 0 checkpoint are never read
            w["embed_tokens_per_layer.weight"] = noise((m.cfg["vocab_size"], L * 8), 1)
            for l in range(L):
                w[f"layers.{l}.per_layer_input_gate.weight"] = noise((8, H), l)
        d = c.change(c.variant(add_ple))[0]
        c.report("PLE", not present and d == 0,
                 f"hidden_size_per_layer_input 0: no PLE tensors in the checkpoint "
                 f"({len(present)}); adding stray ones moves the logits by {d}")


def check_softcap(c):
    ref, m = c.ref, c.m
    cap = m.cfg["final_logit_softcapping"]
    cfg = dict(m.cfg, final_logit_softcapping=None)
    raw = ref.forward(ref.Model(cfg, m.w), c.prompt)[0]
    want = (F32(cap) * np.tanh(raw / F32(cap))).astype(F32) if cap else raw
    ok = bool(np.array_equal(want, c.base_logits)) and (not cap or
                                                        np.abs(c.base_logits).max() < cap)
    c.report("final softcap", ok,
             f"cap {cap}: uncapped logits reach {np.abs(raw).max():.2f}, capped "
             f"{np.abs(c.base_logits).max():.2f}; logits.f32 = cap·tanh(x/cap) of the fp32 GEMM")


def text_config(model_dir):
    """The checkpoint's text config as written (flat, or the nested text_config)."""
    with open(os.path.join(model_dir, "config.json")) as f:
        top = json.load(f)
    tcfg = top.get("text_config") or {k: v for k, v in top.items() if k != "architectures"}
    return dict(tcfg, model_type="gemma4_text")


def check_layouts(c):
    """The same weights as Gemma4ForCausalLM (flat config, model.*) and sharded
    Gemma4ForConditionalGeneration (nested, model.language_model.*) load to the same logits."""
    import gemma4_make_ckpt as mk
    ref, m = c.ref, c.m
    tcfg = text_config(c.model_dir)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for layout, shards in (("causal", 1), ("conditional", 3), ("causal", 2)):
            d = os.path.join(tmp, f"{layout}-{shards}")
            mk.write_checkpoint(d, copy.deepcopy(tcfg), m.w, layout, shards)
            logits = ref.forward(ref.load(d), c.prompt)[0]
            results.append((f"{layout}/{shards} file(s)",
                            bool(np.array_equal(logits, c.base_logits))))
    c.report("checkpoint layouts", all(ok for _, ok in results),
             ", ".join(f"{n} {'identical' if ok else 'DIFFERENT'}" for n, ok in results))


def patched(ref, name, fn, prompt, m):
    """forward() with one function of the reference swapped for fn(original, *args)."""
    orig = getattr(ref, name)
    setattr(ref, name, lambda *a: fn(orig, *a))
    try:
        return ref.forward(m, prompt)[0]
    finally:
        setattr(ref, name, orig)


def route_fp32(ref, m):
    """The router as JAX / vLLM run it: fp32 logits and probabilities, no bf16 rounding."""
    def route(orig, mm, lw, r):
        z = ref.rmsnorm(r, None, mm.cfg["rms_norm_eps"]) * lw["router.scale"] * F32(mm.H ** -0.5)
        logits = np.matmul(z.astype(F32), lw["router.proj.weight"].T)
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p = p / p.sum(-1, keepdims=True)
        idx = np.argsort(-p, axis=-1, kind="stable")[:, :mm.cfg["top_k_experts"]]
        w = np.take_along_axis(p, idx, -1)
        w = w / w.sum(-1, keepdims=True) * lw["router.per_expert_scale"][idx]
        return idx, ref.bf16(w)
    return route


def check_tolerances(c, n_new):
    """What an engine may differ by: the same bf16 pipeline with float64 GEMM accumulation
    (another summation order), with 1/sqrt in the norms instead of pow(-0.5), with the router
    in fp32 (JAX, vLLM), and an fp32 pipeline with no bf16 rounding at all."""
    ref, m = c.ref, c.m
    a = patched(ref, "linear", lambda f, x, w: ref.bf16(np.matmul(
        x.astype(np.float64), w.T.astype(np.float64)).astype(F32)), c.prompt, m)

    def rsqrt_norm(f, x, w, eps):
        xf = x.astype(F32)
        y = xf / np.sqrt(np.mean(xf * xf, axis=-1, keepdims=True, dtype=F32) + F32(eps))
        return ref.bf16(y if w is None else y * w.astype(F32))
    n = np.abs(patched(ref, "rmsnorm", rsqrt_norm, c.prompt, m) - c.base_logits)
    c.report("tolerances, norm formula", None,
             f"bf16 pipeline with x/sqrt(ms+eps) instead of x*pow(ms+eps,-0.5): max |diff| "
             f"{n.max():.4f}, mean {n.mean():.4f}")
    if m.cfg["enable_moe_block"]:
        r = np.abs(patched(ref, "route", route_fp32(ref, m), c.prompt, m) - c.base_logits)
        c.report("tolerances, fp32 router", None,
                 f"bf16 pipeline routing on fp32 logits and probabilities: max |diff| "
                 f"{r.max():.4f}, mean {r.mean():.4f}")
    with ref.unrounded():
        b, states = ref.forward(m, c.prompt)
        tok32 = ref.greedy(m, c.prompt, n_new)[0]
    tok16, margins = ref.greedy(m, c.prompt, n_new)
    da, db = np.abs(a - c.base_logits), np.abs(b - c.base_logits)
    hs = np.abs(states - c.base_states).reshape(len(states), -1)
    c.report("tolerances, summation order", None,
             f"bf16 pipeline with float64 GEMM accumulation: max |diff| {da.max():.4f}, mean "
             f"{da.mean():.4f}")
    c.report("tolerances, fp32 engine", None,
             f"fp32 pipeline without bf16 rounding: logits max |diff| {db.max():.4f}, 99th "
             f"percentile {np.percentile(db, 99):.4f}, mean {db.mean():.4f}; hidden states max "
             f"per layer {[round(float(x), 3) for x in hs.max(1)]}, mean per layer "
             f"{[round(float(x), 4) for x in hs.mean(1)]}; greedy tokens "
             f"{'identical' if tok32 == tok16 else 'DIFFERENT'} "
             f"({sum(x == y for x, y in zip(tok32, tok16))} of {n_new}); smallest greedy "
             f"margin {min(margins):.4f}")


def run_all(ref, m, args):
    V = m.t("embed_tokens.weight").shape[0]
    prompt = ref.make_prompt(args.prompt_len, V, 2, args.prompt_seed)
    c = Checks(ref, m, prompt)
    c.model_dir = args.model
    for check in (check_formulations, check_causality, check_window, check_kv_sharing,
                  check_rope, check_experts, check_ple, check_softcap, check_layouts):
        check(c)
    check_tolerances(c, args.new)
    print(f"{len(c.failed)} check(s) failed" + (f": {c.failed}" if c.failed else ""))
    return 1 if c.failed else 0
