"""`kiln generate` on checkpoints compiled by Kiln: greedy tokens identical
to transformers' `generate(do_sample=False)`, on cpu and under the
simulator; sampling options, stop conditions, --json and errors."""
import json

import numpy as np
import pytest
import torch
import transformers

from conftest import kiln
from test_checkpoints import ARCHITECTURES, make_checkpoint

PROMPT = [5, 17, 3, 60, 42]
NEW_TOKENS = 32


def hf_generate(path, prompt, new, **options):
    """transformers' greedy generation (its KV cache on) from `prompt`."""
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch.float32).eval()
    ids = torch.tensor([prompt])
    with torch.no_grad():
        return model.generate(ids, attention_mask=torch.ones_like(ids),
                              max_new_tokens=new, do_sample=False,
                              pad_token_id=0, **options)


def reference_tokens(path, prompt=PROMPT, new=NEW_TOKENS):
    return hf_generate(path, prompt, new)[0, len(prompt):].tolist()


def generate(artifact, *args, device="cpu", cache=True):
    """`kiln generate --json`; `cache=False` sets KILN_KV_CACHE=0 (each
    token recomputes the whole sequence with the prefill entry point)."""
    result = kiln("generate", str(artifact), "--prompt-ids",
                  ",".join(map(str, PROMPT)), "--json", "--device", device,
                  *args, env={"KILN_KV_CACHE": "1" if cache else "0"})
    return json.loads(result.stdout)


def reference_steps(path, new):
    """transformers' greedy tokens and the raw logits of each step (its KV
    cache on); end-of-sequence is suppressed so that every step is taken."""
    out = hf_generate(path, PROMPT, new, min_new_tokens=new,
                      return_dict_in_generate=True, output_logits=True)
    tokens = out.sequences[0, len(PROMPT):].tolist()
    return tokens, np.stack([step[0].numpy() for step in out.logits])


def check_steps(name, got, got_logits, tokens, logits, atol):
    """Kiln's steps against transformers': the same tokens until Kiln
    stops (at an end-of-sequence token that transformers suppressed), and
    each step's logits within `atol`."""
    steps = len(got["new_ids"])
    assert steps >= 1 and got_logits.shape == (steps, logits.shape[1])
    assert got["new_ids"][:steps - 1] == tokens[:steps - 1], name
    if got["finish_reason"] != "eos":
        assert got["new_ids"] == tokens[:steps], name
    for step in range(steps):
        np.testing.assert_allclose(got_logits[step], logits[step], rtol=0,
                                   atol=atol, err_msg=f"{name} step {step}")


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def compiled(request, tmp_path_factory):
    name = request.param
    root = tmp_path_factory.mktemp(name)
    path = make_checkpoint(root / "ckpt", name)
    artifact = root / "m.kiln"
    kiln("compile", str(path), "-o", str(artifact), "--max-seq-len", "48")
    return name, path, artifact


def test_greedy_matches_transformers(compiled):
    name, path, artifact = compiled
    want = reference_tokens(path)
    got = generate(artifact, "--max-new-tokens", str(NEW_TOKENS))
    assert got["prompt_ids"] == PROMPT
    assert got["new_ids"] == want, name
    assert got["finish_reason"] in ("eos", "length")
    assert got["finish_reason"] == ("length" if len(want) == NEW_TOKENS
                                    else "eos")


@pytest.mark.parametrize("name", ["gpt2", "llama3"])
def test_greedy_under_sim(name, tmp_path):
    """The cuda kernels at a fixed sequence length: each step pads the
    sequence and reads the last real position."""
    path = make_checkpoint(tmp_path / "ckpt", name)
    artifact = tmp_path / "m.kiln"
    kiln("compile", str(path), "-o", str(artifact), "--target",
         "cuda:sm_80,sm_90a", "--embed-kernel-ir", "--dim", "batch=1",
         "--dim", f"sequence={len(PROMPT) + NEW_TOKENS - 1}")
    got = generate(artifact, "--max-new-tokens", str(NEW_TOKENS),
                   device="sim")
    assert got["new_ids"] == reference_tokens(path)


def test_sampling_is_seeded(compiled):
    _, _, artifact = compiled
    args = ["--temperature", "1.5", "--top-p", "0.9", "--max-new-tokens",
            "12"]
    first = generate(artifact, *args, "--seed", "1")["new_ids"]
    assert generate(artifact, *args, "--seed", "1")["new_ids"] == first
    others = [generate(artifact, *args, "--seed", str(s))["new_ids"]
              for s in range(2, 6)]
    assert any(o != first for o in others)


