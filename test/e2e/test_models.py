"""The shipped fixtures (a two-layer MLP and a causal self-attention block)
compiled for the CPU and compared with onnxruntime."""
import os

import numpy as np
import pytest

from conftest import ROOT, assert_matches

FIXTURES = os.path.join(ROOT, "test", "fixtures")


@pytest.mark.parametrize("name", ["mlp", "attention"])
def test_fixture_matches_onnxruntime(name, tmp_path):
    model = os.path.join(FIXTURES, name, "model.onnx")
    x = np.load(os.path.join(FIXTURES, name, "x.npy"))
    assert_matches(model, {"x": x}, tmp_path)


@pytest.mark.parametrize("name", ["mlp", "attention"])
def test_fixture_on_random_inputs(name, tmp_path):
    model = os.path.join(FIXTURES, name, "model.onnx")
    shape = np.load(os.path.join(FIXTURES, name, "x.npy")).shape
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32) * 3
    assert_matches(model, {"x": x}, tmp_path)
