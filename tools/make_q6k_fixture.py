#!/usr/bin/env python3
"""Writes crates/bitnet-core/tests/fixtures/q6_k_ref.bin: float rows and their Q6_K blocks as
llama.cpp's own `quantize_row_q6_K_ref` makes them (called from the libggml-base shared library
that the llama-cpp-python package ships).

Layout: u32 n (weights, a multiple of 256), n little-endian f32, then n / 256 blocks of 210 bytes.
Usage: python3 tools/make_q6k_fixture.py OUT.bin
"""
import ctypes, os, struct, sys
import numpy as np
import llama_cpp

lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))
lib.quantize_row_q6_K_ref.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]

rng = np.random.default_rng(20261123)
rows = [
    rng.standard_normal(256 * 4),                       # embedding-like
    rng.standard_normal(256 * 2) * 1e-3,                # small values
    np.where(rng.random(256 * 2) < 0.02, 40.0, 1.0) * rng.standard_normal(256 * 2),  # outliers
    rng.uniform(-1, 1, 256 * 2),
    np.zeros(256),                                      # an all-zero block
    np.concatenate([np.zeros(128), rng.standard_normal(128)]),  # zero groups beside non-zero
    rng.integers(-3, 4, 256 * 2).astype(np.float64),    # ties (x / d exactly halfway)
]
x = np.concatenate(rows).astype(np.float32)
n = x.size
out = ctypes.create_string_buffer(n // 256 * 210)
lib.quantize_row_q6_K_ref(x.ctypes.data, out, n)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<I", n) + x.tobytes() + out.raw)
print(f"{n} weights, {n // 256} blocks -> {sys.argv[1]}")
