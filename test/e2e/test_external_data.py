"""External data: weights in a `.data` file next to the `.onnx`, as exporters
write models above protobuf's 2 GB limit. The data file here is sparse: the
tensors sit past 2 GiB and past 4 GiB (where 32-bit offsets would wrap), so
the offsets a >2 GB model has are exercised without writing gigabytes."""
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import kiln, run_kiln

GIB = 1 << 30


def external(name, array, location, offset):
    tensor = TensorProto()
    tensor.name = name
    tensor.data_type = TensorProto.FLOAT
    tensor.dims.extend(array.shape)
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)),
                       ("length", str(array.nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def write_model(folder, w, b, w_offset, b_offset, location="weights.data"):
    with open(folder / "weights.data", "wb") as f:
        f.seek(w_offset)
        f.write(w.tobytes())
        f.seek(b_offset)
        f.write(b.tobytes())
    nodes = [helper.make_node("MatMul", ["x", "w"], ["t"]),
             helper.make_node("Add", ["t", "b"], ["y"])]
    graph = helper.make_graph(
        nodes, "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 96])],
        [external("w", w, location, w_offset),
         external("b", b, location, b_offset)])
    path = folder / "model.onnx"
    # Saved as is: onnx.save would try to load the external tensors.
    path.write_bytes(helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


def weights():
    rng = np.random.default_rng(3)
    return (rng.standard_normal((64, 96)).astype(np.float32),
            rng.standard_normal(96).astype(np.float32))


def test_offsets_past_2_and_4_gib(tmp_path):
    w, b = weights()
    model = write_model(tmp_path, w, b, w_offset=4 * GIB + 4096,
                        b_offset=2 * GIB + 128)
    # Sparse: the gigabytes of offset take no disk space.
    assert os.stat(tmp_path / "weights.data").st_blocks * 512 < 64 << 20
    x = np.random.default_rng(4).standard_normal((4, 64)).astype(np.float32)
    y = run_kiln(model, {"x": x}, tmp_path)["y"]
    np.testing.assert_allclose(y, x @ w + b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case,message", [
    ("past_end", "lies past the end of"),
    ("outside_folder", "must be a path inside the model's folder"),
    ("missing_file", "cannot open external data file"),
])
def test_bad_external_data_is_a_clear_error(case, message, tmp_path):
    w, b = weights()
    model = write_model(tmp_path, w, b, w_offset=2 * GIB, b_offset=1024)
    proto = onnx.load(str(model), load_external_data=False)
    entries = proto.graph.initializer[0].external_data
    if case == "past_end":
        entries[1].value = str(3 * GIB)
    elif case == "outside_folder":
        entries[0].value = "../weights.data"
    else:
        entries[0].value = "missing.data"
    model.write_bytes(proto.SerializeToString())
    artifact = tmp_path / "model.kiln"
    result = kiln("compile", str(model), "-o", str(artifact), check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert "tensor 'w'" in result.stderr
    assert not artifact.exists()
