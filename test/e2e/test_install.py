"""The runtime as an installed package: `cmake --install --component
runtime` into a fresh prefix, then the generation example built out of
tree against it with find_package(KilnRuntime) and with pkg-config, run on
a checkpoint Kiln compiled; its tokens are `kiln generate`'s."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, kiln
from test_checkpoints import make_checkpoint

BUILD = os.environ.get("KILN_BUILD_DIR", os.path.join(ROOT, "build"))
EXAMPLE = os.path.join(ROOT, "runtime", "examples", "generate")


def sh(*args, env=None):
    result = subprocess.run(args, capture_output=True, text=True, env=env)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("prefix")
    sh("cmake", "--install", BUILD, "--prefix", str(prefix), "--component",
       "runtime")
    return prefix


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    path = make_checkpoint(root / "ckpt", "qwen2")
    artifact = root / "m.kiln"
    kiln("compile", str(path), "-o", str(artifact), "--max-seq-len", "32")
    expected = json.loads(kiln("generate", str(artifact), "--prompt-ids",
                               "5,17,3", "--max-new-tokens", "10",
                               "--json").stdout)
    return artifact, expected


def expected_output(expected):
    ids = expected["new_ids"]
    # The example's callback does not see an end-of-sequence token.
    return ids[:-1] if expected["finish_reason"] == "eos" else ids


def test_installed_files(installed):
    for rel in ["include/kiln/runtime.h", "include/kiln/runtime.hpp",
                "lib/libkiln_runtime.a", "lib/libkiln_runtime.so",
                "lib/cmake/KilnRuntime/KilnRuntimeConfig.cmake",
                "lib/cmake/KilnRuntime/KilnRuntimeConfigVersion.cmake",
                "lib/pkgconfig/kiln_runtime.pc"]:
        assert (installed / rel).is_file(), rel
    # Nothing of LLVM or MLIR goes with it.
    assert not list(installed.rglob("*MLIR*")) and \
        not list(installed.rglob("*LLVM*"))


def test_find_package_example(installed, model, tmp_path):
    artifact, expected = model
    build = tmp_path / "build"
    sh("cmake", "-S", EXAMPLE, "-B", str(build), "-G", "Ninja",
       f"-DCMAKE_PREFIX_PATH={installed}")
    sh("cmake", "--build", str(build))
    binary = build / "kiln-generate-example"
    # The static archive: no libkiln_runtime.so, no LLVM at run time.
    libraries = sh("ldd", str(binary))
    assert "kiln_runtime" not in libraries and "LLVM" not in libraries
    out = sh(str(binary), str(artifact), "10", "5", "17", "3")
    assert [int(t) for t in out.split()] == expected_output(expected)


def test_pkg_config_example(installed, model, tmp_path):
    artifact, expected = model
    env = dict(os.environ, PKG_CONFIG_PATH=str(installed / "lib" / "pkgconfig"))
    flags = sh("pkg-config", "--cflags", "--libs", "kiln_runtime",
               env=env).split()
    binary = tmp_path / "example"
    sh(shutil.which("c++") or "g++", "-std=c++17",
       os.path.join(EXAMPLE, "generate.cpp"), *flags, "-o", str(binary))
    env["LD_LIBRARY_PATH"] = str(installed / "lib")
    out = sh(str(binary), str(artifact), "10", "5", "17", "3", env=env)
    assert [int(t) for t in out.split()] == expected_output(expected)
