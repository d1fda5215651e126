#!/usr/bin/env python3
"""Tiny Olmo 3 checkpoints and HF transformers fp32 reference outputs for the C++ model tests.

Writes tests/data/models/<name>/{config.json, generation_config.json, *.safetensors,
golden.safetensors}. golden.safetensors holds:
  input_ids      I32 [T]      the prompt (T >= 72, longer than the window + one prefill chunk)
  logits         F32 [T, V]   HF fp32 logits of the whole prompt (eager attention)
  greedy_ids     I32 [32]     greedy continuation, full recompute each step, no EOS stop
  greedy_margins F32 [32]     top-1 minus top-2 logit at each greedy step
  logits_mutant_<m> F32 [T, V] (mutant checkpoints only) logits under a deliberate bug

Usage: /path/to/venv/bin/python tools/golden/make_model_fixtures.py [--out tests/data/models]
"""
import argparse
import json
import math
import os
import shutil

import torch
import transformers
from safetensors.torch import save_file
from transformers import Olmo3Config, Olmo3ForCausalLM
from transformers.models.olmo3 import modeling_olmo3

T = 80
GREEDY = 32

BASE = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16, vocab_size=384, max_position_embeddings=256,
    sliding_window=12, rms_norm_eps=1e-6, rope_theta=10000.0, attention_bias=False,
    tie_word_embeddings=False, eos_token_id=2, pad_token_id=1, bos_token_id=None,
    rope_scaling={"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 32,
                  "attention_factor": 1.2079441541679836, "beta_fast": 32.0, "beta_slow": 1.0},
)

MODELS = {
    # name: (config overrides, options)
    "mha_f32": (dict(num_key_value_heads=4), {}),
    "gqa_bf16": (dict(), {"dtype": torch.bfloat16}),
    "mqa_hd32_yarn_default_af": (
        dict(num_key_value_heads=1, head_dim=32,
             rope_scaling={"rope_type": "yarn", "factor": 8.0,
                           "original_max_position_embeddings": 32,
                           "beta_fast": 32.0, "beta_slow": 1.0}), {}),
    "sharded3_gqa_5layers": (
        dict(num_hidden_layers=5, vocab_size=1001,
             layer_types=["full_attention", "sliding_attention", "sliding_attention",
                          "full_attention", "sliding_attention"]), {"shards": 3}),
    "hd128_mqa": (dict(num_attention_heads=2, num_key_value_heads=1, head_dim=128), {}),
    "no_rope_scaling": (dict(rope_scaling=None, rope_theta=500000.0), {}),
    # q/k projections scaled down so RMSNorm's eps matters; every mutant is computed here.
    "mutants_gqa": (dict(), {"qk_scale": 3e-3, "mutants": True}),
}


def check_transformers():
    """Abort unless this transformers applies YaRN on full-attention layers only.

    Builds a tiny YaRN model (with and without attention_factor) and checks its two rotary
    tables: sliding layers plain RoPE (inv_freq = theta^(-2i/D), attention_scaling 1), full layers
    YaRN (highest frequency unchanged, lowest divided by the factor, attention_scaling equal to
    attention_factor or its default 0.1 ln(factor) + 1)."""
    print("transformers %s, torch %s" % (transformers.__version__, torch.__version__))
    for af in (BASE["rope_scaling"]["attention_factor"], None):
        kw = dict(BASE)
        kw["rope_scaling"] = {k: v for k, v in BASE["rope_scaling"].items()
                              if k != "attention_factor" or af is not None}
        cfg = Olmo3Config(**kw)
        embs = getattr(Olmo3ForCausalLM(cfg).model, "rotary_embs", None)
        if embs is None:
            raise SystemExit("transformers %s uses one rotary table for every layer (YaRN on "
                             "sliding layers too): use 4.57.x" % transformers.__version__)
        s, f = embs["sliding_attention"], embs["full_attention"]
        d, factor = cfg.head_dim, cfg.rope_scaling["factor"]
        plain = 1.0 / cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float) / d)
        want_scale = af if af is not None else 0.1 * math.log(factor) + 1.0
        problems = []
        if s.attention_scaling != 1.0 or not torch.allclose(s.inv_freq, plain, rtol=1e-6):
            problems.append("sliding layers are not plain RoPE")
        if abs(f.attention_scaling - want_scale) > 1e-6:
            problems.append("full attention_scaling %s != %s" % (f.attention_scaling, want_scale))
        if not (torch.allclose(f.inv_freq[0], plain[0], rtol=1e-6)
                and torch.allclose(f.inv_freq[-1], plain[-1] / factor, rtol=1e-5)):
            problems.append("full layers are not YaRN-bent")
        if problems:
            raise SystemExit("transformers %s: %s" % (transformers.__version__, "; ".join(problems)))
    print("checked: YaRN on full-attention layers only, plain RoPE on sliding layers")


