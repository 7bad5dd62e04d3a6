"""ONNX's narrow types (float8, float4, int4, int2) through Cast, on the
cpu and under the GPU simulator, against ml_dtypes (the reference ONNX's
own Cast uses) and onnx.numpy_helper.to_float8e8m0: every float16 value and
a spread of float32 bit patterns into each format, with and without
saturation, and every code of each format back to float32. The
conversions are exact, so the comparison is bit for bit: NaN where the
reference has NaN, and the sign of zero."""
import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto as T, helper, numpy_helper

from conftest import kiln

pytestmark = pytest.mark.parametrize(
    "target,device", [("cpu", "cpu"), ("cuda:sm_80,sm_90a", "sim")])

FLOAT8 = {
    T.FLOAT8E4M3FN: ml_dtypes.float8_e4m3fn,
    T.FLOAT8E4M3FNUZ: ml_dtypes.float8_e4m3fnuz,
    T.FLOAT8E5M2: ml_dtypes.float8_e5m2,
    T.FLOAT8E5M2FNUZ: ml_dtypes.float8_e5m2fnuz,
}
INTS = {T.INT4: ml_dtypes.int4, T.UINT4: ml_dtypes.uint4,
        T.INT2: ml_dtypes.int2, T.UINT2: ml_dtypes.uint2}


