"""Generation from an ONNX decoder exported with its KV cache (a GPT-2-124M
shape, random weights, transformers' model through the TorchScript
exporter with `past_key_values` in and `present` out, as
test/fixtures/transformers/export_past.py exports it): `kiln compile
--max-seq-len` and `kiln generate --json` (the cache held by the runtime,
written in place) against onnxruntime running the same file the way its
users do (each step's present outputs fed back as the next step's past
inputs, all graph optimizations on), --threads threads each, in the same
run on the same prompt. Also checks that both give the same greedy tokens.

    .venv/bin/python bench/onnx_decoder_vs_onnxruntime.py [--prompt-tokens 128]
        [--new-tokens 32] [--layers 12] [--threads 1]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import onnxruntime as ort
import torch
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILN = os.environ.get("KILN_BIN", os.path.join(ROOT, "build", "bin", "kiln"))
sys.path.insert(0, os.path.join(ROOT, "test", "fixtures", "transformers"))
import export_past  # noqa: E402


def onnxruntime_generate(path, prompt, new, threads):
    """Greedy generation with onnxruntime over the export, its cache fed
    back; the time of the first step (the prompt) and of the others."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, options,
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    past = {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
            for i in session.get_inputs() if i.name.startswith("past")}
    fed, cached, tokens, times = list(prompt), 0, [], []
    for _ in range(new):
        start = time.perf_counter()
        feeds = {"input_ids": np.array([fed], np.int64),
                 "attention_mask": np.ones((1, cached + len(fed)), np.int64),
                 "position_ids": np.arange(cached, cached + len(fed),
                                           dtype=np.int64)[None], **past}
        out = dict(zip(names, session.run(names, feeds)))
        past = {p: out["present" + p[len("past_key_values"):]] for p in past}
        tokens.append(int(np.argmax(out["logits"][0, -1])))
        times.append(time.perf_counter() - start)
        cached += len(fed)
        fed = [tokens[-1]]
    return tokens, times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    folder = tempfile.mkdtemp()
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=args.layers, bos_token_id=None, eos_token_id=None)).eval()
    export_past.export(model, folder)
    path = os.path.join(folder, "model_past.onnx")
    prompt = np.random.default_rng(0).integers(
        0, model.config.vocab_size, args.prompt_tokens).tolist()
    artifact = os.path.join(folder, "m.kiln")
    start = time.time()
    subprocess.run([KILN, "compile", path, "-o", artifact, "--max-seq-len",
                    str(args.prompt_tokens + args.new_tokens)], check=True)
    compile_s = time.time() - start
    kiln = json.loads(subprocess.run(
        [KILN, "generate", artifact, "--json", "--prompt-ids",
         ",".join(map(str, prompt)), "--max-new-tokens", str(args.new_tokens),
         "--threads", str(args.threads)],
        check=True, capture_output=True, text=True).stdout)
    onnxruntime_generate(path, prompt, 2, args.threads)  # warm-up
    runs = [onnxruntime_generate(path, prompt, args.new_tokens, args.threads)
            for _ in range(3)]
    tokens = runs[0][0]
    prefill = sorted(r[1][0] for r in runs)[1]
    decode = sorted((args.new_tokens - 1) / sum(r[1][1:]) for r in runs)[1]
    print(f"GPT-2 export with its cache, {args.layers} layers, "
          f"{args.prompt_tokens} prompt tokens, {args.new_tokens} new, "
          f"{args.threads} thread(s); kiln compile {compile_s:.1f} s")
    print(f"{'':12} {'prefill (TTFT) ms':>18} {'decode tokens/s':>16}")
    print(f"{'kiln':12} {kiln['time_to_first_token_ms']:18.1f} "
          f"{kiln['decode_tokens_per_s']:16.2f}")
    print(f"{'onnxruntime':12} {prefill * 1000:18.1f} {decode:16.2f}")
    print(f"ratio kiln/onnxruntime: prefill time "
          f"{kiln['time_to_first_token_ms'] / (prefill * 1000):.2f}, decode "
          f"rate {kiln['decode_tokens_per_s'] / decode:.2f}; greedy tokens "
          f"identical: {tokens == kiln['new_ids']}")


if __name__ == "__main__":
    main()
