#!/usr/bin/env python3
"""Sampling fixtures from transformers' logits processors (4.57.1), for
tests/worker/sampler/sampler_test.cc. Writes tests/data/sampling/hf_warpers.json:
  warpers:   fixed logit vectors -> ids surviving Temperature -> TopK -> TopP -> MinP
  penalties: RepetitionPenaltyLogitsProcessor outputs for given input ids
"""
import json
import os

import torch
import transformers
from transformers.generation.logits_process import (
    MinPLogitsWarper, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
    TopKLogitsWarper, TopPLogitsWarper)

g = torch.Generator().manual_seed(1234)


def vectors():
    out = []
    for n, scale in [(50, 1.0), (200, 3.0), (1000, 0.5), (64, 8.0)]:
        out.append((torch.randn(n, generator=g) * scale).tolist())
    ties = [2.0] * 5 + [1.0] * 10 + [0.0] * 20 + [-1.0] * 5  # exact ties at the boundaries
    out.append(ties)
    peaked = (torch.randn(300, generator=g)).tolist()
    peaked[7] = 12.0  # one dominant token
    out.append(peaked)
    return out


PARAMS = [
    dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0),
    dict(temperature=0.7, top_k=10, top_p=1.0, min_p=0.0),
    dict(temperature=1.0, top_k=0, top_p=0.9, min_p=0.0),
    dict(temperature=1.3, top_k=0, top_p=0.5, min_p=0.0),
    dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.1),
    dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05),
    dict(temperature=1.0, top_k=7, top_p=0.3, min_p=0.0),
    dict(temperature=2.0, top_k=0, top_p=0.99, min_p=0.2),
    dict(temperature=1.0, top_k=1, top_p=1.0, min_p=0.0),
    dict(temperature=0.5, top_k=3, top_p=1.0, min_p=0.0),
]


def survivors(logits, p):
    x = torch.tensor([logits], dtype=torch.float32)
    ids = torch.zeros((1, 1), dtype=torch.long)
    x = TemperatureLogitsWarper(p["temperature"])(ids, x)
    if p["top_k"] > 0:
        x = TopKLogitsWarper(p["top_k"])(ids, x)
    if p["top_p"] < 1.0:
        x = TopPLogitsWarper(p["top_p"])(ids, x)
    if p["min_p"] > 0.0:
        x = MinPLogitsWarper(p["min_p"])(ids, x)
    return sorted(int(i) for i in torch.nonzero(torch.isfinite(x[0])).flatten())


def main():
    vecs = vectors()
    warpers = []
    for v in vecs:
        for p in PARAMS:
            warpers.append({"logits": v, "params": p, "survivors": survivors(v, p)})
    penalties = []
    for penalty in [1.0, 1.2, 0.8, 2.0]:
        for v in vecs[:3]:
            n = len(v)
            input_ids = torch.randint(0, n, (17,), generator=g).tolist()
            out = RepetitionPenaltyLogitsProcessor(penalty)(
                torch.tensor([input_ids]), torch.tensor([v], dtype=torch.float32))
            penalties.append({"logits": v, "penalty": penalty, "input_ids": input_ids,
                              "output": out[0].tolist()})
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data",
                        "sampling", "hf_warpers.json")
    with open(path, "w") as f:
        json.dump({"transformers": transformers.__version__, "warpers": warpers,
                   "penalties": penalties}, f)
    print("wrote", path, len(warpers), "warper cases", len(penalties), "penalty cases")


if __name__ == "__main__":
    main()
