#!/usr/bin/env python3
"""Makes the small Hugging Face BitNetForCausalLM fixtures of crates/bitnet-infer/tests/fixtures/hf-*
with the `transformers` package (not our code), and records transformers' own logits and greedy
tokens beside them.

Three checkpoints share one random model (2 layers, width 256, GQA 4/2 heads, ReLU^2, vocab 256):
  hf-online     latent bf16 weights, quantization_mode "online" (quantized by transformers per forward)
  hf-offline    packed uint8 [out/4, in] weights + weight_scale = mean|W|  (linear_class "autobitlinear")
  hf-bitlinear  packed uint8 [out/4, in] weights + weight_scale = 1/mean|W| (linear_class "bitlinear")

transformers runs the reference forward in float32 (the bf16 latent weights are upcast exactly).

Usage: python3 tools/make_hf_fixtures.py [OUT_DIR]   (needs torch, transformers, accelerate)
"""
import json, sys, os
import torch
from transformers import BitNetConfig, BitNetForCausalLM
from transformers.integrations.bitnet import pack_weights
from safetensors.torch import save_file

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "crates", "bitnet-infer", "tests", "fixtures")
PROMPT = [1, 17, 42, 99, 5, 200, 63, 128, 7, 31]
N_GREEDY = 16
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

torch.manual_seed(1234)
base = dict(vocab_size=256, hidden_size=256, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=128,
            rms_norm_eps=1e-5, rope_theta=10000.0, hidden_act="relu2", tie_word_embeddings=True,
            bos_token_id=1, eos_token_id=2)
cfg = BitNetConfig(**base)
model = BitNetForCausalLM(cfg).to(torch.float32)
with torch.no_grad():
    for n, p in model.named_parameters():
        if "norm" in n:
            p.copy_(1.0 + 0.1 * torch.randn_like(p))   # non-trivial norm weights
        else:
            p.copy_(0.05 * torch.randn_like(p))
latent = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}

def is_linear(name):
    return any(f".{l}." in name for l in LINEARS) and name.endswith(".weight")

def reference(dirname):
    m = BitNetForCausalLM.from_pretrained(dirname, dtype=torch.float32, device_map="cpu")
    m = torch.nn.Module.float(m).eval()  # float32 whatever dtype the loader kept
    with torch.no_grad():
        ids = torch.tensor([PROMPT])
        logits = m(ids).logits[0].float()
        seq = list(PROMPT)
        greedy = []
        for _ in range(N_GREEDY):
            nxt = int(m(torch.tensor([seq])).logits[0, -1].argmax())
            greedy.append(nxt)
            seq.append(nxt)
    return {"prompt": PROMPT, "logits": [[round(float(x), 5) for x in row] for row in logits],
            "greedy": greedy, "transformers": __import__("transformers").__version__,
            "torch": torch.__version__}

def write(name, tensors, qcfg):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    c = dict(base, architectures=["BitNetForCausalLM"], model_type="bitnet",
             quantization_config=qcfg, torch_dtype="bfloat16")
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    save_file(tensors, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    ref = reference(d)
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(ref, f)
    print(name, "greedy", ref["greedy"])

write("hf-online", {k: v for k, v in latent.items() if k != "lm_head.weight"},
      {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"})

for name, cls in (("hf-offline", "autobitlinear"), ("hf-bitlinear", "bitlinear")):
    t = {}
    for k, v in latent.items():
        if k == "lm_head.weight":
            continue
        if is_linear(k):
            w = v.float()
            mean = w.abs().mean().clamp(min=1e-5)
            q = (w / mean).round().clamp(-1, 1)
            t[k] = pack_weights(q.clone())
            scale = mean if cls == "autobitlinear" else 1.0 / mean
            t[k.replace(".weight", ".weight_scale")] = scale.reshape(1).to(torch.float32)
        else:
            t[k] = v
    write(name, t, {"quant_method": "bitnet", "linear_class": cls, "quantization_mode": "offline"})
