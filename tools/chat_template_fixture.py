#!/usr/bin/env python3
"""Renders chat templates with Hugging Face transformers and writes what it renders as a test
fixture for bitnet-server's Jinja templates (crates/bitnet-server/tests/fixtures/).

    python tools/chat_template_fixture.py SMOLLM2.gguf > crates/bitnet-server/tests/fixtures/chat_templates.json

Needs `transformers`, `jinja2` and `gguf` (PyPI). The SmolLM2 template is read from the GGUF
file's `tokenizer.chat_template`; the second template is ours, written to exercise what chat
templates use (namespace, slicing, loop variables, string methods, tojson, raise_exception,
whitespace control and trim/lstrip blocks).
"""
import json
import sys

import gguf
from transformers.utils.chat_template_utils import render_jinja_template

FEATURES = """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "You are a helpful assistant." %}
{%- endif %}
{{- "<|system|>\\n" + system_message + "\\n" }}
{%- set ns = namespace(turns=0) %}
{%- for message in messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message.role == 'user' %}{% set ns.turns = ns.turns + 1 %}{% endif %}
    {{- '<|' + message['role'] + '|>\\n' + message['content'].strip() }}
    {%- if not loop.last %}{{ '\\n' }}{% endif %}
{%- endfor %}
{% if add_generation_prompt %}
    <|assistant|> (turn {{ ns.turns }} of {{ messages|length }})
{% endif %}
{{- '\\n' ~ {"turns": ns.turns, "last": messages[-1].role, "roles": messages|map(attribute='role')|list} | tojson }}
{%- if messages[-1]['content'].startswith('Please') %}{{ ' polite' }}{% endif %}
{{ eos_token if not add_generation_prompt else '' }}"""

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [
        {"role": "system", "content": "  Speak as Hamlet.  "},
        {"role": "user", "content": "Who's there?"},
        {"role": "assistant", "content": " Nay, answer me. "},
        {"role": "user", "content": "Please: long live the king!"},
    ],
    [
        {"role": "user", "content": "Ünïcödé — «quotes» \"and\" \\backslashes\\ \n newlines"},
        {"role": "assistant", "content": "日本語"},
    ],
    # Roles that do not alternate: the features template raises.
    [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
]


def gguf_template(path):
    r = gguf.GGUFReader(path)
    f = r.fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode()


def cases(template, bos, eos):
    out = []
    for conv in CONVERSATIONS:
        for agp in (True, False):
            case = {"messages": conv, "add_generation_prompt": agp}
            try:
                rendered, _ = render_jinja_template(
                    [conv], chat_template=template, add_generation_prompt=agp,
                    bos_token=bos, eos_token=eos,
                )
                case["expected"] = rendered[0]
            except Exception as e:  # transformers' TemplateError from raise_exception
                case["error"] = str(e)
            out.append(case)
    return out


def main():
    templates = [
        ("smollm2", gguf_template(sys.argv[1]), "<|im_start|>", "<|im_end|>"),
        ("features", FEATURES, "<s>", "</s>"),
    ]
    fixture = [
        {"name": n, "template": t, "bos_token": b, "eos_token": e, "cases": cases(t, b, e)}
        for n, t, b, e in templates
    ]
    json.dump(fixture, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
