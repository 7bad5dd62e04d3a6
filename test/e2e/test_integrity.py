"""Damaged artifacts never take `kiln run` or `kiln generate` down, and the
same model and options always give the same artifact.

Each artifact is damaged in many seeded random ways (one bit flipped, many
bits flipped, truncated, bytes spliced in from elsewhere in the file, a run
of bytes zeroed), anywhere in the file. A damaged file whose used parts
(the header, every section, the manifest) are byte-identical to the original
must still run and give the same outputs; every other must be refused with
a clear error and exit status 1, never a signal (docs/reliability.md)."""
import json
import os
import random
import struct
import subprocess

import numpy as np
import pytest

from conftest import KILN, ROOT, kiln

MLP = os.path.join(ROOT, "test", "fixtures", "mlp")
TINY_LLAMA = os.path.join(ROOT, "test", "fixtures", "checkpoints", "tiny-llama")
LLAMA_DYNAMIC = os.path.join(ROOT, "test", "fixtures", "transformers", "llama",
                             "model_dynamic.onnx")
GPT2 = os.path.join(ROOT, "test", "fixtures", "transformers", "gpt2",
                    "model.onnx")

# What a damaged file may say. Every one names the file and says what to do.
REFUSALS = ("is not a valid Kiln artifact", "is not a Kiln artifact",
            "artifact format version")


def used_ranges(path):
    """[begin, end) of every part of the artifact that is read: the header,
    each section (from `kiln inspect --json`) and the manifest."""
    data = open(path, "rb").read()
    manifest_offset, manifest_size = struct.unpack_from("<QQ", data, 16)
    sections = json.loads(kiln("inspect", "--json", path).stdout)["sections"]
    ranges = [(0, 64), (manifest_offset, manifest_offset + manifest_size)]
    ranges += [(s["offset"], s["offset"] + s["size"]) for s in sections]
    return ranges


def damage(data, rng):
    """One random kind of damage; returns (kind, bytes)."""
    b = bytearray(data)
    kind = rng.choice(["flip", "flips", "truncate", "splice", "zero"])
    if kind == "flip":
        at = rng.randrange(len(b))
        b[at] ^= 1 << rng.randrange(8)
    elif kind == "flips":
        for _ in range(rng.randint(2, 32)):
            at = rng.randrange(len(b))
            b[at] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        b = b[:rng.randrange(len(b))]
    elif kind == "splice":
        at, source = rng.randrange(len(b)), rng.randrange(len(b))
        length = rng.randint(1, 4096)
        b[at:at + length] = data[source:source + length]
    else:
        at = rng.randrange(len(b))
        length = min(rng.randint(1, 4096), len(b) - at)
        b[at:at + length] = bytes(length)
    return kind, bytes(b)


def intact_where_used(original, damaged, ranges):
    return len(damaged) == len(original) and all(
        damaged[begin:end] == original[begin:end] for begin, end in ranges)


def check_damage(artifact, command, tmp_path, count, seed, expected):
    """Runs `command` (a list with {artifact} and {out} placeholders) on
    `count` damaged copies of `artifact`; `expected(out_dir, stdout)`
    checks a run that must succeed."""
    original = open(artifact, "rb").read()
    ranges = used_ranges(artifact)
    rng = random.Random(seed)
    refused = ran = 0
    for i in range(count):
        kind, damaged = damage(original, rng)
        if damaged == original:
            continue
        path = str(tmp_path / "damaged.kiln")
        out = tmp_path / f"out{i}"
        with open(path, "wb") as f:
            f.write(damaged)
        args = [a.format(artifact=path, out=out) for a in command]
        result = subprocess.run([KILN, *args], capture_output=True, text=True,
                                timeout=120)
        what = f"damage #{i} ({kind}), kiln {' '.join(args)}"
        assert result.returncode in (0, 1), (
            f"{what} ended with status {result.returncode}:\n{result.stderr}")
        if intact_where_used(original, damaged, ranges):
            assert result.returncode == 0, f"{what}:\n{result.stderr}"
            expected(out, result.stdout)
            ran += 1
        else:
            assert result.returncode == 1, (
                f"{what} ran a file damaged in a used part:\n{result.stdout}")
            assert any(r in result.stderr for r in REFUSALS), result.stderr
            refused += 1
    assert refused > count // 2
    return refused, ran


def test_damaged_cpu_artifacts_are_refused(tmp_path):
    artifact = str(tmp_path / "mlp.kiln")
    kiln("compile", os.path.join(MLP, "model.onnx"), "-o", artifact)
    kiln("run", artifact, "--input", f"x=@{MLP}/x.npy", "--output-dir",
         str(tmp_path / "want"))
    want = np.load(tmp_path / "want" / "probs.npy")

    def same_outputs(out, _):
        np.testing.assert_array_equal(np.load(out / "probs.npy"), want)

    check_damage(artifact, ["run", "{artifact}", "--input", f"x=@{MLP}/x.npy",
                            "--output-dir", "{out}"],
                 tmp_path, count=240, seed=1, expected=same_outputs)


