"""Prefill latency and decode rate of a GPT-2-124M-sized random checkpoint
(transformers' GPT2 with its default 124M shape, random weights, saved
with save_pretrained) on the CPU: `kiln generate --json` against PyTorch
eager (`transformers` `generate` with its KV cache), --threads threads
each (default 1), in the same run on the same prompt.

    .venv/bin/python bench/generate_vs_torch.py [--prompt-tokens 128]
        [--new-tokens 32] [--layers 12] [--threads 1]
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np
import torch
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILN = os.environ.get("KILN_BIN", os.path.join(ROOT, "build", "bin", "kiln"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--max-seq-len", type=int, default=0,
                        help="compile for this many positions (default: "
                        "the prompt and the new tokens)")
    parser.add_argument("--skip-no-cache", action="store_true",
                        help="do not time Kiln without its KV cache")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads of each side (kiln --threads, "
                        "torch.set_num_threads)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    folder = tempfile.mkdtemp()
    # No end-of-sequence token: both sides generate every token asked for.
    config = transformers.GPT2Config(n_layer=args.layers, bos_token_id=None,
                                     eos_token_id=None)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(folder)
    prompt = np.random.default_rng(0).integers(
        0, config.vocab_size, args.prompt_tokens).tolist()
    total = args.prompt_tokens + args.new_tokens
    artifact = os.path.join(folder, "m.kiln")
    start = time.time()
    subprocess.run([KILN, "compile", folder, "-o", artifact,
                    "--max-seq-len", str(args.max_seq_len or total)],
                   check=True)
    compile_s = time.time() - start

    def generate(cache):
        env = dict(os.environ, KILN_KV_CACHE="1" if cache else "0")
        out = subprocess.run(
            [KILN, "generate", artifact, "--json", "--prompt-ids",
             ",".join(map(str, prompt)), "--max-new-tokens",
             str(args.new_tokens), "--threads", str(args.threads)],
            check=True, capture_output=True, text=True, env=env)
        return json.loads(out.stdout)

    kiln = generate(cache=True)
    # The baseline: the same artifact recomputing the whole sequence for
    # each new token (its decode entry point unused).
    kiln_nocache = None if args.skip_no_cache else generate(cache=False)

    ids = torch.tensor([prompt])
    mask = torch.ones_like(ids)

    def run(new):
        start = time.perf_counter()
        out = model.generate(ids, attention_mask=mask, max_new_tokens=new,
                             do_sample=False, pad_token_id=0)
        return time.perf_counter() - start, out

    with torch.no_grad():
        run(2)  # warm-up
        # Prefill: generating one token; decode: the time the other tokens
        # add, per token (the median of three of each).
        first = sorted(run(1)[0] for _ in range(3))[1]
        timed = sorted((run(args.new_tokens) for _ in range(3)),
                       key=lambda r: r[0])
        total, generated = timed[1]
    torch_prefill_ms = first * 1000
    torch_decode = (args.new_tokens - 1) / max(total - first, 1e-9)
    same = generated[0, len(prompt):].tolist() == kiln["new_ids"]
    print(f"GPT-2 {args.layers} layers, {args.prompt_tokens} prompt tokens, "
          f"{args.new_tokens} new, one thread; kiln compile {compile_s:.1f} s")
    print(f"{'':10} {'prefill (TTFT) ms':>18} {'decode tokens/s':>16}")
    print(f"{'kiln':10} {kiln['time_to_first_token_ms']:18.1f} "
          f"{kiln['decode_tokens_per_s']:16.2f}")
    if kiln_nocache:
        print(f"{'kiln, no cache':10} "
              f"{kiln_nocache['time_to_first_token_ms']:18.1f} "
              f"{kiln_nocache['decode_tokens_per_s']:16.2f}")
        same = same and kiln_nocache["new_ids"] == kiln["new_ids"]
    print(f"{'pytorch':10} {torch_prefill_ms:18.1f} {torch_decode:16.2f}")
    print(f"ratio kiln/pytorch: prefill time "
          f"{kiln['time_to_first_token_ms'] / torch_prefill_ms:.2f}, decode "
          f"rate {kiln['decode_tokens_per_s'] / torch_decode:.2f}; greedy "
          f"tokens identical: {same}")


if __name__ == "__main__":
    main()
