"""com.microsoft MatMulNBits (onnxruntime's block-quantized weights) against
onnxruntime, on the cpu and under the GPU-kernel simulator: models
quantized by onnxruntime's own MatMulNBitsQuantizer, and single nodes over
every layout the format allows (4 and 8 bits, zero points packed or in the
scales' type or absent, a bias, K not a multiple of the block, batched A).
The packed weights stay packed in the artifact."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import (PRECISION_TOLERANCES, kiln, normwise_error, run_kiln,
                      run_reference)
from test_profile import profile
from test_sass import count, needs_ptxas, sass_by_function

DEVICES = [("cpu", "cpu"), ("cuda:sm_80,sm_90a", "sim")]
# The dequantized weights are exact; what differs from onnxruntime is the
# order of the GEMM's sums.
TOL = dict(rtol=1e-4, atol=1e-4)


def mlp(path, hidden=64, inner=256, rows=8):
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(
        rng.standard_normal((hidden, inner)).astype(np.float32) * 0.1, "w1")
    w2 = numpy_helper.from_array(
        rng.standard_normal((inner, hidden)).astype(np.float32) * 0.1, "w2")
    graph = helper.make_graph([
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"])], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, hidden])],
        [w1, w2])
    onnx.save(helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17)]), str(path))


def weight_bytes(artifact):
    return json.loads(kiln("inspect", "--json", str(artifact)).stdout)[
        "weight_bytes"]


@pytest.mark.parametrize("device", DEVICES, ids=[d for _, d in DEVICES])
@pytest.mark.parametrize("block,symmetric", [(32, True), (64, False)])
def test_quantized_by_onnxruntime(block, symmetric, device, tmp_path):
    from onnxruntime.quantization.matmul_nbits_quantizer import \
        MatMulNBitsQuantizer
    source = tmp_path / "mlp.onnx"
    mlp(source)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), block_size=block,
                                     is_symmetric=symmetric)
    quantizer.process()
    path = tmp_path / "q4.onnx"
    onnx.save(quantizer.model.model, str(path))
    assert sum(n.op_type == "MatMulNBits"
               for n in quantizer.model.model.graph.node) == 2
    x = np.random.default_rng(1).standard_normal((8, 64)).astype(np.float32)
    got = run_kiln(path, {"x": x}, tmp_path, target=device[0],
                   device=device[1])
    want = run_reference(path, {"x": x})
    np.testing.assert_allclose(got["y"], want["y"], **TOL)
    if device[1] == "cpu":
        # 4-bit weights stay 4-bit: at most ~30% of the f32 weights' bytes.
        full = tmp_path / "f32.kiln"
        kiln("compile", str(source), "-o", str(full))
        ratio = weight_bytes(tmp_path / "model.kiln") / weight_bytes(full)
        assert ratio <= 0.3, ratio


def pack(q, bits):
    """[rows, fields] of bits-bit values -> uint8 [rows, bytes], the first
    field in the low bits."""
    per = 8 // bits
    rows, fields = q.shape
    padded = np.zeros((rows, -(-fields // per) * per), np.uint8)
    padded[:, :fields] = q
    out = np.zeros((rows, padded.shape[1] // per), np.uint8)
    for i in range(per):
        out |= (padded[:, i::per] << (bits * i)).astype(np.uint8)
    return out


def save_node(folder, names, initializers, a_shape, **attributes):
    """A model of one MatMulNBits node (its `attributes`) reading graph
    input `a` of `a_shape` and `initializers`, its inputs `names`; its
    path."""
    node = helper.make_node("MatMulNBits", names, ["y"],
                            domain="com.microsoft", **attributes)
    graph = helper.make_graph(
        [node], "nbits",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, a_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers)
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]),
        str(path))
    return path


CASES = [  # (id, bits, K, block, zero points, bias, A's shape prefix, N)
    ("4bit-default-zp", 4, 64, 32, None, False, (5,), 48),
    ("4bit-packed-zp-bias", 4, 80, 32, "packed", True, (2, 3), 32),
    ("4bit-float-zp", 4, 64, 16, "float", False, (4,), 32),
    ("8bit-packed-zp", 8, 48, 16, "packed", True, (3,), 64),
    # More than 16 rows: the GPU's decoding stays a kernel of its own.
    ("2bit-packed-zp-rows", 2, 64, 16, "packed", False, (20,), 48),
    # N not a multiple of the CPU's panel: decoded per panel as stored.
    ("4bit-unpanelled", 4, 64, 32, None, True, (1,), 24),
    # A vocabulary-sized N: the last panel padded (columns decoded as 0).
    ("4bit-padded-panels", 4, 64, 32, "packed", True, (3,), 1000),
]


def kernels(artifact):
    return json.loads(kiln("inspect", "--json", str(artifact)).stdout)[
        "kernels"]


@pytest.mark.parametrize("device", DEVICES, ids=[d for _, d in DEVICES])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_node(case, device, tmp_path):
    _, bits, k, block, zp_kind, with_bias, prefix, n = case
    rng = np.random.default_rng(2)
    blocks = -(-k // block)
    q = rng.integers(0, 1 << bits, (n, blocks * block)).astype(np.uint8)
    packed = pack(q, bits).reshape(n, blocks, block * bits // 8)
    scales = (rng.random((n, blocks)) * 0.1 + 0.01).astype(np.float32)
    inputs = [("a", rng.standard_normal(prefix + (k,)).astype(np.float32))]
    initializers = [numpy_helper.from_array(packed, "b"),
                    numpy_helper.from_array(scales.reshape(-1), "scales")]
    names = ["a", "b", "scales"]
    if zp_kind == "packed":
        zp = rng.integers(0, 1 << bits, (n, blocks)).astype(np.uint8)
        initializers.append(numpy_helper.from_array(pack(zp, bits).reshape(-1),
                                                    "zp"))
        names.append("zp")
    elif zp_kind == "float":
        initializers.append(numpy_helper.from_array(
            rng.integers(0, 16, n * blocks).astype(np.float32), "zp"))
        names.append("zp")
    if with_bias:
        initializers.append(numpy_helper.from_array(
            rng.standard_normal(n).astype(np.float32), "bias"))
        names += [""] * (5 - len(names)) + ["bias"]
    path = save_node(tmp_path, names, initializers, prefix + (k,), K=k, N=n,
                     bits=bits, block_size=block)
    feeds = dict(inputs)
    got = run_kiln(path, feeds, tmp_path, target=device[0], device=device[1])
    want = run_reference(path, feeds)
    np.testing.assert_allclose(got["y"], want["y"], **TOL)
    # The GEMM decodes the weights where it reads them: no kernel of their
    # own (the CPU always; the GPU's few-row GEMM), and on the CPU stored
    # in its column panels when N is a multiple of them.
    found = kernels(tmp_path / "model.kiln")
    rows = int(np.prod(prefix))
    fused = device[1] == "cpu" or rows <= 16
    gemms = [kn for kn in found if kn["strategy"] in ("cpu-gemm",
                                                      "gemm-small-m")]
    assert len(gemms) == (1 if fused else 0), found
    # On the CPU, N in whole panels, or padded to them by at most 1/32.
    panelled = n % 16 == 0 or 32 * (-n % 16) <= n
    if fused:  # and the bias: a kernel on the CPU, the GPU's epilogue; and
        # on the CPU the padded columns' slice
        cpu = device[1] == "cpu"
        assert len(found) == 1 + (with_bias and cpu) + \
            (cpu and n % 16 != 0 and panelled), found
    if device[1] == "cpu":
        names = [w["name"] for w in json.loads(kiln(
            "inspect", "--json", str(tmp_path / "model.kiln")).stdout)[
                "weights"]]
        assert any(name.endswith(".panels16") for name in names) == \
            panelled, names


@pytest.mark.parametrize("device", DEVICES, ids=[d for _, d in DEVICES])
@pytest.mark.parametrize("zero_points", [False, True], ids=["no-zp", "zp"])
def test_act_order_groups(zero_points, device, tmp_path):
    """g_idx (act-order GPTQ): row k takes the scales of group g_idx[k],
    not of its block; decoded in the GEMM all the same. With zero points
    too it is refused: onnxruntime's CPU kernel ignores them then."""
    n, k, block = 48, 64, 32
    blocks = k // block
    rng = np.random.default_rng(4)
    q = rng.integers(0, 16, (n, k)).astype(np.uint8)
    initializers = [
        numpy_helper.from_array(pack(q, 4).reshape(n, blocks, block // 2),
                                "b"),
        numpy_helper.from_array(
            (rng.random(n * blocks) * 0.1 + 0.01).astype(np.float32),
            "scales"),
        numpy_helper.from_array(
            rng.permutation(np.arange(k) % blocks).astype(np.int32), "g_idx")]
    names = ["a", "b", "scales", "", "g_idx"]
    if zero_points:
        zp = rng.integers(0, 16, (n, blocks)).astype(np.uint8)
        initializers.append(numpy_helper.from_array(
            pack(zp, 4).reshape(-1), "zp"))
        names[3] = "zp"
    path = save_node(tmp_path, names, initializers, (3, k), K=k, N=n, bits=4,
                     block_size=block)
    feeds = {"a": rng.standard_normal((3, k)).astype(np.float32)}
    if zero_points:
        # onnxruntime's CPU kernel ignores them with g_idx: refused.
        result = kiln("compile", str(path), "-o", str(tmp_path / "m.kiln"),
                      "--target", device[0], check=False)
        assert result.returncode == 1 and not (tmp_path / "m.kiln").exists()
        assert "g_idx together with zero_points is not supported" in \
            result.stderr, result.stderr
        return
    got = run_kiln(path, feeds, tmp_path, target=device[0], device=device[1])
    want = run_reference(path, feeds)
    np.testing.assert_allclose(got["y"], want["y"], **TOL)
    found = [kn["strategy"] for kn in kernels(tmp_path / "model.kiln")]
    assert found == ["cpu-gemm" if device[1] == "cpu" else "gemm-small-m"], \
        found


def test_malformed_nodes_say_so(tmp_path):
    node = helper.make_node("MatMulNBits", ["a", "b", "scales"], ["y"],
                            domain="com.microsoft", K=64, N=8, bits=3,
                            block_size=32)
    graph = helper.make_graph(
        [node], "bad",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, (2, 64))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.zeros((8, 2, 12), np.uint8), "b"),
         numpy_helper.from_array(np.ones(16, np.float32), "scales")])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]),
        str(path))
    result = kiln("compile", str(path), "-o", str(tmp_path / "m.kiln"),
                  check=False)
    assert result.returncode == 1
    assert "bits 3 and block_size 32 must be positive, 2, 4 or 8 bits" in \
        result.stderr, result.stderr


