"""Runs the GPU test bundle (built by scripts/gpu_bundle.py) and prints a
table: test, result, max error, time; then the bench table. Needs Python 3
and numpy only.

    python3 run.py [--device cuda:0] [--timeout 120]   # on the GPU machine
    python3 run.py --kiln build/bin/kiln --device sim  # here, to test it

With --kiln, `kiln run` (which has the simulator) replaces bin/kiln-runner.
Every case runs in its own process with a time limit: a case that crashes
(its exit code or signal is printed), hangs (killed after --timeout
seconds) or errors is reported and the run goes on to the next. Each line
is printed as soon as it is known, so a run killed half way keeps its
table. Exit status 1 if any case does not pass.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    sys.exit("run.py needs numpy for python3 (python3 -m pip install numpy, "
             "or run it with a Python that has numpy)")

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TIMEOUT_S = 120
# (rtol, atol) per output dtype, the one place they are stated here: the
# e2e tests' (test/e2e/conftest.py) for float32 and float64, test/onnx_node's
# for float16. Other dtypes (integers, bool) must match exactly.
TOLERANCES = {
    np.dtype(np.float64): (1e-10, 1e-12),
    np.dtype(np.float32): (1e-4, 1e-5),
    np.dtype(np.float16): (1e-2, 1e-3),
}
# A case compiled with --precision (case.json "precision") against its f32
# reference: max |got - want| / max |want| at most five units of roundoff of
# the operand type (test/e2e/conftest.py's PRECISION_TOLERANCES).
PRECISION_TOLERANCES = {"bf16": 5 * 2.0 ** -8, "fp16": 5 * 2.0 ** -11}


class CaseResult:
    """status is pass, FAIL (wrong numbers), ERROR (the runner said why),
    CRASH (killed by a signal or an unexpected exit code), TIMEOUT, or skip
    (a case for another GPU generation)."""

    def __init__(self, status, detail="", max_error=None, ms=None):
        self.status, self.detail = status, detail
        self.max_error, self.ms = max_error, ms


_CAPABILITY = []


def compute_capability():
    """The first GPU's compute capability ("9.0"), from nvidia-smi."""
    if not _CAPABILITY:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap",
                                  "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=30).stdout.split()
            _CAPABILITY.append(out[0] if out else "unknown")
        except (OSError, subprocess.SubprocessError):
            _CAPABILITY.append("unknown")
    return _CAPABILITY[0]


def run_process(args, timeout, env=None):
    """(returncode, stdout, stderr), or None on timeout. The runner gets a
    process group of its own so that a timeout kills everything it started
    (a leftover child would hold the pipes open)."""
    process = subprocess.Popen(args, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               start_new_session=True,
                               env=None if env is None else {**os.environ, **env})
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:  # all of it ended meanwhile
            pass
        process.communicate()
        return None
    return process.returncode, stdout, stderr


def exit_text(returncode):
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name} ({returncode})"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def last_line(text):
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def compare(name, got, want, precision="fp32"):
    """(max error, problem or None) of one output."""
    if got.shape != want.shape or got.dtype != want.dtype:
        return None, f"{name}: {got.dtype}{got.shape} != {want.dtype}{want.shape}"
    if not want.size:
        return 0.0, None
    error = float(np.nanmax(np.abs(got.astype(np.float64) - want.astype(np.float64))))
    if precision in PRECISION_TOLERANCES:
        scale = float(np.nanmax(np.abs(want.astype(np.float64)))) or 1.0
        normwise = error / scale
        return error, None if normwise <= PRECISION_TOLERANCES[precision] else (
            f"{name} differs at {precision} (normwise error {normwise:.3g})")
    tolerance = TOLERANCES.get(want.dtype)
    if tolerance is None:
        same = np.array_equal(got, want)
    else:
        same = np.allclose(got, want, rtol=tolerance[0], atol=tolerance[1],
                           equal_nan=True)
    return error, None if same else f"{name} differs (max error {error:.3g})"


def run_case(command, folder, spec, device, out, repeat, timeout, kernels=None):
    """Runs one case; with `kernels` (a list), also times every kernel
    (kiln-runner --profile) and appends (name, launches, ms per run)."""
    args = [*command, os.path.join(folder, "model.kiln"), "--device", device,
            "--output-dir", out]
    for name in spec["inputs"]:
        args += ["--input", f"{name}=@{os.path.join(folder, f'in_{name}.npy')}"]
    if repeat > 1:
        args += ["--repeat", str(repeat)]
    if kernels is not None:
        args += ["--profile", "20"]
    finished = run_process(args, timeout)
    if finished is None:
        return CaseResult("TIMEOUT", f"timeout after {timeout:g} s")
    returncode, stdout, stderr = finished
    message = last_line(stderr) or last_line(stdout)
    if returncode == 1:  # the runner's own error, with its message
        return CaseResult("ERROR", message or "exit code 1")
    if returncode != 0:
        return CaseResult("CRASH", exit_text(returncode) +
                          (f": {message}" if message else ""))
    if kernels is not None:
        for line in stdout.splitlines():
            if line.startswith("kernel "):
                _, kernel, launches, ms = line.split()
                kernels.append((kernel, int(launches), float(ms)))
    ms = re.search(r"run ([0-9.]+) ms", stdout)
    ms = float(ms.group(1)) if ms else None
    worst = 0.0
    for name in spec["outputs"]:
        want = np.load(os.path.join(folder, f"want_{name}.npy"))
        got_path = os.path.join(out, f"{name}.npy")
        if not os.path.exists(got_path):
            return CaseResult("ERROR", f"the runner wrote no {name}.npy", ms=ms)
        error, problem = compare(name, np.load(got_path), want,
                                 spec.get("precision", "fp32"))
        if error is not None:
            worst = max(worst, error)
        if problem:
            return CaseResult("FAIL", problem, worst, ms)
    return CaseResult("pass", "", worst, ms)


