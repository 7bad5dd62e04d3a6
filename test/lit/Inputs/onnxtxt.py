"""Turns a test file holding an ONNX model in ONNX's text syntax into a .onnx
file. Lines starting with '#' or '//' (RUN and CHECK lines) are dropped.

usage: onnxtxt.py TEST_FILE OUT.onnx [--initializer NAME=SHAPE ...]

--initializer adds a deterministic float initializer (values 0.01*i - c)
of the given shape, e.g. w=16x32, so weight-heavy tests stay short.
"""
import sys

import numpy as np
import onnx
import onnx.parser


def main(argv):
    src, out = argv[1], argv[2]
    with open(src) as f:
        text = "".join(l for l in f if not l.lstrip().startswith(("#", "//")))
    model = onnx.parser.parse_model(text)
    for spec in argv[3:]:
        assert spec.startswith("--initializer="), spec
        name, shape = spec[len("--initializer="):].split("=")
        dims = [int(d) for d in shape.split("x")]
        count = int(np.prod(dims))
        values = (np.arange(count, dtype=np.float32) * 0.01 - count * 0.005)
        model.graph.initializer.append(
            onnx.numpy_helper.from_array(values.reshape(dims), name))
    onnx.checker.check_model(model)
    onnx.save(model, out)


if __name__ == "__main__":
    main(sys.argv)
