"""ptxas three ways on the kernels of one model: one process per kernel and
architecture one at a time, the same processes --jobs at a time, and one
process per architecture on the single PTX module holding every kernel
(what `kiln compile` does, --jobs at a time). The per-kernel modules are
cut from `kiln compile --emit ptx` (everything but the other entries).
Prints the wall time of each on this machine. Not a test.

    .venv/bin/python bench/ptxas_modes.py MODEL.onnx [--target cuda:sm_80,sm_90a] [--jobs 2]
"""
import argparse
import concurrent.futures
import os
import re
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILN = os.environ.get("KILN_BIN", os.path.join(ROOT, "build", "bin", "kiln"))
PTXAS = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "ptxas")


def ptxas(path, arch):
    out = path + ".cubin"
    r = subprocess.run([PTXAS, f"-arch={arch}", "-O3", path, "-o", out],
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"ptxas failed on {path}:\n{r.stderr[:2000]}")
    return os.path.getsize(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--target", default="cuda:sm_80,sm_90a")
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        text = subprocess.run([KILN, "compile", args.model, "--target", args.target,
                               "--emit", "ptx"], check=True, capture_output=True,
                              text=True).stdout
        # "// module NAME, target #nvvm.target<..., chip = "sm_80", ...>" then
        # the PTX of one module holding every kernel (what kiln compiles).
        parts = re.split(r"^// module (\S+), target .*chip = \"(\w+)\".*$", text,
                         flags=re.M)
        jobs, modules = [], {}
        for i in range(1, len(parts), 3):
            arch, ptx = parts[i + 1], parts[i + 2]
            path = os.path.join(tmp, f"all.{arch}.ptx")
            with open(path, "w") as f:
                f.write(ptx)
            modules[arch] = path
            # One module per kernel: everything that is not an entry (the
            # header, globals, device functions) and that entry.
            entries = list(re.finditer(
                r"(?ms)^(?:\.visible )?\.entry (\w+)\(.*?^\}\s*$", ptx))
            common = ptx
            for entry in reversed(entries):
                common = common[:entry.start()] + common[entry.end():]
            for entry in entries:
                path = os.path.join(tmp, f"{entry.group(1)}.{arch}.ptx")
                with open(path, "w") as f:
                    f.write(common + "\n" + entry.group(0) + "\n")
                jobs.append((path, arch))
        print(f"{len(jobs)} kernels, {len(modules)} architectures")

        start = time.perf_counter()
        for path, arch in jobs:
            ptxas(path, arch)
        serial = time.perf_counter() - start

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda job: ptxas(*job), jobs))
        parallel = time.perf_counter() - start

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda item: ptxas(item[1], item[0]), modules.items()))
        merged = time.perf_counter() - start

        print(f"| ptxas mode | wall (s) |\n| --- | --- |")
        print(f"| one process per kernel and arch, serial | {serial:.2f} |")
        print(f"| the same, {args.jobs} at a time | {parallel:.2f} |")
        print(f"| one module per arch, {len(modules)} processes, {args.jobs} at a time (kiln compile) | {merged:.2f} |")


if __name__ == "__main__":
    main()
