"""The CPU target on several threads: results bitwise identical for every
thread count (`--threads`), big enough loops really split into tasks, the
default follows the process's CPU affinity, and bad counts are refused."""
import glob
import os
import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import KILN, ROOT, kiln
import torch
import transformers

THREADS = [1, 2, 3, 5]


def mlp_model(path, rows=96, hidden=256, inner=1024):
    """x @ W1 + b1 -> Gelu -> @ W2 + b2 -> LayerNorm -> Softmax: GEMM
    panels, elementwise chains and row reductions, each big enough to be
    split."""
    rng = np.random.default_rng(0)
    weights = {
        "w1": rng.standard_normal((hidden, inner)).astype(np.float32) * 0.05,
        "b1": rng.standard_normal(inner).astype(np.float32),
        "w2": rng.standard_normal((inner, hidden)).astype(np.float32) * 0.05,
        "b2": rng.standard_normal(hidden).astype(np.float32),
        "g": rng.standard_normal(hidden).astype(np.float32),
        "beta": rng.standard_normal(hidden).astype(np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Gelu", ["hb"], ["a"]),
        helper.make_node("MatMul", ["a", "w2"], ["o"]),
        helper.make_node("Add", ["o", "b2"], ["ob"]),
        helper.make_node("LayerNormalization", ["ob", "g", "beta"], ["n"],
                         axis=-1),
        helper.make_node("Softmax", ["n"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, hidden])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    onnx.save(model, str(path))
    return {"x": rng.standard_normal((rows, hidden)).astype(np.float32)}


def run_threads(artifact, inputs, tmp_path, threads):
    out = tmp_path / f"out{threads}"
    args = ["run", str(artifact), "--threads", str(threads), "--output-dir",
            str(out)]
    for name, value in inputs.items():
        np.save(tmp_path / f"{name}.npy", value)
        args += ["--input", f"{name}=@{tmp_path / (name + '.npy')}"]
    kiln(*args)
    return {os.path.basename(p)[:-4]: np.load(p)
            for p in sorted(glob.glob(str(out / "*.npy")))}


def assert_bitwise_equal(results):
    base = results[THREADS[0]]
    for threads, outputs in results.items():
        assert outputs.keys() == base.keys()
        for name in base:
            assert outputs[name].tobytes() == base[name].tobytes(), (
                f"output {name} differs between 1 and {threads} threads")


def test_mlp_splits_into_tasks_and_is_deterministic(tmp_path):
    inputs = mlp_model(tmp_path / "mlp.onnx")
    kernel_ir = kiln("compile", str(tmp_path / "mlp.onnx"), "-o", "-",
                     "--emit", "kernel-mlir").stdout
    # The GEMMs' panel loops and the row loops became tasks.
    assert kernel_ir.count("kiln.task_grain") >= 3, kernel_ir[:2000]
    artifact = tmp_path / "mlp.kiln"
    kiln("compile", str(tmp_path / "mlp.onnx"), "-o", str(artifact))
    results = {t: run_threads(artifact, inputs, tmp_path, t) for t in THREADS}
    assert_bitwise_equal(results)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_transformer_dynamic_export_is_deterministic(name, tmp_path):
    path = os.path.join(ROOT, "test", "fixtures", "transformers", name,
                        "model_dynamic.onnx")
    artifact = tmp_path / "m.kiln"
    kiln("compile", path, "-o", str(artifact), "--dim", "batch=1..2",
         "--dim", "sequence=1..64")
    rng = np.random.default_rng(1)
    inputs = {"input_ids": rng.integers(0, 256, (2, 64), dtype=np.int64)}
    folder = os.path.dirname(path)
    if os.path.exists(os.path.join(folder, "in_attention_mask.npy")):
        inputs["attention_mask"] = np.ones((2, 64), dtype=np.int64)
    results = {t: run_threads(artifact, inputs, tmp_path, t) for t in THREADS}
    assert_bitwise_equal(results)


def test_generate_gives_the_same_tokens_on_any_thread_count(tmp_path):
    """A LLaMA checkpoint wide enough that its projections, head and
    attention split into tasks, prefill and decode."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=512, hidden_size=256, intermediate_size=768,
        num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=4,
        max_position_embeddings=64)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(
        str(tmp_path / "ckpt"))
    artifact = tmp_path / "m.kiln"
    kiln("compile", str(tmp_path / "ckpt"), "-o", str(artifact),
         "--max-seq-len", "48")
    tokens = {}
    for threads in THREADS:
        out = kiln("generate", str(artifact), "--prompt-ids", "5,17,3,60",
                   "--max-new-tokens", "12", "--threads", str(threads),
                   "--logits-out", str(tmp_path / f"l{threads}.npy")).stdout
        tokens[threads] = (out, np.load(tmp_path / f"l{threads}.npy").tobytes())
    assert len(set(tokens.values())) == 1


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset")
def test_default_thread_count_follows_the_affinity_mask(tmp_path):
    inputs = mlp_model(tmp_path / "mlp.onnx", rows=8)
    artifact = tmp_path / "mlp.kiln"
    kiln("compile", str(tmp_path / "mlp.onnx"), "-o", str(artifact))
    bench = subprocess.run(["taskset", "-c", "0", KILN, "bench",
                            str(artifact), "--iterations", "2"],
                           capture_output=True, text=True, check=True)
    assert ", 1 thread\n" in bench.stdout, bench.stdout
    bench = kiln("bench", str(artifact), "--iterations", "2", "--threads", "3")
    assert ", 3 threads\n" in bench.stdout, bench.stdout


@pytest.mark.parametrize("value", ["-1", "two", "99999", ""])
def test_bad_thread_counts_are_refused(value, tmp_path):
    mlp_model(tmp_path / "mlp.onnx", rows=8)
    artifact = tmp_path / "mlp.kiln"
    kiln("compile", str(tmp_path / "mlp.onnx"), "-o", str(artifact))
    for command in (["run"], ["bench"]):
        result = kiln(*command, str(artifact), f"--threads={value}",
                      check=False)
        assert result.returncode != 0
        assert "--threads expects a count" in result.stderr, result.stderr
