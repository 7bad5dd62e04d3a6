"""Writes a GPT-2-shaped ONNX model with random weights, node for node what
the TorchScript exporter (torch.onnx.export, dynamo=False) writes for
Hugging Face's GPT2LMHeadModel: Gemm projections between reshapes, the
fused QKV split, scaled QK^T with an additive causal mask, Softmax, the
tanh-GELU spelled out (Pow/Tanh), LayerNormalization, and the lm_head as a
MatMul against a transposed copy of the tied token embedding that the
exporter stores as an initializer of its own (which is why a GPT-2 export
is ~650 MB for ~500 MB of parameters).

Only onnx and numpy are needed (the test virtualenv has both), so the
compile-time benchmark runs without torch. Not committed: run it when you
need the file.

    .venv/bin/python bench/make_gpt2.py OUT.onnx [--layers 12] [--width 768]
        [--heads 12] [--vocab 50257] [--tokens 128] [--opset 20]
"""
import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Graph:
    def __init__(self, rng):
        self.nodes, self.inits, self.rng, self.count = [], [], rng, 0

    def weight(self, name, shape, scale=0.02, value=None):
        if value is None:
            value = (self.rng.standard_normal(shape, dtype=np.float32) * scale)
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def const(self, value, dtype=np.int64):
        self.count += 1
        name = f"/Constant_{self.count}_output_0"
        self.nodes.append(helper.make_node(
            "Constant", [], [name],
            value=numpy_helper.from_array(np.array(value, dtype=dtype))))
        return name

    def model(self, name, inputs, outputs, opset):
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name="kiln-bench")
        model.ir_version = 9
        return model

    def op(self, op_type, inputs, scope, outputs=1, **attrs):
        self.count += 1
        names = [f"{scope}/{op_type}_{self.count}_output_{i}"
                 for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names,
                                           name=f"{scope}/{op_type}_{self.count}",
                                           **attrs))
        return names[0] if outputs == 1 else names


def linear(g, x, rows, width_in, width_out, name, scope, seq):
    """GPT-2's Conv1D as the exporter writes it: flatten, Gemm, unflatten."""
    flat = g.op("Reshape", [x, g.const([-1, width_in])], scope)
    y = g.op("Gemm", [flat, g.weight(f"{name}.weight", (width_in, width_out)),
                      g.weight(f"{name}.bias", (width_out,))], scope,
             alpha=1.0, beta=1.0)
    return g.op("Reshape", [y, g.const([1, seq, width_out])], scope)


