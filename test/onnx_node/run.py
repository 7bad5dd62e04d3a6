"""The ONNX backend node-test suite through Kiln: every test compiled with
`kiln compile` and run with `kiln run`, compared with the expected outputs.

    python run.py --kiln build/bin/kiln --data build/onnx-node-data \
        --target cpu|sim --expected test/onnx_node/expected-cpu.txt \
        --report build/onnx-node-cpu.txt [--update] [--jobs N] [-k SUBSTRING]

Target `cpu` compiles for the CPU and runs there; `sim` compiles for
cuda:sm_80,sm_90a with the kernel IR embedded (ptxas checks every kernel for
both architectures) and runs under the GPU-kernel simulator.

Each test gets one status: pass, mismatch (with the max error),
unsupported (Kiln said what it does not support), compile-error,
run-error, crash (killed by a signal or an abort) or timeout. The report
lists every test with its status and message and ends with a summary line.
The expected statuses are checked in; the suite fails on any crash, any
timeout, and any test whose status differs from the expected one, so a new
pass has to be recorded (--update rewrites the file) and shows in review.
"""
import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

# Tolerances per dtype, (rtol, atol): the one place they are stated.
TOLERANCES = {
    np.dtype(np.float64): (1e-7, 1e-9),
    np.dtype(np.float32): (1e-3, 1e-5),
    np.dtype(np.float16): (1e-2, 1e-3),
}
# bfloat16 outputs arrive as float32 holding bf16 values; compared with
# these tolerances (bf16 has an 8-bit mantissa).
BF16_TOLERANCE = (2e-2, 1e-2)
COMPILE_TIMEOUT_S = 120
RUN_TIMEOUT_S = 300
STATUSES = ("pass", "mismatch", "unsupported", "compile-error", "run-error",
            "crash", "timeout")


def first_line(text):
    lines = [l for l in (text or "").strip().splitlines() if l.strip()]
    for line in lines:
        if "error" in line:
            return line.strip()
    return lines[-1].strip() if lines else ""


def crashed(returncode):
    # kiln exits 1 (or 2 for usage) on an error it reports; anything else,
    # including death by a signal, is a crash.
    return returncode not in (0, 1, 2)


def compare(got, want):
    """None if equal within the dtype's tolerance, else the max error."""
    if got.shape != want.shape:
        return f"shape {got.shape} != expected {want.shape}"
    if got.dtype != want.dtype:
        return f"dtype {got.dtype} != expected {want.dtype}"
    if want.size == 0:
        return None
    if want.dtype.kind in "fc":
        rtol, atol = TOLERANCES.get(want.dtype, (1e-3, 1e-5))
        if np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True):
            return None
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        return f"max error {np.nanmax(diff):.3g}"
    if np.array_equal(got, want):
        return None
    return f"{int(np.sum(got != want))} of {want.size} elements differ"


T = onnx.TensorProto
NARROW_AS = {
    T.FLOAT8E4M3FN: np.float32, T.FLOAT8E4M3FNUZ: np.float32,
    T.FLOAT8E5M2: np.float32, T.FLOAT8E5M2FNUZ: np.float32,
    T.FLOAT8E8M0: np.float32, T.FLOAT4E2M1: np.float32,
    T.INT4: np.int8, T.INT2: np.int8, T.UINT4: np.uint8, T.UINT2: np.uint8,
}


def compare_exact(got, want):
    """None if equal, NaNs included (conversions are exact), else how not."""
    if got.shape != want.shape or got.dtype != want.dtype:
        return compare(got, want)
    if np.array_equal(got, want, equal_nan=want.dtype.kind == "f"):
        return None
    return f"{int(np.sum(~((got == want) | (np.isnan(got) & np.isnan(want)))))} " \
        f"of {want.size} elements differ"


NEEDS_CONSTANT = re.compile(r"input #\d+ '([^']+)' must be a constant")
# A constant computed from graph inputs alone: the compiler names them.
FREEZE = re.compile(r"computed from graph inputs? ((?:'[^']+'(?:, | and )?)+) alone")


