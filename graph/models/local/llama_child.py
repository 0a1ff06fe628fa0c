"""The embedded server's child process: ``llama_cpp.server``, on CPU buffers that decode safely.

Run as a script (``python llama_child.py <llama_cpp.server arguments>``), so the
child imports llama.cpp and its server, not langfusion's pipeline.

On a CPU with AMX, llama.cpp moves weights into its "extra" CPU buffer types
(AMX tiles), and decoding the packaged Gemma model there crashes the process
(a segmentation fault in ``llama_decode``, seen with llama-cpp-python 0.3.35
and 0.3.36 on a Xeon with AMX-INT8). On such a CPU the child loads the model
into plain CPU buffers; elsewhere llama.cpp's own choice stands.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def _has_amx() -> bool:
    try:
        return "amx_tile" in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def _plain_cpu_buffers() -> None:
    """Make every model load keep to plain CPU buffers (no AMX repacking)."""
    from llama_cpp import llama_cpp as bindings

    defaults = bindings.llama_model_default_params

    def model_params() -> bindings.llama_model_params:
        params: bindings.llama_model_params = defaults()
        params.use_extra_bufts = False
        return params

    bindings.llama_model_default_params = model_params


if __name__ == "__main__":
    # Python put this folder first on the path; its modules (gguf.py among them)
    # must not shadow the packages of those names that the server imports.
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]
    if _has_amx():
        _plain_cpu_buffers()
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