def compile_and_run(tmp_path, graph, inputs, target, device):
    """Compiles `graph` (opset 25), runs it on `inputs` (name -> array,
    narrow ones as ml_dtypes arrays, fed as TensorProto files); returns the
    outputs by name as kiln run writes them."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)])
    model.ir_version = 11
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    artifact = str(tmp_path / "model.kiln")
    extra = ["--embed-kernel-ir"] if device == "sim" else []
    kiln("compile", str(path), "-o", artifact, "--target", target, *extra)
    args = ["run", artifact, "--device", device, "--output-dir", str(tmp_path / "out")]
    for name, value in inputs.items():
        file = tmp_path / f"{name}.pb"
        file.write_bytes(numpy_helper.from_array(value, name).SerializeToString())
        args += ["--input", f"{name}=@{file}"]
    kiln(*args)
    return {o.name: np.load(tmp_path / "out" / f"{o.name}.npy") for o in graph.output}


def assert_same_floats(got, want, what):
    got = got.astype(np.float32)
    want = np.asarray(want).astype(np.float32)
    nan = np.isnan(want)
    bad = (np.isnan(got) != nan) | (~nan & ((got != want) |
                                           (np.signbit(got) != np.signbit(want))))
    assert not bad.any(), (f"{what}: {int(bad.sum())} of {bad.size} differ, "
                           f"e.g. got {got[bad][:4]} want {want[bad][:4]}")


def float32_spread(count, seed=0):
    """Float32 values around every format's range: random exponents of
    2^-30 .. 2^20 and random mantissas (ties and sticky bits included),
    both signs, and the specials."""
    rng = np.random.default_rng(seed)
    exponent = rng.integers(127 - 30, 127 + 20, count, dtype=np.uint32)
    mantissa = rng.integers(0, 1 << 23, count, dtype=np.uint32)
    # A quarter with few mantissa bits set: exact ties of each format.
    mantissa[: count // 4] &= np.uint32(0x7F0000)
    sign = rng.integers(0, 2, count, dtype=np.uint32) << 31
    bits = sign | exponent << 23 | mantissa
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 448, 464,
                         465, 240, 57344, 61440, 6.0, 7.0, 1e30],
                        np.float32)
    return np.concatenate([bits.view(np.float32), specials, -specials])


@pytest.mark.parametrize("source", [T.FLOAT16, T.FLOAT], ids=["f16", "f32"])
def test_cast_into_narrow_floats(tmp_path, source, target, device):
    if source == T.FLOAT16:
        x = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    else:
        x = float32_spread(1 << 15)
    outputs, nodes = [], []
    for to in [*FLOAT8, T.FLOAT4E2M1]:
        for saturate in (1, 0):
            name = f"{T.DataType.Name(to)}_{saturate}"
            nodes.append(helper.make_node("Cast", ["x"], [name], to=to,
                                          saturate=saturate))
            outputs.append(helper.make_tensor_value_info(name, to, [x.size]))
    graph = helper.make_graph(
        nodes, "casts", [helper.make_tensor_value_info("x", source, [x.size])],
        outputs)
    got = compile_and_run(tmp_path, graph, {"x": x}, target, device)
    wide = x.astype(np.float32)
    for to, dtype in [*FLOAT8.items(), (T.FLOAT4E2M1, ml_dtypes.float4_e2m1fn)]:
        for saturate in (1, 0):
            if saturate and to != T.FLOAT4E2M1:
                want = numpy_helper.saturate_cast(wide, dtype)
            else:
                with np.errstate(invalid="ignore", over="ignore"):
                    want = wide.astype(dtype)
            assert_same_floats(got[f"{T.DataType.Name(to)}_{saturate}"], want,
                               f"{T.DataType.Name(source)} -> "
                               f"{T.DataType.Name(to)} saturate={saturate}")


def test_every_code_back_to_float(tmp_path, target, device):
    inputs, nodes, outputs = {}, [], []
    codes = {to: np.arange(256, dtype=np.uint8).view(dtype)
             for to, dtype in FLOAT8.items()}
    codes[T.FLOAT8E8M0] = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e8m0fnu)
    codes[T.FLOAT4E2M1] = np.array(
        [ml_dtypes.float4_e2m1fn(v) for v in
         [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6]])
    for to, dtype in INTS.items():
        info = ml_dtypes.iinfo(dtype)
        codes[to] = np.arange(int(info.min), int(info.max) + 1).astype(dtype)
    for to, value in codes.items():
        name = T.DataType.Name(to)
        inputs[name] = value
        nodes.append(helper.make_node("Cast", [name], [name + "_f"], to=T.FLOAT))
        outputs.append(helper.make_tensor_value_info(name + "_f", T.FLOAT, [value.size]))
        if to in INTS:  # and to the integer of its signedness
            wide = T.INT8 if to in (T.INT4, T.INT2) else T.UINT8
            nodes.append(helper.make_node("Cast", [name], [name + "_i"], to=wide))
            outputs.append(helper.make_tensor_value_info(name + "_i", wide, [value.size]))
    graph = helper.make_graph(
        nodes, "codes",
        [helper.make_tensor_value_info(n, to, [v.size])
         for (to, v), n in zip(codes.items(), inputs)], outputs)
    got = compile_and_run(tmp_path, graph, inputs, target, device)
    for to, value in codes.items():
        name = T.DataType.Name(to)
        assert_same_floats(got[name + "_f"], value.astype(np.float32), name)
        if to in INTS:
            np.testing.assert_array_equal(
                got[name + "_i"], value.astype(np.int8 if to in (T.INT4, T.INT2) else np.uint8))


def test_float8e8m0_round_modes(tmp_path, target, device):
    x = np.abs(float32_spread(1 << 12, seed=1))
    x = np.concatenate([x, np.ldexp(np.float32(1.5), np.arange(-126, 128)).astype(np.float32),
                        np.float32([3.4e38, 1.7e38, 1e-40, 0])])
    nodes, outputs = [], []
    for mode in ("up", "down", "nearest"):
        for saturate in (1, 0):
            name = f"{mode}_{saturate}"
            nodes.append(helper.make_node("Cast", ["x"], [name], to=T.FLOAT8E8M0,
                                          round_mode=mode, saturate=saturate))
            outputs.append(helper.make_tensor_value_info(name, T.FLOAT8E8M0, [x.size]))
    graph = helper.make_graph(
        nodes, "e8m0", [helper.make_tensor_value_info("x", T.FLOAT, [x.size])], outputs)
    got = compile_and_run(tmp_path, graph, {"x": x}, target, device)
    for mode in ("up", "down", "nearest"):
        for saturate in (1, 0):
            want = numpy_helper.to_float8e8m0(x, bool(saturate), mode)
            assert_same_floats(got[f"{mode}_{saturate}"], want, f"e8m0 {mode} {saturate}")


def test_cast_into_narrow_integers(tmp_path, target, device):
    # Integral values in and out of range, halves, NaN and infinities.
    x = np.concatenate([np.arange(-20, 21, 0.25), [np.nan, np.inf, -np.inf]]).astype(np.float32)
    ints = np.arange(-300, 300, dtype=np.int32)
    nodes, outputs = [], []
    for to in INTS:
        name = T.DataType.Name(to)
        nodes.append(helper.make_node("Cast", ["x"], [name], to=to))
        nodes.append(helper.make_node("Cast", ["n"], [name + "_n"], to=to))
        outputs += [helper.make_tensor_value_info(name, to, [x.size]),
                    helper.make_tensor_value_info(name + "_n", to, [ints.size])]
    graph = helper.make_graph(
        nodes, "ints", [helper.make_tensor_value_info("x", T.FLOAT, [x.size]),
                        helper.make_tensor_value_info("n", T.INT32, [ints.size])],
        outputs)
    got = compile_and_run(tmp_path, graph, {"x": x, "n": ints}, target, device)
    for to, dtype in INTS.items():
        name = T.DataType.Name(to)
        wide = np.int8 if to in (T.INT4, T.INT2) else np.uint8
        with np.errstate(invalid="ignore"):
            want = x.astype(dtype).astype(wide)
        np.testing.assert_array_equal(got[name], want, err_msg=name)
        # Between integers, Cast wraps to the type's bits.
        bits = 4 if to in (T.INT4, T.UINT4) else 2
        wrapped = ints & ((1 << bits) - 1)
        if to in (T.INT4, T.INT2):
            wrapped = np.where(wrapped >= 1 << (bits - 1), wrapped - (1 << bits), wrapped)
        np.testing.assert_array_equal(got[name + "_n"], wrapped.astype(wide), err_msg=name)