def layer(g, x, i, d, heads, seq, mask):
    p, s = f"transformer.h.{i}", f"/transformer/h.{i}"
    ln1 = g.op("LayerNormalization", [x, g.weight(f"{p}.ln_1.weight", (d,), value=np.ones(d)),
                                      g.weight(f"{p}.ln_1.bias", (d,), value=np.zeros(d))],
               s + "/ln_1", axis=-1, epsilon=1e-5)
    qkv = linear(g, ln1, seq, d, 3 * d, f"{p}.attn.c_attn", s + "/attn/c_attn", seq)
    q, k, v = g.op("Split", [qkv, g.const([d, d, d])], s + "/attn", outputs=3, axis=2)
    hd = d // heads
    shape = [1, seq, heads, hd]
    q = g.op("Transpose", [g.op("Reshape", [q, g.const(shape)], s + "/attn")],
             s + "/attn", perm=[0, 2, 1, 3])
    v = g.op("Transpose", [g.op("Reshape", [v, g.const(shape)], s + "/attn")],
             s + "/attn", perm=[0, 2, 1, 3])
    kt = g.op("Transpose", [g.op("Reshape", [k, g.const(shape)], s + "/attn")],
              s + "/attn", perm=[0, 2, 3, 1])
    # The exporter's scale: sqrt(1/sqrt(head_dim)) on each of q and k^T.
    scale = g.const(np.float32(1.0 / np.sqrt(np.sqrt(hd))), np.float32)
    scores = g.op("MatMul", [g.op("Mul", [q, scale], s + "/attn"),
                             g.op("Mul", [kt, scale], s + "/attn")], s + "/attn")
    probs = g.op("Softmax", [g.op("Add", [scores, mask], s + "/attn")],
                 s + "/attn", axis=-1)
    ctx = g.op("Transpose", [g.op("MatMul", [probs, v], s + "/attn")],
               s + "/attn", perm=[0, 2, 1, 3])
    ctx = g.op("Reshape", [ctx, g.const([1, seq, d])], s + "/attn")
    x = g.op("Add", [linear(g, ctx, seq, d, d, f"{p}.attn.c_proj",
                            s + "/attn/c_proj", seq), x], s)
    ln2 = g.op("LayerNormalization", [x, g.weight(f"{p}.ln_2.weight", (d,), value=np.ones(d)),
                                      g.weight(f"{p}.ln_2.bias", (d,), value=np.zeros(d))],
               s + "/ln_2", axis=-1, epsilon=1e-5)
    h = linear(g, ln2, seq, d, 4 * d, f"{p}.mlp.c_fc", s + "/mlp/c_fc", seq)
    act = s + "/mlp/act"
    inner = g.op("Add", [h, g.op("Mul", [g.op("Pow", [h, g.const(np.float32(3), np.float32)], act),
                                         g.const(np.float32(0.044715), np.float32)], act)], act)
    t = g.op("Tanh", [g.op("Mul", [inner, g.const(np.float32(0.7978845608), np.float32)], act)], act)
    gelu = g.op("Mul", [g.op("Mul", [h, g.const(np.float32(0.5), np.float32)], act),
                        g.op("Add", [t, g.const(np.float32(1), np.float32)], act)], act)
    return g.op("Add", [x, linear(g, gelu, seq, 4 * d, d, f"{p}.mlp.c_proj",
                                  s + "/mlp/c_proj", seq)], s)


def build(layers, d, heads, vocab, seq, opset, seed=0):
    g = Graph(np.random.default_rng(seed))
    wte = (g.rng.standard_normal((vocab, d), dtype=np.float32) * 0.02)
    g.weight("transformer.wte.weight", None, value=wte)
    ids = g.op("Reshape", ["input_ids", g.const([-1, seq])], "/transformer")
    x = g.op("Add", [g.op("Gather", ["transformer.wte.weight", ids], "/transformer/wte"),
                     g.op("Gather", [g.weight("transformer.wpe.weight", (1024, d), 0.01),
                                     g.const([list(range(seq))])], "/transformer/wpe")],
             "/transformer")
    causal = np.triu(np.full((seq, seq), np.finfo(np.float32).min, np.float32), 1)
    mask = g.const(causal.reshape(1, 1, seq, seq), np.float32)
    for i in range(layers):
        x = layer(g, x, i, d, heads, seq, mask)
    x = g.op("LayerNormalization", [x, g.weight("transformer.ln_f.weight", (d,), value=np.ones(d)),
                                    g.weight("transformer.ln_f.bias", (d,), value=np.zeros(d))],
             "/transformer/ln_f", axis=-1, epsilon=1e-5)
    x = g.op("Reshape", [x, g.const([1, seq, d])], "/transformer")
    # The tied lm_head: the exporter stores wte^T as an initializer of its own.
    g.weight("onnx::MatMul_lm_head", None, value=np.ascontiguousarray(wte.T))
    g.nodes.append(helper.make_node("MatMul", [x, "onnx::MatMul_lm_head"], ["logits"],
                                    name="/lm_head/MatMul"))
    return g.model("gpt2",
                   [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, seq])],
                   [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, seq, vocab])],
                   opset)


def save(model, output):
    """Writes `model` and says what it holds."""
    onnx.save(model, output)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    print(f"wrote {output}: {len(model.graph.node)} nodes, "
          f"{params / 1e6:.1f} M stored parameters")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--opset", type=int, default=20)
    args = parser.parse_args()
    save(build(args.layers, args.width, args.heads, args.vocab, args.tokens,
               args.opset), args.output)


if __name__ == "__main__":
    main()
