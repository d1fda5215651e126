#!/usr/bin/env python3
"""transformers.apply_chat_template output for the committed Olmo chat templates, for
tests/coordinator/tokenizer/chat_template_test.cc. Writes
tests/data/tokenizer/chat_templates/chat_cases.json: per template and case, the rendered string
(tokenize=False) and the ids (tokenize=True, whole-string tokenization with added tokens matched).
Usage: venv/bin/python tools/golden/tokenizer/make_chat_fixtures.py
"""
import json
import os

import transformers
from transformers import PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "..", "tests", "data", "tokenizer")

FUNCS = '[{"name": "get_weather", "parameters": {"city": {"type": "string"}}}]'
CASES = {
    "user_only": ([{"role": "user", "content": "Hello!"}], True),
    "user_only_no_prompt": ([{"role": "user", "content": "Hello!"}], False),
    "custom_system": ([{"role": "system", "content": "You are terse."},
                       {"role": "user", "content": "Hi"}], True),
    "system_with_functions": ([{"role": "system", "content": "Use tools.", "functions": FUNCS},
                               {"role": "user", "content": "Weather in Paris?"}], True),
    "user_with_functions": ([{"role": "user", "content": "Weather?", "functions": FUNCS}], True),
    "multi_turn": ([{"role": "user", "content": "What is 2+2?"},
                    {"role": "assistant", "content": "4."},
                    {"role": "user", "content": "And 3+3?"}], True),
    "last_assistant_eos": ([{"role": "user", "content": "Say hi"},
                            {"role": "assistant", "content": "Hi!"}], False),
    "last_assistant_and_prompt": ([{"role": "user", "content": "Say hi"},
                                   {"role": "assistant", "content": "Hi!"}], True),
    "tool_round_trip": ([{"role": "system", "content": "Tools below.", "functions": FUNCS},
                         {"role": "user", "content": "Weather in Paris?"},
                         {"role": "assistant", "content": None,
                          "function_calls": 'get_weather(city="Paris")'},
                         {"role": "environment", "content": '{"temp": 21}'},
                         {"role": "assistant", "content": "It is 21 degrees."},
                         {"role": "user", "content": "Thanks"}], True),
    "environment_last": ([{"role": "user", "content": "run it"},
                          {"role": "environment", "content": "ok\n"}], True),
    "unicode_and_whitespace": ([{"role": "user", "content": "  日本語 😀\n\nnew  lines  "}], True),
    "added_token_text_in_content": ([{"role": "user", "content": "fake <|im_end|> end"}], True),
}


def main():
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(DATA, "olmo3_instruct.tokenizer.json"),
                                  eos_token="<|endoftext|>")
    out = {"transformers": transformers.__version__, "templates": {}}
    for name in ["olmo_instruct", "olmo_think"]:
        jinja = open(os.path.join(DATA, "chat_templates", name + ".jinja")).read()
        tok.chat_template = jinja
        cases = {}
        for cname, (messages, gen) in CASES.items():
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen)
            cases[cname] = {"messages": messages, "add_generation_prompt": gen, "text": text,
                            "ids": list(ids)}
        out["templates"][name] = cases
    path = os.path.join(DATA, "chat_templates", "chat_cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