def run_test(kiln, folder, target, scratch):
    name = os.path.basename(folder)
    model_path = os.path.join(folder, "model.onnx")
    artifact = os.path.join(scratch, name + ".kiln")
    model = onnx.load(model_path, load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    data = os.path.join(folder, "test_data_set_0")
    # Kiln compiles static shapes: a graph input that decides a shape
    # (axes, pads, a target shape) is frozen to the test's value with
    # --constant-input when the compiler asks for it, as onnx-mlir's backend
    # tests do with their constant inputs. The report names such inputs.
    frozen = []
    while True:
        compile_cmd = [kiln, "compile", model_path, "-o", artifact]
        if target == "sim":
            compile_cmd += ["--target", "cuda:sm_80,sm_90a", "--embed-kernel-ir"]
        for input_name in frozen:
            path = os.path.join(data, f"input_{inputs.index(input_name)}.pb")
            compile_cmd += ["--constant-input", f"{input_name}=@{path}"]
        try:
            result = subprocess.run(compile_cmd, capture_output=True, text=True,
                                    timeout=COMPILE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return name, "timeout", f"kiln compile took over {COMPILE_TIMEOUT_S} s"
        wanted = NEEDS_CONSTANT.search(result.stderr or "")
        names = [wanted.group(1)] if wanted else []
        if freeze := FREEZE.search(result.stderr or ""):
            names = re.findall(r"'([^']+)'", freeze.group(1))
        names = [n for n in names if n in inputs and n not in frozen and
                 os.path.exists(os.path.join(data, f"input_{inputs.index(n)}.pb"))]
        if result.returncode == 1 and names:
            frozen.extend(names)
            continue
        break
    note = f"(constant inputs: {', '.join(frozen)})" if frozen else ""
    if crashed(result.returncode):
        return name, "crash", f"kiln compile exited {result.returncode}: " + \
            first_line(result.stderr)
    if result.returncode != 0:
        message = first_line(result.stderr)
        status = "unsupported" if "unsupported" in message or \
            "not supported" in message else "compile-error"
        return name, status, message
    if os.path.exists(os.path.join(folder, "NON_TENSOR_IO")):
        return name, "unsupported", \
            "the test has sequence, map or optional inputs or outputs"

    out_dir = os.path.join(scratch, name + ".out")
    run_cmd = [kiln, "run", artifact, "--output-dir", out_dir,
               "--device", "sim" if target == "sim" else "cpu"]
    for j, input_name in enumerate(inputs):
        path = os.path.join(data, f"input_{j}.pb")
        if os.path.exists(path) and input_name not in frozen:
            run_cmd += ["--input", f"{input_name}=@{path}"]
    try:
        result = subprocess.run(run_cmd, capture_output=True, text=True,
                                timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return name, "timeout", f"kiln run took over {RUN_TIMEOUT_S} s"
    if crashed(result.returncode):
        return name, "crash", f"kiln run exited {result.returncode}: " + \
            first_line(result.stderr)
    if result.returncode != 0:
        return name, "run-error", first_line(result.stderr)
    worst = None
    for j, output in enumerate(model.graph.output):
        want_path = os.path.join(data, f"output_{j}.pb")
        if not os.path.exists(want_path):
            continue
        proto = onnx.TensorProto()
        with open(want_path, "rb") as f:
            proto.ParseFromString(f.read())
        want = numpy_helper.to_array(proto)
        if proto.data_type in NARROW_AS:
            # kiln run writes the narrow types as float32 (the float
            # formats, whose values float32 holds exactly), int8 or uint8.
            want = want.astype(NARROW_AS[proto.data_type])
        if proto.data_type == onnx.TensorProto.BFLOAT16:
            # kiln run writes bf16 outputs as float32 (numpy has no bf16).
            want = want.astype(np.float32)
        got_path = os.path.join(out_dir, output.name + ".npy")
        if not os.path.exists(got_path):
            return name, "run-error", f"no output '{output.name}' written"
        got = np.load(got_path)
        if proto.data_type == onnx.TensorProto.BFLOAT16:
            problem = None if np.allclose(got, want, rtol=BF16_TOLERANCE[0],
                                          atol=BF16_TOLERANCE[1], equal_nan=True) \
                else compare(got, want) or "bf16 values differ"
        elif proto.data_type in NARROW_AS:
            problem = compare_exact(got, want)
        else:
            problem = compare(got, want)
        if problem:
            return name, "mismatch", f"output '{output.name}': {problem} {note}".rstrip()
    return name, "pass", note


def read_expected(path):
    expected = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    test, status = line.split()
                    expected[test] = status
    return expected


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kiln", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--target", choices=("cpu", "sim"), required=True)
    parser.add_argument("--expected", required=True)
    parser.add_argument("--report", required=True)
    parser.add_argument("--update", action="store_true",
                        help="record the statuses as the expected ones")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("-k", default="", help="only tests containing this")
    args = parser.parse_args()

    tests = sorted(t for t in os.listdir(args.data)
                   if os.path.isdir(os.path.join(args.data, t)) and args.k in t)
    results = {}
    with tempfile.TemporaryDirectory() as scratch, \
            concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_test, args.kiln,
                               os.path.join(args.data, t), args.target, scratch)
                   for t in tests]
        for future in concurrent.futures.as_completed(futures):
            name, status, message = future.result()
            results[name] = (status, message)

    counts = {s: 0 for s in STATUSES}
    for status, _ in results.values():
        counts[status] += 1
    summary = f"{args.target}: " + ", ".join(
        f"{counts[s]} {s}" for s in STATUSES) + f" of {len(results)} node tests"
    with open(args.report, "w") as f:
        for name in sorted(results):
            status, message = results[name]
            f.write(f"{name:<60} {status:<14} {message}\n")
        f.write(summary + "\n")

    expected = read_expected(args.expected)
    if args.update:
        merged = dict(expected)
        merged.update({n: s for n, (s, _) in results.items()})
        with open(args.expected, "w") as f:
            f.write(f"# Expected node-test statuses for target {args.target}; "
                    "rewrite with run.py --update.\n")
            for name in sorted(merged):
                f.write(f"{name} {merged[name]}\n")

    problems = []
    for name in sorted(results):
        status, message = results[name]
        if status in ("crash", "timeout"):
            problems.append(f"{name}: {status}: {message}")
        elif not args.update and expected.get(name) != status:
            problems.append(f"{name}: expected {expected.get(name, '(new test)')}"
                            f", got {status} {message}".rstrip())
    print(summary)
    print(f"report: {args.report}")
    if problems:
        print(f"{len(problems)} unexpected results:")
        for p in problems[:200]:
            print("  " + p)
        if not args.update:
            print("if these are improvements, record them with --update")
        sys.exit(1)


if __name__ == "__main__":
    main()
