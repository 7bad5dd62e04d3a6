"""Writes a tiny Hugging Face checkpoint folder (config.json and
model.safetensors, random weights) with NumPy alone, for the importer's lit
tests; `--break KIND` damages it in one way, to test the error messages.

    checkpoint.py FAMILY DIR [--break KIND] [--set KEY=JSON ...]

FAMILY: gpt2, llama, mistral, qwen2. The end-to-end tests make their
checkpoints with transformers instead and compare against it."""
import argparse
import json
import os
import struct

import numpy as np

H, LAYERS, HEADS, KV_HEADS, INTER, VOCAB, POSITIONS = 32, 2, 4, 2, 48, 64, 64


def tensors(family):
    rng = np.random.default_rng(0)

    def w(*shape):
        return rng.standard_normal(shape).astype(np.float32) * 0.2

    t = {}
    if family == "gpt2":
        t["transformer.wte.weight"] = w(VOCAB, H)
        t["transformer.wpe.weight"] = w(POSITIONS, H)
        for i in range(LAYERS):
            p = f"transformer.h.{i}."
            for n in ("ln_1", "ln_2"):
                t[p + n + ".weight"] = 1 + w(H)
                t[p + n + ".bias"] = w(H)
            t[p + "attn.c_attn.weight"] = w(H, 3 * H)
            t[p + "attn.c_attn.bias"] = w(3 * H)
            t[p + "attn.c_proj.weight"] = w(H, H)
            t[p + "attn.c_proj.bias"] = w(H)
            t[p + "mlp.c_fc.weight"] = w(H, 4 * H)
            t[p + "mlp.c_fc.bias"] = w(4 * H)
            t[p + "mlp.c_proj.weight"] = w(4 * H, H)
            t[p + "mlp.c_proj.bias"] = w(H)
        t["transformer.ln_f.weight"] = 1 + w(H)
        t["transformer.ln_f.bias"] = w(H)
        return t
    hd = H // HEADS
    t["model.embed_tokens.weight"] = w(VOCAB, H)
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = 1 + w(H)
        t[p + "post_attention_layernorm.weight"] = 1 + w(H)
        t[p + "self_attn.q_proj.weight"] = w(HEADS * hd, H)
        t[p + "self_attn.k_proj.weight"] = w(KV_HEADS * hd, H)
        t[p + "self_attn.v_proj.weight"] = w(KV_HEADS * hd, H)
        t[p + "self_attn.o_proj.weight"] = w(H, HEADS * hd)
        if family == "qwen2":
            t[p + "self_attn.q_proj.bias"] = w(HEADS * hd)
            t[p + "self_attn.k_proj.bias"] = w(KV_HEADS * hd)
            t[p + "self_attn.v_proj.bias"] = w(KV_HEADS * hd)
        t[p + "mlp.gate_proj.weight"] = w(INTER, H)
        t[p + "mlp.up_proj.weight"] = w(INTER, H)
        t[p + "mlp.down_proj.weight"] = w(H, INTER)
    t["model.norm.weight"] = 1 + w(H)
    t["lm_head.weight"] = w(VOCAB, H)
    return t


def config(family):
    if family == "gpt2":
        return {"model_type": "gpt2", "n_embd": H, "n_layer": LAYERS,
                "n_head": HEADS, "n_positions": POSITIONS,
                "vocab_size": VOCAB, "activation_function": "gelu_new",
                "layer_norm_epsilon": 1e-5}
    return {"model_type": family, "hidden_size": H,
            "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "num_key_value_heads": KV_HEADS, "intermediate_size": INTER,
            "vocab_size": VOCAB, "max_position_embeddings": POSITIONS,
            "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "tie_word_embeddings": False, "hidden_act": "silu"}


def write_safetensors(path, t, header_patch=None, truncate=0,
                      bad_length=False):
    header, offset, blobs = {}, 0, []
    for name, value in t.items():
        data = value.tobytes()
        dtype = {np.float32: "F32", np.float16: "F16"}[value.dtype.type]
        header[name] = {"dtype": dtype, "shape": list(value.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if header_patch:
        header_patch(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    length = len(text) + (1 << 40 if bad_length else 0)
    payload = struct.pack("<Q", length) + text + b"".join(blobs)
    with open(path, "wb") as f:
        f.write(payload[:len(payload) - truncate])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("family")
    parser.add_argument("dir")
    parser.add_argument("--break", dest="damage", default="")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    cfg = config(args.family)
    for item in args.set:
        key, value = item.split("=", 1)
        cfg[key] = json.loads(value)
    with open(os.path.join(args.dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    t = tensors(args.family)
    first = next(iter(t))
    patch, truncate, bad_length = None, 0, False
    if args.damage == "truncated":
        truncate = 100
    elif args.damage == "header-length":
        bad_length = True
    elif args.damage == "dtype":
        def patch(h):
            h[first]["dtype"] = "F8_E4M3"
    elif args.damage == "byte-count":
        def patch(h):
            h[first]["shape"] = h[first]["shape"] + [2]
    elif args.damage == "offsets":
        def patch(h):
            h[first]["data_offsets"] = [8, 4]
    elif args.damage == "huge":
        def patch(h):
            h[first] = {"dtype": "F64", "shape": [1, 1 << 62],
                        "data_offsets": [0, 0]}
    elif args.damage == "overlap":
        def patch(h):
            names = list(h)
            # An empty tensor between two that overlap.
            h[names[1]] = {"dtype": "F32", "shape": [0],
                           "data_offsets": [8, 8]}
            h[names[2]] = {"dtype": "F32", "shape": [2],
                           "data_offsets": [16, 24]}
    elif args.damage == "missing":
        del t["model.norm.weight" if args.family != "gpt2"
              else "transformer.ln_f.bias"]
    elif args.damage == "shape":
        key = "model.norm.weight" if args.family != "gpt2" \
            else "transformer.ln_f.bias"
        t[key] = np.zeros(H + 1, np.float32)
    elif args.damage:
        raise SystemExit(f"unknown --break {args.damage}")
    write_safetensors(os.path.join(args.dir, "model.safetensors"), t, patch,
                      truncate, bad_length)


if __name__ == "__main__":
    main()
