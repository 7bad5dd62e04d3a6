"""Hugging Face checkpoint folders compiled by `kiln compile DIR`: the
prefill logits against transformers on the same random-initialised model,
for each supported architecture, on cpu and under the GPU simulator, at
fp32 and under --precision; half-precision and sharded checkpoints."""
import json
import re

import numpy as np
import pytest
import torch
import transformers

from conftest import (CHECKPOINT_LOGITS_ATOL as LOGITS_ATOL,
                      PRECISION_TOLERANCES, kiln, normwise_error)

COMMON = dict(vocab_size=96, hidden_size=64, intermediate_size=112,
              num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=64, initializer_range=0.1)

ARCHITECTURES = {
    # GPT-2: learned positions, LayerNorm, tanh GELU, Conv1D, tied head.
    "gpt2": lambda: transformers.GPT2Config(
        vocab_size=96, n_embd=64, n_layer=2, n_head=4, n_positions=64,
        initializer_range=0.1),
    # LLaMA 3: grouped-query heads, llama3 rope scaling whose original
    # context (16) is shorter than the prompts, so every band of
    # frequencies is exercised.
    "llama3": lambda: transformers.LlamaConfig(
        **COMMON, num_key_value_heads=2, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0,
                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 16}),
    # LLaMA 2 style with linear scaling, biases everywhere and a tied head.
    "llama-linear": lambda: transformers.LlamaConfig(
        **COMMON, num_key_value_heads=4, attention_bias=True,
        mlp_bias=True, tie_word_embeddings=True,
        rope_scaling={"rope_type": "linear", "factor": 2.0}),
    # Mistral: one KV head, head_dim not hidden / heads.
    "mistral": lambda: transformers.MistralConfig(
        **COMMON, num_key_value_heads=1, head_dim=32, sliding_window=None),
    # Gemma: (1 + w) norms, the embedding scaled by sqrt(hidden), tanh-GELU
    # gating, a head dim of its own, tied head.
    "gemma": lambda: transformers.GemmaConfig(
        **COMMON, num_key_value_heads=1, head_dim=32),
    # Phi-3: q, k, v and gate, up stored fused; partial rotary.
    "phi3": lambda: transformers.Phi3Config(
        **COMMON, num_key_value_heads=2, pad_token_id=0, bos_token_id=1,
        eos_token_id=2,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "partial_rotary_factor": 0.5}),
    # Qwen2: biases on q, k, v; tied head.
    "qwen2": lambda: transformers.Qwen2Config(
        **COMMON, num_key_value_heads=2, tie_word_embeddings=True),
}


def make_checkpoint(path, name, dtype=torch.float32, **save):
    torch.manual_seed(0)
    config = ARCHITECTURES[name]()
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    # Norm weights away from 1 and biases away from 0, so that a weight read
    # from the wrong tensor shows.
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname or "ln_" in pname or pname.endswith(".bias"):
                p.add_(torch.randn_like(p) * 0.1)
    model.to(dtype).save_pretrained(str(path), **save)
    return path


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def checkpoint(request, tmp_path_factory):
    name = request.param
    return name, make_checkpoint(tmp_path_factory.mktemp(name) / "ckpt", name)


def reference(path, ids):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.from_numpy(ids)).logits.numpy()


def run(artifact, ids, tmp_path, device="cpu"):
    """The prefill logits of `ids`; a fixed batch of several rows also takes
    each row's left padding, none here."""
    np.save(tmp_path / "ids.npy", ids)
    out = tmp_path / f"out_{ids.shape[0]}x{ids.shape[1]}"
    args = ["--input", f"input_ids=@{tmp_path / 'ids.npy'}"]
    info = json.loads(kiln("inspect", "--json", str(artifact)).stdout)
    prefill = next(e for e in info["entry_points"] if e["name"] == "prefill")
    if "padding" in [i["name"] for i in prefill["inputs"]]:
        np.save(tmp_path / "padding.npy", np.zeros(ids.shape[0], np.int64))
        args += ["--input", f"padding=@{tmp_path / 'padding.npy'}"]
    kiln("run", str(artifact), "--device", device, *args, "--output-dir",
         str(out))
    return np.load(out / "logits.npy")


