"""Control flow on the cpu and under the GPU-kernel simulator, against
onnxruntime: If on a condition known only at run time (both branches
computed, the outputs selected), with each value of the condition; Loop
with a constant trip count, loop-carried values and scan outputs, and a
counted loop whose condition ends it early; Scan over two scan inputs in
opposite directions with a state (all unrolled at import)."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import TOLERANCES, run_kiln, run_reference

DEVICES = [("cpu", "cpu"), ("cuda:sm_80,sm_90a", "sim")]
F = TensorProto.FLOAT


def save(path, graph, opset=16):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))


def check(path, feeds, tmp_path, device):
    target, dev = device
    got = run_kiln(path, feeds, tmp_path, target=target, device=dev)
    want = run_reference(path, feeds)
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name],
                                   **TOLERANCES[np.dtype(np.float32)], err_msg=name)


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "sim"])
@pytest.mark.parametrize("cond", [True, False])
def test_runtime_if(cond, device, tmp_path):
    """Each branch reads outer values and has a local of the same name as
    the other's; two outputs."""
    then = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["t"]),
         helper.make_node("Tanh", ["t"], ["a"]),
         helper.make_node("ReduceSum", ["x"], ["b"], keepdims=1)],
        "then", [], [helper.make_tensor_value_info("a", F, [2, 3]),
                     helper.make_tensor_value_info("b", F, [1, 1])])
    otherwise = helper.make_graph(
        [helper.make_node("Sub", ["x", "w"], ["t"]),
         helper.make_node("Sigmoid", ["t"], ["a2"]),
         helper.make_node("ReduceMax", ["x"], ["b2"], keepdims=1)],
        "else", [], [helper.make_tensor_value_info("a2", F, [2, 3]),
                     helper.make_tensor_value_info("b2", F, [1, 1])])
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y", "z"], then_branch=then,
                          else_branch=otherwise)],
        "if", [helper.make_tensor_value_info("x", F, [2, 3]),
               helper.make_tensor_value_info("w", F, [2, 3]),
               helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", F, [2, 3]),
         helper.make_tensor_value_info("z", F, [1, 1])])
    path = tmp_path / "if.onnx"
    save(path, graph)
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((2, 3)).astype(np.float32),
             "w": rng.standard_normal((2, 3)).astype(np.float32),
             "c": np.array(cond)}
    check(path, feeds, tmp_path, device)


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "sim"])
def test_loop(device, tmp_path):
    """A trip count of 6 whose body's condition (i < 3) ends the loop after
    four iterations; a carried state updated from the iteration number and
    an outer weight, and a scan output."""
    body = helper.make_graph(
        [helper.make_node("Constant", [], ["three"], value=helper.make_tensor("", TensorProto.INT64, [], [3])),
         helper.make_node("Less", ["i", "three"], ["cout"]),
         helper.make_node("Cast", ["i"], ["fi"], to=F),
         helper.make_node("Mul", ["h", "w"], ["hw"]),
         helper.make_node("Add", ["hw", "fi"], ["h2"]),
         helper.make_node("Tanh", ["h2"], ["hout"]),
         helper.make_node("Identity", ["hout"], ["scan"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cin", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("h", F, [4])],
        [helper.make_tensor_value_info("cout", TensorProto.BOOL, []),
         helper.make_tensor_value_info("hout", F, [4]),
         helper.make_tensor_value_info("scan", F, [4])])
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["n"], value=helper.make_tensor("", TensorProto.INT64, [], [6])),
         helper.make_node("Constant", [], ["go"], value=helper.make_tensor("", TensorProto.BOOL, [], [True])),
         helper.make_node("Loop", ["n", "go", "h0"], ["h", "hs"], body=body)],
        "loop", [helper.make_tensor_value_info("h0", F, [4]),
                 helper.make_tensor_value_info("w", F, [4])],
        [helper.make_tensor_value_info("h", F, [4]),
         helper.make_tensor_value_info("hs", F, [4, 4])])
    path = tmp_path / "loop.onnx"
    save(path, graph)
    rng = np.random.default_rng(1)
    feeds = {"h0": rng.standard_normal(4).astype(np.float32),
             "w": rng.standard_normal(4).astype(np.float32)}
    check(path, feeds, tmp_path, device)


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "sim"])
def test_scan(device, tmp_path):
    """A running state over two scan inputs, one read backwards along axis
    1, the scan output stacked along axis 1 and written in reverse."""
    body = helper.make_graph(
        [helper.make_node("Mul", ["a", "b"], ["ab"]),
         helper.make_node("Add", ["s", "ab"], ["s2"]),
         helper.make_node("Relu", ["s2"], ["y"])],
        "body", [helper.make_tensor_value_info("s", F, [3]),
                 helper.make_tensor_value_info("a", F, [3]),
                 helper.make_tensor_value_info("b", F, [3])],
        [helper.make_tensor_value_info("s2", F, [3]),
         helper.make_tensor_value_info("y", F, [3])])
    graph = helper.make_graph(
        [helper.make_node("Scan", ["s0", "xa", "xb"], ["s", "ys"], body=body,
                          num_scan_inputs=2, scan_input_axes=[0, 1],
                          scan_input_directions=[0, 1],
                          scan_output_axes=[1], scan_output_directions=[1])],
        "scan", [helper.make_tensor_value_info("s0", F, [3]),
                 helper.make_tensor_value_info("xa", F, [5, 3]),
                 helper.make_tensor_value_info("xb", F, [3, 5])],
        [helper.make_tensor_value_info("s", F, [3]),
         helper.make_tensor_value_info("ys", F, [3, 5])])
    path = tmp_path / "scan.onnx"
    save(path, graph)
    rng = np.random.default_rng(2)
    feeds = {"s0": rng.standard_normal(3).astype(np.float32),
             "xa": rng.standard_normal((5, 3)).astype(np.float32),
             "xb": rng.standard_normal((3, 5)).astype(np.float32)}
    check(path, feeds, tmp_path, device)
