"""What this posetr install is built with: ``python -m posetr info`` / :func:`posetr.info` (the first
thing to paste into a bug report)."""
from __future__ import annotations

import platform
import re
import shutil
import subprocess

import torch


def _kernel_table() -> dict[str, dict[str, bool]]:
    """``{op: {"CPU": bool, "CUDA": bool}}`` for every public ``torch.ops.posetr`` op: whether a compiled
    kernel is registered for that dispatch key."""
    names = sorted({s.name for s in torch._C._jit_get_all_schemas()
                    if s.name.startswith("posetr::") and not s.name.startswith("posetr::_")})
    return {name.split("::", 1)[1]: {key: torch._C._dispatch_has_kernel_for_dispatch_key(name, key)
                                     for key in ("CPU", "CUDA")} for name in names}


def _built_archs(library: str) -> list[str] | None:
    """The GPU architectures (``sm_90``, ...) in the extension's fat binary, read with ``cuobjdump``
    (None: no cuobjdump on PATH)."""
    tool = shutil.which("cuobjdump")
    if tool is None:
        return None
    listing = subprocess.run([tool, "--list-elf", library], capture_output=True, text=True).stdout
    return sorted(set(re.findall(r"sm_\d+a?", listing)))


def environment() -> dict:
    """The facts :func:`info` prints, as a dict (versions, extension state, kernels, threads)."""
    import posetr
    from posetr import _ext

    facts = {
        "posetr": posetr.__version__, "python": platform.python_version(), "torch": torch.__version__,
        "torch CUDA": torch.version.cuda, "CUDA available": torch.cuda.is_available(),
        "GPUs": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "extension loaded": _ext.HAS_EXTENSION,
        "extension error": None if _ext.HAS_EXTENSION else str(_ext._IMPORT_ERROR),
        "kernels": _kernel_table() if _ext.HAS_EXTENSION else {},
        "CUDA kernels built": _ext.HAS_CUDA_KERNELS, "threads": torch.get_num_threads(),
    }
    if _ext.HAS_CUDA_KERNELS:
        archs = _built_archs(_ext._C.__file__)
        facts["GPU architectures built"] = "unknown (no cuobjdump on PATH)" if archs is None else archs
    return facts


def info() -> dict:
    """Prints posetr's, Python's, torch's and CUDA's versions, whether the compiled extension loaded (and
    why not), which ops have CPU / CUDA kernels (and the GPU architectures built), and the intra-op thread
    count; returns the same facts (:func:`environment`)."""
    facts = environment()
    for key, value in facts.items():
        if key == "kernels":
            continue
        print(f"{key}: {value}")
    for op, keys in facts["kernels"].items():
        print(f"  {op}: " + ", ".join(f"{k} {'yes' if has else 'no'}" for k, has in keys.items()))
    return facts
