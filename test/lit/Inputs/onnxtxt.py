"""Turns a test file holding an ONNX model in ONNX's text syntax into a .onnx
file. Lines starting with '#' or '//' (RUN and CHECK lines) are dropped.

usage: onnxtxt.py TEST_FILE OUT.onnx [--no-check]

--no-check skips onnx.checker, for models that are invalid on purpose.
"""
import sys

import onnx
import onnx.parser


def main(argv):
    src, out = argv[1], argv[2]
    with open(src) as f:
        text = "".join(l for l in f if not l.lstrip().startswith(("#", "//")))
    model = onnx.parser.parse_model(text)
    if "--no-check" not in argv[3:]:
        onnx.checker.check_model(model)
    onnx.save(model, out)


if __name__ == "__main__":
    main(sys.argv)
