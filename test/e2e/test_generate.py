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


def reference_tokens(path, prompt=PROMPT, new=NEW_TOKENS):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch.float32).eval()
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=new, do_sample=False,
                             pad_token_id=0)
    return out[0, len(prompt):].tolist()


def generate(artifact, *args, device="cpu"):
    result = kiln("generate", str(artifact), "--prompt-ids",
                  ",".join(map(str, PROMPT)), "--json", "--device", device,
                  *args)
    return json.loads(result.stdout)


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
        ([], "give the prompt once"),
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


def test_decode_step_logits(compiled, tmp_path):
    """The logits of each of 16 decode steps (transformers with its KV
    cache) against Kiln's at the same positions, within 1e-4."""
    import numpy as np
    from conftest import CHECKPOINT_LOGITS_ATOL
    name, path, artifact = compiled
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch.float32).eval()
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=16, min_new_tokens=16,
                             do_sample=False, pad_token_id=0,
                             return_dict_in_generate=True, output_logits=True)
    sequence = out.sequences[0].numpy()
    np.save(tmp_path / "ids.npy", sequence[None, :-1].astype(np.int64))
    kiln("run", str(artifact), "--input", f"input_ids=@{tmp_path / 'ids.npy'}",
         "--output-dir", str(tmp_path / "out"))
    logits = np.load(tmp_path / "out" / "logits.npy")[0]
    for step, want in enumerate(out.logits):
        got = logits[len(PROMPT) - 1 + step]
        np.testing.assert_allclose(got, want[0].numpy(), rtol=0,
                                   atol=CHECKPOINT_LOGITS_ATOL,
                                   err_msg=f"{name} step {step}")
