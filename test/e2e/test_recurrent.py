"""RNN, GRU and LSTM (unrolled over time at import) on the cpu and under
the GPU-kernel simulator, against onnxruntime: every direction, biases,
initial states, peepholes, clip, sequence_lens (padded batches, forward
and reverse), linear_before_reset, input_forget, the activation functions
with their alpha and beta; the batch-first layout (opset 14) against the
ONNX reference evaluator, which onnxruntime does not implement; and
nn.LSTM / nn.GRU as PyTorch's exporter writes them."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from conftest import TOLERANCES, run_kiln, run_reference

DEVICES = [("cpu", "cpu"), ("cuda:sm_80,sm_90a", "sim")]
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
OUTPUTS = {"RNN": ["Y", "Y_h"], "GRU": ["Y", "Y_h"], "LSTM": ["Y", "Y_h", "Y_c"]}


def recurrent_model(path, op, steps, batch, inputs, hidden, *, directions=1,
                    bias=False, seq_lens=None, initial=False, peephole=False,
                    layout=0, opset=14, seed=0, **attrs):
    """One recurrent node with random weights as initializers; returns the
    feeds (X, and sequence_lens when given)."""
    rng = np.random.default_rng(seed)
    g = GATES[op]
    f32 = lambda *s: (rng.standard_normal(s) * 0.5).astype(np.float32)
    x = f32(batch, steps, inputs) if layout else f32(steps, batch, inputs)
    inits = [("W", f32(directions, g * hidden, inputs)),
             ("R", f32(directions, g * hidden, hidden))]
    names = ["X", "W", "R"]
    names.append("B" if bias else "")
    if bias:
        inits.append(("B", f32(directions, 2 * g * hidden)))
    names.append("sequence_lens" if seq_lens is not None else "")
    state = (batch, directions, hidden) if layout else (directions, batch, hidden)
    names.append("initial_h" if initial else "")
    if initial:
        inits.append(("initial_h", f32(*state)))
    if op == "LSTM":
        names.append("initial_c" if initial else "")
        if initial:
            inits.append(("initial_c", f32(*state)))
        names.append("P" if peephole else "")
        if peephole:
            inits.append(("P", f32(directions, 3 * hidden)))
    while names[-1] == "":
        names.pop()
    if layout:
        attrs["layout"] = 1
    node = helper.make_node(op, names, OUTPUTS[op], hidden_size=hidden, **attrs)
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape)]
    feeds = {"X": x}
    if seq_lens is not None:
        lens = np.array(seq_lens, np.int32)
        graph_inputs.append(helper.make_tensor_value_info(
            "sequence_lens", TensorProto.INT32, lens.shape))
        feeds["sequence_lens"] = lens
    graph = helper.make_graph(
        [node], op.lower(), graph_inputs,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
         for n in OUTPUTS[op]],
        [onnx.numpy_helper.from_array(v, n) for n, v in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return feeds


def check(path, feeds, tmp_path, device, want):
    target, dev = device
    got = run_kiln(path, feeds, tmp_path, target=target, device=dev)
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name],
                                   **TOLERANCES[np.dtype(np.float32)],
                                   err_msg=name)


# (id, op, keyword arguments of recurrent_model)
CASES = [
    ("rnn-bidirectional-bias-initial", "RNN",
     dict(directions=2, direction="bidirectional", bias=True, initial=True)),
    ("rnn-reverse-relu-clip", "RNN",
     dict(direction="reverse", activations=["Relu"], clip=0.7, bias=True)),
    ("rnn-seq-lens-bidirectional", "RNN",
     dict(directions=2, direction="bidirectional", seq_lens=[5, 2, 1],
          initial=True)),
    ("rnn-affine-leaky", "RNN",
     dict(directions=2, direction="bidirectional",
          activations=["Affine", "LeakyRelu"], activation_alpha=[0.8, 0.2],
          activation_beta=[0.1])),
    ("gru-bias-initial", "GRU", dict(bias=True, initial=True)),
    ("gru-linear-before-reset", "GRU",
     dict(bias=True, initial=True, linear_before_reset=1)),
    ("gru-bidirectional-seq-lens", "GRU",
     dict(directions=2, direction="bidirectional", bias=True, initial=True,
          seq_lens=[3, 5, 4], linear_before_reset=1)),
    ("gru-reverse-hardsigmoid-softsign", "GRU",
     dict(direction="reverse", activations=["HardSigmoid", "Softsign"],
          activation_alpha=[0.3], activation_beta=[0.4], bias=True)),
    ("gru-clip-elu-scaledtanh", "GRU",
     dict(activations=["ScaledTanh", "Elu"], activation_alpha=[0.9, 0.5],
          activation_beta=[1.1], clip=1.5)),
    ("lstm-peephole-bias-initial", "LSTM",
     dict(bias=True, initial=True, peephole=True)),
    ("lstm-bidirectional-seq-lens", "LSTM",
     dict(directions=2, direction="bidirectional", bias=True, initial=True,
          peephole=True, seq_lens=[5, 1, 3])),
    ("lstm-reverse-clip", "LSTM",
     dict(direction="reverse", clip=0.5, bias=True)),
    ("lstm-input-forget", "LSTM",
     dict(input_forget=1, bias=True, initial=True)),
    ("lstm-softplus-thresholded", "LSTM",
     dict(activations=["Sigmoid", "Softplus", "ThresholdedRelu"],
          activation_alpha=[0.2], bias=True)),
    ("lstm-opset7", "LSTM", dict(opset=7, bias=True, initial=True)),
]


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "sim"])
@pytest.mark.parametrize("case,op,kwargs", CASES, ids=[c[0] for c in CASES])
def test_against_onnxruntime(case, op, kwargs, device, tmp_path):
    path = tmp_path / "model.onnx"
    feeds = recurrent_model(path, op, steps=5, batch=3, inputs=4, hidden=6,
                            **kwargs)
    check(path, feeds, tmp_path, device, run_reference(path, feeds))


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "sim"])
@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_batch_first_layout(op, device, tmp_path):
    """layout = 1: X [batch, steps, input], Y [batch, steps, dirs, hidden];
    onnxruntime refuses it, so the ONNX reference evaluator is the judge."""
    path = tmp_path / "model.onnx"
    feeds = recurrent_model(path, op, steps=4, batch=2, inputs=3, hidden=5,
                            directions=2, direction="bidirectional", bias=True,
                            initial=True, layout=1)
    ref = ReferenceEvaluator(str(path))
    want = dict(zip(OUTPUTS[op], ref.run(None, feeds)))
    check(path, feeds, tmp_path, device, want)


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "sim"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_pytorch_export(kind, device, tmp_path):
    """Two bidirectional batch-first layers as torch.onnx.export (the
    TorchScript exporter) writes them: weights reordered into ONNX's gate
    order, GRU with linear_before_reset, Transpose/Reshape between layers."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layer = getattr(torch.nn, kind)(input_size=8, hidden_size=12, num_layers=2,
                                    batch_first=True, bidirectional=True)
    layer.eval()
    x = torch.randn(2, 7, 8)
    path = tmp_path / "model.onnx"
    with torch.no_grad():
        torch.onnx.export(layer, (x,), str(path), input_names=["x"],
                          output_names=["y"], opset_version=14, dynamo=False)
    model = onnx.load(str(path))
    assert kind in {n.op_type for n in model.graph.node}
    feeds = {"x": x.numpy()}
    want = run_reference(path, feeds)
    with torch.no_grad():
        np.testing.assert_allclose(want["y"], layer(x)[0].numpy(), rtol=1e-4,
                                   atol=1e-5)
    check(path, feeds, tmp_path, device, want)


def test_errors(tmp_path):
    """A sequence too long to unroll is a clear error, and nothing is
    written."""
    from conftest import kiln
    path = tmp_path / "long.onnx"
    recurrent_model(path, "LSTM", steps=300, batch=1, inputs=2, hidden=2)
    result = kiln("compile", str(path), "-o", str(tmp_path / "m.kiln"),
                  check=False)
    assert result.returncode != 0
    assert "up to 256 steps; this one has 300" in result.stderr
    assert not (tmp_path / "m.kiln").exists()
