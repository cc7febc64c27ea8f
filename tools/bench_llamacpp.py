#!/usr/bin/env python3
"""Times llama.cpp (the llama-cpp-python package) on a GGUF file the way `bitnet bench` times
our engine: a 128-token batch from an empty cache (pp128), then 64 single-token evaluations from
an empty cache (tg64); one warm-up repetition, three timed ones. The tg figure includes Python's
per-call overhead. Run it beside `bitnet bench -p 128 -n 64 -r 3` and quote the ratio.

Usage: python3 tools/bench_llamacpp.py MODEL.gguf THREADS
"""
import time, sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=512, n_threads=int(sys.argv[2]), n_batch=512, verbose=False)
import random; random.seed(7)
toks = [random.randrange(1000, 40000) for _ in range(128)]
res = {"pp": [], "tg": []}
for rep in range(4):
    llm.reset(); t = time.perf_counter(); llm.eval(toks); res["pp"].append(128 / (time.perf_counter() - t))
    llm.reset(); t = time.perf_counter()
    for x in toks[:64]: llm.eval([x])
    res["tg"].append(64 / (time.perf_counter() - t))
print(sys.argv[2], "threads: pp128", [round(v,1) for v in res["pp"][1:]], "tg64", [round(v,1) for v in res["tg"][1:]])
