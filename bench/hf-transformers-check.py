#!/usr/bin/env python3
"""`steerlm export hf` loaded by the real Hugging Face stack (transformers 5.x and peft), local files only.

    python3 bench/hf-transformers-check.py [folder]      # default: bench/hf-transformers-check beside this file

The folder (committed; bench/hf-transformers-check.mjs makes it) holds a tiny model steerlm trained and exported:
model-hf/ (a LoRA run, merged), base-hf/ (its base), adapter/ (the PEFT adapter) and spec.json (steerlm's own
prompts, their ids, its greedy replies, and llama.cpp's log-probabilities on `steerlm export gguf` of the same
run). Runs on CUDA when there is one, else on the CPU. Prints PASS/FAIL per check, a summary line, and one JSON
line of the figures; exits 0 only when every check passed.
"""

import json
import os
import sys
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local files only: never reach for the Hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# float32 throughout (llama.cpp computes in float32); log-probabilities of a tiny model agree to ~1e-5
LOGPROB_TOLERANCE = 1e-3
LOGIT_TOLERANCE = 1e-4
# two tokens whose log-probabilities differ by less than this are a tie, where greedy may pick either: steerlm's
# replies come from llama.cpp with its default float16 KV cache (log p off by ~1e-3), the logits above use float32
TIE = 1e-2

results = []
figures = {}


