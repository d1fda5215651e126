#!/usr/bin/env python3
"""Re-verifies the tiny Olmo 3 fixtures of tests/data/models against HF transformers.

For each fixture (default: every directory with a golden.safetensors):
  * golden.safetensors has the documented tensors, dtypes and shapes; T >= 72 and T > window;
  * the checkpoint is one dtype (F32 or BF16) and config.layer_types has both attention kinds;
  * logits recomputed from the saved checkpoint (fp32, eager) match the stored ones (reports
    whether bitwise equal) and have std >= 1;
  * the greedy continuation recomputed by full forwards matches ids and margins;
  * an independent path, HF's KV cache (DynamicCache with sliding layers, sdpa attention, one
    token per forward), reproduces the greedy ids up to the first near-tie (margin < 1e-4);
  * the sliding window matters (window = T changes the logits by >= 1e-2) and, with YaRN, so does
    the bending (plain RoPE on the full layers changes them by >= 1e-2);
  * stored mutants recompute and each is >= 1e-2 from the truth.
With --regen it also rebuilds each fixture in a temporary directory with make_model_fixtures.py
and requires every tensor and JSON file to be identical to the committed one (determinism).

Usage: /path/to/venv/bin/python tools/golden/check_fixture.py [--regen] [name ...]
Exit status 0 when every check passes.
"""
import argparse
import glob
import json
import os
import sys
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import Olmo3ForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_fixtures as mk  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS_DIR = os.path.join(HERE, "..", "..", "tests", "data", "models")
MUTANT_MIN = 1e-2  # 100x the C++ model's 1e-4 logit tolerance
NEAR_TIE = 1e-4


class Checker:
    def __init__(self, name):
        self.name, self.failures = name, []

    def expect(self, ok, what):
        print("  %s %s" % ("ok  " if ok else "FAIL", what))
        if not ok:
            self.failures.append(what)


def max_diff(a, b):
    return float((a.double() - b.double()).abs().max())


def load_fp32(path, attn="eager"):
    return Olmo3ForCausalLM.from_pretrained(path, dtype=torch.float32,
                                            attn_implementation=attn).eval()


def cached_greedy(model, ids):
    """Greedy ids and margins through HF's KV cache: the prompt in one forward, then one token."""
    out, margins = [], []
    with torch.no_grad():
        res = model(torch.tensor([ids]), use_cache=True)
        for _ in range(mk.GREEDY):
            last = res.logits[0, -1].float()
            top = torch.topk(last, 2)
            out.append(int(top.indices[0]))
            margins.append(float(top.values[0] - top.values[1]))
            res = model(torch.tensor([[out[-1]]]), past_key_values=res.past_key_values,
                        use_cache=True)
    return out, margins


def first_near_tie(margins):
    return next((i for i, m in enumerate(margins) if m < NEAR_TIE), len(margins))


def check_files(c, path, g, cfg):
    want = {"input_ids": (torch.int32, 1), "logits": (torch.float32, 2),
            "greedy_ids": (torch.int32, 1), "greedy_margins": (torch.float32, 1)}
    for k, (dt, nd) in want.items():
        c.expect(k in g and g[k].dtype == dt and g[k].dim() == nd, "%s is %s rank %d" % (k, dt, nd))
    T, V = g["logits"].shape
    c.expect(g["input_ids"].shape[0] == T and V == cfg["vocab_size"], "logits [T=%d, V=%d]" % (T, V))
    c.expect(g["greedy_ids"].shape[0] == mk.GREEDY == g["greedy_margins"].shape[0],
             "%d greedy ids and margins" % mk.GREEDY)
    ids = g["input_ids"]
    c.expect(bool((ids >= 0).all() and (ids < V).all()), "prompt ids in [0, vocab)")
    c.expect(T >= 72 and T > cfg["sliding_window"], "T=%d >= 72 and > window %d"
             % (T, cfg["sliding_window"]))
    kinds = set(cfg["layer_types"])
    c.expect(kinds == {"sliding_attention", "full_attention"}, "layer_types %s" % cfg["layer_types"])
    dtypes = set()
    for f in glob.glob(os.path.join(path, "model*.safetensors")):
        with safe_open(f, "pt") as st:
            dtypes |= {st.get_slice(k).get_dtype() for k in st.keys()}
    c.expect(len(dtypes) == 1 and dtypes <= {"F32", "BF16"}, "checkpoint dtype %s" % dtypes)
    for k in [k for k in g if k.startswith("logits_mutant_")]:
        c.expect(g[k].dtype == torch.float32 and g[k].shape == (T, V), "%s F32 [T, V]" % k)