def init_weights(model, gen, qk_scale=1.0):
    """Scale a random init so logits have std >= 1 (HF's 0.02 init gives tiny logits)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # norms: around 1
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                fan_in = p.shape[1]
                scale = 2.0 if "lm_head" in name else 1.0
                if "q_proj" in name or "k_proj" in name:
                    scale *= qk_scale
                p.copy_(torch.randn(p.shape, generator=gen) * scale / math.sqrt(fan_in))


def forward_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def greedy(model, ids):
    ids = list(ids)
    out, margins = [], []
    for _ in range(GREEDY):
        logits = forward_logits(model, ids)[-1]
        top = torch.topk(logits, 2)
        out.append(int(top.indices[0]))
        margins.append(float(top.values[0] - top.values[1]))
        ids.append(out[-1])
    return out, margins


class PerHeadNorm(torch.nn.Module):
    """Mutant QK-norm: RMSNorm over each head's D dims (Qwen3 style) instead of the full width."""

    def __init__(self, norm, head_dim):
        super().__init__()
        self.norm, self.head_dim = norm, head_dim

    def forward(self, x):
        shape = x.shape
        h = x.float().reshape(*shape[:-1], -1, self.head_dim)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.norm.variance_epsilon)
        return (self.norm.weight * h.reshape(shape)).to(x.dtype)


def prenorm_forward(self, hidden_states, attention_mask=None, position_ids=None,
                    past_key_values=None, use_cache=False, cache_position=None,
                    position_embeddings=None, **kwargs):
    """Mutant block: pre-norm (h = x + attn(norm(x))) with the post-norm weights."""
    residual = hidden_states
    h, _ = self.self_attn(hidden_states=self.post_attention_layernorm(hidden_states),
                          attention_mask=attention_mask, position_ids=position_ids,
                          past_key_values=past_key_values, use_cache=use_cache,
                          cache_position=cache_position, position_embeddings=position_embeddings,
                          **kwargs)
    h = residual + h
    return h + self.mlp(self.post_feedforward_layernorm(h))


def mutant_logits(path, ids):
    """Logits under each deliberate bug of DESIGN.md §6, each applied to a fresh fp32 load:
      yarn_all_layers   rotary_embs["sliding_attention"] replaced by the full layers' YaRN table
      eps_1e-5          variance_epsilon = 1e-5 on every Olmo3RMSNorm (truth: 1e-6)
      window_plus_1     config.sliding_window + 1 (HF builds the sliding mask from the config)
      per_head_qk_norm  q_norm/k_norm wrapped by PerHeadNorm: RMS over each head's D dims, times
                        that head's slice of the full-width weight
      pre_norm          Olmo3DecoderLayer.forward patched to prenorm_forward (post-norm weights
                        used as pre-norm weights)
      gqa_map_mod       modeling_olmo3.repeat_kv patched to tile kv heads (x.repeat) instead of
                        interleaving them, so query head h reads kv head h % KV, not h // (H/KV)
    Class and module patches are restored afterwards."""
    out = {}

    def load():
        return Olmo3ForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                attn_implementation="eager").eval()

    m = load()
    m.model.rotary_embs["sliding_attention"] = m.model.rotary_embs["full_attention"]
    out["yarn_all_layers"] = forward_logits(m, ids)

    m = load()
    for mod in m.modules():
        if isinstance(mod, modeling_olmo3.Olmo3RMSNorm):
            mod.variance_epsilon = 1e-5
    out["eps_1e-5"] = forward_logits(m, ids)

    m = load()
    m.config.sliding_window += 1
    out["window_plus_1"] = forward_logits(m, ids)

    m = load()
    for layer in m.model.layers:
        hd = layer.self_attn.head_dim
        layer.self_attn.q_norm = PerHeadNorm(layer.self_attn.q_norm, hd)
        layer.self_attn.k_norm = PerHeadNorm(layer.self_attn.k_norm, hd)
    out["per_head_qk_norm"] = forward_logits(m, ids)

    m = load()
    orig = modeling_olmo3.Olmo3DecoderLayer.forward
    modeling_olmo3.Olmo3DecoderLayer.forward = prenorm_forward
    try:
        out["pre_norm"] = forward_logits(m, ids)
    finally:
        modeling_olmo3.Olmo3DecoderLayer.forward = orig

    m = load()
    orig_repeat = modeling_olmo3.repeat_kv
    modeling_olmo3.repeat_kv = lambda x, n: x if n == 1 else x.repeat(1, n, 1, 1)  # h -> h % KV
    try:
        out["gqa_map_mod"] = forward_logits(m, ids)
    finally:
        modeling_olmo3.repeat_kv = orig_repeat
    return out


