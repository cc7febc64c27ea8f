#!/usr/bin/env python3
"""Writes crates/bitnet-core/tests/fixtures/ternary_ref.gguf with the reference quantizers of the
`gguf` Python package (llama.cpp's gguf-py, PyPI `gguf`), which we did not write.

Tensors (GGUF shapes are [cols, rows]):
  source          F32   [512, 2]  the input values
  tq2_0           TQ2_0 [512, 2]  gguf.quants.quantize(source, TQ2_0)
  tq1_0           TQ1_0 [512, 2]  gguf.quants.quantize(source, TQ1_0)
  tq2_0.expected  F16   [512, 2]  gguf.quants.dequantize(tq2_0 bytes, TQ2_0) (exact in f16)
  tq1_0.expected  F16   [512, 2]  gguf.quants.dequantize(tq1_0 bytes, TQ1_0)

Usage: python -m venv venv && venv/bin/pip install gguf==0.19.0 numpy
       venv/bin/python tools/make_ternary_gguf.py
"""
import pathlib

import numpy as np
from gguf import GGMLQuantizationType as T, GGUFWriter
from gguf.quants import dequantize, quantize

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/bitnet-core/tests/fixtures/ternary_ref.gguf"

rng = np.random.default_rng(20241123)
src = rng.normal(0.0, 0.02, size=(2, 512)).astype(np.float32)
# Block 1 of row 0: already ternary values times a scale, as a converted BitNet model has.
src[0, 256:512] = rng.integers(-1, 2, size=256).astype(np.float32) * np.float32(0.0375)
# Block 0 of row 1: all zeros (d = 0).
src[1, 0:256] = 0.0

w = GGUFWriter(str(OUT), "bitnet-rs-fixture")
w.add_tensor("source", src)
for name, qt in (("tq2_0", T.TQ2_0), ("tq1_0", T.TQ1_0)):
    q = quantize(src, qt)
    w.add_tensor(name, q, raw_dtype=qt)
    w.add_tensor(name + ".expected", dequantize(q, qt).astype(np.float16))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
