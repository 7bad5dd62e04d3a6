# -*- Python -*-
import os

import lit.formats
from lit.llvm import llvm_config

config.name = "Kiln"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["lit.cfg.py", "lit.site.cfg.py", "Inputs"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.kiln_obj_root, "test", "lit")

config.environment["FILECHECK_OPTS"] = "--enable-var-scope"
llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.with_environment("PATH", config.kiln_tools_dir, append_path=True)
config.substitutions.append(("%venv_python", config.python_executable))
config.substitutions.append(("%inputs", os.path.join(config.test_source_root, "Inputs")))
config.substitutions.append(("%fixtures", os.path.join(config.kiln_src_root, "test", "fixtures")))
llvm_config.add_tool_substitutions(["kiln", "kiln-opt", "kiln-embed-example"], [config.kiln_tools_dir])
config.substitutions.append(("%kiln_bin_dir", config.kiln_tools_dir))
llvm_config.add_tool_substitutions(["not", "count"], [config.llvm_tools_dir])

if config.cuda_home and os.path.exists(os.path.join(config.cuda_home, "bin", "ptxas")):
    config.available_features.add("ptxas")

import ctypes
try:
    ctypes.CDLL("libcuda.so.1")  # the driver, not the toolkit's stub
    config.available_features.add("cuda-driver")
except OSError:
    pass
