"""Writes a BERT-shaped encoder as an ONNX model with random weights, node
for node what the TorchScript exporter (torch.onnx.export, dynamo=False)
writes for Hugging Face's BertModel: word, position and token-type
embeddings and their LayerNorm; per layer Q, K and V as MatMul + Add, the
heads split with Reshape/Transpose, scores divided by sqrt(head_dim) plus
the additive padding mask built from attention_mask, Softmax, the output
projection and residual LayerNorm (post-norm), and the erf GELU spelled out
(Div/Erf/Add/Mul). Defaults are bert-base: 12 layers, 768 wide, 12 heads,
3,072 inner, a 30,522-token vocabulary. onnx and numpy only:

    .venv/bin/python bench/make_bert.py bert.onnx [--layers 12 --tokens 128]
"""
import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper

from make_gpt2 import Graph, save


def linear(g, x, width_in, width_out, name, scope):
    """nn.Linear on a 3-D input: MatMul, then Add of the bias."""
    y = g.op("MatMul", [x, g.weight(f"{name}.weight", (width_in, width_out))],
             scope)
    return g.op("Add", [g.weight(f"{name}.bias", (width_out,)), y], scope)


def layer_norm(g, x, d, name, scope):
    return g.op("LayerNormalization",
                [x, g.weight(f"{name}.weight", (d,), value=np.ones(d)),
                 g.weight(f"{name}.bias", (d,), value=np.zeros(d))],
                scope, axis=-1, epsilon=1e-12)


def layer(g, x, i, d, heads, inner, seq, mask):
    p, s = f"encoder.layer.{i}", f"/encoder/layer.{i}"
    hd = d // heads
    shape = g.const([1, seq, heads, hd])

    def head_split(t, perm):
        return g.op("Transpose", [g.op("Reshape", [t, shape], s)], s, perm=perm)

    q = head_split(linear(g, x, d, d, f"{p}.attention.self.query", s), [0, 2, 1, 3])
    kt = head_split(linear(g, x, d, d, f"{p}.attention.self.key", s), [0, 2, 3, 1])
    v = head_split(linear(g, x, d, d, f"{p}.attention.self.value", s), [0, 2, 1, 3])
    scores = g.op("Div", [g.op("MatMul", [q, kt], s),
                          g.const(np.float32(np.sqrt(hd)), np.float32)], s)
    probs = g.op("Softmax", [g.op("Add", [scores, mask], s)], s, axis=-1)
    ctx = g.op("Transpose", [g.op("MatMul", [probs, v], s)], s, perm=[0, 2, 1, 3])
    ctx = g.op("Reshape", [ctx, g.const([1, seq, d])], s)
    attn = linear(g, ctx, d, d, f"{p}.attention.output.dense", s)
    x = layer_norm(g, g.op("Add", [attn, x], s), d,
                   f"{p}.attention.output.LayerNorm", s)
    h = linear(g, x, d, inner, f"{p}.intermediate.dense", s)
    erf = g.op("Erf", [g.op("Div", [h, g.const(np.float32(np.sqrt(2)), np.float32)], s)], s)
    gelu = g.op("Mul", [g.op("Mul", [h, g.op("Add", [erf, g.const(np.float32(1), np.float32)], s)], s),
                        g.const(np.float32(0.5), np.float32)], s)
    out = linear(g, gelu, inner, d, f"{p}.output.dense", s)
    return layer_norm(g, g.op("Add", [out, x], s), d, f"{p}.output.LayerNorm", s)


def build(layers=12, d=768, heads=12, inner=3072, vocab=30522, seq=128,
          opset=20, seed=0):
    g = Graph(np.random.default_rng(seed))
    s = "/embeddings"
    words = g.op("Gather", [g.weight("embeddings.word_embeddings.weight", (vocab, d)),
                            "input_ids"], s)
    types = g.op("Gather", [g.weight("embeddings.token_type_embeddings.weight", (2, d)),
                            "token_type_ids"], s)
    positions = g.op("Gather", [g.weight("embeddings.position_embeddings.weight", (512, d)),
                                g.const([list(range(seq))])], s)
    x = g.op("Add", [g.op("Add", [words, types], s), positions], s)
    x = layer_norm(g, x, d, "embeddings.LayerNorm", s)
    # The extended attention mask: (1 - mask) * finfo.min, [1, 1, 1, seq].
    m = g.op("Cast", [g.op("Unsqueeze", ["attention_mask", g.const([1, 2])], "")],
             "", to=TensorProto.FLOAT)
    mask = g.op("Mul", [g.op("Sub", [g.const(np.float32(1), np.float32), m], ""),
                        g.const(np.float32(np.finfo(np.float32).min), np.float32)], "")
    for i in range(layers):
        x = layer(g, x, i, d, heads, inner, seq, mask)
    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    ids = [helper.make_tensor_value_info(n, TensorProto.INT64, [1, seq])
           for n in ("input_ids", "attention_mask", "token_type_ids")]
    return g.model("bert", ids,
                   [helper.make_tensor_value_info("last_hidden_state",
                                                  TensorProto.FLOAT, [1, seq, d])],
                   opset)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--inner", type=int, default=3072)
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    save(build(args.layers, args.width, args.heads, args.inner, args.vocab,
               args.tokens), args.output)


if __name__ == "__main__":
    main()