def test_damaged_cuda_artifacts_are_refused_under_sim(tmp_path):
    artifact = str(tmp_path / "mlp.kiln")
    kiln("compile", os.path.join(MLP, "model.onnx"), "-o", artifact,
         "--target", "cuda:sm_80,sm_90a", "--embed-kernel-ir")
    kiln("run", artifact, "--device", "sim", "--input", f"x=@{MLP}/x.npy",
         "--output-dir", str(tmp_path / "want"))
    want = np.load(tmp_path / "want" / "probs.npy")

    def same_outputs(out, _):
        np.testing.assert_array_equal(np.load(out / "probs.npy"), want)

    check_damage(artifact, ["run", "{artifact}", "--device", "sim", "--input",
                            f"x=@{MLP}/x.npy", "--output-dir", "{out}"],
                 tmp_path, count=80, seed=2, expected=same_outputs)


def test_damaged_checkpoint_artifacts_are_refused_by_generate(tmp_path):
    """A checkpoint's artifact also carries a tokenizer, a generation
    config and a KV cache's states in its manifest."""
    artifact = str(tmp_path / "tiny.kiln")
    kiln("compile", TINY_LLAMA, "-o", artifact)
    command = ["generate", "{artifact}", "--prompt", "Once upon a time",
               "--max-new-tokens", "4"]
    want = kiln(*[a.format(artifact=artifact) for a in command]).stdout

    def same_text(_, stdout):
        assert stdout == want

    check_damage(artifact, command, tmp_path, count=80, seed=3,
                 expected=same_text)


def test_skipping_the_weight_checksums(tmp_path):
    """--skip-weight-checksums loads a file whose weights are damaged (and
    uses them: the outputs change); damaged kernel code is refused whatever
    the flag says."""
    artifact = str(tmp_path / "mlp.kiln")
    kiln("compile", os.path.join(MLP, "model.onnx"), "-o", artifact)
    sections = {s["name"]: s for s in json.loads(
        kiln("inspect", "--json", artifact).stdout)["sections"]}
    code = next(name for name in sections if name.startswith("kernels."))
    original = open(artifact, "rb").read()
    kiln("run", artifact, "--input", f"x=@{MLP}/x.npy", "--output-dir",
         str(tmp_path / "want"))
    want = np.load(tmp_path / "want" / "probs.npy")
    for name, refused in (("weights", False), (code, True)):
        damaged = bytearray(original)
        # The high bit of the first weight's exponent: a large change.
        damaged[sections[name]["offset"] + 3] ^= 0x40
        path = str(tmp_path / f"{name}.kiln")
        open(path, "wb").write(damaged)
        plain = kiln("run", path, "--input", f"x=@{MLP}/x.npy", check=False)
        assert plain.returncode == 1
        assert f"the checksum of section '{name}'" in plain.stderr
        out = tmp_path / f"out-{name}"
        skipped = kiln("run", path, "--input", f"x=@{MLP}/x.npy",
                       "--skip-weight-checksums", "--output-dir", str(out),
                       check=False)
        assert skipped.returncode == (1 if refused else 0), skipped.stderr
        if not refused:
            assert not np.array_equal(np.load(out / "probs.npy"), want)
        verify = kiln("inspect", "--verify", path, check=False)
        assert verify.returncode == 1
        assert f"section   DAMAGED {name}" in verify.stdout


def compile_twice(tmp_path, *args):
    """The artifact of `kiln compile *args` compiled on every CPU and then
    on one (LLVM's and MLIR's thread pools follow the affinity mask)."""
    first, second = str(tmp_path / "a.kiln"), str(tmp_path / "b.kiln")
    kiln("compile", *args, "-o", first)
    result = subprocess.run(["taskset", "-c", "0", KILN, "compile", *args,
                             "-o", second], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return open(first, "rb").read(), open(second, "rb").read()


@pytest.mark.parametrize("model,options", [
    (LLAMA_DYNAMIC, ["--dim", "batch=1..4", "--dim", "sequence=1..64"]),
    (LLAMA_DYNAMIC, ["--dim", "batch=1..4", "--dim", "sequence=1..64",
                     "--target", "cuda:sm_80,sm_90a", "--precision", "bf16",
                     "--embed-kernel-ir"]),
    (GPT2, ["--precision", "fp16"]),
    (TINY_LLAMA, []),
    (TINY_LLAMA, ["--target", "cuda:sm_80,sm_90a", "--precision", "bf16",
                  "--dim", "batch=1", "--dim", "sequence=32"]),
], ids=["llama-cpu", "llama-cuda-bf16", "gpt2-fp16", "checkpoint-cpu",
        "checkpoint-cuda"])
def test_artifacts_are_reproducible(tmp_path, model, options):
    first, second = compile_twice(tmp_path, model, *options)
    assert first == second, "two compiles of the same model differ"
