#!/usr/bin/env python3
"""RoPE inverse-frequency tables from transformers' ROPE_INIT_FUNCTIONS (4.57.1), for
tests/kernels/rope_test.cc. Writes tests/data/rope/rope_tables.json."""
import json
import os

import transformers
from transformers import Olmo3Config
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

CASES = {
    "olmo3_7b_full": dict(hidden_size=4096, num_attention_heads=32, max_position_embeddings=65536,
                          rope_theta=500000.0,
                          rope_scaling={"rope_type": "yarn", "factor": 8.0,
                                        "original_max_position_embeddings": 8192,
                                        "attention_factor": 1.2079441541679836,
                                        "beta_fast": 32.0, "beta_slow": 1.0}),
    "olmo3_7b_sliding": dict(hidden_size=4096, num_attention_heads=32,
                             max_position_embeddings=65536, rope_theta=500000.0),
    "tiny_yarn_default_af": dict(hidden_size=64, num_attention_heads=4, head_dim=16,
                                 max_position_embeddings=256, rope_theta=10000.0,
                                 rope_scaling={"rope_type": "yarn", "factor": 8.0,
                                               "original_max_position_embeddings": 32,
                                               "beta_fast": 32.0, "beta_slow": 1.0}),
    "tiny_yarn_no_original": dict(hidden_size=64, num_attention_heads=2, head_dim=32,
                                  max_position_embeddings=128, rope_theta=10000.0,
                                  rope_scaling={"rope_type": "yarn", "factor": 4.0}),
    "tiny_yarn_no_truncate": dict(hidden_size=64, num_attention_heads=2, head_dim=32,
                                  max_position_embeddings=256, rope_theta=10000.0,
                                  rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                "original_max_position_embeddings": 64,
                                                "truncate": False}),
    "yarn_hd128_default_af": dict(hidden_size=1024, num_attention_heads=8, head_dim=128,
                                  max_position_embeddings=32768, rope_theta=500000.0,
                                  rope_scaling={"rope_type": "yarn", "factor": 8.0,
                                                "original_max_position_embeddings": 4096}),
    "tiny_default_hd16": dict(hidden_size=64, num_attention_heads=4, head_dim=16,
                              max_position_embeddings=256, rope_theta=10000.0),
    "tiny_default_hd64_theta1e6": dict(hidden_size=256, num_attention_heads=4, head_dim=64,
                                       max_position_embeddings=4096, rope_theta=1000000.0),
}

out = {"transformers": transformers.__version__, "cases": {}}
for name, kw in CASES.items():
    cfg = Olmo3Config(**kw)
    rope_type = (cfg.rope_scaling or {}).get("rope_type", "default")
    inv, scale = ROPE_INIT_FUNCTIONS[rope_type](cfg, "cpu")
    out["cases"][name] = {"config": kw, "head_dim": cfg.head_dim if hasattr(cfg, "head_dim") and cfg.head_dim else cfg.hidden_size // cfg.num_attention_heads,
                          "inv_freq": [float(x) for x in inv], "attention_scaling": float(scale)}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data",
                    "rope", "rope_tables.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print("wrote", path)
