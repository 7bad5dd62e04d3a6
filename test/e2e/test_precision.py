"""`kiln compile --precision fp16|bf16`: the transformer fixtures (GPT-2,
BERT, LLaMA) and the committed MLP and attention models, compiled with
f16/bf16 contraction operands for the CPU and for cuda:sm_80,sm_90a (run
under the simulator), against their f32 onnxruntime references within the
tolerance per precision stated in conftest.py."""
import glob
import json
import os

import numpy as np
import pytest

from conftest import (PRECISION_TOLERANCES, ROOT, kiln, normwise_error,
                      run_kiln, run_reference)

FIXTURES = os.path.join(ROOT, "test", "fixtures")
MODELS = [os.path.join(FIXTURES, "transformers", name, "model.onnx")
          for name in ("gpt2", "bert", "llama")] + \
         [os.path.join(FIXTURES, name, "model.onnx")
          for name in ("mlp", "attention")]


def inputs_for(path):
    folder = os.path.dirname(path)
    found = sorted(glob.glob(os.path.join(folder, "in_*.npy")))
    if found:
        return {os.path.basename(p)[3:-4]: np.load(p) for p in found}
    return {"x": np.load(os.path.join(folder, "x.npy"))}


def case_id(path):
    return os.path.relpath(os.path.dirname(path), FIXTURES)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("path", MODELS, ids=case_id)
@pytest.mark.parametrize("target,device", [("cpu", "cpu"),
                                           ("cuda:sm_80,sm_90a", "sim")])
def test_narrow_precision_matches_the_f32_reference(path, precision, target,
                                                    device, tmp_path):
    inputs = inputs_for(path)
    want = run_reference(path, inputs)
    got = run_kiln(path, inputs, tmp_path, target, device, precision)
    for name, reference in want.items():
        # Inputs and outputs keep their declared types.
        assert got[name].dtype == reference.dtype, name
        assert got[name].shape == reference.shape, name
        error = normwise_error(got[name], reference)
        assert error <= PRECISION_TOLERANCES[precision], \
            f"{name}: normwise error {error:.3e}"
        # The operands were narrowed: the result is not the f32 one.
        assert error > 1e-6, f"{name}: {error:.3e}, as if computed in f32"


def test_weights_are_converted_once_at_compile_time(tmp_path):
    path = os.path.join(FIXTURES, "transformers", "gpt2", "model.onnx")
    sizes = {}
    for precision in ("fp32", "bf16"):
        artifact = tmp_path / f"{precision}.kiln"
        kiln("compile", path, "-o", str(artifact), "--precision", precision)
        info = json.loads(kiln("inspect", str(artifact), "--json").stdout)
        sizes[precision] = sum(w["bytes"] for w in info["weights"])
        dtypes = {w["dtype"] for w in info["weights"]}
        entry = info["entry_points"][0]
        assert {t["dtype"] for t in entry["outputs"]} == {"f32"}
    # The contraction weights are bf16; embeddings, norms and biases f32.
    assert "bf16" in dtypes and "f32" in dtypes
    assert sizes["bf16"] < 0.75 * sizes["fp32"], sizes


def test_an_unknown_precision_is_refused(tmp_path):
    path = os.path.join(FIXTURES, "mlp", "model.onnx")
    result = kiln("compile", path, "-o", str(tmp_path / "m.kiln"),
                  "--precision", "fp8", check=False)
    assert result.returncode == 1
    assert "--precision fp8 is not one of fp32, fp16, bf16" in result.stderr
    assert not (tmp_path / "m.kiln").exists()


@pytest.mark.parametrize("target,device", [("cpu", "cpu"),
                                           ("cuda:sm_80,sm_90a", "sim")])
def test_narrow_precision_with_symbolic_dims(target, device, tmp_path):
    """One bf16 artifact for batch 1..2 and sequence 1..16, run at 2x11."""
    path = os.path.join(FIXTURES, "transformers", "bert", "model_dynamic.onnx")
    rng = np.random.default_rng(3)
    mask = np.ones((2, 11), dtype=np.int64)
    mask[0, 8:] = 0
    inputs = {"input_ids": rng.integers(0, 256, (2, 11), dtype=np.int64),
              "attention_mask": mask,
              "token_type_ids": rng.integers(0, 2, (2, 11), dtype=np.int64)}
    artifact = str(tmp_path / "bert.kiln")
    kiln("compile", path, "-o", artifact, "--target", target, "--precision",
         "bf16", "--dim", "batch=1..2", "--dim", "sequence=1..16",
         "--embed-kernel-ir")
    args = ["run", artifact, "--device", device, "--output-dir", str(tmp_path / "out")]
    for name, value in inputs.items():
        np.save(tmp_path / f"{name}.npy", value)
        args += ["--input", f"{name}=@{tmp_path / (name + '.npy')}"]
    kiln(*args)
    want = run_reference(path, inputs)["output"]
    got = np.load(tmp_path / "out" / "output.npy")
    assert got.shape == want.shape == (2, 11, want.shape[-1])
    error = normwise_error(got, want)
    assert 1e-6 < error <= PRECISION_TOLERANCES["bf16"], error