def test_top_k_one_is_greedy(compiled):
    _, _, artifact = compiled
    greedy = generate(artifact, "--max-new-tokens", "8")["new_ids"]
    assert generate(artifact, "--temperature", "3", "--top-k", "1",
                    "--max-new-tokens", "8")["new_ids"] == greedy


def test_stop_conditions_and_streaming(tmp_path):
    path = make_checkpoint(tmp_path / "ckpt", "llama3")
    artifact = tmp_path / "m.kiln"
    kiln("compile", str(path), "-o", str(artifact), "--max-seq-len", "12")
    greedy = generate(artifact, "--max-new-tokens", "4")["new_ids"]
    stopped = generate(artifact, "--stop-id", str(greedy[1]))
    assert stopped["new_ids"] == greedy[:greedy.index(greedy[1]) + 1]
    assert stopped["finish_reason"] == "stop"
    # The sequence may grow to --max-seq-len (12): 5 + 8 tokens.
    full = generate(artifact, "--max-new-tokens", "100")
    assert full["finish_reason"] in ("max_sequence", "eos")
    if full["finish_reason"] == "max_sequence":
        assert len(full["new_ids"]) == 12 - len(PROMPT) + 1
    # Without --json the tokens stream to stdout and timings go to stderr.
    plain = kiln("generate", str(artifact), "--prompt-ids", "5,17,3",
                 "--max-new-tokens", "3")
    assert len(plain.stdout.split()) == 3
    assert "3 prompt tokens, 3 new (length); time to first token" in \
        plain.stderr


def test_errors(tmp_path):
    path = make_checkpoint(tmp_path / "ckpt", "gpt2")
    artifact = tmp_path / "m.kiln"
    kiln("compile", str(path), "-o", str(artifact), "--max-seq-len", "8")
    cases = [
        (["--prompt-ids", "1,2,500"],
         "token id 500 is outside the vocabulary of 96 tokens"),
        (["--prompt-ids", ",".join(["1"] * 9)],
         "longer than the 8 the model was compiled for"),
        (["--prompt", "hello"], "carries no tokenizer"),
        (["--prompt-ids", "1", "--top-p", "1.5"], "--top-p expects a number"),
        (["--prompt-ids", "x"], "--prompt-ids expects comma-separated"),
        ([], "give the prompts either as text"),
        (["--prompt-ids", "1", "--prompt", "hi"],
         "give the prompts either as text"),
        (["--prompt-ids", "1", "--prompt-ids", "2,3"],
         "2 prompts for a model compiled for a batch of 1 (kiln compile "
         "--dim batch=2)"),
    ]
    for args, message in cases:
        result = kiln("generate", str(artifact), *args, check=False)
        assert result.returncode != 0, args
        assert message in result.stderr, (args, result.stderr)
    mlp = tmp_path / "mlp.kiln"
    from conftest import ROOT
    kiln("compile", f"{ROOT}/test/fixtures/mlp/model.onnx", "-o", str(mlp))
    result = kiln("generate", str(mlp), "--prompt-ids", "1", check=False)
    assert result.returncode != 0
    assert "is not a decoder model compiled from a checkpoint" in \
        result.stderr


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no_cache"])
def test_decode_step_logits(compiled, cache, tmp_path):
    """The logits of each of 16 steps, against transformers with its KV
    cache, within 1e-4: from the decode entry point over the session's KV
    cache, and (KILN_KV_CACHE=0) from the prefill entry point over the
    whole sequence."""
    from conftest import CHECKPOINT_LOGITS_ATOL
    name, path, artifact = compiled
    assert json.loads(kiln("inspect", "--json", str(artifact)).stdout)[
        "decode_entry"] == "decode"
    tokens, logits = reference_steps(path, 16)
    got = generate(artifact, "--max-new-tokens", "16", "--logits-out",
                   str(tmp_path / "logits.npy"), cache=cache)
    check_steps(name, got, np.load(tmp_path / "logits.npy"), tokens, logits,
                CHECKPOINT_LOGITS_ATOL)


@pytest.mark.parametrize("precision,sequence,target", [
    ("fp32", ["--dim", "sequence=24"], "cuda:sm_80,sm_90a"),
    ("bf16", ["--dim", "sequence=24"], "cuda:sm_80,sm_90a"),
    ("bf16", ["--max-seq-len", "24"], "cuda:sm_80,sm_90a"),
    ("bf16", ["--max-seq-len", "24"], "cuda:sm_90a")])