def check_numbers(c, path, g, cfg, tol):
    ids = g["input_ids"].tolist()
    ref = load_fp32(path)
    logits = mk.forward_logits(ref, ids)
    d = max_diff(logits, g["logits"])
    c.expect(d <= tol, "logits reproduce: max |diff| %.3g (%s)"
             % (d, "bitwise" if torch.equal(logits, g["logits"]) else "not bitwise"))
    std = float(g["logits"].std())
    c.expect(std >= 1.0, "logit std %.3f >= 1" % std)

    g_ids, g_margins = mk.greedy(ref, ids)
    c.expect(g_ids == g["greedy_ids"].tolist(), "greedy ids reproduce (full recompute)")
    dm = max_diff(torch.tensor(g_margins), g["greedy_margins"])
    c.expect(dm <= tol, "greedy margins reproduce: max |diff| %.3g (min margin %.3g)"
             % (dm, min(g_margins)))

    c_ids, _ = cached_greedy(load_fp32(path, attn="sdpa"), ids)
    n = first_near_tie(g["greedy_margins"].tolist())
    c.expect(c_ids[:n] == g["greedy_ids"].tolist()[:n],
             "HF KV-cache greedy (sdpa) agrees on the first %d tokens (before any near-tie)" % n)

    wide = load_fp32(path)
    wide.config.sliding_window = len(ids)
    dw = max_diff(mk.forward_logits(wide, ids), logits)
    c.expect(dw >= MUTANT_MIN, "window %d matters: window=T changes logits by %.3g"
             % (cfg["sliding_window"], dw))
    if (cfg.get("rope_scaling") or {}).get("rope_type") == "yarn":
        plain = load_fp32(path)
        plain.model.rotary_embs["full_attention"] = plain.model.rotary_embs["sliding_attention"]
        dy = max_diff(mk.forward_logits(plain, ids), logits)
        c.expect(dy >= MUTANT_MIN, "YaRN bending matters: plain RoPE changes logits by %.3g" % dy)

    stored = {k[len("logits_mutant_"):]: v for k, v in g.items() if k.startswith("logits_mutant_")}
    if stored:
        fresh = mk.mutant_logits(path, ids)
        c.expect(set(fresh) == set(stored), "mutant set %s" % sorted(stored))
        for m, ml in stored.items():
            if m in fresh:
                dr = max_diff(fresh[m], ml)
                dt = max_diff(ml, g["logits"])
                c.expect(dr <= tol and dt >= MUTANT_MIN,
                         "mutant %s reproduces (%.3g) and differs from truth by %.3g" % (m, dr, dt))


def check_regen(c, path):
    """Rebuilds the fixture from its seed; every tensor and JSON file must be identical."""
    if c.name not in mk.MODELS:
        c.expect(False, "fixture %s is not in make_model_fixtures.MODELS" % c.name)
        return
    with tempfile.TemporaryDirectory() as tmp:
        mk.build(c.name, *mk.MODELS[c.name], tmp, seed=mk.seed_of(c.name))
        new_dir = os.path.join(tmp, c.name)
        names = sorted(os.listdir(new_dir))
        c.expect(names == sorted(os.listdir(path)), "regenerated file list %s" % names)
        for f in names:
            a, b = os.path.join(new_dir, f), os.path.join(path, f)
            if not os.path.exists(b):
                continue
            if f.endswith(".json"):
                with open(a) as fa, open(b) as fb:
                    same = json.load(fa) == json.load(fb)
            else:  # safetensors header order varies between runs: compare tensors and dtypes
                ta, tb = load_file(a), load_file(b)
                same = ta.keys() == tb.keys() and all(
                    ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]) for k in ta)
            c.expect(same, "regenerated %s identical" % f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*", help="fixtures to check; default all")
    ap.add_argument("--models-dir", default=MODELS_DIR)
    ap.add_argument("--tol", type=float, default=1e-5,
                    help="max |diff| for recomputed numbers (10x below the C++ 1e-4 tolerance)")
    ap.add_argument("--regen", action="store_true", help="also rebuild and compare bit for bit")
    args = ap.parse_args()
    mk.check_transformers()
    names = args.names or sorted(
        d for d in os.listdir(args.models_dir)
        if os.path.exists(os.path.join(args.models_dir, d, "golden.safetensors")))
    if not names:
        raise SystemExit("no fixtures found under %s" % args.models_dir)
    failed = []
    for name in names:
        path = os.path.join(args.models_dir, name)
        print(name)
        c = Checker(name)
        g = load_file(os.path.join(path, "golden.safetensors"))
        with open(os.path.join(path, "config.json")) as f:
            cfg = json.load(f)
        check_files(c, path, g, cfg)
        check_numbers(c, path, g, cfg, args.tol)
        if args.regen:
            check_regen(c, path)
        if c.failures:
            failed.append(name)
    print("%d fixtures checked, %d failed%s" % (len(names), len(failed),
                                                 (": " + ", ".join(failed)) if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
