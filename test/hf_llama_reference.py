#!/usr/bin/env python3
"""Hugging Face's Llama and Qwen2 causal LMs, written out in PyTorch for steerlm's export tests.

The semantics of transformers' LlamaForCausalLM / Qwen2ForCausalLM (eager attention): RMSNorm, RoPE by
rotate_half with rope_theta, grouped-query attention, a causal softmax, the SiLU-gated MLP, tied embeddings,
q/k/v biases (Qwen2, or Llama's attention_bias, which biases o_proj too), and a PEFT LoRA adapter applied as
PEFT applies it: y = W x + (lora_alpha / r) * B (A x). It reads only config.json, the safetensors (one file
or shards through model.safetensors.index.json) and adapter_config.json + adapter_model.safetensors, with its
own safetensors reader (Debian's python3-torch has no safetensors package), and computes in float64.

stdin: a list of requests {"model": dir, "adapter": dir or null, "tokens": [id, ...]} (one process, one
       import of torch, for several models)
stdout: a list of {"logprobs": [[log p(v | tokens[..t]) for v in vocab] for each t]}, one per request
"""

import json
import math
import os
import struct
import sys

import torch

F64 = torch.float64


def read_safetensors(path):
    """name -> float64 tensor. Format: u64 LE header length, JSON header, then the data section."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = bytearray(data[begin:end])
        dtype = info["dtype"]
        if dtype == "F32":
            t = torch.frombuffer(raw, dtype=torch.float32)
        elif dtype == "F16":
            t = torch.frombuffer(raw, dtype=torch.float16)
        elif dtype == "BF16":
            # bfloat16 is the top half of a float32
            bits = torch.frombuffer(raw, dtype=torch.int16).to(torch.int32) << 16
            t = bits.view(torch.float32)
        else:
            raise ValueError(f"{path}: {name}: dtype {dtype} is not a float type")
        out[name] = t.to(F64).reshape(info["shape"])
    return out


def read_checkpoint(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights = {}
    for name in files:
        weights.update(read_safetensors(os.path.join(model_dir, name)))
    return weights


def read_adapter(adapter_dir):
    """module name (model.layers.0.self_attn.q_proj) -> (A [r, in], B [out, r], scale)."""
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        cfg = json.load(f)
    if cfg["peft_type"] != "LORA" or cfg.get("fan_in_fan_out") or cfg.get("bias", "none") != "none":
        raise ValueError(f"{adapter_dir}: not a plain LoRA adapter")
    if cfg.get("use_rslora") or cfg.get("use_dora") or cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise ValueError(f"{adapter_dir}: rsLoRA, DoRA and per-module ranks are not implemented here")
    scale = cfg["lora_alpha"] / cfg["r"]
    tensors = read_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    prefix = "base_model.model."
    lora = {}
    for name, a in tensors.items():
        if name.endswith(".lora_A.weight"):
            module = name[len(prefix) : -len(".lora_A.weight")]
            lora[module] = (a, tensors[f"{prefix}{module}.lora_B.weight"], scale)
    return lora


def rms_norm(x, weight, eps):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def forward(cfg, w, tokens, lora):
    arch = cfg["architectures"][0]
    if arch not in ("LlamaForCausalLM", "Qwen2ForCausalLM"):
        raise ValueError(f"architecture {arch}")
    if cfg.get("rope_scaling") or cfg.get("hidden_act", "silu") != "silu":
        raise ValueError("RoPE scaling and activations other than silu are not implemented here")
    n_heads = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads") or n_heads
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_heads
    eps = cfg["rms_norm_eps"]
    theta = cfg.get("rope_theta", 10000.0)
    qkv_bias = arch == "Qwen2ForCausalLM" or cfg.get("attention_bias", False)
    o_bias = arch == "LlamaForCausalLM" and cfg.get("attention_bias", False)

    def linear(x, module, bias):
        y = x @ w[f"{module}.weight"].T
        if bias:
            y = y + w[f"{module}.bias"]
        if module in lora:
            a, b, scale = lora[module]
            y = y + scale * ((x @ a.T) @ b.T)
        return y

    t = len(tokens)
    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=F64) / head_dim))
    freqs = torch.outer(torch.arange(t, dtype=F64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.full((t, t), float("-inf"), dtype=F64).triu(1)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}"
        h = rms_norm(x, w[f"{p}.input_layernorm.weight"], eps)
        q = linear(h, f"{p}.self_attn.q_proj", qkv_bias).view(t, n_heads, head_dim).transpose(0, 1)
        k = linear(h, f"{p}.self_attn.k_proj", qkv_bias).view(t, n_kv, head_dim).transpose(0, 1)
        v = linear(h, f"{p}.self_attn.v_proj", qkv_bias).view(t, n_kv, head_dim).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(n_heads // n_kv, dim=0)
        v = v.repeat_interleave(n_heads // n_kv, dim=0)
        scores = q @ k.transpose(1, 2) / math.sqrt(head_dim) + mask
        attn = torch.softmax(scores, dim=-1) @ v  # (heads, t, head_dim)
        x = x + linear(attn.transpose(0, 1).reshape(t, n_heads * head_dim), f"{p}.self_attn.o_proj", o_bias)
        h = rms_norm(x, w[f"{p}.post_attention_layernorm.weight"], eps)
        gate = torch.nn.functional.silu(linear(h, f"{p}.mlp.gate_proj", False))
        x = x + linear(gate * linear(h, f"{p}.mlp.up_proj", False), f"{p}.mlp.down_proj", False)
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", False) else w["lm_head.weight"]
    return torch.log_softmax(x @ head.T, dim=-1)


def run(req):
    with open(os.path.join(req["model"], "config.json")) as f:
        cfg = json.load(f)
    weights = read_checkpoint(req["model"])
    lora = read_adapter(req["adapter"]) if req.get("adapter") else {}
    with torch.no_grad():
        return {"logprobs": forward(cfg, weights, req["tokens"], lora).tolist()}


def main():
    json.dump([run(req) for req in json.load(sys.stdin)], sys.stdout)


if __name__ == "__main__":
    main()