def build(name, overrides, opts, out_root, seed):
    path = os.path.join(out_root, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    kw = dict(BASE)
    kw.update(overrides)
    if kw.get("rope_scaling") is None:
        kw.pop("rope_scaling")
    cfg = Olmo3Config(**kw)
    gen = torch.Generator().manual_seed(seed)
    model = Olmo3ForCausalLM(cfg)
    init_weights(model, gen, opts.get("qk_scale", 1.0))
    model.generation_config.eos_token_id = [2, 3]
    dtype = opts.get("dtype", torch.float32)
    model = model.to(dtype)
    if opts.get("shards"):
        total = sum(p.numel() * p.element_size() for p in model.parameters())
        for step in range(100):  # grow the shard size until HF writes exactly `shards` files
            shutil.rmtree(path, ignore_errors=True)
            model.save_pretrained(path, safe_serialization=True,
                                  max_shard_size=int(total / opts["shards"] * (1 + 0.02 * step)))
            shards = [f for f in os.listdir(path) if f.endswith(".safetensors")]
            if len(shards) == opts["shards"]:
                break
        assert len(shards) == opts["shards"], shards
    else:
        model.save_pretrained(path, safe_serialization=True)

    # Reference: reload and upcast exactly to fp32.
    ref = Olmo3ForCausalLM.from_pretrained(path, dtype=torch.float32,
                                           attn_implementation="eager").eval()
    ids = torch.randint(0, cfg.vocab_size, (T,), generator=gen).tolist()
    logits = forward_logits(ref, ids)
    std = float(logits.std())
    assert std >= 1.0, f"{name}: logit std {std} < 1"
    g_ids, g_margins = greedy(ref, ids)
    tensors = {
        "input_ids": torch.tensor(ids, dtype=torch.int32),
        "logits": logits.contiguous(),
        "greedy_ids": torch.tensor(g_ids, dtype=torch.int32),
        "greedy_margins": torch.tensor(g_margins, dtype=torch.float32),
    }
    report = f"{name}: logit std {std:.2f}, min greedy margin {min(g_margins):.3g}"
    if opts.get("mutants"):
        for mname, ml in mutant_logits(path, ids).items():
            delta = float((ml - logits).abs().max())
            assert delta >= 1e-2, f"{name}: mutant {mname} differs by only {delta}"
            tensors["logits_mutant_" + mname] = ml.contiguous()
            report += f"\n    mutant {mname}: max |dlogit| {delta:.3g}"
    save_file(tensors, os.path.join(path, "golden.safetensors"), metadata={
        "transformers": transformers.__version__, "torch": torch.__version__})
    print(report)


def seed_of(name):
    """The generator seed of one fixture (weights, then prompt ids): 1000 + its index in MODELS."""
    return 1000 + list(MODELS).index(name)


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "data", "models"))
    ap.add_argument("names", nargs="*", help="fixtures to (re)build; default all")
    args = ap.parse_args()
    torch.manual_seed(0)
    check_transformers()
    for name in args.names or MODELS:
        build(name, *MODELS[name], args.out, seed=seed_of(name))


if __name__ == "__main__":
    main()
