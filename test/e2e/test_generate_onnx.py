"""`kiln generate` on ONNX decoders exported with their KV cache: the
fixtures test/fixtures/transformers/*/model_past*.onnx (transformers' GPT-2
and LLaMA with grouped-query heads through the TorchScript and the dynamo
exporters), and
a folder laid out as optimum writes one (model.onnx next to config.json,
generation_config.json and tokenizer.json), exported here. Compiled with
`--max-seq-len`, the cache is held by the runtime (`prefill` and `decode`
entry points, the states written in place): greedy tokens identical to
transformers' `generate`, each step's logits against onnxruntime running
the export with its own past/present round trip, a batch of prompts of
different lengths, the cuda kernels under the simulator at bf16, text in
and text out, and the errors."""
import json
import os
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import transformers
from onnx import TensorProto, helper, numpy_helper

from conftest import (PRECISION_TOLERANCES, ROOT, kiln, normwise_error)

FIXTURES = os.path.join(ROOT, "test", "fixtures", "transformers")
sys.path.insert(0, FIXTURES)
import export  # noqa: E402  the fixtures' models, seeds and configurations
import export_past  # noqa: E402

# Each export: its model (export.py) and file, through the TorchScript and
# the dynamo exporters.
EXPORTS = {f"{name}{kind}": (name, os.path.join(
               FIXTURES, name, f"model_past{kind.replace('-', '_')}.onnx"))
           for name in ("gpt2", "llama") for kind in ("", "-dynamo")}
PROMPTS = [[200, 1, 45, 77, 12, 9], [250, 3]]
NEW = 16
MAX_SEQ = "48"  # within the fixtures' 64 positions
_models = {}


def fixture(export):
    return EXPORTS[export][1]


def model(name):
    if not _models:
        _models.update({k: m.eval() for k, (m, _) in export.models().items()})
    return _models[name]


