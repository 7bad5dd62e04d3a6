"""Helpers for end-to-end tests: compile an ONNX model with `kiln compile`,
run it with `kiln run`, and compare against onnxruntime on the same inputs."""
import os
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KILN = os.environ.get("KILN_BIN", os.path.join(ROOT, "build", "bin", "kiln"))

# Tolerances per dtype, in one place.
TOLERANCES = {
    np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5),
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
}

# `kiln compile --precision P` against the model's f32 reference: the
# largest |got - want| over the output, relative to the largest |want|, at
# most five units of roundoff of P's operand type (bf16 keeps 8 significant
# bits: 5 * 2^-8; f16 keeps 11: 5 * 2^-11). Products are exact and sums
# f32, so the error is the rounding of the operands and of each product,
# amplified a little by the layers after it.
PRECISION_TOLERANCES = {"bf16": 5 * 2.0 ** -8, "fp16": 5 * 2.0 ** -11}
# The same measure for f32 (no --precision) against a float64 reference:
# 100 units of f32 roundoff (2^-24), for sums of hundreds of products in
# another order than the reference's.
F32_NORMWISE_TOLERANCE = 100 * 2.0 ** -24
# A checkpoint's prefill logits at fp32 against transformers' on the same
# model (test_checkpoints.py): the largest |kiln - transformers| (the
# logits there are of order 1 to 4).
CHECKPOINT_LOGITS_ATOL = 1e-4


def normwise_error(got, want):
    """max |got - want| / max |want|."""
    want = want.astype(np.float64)
    return float(np.abs(got.astype(np.float64) - want).max() /
                 max(np.abs(want).max(), np.finfo(np.float64).tiny))


def kiln(*args, check=True, env=None):
    """Runs `kiln *args`; `env` adds to the environment."""
    result = subprocess.run([KILN, *args], capture_output=True, text=True,
                            env=None if env is None else {**os.environ, **env})
    if check and result.returncode != 0:
        raise AssertionError(
            f"kiln {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}")
    return result


def input_args(inputs, tmp_path):
    """Saves `inputs` (name -> array) under `tmp_path`; returns the
    `--input` flags that pass them to `kiln run` or `kiln profile`."""
    args = []
    for name, value in inputs.items():
        path = tmp_path / f"in_{name}.npy"
        np.save(path, value)
        args += ["--input", f"{name}=@{path}"]
    return args


def run_artifact(artifact, inputs, tmp_path, device="cpu"):
    """Runs a compiled artifact on `inputs`; returns its outputs as name ->
    array."""
    out = tmp_path / "out"
    kiln("run", str(artifact), "--device", device, "--output-dir", str(out),
         *input_args(inputs, tmp_path))
    return {p.stem: np.load(p) for p in sorted(out.glob("*.npy"))}


def run_kiln(model_path, inputs, tmp_path, target="cpu", device="cpu",
             precision="fp32"):
    """Compiles and runs `model_path` on `inputs` (name -> array); returns
    the outputs as name -> array."""
    artifact = str(tmp_path / "model.kiln")
    extra = ["--embed-kernel-ir"] if device == "sim" else []
    kiln("compile", str(model_path), "-o", artifact, "--target", target,
         "--precision", precision, *extra)
    kiln("run", artifact, "--device", device, "--output-dir",
         str(tmp_path / "out"), *input_args(inputs, tmp_path))
    model = onnx.load(str(model_path))
    return {o.name: np.load(tmp_path / "out" / f"{o.name}.npy")
            for o in model.graph.output}


def run_reference(model_path, inputs):
    session = ort.InferenceSession(str(model_path),
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))


def assert_matches(model_path, inputs, tmp_path, target="cpu", device="cpu"):
    expected = run_reference(model_path, inputs)
    actual = run_kiln(model_path, inputs, tmp_path, target, device)
    for name, want in expected.items():
        got = actual[name]
        assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
        assert got.dtype == want.dtype, f"{name}: dtype {got.dtype} != {want.dtype}"
        tol = TOLERANCES.get(want.dtype)
        if tol is None:
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            np.testing.assert_allclose(got, want, err_msg=name, **tol)
