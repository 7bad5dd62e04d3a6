"""Runs the GPU test bundle (built by scripts/gpu_bundle.py) and prints a
table: test, pass/fail, max error, time; then the bench table. Needs Python
and numpy only.

    python3 run.py [--device cuda:0]          # on the GPU machine
    python3 run.py --kiln build/bin/kiln --device sim   # here, to test it

With --kiln, `kiln run` (which has the simulator) replaces bin/kiln-runner.
Exit status 1 if any case fails.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOLERANCE = {np.dtype(np.float32): (1e-4, 1e-5), np.dtype(np.float64): (1e-10, 1e-12)}


def run_case(command, folder, spec, device, out, repeat, kernels=None):
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
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        return None, None, (result.stderr or result.stdout).strip().splitlines()[-1]
    if kernels is not None:
        for line in result.stdout.splitlines():
            if line.startswith("kernel "):
                _, kernel, launches, ms = line.split()
                kernels.append((kernel, int(launches), float(ms)))
    ms = re.search(r"run ([0-9.]+) ms", result.stdout)
    worst = 0.0
    for name in spec["outputs"]:
        want = np.load(os.path.join(folder, f"want_{name}.npy"))
        got = np.load(os.path.join(out, f"{name}.npy"))
        if got.shape != want.shape or got.dtype != want.dtype:
            return False, None, f"{name}: {got.dtype}{got.shape} != {want.dtype}{want.shape}"
        if want.size:
            err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
            worst = max(worst, err)
            rtol, atol = TOLERANCE.get(want.dtype, (0, 0))
            if not np.allclose(got, want, rtol=rtol, atol=atol):
                return False, worst, f"{name} differs"
    return True, worst, float(ms.group(1)) if ms else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--kiln", help="use `KILN run` instead of bin/kiln-runner")
    args = parser.parse_args()
    command = [args.kiln, "run"] if args.kiln else [os.path.join(HERE, "bin", "kiln-runner")]
    names = sorted(os.listdir(os.path.join(HERE, "cases")))
    failures, bench = 0, []
    print(f"{'test':<40}{'result':<8}{'max error':>12}{'time ms':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            folder = os.path.join(HERE, "cases", name)
            with open(os.path.join(folder, "case.json")) as f:
                spec = json.load(f)
            ok, err, info = run_case(command, folder, spec, args.device,
                                     os.path.join(tmp, name), 1)
            status = "pass" if ok else "FAIL"
            failures += not ok
            err_text = f"{err:.2e}" if err is not None else "-"
            time_text = f"{info:.3f}" if isinstance(info, float) else "-"
            print(f"{name:<40}{status:<8}{err_text:>12}{time_text:>12}")
            if not ok:
                print(f"    {info}")
            if ok and spec.get("bench") and not args.kiln:
                kernels = []
                _, _, p50 = run_case(command, folder, spec, args.device,
                                     os.path.join(tmp, name + "_bench"), 50,
                                     kernels)
                bench.append((name, p50, kernels))
    print(f"\n{len(names) - failures} passed, {failures} failed")
    if bench:
        print(f"\n{'bench':<40}{'p50 ms (50 runs)':>18}")
        for name, p50, _ in bench:
            print(f"{name:<40}{p50 if p50 is not None else float('nan'):>18.4f}")
        print(f"\n{'bench kernels (CUDA events, 20 runs)':<56}{'launches':>9}{'ms/run':>12}")
        for name, _, kernels in bench:
            for kernel, launches, ms in sorted(kernels, key=lambda k: -k[2]):
                print(f"{name + ' ' + kernel:<56}{launches:>9}{ms:>12.4f}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