def hf_greedy(m, prompt, new=NEW):
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = m.generate(ids, attention_mask=torch.ones_like(ids),
                         max_new_tokens=new, do_sample=False, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def generate(artifact, *prompts, device="cpu", cache=True, extra=()):
    args = ["generate", str(artifact), "--json", "--device", device,
            "--max-new-tokens", str(NEW), *extra]
    for prompt in prompts:
        args += ["--prompt-ids", ",".join(map(str, prompt))]
    return json.loads(kiln(*args, env={"KILN_KV_CACHE":
                                       "1" if cache else "0"}).stdout)


def ort_steps(path, prompt, tokens):
    """onnxruntime over the export with its cache fed back: the prompt with
    an empty past, then each token but the last, one at a time; the logits
    of each step's last position."""
    session = ort.InferenceSession(str(path),
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    takes = {i.name for i in session.get_inputs()}
    past = {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
            for i in session.get_inputs() if i.name.startswith("past")}
    logits, fed, cached = [], list(prompt), 0
    for step in range(len(tokens)):
        feeds = {"input_ids": np.array([fed], np.int64),
                 "attention_mask": np.ones((1, cached + len(fed)), np.int64),
                 **past}
        if "position_ids" in takes:
            feeds["position_ids"] = np.arange(cached, cached + len(fed),
                                              dtype=np.int64)[None]
        out = dict(zip(names, session.run(names, feeds)))
        logits.append(out["logits"][0, -1])
        past = {p: out["present" + p[len("past_key_values"):]] for p in past}
        cached += len(fed)
        fed = [tokens[step]]
    return np.stack(logits)


@pytest.fixture(scope="module", params=sorted(EXPORTS))
def compiled(request, tmp_path_factory):
    export = request.param
    artifact = tmp_path_factory.mktemp(export) / "m.kiln"
    kiln("compile", fixture(export), "-o", str(artifact), "--max-seq-len",
         MAX_SEQ)
    return export, artifact


def test_the_exports_are_there():
    assert all(os.path.exists(path) for _, path in EXPORTS.values())


def test_the_cache_is_held_by_the_runtime(compiled):
    export, artifact = compiled
    info = json.loads(kiln("inspect", str(artifact), "--json").stdout)
    assert [e["name"] for e in info["entry_points"]] == ["prefill", "decode"]
    assert info["generation"]["decode_entry"] == "decode"
    assert len(info["states"]) == 4  # two layers' keys and values
    # No cache in or out of either entry point: input_ids (and decode's
    # count of cached positions) in, logits out.
    for entry in info["entry_points"]:
        assert [o["name"] for o in entry["outputs"]] == ["logits"]
        assert not any(i["name"].startswith("past_key_values")
                       for i in entry["inputs"])
    assert info["raised"]["attention"] == 4  # one per layer and entry point


def test_greedy_matches_transformers(compiled):
    export, artifact = compiled
    for prompt in PROMPTS:
        want = hf_greedy(model(EXPORTS[export][0]), prompt)
        assert generate(artifact, prompt)["new_ids"] == want, (export, prompt)
        # Each step recomputing the whole sequence gives the same tokens.
        assert generate(artifact, prompt, cache=False)["new_ids"] == want


def test_each_step_matches_onnxruntime(compiled, tmp_path):
    """The prefill and every decode step against onnxruntime's own round
    trip of the cache through the export's inputs and outputs."""
    export, artifact = compiled
    out = tmp_path / "logits.npy"
    got = generate(artifact, PROMPTS[0], extra=["--logits-out", str(out)])
    want = ort_steps(fixture(export), PROMPTS[0], got["new_ids"])
    np.testing.assert_allclose(np.load(out), want, rtol=0, atol=1e-4)


@pytest.mark.parametrize("device", ["cpu", "sim"])
def test_batch_of_different_lengths(device, tmp_path):
    """Two prompts in one batch, left-padded by the generator: each row's
    tokens are transformers' for that prompt alone."""
    artifact = tmp_path / "b.kiln"
    extra = (["--target", "cuda:sm_80,sm_90a", "--precision", "bf16",
              "--embed-kernel-ir"] if device == "sim" else [])
    kiln("compile", fixture("llama"), "-o", str(artifact), "--max-seq-len",
         MAX_SEQ, "--max-batch", "2", *extra)
    out = tmp_path / "logits.npy"
    got = generate(artifact, *PROMPTS, device=device,
                   extra=["--logits-out", str(out)])
    rows = [row["new_ids"] for row in got["rows"]]
    if device == "cpu":
        assert rows == [hf_greedy(model("llama"), p) for p in PROMPTS]
    # Each row's steps against onnxruntime on that row's prompt and tokens
    # alone (f32 on the cpu; bf16 kernels under the simulator).
    logits = np.load(out)
    assert logits.shape == (NEW, 2, 256)
    for r, (prompt, row) in enumerate(zip(PROMPTS, rows)):
        want = ort_steps(fixture("llama"), prompt, row)
        if device == "cpu":
            np.testing.assert_allclose(logits[:, r], want, rtol=0, atol=1e-4)
        else:
            for step in range(NEW):
                error = normwise_error(logits[step, r], want[step])
                assert error <= PRECISION_TOLERANCES["bf16"], (r, step, error)


@pytest.mark.parametrize("name", ["gpt2", "llama-dynamo"])
def test_under_the_simulator_at_bf16(name, tmp_path):
    """The cuda kernels (tensor-core GEMMs, flash attention for the prompt,
    split-KV flash decode over the bf16 cache) under the simulator: each
    step's logits within the bf16 tolerance of onnxruntime's."""
    artifact = tmp_path / "c.kiln"
    kiln("compile", fixture(name), "-o", str(artifact), "--max-seq-len",
         MAX_SEQ, "--target", "cuda:sm_80,sm_90a", "--precision", "bf16",
         "--embed-kernel-ir")
    info = json.loads(kiln("inspect", str(artifact), "--json").stdout)
    assert all(s["dtype"] == "bf16" for s in info["states"]), info["states"]
    flash = [k for k in info["kernels"]
             if k["strategy"] == "flash-attention-mma-sync"]
    assert any(k["name"].startswith("decode") for k in flash)
    out = tmp_path / "logits.npy"
    got = generate(artifact, PROMPTS[0], device="sim",
                   extra=["--logits-out", str(out)])
    want = ort_steps(fixture(name), PROMPTS[0], got["new_ids"])
    got_logits = np.load(out)
    for step in range(NEW):
        error = normwise_error(got_logits[step], want[step])
        assert error <= PRECISION_TOLERANCES["bf16"], (step, error)


def test_an_optimum_style_folder(tmp_path):
    """model.onnx next to config.json, generation_config.json and
    tokenizer.json: the artifact carries the tokenizer and the
    end-of-sequence token; text in, text out, as transformers."""
    from test_tokenizer import train
    tokenizer = train("gpt2")
    eos = tokenizer.token_to_id("<|endoftext|>")
    torch.manual_seed(0)
    m = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=512, n_positions=64, n_embd=64, n_layer=2, n_head=4,
        bos_token_id=eos, eos_token_id=eos)).eval()
    folder = tmp_path / "export"
    folder.mkdir()
    m.config.save_pretrained(str(folder))
    m.generation_config.save_pretrained(str(folder))
    tokenizer.save(str(folder / "tokenizer.json"))
    export_past.export(m, str(folder))
    os.rename(folder / "model_past.onnx", folder / "model.onnx")
    artifact = tmp_path / "m.kiln"
    kiln("compile", str(folder / "model.onnx"), "-o", str(artifact),
         "--max-seq-len", MAX_SEQ)
    info = json.loads(kiln("inspect", str(artifact), "--json").stdout)
    assert info["generation"]["eos_token_ids"] == [eos]
    assert info["generation"]["model_type"] == "gpt2"
    prompt = "The quick brown fox"
    ids = tokenizer.encode(prompt).ids
    want = hf_greedy(m, ids, 20)
    if eos in want:
        want = want[:want.index(eos) + 1]
    got = json.loads(kiln("generate", str(artifact), "--prompt", prompt,
                          "--max-new-tokens", "20", "--json").stdout)
    assert got["prompt_ids"] == ids
    assert got["new_ids"] == want
    assert got["text"] == tokenizer.decode(want, skip_special_tokens=False)