def test_decode_gemm_reads_the_packed_bytes(tmp_path):
    """A one-row product on 4-bit weights under the simulator's profile:
    one gemm-small-m kernel per layer that decodes the weights in
    registers, moving about a third of the DRAM bytes of the same MLP with
    bf16 weights (4-bit integers plus f32 scales and zero points: ~0.64
    bytes per weight against 2)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import \
        MatMulNBitsQuantizer
    source = tmp_path / "mlp.onnx"
    mlp(source, hidden=256, inner=1024, rows=1)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), block_size=32,
                                     is_symmetric=False)
    quantizer.process()
    quantized = tmp_path / "q4.onnx"
    onnx.save(quantizer.model.model, str(quantized))

    def gemm_bytes(model, name):
        artifact = tmp_path / (name + ".kiln")
        kiln("compile", str(model), "-o", str(artifact), "--target",
             "cuda:sm_80,sm_90a", "--precision", "bf16", "--embed-kernel-ir")
        _, rows = profile(str(artifact), "--gpu", "h100")
        gemms = [row for row in rows.values()
                 if row["strategy"] == "gemm-small-m"]
        assert len(gemms) == 2 and len(rows) == len(kernels(artifact)), rows
        return sum(float(row["unique MB"]) for row in gemms)

    ratio = gemm_bytes(quantized, "q4") / gemm_bytes(source, "bf16")
    assert 0.25 <= ratio <= 0.4, ratio


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("rows,strategy", [(1, "gemm-small-m"),
                                           (40, "gemm-mma-sync")])
def test_decoded_in_the_gpu_gemm(rows, strategy, precision, tmp_path):
    """At --precision bf16/fp16 on the GPU the GEMM decodes the 4-bit
    weights itself: the few-row GEMM in registers, the tensor-core GEMM
    into its shared-memory ring (rows past a tile's edge included: 40 is
    not a multiple of the tile). One kernel per layer, the ReLU in the
    first one's epilogue, and the result within the precision's tolerance
    of onnxruntime's f32."""
    from onnxruntime.quantization.matmul_nbits_quantizer import \
        MatMulNBitsQuantizer
    source = tmp_path / "mlp.onnx"
    mlp(source, hidden=64, inner=256, rows=rows)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), block_size=32,
                                     is_symmetric=False)
    quantizer.process()
    path = tmp_path / "q4.onnx"
    onnx.save(quantizer.model.model, str(path))
    x = np.random.default_rng(3).standard_normal((rows, 64)).astype(np.float32)
    got = run_kiln(path, {"x": x}, tmp_path, target="cuda:sm_80,sm_90a",
                   device="sim", precision=precision)
    want = run_reference(path, {"x": x})
    assert normwise_error(got["y"], want["y"]) <= \
        PRECISION_TOLERANCES[precision]
    # The input's conversion to the precision, then one GEMM per layer.
    found = [kn["strategy"] for kn in kernels(tmp_path / "model.kiln")]
    assert found == ["elementwise"] + [strategy] * 2, found