# How a session runs shapes that change from run to run (case.json
# "cycle"): the default graph cache, a cache of one graph (a capture and
# instantiation on every run) and no graphs (launch by launch).
CYCLE_SETTINGS = [("graph cache (default 8)", {}),
                  ("graph cache of 1", {"KILN_CUDA_GRAPH_CACHE": "1"}),
                  ("no graphs", {"KILN_CUDA_GRAPHS": "0"})]


def run_cycle(command, folder, spec, device, timeout, env):
    """ms per run over the case's input sets in turn, or an error text."""
    args = [*command, os.path.join(folder, "model.kiln"), "--device", device,
            "--repeat", "20"]
    for name in spec["inputs"]:
        args += ["--input", f"{name}=@{os.path.join(folder, f'in_{name}.npy')}"]
    for sub in spec["cycle"]:
        args += ["--cycle", os.path.join(folder, sub)]
    finished = run_process(args, timeout, env)
    if finished is None:
        return f"timeout after {timeout:g} s"
    returncode, stdout, stderr = finished
    ms = re.search(r"cycle \d+ sets ([0-9.]+) ms per run", stdout)
    if returncode != 0 or not ms:
        return exit_text(returncode) + ": " + (last_line(stderr) or last_line(stdout))
    return float(ms.group(1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--kiln", help="use `KILN run` instead of bin/kiln-runner")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help="seconds each runner call may take (default "
                        f"{DEFAULT_TIMEOUT_S})")
    parser.add_argument("--only", nargs="+", help="case names to run")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    command = [args.kiln, "run"] if args.kiln else [os.path.join(HERE, "bin", "kiln-runner")]
    names = sorted(os.listdir(os.path.join(HERE, "cases")))
    if args.only:
        names = [name for name in names if name in args.only]
    results, bench, cycles = {}, [], []
    print(f"{'test':<40}{'result':<8}{'max error':>12}{'time ms':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            folder = os.path.join(HERE, "cases", name)
            try:
                with open(os.path.join(folder, "case.json")) as f:
                    spec = json.load(f)
                if (spec.get("requires") == "sm_90a" and args.device != "sim"
                        and compute_capability() != "9.0"):
                    result = CaseResult("skip", "compiled for sm_90a alone; "
                                        f"this GPU is {compute_capability()}")
                else:
                    result = run_case(command, folder, spec, args.device,
                                      os.path.join(tmp, name), 1, args.timeout)
            except Exception as e:  # a broken case folder stops only itself
                spec, result = {}, CaseResult("ERROR", f"{type(e).__name__}: {e}")
            results[name] = result
            err_text = f"{result.max_error:.2e}" if result.max_error is not None else "-"
            time_text = f"{result.ms:.3f}" if result.ms is not None else "-"
            print(f"{name:<40}{result.status:<8}{err_text:>12}{time_text:>12}")
            if result.detail:
                print(f"    {result.detail}")
            if result.status == "pass" and spec.get("cycle") and not args.kiln:
                for label, env in CYCLE_SETTINGS:
                    cycles.append((name, len(spec["cycle"]) + 1, label,
                                   run_cycle(command, folder, spec, args.device,
                                             args.timeout, env)))
            if result.status == "pass" and spec.get("bench") and not args.kiln:
                kernels = []
                timed = run_case(command, folder, spec, args.device,
                                 os.path.join(tmp, name + "_bench"), 50,
                                 args.timeout, kernels)
                if timed.status != "pass":
                    print(f"    bench: {timed.status} {timed.detail}")
                bench.append((name, timed.ms, kernels))
    failed = {name: r for name, r in results.items()
              if r.status not in ("pass", "skip")}
    counts = {}
    for result in failed.values():
        counts[result.status] = counts.get(result.status, 0) + 1
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed" +
          (" (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")"
           if counts else ""))
    for name, result in failed.items():
        print(f"  {result.status:<8} {name}: {result.detail}")
    if bench:
        print(f"\n{'bench':<40}{'p50 ms (50 runs)':>18}")
        for name, p50, _ in bench:
            print(f"{name:<40}{p50 if p50 is not None else float('nan'):>18.4f}")
        print(f"\n{'bench kernels (CUDA events, 20 runs)':<56}{'launches':>9}{'ms/run':>12}")
        for name, _, kernels in bench:
            for kernel, launches, ms in sorted(kernels, key=lambda k: -k[2]):
                print(f"{name + ' ' + kernel:<56}{launches:>9}{ms:>12.4f}")
    if cycles:
        print(f"\n{'changing shapes (runs in turn, 20 rounds)':<56}{'ms/run':>12}")
        for name, sets, label, ms in cycles:
            row = f"{name} x{sets} shapes, {label}"
            print(f"{row:<56}{ms:>12.4f}" if isinstance(ms, float)
                  else f"{row:<56}  {ms}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
