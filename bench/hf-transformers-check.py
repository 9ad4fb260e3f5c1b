#!/usr/bin/env python3
"""`steerlm export hf` loaded by the real Hugging Face stack, local files only (no network).

Reads the spec that bench/hf-transformers-check.mjs writes (the exported directories, steerlm's prompts and
their ids, llama.cpp's log-probabilities on `export gguf`) and prints one JSON line:
- chat_template: for each case, whether AutoTokenizer's apply_chat_template(messages, attributes=...,
  add_generation_prompt=True) renders steerlm's prompt, and whether it tokenizes to steerlm's ids;
- logits: max |log p(transformers) - log p(llama.cpp)| at each prompt's last position, and top-1 agreement;
- generate: greedy generation with the exported generation_config, whether <extra_id_1> is among its
  eos_token_id, and where each generation stopped;
- peft (with an adapter): max |logit difference| of PeftModel.from_pretrained(base, adapter) and the merged
  export, and whether merge_and_unload gives the same.
"""

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local files only: never reach for the Hub

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer


def load(path):
    # no dtype argument (transformers 5 renamed it): the export's own dtype, float32 by default
    return AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    here = os.path.dirname(os.path.abspath(sys.argv[1]))
    for key in ("model", "base", "adapter", "merged"):
        if spec.get(key):
            spec[key] = os.path.join(here, spec[key])
    tok = AutoTokenizer.from_pretrained(spec["model"], local_files_only=True)
    model = load(spec["model"])
    eot = tok.convert_tokens_to_ids("<extra_id_1>")
    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    result = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "architecture": model.config.architectures[0],
        "eot_in_eos_token_id": eot in eos,
        "cases": [],
    }
    with torch.no_grad():
        for case in spec["cases"]:
            kwargs = {} if case["attributes"] is None else {"attributes": case["attributes"]}
            text = tok.apply_chat_template(case["messages"], add_generation_prompt=True, tokenize=False, **kwargs)
            ids = tok(text, add_special_tokens=False)["input_ids"]
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].double(), dim=-1)
            ref = {int(k): v for k, v in case["llama_cpp_last_logprobs"].items()}
            diff = max(abs(logp[t].item() - v) for t, v in ref.items() if v > -80)
            gen = model.generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False)[0, len(ids) :].tolist()
            result["cases"].append(
                {
                    "template_matches": text == case["expected_text"],
                    "ids_match": ids == case["expected_ids"],
                    "max_abs_logprob_diff_vs_llama_cpp": diff,
                    "top1_matches_llama_cpp": int(logp.argmax()) == max(ref, key=ref.get),
                    "generated_tokens": len(gen),
                    "stopped_at": "eot" if gen and gen[-1] == eot else ("eos" if gen and gen[-1] in eos else "length"),
                }
            )
        if spec.get("adapter"):
            from peft import PeftModel
            import peft

            ids = torch.tensor([spec["cases"][0]["expected_ids"]])
            merged = load(spec["merged"])(ids).logits
            adapted = PeftModel.from_pretrained(load(spec["base"]), spec["adapter"]).eval()
            with_adapter = adapted(ids).logits
            unloaded = adapted.merge_and_unload()(ids).logits
            result["peft"] = {
                "peft": peft.__version__,
                "max_abs_logit_diff_adapter_vs_merged": (with_adapter - merged).abs().max().item(),
                "max_abs_logit_diff_merge_and_unload_vs_merged": (unloaded - merged).abs().max().item(),
            }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