@needs_ptxas
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_sass_of_the_decoding_gemms(arch, tmp_path):
    """The SASS of the GEMMs that decode 4-bit weights: byte loads of the
    packed weights (each shared by a chunk's elements: one per byte and
    column, not one per element), no spills; the few-row GEMM's butterfly,
    the tensor-core GEMM's HMMA fed by 128-bit stores of the decoded
    chunks to its ring."""
    from onnxruntime.quantization.matmul_nbits_quantizer import \
        MatMulNBitsQuantizer
    for rows in (1, 40):
        source = tmp_path / f"mlp{rows}.onnx"
        mlp(source, hidden=64, inner=256, rows=rows)
        quantizer = MatMulNBitsQuantizer(onnx.load(str(source)),
                                         block_size=32, is_symmetric=False)
        quantizer.process()
        path = tmp_path / f"q4-{rows}.onnx"
        onnx.save(quantizer.model.model, str(path))
        artifact = str(tmp_path / f"q4-{rows}.kiln")
        kiln("compile", str(path), "-o", artifact, "--target",
             "cuda:sm_80,sm_90a", "--precision", "bf16")
        info, sass = sass_by_function(artifact, arch)
        gemms = [kn["name"] for kn in info["kernels"]
                 if kn["strategy"] in ("gemm-small-m", "gemm-mma-sync")]
        assert len(gemms) == 2, info["kernels"]
        for name in gemms:
            code = next(text for fn, text in sass.items() if name in fn)
            assert count(code, "STL") == 0, f"{name} spills"
            assert count(code, "LDG.E.U8") > 0, name
            if rows == 1:
                assert count(code, "SHFL.BFLY") > 0, name
                # Per step: 4 bytes of each of 2 columns and their zero
                # points, not 8 loads per column's chunk.
                assert count(code, "LDG.E.U8") <= 10, name
            else:
                assert count(code, "HMMA.16816.F32.BF16") > 0, name
                assert count(code, "STS.128") > 0, name
