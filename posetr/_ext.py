"""Loads the compiled kernels (``posetr._C``), which register ``torch.ops.posetr.*``.

Without the extension every op falls back to its pure-PyTorch reference in
``posetr.ops.reference`` and warns once (see :func:`warn_fallback`).
"""
import warnings

import torch

try:
    from posetr import _C  # noqa: F401  (registers the ops)

    HAS_EXTENSION = True
    _IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised only without a build
    HAS_EXTENSION = False
    _IMPORT_ERROR = exc

HAS_CUDA_KERNELS = HAS_EXTENSION and torch._C._dispatch_has_kernel_for_dispatch_key(
    "posetr::ms_deform_attn", "CUDA"
)

_warned = set()


def warn_fallback(op_name):
    """Warn once per op that the slow PyTorch reference is used instead of a kernel."""
    if op_name in _warned:
        return
    _warned.add(op_name)
    warnings.warn(
        f"posetr._C is not built ({_IMPORT_ERROR}); posetr.ops.{op_name} runs its pure-PyTorch "
        "reference. Build the kernels with `pip install --no-build-isolation -e .`.",
        RuntimeWarning,
        stacklevel=3,
    )
