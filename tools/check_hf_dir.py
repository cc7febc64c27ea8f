#!/usr/bin/env python3
"""Loads a Hugging Face directory written by `bitnet convert --type hf-packed` with the
`transformers` package and compares its float32 logits and greedy tokens with an expected.json
made by tools/make_hf_fixtures.py (the same prompt and greedy length).

Usage: python3 tools/check_hf_dir.py DIR EXPECTED_JSON
Prints the max-abs logit difference and whether the greedy tokens agree; exits 1 if they do not.
"""
import json, sys
import torch
from transformers import AutoModelForCausalLM

d, exp_path = sys.argv[1], sys.argv[2]
exp = json.load(open(exp_path))
m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, device_map="cpu")
m = torch.nn.Module.float(m).eval()
with torch.no_grad():
    logits = m(torch.tensor([exp["prompt"]])).logits[0].float()
    seq, greedy = list(exp["prompt"]), []
    for _ in range(len(exp["greedy"])):
        nxt = int(m(torch.tensor([seq])).logits[0, -1].argmax())
        greedy.append(nxt)
        seq.append(nxt)
diff = (logits - torch.tensor(exp["logits"])).abs().max().item()
print(json.dumps({"max_abs_logit_diff": diff, "greedy_equal": greedy == exp["greedy"],
                  "greedy": greedy}))
sys.exit(0 if greedy == exp["greedy"] else 1)