def test_errors(tmp_path):
    out = tmp_path / "x.kiln"
    mlp = os.path.join(ROOT, "test", "fixtures", "mlp", "model.onnx")
    cases = [
        ([mlp, "--max-seq-len", "32"],
         "--max-seq-len compiles a decoder exported with its KV cache"),
        ([fixture("gpt2"), "--max-seq-len", "32", "--target",
          "cuda:sm_80,sm_90a"], "compile with --precision fp16 or bf16"),
        ([fixture("gpt2"), "--max-seq-len", "32", "--dim",
          "sequence_length=1..8"], "--dim does not apply"),
        ([fixture("gpt2"), "--max-seq-len", "1"], "leaves no room"),
        ([fixture("gpt2"), "--max-batch", "2"],
         "--max-batch applies to checkpoint folders"),
        ([fixture("gpt2"), "--max-seq-len", "32", "--kv-cache", "off"],
         "--kv-cache off"),
        # GPT-2's learned positions: a table of 64 rows read at position_ids.
        ([fixture("gpt2"), "--max-seq-len", "65"],
         "--max-seq-len 65 exceeds the 64 positions of the model's position "
         "table 'model.transformer.wpe.weight' (read at position_ids); pass "
         "--max-seq-len 64 or less"),
    ]
    # Rotary positions have no table: the folder's config.json says.
    folder = tmp_path / "llama"
    folder.mkdir()
    shutil.copy(fixture("llama"), folder / "model.onnx")
    (folder / "config.json").write_text(json.dumps(
        {"model_type": "llama", "max_position_embeddings": 32}))
    cases.append(([str(folder / "model.onnx"), "--max-seq-len", "48"],
                  "--max-seq-len 48 exceeds the 32 positions of the model "
                  "(max_position_embeddings in " + str(folder) +
                  "/config.json); pass --max-seq-len 32 or less"))
    for args, message in cases:
        result = kiln("compile", *args, "-o", str(out), check=False)
        assert result.returncode == 1, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr and not out.exists(), args
    # A prompt longer than the compiled sequence.
    artifact = tmp_path / "m.kiln"
    kiln("compile", fixture("gpt2"), "-o", str(artifact), "--max-seq-len", "8")
    result = kiln("generate", str(artifact), "--prompt-ids",
                  ",".join(["1"] * 9), check=False)
    assert result.returncode == 1 and "longer than" in result.stderr, \
        result.stderr