def check(name, ok, detail=""):
    results.append((name, bool(ok), detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}{': ' + detail if detail else ''}", flush=True)


def guarded(name, fn):
    """Run one group of checks; an exception is that group's failure, not the end of the script."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - report and go on to the next check
        check(name, False, f"{type(e).__name__}: {e}")
        traceback.print_exc(file=sys.stderr)


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf-transformers-check")
    with open(os.path.join(folder, "spec.json")) as f:
        spec = json.load(f)
    path = {k: os.path.join(folder, spec[k]) for k in ("model", "base", "adapter")}

    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        check("import torch and transformers", False, str(e))
        return finish()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_float32_matmul_precision("highest")  # float32 matmuls, not TF32, to compare with llama.cpp
    figures.update(torch=torch.__version__, transformers=transformers.__version__, device=device)

    def load(p):
        # no dtype argument (4.x calls it torch_dtype, 5.x dtype): the export's own, float32
        return AutoModelForCausalLM.from_pretrained(p, local_files_only=True).to(device).eval()

    state = {}

    def loading():
        state["tok"] = AutoTokenizer.from_pretrained(path["model"], local_files_only=True)
        state["model"] = load(path["model"])
        m = state["model"]
        check(
            "load",
            m.config.architectures[0] == "LlamaForCausalLM" and next(m.parameters()).dtype == torch.float32,
            f"{m.config.architectures[0]}, {next(m.parameters()).dtype}, tokenizer {type(state['tok']).__name__}",
        )

    guarded("load", loading)
    if "model" not in state:
        return finish()
    tok, model = state["tok"], state["model"]
    eot = tok.convert_tokens_to_ids("<extra_id_1>")
    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    check("generation_config eos_token_id has <extra_id_1>", eot in eos, f"eos_token_id {eos}, <extra_id_1> = {eot}")
    special = {t.content: t.special for t in tok.added_tokens_decoder.values()}
    check(
        "control tokens special, attribute tokens ordinary",
        all(special.get(c) is True for c in ("<extra_id_0>", "<extra_id_1>", "<extra_id_2>"))
        and special.get("humor:4") is False,
    )

    for i, case in enumerate(spec["cases"]):
        guarded(f"case {i}", lambda: run_case(i, case, tok, model, eot, eos, spec["max_new_tokens"], device))

    def refusals():
        messages = spec["cases"][0]["messages"]
        for bad in ({"humor": 9}, {"no_such_attribute": 1}):
            try:
                tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, attributes=bad)
                check(f"template refuses attributes {bad}", False, "rendered without an error")
            except Exception as e:  # noqa: BLE001 - raise_exception surfaces as jinja2's TemplateError
                check(f"template refuses attributes {bad}", True, f"{type(e).__name__}: {str(e)[:100]}")

    guarded("template refusals", refusals)

    def forced_stop():
        # Independent of what the model learned: force <extra_id_1> as the 3rd new token; generate must stop there.
        from transformers import LogitsProcessor, LogitsProcessorList

        ids = torch.tensor([spec["cases"][0]["expected_ids"]], device=device)

        class ForceEot(LogitsProcessor):
            def __call__(self, input_ids, scores):
                if input_ids.shape[1] == ids.shape[1] + 2:
                    scores = torch.full_like(scores, float("-inf"))
                    scores[:, eot] = 0
                return scores

        with torch.no_grad():
            gen = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=16,
                do_sample=False,
                logits_processor=LogitsProcessorList([ForceEot()]),
            )[0, ids.shape[1] :].tolist()
        check("generate stops at <extra_id_1>", gen[-1] == eot and len(gen) == 3, f"new tokens {gen}")

    guarded("generate stops at <extra_id_1>", forced_stop)

    def peft_check():
        import peft
        from peft import PeftModel

        figures["peft"] = peft.__version__
        ids = torch.tensor([spec["cases"][1]["expected_ids"]], device=device)
        with torch.no_grad():
            merged = model(ids).logits
            adapted = PeftModel.from_pretrained(load(path["base"]), path["adapter"]).eval()
            with_adapter = adapted(ids).logits
            unloaded = adapted.merge_and_unload()(ids).logits
            base_alone = load(path["base"])(ids).logits
        d1 = (with_adapter - merged).abs().max().item()
        d2 = (unloaded - merged).abs().max().item()
        d0 = (base_alone - merged).abs().max().item()
        figures.update(peft_vs_merged=d1, merge_and_unload_vs_merged=d2, base_vs_merged=d0)
        check("PeftModel(base, adapter) = merged export", d1 <= LOGIT_TOLERANCE, f"max |Δ logit| {d1:.2e} (base alone: {d0:.2e})")
        check("merge_and_unload = merged export", d2 <= LOGIT_TOLERANCE, f"max |Δ logit| {d2:.2e}")
        check("the adapter changes the base", d0 > 100 * LOGIT_TOLERANCE, f"max |Δ logit| base vs merged {d0:.2e}")

    guarded("peft", peft_check)
    return finish()


def run_case(i, case, tok, model, eot, eos, max_new_tokens, device):
    import torch

    kwargs = {} if case["attributes"] is None else {"attributes": case["attributes"]}
    text = tok.apply_chat_template(case["messages"], add_generation_prompt=True, tokenize=False, **kwargs)
    check(f"case {i}: chat template = steerlm's prompt", text == case["expected_text"], "" if text == case["expected_text"] else f"got {text!r}")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    check(f"case {i}: token ids = steerlm's", ids == case["expected_ids"], f"{len(ids)} tokens")
    ids = case["expected_ids"]  # go on from steerlm's ids, whatever the tokenizer did
    x = torch.tensor([ids], device=device)
    with torch.no_grad():
        logp = torch.log_softmax(model(x).logits[0].double(), dim=-1).cpu()
    top1 = logp.argmax(-1).tolist()
    agree = sum(a == b for a, b in zip(top1, case["llama_cpp_top1"]))
    check(f"case {i}: top-1 = llama.cpp's at every position", agree == len(ids), f"{agree}/{len(ids)}")
    ref = {int(k): v for k, v in case["llama_cpp_last_logprobs"].items()}
    d = max(abs(logp[-1, t].item() - v) for t, v in ref.items() if v > -80)
    figures[f"case{i}_max_abs_logprob_diff"] = d
    check(f"case {i}: last-position log p within {LOGPROB_TOLERANCE} of llama.cpp", d <= LOGPROB_TOLERANCE, f"max |Δ log p| {d:.2e}")

    with torch.no_grad():
        gen = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens, do_sample=False)
    gen = gen[0, len(ids) :].tolist()
    stopped = bool(gen) and gen[-1] in eos
    body = gen[:-1] if stopped else gen
    want = case["steerlm_greedy"]
    same = body == want["tokens"] and stopped == (want["finish_reason"] == "stop")
    detail = f"{len(body)} tokens, {'stopped at ' + ('<extra_id_1>' if gen[-1] == eot else str(gen[-1])) if stopped else 'no stop'}"
    if not same:
        # a near-tie in float32 may flip greedy between two implementations: allow it, say so
        k = next((j for j, (a, b) in enumerate(zip(body, want["tokens"])) if a != b), min(len(body), len(want["tokens"])))
        with torch.no_grad():
            step = torch.log_softmax(model(torch.tensor([ids + body[:k]], device=device)).logits[0, -1].double(), -1)
        theirs = want["tokens"][k] if k < len(want["tokens"]) else eot
        gap = abs(step[gen[k]].item() - step[theirs].item()) if k < len(gen) else float("inf")
        same = gap < TIE
        detail += f"; differs from steerlm's at token {k} ({gen[k] if k < len(gen) else None} vs steerlm's {theirs})"
        detail += f", a tie (log p gap {gap:.1e})" if same else f", log p gap {gap:.1e}"
    check(f"case {i}: greedy generate = steerlm's reply", same, detail)


def finish():
    passed = sum(ok for _, ok, _ in results)
    failed = len(results) - passed
    verdict = "PASS" if failed == 0 and passed > 0 else "FAIL"
    print(f"\nhf-transformers-check {verdict}: {passed} passed, {failed} failed")
    for name, ok, detail in results:
        if not ok:
            print(f"  failed: {name}{': ' + detail if detail else ''}")
    print(json.dumps({"verdict": verdict, "passed": passed, "failed": failed, **figures, "failures": [n for n, ok, _ in results if not ok]}))
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
