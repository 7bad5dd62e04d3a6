"""Writes the ONNX backend node tests (onnx.backend.test.case.node, the
cases behind onnx/backend/test/data/node) to OUT/<test>/: model.onnx and
test_data_set_0/{input,output}_N.pb, as `onnx.backend.test.cmd_tools
generate-data` does. The onnx wheel does not ship the generated files, so
the suite generates them once per build tree; numpy's global seed is fixed
first, so the inputs are the same on every machine for the pinned onnx.

    python generate.py OUT
"""
import os
import sys
import warnings

import numpy as np


def main():
    out = sys.argv[1]
    stamp = os.path.join(out, ".complete")
    import onnx
    if os.path.exists(stamp) and open(stamp).read() == onnx.__version__:
        return
    warnings.simplefilter("ignore")
    np.random.seed(0)
    from onnx import numpy_helper
    import onnx.backend.test.case.node as node
    cases = node.collect_testcases(None)
    os.makedirs(out, exist_ok=True)
    written = 0
    for case in cases:
        folder = os.path.join(out, case.name)
        data = os.path.join(folder, "test_data_set_0")
        os.makedirs(data, exist_ok=True)
        with open(os.path.join(folder, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        inputs, outputs = case.data_sets[0]
        graph = case.model.graph
        ok = True
        for kind, values, infos in (("input", inputs, graph.input),
                                    ("output", outputs, graph.output)):
            for j, value in enumerate(values):
                info = infos[j] if j < len(infos) else None
                if info is not None and not info.type.HasField("tensor_type"):
                    ok = False  # sequences, maps, optionals: marked below
                    break
                if isinstance(value, onnx.TensorProto):
                    proto = value
                else:
                    proto = numpy_helper.from_array(np.asarray(value),
                                                    info.name if info else "")
                with open(os.path.join(data, f"{kind}_{j}.pb"), "wb") as f:
                    f.write(proto.SerializeToString())
        if not ok:
            open(os.path.join(folder, "NON_TENSOR_IO"), "w").close()
        written += 1
    with open(stamp, "w") as f:
        f.write(onnx.__version__)
    print(f"generated {written} node tests in {out}")


if __name__ == "__main__":
    main()