def genai_decoder(path, packed=False, layers=2, vocab=64, hidden=64, heads=4,
                  kv_heads=2, norms=False):
    """A decoder laid out as onnxruntime-genai's builder writes one: each
    layer's attention is one com.microsoft GroupQueryAttention (rotary from
    cos/sin caches, 4 query heads over 2 key/value heads, Q, K and V apart
    or packed) whose present outputs are the cache, and seqlens_k and
    total_sequence_length are computed from the attention mask; `norms`:
    SimplifiedLayerNormalization before each attention and the residual
    add as SkipSimplifiedLayerNormalization. Random weights; the reference
    is onnxruntime."""
    rng = np.random.default_rng(1 if packed else 0)
    d = hidden // heads
    inits, nodes = [], []

    def weight(name, *shape):
        inits.append(numpy_helper.from_array(
            (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32),
            name))
        return name

    angles = np.arange(128)[:, None] * (
        10000.0 ** (-np.arange(0, d, 2) / d))[None]
    inits += [numpy_helper.from_array(np.cos(angles).astype(np.float32),
                                      "cos_cache"),
              numpy_helper.from_array(np.sin(angles).astype(np.float32),
                                      "sin_cache"),
              numpy_helper.from_array(np.array([1], np.int64), "axes"),
              numpy_helper.from_array(np.array(1, np.int64), "one")]
    nodes += [
        helper.make_node("Gather", [weight("embed", vocab, hidden),
                                    "input_ids"], ["x0"]),
        helper.make_node("ReduceSum", ["attention_mask", "axes"], ["count"],
                         keepdims=0),
        helper.make_node("Sub", ["count", "one"], ["last"]),
        helper.make_node("Cast", ["last"], ["seqlens_k"],
                         to=TensorProto.INT32),
        helper.make_node("Shape", ["attention_mask"], ["mask_shape"]),
        helper.make_node("Gather", ["mask_shape", "one"], ["total"]),
        helper.make_node("Cast", ["total"], ["total_sequence_length"],
                         to=TensorProto.INT32)]
    info = helper.make_tensor_value_info
    inputs = [info("input_ids", TensorProto.INT64, [1, "sequence_length"]),
              info("attention_mask", TensorProto.INT64,
                   [1, "total_sequence_length"])]
    outputs = [info("logits", TensorProto.FLOAT,
                    [1, "sequence_length", vocab])]
    x = "x0"
    if norms:
        inits.append(numpy_helper.from_array(
            (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32),
            "gamma"))
        nodes.append(helper.make_node("SimplifiedLayerNormalization",
                                      ["x0", "gamma"], ["n0"], epsilon=1e-5))
    for n in range(layers):
        past = [f"past_key_values.{n}.key", f"past_key_values.{n}.value"]
        source = f"n{n}" if norms else x
        present = [f"present.{n}.key", f"present.{n}.value"]
        inputs += [info(p, TensorProto.FLOAT,
                        [1, kv_heads, "past_sequence_length", d])
                   for p in past]
        outputs += [info(p, TensorProto.FLOAT,
                         [1, kv_heads, "total_sequence_length", d])
                    for p in present]
        if packed:
            nodes.append(helper.make_node(
                "MatMul", [source, weight(f"wqkv{n}", hidden,
                                          hidden + 2 * kv_heads * d)],
                [f"qkv{n}"]))
            qkv = [f"qkv{n}", "", ""]
        else:
            nodes += [helper.make_node("MatMul", [source, weight(
                          f"w{p}{n}", hidden, width)], [f"{p}{n}"])
                      for p, width in (("q", hidden), ("k", kv_heads * d),
                                       ("v", kv_heads * d))]
            qkv = [f"q{n}", f"k{n}", f"v{n}"]
        nodes += [
            helper.make_node(
                "GroupQueryAttention",
                qkv + past + ["seqlens_k", "total_sequence_length",
                              "cos_cache", "sin_cache"],
                [f"attn{n}"] + present, domain="com.microsoft",
                num_heads=heads, kv_num_heads=kv_heads, do_rotary=1),
            helper.make_node("MatMul", [f"attn{n}",
                                        weight(f"wo{n}", hidden, hidden)],
                             [f"o{n}"])]
        if norms:
            # The residual sum, and its norm for the next layer.
            nodes.append(helper.make_node(
                "SkipSimplifiedLayerNormalization", [f"o{n}", x, "gamma"],
                [f"n{n + 1}", "", "", f"x{n + 1}"], domain="com.microsoft",
                epsilon=1e-5))
        else:
            nodes.append(helper.make_node("Add", [x, f"o{n}"], [f"x{n + 1}"]))
        x = f"x{n + 1}"
    nodes.append(helper.make_node("MatMul", [x, weight("lm_head", hidden,
                                                       vocab)], ["logits"]))
    onnx.save(helper.make_model(
        helper.make_graph(nodes, "genai", inputs, outputs, inits),
        opset_imports=[helper.make_opsetid("", 17),
                       helper.make_opsetid("com.microsoft", 1)]), str(path))
    return path


