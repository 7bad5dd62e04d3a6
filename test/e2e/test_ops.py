"""One end-to-end case per ONNX op handler (and per version where the
semantics changed), built with the onnx package and checked against
onnxruntime on random inputs."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import assert_matches

F = TensorProto.FLOAT


def model(nodes, inputs, outputs, opset=13, inits=()):
    graph = helper.make_graph(
        nodes, "t",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(m)
    return m


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def node(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs, **attrs)


rng = np.random.default_rng(0)


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


CASES = {
    # Broadcasting binaries, both directions and rank-0.
    "add_broadcast": (model([node("Add", ["a", "b"], ["y"])],
                            [("a", F, [2, 3, 4]), ("b", F, [3, 1])],
                            [("y", F, [2, 3, 4])]),
                      {"a": randn(2, 3, 4), "b": randn(3, 1)}),
    "sub_scalar": (model([node("Sub", ["a", "s"], ["y"])],
                         [("a", F, [5, 6])], [("y", F, [5, 6])],
                         inits=[const("s", np.float32(0.5))]),
                   {"a": randn(5, 6)}),
    "mul_left_broadcast": (model([node("Mul", ["b", "a"], ["y"])],
                                 [("a", F, [4, 8]), ("b", F, [8])],
                                 [("y", F, [4, 8])]),
                           {"a": randn(4, 8), "b": randn(8)}),
    "div": (model([node("Div", ["a", "b"], ["y"])],
                  [("a", F, [3, 7]), ("b", F, [3, 7])], [("y", F, [3, 7])]),
            {"a": randn(3, 7), "b": randn(3, 7) + 4}),
    "pow_square": (model([node("Pow", ["a", "e"], ["y"])],
                         [("a", F, [4, 5])], [("y", F, [4, 5])],
                         inits=[const("e", np.float32(2.0))]),
                   {"a": randn(4, 5)}),
    "pow_general": (model([node("Pow", ["a", "e"], ["y"])],
                          [("a", F, [4, 5]), ("e", F, [5])],
                          [("y", F, [4, 5])]),
                    {"a": np.abs(randn(4, 5)) + 0.1, "e": randn(5)}),
    "relu": (model([node("Relu", ["a"], ["y"])], [("a", F, [33])],
                   [("y", F, [33])]), {"a": randn(33)}),
    "sigmoid": (model([node("Sigmoid", ["a"], ["y"])], [("a", F, [4, 17])],
                      [("y", F, [4, 17])]), {"a": randn(4, 17) * 4}),
    "tanh": (model([node("Tanh", ["a"], ["y"])], [("a", F, [64])],
                   [("y", F, [64])]), {"a": randn(64) * 3}),
    "erf": (model([node("Erf", ["a"], ["y"])], [("a", F, [8, 8])],
                  [("y", F, [8, 8])]), {"a": randn(8, 8) * 2}),
    "sqrt": (model([node("Sqrt", ["a"], ["y"])], [("a", F, [10])],
                   [("y", F, [10])]), {"a": np.abs(randn(10))}),
    "gelu_chain": (model([node("Div", ["a", "r2"], ["t0"]),
                          node("Erf", ["t0"], ["t1"]),
                          node("Add", ["t1", "one"], ["t2"]),
                          node("Mul", ["a", "t2"], ["t3"]),
                          node("Mul", ["t3", "half"], ["y"])],
                         [("a", F, [4, 32])], [("y", F, [4, 32])],
                         inits=[const("r2", np.float32(np.sqrt(2))),
                                const("one", np.float32(1)),
                                const("half", np.float32(0.5))]),
                   {"a": randn(4, 32)}),
    "softmax13_axis1": (model([node("Softmax", ["a"], ["y"], axis=1)],
                              [("a", F, [2, 5, 3])], [("y", F, [2, 5, 3])]),
                        {"a": randn(2, 5, 3)}),
    "softmax11_flatten": (model([node("Softmax", ["a"], ["y"])],
                                [("a", F, [2, 3, 4])], [("y", F, [2, 3, 4])],
                                opset=11),
                          {"a": randn(2, 3, 4)}),
    "reshape": (model([node("Reshape", ["a", "s"], ["y"])],
                      [("a", F, [2, 3, 4])], [("y", F, [4, 6])],
                      inits=[const("s", np.array([0, -1], np.int64) + [4, 0])]),
                {"a": randn(2, 3, 4)}),
    "reshape_zero_copies_dim": (model([node("Reshape", ["a", "s"], ["y"])],
                                      [("a", F, [2, 3, 4])],
                                      [("y", F, [2, 12])],
                                      inits=[const("s", np.array([0, -1]))]),
                                {"a": randn(2, 3, 4)}),
    "transpose_default": (model([node("Transpose", ["a"], ["y"])],
                                [("a", F, [2, 3, 4])], [("y", F, [4, 3, 2])]),
                          {"a": randn(2, 3, 4)}),
    "transpose_perm": (model([node("Transpose", ["a"], ["y"], perm=[1, 0, 2])],
                             [("a", F, [2, 3, 4])], [("y", F, [3, 2, 4])]),
                       {"a": randn(2, 3, 4)}),
    "constant_identity": (model([node("Constant", [], ["c"],
                                      value=const("v", randn(3, 4))),
                                 node("Identity", ["c"], ["i"]),
                                 node("Add", ["a", "i"], ["y"])],
                                [("a", F, [3, 4])], [("y", F, [3, 4])]),
                          {"a": randn(3, 4)}),
    "constant_value_float": (model([node("Constant", [], ["c"], value_float=2.5),
                                    node("Mul", ["a", "c"], ["y"])],
                                   [("a", F, [6])], [("y", F, [6])]),
                             {"a": randn(6)}),
    "cast_int_roundtrip": (model([node("Cast", ["a"], ["i"], to=TensorProto.INT32),
                                  node("Cast", ["i"], ["y"], to=TensorProto.FLOAT)],
                                 [("a", F, [16])], [("y", F, [16])]),
                           {"a": randn(16) * 10}),
    "cast_to_double": (model([node("Cast", ["a"], ["y"], to=TensorProto.DOUBLE)],
                             [("a", F, [5])], [("y", TensorProto.DOUBLE, [5])]),
                       {"a": randn(5)}),
    "unsqueeze11": (model([node("Unsqueeze", ["a"], ["y"], axes=[0, -1])],
                          [("a", F, [3, 4])], [("y", F, [1, 3, 4, 1])],
                          opset=11),
                    {"a": randn(3, 4)}),
    "unsqueeze13": (model([node("Unsqueeze", ["a", "ax"], ["y"])],
                          [("a", F, [3, 4])], [("y", F, [3, 1, 4])],
                          inits=[const("ax", np.array([1], np.int64))]),
                    {"a": randn(3, 4)}),
    "reducemean13_keepdims": (model([node("ReduceMean", ["a"], ["y"], axes=[-1])],
                                    [("a", F, [4, 6])], [("y", F, [4, 1])]),
                              {"a": randn(4, 6)}),
    "reducemean13_all": (model([node("ReduceMean", ["a"], ["y"], keepdims=0)],
                               [("a", F, [4, 6])], [("y", F, [])]),
                         {"a": randn(4, 6)}),
    "reducemean18_axes_input": (model([node("ReduceMean", ["a", "ax"], ["y"])],
                                      [("a", F, [2, 3, 4])], [("y", F, [2, 1, 4])],
                                      opset=18,
                                      inits=[const("ax", np.array([1], np.int64))]),
                                {"a": randn(2, 3, 4)}),
    "matmul_2d": (model([node("MatMul", ["a", "b"], ["y"])],
                        [("a", F, [13, 37]), ("b", F, [37, 29])],
                        [("y", F, [13, 29])]),
                  {"a": randn(13, 37), "b": randn(37, 29)}),
    "matmul_batched": (model([node("MatMul", ["a", "b"], ["y"])],
                             [("a", F, [2, 3, 8, 16]), ("b", F, [2, 3, 16, 12])],
                             [("y", F, [2, 3, 8, 12])]),
                       {"a": randn(2, 3, 8, 16), "b": randn(2, 3, 16, 12)}),
    "matmul_broadcast_batch": (model([node("MatMul", ["a", "b"], ["y"])],
                                     [("a", F, [2, 1, 4, 5]), ("b", F, [3, 5, 6])],
                                     [("y", F, [2, 3, 4, 6])]),
                               {"a": randn(2, 1, 4, 5), "b": randn(3, 5, 6)}),
    # Several GEMM tiles in M and N, K not a multiple of the K step.
    "matmul_multi_tile": (model([node("MatMul", ["a", "b"], ["y"])],
                                [("a", F, [70, 45]), ("b", F, [45, 130])],
                                [("y", F, [70, 130])]),
                          {"a": randn(70, 45), "b": randn(45, 130)}),
    "gemm_transposed_multi_tile": (model([node("Gemm", ["a", "b", "c"], ["y"],
                                               transA=1, transB=1)],
                                         [("a", F, [33, 66]), ("b", F, [80, 33]),
                                          ("c", F, [80])], [("y", F, [66, 80])]),
                                   {"a": randn(33, 66), "b": randn(80, 33),
                                    "c": randn(80)}),
    "matmul_vector": (model([node("MatMul", ["v", "b"], ["y"])],
                            [("v", F, [7]), ("b", F, [2, 7, 3])],
                            [("y", F, [2, 3])]),
                      {"v": randn(7), "b": randn(2, 7, 3)}),
    "gemm_all_attrs": (model([node("Gemm", ["a", "b", "c"], ["y"], alpha=0.5,
                                   beta=2.0, transA=1, transB=1)],
                             [("a", F, [6, 4]), ("b", F, [5, 6]),
                              ("c", F, [1, 5])], [("y", F, [4, 5])]),
                       {"a": randn(6, 4), "b": randn(5, 6), "c": randn(1, 5)}),
    "gemm_no_c": (model([node("Gemm", ["a", "b"], ["y"])],
                        [("a", F, [3, 4]), ("b", F, [4, 5])], [("y", F, [3, 5])]),
                  {"a": randn(3, 4), "b": randn(4, 5)}),
    # Einsum beyond the node tests: broadcast ellipsis, three operands, an
    # implicit output (labels used once, alphabetically), a trace.
    "einsum_ellipsis_broadcast": (model([node("Einsum", ["a", "b"], ["y"],
                                              equation="...ij,...jk")],
                                        [("a", F, [2, 1, 3, 4]), ("b", F, [1, 5, 4, 6])],
                                        [("y", F, [2, 5, 3, 6])], opset=12),
                                  {"a": randn(2, 1, 3, 4), "b": randn(1, 5, 4, 6)}),
    "einsum_chain": (model([node("Einsum", ["a", "b", "c"], ["y"],
                                 equation="ij,jk,kl->il")],
                           [("a", F, [2, 3]), ("b", F, [3, 4]), ("c", F, [4, 5])],
                           [("y", F, [2, 5])], opset=12),
                     {"a": randn(2, 3), "b": randn(3, 4), "c": randn(4, 5)}),
    "einsum_implicit_transpose": (model([node("Einsum", ["a"], ["y"], equation="ba")],
                                        [("a", F, [3, 2])], [("y", F, [2, 3])],
                                        opset=12),
                                  {"a": randn(3, 2)}),
    "einsum_trace": (model([node("Einsum", ["a"], ["y"], equation="ii")],
                           [("a", F, [4, 4])], [("y", F, [])], opset=12),
                     {"a": randn(4, 4)}),
    # Unsigned integers end to end: u8/u16/u32/u64 .npy inputs and outputs,
    # unsigned division, comparison, maximum, shifts, remainder and casts.
    "unsigned_arithmetic": (model([node("Div", ["a", "b"], ["q"]),
                                   node("Less", ["a", "b"], ["lt"]),
                                   node("Max", ["a", "b"], ["m"]),
                                   node("BitShift", ["x", "s"], ["r"], direction="RIGHT"),
                                   node("Cast", ["x"], ["w"], to=TensorProto.UINT16),
                                   node("Cast", ["w"], ["f"], to=F),
                                   node("Mod", ["c", "d"], ["mod"])],
                                  [("a", TensorProto.UINT32, [6]),
                                   ("b", TensorProto.UINT32, [6]),
                                   ("x", TensorProto.UINT8, [6]),
                                   ("s", TensorProto.UINT8, [6]),
                                   ("c", TensorProto.UINT64, [3]),
                                   ("d", TensorProto.UINT64, [3])],
                                  [("q", TensorProto.UINT32, [6]),
                                   ("lt", TensorProto.BOOL, [6]),
                                   ("m", TensorProto.UINT32, [6]),
                                   ("r", TensorProto.UINT8, [6]),
                                   ("w", TensorProto.UINT16, [6]),
                                   ("f", F, [6]), ("mod", TensorProto.UINT64, [3])]),
                            {"a": np.array([4000000000, 255, 7, 2**31 + 1, 1, 128], np.uint32),
                             "b": np.array([3, 2, 9, 2**31, 1, 2**32 - 1], np.uint32),
                             "x": np.array([200, 255, 7, 130, 1, 128], np.uint8),
                             "s": np.array([1, 7, 0, 3, 2, 4], np.uint8),
                             "c": np.array([2**63 + 5, 17, 2**64 - 1], np.uint64),
                             "d": np.array([10, 2**63, 3], np.uint64)}),
    # Conv beyond the node tests: 1-D with groups, dilation and bias (as in
    # Whisper's front end), 2-D SAME_UPPER with strides.
    "conv1d_groups_dilation_bias": (model([node("Conv", ["x", "w", "b"], ["y"], group=2,
                                                dilations=[2], pads=[2, 1])],
                                          [("x", F, [2, 4, 9]), ("w", F, [6, 2, 3]),
                                           ("b", F, [6])], [("y", F, [2, 6, 8])]),
                                    {"x": randn(2, 4, 9), "w": randn(6, 2, 3), "b": randn(6)}),
    "conv2d_same_upper_strides": (model([node("Conv", ["x", "w"], ["y"],
                                              auto_pad="SAME_UPPER", strides=[2, 3])],
                                        [("x", F, [1, 3, 7, 8]), ("w", F, [4, 3, 2, 3])],
                                        [("y", F, [1, 4, 4, 3])]),
                                  {"x": randn(1, 3, 7, 8), "w": randn(4, 3, 2, 3)}),
    "convtranspose_groups_pads_bias": (model([node("ConvTranspose", ["x", "w", "b"], ["y"],
                                                   group=2, strides=[2, 3], pads=[1, 0, 0, 2],
                                                   dilations=[1, 2], output_padding=[1, 0])],
                                             [("x", F, [2, 4, 3, 4]), ("w", F, [4, 3, 2, 3]),
                                              ("b", F, [6])], [("y", F, [2, 6, 5, 12])]),
                                       {"x": randn(2, 4, 3, 4), "w": randn(4, 3, 2, 3),
                                        "b": randn(6)}),
    "two_outputs_same_value": (model([node("Relu", ["a"], ["r"]),
                                      node("Identity", ["r"], ["y"]),
                                      node("Identity", ["a"], ["z"])],
                                     [("a", F, [4])],
                                     [("r", F, [4]), ("y", F, [4]), ("z", F, [4])]),
                               {"a": randn(4)}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op(name, tmp_path):
    m, inputs = CASES[name]
    path = tmp_path / "model.onnx"
    onnx.save(m, path)
    assert_matches(path, inputs, tmp_path)
