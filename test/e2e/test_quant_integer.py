"""The QOperator ops of statically quantized models (MatMulInteger,
ConvInteger, QLinearMatMul, QLinearConv) on the cpu and under the
GPU-kernel simulator: uint8 and int8, zero points and scales per tensor,
per row, per column and per output channel, batched operands, padding,
strides, dilations and groups, against the ONNX reference evaluator,
exactly (Kiln contracts in i32 and requantizes in f64, rounding half to
even, as the reference does). onnxruntime is not the judge of single
nodes: on x86 its uint8 x int8 kernels sum pairs of products in saturating
16-bit lanes, and differ from the exact result by up to tens of steps
(MatMulInteger with int8 B, QLinearConv with uint8 x and int8 w). A small
conv net quantized by onnxruntime.quantization.quantize_static in the
QOperator format is compared with onnxruntime within two steps of the
output's scale."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx.reference import ReferenceEvaluator

from conftest import run_kiln, run_reference

DEVICES = [("cpu", "cpu"), ("cuda:sm_80,sm_90a", "sim")]
rng = np.random.default_rng(0)
TYPES = {np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8,
         np.int32: TensorProto.INT32, np.float32: TensorProto.FLOAT}


def q(dtype, *shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=dtype)


def model(path, op, feeds, consts, outputs, order, **attrs):
    """One node whose inputs are `order` (names): `feeds` are graph inputs,
    `consts` initializers."""
    node = helper.make_node(op, order, [o for o, _ in outputs], **attrs)
    graph = helper.make_graph(
        [node], op,
        [helper.make_tensor_value_info(k, TYPES[v.dtype.type], v.shape)
         for k, v in feeds.items()],
        [helper.make_tensor_value_info(o, t, None) for o, t in outputs],
        [numpy_helper.from_array(v, k) for k, v in consts.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))


def check(path, feeds, tmp_path, device):
    target, dev = device
    got = run_kiln(path, feeds, tmp_path, target=target, device=dev)
    names = [o.name for o in onnx.load(str(path)).graph.output]
    want = dict(zip(names, ReferenceEvaluator(str(path)).run(None, feeds)))
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        diff = np.abs(got[name].astype(np.int64) - want[name].astype(np.int64))
        assert diff.max() == 0, (name, int(diff.max()), int((diff > 0).sum()))


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "sim"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8], ids=["u8", "i8"])
def test_matmul_integer(dtype, device, tmp_path):
    a, b = q(np.uint8, 2, 5, 7), q(dtype, 7, 6)
    path = tmp_path / "m.onnx"
    model(path, "MatMulInteger", {"a": a},
          {"b": b, "azp": np.array(3, np.uint8), "bzp": q(dtype, 6)},
          [("y", TensorProto.INT32)], order=["a", "b", "azp", "bzp"])
    check(path, {"a": a}, tmp_path, device)


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "sim"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8], ids=["u8", "i8"])
def test_qlinear_matmul(dtype, device, tmp_path):
    a, b = q(dtype, 3, 4, 16), q(dtype, 16, 5)
    zp = lambda *s: q(dtype, *s) // 8
    path = tmp_path / "m.onnx"
    consts = {"as": np.array(0.02, np.float32), "azp": zp(),
              "b": b, "bs": np.array(0.01, np.float32), "bzp": zp(),
              "ys": np.array(0.5, np.float32), "yzp": zp()}
    model(path, "QLinearMatMul", {"a": a}, consts, [("y", TYPES[dtype])],
          order=["a", "as", "azp", "b", "bs", "bzp", "ys", "yzp"])
    check(path, {"a": a}, tmp_path, device)


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "sim"])
def test_conv_integer(device, tmp_path):
    x, w = q(np.uint8, 1, 4, 7, 6), q(np.uint8, 6, 2, 3, 3)
    path = tmp_path / "m.onnx"
    model(path, "ConvInteger", {"x": x},
          {"w": w, "xzp": np.array(100, np.uint8), "wzp": np.array(128, np.uint8)},
          [("y", TensorProto.INT32)], order=["x", "w", "xzp", "wzp"],
          pads=[1, 0, 1, 2], strides=[2, 1], group=2)
    check(path, {"x": x}, tmp_path, device)


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "sim"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8], ids=["u8", "i8"])
def test_qlinear_conv(dtype, device, tmp_path):
    """Per-output-channel weight scales and an i32 bias."""
    x = q(dtype, 2, 3, 8, 8)
    w = q(np.int8, 5, 3, 3, 3)
    path = tmp_path / "m.onnx"
    consts = {"xs": np.array(0.05, np.float32), "xzp": np.array(7, dtype),
              "w": w, "ws": rng.uniform(0.001, 0.01, 5).astype(np.float32),
              "wzp": np.zeros(5, np.int8), "ys": np.array(0.3, np.float32),
              "yzp": np.array(-3 if dtype == np.int8 else 120, dtype),
              "bias": rng.integers(-500, 500, 5).astype(np.int32)}
    model(path, "QLinearConv", {"x": x}, consts, [("y", TYPES[dtype])],
          order=["x", "xs", "xzp", "w", "ws", "wzp", "ys", "yzp", "bias"],
          pads=[1, 1, 1, 1], dilations=[1, 2])
    check(path, {"x": x}, tmp_path, device)


def quantize_and_run(quant, graph, tmp_path, device, **options):
    """Saves `graph` (input x [2, 3, 8, 8]), quantizes it with
    quantize_static in the QOperator format (uint8 activations, calibrated
    on four random batches, `options` added), and runs the quantized model
    on one more batch with Kiln and with onnxruntime; returns its path and
    both outputs."""
    fp32 = tmp_path / "fp32.onnx"
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(fp32))

    class Reader(quant.CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)}
                                 for _ in range(4)])

        def get_next(self):
            return next(self.batches, None)

    quantized = tmp_path / "int8.onnx"
    quant.quantize_static(str(fp32), str(quantized), Reader(),
                          quant_format=quant.QuantFormat.QOperator,
                          activation_type=quant.QuantType.QUInt8, **options)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    target, dev = device
    got = run_kiln(quantized, {"x": x}, tmp_path, target=target, device=dev)
    return quantized, got, run_reference(quantized, {"x": x})


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "sim"])
def test_quantize_static_qoperator(device, tmp_path):
    """Conv -> Relu -> MatMul quantized by onnxruntime's quantize_static
    (QOperator: QLinearConv and QLinearMatMul between QuantizeLinear and
    DequantizeLinear), compared with onnxruntime on the quantized model."""
    quant = pytest.importorskip("onnxruntime.quantization")
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3
    w2 = rng.standard_normal((4 * 6 * 6, 10)).astype(np.float32) * 0.1
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[0, 0, 0, 0]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["f"]),
             helper.make_node("MatMul", ["f", "w2"], ["y"])]
    graph = helper.make_graph(
        nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10])],
        [numpy_helper.from_array(w1, "w1"),
         numpy_helper.from_array(np.full(4, 0.1, np.float32), "b1"),
         numpy_helper.from_array(np.array([2, -1], np.int64), "shape"),
         numpy_helper.from_array(w2, "w2")])
    quantized, got, want = quantize_and_run(
        quant, graph, tmp_path, device, op_types_to_quantize=["Conv", "MatMul"],
        weight_type=quant.QuantType.QInt8)
    ops = {n.op_type for n in onnx.load(str(quantized)).graph.node}
    assert {"QLinearConv", "QLinearMatMul"} <= ops, ops
    # One 8-bit step of the last requantization, dequantized by its scale.
    scale = max(abs(float(t.float_data[0])) if t.float_data else
                float(numpy_helper.to_array(t)) for t in
                onnx.load(str(quantized)).graph.initializer
                if t.name.endswith("_scale") and not t.dims)
    np.testing.assert_allclose(got["y"], want["y"], atol=2 * scale, rtol=0)


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "sim"])
def test_quantize_static_contrib_ops(device, tmp_path):
    """A residual conv block quantized by quantize_static with its default
    op types: QLinearAdd, QLinearMul, QLinearConcat, QLinearSigmoid,
    QLinearLeakyRelu, QLinearAveragePool and QLinearGlobalAveragePool
    (com.microsoft) between the QLinearConvs, compared with onnxruntime
    within a few steps of the output's scale (onnxruntime rounds its float32
    requantization its own way)."""
    quant = pytest.importorskip("onnxruntime.quantization")
    w = lambda *s: numpy_helper.from_array(
        (rng.standard_normal(s) * 0.3).astype(np.float32))
    inits = []
    for name, shape in [("w1", (4, 3, 3, 3)), ("w2", (4, 4, 3, 3)), ("w3", (4, 8, 1, 1))]:
        t = w(*shape)
        t.name = name
        inits.append(t)
    inits.append(numpy_helper.from_array(np.full((1, 4, 1, 1), 0.5, np.float32), "half"))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("LeakyRelu", ["c1"], ["r1"], alpha=0.1),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "r1"], ["s"]),
             helper.make_node("Mul", ["s", "half"], ["m"]),
             helper.make_node("Sigmoid", ["m"], ["g"]),
             helper.make_node("Concat", ["g", "r1"], ["cat"], axis=1),
             helper.make_node("Conv", ["cat", "w3"], ["c3"]),
             helper.make_node("AveragePool", ["c3"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p"], ["y"])]
    graph = helper.make_graph(
        nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 1, 1])], inits)
    quantized, got, want = quantize_and_run(
        quant, graph, tmp_path, device, weight_type=quant.QuantType.QUInt8)
    ops = {n.op_type for n in onnx.load(str(quantized)).graph.node}
    assert {"QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearSigmoid",
            "QLinearLeakyRelu", "QLinearAveragePool",
            "QLinearGlobalAveragePool"} <= ops, ops
    model = onnx.load(str(quantized))
    scales = {t.name: float(numpy_helper.to_array(t)) for t in model.graph.initializer
              if t.name.endswith("_scale") and not t.dims}
    step = max(scales.values())
    np.testing.assert_allclose(got["y"], want["y"], atol=4 * step, rtol=0)