def prompts(shape, vocab=96, seed=1):
    return np.random.default_rng(seed).integers(0, vocab, shape,
                                                dtype=np.int64)


def test_cpu_symbolic_shapes(checkpoint, tmp_path):
    """One artifact with symbolic batch and sequence runs several prompt
    shapes, each within 1e-4 of transformers."""
    name, path = checkpoint
    artifact = tmp_path / "m.kiln"
    kiln("compile", str(path), "-o", str(artifact), "--max-seq-len", "40",
         "--max-batch", "2")
    for shape in [(2, 11), (1, 40), (1, 1)]:
        ids = prompts(shape)
        got = run(artifact, ids, tmp_path)
        want = reference(path, ids)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=LOGITS_ATOL,
                                   err_msg=f"{name} {shape}")


def test_sim(checkpoint, tmp_path):
    """The cuda kernels (fixed dims), executed by the simulator."""
    name, path = checkpoint
    artifact = tmp_path / "m.kiln"
    kiln("compile", str(path), "-o", str(artifact), "--target",
         "cuda:sm_80,sm_90a", "--embed-kernel-ir", "--dim", "batch=2",
         "--dim", "sequence=13")
    ids = prompts((2, 13))
    np.testing.assert_allclose(run(artifact, ids, tmp_path, "sim"),
                               reference(path, ids), rtol=0,
                               atol=LOGITS_ATOL, err_msg=name)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_precision_cpu(checkpoint, precision, tmp_path):
    name, path = checkpoint
    artifact = tmp_path / "m.kiln"
    kiln("compile", str(path), "-o", str(artifact), "--max-seq-len", "16",
         "--precision", precision)
    ids = prompts((1, 16))
    error = normwise_error(run(artifact, ids, tmp_path), reference(path, ids))
    assert error <= PRECISION_TOLERANCES[precision], (name, error)


@pytest.mark.parametrize("name", ["gpt2", "llama3"])
def test_precision_sim_tensor_cores(name, tmp_path):
    """bf16 on the cuda target: tensor-core GEMMs and flash attention."""
    path = make_checkpoint(tmp_path / "ckpt", name)
    artifact = tmp_path / "m.kiln"
    kiln("compile", str(path), "-o", str(artifact), "--target",
         "cuda:sm_80,sm_90a", "--embed-kernel-ir", "--precision", "bf16",
         "--dim", "batch=1", "--dim", "sequence=32")
    strategies = kiln("inspect", str(artifact)).stdout
    assert "flash-attention" in strategies
    ids = prompts((1, 32))
    error = normwise_error(run(artifact, ids, tmp_path, "sim"),
                           reference(path, ids))
    assert error <= PRECISION_TOLERANCES["bf16"], error


@pytest.mark.parametrize("name", ["gpt2", "llama3"])
def test_sim_symbolic_shapes_tensor_cores(name, tmp_path):
    """bf16 on the cuda target with symbolic batch and sequence: one
    artifact whose flash attention reads the run's batch, query and key
    counts (and decode's cached prefix), several prompt shapes under the
    simulator within the bf16 tolerance."""
    path = make_checkpoint(tmp_path / "ckpt", name)
    artifact = tmp_path / "m.kiln"
    kiln("compile", str(path), "-o", str(artifact), "--target",
         "cuda:sm_80,sm_90a", "--embed-kernel-ir", "--precision", "bf16",
         "--max-seq-len", "40", "--max-batch", "2")
    info = json.loads(kiln("inspect", "--json", str(artifact)).stdout)
    assert any(k["strategy"] == "flash-attention-mma-sync"
               for k in info["kernels"])
    for shape in [(2, 11), (1, 40), (1, 1)]:
        ids = prompts(shape)
        error = normwise_error(run(artifact, ids, tmp_path, "sim"),
                               reference(path, ids))
        assert error <= PRECISION_TOLERANCES["bf16"], (name, shape, error)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_checkpoint(dtype, tmp_path):
    """A checkpoint stored in bf16 or f16 is widened exactly: at fp32 it
    matches transformers' f32 model loaded from the same file."""
    path = make_checkpoint(tmp_path / "ckpt", "llama3", dtype=dtype)
    artifact = tmp_path / "m.kiln"
    kiln("compile", str(path), "-o", str(artifact), "--max-seq-len", "16")
    ids = prompts((1, 16))
    np.testing.assert_allclose(run(artifact, ids, tmp_path),
                               reference(path, ids), rtol=0,
                               atol=LOGITS_ATOL)


