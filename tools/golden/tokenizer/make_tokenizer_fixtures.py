#!/usr/bin/env python3
"""Olmo 3 tokenizer.json files and oracle test vectors for tests/coordinator/tokenizer.

1. Builds an HF tokenizer.json per added-token table (dolma2_base, olmo3_instruct) from the shared
   cl100k rank file: vocab = ranks in GPT-2 byte-level form, one merge per token (derived by
   rank-restricted BPE, the layout of dolma2's merges.txt), the shared split regex, ByteLevel
   pre-tokenizer/decoder, the added tokens.
2. Encodes >= 200 strings with two independent oracles, PyPI tiktoken (built offline from the rank
   file) and HF tokenizers (from the generated tokenizer.json), asserts they agree, and writes
   the ids: added tokens matched, and (tiktoken only) as plain text.

Usage: venv/bin/python tools/golden/tokenizer/make_tokenizer_fixtures.py [--shared ../shared]
"""
import argparse
import base64
import json
import os
import random

import tiktoken
import tokenizers
from transformers.convert_slow_tokenizer import bytes_to_unicode

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "..", "tests", "data", "tokenizer")


def load_ranks(path):
    ranks = {}
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                tok, rank = line.split()
                ranks[base64.b64decode(tok)] = int(rank)
    return ranks


def bpe_parts(ranks, token, max_rank):
    parts = [bytes([b]) for b in token]
    while True:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < max_rank and (best is None or r < best[1]):
                best = (i, r)
        if best is None:
            return parts
        i = best[0]
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]


def tokenizer_json(ranks, pattern, added):
    b2u = bytes_to_unicode()
    enc = lambda bs: "".join(b2u[b] for b in bs)
    vocab = {enc(t): r for t, r in ranks.items()}
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) == 1:
            continue
        parts = bpe_parts(ranks, token, rank)
        assert len(parts) == 2, (token, parts)
        merges.append([enc(parts[0]), enc(parts[1])])
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": t["id"], "content": t["content"], "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False,
                          "special": bool(t["special"])} for t in added],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": True, "vocab": vocab, "merges": merges},
    }


def strings(added):
    rng = random.Random(7)
    s = [
        "", "a", " ", "  ", "\n", "\n\n", "\r\n", " \n ", "\t\t x", "x    y", "a \nb", "trailing   ",
        "Hello, world!", "hello world", "HELLO WORLD", "The quick brown fox jumps over the lazy dog.",
        "it's", "It'S", "I'M here", "we'Ve", "they'LL", "she'd", "you're", "don't", "O'Neil's",
        "'sxyz", "’s curly", "'ſ", "1234567890", "x 42", "3.14159", "1,000,000", "²½Ⅻ٣",
        "https://example.com/path?query=1&b=2#frag", "user@example.org", "C:\\Windows\\path",
        "def f(x):\n    return x ** 2\n", "for (int i = 0; i < n; ++i) { a[i] += b[i]; }",
        "#include <stdio.h>\nint main() { printf(\"hi\\n\"); }", "SELECT * FROM t WHERE id=3;",
        "日本語のテキストです。", "中文文本，包括标点。", "한국어 텍스트", "العربية نص تجريبي",
        "हिन्दी पाठ", "Cafe\u0301", "naïve façade", "Ελληνικά", "русский текст", "עברית",
        "ไทย", "😀😃😄 emoji 👍🏽", "👨‍👩‍👧‍👦 family", "🇫🇷", "\ufeffBOM", "zero\u200bwidth",
        "\u00a0nbsp\u2003em\u3000ideo", "line\u2028sep", "tab\u000bvt", "\u0085nel",
        "a" * 300, "abc" * 200, "".join(chr(0x4e00 + i) for i in range(100)), "9" * 50,
        "!!!???...", "---===+++", "(parentheses) [brackets] {braces}", "   leading spaces",
        "mixed CASE and numbers 123abc456", "tab\tseparated\tvalues", "multiple\n\n\nnewlines",
    ]
    for t in added:  # added-token text, in context, and near misses
        c = t["content"]
        s += [c, f"x {c} y", f"{c}{c}", c[:-1], c.upper(), c.replace("|", "| ", 1) if "|" in c else c + "x"]
    s += ["<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
          "<|extra_id_11|>", "<|im_start |>", "<|endoftext|", "|||PHONE_NUMBER||"]
    alphabet = "abcXYZ019 \n\t'.,!?-_/<|>éßж日😀\u0301"
    while len(s) < 260:
        s.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))))
    return s


INVALID = [b"\xff", b"abc\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"a\x80b", b"\xed\xa0\x80x",
           b"\xc0\xaf", b"ok\xf5\x80\x80\x80", b"\xe0\x80\x80", b"mix\xffed \xc3\xa9 bytes"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "..", "..", "shared"))
    args = ap.parse_args()
    tokdir = os.path.join(args.shared, "data", "tokenizer")
    ranks = load_ranks(os.path.join(tokdir, "cl100k_base.tiktoken"))
    special = json.load(open(os.path.join(tokdir, "olmo3_special_tokens.json")))
    pattern = special["pre_tokenizer_regex"]
    os.makedirs(OUT, exist_ok=True)
    fixtures = {"tiktoken": tiktoken.__version__, "tokenizers": tokenizers.__version__,
                "variants": {}}
    for variant, table in special["variants"].items():
        added = [dict(t, special=bool(t["special"])) for t in table["added_tokens"]]
        tj = tokenizer_json(ranks, pattern, added)
        path = os.path.join(OUT, f"{variant}.tokenizer.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False)
        hf = tokenizers.Tokenizer.from_file(path)
        tk = tiktoken.Encoding(name=variant, pat_str=pattern, mergeable_ranks=ranks,
                               special_tokens={t["content"]: t["id"] for t in added})
        cases = []
        for text in strings(added):
            a = tk.encode(text, allowed_special="all")
            b = hf.encode(text, add_special_tokens=False).ids
            assert a == b, (variant, text, a, b)
            plain = tk.encode(text, disallowed_special=())
            cases.append({"utf8_hex": text.encode("utf-8").hex(), "ids": a, "plain_ids": plain})
        for raw in INVALID:
            text = raw.decode("utf-8", errors="replace")
            a = tk.encode(text, allowed_special="all")
            assert a == hf.encode(text, add_special_tokens=False).ids
            cases.append({"utf8_hex": raw.hex(), "invalid": True, "ids": a,
                          "plain_ids": tk.encode(text, disallowed_special=())})
        fixtures["variants"][variant] = cases
        print(variant, len(cases), "vectors; tiktoken == tokenizers on all;", os.path.getsize(path), "bytes")
    with open(os.path.join(OUT, "vectors.json"), "w") as f:
        json.dump(fixtures, f)


if __name__ == "__main__":
    main()
