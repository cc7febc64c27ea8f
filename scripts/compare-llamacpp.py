#!/usr/bin/env python3
"""Times bitnet-rs and llama.cpp on the same GGUF file in the same run and prints the ratios.

llama.cpp comes from the `llama-cpp-python` package (PyPI; it compiles llama.cpp on install):

    python3 -m venv /tmp/lcp && /tmp/lcp/bin/pip install llama-cpp-python==0.3.36
    /tmp/lcp/bin/python scripts/compare-llamacpp.py MODEL.gguf [--threads 1,2] [--reps 3]

Both engines measure the same things: pp = one batch of P prompt tokens, tg = N single-token
evaluations, each from an empty cache or, with `-d D`, after D tokens already in the cache
(filled once, untimed; each repetition starts again from those D); one warm-up repetition, then
`--reps` timed ones, alternating engines per thread count so that both see the same machine load.
The figures are medians. Both keep the KV cache in `--cache-type` (f16 by default, llama.cpp's
default). llama.cpp's tg includes Python's per-call overhead (tens of microseconds per token).
Only one engine runs at a time, each in its own process.
"""
import argparse, json, os, statistics, subprocess, sys, time


# ggml's type ids of the KV cache element types.
GGML_TYPE = {"f32": 0, "f16": 1}


def llama_child(model, threads, p, n, reps, depth, cache_type):
    from llama_cpp import Llama
    import random
    ty = GGML_TYPE[cache_type]
    llm = Llama(model_path=model, n_ctx=max(512, depth + max(p, n)), n_threads=threads,
                n_threads_batch=threads, n_batch=max(p, 32), type_k=ty, type_v=ty,
                verbose=False)
    random.seed(7)
    vocab = llm.n_vocab()
    toks = [random.randrange(10, min(vocab, 30000)) for _ in range(max(p, n))]
    llm.reset()
    llm.eval([random.randrange(10, min(vocab, 30000)) for _ in range(depth)])
    pp, tg = [], []
    for rep in range(reps + 1):
        # eval() drops the cache cells past n_tokens: back to the depth's prefix.
        llm.n_tokens = depth
        t = time.perf_counter()
        llm.eval(toks[:p])
        a = p / (time.perf_counter() - t)
        llm.n_tokens = depth
        t = time.perf_counter()
        for x in toks[:n]:
            llm.eval([x])
        b = n / (time.perf_counter() - t)
        if rep > 0:
            pp.append(a)
            tg.append(b)
    print(json.dumps({"pp": pp, "tg": tg}))


def run_llama(model, threads, p, n, reps, depth, cache_type):
    out = subprocess.run([sys.executable, __file__, "--llama-child", model, str(threads), str(p),
                          str(n), str(reps), str(depth), cache_type],
                         check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return statistics.median(r["pp"]), statistics.median(r["tg"])


def run_bitnet(exe, model, threads, p, n, reps, depth, cache_type):
    out = subprocess.run([exe, "bench", "-m", model, "-p", str(p), "-n", str(n), "-t", str(threads),
                          "-r", str(reps), "-d", str(depth), "--cache-type", cache_type, "--json"],
                         check=True, capture_output=True, text=True).stdout
    rows = json.loads(out)
    pick = lambda k: statistics.median(next(r for r in rows if r[k] > 0)["samples_ts"])
    return pick("n_prompt"), pick("n_gen")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--llama-child":
        m, t, p, n, r, d, ct = sys.argv[2:9]
        return llama_child(m, int(t), int(p), int(n), int(r), int(d), ct)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("-p", type=int, default=128)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("-d", "--depth", type=int, default=0,
                    help="tokens already in the cache when each test starts")
    ap.add_argument("--cache-type", choices=sorted(GGML_TYPE), default="f16")
    ap.add_argument("--bitnet", default=os.path.join(os.path.dirname(__file__), "..", "target",
                                                     "release", "bitnet"))
    a = ap.parse_args()
    print(f"model: {a.model} ({os.path.getsize(a.model) / 1e6:.1f} MB), "
          f"{a.cache_type} KV cache, depth {a.depth}")
    print(f"| threads | test | llama.cpp t/s | bitnet t/s | bitnet / llama.cpp |")
    print(f"|---:|---|---:|---:|---:|")
    for t in [int(x) for x in a.threads.split(",")]:
        lp, lt = run_llama(a.model, t, a.p, a.n, a.reps, a.depth, a.cache_type)
        bp, bt = run_bitnet(a.bitnet, a.model, t, a.p, a.n, a.reps, a.depth, a.cache_type)
        at = f" @ d{a.depth}" if a.depth else ""
        print(f"| {t} | pp{a.p}{at} | {lp:.1f} | {bp:.1f} | {bp / lp:.2f} |")
        print(f"| {t} | tg{a.n}{at} | {lt:.1f} | {bt:.1f} | {bt / lt:.2f} |", flush=True)


if __name__ == "__main__":
    main()