def test_decode_under_sim(precision, sequence, target, tmp_path):
    """The cuda kernels of prefill and decode over the KV cache (bf16: the
    cache holds bf16, the decode attention is flash attention over the
    cached prefix, split over the key tiles at run time; with
    --max-seq-len the prompt's length is symbolic too; for sm_90a alone the
    prefill's attention is TMA + wgmma over the symbolic counts), executed
    by the simulator; each step's logits against transformers'."""
    from conftest import CHECKPOINT_LOGITS_ATOL, PRECISION_TOLERANCES
    path = make_checkpoint(tmp_path / "ckpt", "llama3")
    artifact = tmp_path / "m.kiln"
    kiln("compile", str(path), "-o", str(artifact), "--target", target,
         "--embed-kernel-ir", "--precision", precision, "--dim", "batch=1",
         *sequence)
    info = json.loads(kiln("inspect", "--json", str(artifact)).stdout)
    if precision == "bf16":
        configs = [k["config"] for k in info["kernels"]
                   if k["strategy"] == "flash-attention-mma-sync"]
        assert any("splits" in c for c in configs), configs
    if target == "cuda:sm_90a":
        strategy = {k["symbol"]: k["strategy"] for k in info["kernels"]}
        prefill = next(e for e in info["entry_points"] if e["name"] == "prefill")
        assert "flash-attention-wgmma" in {
            strategy.get(l.get("kernel")) for l in prefill["launches"]}
    state_dtypes = {state["dtype"] for state in info["states"]}
    assert state_dtypes == {"f32" if precision == "fp32" else "bf16"}
    tokens, logits = reference_steps(path, 12)
    got = generate(artifact, "--max-new-tokens", "12", "--logits-out",
                   str(tmp_path / "logits.npy"), device="sim")
    got_logits = np.load(tmp_path / "logits.npy")
    if precision == "fp32":
        check_steps("llama3", got, got_logits, tokens, logits,
                    CHECKPOINT_LOGITS_ATOL)
        return
    # bf16: the tokens may part from fp32's; each step is judged on the
    # logits of the sequence Kiln generated, with the precision's normwise
    # tolerance.
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch.float32).eval()
    sequence = torch.tensor([PROMPT + got["new_ids"]])
    with torch.no_grad():
        want = model(sequence).logits[0, len(PROMPT) - 1:-1].numpy()
    for step in range(len(got["new_ids"])):
        error = (np.linalg.norm(got_logits[step] - want[step]) /
                 np.linalg.norm(want[step]))
        assert error <= PRECISION_TOLERANCES["bf16"], (step, error)


@pytest.mark.parametrize("name", ["gpt2", "llama3"])
@pytest.mark.parametrize("device", ["cpu", "sim"])
def test_batch_of_different_lengths(name, device, tmp_path):
    """A prompt per row, of different lengths (the shorter ones padded on
    the left and masked): every row's tokens and the logits of each of its
    steps as transformers' on that prompt alone, with its KV cache."""
    from conftest import CHECKPOINT_LOGITS_ATOL
    if device == "sim" and name == "gpt2":
        pytest.skip("one family is enough for the simulator's kernels")
    path = make_checkpoint(tmp_path / "ckpt", name)
    prompts = [[5, 17, 3, 60, 42, 8, 9], [7], [11, 12, 13]]
    artifact = tmp_path / "m.kiln"
    target = (["--target", "cuda:sm_80,sm_90a", "--embed-kernel-ir",
               "--dim", "sequence=20"] if device == "sim" else
              ["--max-seq-len", "20"])
    kiln("compile", str(path), "-o", str(artifact), "--dim", "batch=3",
         *target)
    info = json.loads(kiln("inspect", "--json", str(artifact)).stdout)
    prefill = next(e for e in info["entry_points"] if e["name"] == "prefill")
    assert [i["name"] for i in prefill["inputs"]] == ["input_ids", "padding"]
    args = []
    for p in prompts:
        args += ["--prompt-ids", ",".join(map(str, p))]
    steps = 8
    result = kiln("generate", str(artifact), *args, "--max-new-tokens",
                  str(steps), "--json", "--device", device, "--logits-out",
                  str(tmp_path / "logits.npy"))
    got = json.loads(result.stdout)
    logits = np.load(tmp_path / "logits.npy")
    assert logits.shape[1] == len(prompts)
    for r, prompt in enumerate(prompts):
        row = got["rows"][r]
        assert row["prompt_ids"] == prompt
        out = hf_generate(path, prompt, steps, min_new_tokens=steps,
                          return_dict_in_generate=True, output_logits=True)
        want = out.sequences[0, len(prompt):].tolist()
        new = row["new_ids"]
        assert new[:len(new) - 1] == want[:len(new) - 1], (r, new, want)
        if row["finish_reason"] != "eos":
            assert new == want[:len(new)], (r, new, want)
        for step in range(len(new)):
            np.testing.assert_allclose(
                logits[step, r], out.logits[step][0].numpy(), rtol=0,
                atol=CHECKPOINT_LOGITS_ATOL, err_msg=f"row {r} step {step}")
