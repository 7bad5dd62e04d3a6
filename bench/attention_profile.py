"""The profile's bound for GPT-2 prefill with attention raised into one
flash kernel, against the exporter's decomposed attention compiled in the
same run (`--raise-attention off`), both at --precision bf16 for
cuda:sm_80,sm_90a (mma.sync), and the raised form for cuda:sm_90a alone
(the Hopper kernels: flash-attention-wgmma, gemm-wgmma).

    .venv/bin/python bench/attention_profile.py [--layers 1] [--tokens 1024]
        [--gpu h100] [--sample-blocks 16]

Builds a GPT-2-124M-wide model with bench/make_gpt2.py (random weights; a
small vocabulary so that the LM head does not hide the layers), compiles it
both ways and prints `kiln profile`'s totals and per-strategy bounds: the
simulator's counters and a roofline over them, a model of the GPU, not a
measurement (issue 13's goal: a 3x better bound than the decomposed form).
"""
import argparse
import collections
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILN = os.environ.get("KILN_BIN", os.path.join(ROOT, "build", "bin", "kiln"))


def profile(model, raise_attention, args, folder, target="cuda:sm_80,sm_90a"):
    artifact = os.path.join(folder, f"gpt2_{raise_attention}_{target[5:]}.kiln")
    subprocess.run([KILN, "compile", model, "--target", target,
                    "--precision", "bf16", "--embed-kernel-ir",
                    "--raise-attention", raise_attention, "-o", artifact],
                   check=True, capture_output=True)
    report = subprocess.run(
        [KILN, "profile", artifact, "--device", "sim", "--gpu", args.gpu,
         "--sample-blocks", str(args.sample_blocks)],
        check=True, capture_output=True, text=True).stdout
    by_strategy = collections.Counter()
    launches = 0
    total = None
    for line in report.splitlines():
        words = line.split()
        if line.startswith("total:"):
            total = line
        # kernel strategy runs blocks occ moved unique reuse coal smem TC
        # ... bound limit
        if len(words) >= 14 and words[2].isdigit() and words[-2].replace(
                ".", "", 1).isdigit():
            by_strategy[words[1]] += float(words[-2])
            launches += int(words[2])
    bound = sum(by_strategy.values())
    return bound, launches, by_strategy, total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--gpu", default="h100")
    parser.add_argument("--sample-blocks", type=int, default=16)
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    model = os.path.join(folder, "gpt2.onnx")
    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "make_gpt2.py"),
                    model, "--layers", str(args.layers), "--tokens",
                    str(args.tokens), "--vocab", "1024"],
                   check=True, capture_output=True)
    print(f"GPT-2-124M width, {args.layers} layer(s), {args.tokens} tokens, "
          f"bf16, roofline of the {args.gpu} over the simulator's counters "
          f"(a model, not a measurement)")
    results = {}
    for name, raise_attention, target in (
            ("off", "off", "cuda:sm_80,sm_90a"),
            ("on", "on", "cuda:sm_80,sm_90a"),
            ("hopper", "on", "cuda:sm_90a")):
        results[name] = profile(model, raise_attention, args, folder, target)
        bound, launches, by_strategy, total = results[name]
        print(f"\nraise-attention {raise_attention}, {target}: {launches} "
              f"launches, bound {bound:.1f} us")
        for strategy, us in by_strategy.most_common():
            print(f"  {strategy:28s} {us:10.1f} us")
        print("  " + total)
    off, on = results["off"][0], results["on"][0]
    print(f"\nbound, decomposed / flash: {off:.1f} / {on:.1f} us = "
          f"{off / on:.2f}x")
    mma = results["on"][2]["flash-attention-mma-sync"]
    wgmma = results["hopper"][2]["flash-attention-wgmma"]
    if wgmma:
        print(f"attention's bound, mma.sync / wgmma: {mma:.1f} / {wgmma:.1f} "
              f"us = {mma / wgmma:.2f}x")


if __name__ == "__main__":
    main()
