"""Peak resident memory of `kiln compile` on a checkpoint folder of about
1.3 GB of f32 weights (a LLaMA shape with random values), against the
weights' size: the frontend maps the safetensors file and copies each
weight at most once (transposed or widened), releasing the mapped pages.
`--dtype bf16` stores the checkpoint in bf16 (half the bytes) and
`--precision bf16` compiles it at that precision: the GEMM weights then go
from the file to the artifact as bf16, never widened.

    .venv/bin/python bench/checkpoint_rss.py [--layers 4] [--keep DIR]
        [--dtype f32|bf16] [--precision fp32|bf16]
"""
import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILN = os.environ.get("KILN_BIN", os.path.join(ROOT, "build", "bin", "kiln"))


def make(folder, layers, dtype, hidden=2048, inter=5632, vocab=32000,
         heads=16):
    rng = np.random.default_rng(0)

    def w(*shape):
        return rng.standard_normal(shape, dtype=np.float32) * 0.02

    t = {"model.embed_tokens.weight": w(vocab, hidden),
         "lm_head.weight": w(vocab, hidden),
         "model.norm.weight": np.ones(hidden, np.float32)}
    for i in range(layers):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = np.ones(hidden, np.float32)
        t[p + "post_attention_layernorm.weight"] = np.ones(hidden, np.float32)
        for n in "qkvo":
            t[p + f"self_attn.{n}_proj.weight"] = w(hidden, hidden)
        t[p + "mlp.gate_proj.weight"] = w(inter, hidden)
        t[p + "mlp.up_proj.weight"] = w(inter, hidden)
        t[p + "mlp.down_proj.weight"] = w(hidden, inter)
    if dtype == "bf16":
        import torch
        from safetensors.torch import save_file as save_torch
        t = {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in t.items()}
        save_torch(t, os.path.join(folder, "model.safetensors"))
        nbytes = sum(v.numel() * 2 for v in t.values())
    else:
        save_file(t, os.path.join(folder, "model.safetensors"))
        nbytes = sum(v.nbytes for v in t.values())
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "hidden_size": hidden,
                   "num_hidden_layers": layers, "num_attention_heads": heads,
                   "intermediate_size": inter, "vocab_size": vocab,
                   "max_position_embeddings": 2048, "rms_norm_eps": 1e-5}, f)
    return nbytes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--keep", help="make the checkpoint here and keep it")
    parser.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"],
                        default="fp32")
    args = parser.parse_args()
    folder = args.keep or tempfile.mkdtemp()
    os.makedirs(folder, exist_ok=True)
    # Made in a process of its own: the compile is forked from this one,
    # and a fork's peak RSS starts at its parent's (the arrays, torch).
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        weights = pool.apply(make, (folder, args.layers, args.dtype))
    out = os.path.join(folder, "m.kiln")
    start = time.time()
    # The compile's own peak (wait4 on it): RUSAGE_CHILDREN would also
    # count whatever torch started while making a bf16 checkpoint.
    child = subprocess.Popen([KILN, "compile", folder, "-o", out,
                              "--max-seq-len", "64", "--precision",
                              args.precision])
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"kiln compile failed ({child.returncode})")
    seconds = time.time() - start
    peak = usage.ru_maxrss * 1024
    print(f"{args.dtype} weights {weights / 2**30:.2f} GiB at --precision "
          f"{args.precision}; kiln compile peak RSS "
          f"{peak / 2**30:.2f} GiB ({(peak - weights) / 2**30:+.2f} GiB over "
          f"the weights), {seconds:.1f} s")
    if not args.keep:
        for name in os.listdir(folder):
            os.remove(os.path.join(folder, name))
        os.rmdir(folder)
    return 0 if peak <= weights + 2**30 else 1


if __name__ == "__main__":
    sys.exit(main())
