#!/usr/bin/env python3
"""A bounded load generator for OpenAI-compatible servers (bitnet serve, llama-server), loopback
only, standard library only. Each of `--clients` concurrent clients sends `--requests` streamed
`/v1/completions` requests one after another: a prompt of `--prompt-tokens` token ids (different
per request), `--max-tokens` out at temperature 0 with `ignore_eos`, so every request generates
exactly that many tokens. It stops by itself (every request has a deadline) and prints one JSON
line: errors, streams that ended with [DONE], wall time, aggregate generated tokens/s, and the
p50/p99 of time-to-first-token and inter-token latency.

    python3 tools/serve_load.py --url http://127.0.0.1:8080 --clients 16
"""
import argparse
import asyncio
import json
import random
import sys
import time
import urllib.parse

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def percentile(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


async def read_chunked(reader):
    """Yields the decoded pieces of a chunked HTTP body."""
    while True:
        line = await reader.readline()
        if not line:
            return
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await reader.readline()
            return
        data = await reader.readexactly(size)
        await reader.readexactly(2)
        yield data


async def one_request(host, port, body, key, deadline):
    """Sends one streamed request; returns (ttft, [itl...], tokens, saw_done, error)."""
    payload = json.dumps(body).encode()
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            + (f"Authorization: Bearer {key}\r\n" if key else "") + "Connection: close\r\n\r\n")
    t0 = time.perf_counter()
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), deadline)
    try:
        writer.write(head.encode() + payload)
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), deadline)
        if b" 200 " not in status:
            return None, [], 0, False, status.decode().strip()
        chunked = False
        while True:
            h = await reader.readline()
            if h in (b"\r\n", b""):
                break
            if h.lower().startswith(b"transfer-encoding:") and b"chunked" in h.lower():
                chunked = True
        pieces = read_chunked(reader) if chunked else None
        buf = b""
        ttft, itl, last, tokens, done = None, [], None, 0, False
        while not done:
            if chunked:
                try:
                    data = await asyncio.wait_for(pieces.__anext__(), deadline)
                except StopAsyncIteration:
                    break
            else:
                data = await asyncio.wait_for(reader.read(65536), deadline)
                if not data:
                    break
            buf += data
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                if not event.startswith(b"data: "):
                    continue
                payload = event[6:]
                if payload.strip() == b"[DONE]":
                    done = True
                    break
                msg = json.loads(payload)
                if "error" in msg:
                    return ttft, itl, tokens, False, json.dumps(msg["error"])
                choices = msg.get("choices") or []
                if choices and choices[0].get("text"):
                    now = time.perf_counter()
                    if ttft is None:
                        ttft = now - t0
                    else:
                        itl.append(now - last)
                    last = now
                    tokens += 1
                if msg.get("usage"):
                    tokens = msg["usage"]["completion_tokens"]
        return ttft, itl, tokens, done, None if done else "the stream ended without [DONE]"
    finally:
        writer.close()


async def client(i, args, host, port, results):
    rng = random.Random(1000 + i)
    for r in range(args.requests):
        prompt = [rng.randrange(100, args.vocab) for _ in range(args.prompt_tokens)]
        body = {"prompt": prompt, "max_tokens": args.max_tokens, "temperature": 0,
                "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
        try:
            results.append(await one_request(host, port, body, args.api_key, args.timeout))
        except Exception as e:  # a timeout or a reset connection is an error, not a crash
            results.append((None, [], 0, False, repr(e)))


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=1, help="requests per client, in turn")
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--vocab", type=int, default=32000, help="prompt ids are below this")
    p.add_argument("--timeout", type=float, default=600, help="seconds any one read may wait")
    p.add_argument("--api-key")
    p.add_argument("--label", default="")
    args = p.parse_args()
    u = urllib.parse.urlparse(args.url)
    if u.hostname not in LOOPBACK:
        sys.exit(f"{u.hostname}: the load generator only talks to this machine (127.0.0.1)")
    results = []
    t = time.perf_counter()
    await asyncio.gather(*(client(i, args, u.hostname, u.port or 80, results)
                           for i in range(args.clients)))
    wall = time.perf_counter() - t
    ttfts = [r[0] for r in results if r[0] is not None]
    itls = [x for r in results for x in r[1]]
    errors = [r[4] for r in results if r[4]]
    tokens = sum(r[2] for r in results)
    ms = lambda x: None if x is None else round(x * 1000, 1)
    print(json.dumps({
        "label": args.label, "clients": args.clients, "requests": len(results),
        "errors": len(errors), "first_error": errors[0] if errors else None,
        "done": sum(1 for r in results if r[3]), "wall_s": round(wall, 2),
        "generated_tokens": tokens, "tokens_per_s": round(tokens / wall, 1),
        "ttft_ms_p50": ms(percentile(ttfts, 50)), "ttft_ms_p99": ms(percentile(ttfts, 99)),
        "itl_ms_p50": ms(percentile(itls, 50)), "itl_ms_p99": ms(percentile(itls, 99)),
    }))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