@pytest.mark.parametrize("variant", ["qkv", "packed", "norms-4bit"])
def test_group_query_attention_decoder(variant, tmp_path):
    """onnxruntime-genai's layout: each layer's GroupQueryAttention writes
    the held cache and attends over it (one kiln.attention per layer and
    entry point, causal from the end, rotary at the cached count); its
    norms (SimplifiedLayerNormalization, SkipSimplifiedLayerNormalization)
    and 4-bit weights (onnxruntime's MatMulNBitsQuantizer) over rows of
    run-time length; the greedy tokens and each step's logits as
    onnxruntime's with its own cache round trip."""
    path = genai_decoder(tmp_path / "genai.onnx", variant == "packed",
                         norms=variant == "norms-4bit")
    if variant == "norms-4bit":
        from onnxruntime.quantization.matmul_nbits_quantizer import \
            MatMulNBitsQuantizer
        quantizer = MatMulNBitsQuantizer(onnx.load(str(path)), block_size=32,
                                         is_symmetric=True)
        quantizer.process()
        quantizer.model.save_model_to_file(str(path))
        ops = {n.op_type for n in onnx.load(str(path)).graph.node}
        assert {"MatMulNBits", "SkipSimplifiedLayerNormalization"} <= ops
    artifact = tmp_path / "g.kiln"
    kiln("compile", str(path), "-o", str(artifact), "--max-seq-len", MAX_SEQ)
    info = json.loads(kiln("inspect", str(artifact), "--json").stdout)
    assert [e["name"] for e in info["entry_points"]] == ["prefill", "decode"]
    assert len(info["states"]) == 4
    assert any(k["strategy"] == "cpu-flash-attention" for k in info["kernels"])
    out = tmp_path / "logits.npy"
    prompt = [5, 9, 33, 2, 40, 17]
    got = generate(artifact, prompt, extra=["--logits-out", str(out)])
    want = ort_steps(path, prompt, got["new_ids"])
    assert got["new_ids"] == [int(row.argmax()) for row in want]
    np.testing.assert_allclose(np.load(out), want, rtol=0, atol=1e-4)


def test_group_query_attention_decoder_under_the_simulator(tmp_path):
    path = genai_decoder(tmp_path / "genai.onnx")
    artifact = tmp_path / "g.kiln"
    kiln("compile", str(path), "-o", str(artifact), "--max-seq-len", MAX_SEQ,
         "--target", "cuda:sm_80,sm_90a", "--precision", "bf16",
         "--embed-kernel-ir")
    info = json.loads(kiln("inspect", str(artifact), "--json").stdout)
    assert all(s["dtype"] == "bf16" for s in info["states"]), info["states"]
    out = tmp_path / "logits.npy"
    prompt = [5, 9, 33, 2, 40, 17]
    got = generate(artifact, prompt, device="sim",
                   extra=["--logits-out", str(out)])
    want = ort_steps(path, prompt, got["new_ids"])
    for step, (g, w) in enumerate(zip(np.load(out), want)):
        error = normwise_error(g, w)
        assert error <= PRECISION_TOLERANCES["bf16"], (step, error)
    # seqlens_k is each row's own length in onnxruntime: a batch of rows
    # left-padded to one end does not fit it.
    result = kiln("compile", str(path), "-o", str(tmp_path / "b.kiln"),
                  "--max-seq-len", MAX_SEQ, "--max-batch", "2", check=False)
    assert result.returncode == 1 and "with a batch of one" in result.stderr
    assert not (tmp_path / "b.kiln").exists()
