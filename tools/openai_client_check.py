#!/usr/bin/env python3
"""Talks to a running `bitnet serve` with the official `openai` Python client (PyPI) and checks
what it gets back: models, chat, streamed chat (with usage), completions, streamed completions,
and that errors arrive as the client's own exception types.

    python tools/openai_client_check.py --base-url http://127.0.0.1:8080/v1 --api-key KEY

scripts/openai-client-check.sh starts a server on SmolLM2-135M-Instruct and runs this.
Exits non-zero on the first check that fails.
"""
import argparse
import sys

import openai


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--api-key", required=True)
    a = p.parse_args()
    client = openai.OpenAI(base_url=a.base_url, api_key=a.api_key, max_retries=0, timeout=120)

    models = client.models.list().data
    check(len(models) == 1 and models[0].object == "model", f"models.list: {models[0].id}")
    model = models[0].id

    question = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    chat = client.chat.completions.create(model=model, messages=question, max_tokens=24, temperature=0)
    text = chat.choices[0].message.content
    print(f"   chat reply: {text!r}")
    check(chat.object == "chat.completion" and chat.choices[0].message.role == "assistant", "chat shape")
    check("Paris" in text, "the model knows the capital of France")
    check(chat.choices[0].finish_reason in ("stop", "length"), "chat finish_reason")
    u = chat.usage
    check(u.total_tokens == u.prompt_tokens + u.completion_tokens and u.completion_tokens > 0, "chat usage")

    stream = client.chat.completions.create(
        model=model, messages=question, max_tokens=24, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(chunks[0].choices[0].delta.role == "assistant", "the first delta carries the role")
    check(streamed == text, "streamed chat equals the whole reply")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check(finishes == [chat.choices[0].finish_reason], "one finish_reason chunk")
    check(chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == u.completion_tokens,
          "the usage chunk")

    comp = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0)
    print(f"   completion: {comp.choices[0].text!r}")
    check(comp.object == "text_completion" and comp.usage.completion_tokens > 0, "completions")
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=8, temperature=0, stream=True))
    check(streamed == comp.choices[0].text, "streamed completion equals the whole one")

    seeded = [client.chat.completions.create(model=model, messages=question, max_tokens=16,
                                             temperature=1.0, seed=7).choices[0].message.content
              for _ in range(2)]
    check(seeded[0] == seeded[1], "the same seed gives the same text")

    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x " * 100000}])
        check(False, "an over-long prompt is refused")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and "context" in str(e), "an over-long prompt is a BadRequestError")
    wrong = openai.OpenAI(base_url=a.base_url, api_key="wrong", max_retries=0)
    try:
        wrong.models.list()
        check(False, "a wrong key is refused")
    except openai.AuthenticationError:
        check(True, "a wrong key is an AuthenticationError")


if __name__ == "__main__":
    main()
