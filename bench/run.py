"""Kiln against its peers on this machine, in one command: tables, JSON and
plots. Not a test: it measures and writes, and never fails on speed.

CPU suite (always): Kiln's CPU target against onnxruntime's CPU execution
provider (every graph optimization on), each at one thread and at every
core this process may use, in the same run on the same inputs:

- the committed MLP and attention fixtures (test/fixtures/);
- GPT-2-124M (bench/make_gpt2.py) and a BERT-base-sized encoder
  (bench/make_bert.py), random weights made at bench time, at 1, 32, 128
  and 512 tokens (--tokens);
- latency: the median of --iterations runs (default 10) after --warmup
  runs, with the 10th and 90th percentiles as the spread (Kiln's from
  `kiln bench`, onnxruntime's from the wall clock around `run`);
- `kiln compile`'s wall time and peak RSS for each model;
- Kiln's per-kernel times for GPT-2 at 128 tokens (`kiln bench`'s table,
  each kernel named by its strategy).

GPU suite (--gpu, on a machine with an NVIDIA GPU and torch with CUDA): the
GPU bundle's GEMM and attention benchmarks (bench/gpu_gemm.py,
bench/attention_profile.py are run as they are and their output kept).

Writes bench/results/<date>-<host>.md (tables with ratios), .json (every
figure) and PNGs (latency against tokens per engine for each model; the
per-kernel breakdown of GPT-2). Run after the README's set-up:

    .venv/bin/python bench/run.py [--iterations 10] [--tokens 1,32,128,512]
"""
import argparse
import datetime
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILN = os.environ.get("KILN_BIN", os.path.join(ROOT, "build", "bin", "kiln"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import make_bert  # noqa: E402
import make_gpt2  # noqa: E402


def cores():
    return len(os.sched_getaffinity(0))


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def compile_measured(model, artifact):
    """`kiln compile` with its wall time and the compiler's peak RSS. The
    compiler is started by a small child Python and waited for there: a
    process forked from this one (which holds the models' weights) would
    count this one's memory in its peak."""
    code = (
        "import os,sys,time,subprocess\n"
        "t=time.perf_counter()\n"
        "p=subprocess.Popen(sys.argv[1:],stdout=subprocess.DEVNULL,"
        "stderr=subprocess.PIPE,text=True)\n"
        "err=p.stderr.read()\n"
        "_,status,ru=os.wait4(p.pid,0)\n"
        "print(time.perf_counter()-t, ru.ru_maxrss, "
        "os.waitstatus_to_exitcode(status))\n"
        "sys.stderr.write(err)\n")
    proc = subprocess.run([sys.executable, "-c", code, KILN, "compile", model,
                           "-o", artifact], capture_output=True, text=True)
    seconds, rss_kb, rc = proc.stdout.split()
    if int(rc) != 0:
        raise RuntimeError(f"kiln compile {model} failed:\n{proc.stderr}")
    return {"seconds": float(seconds), "peak_rss_mib": int(rss_kb) / 1024}


def inputs_for(model_path, seed=0):
    """Random inputs for every graph input: token ids below 1,000, masks of
    ones, token types of zeros, floats from a normal distribution."""
    rng = np.random.default_rng(seed)
    model = onnx.load(model_path, load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    result = {}
    for value in model.graph.input:
        if value.name in inits:
            continue
        tensor = value.type.tensor_type
        shape = [d.dim_value or 1 for d in tensor.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        if value.name == "attention_mask":
            result[value.name] = np.ones(shape, dtype)
        elif value.name == "token_type_ids":
            result[value.name] = np.zeros(shape, dtype)
        elif np.issubdtype(dtype, np.integer):
            result[value.name] = rng.integers(0, 1000, shape).astype(dtype)
        else:
            result[value.name] = rng.standard_normal(shape).astype(dtype)
    return result


def kiln_bench(artifact, inputs, threads, iterations, warmup, folder):
    args = [KILN, "bench", artifact, "--threads", str(threads),
            "--iterations", str(iterations), "--warmup", str(warmup)]
    for name, value in inputs.items():
        path = os.path.join(folder, f"{name}.npy")
        np.save(path, value)
        args += ["--input", f"{name}={'@'}{path}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    # `kiln bench` prints min/p50/p90/p99/max; p10 is not among them, so the
    # spread is [min, p90].
    m = re.search(r"min ([\d.]+)\s+p50 ([\d.]+)\s+p90 ([\d.]+)", out)
    kernels = []
    for line in out.split("per kernel", 1)[-1].splitlines():
        k = re.match(r"\s+(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)%", line)
        if k and k.group(1) != "total":
            kernels.append({"kernel": k.group(1), "launches": int(k.group(2)),
                            "ms": float(k.group(3))})
    return {"p50_ms": float(m.group(2)), "low_ms": float(m.group(1)),
            "high_ms": float(m.group(3)), "kernels": kernels}


def ort_bench(model, inputs, threads, iterations, warmup):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model, options,
                                   providers=["CPUExecutionProvider"])
    for _ in range(warmup):
        session.run(None, inputs)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        session.run(None, inputs)
        times.append((time.perf_counter() - start) * 1e3)
    return {"p50_ms": float(np.median(times)),
            "low_ms": float(np.percentile(times, 10)),
            "high_ms": float(np.percentile(times, 90))}


def kernel_strategies(artifact):
    info = json.loads(subprocess.run([KILN, "inspect", artifact, "--json"],
                                     capture_output=True, text=True,
                                     check=True).stdout)
    return {k["name"]: k["strategy"] for k in info["kernels"]}


def measure_model(name, model, tokens, engines, args, folder, results):
    artifact = os.path.join(folder, f"{name}-{tokens}.kiln")
    compiled = compile_measured(model, artifact)
    inputs = inputs_for(model)
    entry = {"model": name, "tokens": tokens, "compile": compiled,
             "latency": {}}
    for engine, threads in engines:
        if engine == "kiln":
            r = kiln_bench(artifact, inputs, threads, args.iterations,
                           args.warmup, folder)
        else:
            r = ort_bench(model, inputs, threads, args.iterations, args.warmup)
        entry["latency"][f"{engine}-{threads}t"] = r
        print(f"  {name:10s} {str(tokens):>5s} tokens  {engine:11s} "
              f"{threads} thread{'s' if threads > 1 else ' '}  "
              f"p50 {r['p50_ms']:9.3f} ms", flush=True)
    if name == "gpt2-124m" and tokens == 128:
        strategies = kernel_strategies(artifact)
        for key, value in entry["latency"].items():
            for k in value.get("kernels", []):
                k["strategy"] = strategies.get(k["kernel"], "copy")
        entry["kernels"] = {k: v.pop("kernels") for k, v in
                            entry["latency"].items() if "kernels" in v}
    for value in entry["latency"].values():
        value.pop("kernels", None)
    results.append(entry)
    os.remove(artifact)


def markdown(report):
    lines = [f"# Kiln benchmarks: {report['date']} on {report['host']}", "",
             f"- CPU: {report['cpu']}, {report['cores']} cores this process "
             f"may use; {report['platform']}",
             f"- Kiln {report['kiln_commit']}; onnxruntime {report['onnxruntime']}"
             f" (CPU provider, all graph optimizations)",
             f"- latency: median of {report['iterations']} runs after "
             f"{report['warmup']} warm-ups; spread: Kiln min..p90, onnxruntime "
             "p10..p90; ratio = Kiln / onnxruntime at the same thread count "
             "(below 1: Kiln is faster)", "",
             "## Latency (ms)", ""]
    engines = report["engines"]
    head = "| model | tokens | " + " | ".join(engines) + " | " + " | ".join(
        f"ratio {t}t" for t in sorted({e.split('-')[1][:-1] for e in engines},
                                      key=int)) + " |"
    lines += [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in report["results"]:
        cells = [r["model"], str(r["tokens"])]
        for e in engines:
            v = r["latency"][e]
            cells.append(f"{v['p50_ms']:.3f} ({v['low_ms']:.3f}..{v['high_ms']:.3f})")
        for t in sorted({e.split('-')[1][:-1] for e in engines}, key=int):
            k, o = r["latency"][f"kiln-{t}t"], r["latency"][f"onnxruntime-{t}t"]
            cells.append(f"{k['p50_ms'] / o['p50_ms']:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## `kiln compile`", "",
              "| model | tokens | seconds | peak RSS (MiB) |", "| --- | --- | --- | --- |"]
    for r in report["results"]:
        c = r["compile"]
        lines.append(f"| {r['model']} | {r['tokens']} | {c['seconds']:.2f} | "
                     f"{c['peak_rss_mib']:.0f} |")
    for r in report["results"]:
        for engine, kernels in r.get("kernels", {}).items():
            total = sum(k["ms"] for k in kernels)
            lines += ["", f"## Per kernel: {r['model']} at {r['tokens']} tokens, "
                      f"{engine} (`kiln bench`, ms per run)", "",
                      "| kernel | strategy | launches | ms | share |",
                      "| --- | --- | --- | --- | --- |"]
            for k in kernels[:12]:
                lines.append(f"| {k['kernel']} | {k['strategy']} | {k['launches']} "
                             f"| {k['ms']:.3f} | {100 * k['ms'] / total:.1f}% |")
    if report.get("gpu"):
        lines += ["", "## GPU suite", "", "```", report["gpu"], "```"]
    return "\n".join(lines) + "\n"


def plots(report, stem):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []
    for model in sorted({r["model"] for r in report["results"]
                         if isinstance(r["tokens"], int)}):
        rows = sorted((r for r in report["results"] if r["model"] == model),
                      key=lambda r: r["tokens"])
        fig, ax = plt.subplots(figsize=(6, 4))
        for engine in report["engines"]:
            xs = [r["tokens"] for r in rows]
            ys = [r["latency"][engine]["p50_ms"] for r in rows]
            lo = [r["latency"][engine]["low_ms"] for r in rows]
            hi = [r["latency"][engine]["high_ms"] for r in rows]
            ax.errorbar(xs, ys, yerr=[np.subtract(ys, lo), np.subtract(hi, ys)],
                        marker="o", capsize=3, label=engine)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens")
        ax.set_ylabel("latency (ms, median)")
        ax.set_title(f"{model} on {report['host']}")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        path = f"{stem}-{model}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    for r in report["results"]:
        for engine, kernels in r.get("kernels", {}).items():
            by = {}
            for k in kernels:
                by[k["strategy"]] = by.get(k["strategy"], 0) + k["ms"]
            names = sorted(by, key=by.get, reverse=True)
            fig, ax = plt.subplots(figsize=(6, 3.5))
            ax.barh(names[::-1], [by[n] for n in names[::-1]])
            ax.set_xlabel("ms per run")
            ax.set_title(f"{r['model']} at {r['tokens']} tokens, {engine}: "
                         "time per kernel strategy")
            fig.tight_layout()
            path = f"{stem}-{r['model']}-kernels-{engine}.png"
            fig.savefig(path, dpi=120)
            plt.close(fig)
            written.append(path)
    return written


def gpu_suite():
    try:
        import torch
        if not torch.cuda.is_available():
            return None
    except ImportError:
        return None
    out = []
    for script in ("gpu_gemm.py", "attention_profile.py"):
        result = subprocess.run([sys.executable, os.path.join(ROOT, "bench", script)],
                                capture_output=True, text=True)
        out.append(f"$ bench/{script}\n{result.stdout}{result.stderr}")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tokens", default="1,32,128,512")
    parser.add_argument("--models", default="mlp,attention,gpt2-124m,bert-base")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    parser.add_argument("--gpu", action="store_true",
                        help="also run the GPU suite (needs a GPU)")
    args = parser.parse_args()
    if args.iterations < 10:
        parser.error("--iterations must be at least 10 (medians of fewer "
                     "runs are not reported)")
    tokens = [int(t) for t in args.tokens.split(",")]
    models = args.models.split(",")
    n = cores()
    engines = [("kiln", 1), ("onnxruntime", 1)]
    if n > 1:
        engines += [("kiln", n), ("onnxruntime", n)]
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    date = datetime.date.today().isoformat()
    host = socket.gethostname().split(".")[0]
    report = {"date": date, "host": host, "cpu": cpu_name(), "cores": n,
              "platform": platform.platform(), "kiln_commit": commit or "unknown",
              "onnxruntime": ort.__version__, "iterations": args.iterations,
              "warmup": args.warmup,
              "engines": [f"{e}-{t}t" for e, t in engines], "results": []}
    print(f"Kiln vs onnxruntime on {report['cpu']} ({n} cores)", flush=True)
    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as folder:
        fixtures = {"mlp": "test/fixtures/mlp/model.onnx",
                    "attention": "test/fixtures/attention/model.onnx"}
        for name, rel in fixtures.items():
            if name in models:
                measure_model(name, os.path.join(ROOT, rel), "-", engines, args,
                              folder, report["results"])
        makers = {"gpt2-124m": lambda t: make_gpt2.build(12, 768, 12, 50257, t, 20),
                  "bert-base": lambda t: make_bert.build(seq=t)}
        for name, make in makers.items():
            if name not in models:
                continue
            for t in tokens:
                path = os.path.join(folder, f"{name}-{t}.onnx")
                onnx.save(make(t), path)
                measure_model(name, path, t, engines, args, folder,
                              report["results"])
                os.remove(path)
    if args.gpu:
        report["gpu"] = gpu_suite() or "no CUDA GPU visible to torch: skipped"
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{date}-{host}")
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(markdown(report))
    written = plots(report, stem)
    print(f"wrote {stem}.md, {stem}.json and {len(written)} plots")


if __name__ == "__main__":
    main()
