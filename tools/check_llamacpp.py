#!/usr/bin/env python3
"""Checks that llama.cpp (through the llama-cpp-python package, not our code) reads a GGUF file
written by `bitnet convert` and decodes the same greedy tokens as `bitnet generate`.

Usage: python3 tools/check_llamacpp.py MODEL.gguf BITNET_BINARY [N_TOKENS] < prompts.txt
One prompt per line in the input ("\\n" inside a line stands for a newline). Prints one JSON line
per prompt and exits 1 if any prompt's tokens differ.
"""
import json, subprocess, sys
from llama_cpp import Llama

path, binary = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 24
llm = Llama(model_path=path, n_ctx=512, n_threads=2, verbose=False)
ok = True
for line in sys.stdin:
    prompt = line.rstrip("\n").replace("\\n", "\n")
    if not prompt:
        continue
    toks = llm.tokenize(prompt.encode(), add_bos=True, special=False)
    llm.reset()
    llm.eval(toks)
    ref = []
    for _ in range(n):
        t = llm.sample(temp=0.0, top_k=1)
        ref.append(t)
        llm.eval([t])
    ours = json.loads(subprocess.run(
        [binary, "generate", "-m", path, "--prompt", prompt, "-n", str(n), "--temperature", "0",
         "--json"], check=True, capture_output=True, text=True).stdout)
    same = ours["prompt_tokens"] == toks and ours["tokens"] == ref
    ok &= same
    print(json.dumps({"prompt": prompt, "prompt_tokens_equal": ours["prompt_tokens"] == toks,
                      "tokens_equal": ours["tokens"] == ref, "llama_cpp": ref}))
sys.exit(0 if ok else 1)
