"""ptxas three ways on the kernels of one model: one process per kernel and
architecture one at a time, the same processes --jobs at a time (what
`kiln compile` does), and one process per architecture on a single PTX
module holding every kernel. Prints the wall time of each on this machine.
Not a test.

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
        # "// kernel NAME, target #nvvm.target<..., chip = "sm_80", ...>" then PTX.
        parts = re.split(r"^// kernel (\S+), target .*chip = \"(\w+)\".*$", text,
                         flags=re.M)
        jobs, by_arch = [], {}
        for i in range(1, len(parts), 3):
            name, arch, ptx = parts[i].rstrip(","), parts[i + 1], parts[i + 2]
            path = os.path.join(tmp, f"{name}.{arch}.ptx")
            with open(path, "w") as f:
                f.write(ptx)
            jobs.append((path, arch))
            by_arch.setdefault(arch, []).append(ptx)
        print(f"{len(jobs)} PTX modules ({len(by_arch)} architectures)")

        start = time.perf_counter()
        for path, arch in jobs:
            ptxas(path, arch)
        serial = time.perf_counter() - start

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda job: ptxas(*job), jobs))
        parallel = time.perf_counter() - start

        start = time.perf_counter()
        for arch, ptxs in by_arch.items():
            # One module: the first kernel's header, every kernel's body.
            header = re.match(r"(?s)(.*?\.address_size \d+\s*)", ptxs[0]).group(1)
            bodies = []
            for i, ptx in enumerate(ptxs):
                body = re.sub(r"(?s)^.*?\.address_size \d+\s*", "", ptx)
                # Several launches of one host function share an entry name
                # (each in its own gpu.module): number them.
                entry = re.search(r"\.entry (\w+)", body).group(1)
                bodies.append(re.sub(rf"\b{entry}", f"{entry}_m{i}", body))
            path = os.path.join(tmp, f"all.{arch}.ptx")
            with open(path, "w") as f:
                f.write(header + "\n".join(bodies))
            ptxas(path, arch)
        merged = time.perf_counter() - start

        print(f"| ptxas mode | wall (s) |\n| --- | --- |")
        print(f"| one process per kernel and arch, serial | {serial:.2f} |")
        print(f"| the same, {args.jobs} at a time (kiln compile) | {parallel:.2f} |")
        print(f"| one module per arch ({len(by_arch)} processes) | {merged:.2f} |")


if __name__ == "__main__":
    main()
