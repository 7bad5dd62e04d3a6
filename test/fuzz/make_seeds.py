"""Writes the fuzz targets' seed inputs (fuzz/FuzzTarget.h) into
test/fuzz/<target>/seed-*: small valid inputs of every kind each reader
takes, from the committed fixtures. Inputs that once found a bug live
beside them as crash-*, leak-* or timeout-* and are never regenerated.

    .venv/bin/python test/fuzz/make_seeds.py [--kiln build/bin/kiln]

Seeds are committed: the suite replays them without running this."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(ROOT, "test", "fixtures")
SEPARATOR = b"\n==kiln-fuzz-part==\n"


def write(target, name, data):
    os.makedirs(os.path.join(HERE, target), exist_ok=True)
    with open(os.path.join(HERE, target, "seed-" + name), "wb") as f:
        f.write(data)


def read(*path):
    with open(os.path.join(*path), "rb") as f:
        return f.read()


def copy_only_model(path):
    """Reshape and Identity alone: an artifact whose launches are copies,
    which the artifact target also runs in its sealed mode."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [24])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [4, 6])
    shape = numpy_helper.from_array(np.array([24], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"]),
         helper.make_node("Identity", ["x"], ["z"])],
        "copies", [x], [y, z], [shape])
    onnx.save(helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17)]), path)


def external_data_model(folder):
    """A MatMul whose weight lives in weights.bin next to the model."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    w = numpy_helper.from_array(
        np.arange(32, dtype=np.float32).reshape(8, 4), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])],
                              "external", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17)])
    path = os.path.join(folder, "model.onnx")
    onnx.save(model, path, save_as_external_data=True,
              all_tensors_to_one_file=True, location="weights.bin",
              size_threshold=0)
    return read(path), read(folder, "weights.bin")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kiln", default=os.path.join(ROOT, "build", "bin",
                                                       "kiln"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        def compile_(model, name, *options):
            out = os.path.join(tmp, name + ".kiln")
            subprocess.run([args.kiln, "compile", model, "-o", out, *options],
                           check=True, capture_output=True)
            return read(out)

        # artifact: mode byte (0: as is, 1: checksums made right), file.
        # The cpu seeds run on any x86-64 (the replay runs their kernels).
        mlp = compile_(os.path.join(FIXTURES, "mlp", "model.onnx"), "mlp",
                       "--cpu", "x86-64")
        write("artifact", "mlp-cpu", b"\0" + mlp)
        write("artifact", "mlp-cpu-sealed", b"\1" + mlp)
        copy_only_model(os.path.join(tmp, "copies.onnx"))
        copies = compile_(os.path.join(tmp, "copies.onnx"), "copies",
                          "--cpu", "x86-64")
        write("artifact", "copies-cpu", b"\0" + copies)
        write("artifact", "copies-cpu-sealed", b"\1" + copies)
        cuda = compile_(os.path.join(FIXTURES, "mlp", "model.onnx"), "cuda",
                        "--target", "cuda:sm_80")
        write("artifact", "mlp-cuda-sealed", b"\1" + cuda)
        folder = os.path.join(tmp, "ckpt")
        subprocess.run([sys.executable, os.path.join(
            ROOT, "test", "lit", "Inputs", "checkpoint.py"), "llama", folder],
            check=True)
        tokenizer_json = read(FIXTURES, "checkpoints", "tiny-llama",
                              "tokenizer.json")
        generator = compile_(folder, "ckpt", "--max-seq-len", "16",
                             "--cpu", "x86-64")
        # Generation entry points, states (the KV cache), strided copies.
        write("artifact", "checkpoint-cpu-sealed", b"\1" + generator)

        # onnx: a model, then its external data.
        write("onnx", "mlp", read(FIXTURES, "mlp", "model.onnx"))
        write("onnx", "attention", read(FIXTURES, "attention", "model.onnx"))
        model, weights = external_data_model(tmp)
        write("onnx", "external-data", model + SEPARATOR + weights)

        # tensor: .npy and TensorProto files.
        write("tensor", "x-f32.npy", read(FIXTURES, "mlp", "x.npy"))
        ids = os.path.join(tmp, "ids.npy")
        np.save(ids, np.arange(12, dtype=np.int64).reshape(3, 4))
        write("tensor", "ids-i64.npy", read(ids))
        write("tensor", "x-f16.pb", numpy_helper.from_array(
            np.linspace(-2, 2, 12).astype(np.float16).reshape(3, 4),
            "x").SerializeToString())
        write("tensor", "mask-bool.pb", numpy_helper.from_array(
            np.array([[True, False], [False, True]]), "m").SerializeToString())

        # checkpoint: config.json, then model.safetensors.
        for family in ("llama", "gpt2"):
            folder = os.path.join(tmp, family)
            subprocess.run([sys.executable, os.path.join(
                ROOT, "test", "lit", "Inputs", "checkpoint.py"), family,
                folder], check=True)
            write("checkpoint", family, read(folder, "config.json") +
                  SEPARATOR + read(folder, "model.safetensors"))

        # tokenizer: tokenizer.json, then tokenizer.model.
        write("tokenizer", "bpe-json", tokenizer_json + SEPARATOR)
        import sentencepiece as spm
        corpus = ["Once upon a time there was a tiny model.",
                  "It read  two  spaces, digits 2026 and \u00e9t\u00e9.",
                  "\u6570\u5b57 and <tool> pieces"] * 20
        prefix = os.path.join(tmp, "sp")
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(corpus), model_prefix=prefix,
            vocab_size=400, model_type="bpe",
            normalization_rule_name="identity", byte_fallback=True,
            user_defined_symbols=["<tool>"], hard_vocab_limit=False,
            minloglevel=2)
        write("tokenizer", "sentencepiece-model",
              SEPARATOR + read(prefix + ".model"))


if __name__ == "__main__":
    main()