@pytest.mark.parametrize("name", ["llama3", "gpt2"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_weights_straight_from_the_file(name, precision, tmp_path):
    """Under --precision, GEMM weights are made in the half type as they are
    read (a bf16 file's bytes as they are), never widened to f32: the
    artifact holds the same weights, and computes the same logits bit for
    bit, as one compiled from an f32 file of the same (bf16-exact) values,
    whose weights --precision narrows."""
    half = make_checkpoint(tmp_path / "bf16", name, dtype=torch.bfloat16)
    full = tmp_path / "f32"
    transformers.AutoModelForCausalLM.from_pretrained(
        str(half), dtype=torch.float32).save_pretrained(str(full))
    ids = prompts((1, 16))
    logits, weights = [], []
    for path in (half, full):
        artifact = tmp_path / f"{path.name}.kiln"
        kiln("compile", str(path), "-o", str(artifact), "--max-seq-len",
             "16", "--precision", precision)
        logits.append(run(artifact, ids, tmp_path))
        info = json.loads(kiln("inspect", "--json", str(artifact)).stdout)
        weights.append({w["name"]: (w["dtype"], w["shape"])
                        for w in info["weights"]})
    assert weights[0] == weights[1]
    suffix = "." + precision.replace("fp", "f")
    # The CPU stores GEMM weights in column panels: "<name>.bf16.panels32".
    narrow = {re.sub(r"\.panels\d+$", "", n) for n in weights[0]}
    gemm = [n for n in narrow if n.endswith(suffix)]
    assert len(gemm) >= 4, weights[0]
    # The embedding table is gathered in f32; a tied LM head is its
    # narrowed copy. Every other GEMM weight exists only narrow.
    tables = {"wte.weight", "embed_tokens.weight"}
    assert not any(n[:-len(suffix)] in narrow for n in gemm
                   if n[:-len(suffix)] not in tables), \
        "a GEMM weight is also held in f32"
    np.testing.assert_array_equal(logits[0], logits[1])
    error = normwise_error(logits[0], reference(half, ids))
    assert error <= PRECISION_TOLERANCES[precision], error


def test_sharded_checkpoint(tmp_path):
    """model.safetensors.index.json and its shards."""
    path = make_checkpoint(tmp_path / "ckpt", "qwen2", max_shard_size="40KB")
    shards = sorted(p.name for p in path.glob("*.safetensors"))
    assert len(shards) > 2 and (path / "model.safetensors.index.json").exists()
    artifact = tmp_path / "m.kiln"
    kiln("compile", str(path), "-o", str(artifact), "--max-seq-len", "8")
    ids = prompts((1, 8))
    np.testing.assert_allclose(run(artifact, ids, tmp_path),
                               reference(path, ids), rtol=0,
                               atol=LOGITS_ATOL)


def test_index_names_wrong_shard(tmp_path):
    path = make_checkpoint(tmp_path / "ckpt", "qwen2", max_shard_size="40KB")
    index = path / "model.safetensors.index.json"
    text = index.read_text()
    shards = sorted(p.name for p in path.glob("*.safetensors"))
    index.write_text(text.replace(f'"{shards[-1]}"', f'"{shards[0]}"', 1))
    result = kiln("compile", str(path), "-o", str(tmp_path / "m.kiln"),
                  check=False)
    assert result.returncode != 0
    assert "model.safetensors.index.json: tensor '" in result.stderr
    assert f"is not in {shards[0]}, where the index says it is" in \
        result.stderr
    assert not (tmp_path / "m.kiln").exists()
