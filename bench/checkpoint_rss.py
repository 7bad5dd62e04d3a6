"""Peak resident memory of `kiln compile` on a checkpoint folder of about
1.3 GB of f32 weights (a LLaMA shape with random values), against the
weights' size: the frontend maps the safetensors file and copies each
weight at most once (transposed or widened), releasing the mapped pages.

    .venv/bin/python bench/checkpoint_rss.py [--layers 4] [--keep DIR]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILN = os.environ.get("KILN_BIN", os.path.join(ROOT, "build", "bin", "kiln"))


def make(folder, layers, hidden=2048, inter=5632, vocab=32000, heads=16):
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
    save_file(t, os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "hidden_size": hidden,
                   "num_hidden_layers": layers, "num_attention_heads": heads,
                   "intermediate_size": inter, "vocab_size": vocab,
                   "max_position_embeddings": 2048, "rms_norm_eps": 1e-5}, f)
    return sum(v.nbytes for v in t.values())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--keep", help="make the checkpoint here and keep it")
    args = parser.parse_args()
    folder = args.keep or tempfile.mkdtemp()
    os.makedirs(folder, exist_ok=True)
    weights = make(folder, args.layers)
    out = os.path.join(folder, "m.kiln")
    start = time.time()
    subprocess.run([KILN, "compile", folder, "-o", out, "--max-seq-len",
                    "64"], check=True)
    seconds = time.time() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(f"weights {weights / 2**30:.2f} GiB; kiln compile peak RSS "
          f"{peak / 2**30:.2f} GiB ({(peak - weights) / 2**30:+.2f} GiB over "
          f"the weights), {seconds:.1f} s")
    if not args.keep:
        for name in os.listdir(folder):
            os.remove(os.path.join(folder, name))
        os.rmdir(folder)
    return 0 if peak <= weights + 2**30 else 1


if __name__ == "__main__":
    sys.exit(main())
